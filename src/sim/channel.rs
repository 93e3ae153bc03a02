//! Pure model of a half-duplex radio channel between two stations, A and B.
//!
//! No I/O and no clock: time is a `Duration` since the channel was created, passed in by the
//! caller (the `chansim` tool feeds it wall-clock time, benchmarks feed simulated time).
//! The shape follows the sans-IO core: `send` (something to transmit), `handle_timeout`,
//! `poll_delivery` (what reaches the other side, and when) and `poll_timeout`.
//!
//! Two modes:
//! - `Transparent`: a raw serial radio. A write keys the transmitter at once (no carrier
//!   sense), pays TXDELAY, then the bytes go out at the bitrate; bytes written while still
//!   keyed (up to `hang` after the last byte) continue the same transmission. Independent and
//!   Gilbert–Elliott burst bit errors flip bits in the delivered bytes.
//! - `Kiss`: two KISS TNCs plus the air. Each frame gets the HDLC overhead (FCS, bit stuffing,
//!   a flag); frames queued when the TNC keys up (within `bundle_window`) share one TXDELAY.
//!   A TNC waits for a clear channel and then does p-persistence as Dire Wolf does (sleep
//!   SLOTTIME, transmit if a random byte <= PERSIST, else repeat). A frame hit by a bit error
//!   or by `frame_loss` is dropped whole, as a TNC drops frames whose FCS fails.
//!
//! In both modes a station cannot hear while it transmits: whatever overlaps the receiver's
//! own keyed time is lost (a collision), and nothing gets through an outage.
//!
//! Random draws come from one ChaCha stream per purpose and direction and are consumed per
//! bit, per frame or per slot, so the same seed and the same input give the same errors and
//! losses however the input was split into calls.

use std::collections::VecDeque;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::frame::hdlc::frame_bits;

/// One of the two stations on the channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Side {
    /// Station A.
    A,
    /// Station B.
    B,
}

impl Side {
    /// The station at the other end.
    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }

    fn idx(self) -> usize {
        match self {
            Side::A => 0,
            Side::B => 1,
        }
    }
}

/// What the stations hand to the channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A byte stream (transparent serial radio).
    Transparent,
    /// Whole frames (KISS TNC).
    Kiss,
}

/// Gilbert–Elliott burst errors: a two-state chain advanced per bit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Burst {
    /// Probability per bit of entering the bad state.
    pub enter_prob: f64,
    /// Mean length of a bad spell in bits (>= 1).
    pub mean_len_bits: f64,
    /// Bit error rate while in the bad state.
    pub ber: f64,
}

/// A scheduled link cut, relative to the channel's time zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Outage {
    /// When the cut begins.
    #[serde(serialize_with = "as_secs")]
    pub start: Duration,
    /// How long it lasts.
    #[serde(serialize_with = "as_secs")]
    pub duration: Duration,
}

/// Everything about a simulated channel. `Default`: 1200 bit/s transparent, TXDELAY 300 ms,
/// no errors.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChannelConfig {
    /// Byte stream or whole frames.
    pub mode: Mode,
    /// Air bitrate in bit/s.
    pub bitrate: u32,
    /// Key-up delay paid once per transmission.
    #[serde(serialize_with = "as_secs")]
    pub txdelay: Duration,
    /// Kiss mode: flags sent after the last frame before unkeying.
    #[serde(serialize_with = "as_secs")]
    pub txtail: Duration,
    /// Transparent mode: how long the radio stays keyed after its buffer runs empty; a write
    /// within it continues the transmission without a new TXDELAY.
    #[serde(serialize_with = "as_secs")]
    pub hang: Duration,
    /// Independent bit error rate (good state).
    pub ber: f64,
    /// Burst errors on top of `ber`; `None` for independent errors only.
    pub burst: Option<Burst>,
    /// Kiss mode: probability that a frame is lost whole.
    pub frame_loss: f64,
    /// Kiss mode: p-persistence, transmit when a random byte <= persist.
    pub persist: u8,
    /// Kiss mode: length of one p-persistence slot.
    #[serde(serialize_with = "as_secs")]
    pub slottime: Duration,
    /// Kiss mode: frames queued this long after key-up join the transmission (Dire Wolf
    /// sleeps 10 ms after PTT for that).
    #[serde(serialize_with = "as_secs")]
    pub bundle_window: Duration,
    /// Seed of every random draw: the same seed and input give the same run.
    pub seed: u64,
    /// Scheduled link cuts.
    pub outages: Vec<Outage>,
}

impl Default for ChannelConfig {
    fn default() -> Self {
        ChannelConfig {
            mode: Mode::Transparent,
            bitrate: 1200,
            txdelay: Duration::from_millis(300),
            txtail: Duration::ZERO,
            hang: Duration::ZERO,
            ber: 0.0,
            burst: None,
            frame_loss: 0.0,
            persist: 63,
            slottime: Duration::from_millis(100),
            bundle_window: Duration::from_millis(10),
            seed: 0,
            outages: Vec::new(),
        }
    }
}

/// A channel configuration that cannot be simulated.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum SimError {
    /// `bitrate` is 0.
    #[error("bitrate must be at least 1 bit/s")]
    ZeroBitrate,
    /// A probability outside 0..=1.
    #[error("{name} = {value} is not a probability (0..=1)")]
    NotProbability {
        /// Which setting.
        name: &'static str,
        /// Its value.
        value: f64,
    },
    /// A burst's mean length is below 1 bit (or NaN).
    #[error("mean burst length {0} bits must be >= 1")]
    BurstTooShort(f64),
}

fn check_prob(name: &'static str, value: f64) -> Result<(), SimError> {
    if (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(SimError::NotProbability { name, value })
    }
}

impl ChannelConfig {
    /// Checks bitrate, probabilities and burst length.
    pub fn validate(&self) -> Result<(), SimError> {
        if self.bitrate == 0 {
            return Err(SimError::ZeroBitrate);
        }
        check_prob("ber", self.ber)?;
        check_prob("frame_loss", self.frame_loss)?;
        if let Some(b) = &self.burst {
            check_prob("burst enter probability", b.enter_prob)?;
            check_prob("burst ber", b.ber)?;
            if b.mean_len_bits.is_nan() || b.mean_len_bits < 1.0 {
                return Err(SimError::BurstTooShort(b.mean_len_bits));
            }
        }
        Ok(())
    }

