//! Any number of stations on one shared simplex channel in virtual time (a
//! district's VHF net: a hub and its field stations), for tests and benchmarks.
//!
//! The model is simpler than `channel` (which is exact for two stations) and
//! adds what only a shared channel has:
//! - every transmission reaches every other station, at its end;
//! - transmissions that overlap on air (key-up included) collide: nobody
//!   receives either;
//! - a station does not hear while it transmits (half duplex);
//! - KISS TNCs sense the carrier: a queued transmission waits until the channel
//!   is clear, then a random number of slots (p-persistence); transparent radios
//!   key up when told to;
//! - impairments per receiver: bit errors (transparent: bits flip; KISS: the
//!   TNC drops a frame with any error) and whole-frame loss (KISS).
//!
//! Randomness is seeded: a run repeats exactly.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::pair::RunEnd;
use super::Mode;
use crate::daemon::Station;
use crate::frame::kiss::{KissDeframer, KissFrame};
use crate::profile::{Framing, Profile};

/// The channel's settings.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// KISS (frames, carrier sense) or transparent (a byte stream per key-up).
    pub mode: Mode,
    /// Bits per second on air.
    pub bitrate: u32,
    /// Key-up to first data bit.
    pub txdelay: Duration,
    /// Bit error rate at every receiver.
    pub ber: f64,
    /// KISS: chance that a receiver misses a frame.
    pub frame_loss: f64,
    /// KISS p-persistence (0..=255) and slot time.
    pub persist: u8,
    /// See `persist`.
    pub slottime: Duration,
    /// Seed of every random draw.
    pub seed: u64,
}

impl NetConfig {
    /// The channel a profile describes, with the given impairments.
    pub fn for_profile(p: &Profile, ber: f64, frame_loss: f64, seed: u64) -> NetConfig {
        NetConfig {
            mode: match p.framing {
                Framing::Kiss => Mode::Kiss,
                Framing::Transparent => Mode::Transparent,
            },
            bitrate: p.bitrate,
            txdelay: Duration::from_millis(p.txdelay_ms.into()),
            ber,
            frame_loss,
            persist: p.persist.min(255) as u8,
            slottime: Duration::from_millis(p.slottime_ms.into()),
            seed,
        }
    }

    fn airtime(&self, bytes: usize) -> Duration {
        let bits = bytes as u64 * 8;
        Duration::from_micros((bits * 1_000_000).div_ceil(u64::from(self.bitrate.max(1))))
    }
}

/// One key-up: queued until `start`, then on air until `end`.
#[derive(Debug, Clone)]
struct Tx {
    from: usize,
    start: Duration,
    end: Duration,
    /// What arrives piece by piece, as a receiver's port reads it: KISS
    /// frames, or pieces of a transparent byte stream.
    frames: Vec<Vec<u8>>,
    /// Pieces delivered so far (each at the end of its own airtime).
    delivered: usize,
}

/// A transparent stream reaches the port in pieces this long, so a station
/// hears a long transmission while it goes on (and can wait for its end).
const PIECE: usize = 64;

/// Counters of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Key-ups per station.
    pub transmissions: Vec<u64>,
    /// Time on air per station, key-up included.
    pub airtime: Vec<Duration>,
    /// Transmissions destroyed by another that overlapped them.
    pub collisions: u64,
    /// Frames (KISS) or streams (transparent) a receiver missed to impairments.
    pub lost: u64,
}

/// The air between `n` stations: what each writes to its port goes on air
/// (after carrier sense on KISS), and arrives at every other port at its end,
/// unless it collided or the channel damaged it. Driven by `SimNet` on virtual
/// time and by `chansim` on the wall clock; time is given as the `Duration`
/// since the start.
pub struct NetChannel {
    cfg: NetConfig,
    n: usize,
    rng: ChaCha8Rng,
    kiss: Vec<KissDeframer>,
    /// Waiting for their start (carrier sense may move it).
    queued: VecDeque<Tx>,
    /// Started; delivered at their end.
    on_air: Vec<Tx>,
    /// Started and ended, kept while they can still overlap a later one.
    past: Vec<Tx>,
    /// Counters.
    pub stats: NetStats,
}

/// The stations and the air between them.
pub struct SimNet {
    /// The stations, by index.
    pub stations: Vec<Station>,
    /// The channel, with its counters.
    pub channel: NetChannel,
    epoch: Instant,
    now: Duration,
}

impl SimNet {
    /// `stations` on a channel with `cfg`, at virtual time zero.
    pub fn new(cfg: NetConfig, stations: Vec<Station>) -> SimNet {
        SimNet {
            channel: NetChannel::new(cfg, stations.len()),
            stations,
            epoch: Instant::now(),
            now: Duration::ZERO,
        }
    }

