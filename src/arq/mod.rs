//! Stop-and-wait ARQ for a half-duplex radio channel, sans-IO.
//!
//! The two stations take turns. A turn is one transmission: an ack of what
//! the peer sent last (if anything), then data frames (retransmissions
//! first) worth up to `max_frames` full frames of airtime. The last frame passes the turn (`rem_ms == 0`).
//! The peer answers with one ack for the whole batch (cumulative + bitmap)
//! and its own data in the same transmission, so a two-way sync pays one
//! turnaround per batch each way. See `docs/arq.md` for the design and the
//! measurements behind the profile defaults.
//!
//! No clock is read here: time comes in as `now`, work goes out through
//! `poll_transmit`, `poll_timeout` and `poll_event` (the quinn-proto style).
//! One `Arq` serves one session; a restarted process starts a new session
//! (sequence numbers restart at 0).

mod config;
mod seq;
mod wire;

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub use config::{
    ArqConfig, FecShape, ACK_COPIES, FRAME_OVERHEAD_ESTIMATE, HDLC_OVERHEAD,
    TRANSPARENT_LINK_OVERHEAD, WINDOW,
};
pub use seq::Seq;
pub use wire::{
    ends_transmission, AckRepr, ArqFrame, ArqKind, DataRepr, WireError, ACK_HEADER, ACK_MAX,
    BITMAP_BYTES, DATA_HEADER,
};

/// Which side opened the session. Retries of the responder wait one
/// exchange longer, so two stations that start talking at once do not
/// collide again on every retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// This side opened the session.
    Initiator,
    /// The peer opened the session.
    Responder,
}

/// Why the link was given up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LinkLost {
    /// `tries` transmissions in a row got no answer (`ArqConfig::max_tries`).
    #[error("peer silent: no answer to {tries} transmissions in a row")]
    PeerSilent {
        /// Transmissions that got no answer.
        tries: u32,
    },
    /// Data frame `seq` was sent `sends` times and never acknowledged: far more
    /// than loss explains, so the frame itself is suspect (too big for the TNC?).
    #[error("frame {seq} sent {sends} times without being acknowledged")]
    FrameUndeliverable {
        /// Sequence number of the frame.
        seq: u16,
        /// Times it was sent.
        sends: u32,
    },
}

/// Errors returned to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ArqError {
    /// The link was given up; every call fails with this from then on.
    #[error("link lost: {0}")]
    LinkLost(LinkLost),
    /// `send` got a message of `len` bytes; one data frame carries at most `max`.
    #[error("message of {len} bytes exceeds the {max}-byte limit of one frame")]
    MessageTooLarge {
        /// Message length in bytes.
        len: usize,
        /// Largest message one data frame carries.
        max: usize,
    },
    /// A frame from the peer that breaks the protocol (dropped).
    #[error("bad frame from peer: {0}")]
    Wire(#[from] WireError),
    /// The peer's ack covers sequence numbers we have not sent yet (dropped).
    #[error("peer acknowledged frame {ack} which was never sent (next is {next})")]
    AckOfUnsent {
        /// The ack's next expected sequence number.
        ack: u16,
        /// Our next sequence number to send.
        next: u16,
    },
    /// A data frame at least a window ahead of the next one we expect (dropped).
    #[error("peer sent frame {seq} outside the window starting at {expected}")]
    OutOfWindow {
        /// Sequence number of the frame.
        seq: u16,
        /// The next sequence number we expect.
        expected: u16,
    },
}

/// Something for the layer above.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArqEvent {
    /// A message from the peer, in order, exactly once.
    Delivered(Vec<u8>),
    /// Everything queued with `send` has been acknowledged.
    AllAcked,
    /// The link was given up; the same error is returned from then on.
    LinkLost(LinkLost),
}

/// Frames to send in one key-up, in this order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmission {
    /// Ack first (and its second copy last), data frames in between.
    pub frames: Vec<ArqFrame>,
    /// Estimated time on air of the frames (without TXDELAY).
    pub airtime: Duration,
}

/// What we expect after a transmission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// We sent data or a poll: the peer must answer.
    Answer,
    /// We only acknowledged: the peer may speak, need not.
    Nothing,
}