    /// Time to send `bits` at the bitrate.
    pub fn bits_time(&self, bits: u64) -> Duration {
        let nanos = (bits as u128 * 1_000_000_000) / self.bitrate.max(1) as u128;
        Duration::from_nanos(nanos.min(u64::MAX as u128) as u64)
    }

    /// Airtime of one transparent transmission of `bytes` bytes (TXDELAY + data + hang).
    pub fn transparent_airtime(&self, bytes: usize) -> Duration {
        self.txdelay + self.bits_time(bytes as u64 * 8) + self.hang
    }

    /// Airtime of one KISS-mode transmission carrying `frames` (TXDELAY + HDLC frames + TXTAIL).
    pub fn kiss_airtime<'a>(&self, frames: impl IntoIterator<Item = &'a [u8]>) -> Duration {
        let bits: u64 = frames.into_iter().map(frame_bits).sum();
        self.txdelay + self.bits_time(bits) + self.txtail
    }
}

fn as_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Trials up to and including the first success, success probability `p`; `u64::MAX` = never.
fn geometric(rng: &mut ChaCha8Rng, p: f64) -> u64 {
    if p <= 0.0 {
        return u64::MAX;
    }
    if p >= 1.0 {
        return 1;
    }
    let u = 1.0 - rng.gen::<f64>(); // (0, 1]
    let k = (u.ln() / (-p).ln_1p()).floor();
    if k >= (u64::MAX - 1) as f64 {
        u64::MAX
    } else {
        k as u64 + 1
    }
}

fn dec(x: u64, n: u64) -> u64 {
    if x == u64::MAX {
        x
    } else {
        x - n
    }
}

/// The bit error process of one direction: Gilbert–Elliott with a per-state BER. Distances to
/// the next error and to the next state change are kept across calls, so the error positions
/// depend only on the total number of bits sent, not on how they were split.
#[derive(Debug, Clone)]
pub struct ErrorProcess {
    rng: ChaCha8Rng,
    ber_good: f64,
    burst: Option<Burst>,
    bad: bool,
    to_error: u64,
    to_switch: u64,
}

impl ErrorProcess {
    /// The process for one direction: `stream` picks its own random stream from `seed`.
    pub fn new(seed: u64, stream: u64, ber: f64, burst: Option<Burst>) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(stream);
        let mut p = ErrorProcess {
            rng,
            ber_good: ber,
            burst,
            bad: false,
            to_error: 0,
            to_switch: 0,
        };
        p.to_error = {
            let q = p.ber();
            geometric(&mut p.rng, q)
        };
        p.to_switch = {
            let q = p.switch_prob();
            geometric(&mut p.rng, q)
        };
        p
    }

    fn ber(&self) -> f64 {
        match (&self.burst, self.bad) {
            (Some(b), true) => b.ber,
            _ => self.ber_good,
        }
    }

    fn switch_prob(&self) -> f64 {
        match (&self.burst, self.bad) {
            (None, _) => 0.0,
            (Some(b), false) => b.enter_prob,
            (Some(b), true) => 1.0 / b.mean_len_bits,
        }
    }

    /// In the bad (burst) state now.
    pub fn in_burst(&self) -> bool {
        self.bad
    }

    /// Advances over `nbits` bits; returns the offsets (0-based) of the bits flipped.
    pub fn advance(&mut self, nbits: u64) -> Vec<u64> {
        let mut out = Vec::new();
        let mut pos = 0u64;
        while pos < nbits {
            let span = self.to_switch.min(nbits - pos);
            if self.to_error <= span {
                pos += self.to_error;
                out.push(pos - 1);
                self.to_switch = dec(self.to_switch, self.to_error);
                self.to_error = {
                    let q = self.ber();
                    geometric(&mut self.rng, q)
                };
            } else {
                self.to_error = dec(self.to_error, span);
                self.to_switch = dec(self.to_switch, span);
                pos += span;
            }
            if self.to_switch == 0 {
                self.bad = !self.bad;
                self.to_switch = {
                    let q = self.switch_prob();
                    geometric(&mut self.rng, q)
                };
                self.to_error = {
                    let q = self.ber();
                    geometric(&mut self.rng, q)
                };
            }
        }
        out
    }
}

/// Per-direction counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DirStats {
    /// Keyed time of the sender, seconds.
    pub airtime_s: f64,
    /// Key-ups.
    pub transmissions: u64,
    /// Bytes handed to the channel (kiss mode: frame bytes, without HDLC overhead).
    pub bytes_sent: u64,
    /// Bytes that reached the other station.
    pub bytes_delivered: u64,
    /// Bits flipped by bit errors.
    pub bits_flipped: u64,
    /// Kiss mode: frames handed to the channel.
    pub frames_sent: u64,
    /// Kiss mode: frames that reached the other station.
    pub frames_delivered: u64,
    /// Frames dropped by `frame_loss`.
    pub frames_lost_random: u64,
    /// Frames dropped because a bit error hit them (FCS would fail).
    pub frames_lost_bit_errors: u64,
    /// Kiss mode: frames the receiver missed while it was keyed itself.
    pub frames_lost_collision: u64,
    /// Kiss mode: frames lost in an outage.
    pub frames_lost_outage: u64,
    /// Transparent mode: bytes the receiver missed while it was keyed itself.
    pub bytes_lost_collision: u64,
    /// Transparent mode: bytes lost in an outage.
    pub bytes_lost_outage: u64,
    /// Transmissions that began while the other station was keyed, or at the same instant.
    pub collisions: u64,
}

/// Counters of both directions.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ChannelStats {
    /// What A sent.
    pub a_to_b: DirStats,
    /// What B sent.
    pub b_to_a: DirStats,
}

impl ChannelStats {
    /// The counters of what `from` sent.
    pub fn dir(&self, from: Side) -> &DirStats {
        match from {
            Side::A => &self.a_to_b,
            Side::B => &self.b_to_a,
        }
    }

    fn dir_mut(&mut self, from: Side) -> &mut DirStats {
        match from {
            Side::A => &mut self.a_to_b,
            Side::B => &mut self.b_to_a,
        }
    }
}

