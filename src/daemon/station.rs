//! One station on one link: the store, the link framing, and an engine per
//! session, with frames routed by session id. No clock and no async: time
//! comes in as `now`, so the tokio loop and the virtual-time harness
//! (`simlink`) drive the same code.
//!
//! A frame of an unknown session that is a data frame with sequence 0 (a
//! Hello's first frame) starts a responder engine when the station answers
//! calls; anything else of an unknown session is ignored,
//! except that the last data or ack frame of a transmission of an unknown session
//! (one this station forgot in a restart) is answered with a control frame
//! "unknown session": its caller then ends that session and calls again,
//! resuming, instead of waiting for its retries to run out.
//!
//! TIME-WAIT: a session that ended well keeps its engine for a while, so a
//! peer that lost our last ack and resends an already delivered frame (or
//! polls) is acked again and ends its session instead of retrying for minutes.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crate::arq::{ArqConfig, LinkLost};
use crate::capture::RecordKind;
use crate::delta::StationId;
use crate::engine::{
    unknown_session_frame, Engine, EngineConfig, EngineError, EngineEvent, EngineStats,
};
use crate::frame::ax25::Callsign;
use crate::frame::framer::{LinkFramer, RxFrame};
use crate::frame::link::Ax25Addresses;
use crate::frame::FrameKind;
use crate::profile::Profile;
use crate::store::cast::CastExport;
use crate::store::{Store, StoreError};
use crate::sync::beacon::Beacon;
use crate::sync::cast::{CastPiece, Held, CAST_HEADER_MAX};
use crate::sync::{BundleId, Progress, Role, SessionError, Summary};

/// AX.25 destination of beacons.
const BEACON_DEST: &str = "BEACON";
/// AX.25 destination of broadcast pieces ("calling all stations").
const CAST_DEST: &str = "QST";
/// Route destination of beacons on links without AX.25: every station.
const BROADCAST: u16 = 0xffff;
/// A beacon due while sessions run waits at most this long before trying again.
const BEACON_RETRY: Duration = Duration::from_secs(30);
/// Beacons go out at most this often, whatever `run --beacon` says.
const BEACON_MIN_INTERVAL: Duration = Duration::from_secs(10);
/// A station's beacons are taken into the store at most this often.
const BEACON_NOTE_INTERVAL: Duration = Duration::from_secs(10);

use super::store_work::{do_store_work, local_info, BundleLimit, StoreWorkError};

/// Records frames (sent and received, raw on-air bytes) and notes.
pub type FrameRecorder = Box<dyn FnMut(Instant, RecordKind, &[u8]) + Send>;

/// Why a station could not start or run a session.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StationError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The engine could not be built (callsign, FEC, session setup).
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A callsign in the store does not parse.
    #[error("callsign {call:?} of {whose} is not a valid amateur callsign: {why}")]
    BadCallsign {
        /// "this station" or the peer's name.
        whose: String,
        /// The callsign as stored.
        call: String,
        /// What is wrong with it.
        why: String,
    },
    /// A session with this peer (named) is already running.
    #[error("a sync with {0} is already running")]
    Busy(String),
}

/// Why a station gave a session's link up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LinkLoss {
    /// The ARQ's own verdict.
    #[error(transparent)]
    Arq(#[from] LinkLost),
    /// The peer said it knows no such session.
    #[error("the peer does not know this session (it restarted)")]
    PeerForgot,
    /// Our call was never answered.
    #[error(
        "peer silent: no answer to {calls} calls; is its daemon running on this channel with \
         the same profile?"
    )]
    NeverAnswered {
        /// Unanswered calls (`CALL_TRIES`).
        calls: u32,
    },
    /// The peer answered, then stopped: ended so that the shell calls again.
    #[error("no answer to {transmissions} transmissions after the peer had answered")]
    StoppedAnswering {
        /// Unanswered transmissions (`RECALL_AFTER`).
        transmissions: u32,
    },
    /// Nothing heard from the peer for the station's silence limit.
    #[error("peer silent: nothing heard for {secs} s")]
    Silent {
        /// The silence limit, in seconds.
        secs: u64,
    },
    /// The peer called again in a new session, which replaced this one.
    #[error("superseded by session {by:04x}")]
    Superseded {
        /// The new session's id.
        by: u16,
    },
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Session id.
    pub session: u16,
    /// Whether this station called or answered.
    pub role: Role,
    /// The peer's name here (or its UUID if it is not registered).
    pub peer: Option<String>,
    /// What the session did, or why it failed.
    pub result: Result<Summary, SessionError>,
    /// Why the link was given up, when it was.
    pub link_lost: Option<LinkLoss>,
    /// The session's counters.
    pub stats: EngineStats,
    /// Rows the budget (`sync --budget`) left for a later session.
    pub left_for_budget: u64,
}

/// A running session, for progress displays.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionView {
    /// Session id.
    pub session: u16,
    /// Whether this station called or answered.
    pub role: Role,
    /// The peer's name here, once known.
    pub peer: Option<String>,
    /// Bundle transfer progress each way.
    pub progress: Progress,
    /// The session's counters so far.
    pub stats: EngineStats,
}

struct Slot {
    engine: Engine,
    peer_name: Option<String>,
    last_heard: Instant,
    link_lost: Option<LinkLoss>,
    /// `sync --budget`: what this station sends must be on air by then.
    budget_end: Option<Instant>,
    /// Rows the budget left for a later session.
    left_for_budget: u64,
}

/// Counters of frames no session took.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StationStats {
    /// Frames off the link, decoded or not, of every session.
    pub frames_received: u64,
    /// Frames that did not decode.
    pub bad_frames: u64,
    /// Frames no running session took (unknown or closed sessions, not for us).
    pub ignored_frames: u64,
    /// "Unknown session" answers sent.
    pub unknown_told: u64,
    /// Refusals sent to callers that were not accepted.
    pub refusals_sent: u64,
    /// Refusals held back (the same caller was refused a moment before).
    pub refusals_held_back: u64,
}

/// Refusals sent to one caller.
struct Refusals {
    last: Instant,
    held_back: u64,
    first: bool,
}

/// At most one refusal per caller this often (and one transmission of all
/// callers not yet accepted): a refusal with FEC costs ~70 bytes, so junk
/// calls get back a few percent of what they send.
pub const REFUSAL_INTERVAL: Duration = Duration::from_secs(30);
/// At most one "unknown session" answer this often.
pub const UNKNOWN_INTERVAL: Duration = Duration::from_secs(10);
const MAX_REFUSAL_MEMORY: usize = 1024;
/// Refusals to all callers together per `REFUSAL_INTERVAL`.
const MAX_REFUSALS: u32 = 2;
/// Callers not yet accepted at a time.
const MAX_UNPROVEN: usize = 4;