    /// Virtual time as the stations see it.
    pub fn now(&self) -> Instant {
        self.epoch + self.now
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now
    }

    fn work_now(&mut self) {
        let now = self.now();
        for (j, bytes) in self.channel.deliver(self.now) {
            self.stations[j].handle_bytes(now, &bytes);
        }
        for i in 0..self.stations.len() {
            let s = &mut self.stations[i];
            if s.poll_timeout().is_some_and(|t| t <= now) {
                s.handle_timeout(now);
            }
            let mut txs = Vec::new();
            while let Some(tx) = self.stations[i].poll_transmit(now) {
                txs.push(tx);
            }
            for tx in txs {
                self.channel.write(self.now, i, &tx);
            }
        }
        self.channel.start(self.now);
    }

    fn next_event(&self) -> Option<Duration> {
        let stations = self
            .stations
            .iter()
            .filter_map(|s| s.poll_timeout())
            .map(|t| t.saturating_duration_since(self.epoch));
        stations
            .chain(self.channel.next_event())
            .filter(|&t| t > self.now)
            .min()
    }

    /// Runs until `done` holds (checked after every step), nothing is left to
    /// happen, or virtual time reaches `limit`.
    pub fn run_until(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&mut SimNet) -> bool,
    ) -> RunEnd {
        loop {
            self.work_now();
            if done(self) {
                return RunEnd::Done;
            }
            // What `done` started (a driver's call, say) goes out now.
            self.work_now();
            match self.next_event() {
                None => return RunEnd::Stalled,
                Some(t) if t > limit => {
                    self.now = limit;
                    return RunEnd::TimeLimit;
                }
                Some(t) => self.now = t,
            }
        }
    }
}

impl NetChannel {
    /// A channel with `cfg` between `n` stations.
    pub fn new(cfg: NetConfig, n: usize) -> NetChannel {
        NetChannel {
            rng: ChaCha8Rng::seed_from_u64(cfg.seed),
            kiss: (0..n).map(|_| KissDeframer::default()).collect(),
            n,
            cfg,
            queued: VecDeque::new(),
            on_air: Vec::new(),
            past: Vec::new(),
            stats: NetStats {
                transmissions: vec![0; n],
                airtime: vec![Duration::ZERO; n],
                ..NetStats::default()
            },
        }
    }

    /// The channel's settings.
    pub fn config(&self) -> &NetConfig {
        &self.cfg
    }

    /// Whether someone's carrier is up at `t` (other than `except`'s).
    fn busy_until(&self, t: Duration, except: usize) -> Option<Duration> {
        self.on_air
            .iter()
            .filter(|x| x.from != except && x.start <= t && t < x.end)
            .map(|x| x.end)
            .max()
    }

    /// Station `i` wrote `bytes` to its port at `now` (a KISS stream of
    /// frames, or bytes for a transparent radio); `start` puts it on air.
    pub fn write(&mut self, now: Duration, i: usize, bytes: &[u8]) {
        let frames = match self.cfg.mode {
            Mode::Transparent => bytes.chunks(PIECE).map(<[u8]>::to_vec).collect(),
            Mode::Kiss => super::kiss_data_frames(&mut self.kiss[i], bytes),
        };
        if frames.is_empty() {
            return;
        }
        // After whatever this station has queued or on air already.
        let own_end = self
            .queued
            .iter()
            .chain(&self.on_air)
            .filter(|x| x.from == i)
            .map(|x| x.end)
            .max()
            .unwrap_or(Duration::ZERO);
        let start = now.max(own_end);
        let bytes: usize = frames.iter().map(Vec::len).sum();
        let end = start + self.cfg.txdelay + self.cfg.airtime(bytes);
        self.queued.push_back(Tx {
            from: i,
            start,
            end,
            frames,
            delivered: 0,
        });
    }

    /// Transmissions due at `now` go on air, unless a TNC hears a carrier:
    /// then it waits for the channel to clear and a random number of slots.
    pub fn start(&mut self, now: Duration) {
        let mut later = VecDeque::new();
        while let Some(mut tx) = self.queued.pop_front() {
            if tx.start > now {
                later.push_back(tx);
                continue;
            }
            if self.cfg.mode == Mode::Kiss {
                if let Some(clear) = self.busy_until(now, tx.from) {
                    let p = f64::from(self.cfg.persist) / 256.0 + 1.0 / 256.0;
                    let mut slots = 0u32;
                    while self.rng.gen::<f64>() >= p && slots < 64 {
                        slots += 1;
                    }
                    let delay = clear + self.cfg.slottime * (slots + 1) - tx.start;
                    tx.start += delay;
                    tx.end += delay;
                    later.push_back(tx);
                    continue;
                }
            }
            self.stats.transmissions[tx.from] += 1;
            self.stats.airtime[tx.from] += tx.end - tx.start;
            self.on_air.push(tx);
        }
        self.queued = later;
    }