/// Something that reached a station.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The station it reached.
    pub to: Side,
    /// When the last delivered bit arrived.
    pub at: Duration,
    /// Transparent mode: bytes (lost ones missing); kiss mode: one whole frame.
    pub data: Vec<u8>,
}

#[derive(Debug, Clone)]
struct Tx {
    start: Duration,
    /// Data bits are timed from `base` (so rounding does not add up over frames).
    base: Duration,
    bits: u64,
    /// End of the last data bit queued so far.
    data_end: Duration,
    keyed_until: Duration,
}

/// A piece of a transmission on its way to the receiver.
#[derive(Debug, Clone)]
struct InFlight {
    /// The data's bits start `first_bit` bit times after `base`.
    base: Duration,
    first_bit: u64,
    /// Kiss: on-air bits of the frame.
    air_bits: u64,
    data: Vec<u8>,
    /// Transparent: bytes of `data` already handled.
    next: usize,
    /// Kiss: the frame was already condemned at send time (counted then).
    doomed: bool,
}

impl InFlight {
    /// Time `bit` bit times into this piece.
    fn at_bit(&self, cfg: &ChannelConfig, bit: u64) -> Duration {
        self.base + cfg.bits_time(self.first_bit + bit)
    }
}

#[derive(Debug, Clone)]
struct Station {
    tx: Option<Tx>,
    /// Past keyed intervals still needed for collision checks.
    history: VecDeque<(Duration, Duration)>,
    /// Kiss: frames waiting for the next transmission.
    queue: VecDeque<Vec<u8>>,
    /// Kiss: next p-persistence slot while deferring.
    slot_at: Option<Duration>,
    errors: ErrorProcess,
    loss_rng: ChaCha8Rng,
    csma_rng: ChaCha8Rng,
    /// What this station sent, on its way to the other.
    in_flight: VecDeque<InFlight>,
}

/// The channel: two stations and the air between them.
#[derive(Debug, Clone)]
pub struct Channel {
    cfg: ChannelConfig,
    stations: [Station; 2],
    /// Link cuts by command: (start, end or still down).
    cuts: Vec<(Duration, Option<Duration>)>,
    now: Duration,
    stats: ChannelStats,
}

