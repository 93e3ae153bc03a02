//! Two stations on the channel model in virtual time: the in-process test and
//! benchmark harness. Each side is a `Station` (real store, real engines) whose
//! port bytes go through the channel exactly as chansim would move them between
//! two pseudo-terminals (`HostPorts`).
//!
//! Time is a `Duration` since the channel's zero, mapped onto an `Instant`
//! base taken once; nothing waits on the wall clock.

use std::time::{Duration, Instant};

use super::{Burst, Channel, ChannelConfig, HostPorts, Mode, Side, SimError};
use crate::daemon::Station;
use crate::profile::{Framing, Profile};

/// The air between two ports.
pub struct SimLink {
    /// The channel model, for its counters and link cuts.
    pub channel: Channel,
    epoch: Instant,
    now: Duration,
    ports: HostPorts,
}

fn idx(side: Side) -> usize {
    match side {
        Side::A => 0,
        Side::B => 1,
    }
}

/// Channel settings matching a profile (bitrate, TXDELAY, channel access),
/// with the given impairments.
pub fn channel_config(
    p: &Profile,
    ber: f64,
    burst: Option<Burst>,
    frame_loss: f64,
    seed: u64,
) -> ChannelConfig {
    ChannelConfig {
        mode: match p.framing {
            Framing::Kiss => Mode::Kiss,
            Framing::Transparent => Mode::Transparent,
        },
        bitrate: p.bitrate,
        txdelay: Duration::from_millis(p.txdelay_ms.into()),
        ber,
        burst,
        frame_loss,
        persist: p.persist.min(255) as u8,
        slottime: Duration::from_millis(p.slottime_ms.into()),
        seed,
        ..ChannelConfig::default()
    }
}

impl SimLink {
    /// A link at virtual time zero; fails on an invalid channel configuration.
    pub fn new(cfg: ChannelConfig) -> Result<SimLink, SimError> {
        let ports = HostPorts::new(cfg.mode);
        Ok(SimLink {
            channel: Channel::new(cfg)?,
            epoch: Instant::now(),
            now: Duration::ZERO,
            ports,
        })
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now
    }

    /// Virtual time as the stations see it.
    pub fn now(&self) -> Instant {
        self.epoch + self.now
    }

    /// The stations' instant at channel time `t`.
    pub fn instant(&self, t: Duration) -> Instant {
        self.epoch + t
    }

    /// Channel time at the stations' instant `t` (zero before the start).
    pub fn since_start(&self, t: Instant) -> Duration {
        t.saturating_duration_since(self.epoch)
    }

    /// A station writes `bytes` to its port now.
    pub fn write(&mut self, side: Side, bytes: &[u8]) {
        for on_air in self.ports.from_host(side, bytes) {
            self.channel.send(self.now, side, &on_air);
        }
    }

    /// What reached a port by now, as the port would read it.
    pub fn read(&mut self) -> Vec<(Side, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some(d) = self.channel.poll_delivery(self.now) {
            out.push((d.to, self.ports.to_host(d.data)));
        }
        out
    }

    /// The next thing the channel will do.
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.channel.poll_timeout()
    }

    /// Moves time forward (never back).
    pub fn advance_to(&mut self, t: Duration) {
        if t > self.now {
            self.now = t;
            self.channel.handle_timeout(t);
        }
    }

    /// Cut or restore the link now.
    pub fn set_link_up(&mut self, up: bool) {
        self.channel.set_link_up(self.now, up);
    }
}

/// Two stations on a `SimLink`. A side may be absent (its process is down):
/// whatever reaches it meanwhile is lost, as on a pty nobody reads... except
/// that chansim keeps bytes in the tty buffer; `buffer_while_down` models that.
pub struct SimPair {
    /// The air between them.
    pub link: SimLink,
    /// Station A and B; `None` while its process is down.
    pub stations: [Option<Station>; 2],
    /// Bytes that reached a side while its station was down (chansim keeps
    /// up to 4 KiB in the tty buffer for a restarted process).
    pub pending: [Vec<u8>; 2],
    /// Transmissions written so far, per side.
    pub tx_count: [u64; 2],
    /// Per side, numbers (from 0, as in `tx_count`) of transmissions lost on the way.
    pub lose_tx: [Vec<u64>; 2],
}

/// Limits and outcome of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    /// The predicate held.
    Done,
    /// Nothing left to happen (no timer anywhere).
    Stalled,
    /// The time limit passed.
    TimeLimit,
}

const TTY_BUFFER: usize = 4096;

impl SimPair {
    /// Both stations up on `link`.
    pub fn new(link: SimLink, a: Station, b: Station) -> SimPair {
        SimPair {
            link,
            stations: [Some(a), Some(b)],
            pending: [Vec::new(), Vec::new()],
            tx_count: [0, 0],
            lose_tx: [Vec::new(), Vec::new()],
        }
    }

    /// The station on `side`, if it is up.
    pub fn station(&mut self, side: Side) -> Option<&mut Station> {
        self.stations[idx(side)].as_mut()
    }

    /// Takes a station off the link (its process stops); returns it.
    pub fn take(&mut self, side: Side) -> Option<Station> {
        self.stations[idx(side)].take()
    }

    /// Puts a station (back) on the link; bytes buffered meanwhile reach it.
    pub fn put(&mut self, side: Side, st: Station) {
        self.stations[idx(side)] = Some(st);
        let bytes = std::mem::take(&mut self.pending[idx(side)]);
        if !bytes.is_empty() {
            let now = self.link.now();
            if let Some(s) = self.stations[idx(side)].as_mut() {
                s.handle_bytes(now, &bytes);
            }
        }
    }

    /// Runs every station's work due now: deliveries, timeouts, transmissions.
    fn work_now(&mut self) {
        let now = self.link.now();
        for (to, bytes) in self.link.read() {
            match self.stations[idx(to)].as_mut() {
                Some(s) => s.handle_bytes(now, &bytes),
                None => {
                    let p = &mut self.pending[idx(to)];
                    let room = TTY_BUFFER.saturating_sub(p.len());
                    p.extend_from_slice(&bytes[..bytes.len().min(room)]);
                }
            }
        }
        for side in [Side::A, Side::B] {
            let Some(s) = self.stations[idx(side)].as_mut() else {
                continue;
            };
            if s.poll_timeout().is_some_and(|t| t <= now) {
                s.handle_timeout(now);
            }
            while let Some(tx) = s.poll_transmit(now) {
                let n = self.tx_count[idx(side)];
                self.tx_count[idx(side)] += 1;
                if !self.lose_tx[idx(side)].contains(&n) {
                    self.link.write(side, &tx);
                }
            }
        }
    }

    /// The next instant anything happens.
    pub fn next_event(&self) -> Option<Duration> {
        let stations = self
            .stations
            .iter()
            .flatten()
            .filter_map(|s| s.poll_timeout())
            .map(|t| self.link.since_start(t));
        stations
            .chain(self.link.poll_timeout())
            .filter(|&t| t > self.link.elapsed())
            .min()
    }

    /// Runs until `done` holds (checked after every step), nothing is left to
    /// happen, or virtual time reaches `limit`.
    pub fn run_until(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&mut SimPair) -> bool,
    ) -> RunEnd {
        loop {
            self.work_now();
            if done(self) {
                return RunEnd::Done;
            }
            match self.next_event() {
                None => return RunEnd::Stalled,
                Some(t) if t > limit => {
                    self.link.advance_to(limit);
                    return RunEnd::TimeLimit;
                }
                Some(t) => self.link.advance_to(t),
            }
        }
    }
}