    /// When piece `k` of `tx` has arrived: its share of the airtime after TXDELAY.
    fn piece_end(&self, tx: &Tx, k: usize) -> Duration {
        let before: usize = tx.frames[..=k].iter().map(Vec::len).sum();
        tx.start + self.cfg.txdelay + self.cfg.airtime(before)
    }

    /// Pieces of transmissions that arrived by `now` reach everyone who could
    /// hear them, as (station, bytes for its port: KISS-framed on KISS); a
    /// piece that overlapped another transmission is garbled.
    pub fn deliver(&mut self, now: Duration) -> Vec<(usize, Vec<u8>)> {
        let mut out = Vec::new();
        for t in 0..self.on_air.len() {
            loop {
                let tx = &self.on_air[t];
                let k = tx.delivered;
                if k >= tx.frames.len() {
                    break;
                }
                let end = self.piece_end(tx, k);
                if end > now {
                    break;
                }
                let begin = if k == 0 {
                    tx.start
                } else {
                    self.piece_end(tx, k - 1)
                };
                let from = tx.from;
                let piece = tx.frames[k].clone();
                self.on_air[t].delivered += 1;
                let overlaps = |y: &Tx| y.start < end && begin < y.end;
                let others = |y: &&Tx| y.from != from;
                let collided = self
                    .on_air
                    .iter()
                    .chain(&self.past)
                    .filter(others)
                    .any(overlaps);
                if collided {
                    self.stats.collisions += 1;
                }
                for j in 0..self.n {
                    if j == from {
                        continue;
                    }
                    // Half duplex: deaf while keyed up itself.
                    let deaf = self
                        .on_air
                        .iter()
                        .chain(&self.past)
                        .any(|y| y.from == j && overlaps(y));
                    if deaf {
                        continue;
                    }
                    if collided {
                        // Two carriers at once: noise, as a transparent radio
                        // passes it; a TNC passes nothing.
                        if self.cfg.mode == Mode::Transparent {
                            let noise: Vec<u8> = (0..piece.len()).map(|_| self.rng.gen()).collect();
                            out.push((j, noise));
                        }
                        continue;
                    }
                    if let Some(bytes) = self.impair(&piece) {
                        out.push((j, bytes));
                    }
                }
            }
        }
        let (done, still): (Vec<Tx>, Vec<Tx>) = self
            .on_air
            .drain(..)
            .partition(|x| x.delivered >= x.frames.len() && x.end <= now);
        self.on_air = still;
        self.past.extend(done);
        // What ended long ago cannot overlap anything still to start.
        let horizon = now.saturating_sub(Duration::from_secs(600));
        self.past.retain(|y| y.end > horizon);
        out
    }

    /// One receiver's copy of a frame or stream, after the channel's damage.
    fn impair(&mut self, data: &[u8]) -> Option<Vec<u8>> {
        match self.cfg.mode {
            Mode::Kiss => {
                let bits = data.len() as f64 * 8.0;
                let hit = 1.0 - (1.0 - self.cfg.ber).powf(bits);
                if self.rng.gen::<f64>() < self.cfg.frame_loss || self.rng.gen::<f64>() < hit {
                    self.stats.lost += 1;
                    return None;
                }
                KissFrame::data(0, data.to_vec()).to_bytes().ok()
            }
            Mode::Transparent => {
                let mut v = data.to_vec();
                if self.cfg.ber > 0.0 {
                    for b in v.iter_mut() {
                        for bit in 0..8 {
                            if self.rng.gen::<f64>() < self.cfg.ber {
                                *b ^= 1 << bit;
                            }
                        }
                    }
                }
                Some(v)
            }
        }
    }

    /// When something next happens on the air (a queued start, a piece's
    /// arrival, an end).
    pub fn next_event(&self) -> Option<Duration> {
        let pieces = self
            .on_air
            .iter()
            .filter(|x| x.delivered < x.frames.len())
            .map(|x| self.piece_end(x, x.delivered));
        self.queued
            .iter()
            .map(|x| x.start)
            .chain(self.on_air.iter().map(|x| x.end))
            .chain(pieces)
            .min()
    }
}