/// One station on one link: routes frames to an engine per session and does
/// their store work. See the module docs.
pub struct Station {
    store: Store,
    profile: Profile,
    local_call: Option<Callsign>,
    /// This station's short address where frames carry routes (`uses_routes`).
    address: Option<u16>,
    framer: LinkFramer,
    sessions: BTreeMap<u16, Slot>,
    /// "Unknown session" answers waiting to be sent.
    tell: VecDeque<Vec<u8>>,
    /// Recently closed sessions: their stray frames are not answered "unknown".
    closed: VecDeque<Closed>,
    /// Acks of closed sessions waiting to be sent (recorded when built).
    reacks: VecDeque<Vec<u8>>,
    accept_calls: bool,
    outcomes: VecDeque<Outcome>,
    notes: VecDeque<String>,
    recorder: Option<FrameRecorder>,
    stats: StationStats,
    /// A session that hears nothing this long while its ARQ holds no timer
    /// (it waits for the peer) is given up.
    silence_limit: Duration,
    /// Refusals per caller, for the rate limit.
    refusals: std::collections::HashMap<String, Refusals>,
    /// When an "unknown session" answer last went out.
    last_unknown_told: Option<Instant>,
    /// `run --beacon`: how often this station announces itself, and when next.
    beacon_every: Option<Duration>,
    next_beacon: Option<Instant>,
    /// Beacons taken into the store, per station: at most one per `BEACON_NOTE_INTERVAL`.
    beacons_noted: BTreeMap<StationId, Instant>,
    last_beacon_write: Option<Instant>,
    /// When a session not yet accepted last transmitted.
    last_unproven_tx: Option<Instant>,
    /// Refusals sent in the current interval: (its start, how many).
    refusal_window: Option<(Instant, u32)>,
    /// Carrier sense on links whose modem has none (`CarrierSense`).
    carrier: Option<CarrierSense>,
    /// Broadcast pieces still to go out, a transmission each (`start_cast`).
    cast_out: VecDeque<Vec<u8>>,
    /// When the next broadcast transmission may go: the last one's estimated
    /// end on air (the modem or TNC must not be handed all of them at once,
    /// or a session's call would wait behind minutes of them).
    cast_next_at: Option<Instant>,
    /// Broadcasts refused per peer, for the rate limit of their log lines.
    cast_refused: BTreeMap<StationId, Instant>,
}

/// A transparent radio keys up whenever it is given bytes; on a shared channel
/// the station listens before it talks instead (the TNC does it on KISS
/// links). Bytes arriving mean a carrier; a frame's `rem_ms` says how long its
/// transmission goes on. When another pair's transmission ends, a random
/// number of slots keeps the stations that waited for it from starting
/// together. The end of our own peer's transmission is our turn: no wait.
struct CarrierSense {
    /// Another pair was heard: the channel is shared. Until then a station
    /// alone with its peer does not wait at all (a pair loses nothing).
    shared: bool,
    /// Transmissions wait until then.
    quiet_at: Option<Instant>,
    /// How long bytes keep the channel busy without a frame's word for it.
    hold: Duration,
    /// One slot of the random wait.
    slot: Duration,
    rng: rand_chacha::ChaCha8Rng,
}

impl CarrierSense {
    fn for_profile(p: &Profile, seed: u64) -> Option<CarrierSense> {
        use rand::SeedableRng;
        if p.ip || p.framing != crate::profile::Framing::Transparent {
            return None;
        }
        let arq = ArqConfig::from_profile(p);
        Some(CarrierSense {
            shared: false,
            quiet_at: None,
            // About one frame's worth of bytes: a gap longer than that is the end.
            hold: arq.bytes_airtime(128),
            slot: arq.key_up() + arq.bytes_airtime(32),
            rng: rand_chacha::ChaCha8Rng::seed_from_u64(seed),
        })
    }

    fn busy(&self, now: Instant) -> bool {
        self.shared && self.quiet_at.is_some_and(|q| now < q)
    }

    fn heard_bytes(&mut self, now: Instant) {
        let until = now + self.hold;
        self.quiet_at = Some(self.quiet_at.map_or(until, |q| q.max(until)));
    }

    /// A whole frame: its sender stays on air `rem` longer; `ours`: it is our
    /// own peer's, whose end is our turn.
    fn heard_frame(&mut self, now: Instant, rem: Duration, ours: bool) {
        use rand::Rng;
        if !ours {
            self.shared = true;
        }
        self.quiet_at = Some(if !rem.is_zero() {
            now + rem + self.hold / 4
        } else if ours {
            now
        } else {
            now + self.slot * self.rng.gen_range(1..=4u32)
        });
    }
}

/// A recently closed session; `engine` is kept (TIME-WAIT) for `silence_limit`
/// after a session that ended well, to ack again what it had received.
struct Closed {
    id: u16,
    at: Instant,
    engine: Option<Engine>,
    answers: u32,
}

/// At most this many acks again per closed session.
const TIME_WAIT_ANSWERS: u32 = 8;

const CLOSED_MEMORY: Duration = Duration::from_secs(600);

/// Unanswered transmissions after which a call the peer had answered is
/// ended so that the shell calls again (a restarted peer only answers calls).
pub const RECALL_AFTER: u32 = 4;

/// Unanswered calls (Hellos nobody acknowledged) before a call is given up: six, about two
/// minutes at 1200 bit/s, where the ARQ alone would try `retry.max_tries` (12 in most profiles).
pub const CALL_TRIES: u32 = 6;

fn parse_call(whose: &str, call: Option<&str>) -> Result<Option<Callsign>, StationError> {
    match call {
        None | Some("") => Ok(None),
        Some(c) => c
            .parse()
            .map(Some)
            .map_err(
                |e: crate::frame::ax25::Ax25Error| StationError::BadCallsign {
                    whose: whose.into(),
                    call: c.into(),
                    why: e.to_string(),
                },
            ),
    }
}