/// Where the exchange stands. Timers live in the variants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Nobody holds the turn; we start a transmission once we have data.
    Idle,
    /// We hold the turn and transmit at the next `poll_transmit`.
    /// `attempt` counts our transmissions in a row that got no answer;
    /// `reply` is true when the peer just passed us the turn.
    Ready {
        /// Our transmissions in a row that got no answer.
        attempt: u32,
        /// The peer just passed us the turn.
        reply: bool,
    },
    /// We transmitted and passed the turn.
    AwaitingReply {
        /// When to stop waiting for the answer.
        deadline: Instant,
        /// Whether the peer must answer.
        expect: Expect,
        /// Our transmissions in a row before this one that got no answer.
        attempt: u32,
    },
    /// The peer is transmitting; its transmission ends by `ends_by`.
    Hearing {
        /// When the peer's transmission ends (from its `rem_ms`, plus slack).
        ends_by: Instant,
    },
    /// Given up; kept so the error is reported again.
    Failed(LinkLost),
}

/// What we know about a frame we sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Sent; no ack since it could have arrived.
    Unknown,
    /// An ack that came after it could have arrived does not cover it.
    Missing,
    Acked,
}

#[derive(Debug, Clone)]
struct InFlight {
    seq: Seq,
    message: Vec<u8>,
    sends: u32,
    fate: Fate,
    /// Earliest time the peer can have it; `None` while the transmission is
    /// held back by the modem (see `Deferred`).
    on_air_by: Option<Instant>,
    /// End of this frame from the start of its transmission's first frame.
    offset: Duration,
    /// Number of the transmission that last carried it.
    tx: u8,
}

/// Our last transmission, as far as timing goes.
#[derive(Debug, Clone, Copy)]
struct LastTx {
    /// Earliest time it can have ended: before that we cannot hear the peer
    /// (half duplex), unless the modem has not sent it yet.
    min_end: Instant,
    airtime: Duration,
    expect: Expect,
}

/// One ARQ endpoint.
#[derive(Debug)]
pub struct Arq {
    cfg: ArqConfig,
    role: Role,
    state: State,
    max_message: usize,
    // Sending side.
    queue: VecDeque<Vec<u8>>,
    in_flight: VecDeque<InFlight>,
    next_seq: Seq,
    last_tx: Option<LastTx>,
    /// We heard the peer while our last transmission should have been on
    /// air: a KISS TNC holds it until the peer's carrier drops (CSMA).
    deferred: bool,
    /// Airtime and expectation of a held-back transmission that goes on air
    /// together with the next one (the TNC sends queued frames in one key-up).
    carry: Option<(Duration, Expect)>,
    /// Number of our next transmission.
    next_tx: u8,
    /// The peer's transmission we are hearing, and the last one whose end we saw.
    peer_tx: Option<u8>,
    peer_end: Option<u8>,
    // Receiving side.
    next_expected: Seq,
    out_of_order: BTreeMap<u16, Vec<u8>>,
    /// Data or a poll arrived that we have not acknowledged yet.
    ack_owed: bool,
    events: VecDeque<ArqEvent>,
    stats: ArqStats,
    /// Draws the random part of each retry's backoff: stations that collided
    /// once must not retry in lockstep. Seeded (`seed_backoff`): runs repeat.
    backoff_rng: ChaCha8Rng,
}

/// Counters for progress displays, logs and the benchmark.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArqStats {
    /// Transmissions made (key-ups).
    pub transmissions: u64,
    /// Data frames sent, retransmissions included.
    pub data_frames: u64,
    /// Data frames that had been sent before.
    pub retransmissions: u64,
    /// Ack frames sent, second copies included.
    pub ack_frames: u64,
    /// Reply deadlines that passed with nothing heard.
    pub timeouts: u64,
    /// Message bytes acknowledged by the peer.
    pub bytes_acked: u64,
    /// Message bytes delivered to us.
    pub bytes_delivered: u64,
    /// Estimated airtime of our transmissions, without TXDELAY.
    pub airtime: Duration,
}

impl Arq {
    /// An idle endpoint for one session; sequence numbers start at 0.
    pub fn new(cfg: ArqConfig, role: Role) -> Arq {
        let max_message = cfg.max_message();
        Arq {
            cfg,
            role,
            state: State::Idle,
            max_message,
            queue: VecDeque::new(),
            in_flight: VecDeque::new(),
            next_seq: Seq(0),
            last_tx: None,
            deferred: false,
            carry: None,
            next_tx: 0,
            peer_tx: None,
            peer_end: None,
            next_expected: Seq(0),
            out_of_order: BTreeMap::new(),
            ack_owed: false,
            events: VecDeque::new(),
            stats: ArqStats::default(),
            backoff_rng: ChaCha8Rng::seed_from_u64(role as u64),
        }
    }