fn overlaps(a: (Duration, Duration), b: (Duration, Duration)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

impl Channel {
    /// An idle channel at time zero; fails on an invalid configuration.
    pub fn new(cfg: ChannelConfig) -> Result<Self, SimError> {
        cfg.validate()?;
        let station = |k: u64| {
            let mut loss_rng = ChaCha8Rng::seed_from_u64(cfg.seed);
            loss_rng.set_stream(10 + k);
            let mut csma_rng = ChaCha8Rng::seed_from_u64(cfg.seed);
            csma_rng.set_stream(20 + k);
            Station {
                tx: None,
                history: VecDeque::new(),
                queue: VecDeque::new(),
                slot_at: None,
                errors: ErrorProcess::new(cfg.seed, k, cfg.ber, cfg.burst.clone()),
                loss_rng,
                csma_rng,
                in_flight: VecDeque::new(),
            }
        };
        Ok(Channel {
            stations: [station(0), station(1)],
            cfg,
            cuts: Vec::new(),
            now: Duration::ZERO,
            stats: ChannelStats::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ChannelConfig {
        &self.cfg
    }

    /// Counters so far.
    pub fn stats(&self) -> &ChannelStats {
        &self.stats
    }

    /// Cuts (`false`) or restores (`true`) the link from `now` on.
    pub fn set_link_up(&mut self, now: Duration, up: bool) {
        self.advance(now);
        let now = self.now;
        match (self.cuts.last_mut(), up) {
            (Some((_, end @ None)), true) => *end = Some(now),
            (Some((_, None)), false) => {}
            (_, false) => self.cuts.push((now, None)),
            (_, true) => {}
        }
    }

    /// Whether the link is up at `t` (no scheduled outage, no cut by command).
    pub fn link_up_at(&self, t: Duration) -> bool {
        !self.down_during((t, t + Duration::from_nanos(1)))
    }

    fn down_during(&self, iv: (Duration, Duration)) -> bool {
        self.cfg
            .outages
            .iter()
            .any(|o| overlaps(iv, (o.start, o.start + o.duration)))
            || self
                .cuts
                .iter()
                .any(|&(s, e)| overlaps(iv, (s, e.unwrap_or(Duration::MAX))))
    }

    /// Whether `side` is keyed at `t`.
    pub fn is_keyed(&self, side: Side, t: Duration) -> bool {
        self.stations[side.idx()]
            .tx
            .as_ref()
            .is_some_and(|tx| tx.start <= t && t < tx.keyed_until)
    }

    /// Whether `side` hears the other's carrier at `t`: keyed before `t` and the link up.
    fn hears_carrier(&self, side: Side, t: Duration) -> Option<Duration> {
        let other = &self.stations[side.other().idx()];
        match &other.tx {
            Some(tx) if tx.start < t && t < tx.keyed_until && self.link_up_at(t) => {
                Some(tx.keyed_until)
            }
            _ => None,
        }
    }

    /// A station hands something to its radio at `now`: bytes in transparent mode, one frame
    /// (KISS payload, without FCS) in kiss mode.
    pub fn send(&mut self, now: Duration, from: Side, data: &[u8]) {
        self.advance(now);
        if data.is_empty() {
            return;
        }
        match self.cfg.mode {
            Mode::Transparent => self.send_transparent(from, data),
            Mode::Kiss => self.send_frame(from, data),
        }
    }

    fn send_transparent(&mut self, from: Side, data: &[u8]) {
        let now = self.now;
        let i = from.idx();
        let continuing = self.stations[i]
            .tx
            .as_ref()
            .is_some_and(|tx| now <= tx.keyed_until);
        if !continuing {
            self.key_up(from, now);
        }
        let bits = data.len() as u64 * 8;
        let flips = self.stations[i].errors.advance(bits);
        let mut bytes = data.to_vec();
        for &f in &flips {
            bytes[(f / 8) as usize] ^= 1 << (f % 8);
        }
        let (start, old_until, new_until) = {
            let tx = self.stations[i].tx.as_mut().expect("keyed above");
            if now > tx.data_end {
                tx.base = now;
                tx.bits = 0;
            }
            let first_bit = tx.bits;
            tx.bits += bits;
            tx.data_end = tx.base + self.cfg.bits_time(tx.bits);
            let old = tx.keyed_until;
            tx.keyed_until = tx.data_end + self.cfg.hang;
            ((tx.base, first_bit), old, tx.keyed_until)
        };
        self.stations[i].in_flight.push_back(InFlight {
            base: start.0,
            first_bit: start.1,
            air_bits: bits,
            data: bytes,
            next: 0,
            doomed: false,
        });
        let st = self.stats.dir_mut(from);
        st.airtime_s += (new_until - old_until).as_secs_f64();
        st.bytes_sent += data.len() as u64;
        st.bits_flipped += flips.len() as u64;
    }

    /// Starts a transmission at `t`: TXDELAY before the first bit.
    fn key_up(&mut self, side: Side, t: Duration) {
        let collided = {
            let other = &self.stations[side.other().idx()];
            other
                .tx
                .as_ref()
                .is_some_and(|tx| tx.start <= t && t < tx.keyed_until)
        };
        let st = &mut self.stations[side.idx()];
        if let Some(old) = st.tx.take() {
            st.history.push_back((old.start, old.keyed_until));
        }
        let data_start = t + self.cfg.txdelay;
        st.tx = Some(Tx {
            start: t,
            base: data_start,
            bits: 0,
            data_end: data_start,
            keyed_until: data_start + self.cfg.txtail_for_mode(),
        });
        let stats = self.stats.dir_mut(side);
        stats.transmissions += 1;
        stats.airtime_s += (data_start + self.cfg.txtail_for_mode() - t).as_secs_f64();
        if collided {
            stats.collisions += 1;
        }
    }

    fn send_frame(&mut self, from: Side, frame: &[u8]) {
        let now = self.now;
        let i = from.idx();
        self.stats.dir_mut(from).frames_sent += 1;
        self.stats.dir_mut(from).bytes_sent += frame.len() as u64;
        let bundling = self.stations[i]
            .tx
            .as_ref()
            .is_some_and(|tx| tx.start <= now && now <= tx.start + self.cfg.bundle_window);
        if bundling {
            self.put_on_air(from, frame.to_vec());
            return;
        }
        let st = &mut self.stations[i];
        st.queue.push_back(frame.to_vec());
        let busy_self = st.tx.as_ref().is_some_and(|tx| now < tx.keyed_until);
        if st.slot_at.is_none() && !busy_self {
            self.start_deferring(from, now);
        }
    }

    /// Waits for a clear channel, then one SLOTTIME before the first persistence draw.
    fn start_deferring(&mut self, side: Side, t: Duration) {
        let clear = self.hears_carrier(side, t).unwrap_or(t);
        self.stations[side.idx()].slot_at = Some(clear + self.cfg.slottime);
    }

    /// Appends one frame to the current transmission and decides its fate by loss and errors.
    fn put_on_air(&mut self, from: Side, frame: Vec<u8>) {
        let i = from.idx();
        let bits = frame_bits(&frame);
        let lost = self.stations[i].loss_rng.gen::<f64>() < self.cfg.frame_loss;
        let flips = self.stations[i].errors.advance(bits).len() as u64;
        let tail = self.cfg.txtail_for_mode();
        let (start, old_until, new_until) = {
            let tx = self.stations[i].tx.as_mut().expect("keyed before frames");
            let first_bit = tx.bits;
            tx.bits += bits;
            tx.data_end = tx.base + self.cfg.bits_time(tx.bits);
            let old = tx.keyed_until;
            tx.keyed_until = tx.data_end + tail;
            ((tx.base, first_bit), old, tx.keyed_until)
        };
        let st = self.stats.dir_mut(from);
        st.airtime_s += (new_until - old_until).as_secs_f64();
        st.bits_flipped += flips;
        if lost {
            st.frames_lost_random += 1;
        } else if flips > 0 {
            st.frames_lost_bit_errors += 1;
        }
        self.stations[i].in_flight.push_back(InFlight {
            base: start.0,
            first_bit: start.1,
            air_bits: bits,
            data: frame,
            next: 0,
            doomed: lost || flips > 0,
        });
    }

    /// Runs the TNCs' timers up to `now`.
    pub fn handle_timeout(&mut self, now: Duration) {
        self.advance(now);
    }

    fn next_station_event(&self) -> Option<(Duration, Side)> {
        let mut best: Option<(Duration, Side)> = None;
        for side in [Side::A, Side::B] {
            let st = &self.stations[side.idx()];
            let mut cands = Vec::with_capacity(2);
            if let Some(t) = st.slot_at {
                cands.push(t);
            }
            if self.cfg.mode == Mode::Kiss && st.slot_at.is_none() && !st.queue.is_empty() {
                if let Some(tx) = &st.tx {
                    cands.push(tx.keyed_until);
                }
            }
            for t in cands {
                if best.is_none_or(|(b, _)| t < b) {
                    best = Some((t, side));
                }
            }
        }
        best
    }

    fn advance(&mut self, now: Duration) {
        if now > self.now {
            // Events are processed in time order; at equal times every station decides on the
            // state before that instant, so two TNCs drawing the same slot collide.
            while let Some((t, _)) = self.next_station_event() {
                if t > now {
                    break;
                }
                self.now = t;
                let due: Vec<Side> = [Side::A, Side::B]
                    .into_iter()
                    .filter(|s| self.station_event_due(*s, t))
                    .collect();
                let mut keying = Vec::new();
                for side in due {
                    if self.station_step(side, t) {
                        keying.push(side);
                    }
                }
                for side in keying {
                    self.start_kiss_tx(side, t);
                }
            }
            self.now = now;
        }
        self.prune();
    }

    fn station_event_due(&self, side: Side, t: Duration) -> bool {
        let st = &self.stations[side.idx()];
        match st.slot_at {
            Some(s) => s <= t,
            None => !st.queue.is_empty() && st.tx.as_ref().is_some_and(|tx| tx.keyed_until <= t),
        }
    }

    /// One timer of a TNC at `t`; true when it keys up now.
    fn station_step(&mut self, side: Side, t: Duration) -> bool {
        let i = side.idx();
        match self.stations[i].slot_at {
            None => {
                // Own transmission ended with frames waiting.
                self.start_deferring(side, t);
                false
            }
            Some(_) => {
                if let Some(until) = self.hears_carrier(side, t) {
                    self.stations[i].slot_at = Some(until + self.cfg.slottime);
                    return false;
                }
                let r: u8 = self.stations[i].csma_rng.gen();
                if r <= self.cfg.persist {
                    self.stations[i].slot_at = None;
                    true
                } else {
                    self.stations[i].slot_at = Some(t + self.cfg.slottime);
                    false
                }
            }
        }
    }

    fn start_kiss_tx(&mut self, side: Side, t: Duration) {
        self.key_up(side, t);
        let frames: Vec<Vec<u8>> = self.stations[side.idx()].queue.drain(..).collect();
        for f in frames {
            self.put_on_air(side, f);
        }
    }

    /// Drops keyed intervals no pending delivery can overlap any more.
    fn prune(&mut self) {
        for side in [Side::A, Side::B] {
            let incoming = &self.stations[side.other().idx()].in_flight;
            let horizon = incoming
                .front()
                .map_or(self.now, |f| f.at_bit(&self.cfg, 0).min(self.now));
            let st = &mut self.stations[side.idx()];
            while st.history.front().is_some_and(|&(_, e)| e < horizon) {
                st.history.pop_front();
            }
        }
    }

    /// Whether the receiver `side` was keyed during `iv`.
    fn receiver_deaf(&self, side: Side, iv: (Duration, Duration)) -> bool {
        let st = &self.stations[side.idx()];
        st.history.iter().any(|&h| overlaps(h, iv))
            || st
                .tx
                .as_ref()
                .is_some_and(|tx| overlaps((tx.start, tx.keyed_until), iv))
    }

    /// The next thing to reach a station by `now`, if any.
    pub fn poll_delivery(&mut self, now: Duration) -> Option<Delivery> {
        self.advance(now);
        loop {
            // The earlier of the two directions first.
            let from = [Side::A, Side::B]
                .into_iter()
                .filter_map(|s| self.next_arrival(s).map(|t| (t, s)))
                .filter(|(t, _)| *t <= self.now)
                .min_by_key(|(t, s)| (*t, s.idx()))
                .map(|(_, s)| s)?;
            let delivered = match self.cfg.mode {
                Mode::Transparent => self.take_bytes(from),
                Mode::Kiss => self.take_frame(from),
            };
            if delivered.is_some() {
                return delivered;
            }
        }
    }

    fn next_arrival(&self, from: Side) -> Option<Duration> {
        let f = self.stations[from.idx()].in_flight.front()?;
        Some(match self.cfg.mode {
            Mode::Transparent => f.at_bit(&self.cfg, (f.next as u64 + 1) * 8),
            Mode::Kiss => f.at_bit(&self.cfg, f.air_bits),
        })
    }

    fn take_bytes(&mut self, from: Side) -> Option<Delivery> {
        let to = from.other();
        let now = self.now;
        let mut out = Vec::new();
        let mut at = Duration::ZERO;
        let (mut lost_coll, mut lost_out) = (0u64, 0u64);
        while let Some(mut f) = self.stations[from.idx()].in_flight.pop_front() {
            while f.next < f.data.len() {
                let b0 = f.at_bit(&self.cfg, f.next as u64 * 8);
                let b1 = f.at_bit(&self.cfg, (f.next as u64 + 1) * 8);
                if b1 > now {
                    break;
                }
                if self.down_during((b0, b1)) {
                    lost_out += 1;
                } else if self.receiver_deaf(to, (b0, b1)) {
                    lost_coll += 1;
                } else {
                    out.push(f.data[f.next]);
                    at = b1;
                }
                f.next += 1;
            }
            if f.next < f.data.len() {
                self.stations[from.idx()].in_flight.push_front(f);
                break;
            }
        }
        let st = self.stats.dir_mut(from);
        st.bytes_lost_collision += lost_coll;
        st.bytes_lost_outage += lost_out;
        st.bytes_delivered += out.len() as u64;
        if out.is_empty() {
            None
        } else {
            Some(Delivery { to, at, data: out })
        }
    }

    fn take_frame(&mut self, from: Side) -> Option<Delivery> {
        let to = from.other();
        let f = self.stations[from.idx()].in_flight.pop_front()?;
        let end = f.at_bit(&self.cfg, f.air_bits);
        if f.doomed {
            return None;
        }
        let iv = (f.at_bit(&self.cfg, 0), end);
        if self.down_during(iv) {
            self.stats.dir_mut(from).frames_lost_outage += 1;
            return None;
        }
        if self.receiver_deaf(to, iv) {
            self.stats.dir_mut(from).frames_lost_collision += 1;
            return None;
        }
        let st = self.stats.dir_mut(from);
        st.frames_delivered += 1;
        st.bytes_delivered += f.data.len() as u64;
        Some(Delivery {
            to,
            at: end,
            data: f.data,
        })
    }

    /// The next instant at which something happens (a delivery or a TNC timer).
    pub fn poll_timeout(&self) -> Option<Duration> {
        let arrivals = [Side::A, Side::B]
            .into_iter()
            .filter_map(|s| self.next_arrival(s));
        let timers = self.next_station_event().map(|(t, _)| t);
        arrivals.chain(timers).min()
    }

    /// Whether anything is still queued, deferring or in flight.
    pub fn is_idle(&self) -> bool {
        self.stations
            .iter()
            .all(|s| s.queue.is_empty() && s.slot_at.is_none() && s.in_flight.is_empty())
    }
}

impl ChannelConfig {
    fn txtail_for_mode(&self) -> Duration {
        match self.mode {
            Mode::Transparent => self.hang,
            Mode::Kiss => self.txtail,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(x: u64) -> Duration {
        Duration::from_millis(x)
    }

    /// Runs the channel until nothing is pending or `limit`, returning all deliveries.
    fn drain(ch: &mut Channel, limit: Duration) -> Vec<Delivery> {
        let mut out = Vec::new();
        while let Some(t) = ch.poll_timeout() {
            if t > limit {
                break;
            }
            while let Some(d) = ch.poll_delivery(t) {
                out.push(d);
            }
        }
        out
    }

    fn bytes_to(ds: &[Delivery], to: Side) -> Vec<u8> {
        ds.iter()
            .filter(|d| d.to == to)
            .flat_map(|d| d.data.clone())
            .collect()
    }

    #[test]
    fn airtime_of_100_bytes_at_1200_with_300ms_txdelay() {
        let cfg = ChannelConfig::default();
        assert_eq!(
            cfg.transparent_airtime(100),
            Duration::from_nanos(300_000_000 + 666_666_666)
        );
        let mut ch = Channel::new(cfg).unwrap();
        let data: Vec<u8> = (0..100).collect();
        ch.send(Duration::ZERO, Side::A, &data);
        assert!(ch
            .poll_delivery(ms(966))
            .is_some_and(|d| d.data.len() == 99));
        let last = ch.poll_delivery(ms(967)).unwrap();
        assert_eq!(last.data, vec![99]);
        assert_eq!(last.at, Duration::from_nanos(966_666_666));
        let st = ch.stats().dir(Side::A);
        assert!((st.airtime_s - 0.966_666_666).abs() < 1e-6);
        assert_eq!(st.transmissions, 1);
        assert_eq!(st.bytes_delivered, 100);
    }

    #[test]
    fn first_byte_arrives_after_txdelay_and_one_byte_time() {
        let mut ch = Channel::new(ChannelConfig::default()).unwrap();
        ch.send(Duration::ZERO, Side::A, b"hi");
        assert_eq!(ch.poll_timeout(), Some(Duration::from_nanos(306_666_666)));
        assert_eq!(ch.poll_delivery(Duration::from_nanos(306_666_665)), None);
        assert_eq!(
            ch.poll_delivery(Duration::from_nanos(306_666_666))
                .unwrap()
                .data,
            b"h"
        );
    }

    #[test]
    fn writes_while_keyed_share_one_txdelay() {
        let mut ch = Channel::new(ChannelConfig::default()).unwrap();
        ch.send(Duration::ZERO, Side::A, &[1; 10]);
        ch.send(ms(50), Side::A, &[2; 10]);
        let ds = drain(&mut ch, ms(10_000));
        assert_eq!(bytes_to(&ds, Side::B).len(), 20);
        assert_eq!(ch.stats().a_to_b.transmissions, 1);
        // After the transmission ended, a new write keys up again.
        ch.send(ms(2_000), Side::A, &[3]);
        assert_eq!(ch.stats().a_to_b.transmissions, 2);
    }

    #[test]
    fn clean_channel_delivers_everything_both_ways() {
        let cfg = ChannelConfig {
            bitrate: 9600,
            txdelay: ms(100),
            ..Default::default()
        };
        let mut ch = Channel::new(cfg).unwrap();
        let a: Vec<u8> = (0..=255).collect();
        ch.send(Duration::ZERO, Side::A, &a);
        let ds = drain(&mut ch, ms(5_000));
        ch.send(ms(5_000), Side::B, b"reply");
        let ds2 = drain(&mut ch, ms(10_000));
        assert_eq!(bytes_to(&ds, Side::B), a);
        assert_eq!(bytes_to(&ds2, Side::A), b"reply");
        assert_eq!(ch.stats().a_to_b.collisions, 0);
    }

    fn flips_for(seed: u64, chunks: &[usize]) -> Vec<u8> {
        let cfg = ChannelConfig {
            bitrate: 1_000_000,
            txdelay: Duration::ZERO,
            ber: 1e-3,
            seed,
            ..Default::default()
        };
        let mut ch = Channel::new(cfg).unwrap();
        let mut t = Duration::ZERO;
        for &n in chunks {
            ch.send(t, Side::A, &vec![0u8; n]);
            t += ms(1_000);
        }
        bytes_to(&drain(&mut ch, t + ms(1_000)), Side::B)
    }

    #[test]
    fn same_seed_same_flips_however_the_input_is_split() {
        let one = flips_for(7, &[4000]);
        let split = flips_for(7, &[1000, 1, 999, 2000]);
        assert_eq!(one, split);
        assert!(one.iter().any(|&b| b != 0));
        assert_ne!(one, flips_for(8, &[4000]));
    }

    #[test]
    fn ber_statistics_within_bounds() {
        for &ber in &[1e-5, 1e-4, 1e-3] {
            let mut p = ErrorProcess::new(42, 0, ber, None);
            let n = 20_000_000u64;
            let mut count = 0u64;
            for _ in 0..20 {
                count += p.advance(n / 20).len() as u64;
            }
            let mean = ber * n as f64;
            let sigma = mean.sqrt();
            assert!(
                (count as f64 - mean).abs() < 5.0 * sigma,
                "ber {ber}: {count} flips, expected {mean}"
            );
        }
    }

    #[test]
    fn zero_ber_never_flips_and_one_always_does() {
        assert!(ErrorProcess::new(1, 0, 0.0, None)
            .advance(1 << 20)
            .is_empty());
        assert_eq!(ErrorProcess::new(1, 0, 1.0, None).advance(100).len(), 100);
    }

    #[test]
    fn bursts_cluster_errors_with_the_configured_rate() {
        let burst = Burst {
            enter_prob: 1e-4,
            mean_len_bits: 100.0,
            ber: 0.5,
        };
        let mut p = ErrorProcess::new(3, 0, 0.0, Some(burst));
        let n = 4_000_000u64;
        let flips = p.advance(n);
        // Fraction of bits in the bad state = e / (e + 1/L).
        let bad_frac = 1e-4 / (1e-4 + 1.0 / 100.0);
        let expected = bad_frac * 0.5 * n as f64;
        let got = flips.len() as f64;
        assert!(
            (got - expected).abs() < 0.2 * expected,
            "{got} flips, expected {expected}"
        );
        // Clustered: most errors follow another one closely; independent errors at this rate
        // would be ~2000 bits apart on average.
        let close = flips.windows(2).filter(|w| w[1] - w[0] < 50).count();
        assert!(close as f64 > 0.8 * got, "{close} of {got} clustered");
    }

    fn kiss(cfg: ChannelConfig) -> Channel {
        Channel::new(ChannelConfig {
            mode: Mode::Kiss,
            ..cfg
        })
        .unwrap()
    }

    #[test]
    fn kiss_frame_loss_rate() {
        let mut ch = kiss(ChannelConfig {
            bitrate: 1_000_000,
            txdelay: ms(1),
            frame_loss: 0.3,
            persist: 255,
            slottime: ms(1),
            seed: 11,
            ..Default::default()
        });
        let n = 10_000;
        let mut t = Duration::ZERO;
        let mut delivered = 0;
        for k in 0..n {
            let frame = format!("frame number {k:05}");
            ch.send(t, Side::A, frame.as_bytes());
            t += ms(10);
            delivered += drain(&mut ch, t).len();
        }
        let lost = n - delivered;
        assert_eq!(ch.stats().a_to_b.frames_lost_random as usize, lost);
        assert!((2_800..3_200).contains(&lost), "lost {lost} of {n}");
    }

    #[test]
    fn kiss_drops_frames_hit_by_bit_errors() {
        let mut ch = kiss(ChannelConfig {
            bitrate: 1_000_000,
            txdelay: ms(1),
            ber: 1e-3,
            persist: 255,
            slottime: ms(1),
            seed: 5,
            ..Default::default()
        });
        let frame = [0x55u8; 100];
        let bits = frame_bits(&frame);
        let n = 3_000;
        let mut t = Duration::ZERO;
        let mut delivered = Vec::new();
        for _ in 0..n {
            ch.send(t, Side::A, &frame);
            t += ms(10);
            delivered.extend(drain(&mut ch, t));
        }
        // Frames that arrive are intact.
        assert!(delivered.iter().all(|d| d.data == frame));
        let p_ok = (1.0 - 1e-3f64).powi(bits as i32);
        let ok = delivered.len() as f64 / n as f64;
        assert!((ok - p_ok).abs() < 0.05, "ok {ok}, expected {p_ok}");
        assert_eq!(
            ch.stats().a_to_b.frames_lost_bit_errors as usize,
            n - delivered.len()
        );
    }

    #[test]
    fn kiss_bundles_queued_frames_into_one_transmission() {
        let cfg = ChannelConfig {
            mode: Mode::Kiss,
            persist: 255,
            ..Default::default()
        };
        let frames: [&[u8]; 3] = [&[1; 50], &[2; 60], &[3; 70]];
        let airtime = cfg.kiss_airtime(frames);
        let mut ch = Channel::new(cfg).unwrap();
        for f in frames {
            ch.send(Duration::ZERO, Side::A, f);
        }
        let ds = drain(&mut ch, ms(10_000));
        assert_eq!(ds.len(), 3);
        assert_eq!(ds[2].data, frames[2]);
        let st = &ch.stats().a_to_b;
        assert_eq!(st.transmissions, 1);
        assert!((st.airtime_s - airtime.as_secs_f64()).abs() < 1e-9);
        // Keyed one SLOTTIME after the frames arrived (persist 255 always transmits).
        assert_eq!(ds[2].at, ms(100) + airtime);
    }

    #[test]
    fn kiss_tnc_defers_while_the_other_transmits() {
        let mut ch = kiss(ChannelConfig {
            persist: 255,
            ..Default::default()
        });
        ch.send(Duration::ZERO, Side::A, &[7; 100]);
        // A keys at 100 ms for 300 ms TXDELAY + ~700 ms of data.
        ch.send(ms(200), Side::B, &[8; 20]);
        let ds = drain(&mut ch, ms(10_000));
        assert_eq!(ds.len(), 2);
        assert_eq!(ds[0].to, Side::B);
        assert_eq!(ds[1].to, Side::A);
        assert_eq!(ch.stats().b_to_a.collisions, 0);
        assert_eq!(ch.stats().b_to_a.frames_lost_collision, 0);
    }

    #[test]
    fn kiss_simultaneous_keyups_collide() {
        let mut ch = kiss(ChannelConfig {
            persist: 255,
            ..Default::default()
        });
        ch.send(Duration::ZERO, Side::A, &[7; 40]);
        ch.send(Duration::ZERO, Side::B, &[8; 40]);
        let ds = drain(&mut ch, ms(10_000));
        assert!(ds.is_empty());
        let st = ch.stats();
        assert_eq!(st.a_to_b.collisions + st.b_to_a.collisions, 1);
        assert_eq!(st.a_to_b.frames_lost_collision, 1);
        assert_eq!(st.b_to_a.frames_lost_collision, 1);
    }

    #[test]
    fn transparent_station_cannot_hear_while_it_transmits() {
        let mut ch = Channel::new(ChannelConfig::default()).unwrap();
        ch.send(Duration::ZERO, Side::A, &[1; 100]); // keyed 0..966.7 ms
        ch.send(ms(500), Side::B, &[2; 10]); // keyed 500..866.7 ms, inside A's
        let ds = drain(&mut ch, ms(10_000));
        assert!(bytes_to(&ds, Side::A).is_empty());
        let st = ch.stats();
        assert_eq!(st.b_to_a.collisions, 1);
        assert_eq!(st.b_to_a.bytes_lost_collision, 10);
        // A's bytes that were in the air while B was keyed are lost at B.
        let got_b = bytes_to(&ds, Side::B).len() as u64;
        assert_eq!(got_b + st.a_to_b.bytes_lost_collision, 100);
        assert!(st.a_to_b.bytes_lost_collision >= 50);
    }

    #[test]
    fn scheduled_outage_and_commanded_cut() {
        let cfg = ChannelConfig {
            bitrate: 8_000, // 1 ms per byte
            txdelay: Duration::ZERO,
            outages: vec![Outage {
                start: ms(100),
                duration: ms(100),
            }],
            ..Default::default()
        };
        let mut ch = Channel::new(cfg).unwrap();
        ch.send(Duration::ZERO, Side::A, &[0; 300]);
        let ds = drain(&mut ch, ms(1_000));
        assert_eq!(bytes_to(&ds, Side::B).len(), 200);
        assert_eq!(ch.stats().a_to_b.bytes_lost_outage, 100);

        ch.set_link_up(ms(1_000), false);
        assert!(!ch.link_up_at(ms(1_000)));
        ch.send(ms(1_000), Side::A, &[0; 50]);
        ch.set_link_up(ms(1_020), true);
        let ds = drain(&mut ch, ms(2_000));
        assert_eq!(bytes_to(&ds, Side::B).len(), 30);
    }

    #[test]
    fn kiss_outage_loses_frames_and_hides_carrier() {
        let mut ch = kiss(ChannelConfig {
            persist: 255,
            bitrate: 9600,
            ..Default::default()
        });
        ch.set_link_up(Duration::ZERO, false);
        ch.send(Duration::ZERO, Side::A, &[1; 30]);
        let ds = drain(&mut ch, ms(5_000));
        assert!(ds.is_empty());
        assert_eq!(ch.stats().a_to_b.frames_lost_outage, 1);
        ch.set_link_up(ms(5_000), true);
        ch.send(ms(5_000), Side::A, &[1; 30]);
        assert_eq!(drain(&mut ch, ms(10_000)).len(), 1);
    }

    #[test]
    fn bad_config_is_refused() {
        let bad = |cfg: ChannelConfig| Channel::new(cfg).unwrap_err();
        assert_eq!(
            bad(ChannelConfig {
                bitrate: 0,
                ..Default::default()
            }),
            SimError::ZeroBitrate
        );
        assert!(matches!(
            bad(ChannelConfig {
                ber: 1.5,
                ..Default::default()
            }),
            SimError::NotProbability { name: "ber", .. }
        ));
        assert!(matches!(
            bad(ChannelConfig {
                burst: Some(Burst {
                    enter_prob: 0.1,
                    mean_len_bits: 0.5,
                    ber: 0.5
                }),
                ..Default::default()
            }),
            SimError::BurstTooShort(_)
        ));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn is_subsequence(sub: &[Vec<u8>], of: &[Vec<u8>]) -> bool {
            let mut it = of.iter();
            sub.iter().all(|x| it.any(|y| y == x))
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]

            /// Whatever both sides send and whenever, KISS frames arrive intact, in order, at
            /// most once, and every frame is accounted for.
            #[test]
            fn kiss_frames_arrive_in_order_or_are_counted_lost(
                sends in proptest::collection::vec(
                    (0u64..3_000, any::<bool>(), proptest::collection::vec(any::<u8>(), 1..80)),
                    1..40,
                ),
                loss in 0.0f64..0.5,
                ber in prop_oneof![Just(0.0), Just(1e-4), Just(1e-3)],
                persist in prop_oneof![Just(63u8), Just(255u8)],
                seed in any::<u64>(),
            ) {
                let mut sends = sends;
                sends.sort_by_key(|s| s.0);
                let mut ch = kiss(ChannelConfig {
                    bitrate: 9600,
                    txdelay: ms(50),
                    frame_loss: loss,
                    ber,
                    persist,
                    seed,
                    ..Default::default()
                });
                let mut sent: [Vec<Vec<u8>>; 2] = Default::default();
                let mut got: [Vec<Vec<u8>>; 2] = Default::default();
                for (t, from_a, frame) in &sends {
                    let t = ms(*t);
                    while let Some(next) = ch.poll_timeout() {
                        if next > t {
                            break;
                        }
                        while let Some(d) = ch.poll_delivery(next) {
                            got[d.to.other().idx()].push(d.data);
                        }
                    }
                    let from = if *from_a { Side::A } else { Side::B };
                    ch.send(t, from, frame);
                    sent[from.idx()].push(frame.clone());
                }
                for d in drain(&mut ch, Duration::from_secs(3_600)) {
                    got[d.to.other().idx()].push(d.data);
                }
                prop_assert!(ch.is_idle());
                for side in [Side::A, Side::B] {
                    let i = side.idx();
                    prop_assert!(is_subsequence(&got[i], &sent[i]));
                    let st = ch.stats().dir(side);
                    prop_assert_eq!(st.frames_sent as usize, sent[i].len());
                    prop_assert_eq!(st.frames_delivered as usize, got[i].len());
                    prop_assert_eq!(
                        st.frames_sent,
                        st.frames_delivered + st.frames_lost_random + st.frames_lost_bit_errors
                            + st.frames_lost_collision + st.frames_lost_outage
                    );
                }
            }

            /// Transparent mode: every byte is delivered or counted lost, and on a clean channel
            /// without overlapping transmissions everything arrives in order.
            #[test]
            fn transparent_bytes_are_conserved(
                sends in proptest::collection::vec(
                    (0u64..5_000, any::<bool>(), proptest::collection::vec(any::<u8>(), 1..200)),
                    1..30,
                ),
                seed in any::<u64>(),
            ) {
                let mut sends = sends;
                sends.sort_by_key(|s| s.0);
                let mut ch = Channel::new(ChannelConfig {
                    bitrate: 9600,
                    txdelay: ms(20),
                    seed,
                    ..Default::default()
                }).unwrap();
                let mut sent: [Vec<u8>; 2] = Default::default();
                let mut got: [Vec<u8>; 2] = Default::default();
                for (t, from_a, data) in &sends {
                    let t = ms(*t);
                    while let Some(d) = ch.poll_delivery(t) {
                        got[d.to.other().idx()].extend(d.data);
                    }
                    let from = if *from_a { Side::A } else { Side::B };
                    ch.send(t, from, data);
                    sent[from.idx()].extend(data);
                }
                for d in drain(&mut ch, Duration::from_secs(3_600)) {
                    got[d.to.other().idx()].extend(d.data);
                }
                let st = ch.stats().clone();
                for side in [Side::A, Side::B] {
                    let i = side.idx();
                    let d = st.dir(side);
                    prop_assert_eq!(d.bytes_sent as usize, sent[i].len());
                    prop_assert_eq!(d.bytes_delivered as usize, got[i].len());
                    prop_assert_eq!(
                        d.bytes_sent,
                        d.bytes_delivered + d.bytes_lost_collision + d.bytes_lost_outage
                    );
                    if st.a_to_b.collisions + st.b_to_a.collisions == 0 {
                        prop_assert_eq!(&got[i], &sent[i]);
                    }
                }
            }
        }
    }
}