impl Station {
    /// `accept_calls`: answer peers that call (the daemon), or only call out (`sync`).
    pub fn new(
        store: Store,
        profile: Profile,
        accept_calls: bool,
    ) -> Result<Station, StationError> {
        let st = store.station();
        let local_call = parse_call("this station", st.callsign.as_deref())?;
        let address = uses_routes(&profile).then(|| st.id.short_address());
        let carrier = CarrierSense::for_profile(
            &profile,
            u64::from_be_bytes(st.id.0[..8].try_into().expect("8 bytes")),
        );
        if profile.amateur && local_call.is_none() {
            return Err(EngineError::NoCallsign {
                profile: profile.name.clone(),
            }
            .into());
        }
        let framer = LinkFramer::new(&profile).map_err(EngineError::from)?;
        let a = ArqConfig::from_profile(&profile);
        // A live peer that owes us something transmits again within its reply
        // wait plus its longest backoff (and a transmission); twice that without
        // a sound means it is gone (or restarted and forgot the session).
        let silence_limit =
            (a.backoff_cap + a.reply_wait() + a.key_up() + a.transmission_budget()) * 2;
        Ok(Station {
            store,
            profile,
            local_call,
            address,
            framer,
            sessions: BTreeMap::new(),
            closed: VecDeque::new(),
            reacks: VecDeque::new(),
            tell: VecDeque::new(),
            accept_calls,
            outcomes: VecDeque::new(),
            notes: VecDeque::new(),
            recorder: None,
            stats: StationStats::default(),
            silence_limit,
            refusals: Default::default(),
            last_unknown_told: None,
            beacon_every: None,
            next_beacon: None,
            beacons_noted: BTreeMap::new(),
            last_beacon_write: None,
            last_unproven_tx: None,
            refusal_window: None,
            carrier,
            cast_out: VecDeque::new(),
            cast_next_at: None,
            cast_refused: BTreeMap::new(),
        })
    }

    /// Records every frame sent and received, and the notes, from now on.
    pub fn set_recorder(&mut self, r: FrameRecorder) {
        self.recorder = Some(r);
    }

    /// The station's store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The station's store, writable.
    pub fn store_mut(&mut self) -> &mut Store {
        &mut self.store
    }

    /// The store back, ending the station.
    pub fn into_store(self) -> Store {
        self.store
    }

    /// The modem profile of the link.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// Counters of frames no session took.
    pub fn stats(&self) -> StationStats {
        self.stats
    }

    /// How long a session may hear nothing before it is given up.
    pub fn silence_limit(&self) -> Duration {
        self.silence_limit
    }

    fn record(&mut self, now: Instant, kind: RecordKind, bytes: &[u8]) {
        if let Some(r) = &mut self.recorder {
            r(now, kind, bytes);
        }
    }

    fn note(&mut self, now: Instant, text: String) {
        self.record(now, RecordKind::Note, text.as_bytes());
        self.notes.push_back(text);
    }

    /// Log lines for the operator (session started, link lost, store trouble).
    pub fn poll_note(&mut self) -> Option<String> {
        self.notes.pop_front()
    }

    /// The next session that ended, if any.
    pub fn poll_outcome(&mut self) -> Option<Outcome> {
        self.outcomes.pop_front()
    }

    /// Whether a session with peer `name` is running.
    pub fn busy_with(&self, name: &str) -> bool {
        self.sessions
            .values()
            .any(|s| s.peer_name.as_deref() == Some(name))
    }

    /// Some session is running.
    pub fn has_sessions(&self) -> bool {
        !self.sessions.is_empty()
    }

    /// The running sessions, for progress displays.
    pub fn sessions(&self) -> Vec<SessionView> {
        self.sessions
            .iter()
            .map(|(&id, s)| SessionView {
                session: id,
                role: s.engine.session().role(),
                peer: s.peer_name.clone(),
                progress: s.engine.progress(),
                stats: s.engine.stats(),
            })
            .collect()
    }

    /// After a finished session with `name`: does either side still lack
    /// something? A delta this station could not apply is asked for in full
    /// and comes with the next session's pull; a delta the peer could not
    /// apply shows as a vector the peer confirmed that does not cover ours.
    pub fn needs_another_round(&self, name: &str) -> Result<bool, StoreError> {
        let peer = self
            .store
            .peer_by_name(name)?
            .ok_or_else(|| StoreError::UnknownPeerName(name.into()))?;
        Ok(self.store.wanted_from(&peer.id)? > 0 || self.store.pending_for(&peer.id)? > 0)
    }

    /// Calls the registered peer `name` with session id `session_id` (the shell
    /// picks it at random, so a restarted process never reuses one).
    pub fn start_sync(
        &mut self,
        now: Instant,
        name: &str,
        session_id: u16,
    ) -> Result<u16, StationError> {
        self.start_sync_within(now, name, session_id, None)
    }

    /// `start_sync` whose own bundles must be on air by `budget_end`
    /// (`sync --budget`): the highest priority classes first, the rest left
    /// for a later session (`Outcome::left_for_budget`).
    pub fn start_sync_within(
        &mut self,
        now: Instant,
        name: &str,
        session_id: u16,
        budget_end: Option<Instant>,
    ) -> Result<u16, StationError> {
        if self.busy_with(name) {
            return Err(StationError::Busy(name.into()));
        }
        let peer = self
            .store
            .peer_by_name(name)?
            .ok_or_else(|| StoreError::UnknownPeerName(name.into()))?;
        let mut id = session_id;
        while self.sessions.contains_key(&id) || self.closed.iter().any(|c| c.id == id) {
            id = id.wrapping_add(1);
        }
        let cfg = EngineConfig {
            profile: self.profile.clone(),
            local_callsign: self.local_call.clone(),
            peer_callsign: parse_call(&format!("peer {name}"), peer.callsign.as_deref())?,
            session_id: Some(id),
            local_address: self.address,
            peer_address: self.address.map(|_| peer.id.short_address()),
        };
        // The Hello carries the content fingerprint: writes since the last check count.
        self.store.check_capture()?;
        let local = local_info(&self.store, Some(&peer.id))?;
        let mut state = self.store.transfer_state(&peer.id)?;
        state.auth = self.store.peer_auth(&peer.id)?;
        if let Some(a) = &mut state.auth {
            a.nonce = self.store.next_hello_nonce()?;
        }
        let resume = match (&state.outgoing, &state.incoming) {
            (None, None) => String::new(),
            (o, i) => format!(
                " (resuming: {} kept to send, {} stored of theirs)",
                o.as_ref().map_or(0, |k| k.bytes.len()),
                i.as_ref().map_or(0, |p| p.bytes.len())
            ),
        };
        let engine = Engine::initiate(cfg, local, peer.id, state)?;
        self.sessions.insert(
            id,
            Slot {
                engine,
                peer_name: Some(name.into()),
                last_heard: now,
                link_lost: None,
                budget_end,
                left_for_budget: 0,
            },
        );
        self.note(now, format!("session {id:04x}: calling {name}{resume}"));
        self.service(now, id);
        Ok(id)
    }

    /// Bytes from the port.
    pub fn handle_bytes(&mut self, now: Instant, bytes: &[u8]) {
        if let Some(cs) = &mut self.carrier {
            if !bytes.is_empty() {
                cs.heard_bytes(now);
            }
        }
        self.framer.push(now, bytes);
        self.drain_framer(now);
    }