    /// Seeds the random part of the retry backoff; give each station and
    /// session its own seed.
    pub fn seed_backoff(&mut self, seed: u64) {
        self.backoff_rng = ChaCha8Rng::seed_from_u64(seed);
    }

    /// The channel parameters this endpoint works with.
    pub fn config(&self) -> &ArqConfig {
        &self.cfg
    }

    /// Where the exchange stands.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Largest message `send` accepts.
    pub fn max_message(&self) -> usize {
        self.max_message
    }

    /// The error the link failed with, if it did.
    pub fn error(&self) -> Option<&LinkLost> {
        match &self.state {
            State::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// Counters of what this ARQ sent, received and retried.
    pub fn stats(&self) -> &ArqStats {
        &self.stats
    }

    /// Nothing queued, in flight or owed, and nobody holds the turn: the
    /// session can end here.
    pub fn is_quiet(&self) -> bool {
        self.state == State::Idle && self.unacked() == 0 && !self.ack_owed
    }

    /// Another pair's transmission holds the channel until `busy_until`: our
    /// peer cannot answer before then, so the wait for its reply restarts
    /// from there instead of counting as a lost transmission.
    pub fn postpone(&mut self, busy_until: Instant) {
        if let State::AwaitingReply { deadline, .. } = &mut self.state {
            let d = busy_until + self.cfg.reply_wait();
            if *deadline < d {
                *deadline = d;
            }
        }
    }

    /// Everything we sent is acknowledged and we owe the peer no ack (we may
    /// still be waiting in case it repeats something).
    pub fn owes_nothing(&self) -> bool {
        self.unacked() == 0 && !self.ack_owed
    }

    /// Forgets data frames held for a gap (they are not acked, so the peer
    /// sends them again): frames taken before the peer was authenticated must
    /// not be delivered after it.
    pub fn drop_out_of_order(&mut self) {
        self.out_of_order.clear();
    }

    /// Whether data frame `seq` of the peer was delivered already.
    pub fn delivered(&self, seq: u16) -> bool {
        Seq(seq).distance(self.next_expected) < 0
    }

    /// Messages queued or in flight that the peer has not acknowledged.
    pub fn unacked(&self) -> usize {
        self.queue.len()
            + self
                .in_flight
                .iter()
                .filter(|f| f.fate != Fate::Acked)
                .count()
    }

    /// Queue one message; it is delivered to the peer in order, exactly once.
    pub fn send(&mut self, message: Vec<u8>) -> Result<(), ArqError> {
        self.check_failed()?;
        if message.len() > self.max_message {
            return Err(ArqError::MessageTooLarge {
                len: message.len(),
                max: self.max_message,
            });
        }
        self.queue.push_back(message);
        Ok(())
    }

    fn check_failed(&self) -> Result<(), ArqError> {
        match &self.state {
            State::Failed(e) => Err(ArqError::LinkLost(e.clone())),
            _ => Ok(()),
        }
    }

    /// A frame arrived (its CRC already checked by the frame layer).
    pub fn handle_input(&mut self, now: Instant, frame: ArqFrame) -> Result<(), ArqError> {
        self.check_failed()?;
        let (rem_ms, tx) = match frame.kind {
            ArqKind::Data => {
                let d = DataRepr::parse(frame.seq, &frame.payload)?;
                self.on_data(d.seq, d.message)?;
                (d.rem_ms, d.tx)
            }
            ArqKind::Ack => {
                let a = AckRepr::parse(frame.seq, &frame.payload)?;
                self.on_ack(&a)?;
                if a.poll {
                    self.ack_owed = true;
                }
                (a.rem_ms, a.tx)
            }
        };
        self.peer_tx = Some(tx);
        if self.error().is_some() {
            return Ok(());
        }
        if let Some(last) = self.last_tx {
            if now < last.min_end && !self.deferred {
                // Heard while we should be transmitting: the modem is
                // holding our frames back until the peer's carrier drops.
                self.deferred = true;
                for f in self.in_flight.iter_mut() {
                    if f.fate == Fate::Unknown && f.on_air_by.is_some_and(|t| t > now) {
                        f.on_air_by = None;
                    }
                }
            }
        }
        // The peer is alive: whatever we were waiting for, we now follow its turn.
        if rem_ms == 0 {
            self.turn_to_us(now);
        } else {
            self.state = State::Hearing {
                ends_by: now + Duration::from_millis(rem_ms.into()) + self.cfg.rx_slack(),
            };
        }
        Ok(())
    }

    /// The peer's carrier is down: our turn. A held-back transmission of
    /// ours goes on air now.
    fn turn_to_us(&mut self, now: Instant) {
        self.peer_end = self.peer_tx;
        if self.deferred {
            self.deferred = false;
            let base = now + self.cfg.min_key_up();
            for f in self.in_flight.iter_mut() {
                if f.on_air_by.is_none() {
                    f.on_air_by = Some(base + f.offset);
                }
            }
            if let Some(last) = self.last_tx.take() {
                self.carry = Some((last.airtime, last.expect));
            }
        }
        self.state = State::Ready {
            attempt: 0,
            reply: true,
        };
    }

    fn on_data(&mut self, seq: Seq, message: &[u8]) -> Result<(), ArqError> {
        let d = seq.distance(self.next_expected);
        if d < 0 {
            // Already delivered: the ack was lost. Ack again, deliver nothing.
            self.ack_owed = true;
            return Ok(());
        }
        if d >= i32::from(WINDOW) {
            return Err(ArqError::OutOfWindow {
                seq: seq.0,
                expected: self.next_expected.0,
            });
        }
        self.ack_owed = true;
        if d > 0 {
            self.out_of_order
                .entry(seq.0)
                .or_insert_with(|| message.to_vec());
            return Ok(());
        }
        self.stats.bytes_delivered += message.len() as u64;
        self.events.push_back(ArqEvent::Delivered(message.to_vec()));
        self.next_expected = self.next_expected.plus(1);
        while let Some(m) = self.out_of_order.remove(&self.next_expected.0) {
            self.stats.bytes_delivered += m.len() as u64;
            self.events.push_back(ArqEvent::Delivered(m));
            self.next_expected = self.next_expected.plus(1);
        }
        Ok(())
    }

    fn on_ack(&mut self, a: &AckRepr) -> Result<(), ArqError> {
        let first = self.in_flight.front().map_or(self.next_seq, |f| f.seq);
        if a.next_expected.distance(self.next_seq) > 0 {
            return Err(ArqError::AckOfUnsent {
                ack: a.next_expected.0,
                next: self.next_seq.0,
            });
        }
        // An ack older than what is already acknowledged tells nothing new
        // (cannot happen on a turn-taking channel, but a peer may misbehave).
        if a.next_expected.before(first) {
            return Ok(());
        }
        let had_unacked = self.unacked() > 0;
        // How many transmissions ago `tx` was (1 = our last one).
        let next_tx = self.next_tx;
        let age = |tx: u8| next_tx.wrapping_sub(tx);
        // The peer saw the end of our transmission `echo`: what it does not
        // have from that one or an earlier one was lost. (Its arrival time
        // says nothing: a TNC may have held the ack back.)
        let seen = a.echo.map(age).filter(|&e| (1..=128).contains(&e));
        for f in self.in_flight.iter_mut() {
            if f.fate == Fate::Acked {
                continue;
            }
            let d = f.seq.distance(a.next_expected);
            if d < 0 || ((1..=63).contains(&d) && a.received & (1u64 << (d - 1)) != 0) {
                f.fate = Fate::Acked;
                self.stats.bytes_acked += f.message.len() as u64;
            } else if f.fate == Fate::Unknown && seen.is_some_and(|e| age(f.tx) >= e) {
                f.fate = Fate::Missing;
            }
        }
        while self
            .in_flight
            .front()
            .is_some_and(|f| f.fate == Fate::Acked)
        {
            self.in_flight.pop_front();
        }
        if had_unacked && self.unacked() == 0 {
            self.events.push_back(ArqEvent::AllAcked);
        }
        Ok(())
    }

    /// A deadline from `poll_timeout` may have passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::AwaitingReply {
                deadline,
                expect,
                attempt,
            } if now >= deadline => match expect {
                Expect::Nothing => self.state = State::Idle,
                Expect::Answer => {
                    self.stats.timeouts += 1;
                    let attempt = attempt + 1;
                    if attempt >= self.cfg.max_tries {
                        self.fail(LinkLost::PeerSilent { tries: attempt });
                    } else {
                        self.state = State::Ready {
                            attempt,
                            reply: false,
                        };
                    }
                }
            },
            // The peer's last frame got lost: its carrier is down by now.
            State::Hearing { ends_by } if now >= ends_by => self.turn_to_us(now),
            _ => {}
        }
    }

    fn fail(&mut self, reason: LinkLost) {
        self.events.push_back(ArqEvent::LinkLost(reason.clone()));
        self.state = State::Failed(reason);
    }

    /// The next deadline to call `handle_timeout` at.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::AwaitingReply { deadline, .. } => Some(deadline),
            State::Hearing { ends_by } => Some(ends_by),
            _ => None,
        }
    }

    /// The next event for the layer above, if any.
    pub fn poll_event(&mut self) -> Option<ArqEvent> {
        self.events.pop_front()
    }

    /// Frames to send now, in one transmission, if it is our turn.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmission> {
        let (attempt, reply) = match self.state {
            State::Ready { attempt, reply } => (attempt, reply),
            State::Idle if !self.queue.is_empty() || self.unacked() > 0 => (0, false),
            _ => return None,
        };
        let (carried, carried_expect) = self
            .carry
            .take()
            .unwrap_or((Duration::ZERO, Expect::Nothing));
        let (frames, mut expect) = match self.build(now, carried) {
            Ok(Some(built)) => built,
            Ok(None) => {
                // Nothing to add, but a held-back transmission goes on air now.
                self.state = match carried_expect {
                    _ if carried.is_zero() => State::Idle,
                    expect => {
                        let min_end = now + self.cfg.min_key_up() + carried;
                        self.last_tx = Some(LastTx {
                            min_end,
                            airtime: carried,
                            expect,
                        });
                        State::AwaitingReply {
                            deadline: now + self.cfg.key_up() + carried + self.cfg.reply_wait(),
                            expect,
                            attempt,
                        }
                    }
                };
                return None;
            }
            Err(lost) => {
                self.fail(lost);
                return None;
            }
        };
        if carried_expect == Expect::Answer {
            expect = Expect::Answer;
        }
        let airtime: Duration = frames
            .iter()
            .map(|f| self.cfg.frame_airtime_of(&f.payload))
            .sum();
        let floor: Duration = frames
            .iter()
            .map(|f| self.cfg.frame_airtime_floor(f.payload.len()))
            .sum();
        self.last_tx = Some(LastTx {
            min_end: now + self.cfg.min_key_up() + carried + floor,
            airtime: carried + airtime,
            expect,
        });
        let tx_end = now + self.cfg.key_up() + carried + airtime;
        let mut deadline = tx_end + self.cfg.reply_wait();
        if expect == Expect::Answer {
            // Full jitter where the modem draws no randomness itself: anywhere
            // up to the doubling backoff, so stations that collided spread out
            // instead of colliding again.
            // Until the peer is heard, even the first retry is jittered: two
            // stations that called at the same instant would otherwise call
            // again at the same instant, and again (found on a loaded machine).
            let unheard = self.peer_end.is_none() && self.peer_tx.is_none();
            let cap = if self.cfg.jitter && unheard {
                self.cfg.backoff(attempt.max(1))
            } else {
                self.cfg.backoff(attempt)
            };
            deadline += if self.cfg.jitter {
                cap.mul_f64(self.backoff_rng.gen::<f64>())
            } else {
                cap
            };
            // Only a transmission that did not answer a turn can collide.
            if self.role == Role::Responder && !reply {
                deadline += self.cfg.exchange_overhead() + self.cfg.reply_wait();
            }
        }
        self.state = State::AwaitingReply {
            deadline,
            expect,
            attempt,
        };
        self.stats.transmissions += 1;
        self.stats.airtime += airtime;
        Some(Transmission { frames, airtime })
    }

    /// Choose the frames of one transmission; `None` if there is nothing to say.
    #[allow(clippy::type_complexity)]
    fn build(
        &mut self,
        now: Instant,
        carried: Duration,
    ) -> Result<Option<(Vec<ArqFrame>, Expect)>, LinkLost> {
        let mut data: Vec<usize> = Vec::new(); // indexes into in_flight
        let mut poll = false;
        let missing: Vec<usize> = (0..self.in_flight.len())
            .filter(|&i| self.in_flight[i].fate == Fate::Missing)
            .collect();
        // Sent, arrived by now if at all, and no ack since: most likely the
        // ack was lost.
        let stale: Vec<usize> = (0..self.in_flight.len())
            .filter(|&i| {
                let f = &self.in_flight[i];
                f.fate == Fate::Unknown && f.on_air_by.is_some_and(|t| t <= now)
            })
            .collect();
        let air_of = |cfg: &ArqConfig, m: &[u8]| cfg.frame_airtime(DATA_HEADER + m.len());
        let budget = self.cfg.transmission_budget();
        if missing.is_empty() && !stale.is_empty() {
            // Resend them if that is cheaper than an extra exchange, else poll.
            let air: Duration = stale
                .iter()
                .map(|&i| air_of(&self.cfg, &self.in_flight[i].message))
                .sum();
            if air <= self.cfg.exchange_overhead() {
                data = stale;
            } else {
                poll = true;
            }
        } else {
            // Retransmissions first, then new messages, within the airtime
            // budget (always at least one frame) and the window.
            let mut used = Duration::ZERO;
            for i in missing {
                let air = air_of(&self.cfg, &self.in_flight[i].message);
                if !data.is_empty() && used + air > budget {
                    break;
                }
                used += air;
                data.push(i);
            }
            let window_start = self.in_flight.front().map_or(self.next_seq, |f| f.seq);
            while self.next_seq.distance(window_start) < i32::from(WINDOW) {
                let Some(next) = self.queue.front() else {
                    break;
                };
                let air = air_of(&self.cfg, next);
                if !data.is_empty() && used + air > budget {
                    break;
                }
                used += air;
                let message = self.queue.pop_front().unwrap_or_default();
                self.in_flight.push_back(InFlight {
                    seq: self.next_seq,
                    message,
                    sends: 0,
                    fate: Fate::Unknown,
                    on_air_by: None,
                    offset: Duration::ZERO,
                    tx: 0,
                });
                self.next_seq = self.next_seq.plus(1);
                data.push(self.in_flight.len() - 1);
            }
        }
        // Far beyond what loss explains: the frame itself is at fault (too big for the TNC?).
        let limit = (self.cfg.max_tries * 4).max(8);
        let mut frames = Vec::with_capacity(data.len() + 1);
        let ack = (self.ack_owed || poll).then(|| self.ack_frame(poll));
        self.ack_owed = false;
        if let Some(ack) = &ack {
            frames.push(ack.clone());
            self.stats.ack_frames += 1;
        }
        for &i in &data {
            let f = &mut self.in_flight[i];
            if f.sends >= limit {
                return Err(LinkLost::FrameUndeliverable {
                    seq: f.seq.0,
                    sends: f.sends,
                });
            }
            if f.sends > 0 {
                self.stats.retransmissions += 1;
            }
            f.sends += 1;
            self.stats.data_frames += 1;
            frames.push(
                DataRepr {
                    seq: f.seq,
                    rem_ms: 0,
                    tx: 0,
                    message: &f.message,
                }
                .emit(),
            );
        }
        // A second copy of the ack at the end: losing the only copy costs a
        // timeout and an extra exchange, far more than the copy's airtime.
        if let Some(ack) = ack {
            if self.cfg.ack_copies > 1 {
                frames.push(ack);
                self.stats.ack_frames += 1;
            }
        }
        if frames.is_empty() {
            return Ok(None);
        }
        // Each frame announces the airtime still to come after it.
        let tx = self.next_tx;
        self.next_tx = tx.wrapping_add(1);
        let mut rem = Duration::ZERO;
        for f in frames.iter_mut().rev() {
            let ms = rem.as_micros().div_ceil(1000).min(u128::from(u16::MAX)) as u16;
            wire::set_header(f, ms, tx);
            rem += self.cfg.frame_airtime_of(&f.payload);
        }
        // When each data frame can have arrived at the earliest.
        let start = now + self.cfg.min_key_up();
        let mut offset = carried;
        let mut next_data = data.iter();
        for f in &frames {
            offset += self.cfg.frame_airtime_of(&f.payload);
            if f.kind == ArqKind::Data {
                if let Some(&i) = next_data.next() {
                    let inf = &mut self.in_flight[i];
                    inf.fate = Fate::Unknown;
                    inf.offset = offset;
                    inf.on_air_by = Some(start + offset);
                    inf.tx = tx;
                }
            }
        }
        let expect = if data.is_empty() && !poll {
            Expect::Nothing
        } else {
            Expect::Answer
        };
        Ok(Some((frames, expect)))
    }

    fn ack_frame(&self, poll: bool) -> ArqFrame {
        let mut received = 0u64;
        for &seq in self.out_of_order.keys() {
            let d = Seq(seq).distance(self.next_expected);
            if (1..=63).contains(&d) {
                received |= 1 << (d - 1);
            }
        }
        AckRepr {
            next_expected: self.next_expected,
            rem_ms: 0,
            tx: 0,
            poll,
            echo: self.peer_end,
            received,
        }
        .emit()
    }
}

#[cfg(test)]
mod tests;