    /// The port was reopened: bytes of a half-received frame are stale.
    pub fn link_reset(&mut self, now: Instant) {
        self.framer.reset();
        self.note(now, "link reopened".into());
    }

    fn drain_framer(&mut self, now: Instant) {
        while let Some(rx) = self.framer.next() {
            self.route(now, rx);
        }
    }

    fn route(&mut self, now: Instant, rx: RxFrame) {
        self.stats.frames_received += 1;
        if !rx.bytes.is_empty() {
            self.record(now, RecordKind::Received, &rx.bytes);
        }
        let d = match &rx.decoded {
            Ok(d) => d,
            Err(e) => {
                self.stats.bad_frames += 1;
                if rx.bytes.is_empty() {
                    self.record(now, RecordKind::Note, format!("bad frame: {e}").as_bytes());
                }
                return;
            }
        };
        let id = d.frame.session;
        // A frame addressed to another station: another pair's exchange, and
        // our peers cannot answer us while it lasts.
        let others = match (&d.ax25, d.frame.route, self.address) {
            (Some(_), _, _) => false,
            (None, Some(r), Some(me)) => r.to != me,
            _ => false,
        };
        if others && matches!(d.frame.kind, FrameKind::Data | FrameKind::Ack) {
            let rem = d
                .frame
                .payload
                .get(..2)
                .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
            let until = now + Duration::from_millis(rem.into());
            for s in self.sessions.values_mut() {
                s.engine.postpone(until);
            }
        }
        if let Some(cs) = &mut self.carrier {
            if matches!(d.frame.kind, FrameKind::Data | FrameKind::Ack) {
                if let Some(ms) = d.frame.payload.get(..2) {
                    let rem = Duration::from_millis(u16::from_be_bytes([ms[0], ms[1]]).into());
                    // Addressed to us (a call included): our own exchange.
                    let ours = match (d.frame.route, self.address) {
                        (Some(r), Some(me)) => r.to == me,
                        _ => {
                            self.sessions.contains_key(&id)
                                || (d.frame.kind == FrameKind::Data && d.frame.seq == 0)
                        }
                    };
                    cs.heard_frame(now, rem, ours);
                }
            }
        }
        if d.frame.kind == FrameKind::Control && Beacon::is_beacon(&d.frame.payload) {
            let payload = d.frame.payload.clone();
            self.heard_beacon(now, &payload);
            return;
        }
        if d.frame.kind == FrameKind::Control && CastPiece::is_cast(&d.frame.payload) {
            let payload = d.frame.payload.clone();
            self.heard_cast(now, &payload);
            return;
        }
        if self.sessions.contains_key(&id) {
            self.feed(now, id, rx);
            return;
        }
        let addressed_here = match (&d.ax25, d.frame.route, self.address) {
            (Some((_, dest)), _, _) => Some(dest) == self.local_call.as_ref(),
            (None, Some(route), Some(me)) => route.to == me,
            // A frame without a route on a shared channel: an old station's,
            // or junk; never start a session or answer for it.
            (None, None, Some(_)) => false,
            (None, _, None) => true,
        };
        let is_call = d.frame.kind == FrameKind::Data && d.frame.seq == 0;
        if self.closed.iter().any(|c| c.id == id) {
            self.stats.ignored_frames += 1;
            if addressed_here {
                self.time_wait(now, id, rx);
            }
            return;
        }
        if !(self.accept_calls && is_call && addressed_here) {
            self.stats.ignored_frames += 1;
            // Answer once per transmission of the peer: at its last frame (no
            // airtime left after it), when the channel is ours.
            let ends_tx = crate::arq::ends_transmission(&d.frame.payload);
            if matches!(d.frame.kind, FrameKind::Data | FrameKind::Ack)
                && !is_call
                && addressed_here
                && ends_tx
            {
                let to = d.ax25.as_ref().map(|(source, _)| source.clone());
                let back = d
                    .frame
                    .route
                    .zip(self.address)
                    .map(|(r, me)| crate::frame::Route {
                        to: r.from,
                        from: me,
                    });
                self.tell_unknown(now, id, to, back);
            }
            return;
        }
        // Callers not yet accepted are few at a time: a flood of calls ends the
        // oldest quietly instead of growing without bound.
        let unproven: Vec<u16> = self
            .sessions
            .iter()
            .filter(|(_, s)| !s.engine.session().was_accepted())
            .map(|(&i, _)| i)
            .collect();
        if unproven.len() >= MAX_UNPROVEN {
            let oldest = unproven
                .iter()
                .copied()
                .min_by_key(|i| self.sessions[i].last_heard)
                .expect("not empty");
            if let Some(s) = self.sessions.get_mut(&oldest) {
                s.engine.give_up();
            }
            self.service(now, oldest);
        }
        match self.new_responder(id) {
            Ok(engine) => {
                self.sessions.insert(
                    id,
                    Slot {
                        engine,
                        peer_name: None,
                        last_heard: now,
                        link_lost: None,
                        budget_end: None,
                        left_for_budget: 0,
                    },
                );
                self.note(now, format!("session {id:04x}: answering a call"));
                self.feed(now, id, rx);
            }
            Err(e) => self.note(now, format!("cannot answer session {id:04x}: {e}")),
        }
    }

    /// A frame of recently closed session `id`: a delivered data frame or a
    /// poll is acked again by the kept engine (the peer lost our last ack).
    fn time_wait(&mut self, now: Instant, id: u16, rx: RxFrame) {
        let limit = self.silence_limit;
        let Some(c) = self.closed.iter_mut().find(|c| c.id == id) else {
            return;
        };
        if now >= c.at + limit || c.answers >= TIME_WAIT_ANSWERS {
            c.engine = None;
        }
        let Some(engine) = c.engine.as_mut() else {
            return;
        };
        let Ok(d) = &rx.decoded else {
            return;
        };
        let old = match d.frame.kind {
            FrameKind::Data => engine.arq().delivered(d.frame.seq),
            FrameKind::Ack => true,
            _ => false,
        };
        if !old {
            return;
        }
        engine.handle_frame(now, rx);
        let tx = engine.poll_transmit(now);
        let mut sent = Vec::new();
        while let Some(ev) = engine.poll_event() {
            if let EngineEvent::FrameSent { bytes, .. } = ev {
                sent.push(bytes);
            }
        }
        let Some(tx) = tx else {
            return;
        };
        c.answers += 1;
        for b in sent {
            self.record(now, RecordKind::Sent, &b);
        }
        self.note(now, format!("session {id:04x}: closed here; acking again"));
        self.reacks.push_back(tx);
    }

    /// Queues a control frame telling the sender of session `id` (`to` on
    /// AX.25) that this station does not know it.
    fn tell_unknown(
        &mut self,
        now: Instant,
        id: u16,
        to: Option<Callsign>,
        route: Option<crate::frame::Route>,
    ) {
        // Anyone can send frames of made-up sessions: answer at most one per
        // interval, so they cannot make this station transmit at will.
        if self
            .last_unknown_told
            .is_some_and(|t| now < t + UNKNOWN_INTERVAL)
        {
            return;
        }
        self.last_unknown_told = Some(now);
        let addrs = match (to, &self.local_call) {
            (Some(peer), Some(local)) => Some(Ax25Addresses {
                local: local.clone(),
                peer,
            }),
            (None, _) => None,
            // An AX.25 frame we cannot answer from our own callsign.
            (Some(_), None) => return,
        };
        match self
            .framer
            .encode(&unknown_session_frame(id, route), addrs.as_ref())
        {
            Ok(bytes) => {
                self.stats.unknown_told += 1;
                self.note(
                    now,
                    format!("session {id:04x}: unknown here; telling the caller to call again"),
                );
                self.tell.push_back(bytes);
            }
            Err(e) => self.note(
                now,
                format!("session {id:04x}: cannot frame an answer: {e}"),
            ),
        }
    }

    fn new_responder(&self, id: u16) -> Result<Engine, StationError> {
        let cfg = EngineConfig {
            profile: self.profile.clone(),
            local_callsign: self.local_call.clone(),
            peer_callsign: None,
            session_id: Some(id),
            local_address: self.address,
            peer_address: None,
        };
        Ok(Engine::respond(cfg, local_info(&self.store, None)?)?)
    }

    fn feed(&mut self, now: Instant, id: u16, rx: RxFrame) {
        if let Some(s) = self.sessions.get_mut(&id) {
            s.last_heard = now;
            s.engine.handle_frame(now, rx);
            if s.engine.peer_forgot() && s.link_lost.is_none() {
                s.link_lost = Some(LinkLoss::PeerForgot);
            }
        }
        self.service(now, id);
    }

    /// Deadlines that passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.framer.handle_timeout(now);
        self.drain_framer(now);
        if self.next_beacon.is_some_and(|t| now >= t) {
            self.send_beacon(now);
        }
        // The last broadcast transmission is off the air: no wake-up for it
        // (a past instant would make the loop spin while a session holds the
        // next one back).
        if self.cast_next_at.is_some_and(|t| now >= t) {
            self.cast_next_at = None;
        }
        let ids: Vec<u16> = self.sessions.keys().copied().collect();
        for id in ids {
            let Some(s) = self.sessions.get_mut(&id) else {
                continue;
            };
            if s.engine.poll_timeout().is_some_and(|t| now >= t) {
                s.engine.handle_timeout(now);
                let ours = s.engine.session().role() == Role::Initiator;
                let open = !s.engine.session().is_closed();
                let heard = s.engine.stats().frames_received > 0;
                if ours && open && !heard && s.engine.unanswered() >= CALL_TRIES {
                    s.engine.give_up();
                    s.link_lost = Some(LinkLoss::NeverAnswered { calls: CALL_TRIES });
                } else if ours && open && heard && s.engine.unanswered() >= RECALL_AFTER {
                    // The peer answered before and now does not: its process may
                    // have restarted and forgotten this session. End it; the
                    // caller calls again and resumes from what is stored.
                    s.engine.give_up();
                    s.link_lost = Some(LinkLoss::StoppedAnswering {
                        transmissions: RECALL_AFTER,
                    });
                }
            } else if s.engine.poll_timeout().is_none()
                && !s.engine.session().is_closed()
                && now >= s.last_heard + self.silence_limit
            {
                let secs = self.silence_limit.as_secs();
                s.engine.give_up();
                s.link_lost = Some(LinkLoss::Silent { secs });
                self.note(now, format!("session {id:04x}: peer silent for {secs} s"));
            }
            self.service(now, id);
        }
        for c in self.closed.iter_mut() {
            if now >= c.at + self.silence_limit {
                c.engine = None;
            }
        }
        let before = now.checked_sub(CLOSED_MEMORY);
        while let Some(t) = self.closed.front().map(|c| c.at) {
            if before.is_some_and(|b| t < b) {
                self.closed.pop_front();
            } else {
                break;
            }
        }
    }

    /// One transmission to write to the port at once, if a session has one.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        if let Some(c) = &mut self.carrier {
            if c.busy(now) {
                return None;
            }
            // Passed: no wake-up for it any more.
            c.quiet_at = None;
        }
        if let Some(bytes) = self.tell.pop_front() {
            self.record(now, RecordKind::Sent, &bytes);
            return Some(bytes);
        }
        if let Some(bytes) = self.reacks.pop_front() {
            return Some(bytes);
        }
        // A broadcast gives way to sessions (its stations may be calling), and
        // goes one transmission per its time on air.
        if self.sessions.is_empty() && self.cast_next_at.is_none_or(|t| now >= t) {
            if let Some(bytes) = self.cast_out.pop_front() {
                let arq = ArqConfig::from_profile(&self.profile);
                self.cast_next_at = Some(now + arq.key_up() + arq.bytes_airtime(bytes.len()));
                self.record(now, RecordKind::Sent, &bytes);
                return Some(bytes);
            }
        }
        let ids: Vec<u16> = self.sessions.keys().copied().collect();
        for id in ids {
            let unproven = self.sessions.get(&id).is_some_and(|s| {
                let session = s.engine.session();
                !session.was_accepted() && !session.has_refusal()
            });
            // Callers not yet accepted share one transmission (their acks) per
            // interval: junk calls cannot make this station key up at will. A
            // genuine caller sends its Hello in one transmission and needs one.
            if unproven
                && self
                    .last_unproven_tx
                    .is_some_and(|t| now < t + REFUSAL_INTERVAL)
            {
                continue;
            }
            let tx = self
                .sessions
                .get_mut(&id)
                .and_then(|s| s.engine.poll_transmit(now));
            self.service(now, id);
            if tx.is_some() {
                if unproven {
                    self.last_unproven_tx = Some(now);
                }
                return tx;
            }
        }
        None
    }

    /// When to call `handle_timeout` next: an engine's deadline, a silent session's
    /// limit, or the framer's quiet-channel timer.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let engines = self.sessions.values().filter_map(|s| {
            s.engine.poll_timeout().or_else(|| {
                (!s.engine.session().is_closed()).then_some(s.last_heard + self.silence_limit)
            })
        });
        let carrier = self
            .carrier
            .as_ref()
            .filter(|c| c.shared)
            .and_then(|c| c.quiet_at)
            .filter(|_| {
                !self.sessions.is_empty() || !self.tell.is_empty() || !self.cast_out.is_empty()
            });
        engines
            .chain(self.framer.poll_timeout())
            .chain(carrier)
            .chain(self.next_beacon)
            .chain(self.cast_next_at)
            .min()
    }

    /// `run --beacon`: announce this station every `every` (None: never), the
    /// first time at `first`. A beacon waits while a session runs.
    pub fn set_beacon(&mut self, every: Option<Duration>, first: Instant) {
        let every = every.map(|e| e.max(BEACON_MIN_INTERVAL));
        self.beacon_every = every;
        self.next_beacon = every.map(|_| first);
    }

    fn send_beacon(&mut self, now: Instant) {
        let Some(every) = self.beacon_every else {
            self.next_beacon = None;
            return;
        };
        if !self.sessions.is_empty() {
            // Sessions have the channel: try again once they are likely over.
            self.next_beacon = Some(now + every.min(BEACON_RETRY));
            return;
        }
        self.next_beacon = Some(now + every);
        let beacon = match self.store.beacon() {
            Ok(b) => b,
            Err(e) => return self.note(now, format!("beacon: {e}")),
        };
        let addrs = match (&self.local_call, Callsign::new(BEACON_DEST, 0)) {
            (Some(local), Ok(dest)) => Some(Ax25Addresses {
                local: local.clone(),
                peer: dest,
            }),
            _ => None,
        };
        if self.profile.amateur && addrs.is_none() {
            return self.note(now, "beacon: an amateur profile needs a callsign".into());
        }
        let frame = crate::frame::Frame {
            kind: FrameKind::Control,
            session: 0,
            seq: 0,
            payload: beacon.to_payload(),
            auth_tag: None,
            route: self.address.map(|me| crate::frame::Route {
                to: BROADCAST,
                from: me,
            }),
        };
        match self.framer.encode(&frame, addrs.as_ref()) {
            Ok(bytes) => self.tell.push_back(bytes),
            Err(e) => self.note(now, format!("beacon: cannot frame it: {e}")),
        }
    }

    fn heard_beacon(&mut self, now: Instant, payload: &[u8]) {
        let b = match Beacon::parse(payload) {
            Ok(b) => b,
            Err(e) => {
                self.stats.ignored_frames += 1;
                return self.record(now, RecordKind::Note, format!("beacon: {e}").as_bytes());
            }
        };
        if self
            .beacons_noted
            .get(&b.station)
            .is_some_and(|t| now < *t + BEACON_NOTE_INTERVAL)
        {
            return;
        }
        // Made-up stations each pass the check above: at most one write a second.
        if self
            .last_beacon_write
            .is_some_and(|t| now < t + Duration::from_secs(1))
        {
            return;
        }
        self.last_beacon_write = Some(now);
        // Made-up stations must not grow this map without bound.
        if self.beacons_noted.len() >= 1024 {
            self.beacons_noted
                .retain(|_, t| now < *t + BEACON_NOTE_INTERVAL);
        }
        self.beacons_noted.insert(b.station, now);
        if self.store.is_read_only() {
            return;
        }
        match self.store.note_beacon(&b) {
            Ok(()) => self.note(
                now,
                format!(
                    "heard {} {}({})",
                    b.name,
                    if b.callsign.is_empty() {
                        String::new()
                    } else {
                        format!("{} ", b.callsign)
                    },
                    b.station
                ),
            ),
            Err(e) => self.note(now, format!("beacon: {e}")),
        }
    }

    /// The keyed peers that lack some of our rows and have no session with
    /// us now: whom a broadcast would serve (`run --broadcast`).
    pub fn peers_lacking(&self) -> Result<Vec<String>, StoreError> {
        let mut lacking = Vec::new();
        for p in self.store.peers()? {
            if p.key.is_some() && !self.busy_with(&p.name) && self.store.pending_for(&p.id)? > 0 {
                lacking.push(p.name);
            }
        }
        Ok(lacking)
    }

    /// One broadcast to the peers `names` (`Store::export_cast`): its pieces
    /// go out whenever no session runs, a transmission of up to `max_frames`
    /// pieces at a time. Returns what was made (no rows: nothing goes out).
    pub fn start_cast(
        &mut self,
        now: Instant,
        names: &[String],
    ) -> Result<CastExport, StationError> {
        self.store.check_capture()?;
        let cast = self.store.export_cast(names)?;
        if cast.bytes.is_empty() {
            return Ok(cast);
        }
        let addrs = match (&self.local_call, Callsign::new(CAST_DEST, 0)) {
            (Some(local), Ok(dest)) => Some(Ax25Addresses {
                local: local.clone(),
                peer: dest,
            }),
            _ => None,
        };
        let arq = ArqConfig::from_profile(&self.profile);
        let room = arq.max_message().saturating_sub(CAST_HEADER_MAX).max(32);
        let key = crate::codec::station_key(&self.store.station().id);
        let pieces = CastPiece::cut(key, cast.id, &cast.bytes, room);
        let count = pieces.len();
        let mut air = Duration::ZERO;
        let mut tx = Vec::new();
        let mut in_tx = 0;
        for p in pieces {
            let frame = crate::frame::Frame {
                kind: FrameKind::Control,
                session: 0,
                seq: 0,
                payload: p.to_payload(),
                auth_tag: None,
                route: self.address.map(|me| crate::frame::Route {
                    to: BROADCAST,
                    from: me,
                }),
            };
            let bytes = self.framer.encode(&frame, addrs.as_ref()).map_err(|e| {
                StoreError::Malformed(format!("a broadcast piece does not fit a frame: {e}"))
            })?;
            air += arq.bytes_airtime(bytes.len());
            tx.extend_from_slice(&bytes);
            in_tx += 1;
            if in_tx == arq.max_frames.max(1) {
                self.cast_out.push_back(std::mem::take(&mut tx));
                in_tx = 0;
            }
        }
        if !tx.is_empty() {
            self.cast_out.push_back(tx);
        }
        air += arq.key_up() * self.cast_out.len() as u32;
        self.note(
            now,
            format!(
                "broadcast {}: {} row(s), {} bytes in {count} pieces for {}, about {:.1} s on air",
                cast.id,
                cast.rows,
                cast.bytes.len(),
                cast.peers.join(", "),
                air.as_secs_f64()
            ),
        );
        Ok(cast)
    }

    /// Broadcast pieces are still to go out, or the last ones still on air.
    pub fn casting(&self, now: Instant) -> bool {
        !self.cast_out.is_empty() || self.cast_next_at.is_some_and(|t| now < t)
    }

    /// A broadcast piece heard: kept as part of the sender's partial bundle
    /// (so a session with it resumes from what was heard); the whole
    /// broadcast, once every piece is here, is checked and applied. Taken
    /// only from a registered peer with a key, and not while a session with
    /// it runs (that session's transfer owns the partial).
    fn heard_cast(&mut self, now: Instant, payload: &[u8]) {
        let piece = match CastPiece::parse(payload) {
            Ok(p) => p,
            Err(e) => {
                self.stats.ignored_frames += 1;
                return self.record(now, RecordKind::Note, format!("broadcast: {e}").as_bytes());
            }
        };
        let peer = match self.store.peer_by_key(piece.sender_key) {
            Ok(Some(p)) if p.key.is_some() && !self.store.is_read_only() => p,
            _ => {
                self.stats.ignored_frames += 1;
                return;
            }
        };
        let in_session = self
            .sessions
            .values()
            .any(|s| s.engine.session().peer() == Some(peer.id));
        // After a refused broadcast, that peer's pieces wait: forged ones must
        // not write a refusal to the log at the rate of the air.
        let refused_lately = self
            .cast_refused
            .get(&peer.id)
            .is_some_and(|t| now < *t + REFUSAL_INTERVAL);
        if in_session || refused_lately {
            self.stats.ignored_frames += 1;
            return;
        }
        if let Err(e) = self.keep_cast_piece(now, &peer, piece) {
            self.note(now, format!("broadcast from {}: {e}", peer.name));
        }
    }

    fn keep_cast_piece(
        &mut self,
        now: Instant,
        peer: &crate::store::PeerInfo,
        piece: CastPiece,
    ) -> Result<(), StoreError> {
        // What is stored, read again for every piece: a session with the peer
        // may have resumed, finished or replaced it since the last one.
        let mut held = match self.store.transfer_held(&peer.id)? {
            Some(stored) if stored.id == piece.id => {
                if stored.total != piece.total {
                    // The same broadcast with another length: forged. Taking it
                    // would spoil what is stored.
                    self.stats.ignored_frames += 1;
                    return Ok(());
                }
                let mut h = Held::default();
                for (off, len) in stored.ranges {
                    if !h.overlaps(off, len) {
                        h.add(off, len);
                    }
                }
                h
            }
            // A session's interrupted transfer is not given up for a broadcast.
            Some(h) if !h.maybe_cast => {
                self.stats.ignored_frames += 1;
                return Ok(());
            }
            _ => {
                self.store
                    .transfer_begin_partial(&peer.id, piece.id, piece.total)?;
                self.note(
                    now,
                    format!(
                        "hearing broadcast {} from {} ({} bytes)",
                        piece.id, peer.name, piece.total
                    ),
                );
                Held::default()
            }
        };
        let len = piece.bytes.len() as u64;
        if held.overlaps(piece.offset, len) {
            return Ok(());
        }
        self.store
            .transfer_save_chunk(&peer.id, piece.id, piece.offset, &piece.bytes)?;
        held.add(piece.offset, len);
        if !held.complete(piece.total) {
            return Ok(());
        }
        let bytes = self
            .store
            .transfer_state(&peer.id)?
            .incoming
            .map(|p| p.bytes)
            .unwrap_or_default();
        if BundleId::of(&bytes) != piece.id {
            self.store.transfer_discard_partial(&peer.id, piece.id)?;
            self.cast_refused.insert(peer.id, now);
            self.note(
                now,
                format!(
                    "broadcast {} from {}: its bytes do not match its id (a forged or \
                     garbled piece); dropped, the next session brings the rows",
                    piece.id, peer.name
                ),
            );
            return Ok(());
        }
        match self.store.import_cast(&bytes, &peer.id) {
            Ok(rep) => {
                self.store.check_capture()?;
                self.note(
                    now,
                    format!(
                        "broadcast {} from {} applied: {} row(s), {} already held, {} asked in full",
                        piece.id, peer.name, rep.applied, rep.skipped, rep.wanted
                    ),
                );
            }
            Err(e) => {
                self.store.transfer_discard_partial(&peer.id, piece.id)?;
                self.cast_refused.insert(peer.id, now);
                self.note(
                    now,
                    format!("broadcast {} from {} refused: {e}", piece.id, peer.name),
                );
            }
        }
        Ok(())
    }

    /// Stops every session, telling the peers (their engines stay until the
    /// cancellation is delivered or the link gives up).
    pub fn cancel_all(&mut self, now: Instant) {
        // A broadcast not yet on air stays home.
        self.cast_out.clear();
        self.cast_next_at = None;
        let ids: Vec<u16> = self.sessions.keys().copied().collect();
        for id in ids {
            if let Some(s) = self.sessions.get_mut(&id) {
                s.engine.cancel();
            }
            self.service(now, id);
        }
    }

    /// Store work and frame records of one engine, then retire it if done.
    fn service(&mut self, now: Instant, id: u16) {
        loop {
            let Some(slot) = self.sessions.get_mut(&id) else {
                return;
            };
            let Some(ev) = slot.engine.poll_event() else {
                break;
            };
            match ev {
                EngineEvent::Session(ev) => {
                    if let crate::sync::SessionEvent::PeerHello { station, .. } = &ev {
                        let responder = slot.engine.session().role() == Role::Responder;
                        let label = self.peer_label(station);
                        if let Some(s) = self.sessions.get_mut(&id) {
                            s.peer_name = Some(label.clone());
                        }
                        let station = *station;
                        self.store_work(now, id, ev);
                        // Only a caller that proved itself may displace a running
                        // session with the station it claims to be.
                        let accepted = self.sessions.get(&id).is_some_and(|s| {
                            s.engine.session().was_accepted() && !s.engine.session().is_closed()
                        });
                        if responder && accepted {
                            self.settle_duplicate(now, id, &label, &station);
                        }
                        continue;
                    }
                    self.store_work(now, id, ev);
                }
                EngineEvent::FrameSent { bytes, .. } => self.record(now, RecordKind::Sent, &bytes),
                // Recorded by `route`, where every received frame passes.
                EngineEvent::FrameReceived { .. } => {}
                EngineEvent::LinkLost(l) => {
                    slot.link_lost = Some(LinkLoss::Arq(l.clone()));
                    self.note(now, format!("session {id:04x}: link lost: {l}"))
                }
            }
        }
        self.send_refusal(now, id);
        let done = self.sessions.get(&id).is_some_and(|s| s.engine.is_done());
        if done {
            let s = self.sessions.remove(&id).expect("slot present");
            let session = s.engine.session();
            let result = match session.error() {
                Some(e) => Err(e.clone()),
                None => Ok(session.summary().clone()),
            };
            let text = match &result {
                Ok(sum) => format!(
                    "session {id:04x}: finished with {}: {} bundle(s) applied here, {} confirmed \
                     by the peer",
                    s.peer_name.as_deref().unwrap_or("?"),
                    sum.bundles_applied,
                    sum.bundles_confirmed
                ),
                Err(e) => format!(
                    "session {id:04x}: failed with {}: {e}",
                    s.peer_name.as_deref().unwrap_or("?")
                ),
            };
            self.note(now, text);
            let outcome = Outcome {
                session: id,
                role: session.role(),
                peer: s.peer_name.clone(),
                link_lost: s.link_lost.clone(),
                stats: s.engine.stats(),
                left_for_budget: s.left_for_budget,
                result,
            };
            let ended_well = outcome.result.is_ok() && outcome.link_lost.is_none();
            self.closed.push_back(Closed {
                id,
                at: now,
                engine: ended_well.then_some(s.engine),
                answers: 0,
            });
            self.outcomes.push_back(outcome);
        }
    }

    fn store_work(&mut self, now: Instant, id: u16, ev: crate::sync::SessionEvent) {
        let Some(slot) = self.sessions.get_mut(&id) else {
            return;
        };
        let label = slot.peer_name.clone().unwrap_or_default();
        // What this station sends must fit the rest of the budget, less the
        // session's last turns (the peer's Done, our final ack).
        let max_bytes = slot.budget_end.map(|end| {
            let cfg = crate::arq::ArqConfig::from_profile(&self.profile);
            let closing = cfg.session_airtime(&[]) / 2;
            cfg.max_bundle_within(end.saturating_duration_since(now).saturating_sub(closing))
        });
        let mut limit = BundleLimit {
            max_bytes,
            left_for_budget: 0,
        };
        let res = do_store_work(&mut self.store, &mut slot.engine, ev, &mut limit);
        slot.left_for_budget += limit.left_for_budget;
        match res {
            Ok(()) => {}
            Err(StoreWorkError::Store(e)) => {
                self.note(now, format!("session {id:04x} ({label}): store: {e}"))
            }
            Err(e) => self.note(now, format!("session {id:04x} ({label}): {e}")),
        }
    }

    /// A session refused its caller: one short refusal, at most one per
    /// `REFUSAL_INTERVAL` per caller (its callsign, else the station it claims
    /// to be); the log gets one line per caller and interval, with the count
    /// of the refusals held back since.
    fn send_refusal(&mut self, now: Instant, id: u16) {
        let Some(slot) = self.sessions.get_mut(&id) else {
            return;
        };
        if !slot.engine.session().has_refusal() {
            return;
        }
        let caller = slot
            .engine
            .peer_callsign()
            .map(|c| c.to_string())
            .or_else(|| slot.peer_name.clone())
            .unwrap_or_else(|| "an unidentified caller".into());
        let why = slot
            .engine
            .session()
            .error()
            .map(|e| e.to_string())
            .unwrap_or_default();
        let frame = slot.engine.take_refusal_frame();
        if self.refusals.len() > MAX_REFUSAL_MEMORY {
            self.refusals.retain(|_, r| now < r.last + REFUSAL_INTERVAL);
        }
        let r = self.refusals.entry(caller.clone()).or_insert(Refusals {
            last: now,
            held_back: 0,
            first: true,
        });
        // Per caller, and in all: a flood that changes its callsign every
        // call still gets at most `MAX_REFUSALS` refusals per interval.
        let window_full = self
            .refusal_window
            .is_some_and(|(start, n)| now < start + REFUSAL_INTERVAL && n >= MAX_REFUSALS);
        if (!r.first && now < r.last + REFUSAL_INTERVAL) || window_full {
            r.held_back += 1;
            self.stats.refusals_held_back += 1;
            return;
        }
        let held = std::mem::take(&mut r.held_back);
        r.first = false;
        r.last = now;
        self.refusal_window = match self.refusal_window {
            Some((start, n)) if now < start + REFUSAL_INTERVAL => Some((start, n + 1)),
            _ => Some((now, 1)),
        };
        let more = if held > 0 {
            format!(" ({held} more refused call(s) from it held back since the last line)")
        } else {
            String::new()
        };
        let line = format!("session {id:04x}: refused a call from {caller}: {why}{more}");
        self.note(now, line.clone());
        let _ = self.store.log_event(&crate::store::LogEntry {
            peer: Some(caller),
            direction: "in".into(),
            result: "refused".into(),
            message: format!("call refused: {why}{more}"),
            ..Default::default()
        });
        if let Some(bytes) = frame {
            self.stats.refusals_sent += 1;
            self.tell.push_back(bytes);
        }
    }

    /// A peer called (session `id`) while another session with it runs. One
    /// session per peer at a time: both write the same kept transfers.
    /// - An older call of the peer that we answer: the peer restarted and
    ///   called again; the old session is given up.
    /// - Our own call to the peer (calls crossed): the call of the station
    ///   with the smaller UUID goes on, on both sides alike.
    ///
    /// Returns whether the new call goes on.
    fn settle_duplicate(&mut self, now: Instant, id: u16, label: &str, peer: &StationId) -> bool {
        let others: Vec<(u16, Role)> = self
            .sessions
            .iter()
            .filter(|(&o, s)| o != id && s.peer_name.as_deref() == Some(label))
            .map(|(&o, s)| (o, s.engine.session().role()))
            .collect();
        let ours_wins = self.store.station().id < *peer;
        for (other, role) in others {
            if role == Role::Initiator && ours_wins {
                if let Some(s) = self.sessions.get_mut(&id) {
                    s.engine.cancel();
                }
                self.note(
                    now,
                    format!("session {id:04x}: {label} called while our call {other:04x} runs: declined"),
                );
                return false;
            }
            if let Some(s) = self.sessions.get_mut(&other) {
                s.engine.give_up();
                s.link_lost = Some(LinkLoss::Superseded { by: id });
            }
            self.note(
                now,
                format!("session {other:04x}: {label} called again (session {id:04x}): dropped"),
            );
            self.service(now, other);
        }
        true
    }

    fn peer_label(&self, station: &StationId) -> String {
        match self.store.peer_by_id(station) {
            Ok(Some(p)) => p.name,
            _ => station.to_string(),
        }
    }
}

/// Whether frames on links of `profile` carry routes (`Profile::routed`).
pub fn uses_routes(profile: &Profile) -> bool {
    profile.routed()
}
