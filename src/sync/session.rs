//! The sync session state machine. Pure: messages in and out as bytes, store
//! work asked of the shell through events, no clock (the ARQ below keeps time
//! and reports a lost link).

use std::collections::VecDeque;

use super::message::{
    BundleId, ErrorCode, Hello, HelloAuth, Message, MessageError, Resume, MAX_REASSEMBLY,
    PROTOCOL_VERSION,
};
use super::reassembly::{BundleReassembly, Defragmenter, ReceiveError, Start, Violation};
use crate::auth::{MacKey, SessionKeys, SharedSecret, PROOF_LEN};
use crate::delta::{SchemaFingerprint, StationId, VersionVector};
use crate::recon::Sketch;

/// Smallest ARQ message the session can work with: room for an `Error` and
/// for chunks that are not mostly header.
pub const MIN_MESSAGE: usize = 32;
/// Default cap on the size of a bundle a receiver accepts (memory and disk).
pub const DEFAULT_MAX_BUNDLE: u64 = 64 << 20;
pub use crate::recon::MAX_SKETCH_CAPACITY;
/// Longest text in a refusal to a caller that was not accepted.
const REFUSAL_TEXT: usize = 48;
/// First sketch capacity when the stations synced before (drift is small).
const DRIFT_CAPACITY: u64 = 32;

/// Sizes the session works within.
#[derive(Clone, Debug)]
pub struct Config {
    /// Largest message the ARQ carries; chunks fill it.
    pub max_message: usize,
    /// Largest incoming bundle accepted.
    pub max_bundle: u64,
    /// As responder, reconcile (`recon`) when the contents differ in a way the
    /// change logs do not explain. On by default.
    pub reconcile: bool,
}

impl Config {
    /// The ARQ's message size, with the default bundle cap.
    pub fn new(max_message: usize) -> Self {
        Config {
            max_message,
            max_bundle: DEFAULT_MAX_BUNDLE,
            reconcile: true,
        }
    }
}

/// This station, as its Hello presents it.
#[derive(Clone, Debug)]
pub struct LocalInfo {
    /// This station's identity.
    pub station: StationId,
    /// This station's callsign; empty if it has none. At most `MAX_CALLSIGN` bytes.
    pub callsign: String,
    /// This station's schema fingerprint.
    pub schema: SchemaFingerprint,
    /// This station's zstd dictionary id (0 = none).
    pub dict_id: u32,
    /// What this station holds, per origin.
    pub vector: VersionVector,
    /// Its content fingerprint (`store::fingerprint`); the shell updates it with
    /// `set_fingerprint` when the content changes during the session.
    pub fingerprint: u64,
}

/// Exact bundle bytes being sent to a peer, kept by the shell until the peer
/// confirms them (`KeepOutgoing` .. `DropOutgoing`).
#[derive(Clone, Debug, PartialEq)]
pub struct KeptOutgoing {
    /// CRC-64 of `bytes`.
    pub id: BundleId,
    /// The bundle exactly as it goes on air.
    pub bytes: Vec<u8>,
}

/// Moves `next` past the pieces the receiver holds that it reached.
fn skip_held(next: &mut u64, skip: &mut VecDeque<(u64, u64)>) {
    while let Some(&(off, n)) = skip.front() {
        if *next < off {
            break;
        }
        *next = (*next).max(off + n);
        skip.pop_front();
    }
}

/// The stored prefix of a bundle coming from a peer (`BeginPartial`,
/// `SaveChunk` .. `DiscardPartial`).
#[derive(Clone, Debug, PartialEq)]
pub struct PartialIncoming {
    /// The bundle's id from its `BundleStart`.
    pub id: BundleId,
    /// Length of the whole bundle.
    pub total_len: u64,
    /// The bytes received so far, from the start.
    pub bytes: Vec<u8>,
    /// Pieces (offset, bytes) held past `bytes`, ascending and apart (a
    /// broadcast heard with gaps).
    pub later: Vec<(u64, Vec<u8>)>,
}

impl PartialIncoming {
    /// What a Hello tells the sender: the stored prefix and the first
    /// `MAX_RESUME_PIECES` pieces past it. Pieces beyond those are dropped
    /// here too, so both ends count the same bytes as held.
    pub fn resume(&mut self) -> Resume {
        self.later.truncate(super::message::MAX_RESUME_PIECES);
        Resume {
            id: self.id,
            stored: self.bytes.len() as u64,
            later: self
                .later
                .iter()
                .map(|(off, b)| (*off, b.len() as u64))
                .collect(),
        }
    }
}

/// What the shell kept about one peer from earlier sessions.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PeerState {
    /// Our bundle to the peer that it has not confirmed yet.
    pub outgoing: Option<KeptOutgoing>,
    /// The peer's bundle that we hold part of.
    pub incoming: Option<PartialIncoming>,
    /// The last session with this peer ended with differing contents: a
    /// responder reconciles before sending (see `recon`).
    pub reconcile: bool,
    /// Salt for this session's reconciliation items (fresh per session, so a
    /// rare 32-bit collision does not repeat).
    pub salt: u64,
    /// The stations completed a session or a bundle before: never first contact,
    /// whatever the vectors say (stations that write nothing of their own).
    pub synced_before: bool,
    /// The peer is registered with a key: the session is authenticated.
    /// `None`: registered with `--no-auth`.
    pub auth: Option<PeerAuth>,
    /// This station takes no bundle from the peer (it may not push here).
    pub refuse_push: bool,
}

/// What authenticating a session with a peer takes (see `auth`).
#[derive(Clone, Debug, PartialEq)]
pub struct PeerAuth {
    /// The secret the two stations' keys share.
    pub secret: SharedSecret,
    /// Initiator: a Hello nonce above every one this station used before
    /// (`Store::next_hello_nonce`). Responder: a random nonce for this session.
    pub nonce: u64,
    /// Responder: the highest nonce of a Hello from this peer accepted before;
    /// a Hello at or below it is a replay.
    pub last_peer_nonce: u64,
}

/// What set reconciliation decided this station sends: the rows behind
/// `items` (ours, under `salt`), in a bundle claiming `claim`.
#[derive(Clone, Debug, PartialEq)]
pub struct Reconciled {
    /// The salt the items are hashed under.
    pub salt: u64,
    /// Our items the peer lacks.
    pub items: Vec<u32>,
    /// What this station held when it listed its items.
    pub claim: VersionVector,
    /// The stations synced before: the rows join the usual export by the
    /// change logs (first contact: the rows alone).
    pub with_log: bool,
}

/// Work for the shell, and the outcome. Handle events in order, and before
/// sending what `poll_transmit` returns after them: `KeepOutgoing` must be on
/// disk before its bytes go on air.
#[derive(Clone, Debug, PartialEq)]
pub enum SessionEvent {
    /// The peer introduced itself. On a responding session the shell answers
    /// with `accept_peer` (a registered station) or `refuse_peer`.
    PeerHello {
        /// The peer's identity.
        station: StationId,
        /// The peer's callsign; empty if it sent none.
        callsign: String,
        /// The peer's zstd dictionary id (0 = none).
        dict_id: u32,
        /// The peer's schema fingerprint: when it differs from ours, our
        /// bundles carry our table layout.
        schema: SchemaFingerprint,
    },
    /// Responder: the caller proved its identity with Hello nonce `nonce`;
    /// record it (`Store::note_peer_hello_nonce`) so a replay is refused.
    Authenticated {
        /// The peer.
        peer: StationId,
        /// The nonce of its Hello.
        nonce: u64,
    },
    /// Export what `peer` lacks given `peer_vector` (the peer's own word of
    /// what it holds) and hand the bytes to `bundle_ready` (empty = nothing).
    NeedBundleFor {
        /// The peer.
        peer: StationId,
        /// What the peer holds, per origin.
        peer_vector: VersionVector,
        /// The peer's dictionary id: compress with ours only when it matches.
        peer_dict_id: u32,
        /// Set reconciliation ran: export exactly these rows instead (`export_reconciled`).
        reconciled: Option<Reconciled>,
        /// Tables have priority classes and this session sent the classes from
        /// this one up: export the next lower class (`Store::export_class_against`).
        below: Option<i64>,
    },
    /// List this station's reconciliation items under `salt` (`Store::recon_items`)
    /// and hand them to `items_ready` with the vector held now.
    NeedItems {
        /// The salt.
        salt: u64,
    },
    /// Persist these exact bytes as the bundle in flight to `peer`.
    KeepOutgoing {
        /// The peer.
        peer: StationId,
        /// CRC-64 of `bytes`.
        id: BundleId,
        /// The bundle exactly as it goes on air.
        bytes: Vec<u8>,
    },
    /// The bundle in flight to `peer` is settled: forget it.
    DropOutgoing {
        /// The peer.
        peer: StationId,
        /// The bundle.
        id: BundleId,
    },
    /// Start a fresh partial file for a bundle from `peer` (replacing any).
    BeginPartial {
        /// The peer.
        peer: StationId,
        /// The bundle.
        id: BundleId,
        /// Length of the whole bundle.
        total_len: u64,
    },
    /// Append to the partial file; `offset` equals its current length.
    SaveChunk {
        /// The peer.
        peer: StationId,
        /// The bundle.
        id: BundleId,
        /// Where `bytes` go in the bundle.
        offset: u64,
        /// The bytes to append.
        bytes: Vec<u8>,
    },
    /// Delete the partial file of bundle `id` from `peer`.
    DiscardPartial {
        /// The peer.
        peer: StationId,
        /// The bundle.
        id: BundleId,
    },
    /// A whole bundle arrived: apply it in one transaction, then call
    /// `bundle_committed` (or `bundle_refused` / `local_failure`).
    BundleArrived {
        /// The peer.
        peer: StationId,
        /// CRC-64 of `bytes`, already checked.
        id: BundleId,
        /// The whole bundle.
        bytes: Vec<u8>,
        /// Rows set reconciliation found differing: merge every row by
        /// content (`import_reconciled`).
        reconciled: bool,
    },
    /// The peer committed a bundle and now holds `vector`: record it.
    PeerConfirmed {
        /// The peer.
        peer: StationId,
        /// What the peer holds now, per origin.
        vector: VersionVector,
    },
    /// Both directions are complete; the session is over.
    Finished(Summary),
    /// The session failed; it is over. Partial and kept bundles stay for a resume.
    Failed(SessionError),
}

/// What a finished session did.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Summary {
    /// The peer, once known (a responder learns it from the Hello).
    pub peer: Option<StationId>,
    /// Bundles this station applied / the peer confirmed.
    pub bundles_applied: u32,
    /// Bundles of ours the peer confirmed.
    pub bundles_confirmed: u32,
    /// Bundle bytes carried in chunks, each way.
    pub bundle_bytes_sent: u64,
    /// Bundle bytes received in chunks.
    pub bundle_bytes_received: u64,
    /// Every message byte handed to the ARQ / taken from it.
    pub message_bytes_sent: u64,
    /// Message bytes taken from the ARQ.
    pub message_bytes_received: u64,
    /// This station's content fingerprint at the end.
    pub local_fingerprint: u64,
    /// What this station held (its uncapped vector) when that fingerprint
    /// was taken, or earlier: a verified peer has seen all of it.
    pub local_vector: VersionVector,
    /// The peer's, from its last word (None from a peer that sends none).
    pub peer_fingerprint: Option<u64>,
    /// Set reconciliation ran: the rows found differing (initiator: both
    /// sides'; responder: its own the peer asked for).
    pub differences: Option<u64>,
    /// Sketch sums sent (responder) or received (initiator).
    pub sketch_sums: u64,
    /// Both stations proved their identity (keys registered on both sides).
    pub authenticated: bool,
    /// The peer takes no bundle from this station: nothing was pushed.
    pub push_refused: bool,
}

impl Summary {
    /// Whether both stations ended with the same synced content: `None` when the
    /// peer did not say.
    pub fn verified(&self) -> Option<bool> {
        self.peer_fingerprint.map(|p| p == self.local_fingerprint)
    }
}

/// Transfer progress for a progress bar: (bytes done, bytes total).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Progress {
    /// Bundle being sent: bytes handed to the ARQ, total; `None` when not sending.
    pub sending: Option<(u64, u64)>,
    /// Bundle being received: bytes received, total; `None` when not receiving.
    pub receiving: Option<(u64, u64)>,
}

/// Why a session failed. `kind` sorts them: bad bytes from the air, a peer that
/// misbehaved or refused, or trouble at this station.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// A message from the peer did not parse.
    #[error("unreadable message from peer: {0}")]
    Malformed(#[from] MessageError),
    /// The peer sent an `Error`.
    #[error("peer stopped the session: {code}: {text}")]
    PeerError {
        /// Its code.
        code: ErrorCode,
        /// Its text.
        text: String,
    },
    /// The peer sent a message the protocol does not allow at that point.
    #[error("peer broke the protocol: {0}")]
    Protocol(#[from] Violation),
    /// The peer speaks another protocol version.
    #[error(
        "peer speaks session protocol version {theirs}, this station {ours}: upgrade one of them"
    )]
    Version {
        /// Our version.
        ours: u8,
        /// The peer's version.
        theirs: u8,
    },
    /// The schema fingerprints differ.
    #[error("schema mismatch: this station {ours:08x}, peer {theirs:08x}: track the same tables with the same columns on both")]
    SchemaMismatch {
        /// Our fingerprint.
        ours: u32,
        /// The peer's fingerprint.
        theirs: u32,
    },
    /// Another station answered our call.
    #[error("called {expected} but {got} answered")]
    WrongStation {
        /// The station called.
        expected: StationId,
        /// The station that answered.
        got: StationId,
    },
    /// The caller is not a registered peer here (`refuse_peer`).
    #[error("station {station} is not a registered peer (add it with `peer add`)")]
    UnknownStation {
        /// The caller.
        station: StationId,
    },
    /// A reassembled bundle does not match its id.
    #[error("bundle {id} from peer does not match its id after reassembly")]
    BundleCorrupt {
        /// The id from its `BundleStart`.
        id: BundleId,
    },
    /// The peer offered a bundle larger than `Config::max_bundle`.
    #[error("peer offers a bundle of {len} bytes, more than the {max} accepted")]
    BundleTooLarge {
        /// Length offered.
        len: u64,
        /// Largest accepted.
        max: u64,
    },
    /// This station could not apply the peer's bundle (`bundle_refused`), with the reason.
    #[error("this station refused the peer's bundle: {0}")]
    BundleRefused(String),
    // Local trouble.
    /// The ARQ gave the link up.
    #[error("link lost")]
    LinkLost,
    /// The shell failed at store work (`local_failure`), with the reason.
    #[error("local failure: {0}")]
    Local(String),
    /// A control message too large to send even in fragments.
    #[error("message of {len} bytes exceeds the {max} bytes a message may span in fragments")]
    MessageTooLarge {
        /// Message length.
        len: usize,
        /// Largest message that may be sent in fragments (`MAX_REASSEMBLY`).
        max: usize,
    },
    /// This station cancelled the session.
    #[error("cancelled")]
    Cancelled,
    /// The peer did not prove its identity, with the reason.
    #[error("not authenticated: {0}")]
    Unauthenticated(String),
}

/// Where a session error comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bytes that are no message: the air or a broken peer.
    Air,
    /// The peer misbehaved, refused, or does not fit this station.
    Peer,
    /// This station: its store, its link, its operator.
    Local,
}

impl SessionError {
    /// Whether the air, the peer or this station is to blame.
    pub fn kind(&self) -> ErrorKind {
        use SessionError::*;
        match self {
            Malformed(_) | BundleCorrupt { .. } => ErrorKind::Air,
            PeerError { .. }
            | Protocol(_)
            | Version { .. }
            | SchemaMismatch { .. }
            | WrongStation { .. }
            | UnknownStation { .. }
            | Unauthenticated(_)
            | BundleTooLarge { .. }
            | BundleRefused(_) => ErrorKind::Peer,
            LinkLost | Local(_) | MessageTooLarge { .. } | Cancelled => ErrorKind::Local,
        }
    }

    /// What to tell the peer in an `Error` message, if anything.
    fn tell(&self) -> Option<(ErrorCode, String)> {
        use SessionError::*;
        Some(match self {
            Malformed(e) => (ErrorCode::Protocol, e.to_string()),
            Protocol(v) => (ErrorCode::Protocol, v.to_string()),
            BundleTooLarge { len, max } => (
                ErrorCode::BundleTooLarge,
                format!("{len} bytes offered, at most {max} accepted"),
            ),
            BundleCorrupt { id } => (
                ErrorCode::BundleCorrupt,
                format!("bundle {id} does not match its id"),
            ),
            Unauthenticated(why) => (ErrorCode::Unauthenticated, why.clone()),
            _ => return None,
        })
    }
}

impl From<ReceiveError> for SessionError {
    fn from(e: ReceiveError) -> Self {
        match e {
            ReceiveError::Malformed(m) => SessionError::Malformed(m),
            ReceiveError::Protocol(v) => SessionError::Protocol(v),
            ReceiveError::BundleTooLarge { len, max } => SessionError::BundleTooLarge { len, max },
            ReceiveError::BundleCorrupt { id } => SessionError::BundleCorrupt { id },
        }
    }
}

/// A call that does not fit the session's state (a shell bug, not a peer's).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{call} is not expected while the session is {state}")]
pub struct WrongState {
    /// The call made.
    pub call: &'static str,
    /// The session's state then.
    pub state: &'static str,
}

/// Which side opened the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// This station called.
    Initiator,
    /// This station answered.
    Responder,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// The initiator receives the responder's bundle.
    Pull,
    /// The initiator sends its bundle.
    Push,
}

#[derive(Debug)]
enum Sending {
    /// Waiting for the shell's `bundle_ready`.
    AwaitBundle,
    /// Chunks from `next` on are still to go; when `next` reaches the end,
    /// waiting for `Applied`. `resumed`: a kept bundle, so a fresh one follows.
    Transfer {
        id: BundleId,
        bytes: Vec<u8>,
        next: u64,
        /// Pieces (offset, length) the receiver holds already: not sent.
        skip: VecDeque<(u64, u64)>,
        resumed: bool,
    },
}

#[derive(Debug)]
enum Receiving {
    AwaitStart,
    Transfer(BundleReassembly),
    /// The shell is applying bundle `id`.
    Applying {
        id: BundleId,
        resumed: bool,
    },
}

/// Set reconciliation's steps (see `docs/reconciliation.md`).
#[derive(Debug)]
enum Recon {
    /// Responder: the shell lists our items.
    Listing { capacity: u64 },
    /// Responder: our sketch is out; the initiator asks for more or names
    /// the differences.
    Sketched {
        items: Vec<u32>,
        sketch: Sketch,
        claim: VersionVector,
    },
    /// Initiator: the peer's first sums arrived; the shell lists our items.
    Listing2 { peer: PeerSketch },
    /// Initiator: asked for more sums.
    Extending {
        peer: PeerSketch,
        items: Vec<u32>,
        mine: Sketch,
        claim: VersionVector,
    },
}

/// The sketch a peer sent so far.
#[derive(Debug)]
struct PeerSketch {
    salt: u64,
    items: u64,
    sums: Vec<u32>,
}

#[derive(Debug)]
enum State {
    AwaitHello,
    Reconcile(Recon),
    /// Responder: the shell decides whether it knows the peer.
    AwaitAccept,
    Send(Phase, Sending),
    Recv(Phase, Receiving),
    /// Initiator: both directions done, waiting for the responder's `Done`.
    AwaitDone,
    Finished,
    Failed(SessionError),
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            State::AwaitHello => "awaiting hello",
            State::Reconcile(Recon::Listing { .. } | Recon::Listing2 { .. }) => {
                "listing items to reconcile"
            }
            State::Reconcile(Recon::Sketched { .. }) => "awaiting the peer's differences",
            State::Reconcile(Recon::Extending { .. }) => "awaiting more sketch",
            State::AwaitAccept => "awaiting accept",
            State::Send(_, Sending::AwaitBundle) => "awaiting a bundle from the store",
            State::Send(_, Sending::Transfer { .. }) => "sending a bundle",
            State::Recv(_, Receiving::AwaitStart) => "awaiting a bundle",
            State::Recv(_, Receiving::Transfer(_)) => "receiving a bundle",
            State::Recv(_, Receiving::Applying { .. }) => "applying a bundle",
            State::AwaitDone => "awaiting done",
            State::Finished => "finished",
            State::Failed(_) => "failed",
        }
    }
}

/// One sync session with one peer. See `docs/sync-protocol.md`.
#[derive(Debug)]
pub struct Session {
    role: Role,
    config: Config,
    local: LocalInfo,
    peer: Option<StationId>,
    peer_vector: VersionVector,
    peer_dict_id: u32,
    /// What the peer's Hello said it holds of our bundle in flight.
    peer_resume: Option<Resume>,
    /// The bundle the shell is applying, remembered past a failure so that a
    /// commit that lands after it still clears the partial.
    in_apply: Option<BundleId>,
    kept: Option<KeptOutgoing>,
    partial: Option<PartialIncoming>,
    state: State,
    /// Encoded messages (or fragments) ready for the ARQ.
    outbox: VecDeque<Vec<u8>>,
    /// Fragments of an incoming message so far.
    fragments: Defragmenter,
    events: VecDeque<SessionEvent>,
    summary: Summary,
    /// Set reconciliation's verdict: what this station sends.
    reconciled: Option<Reconciled>,
    /// The priority class of the last bundle sent when a lower one follows.
    export_below: Option<i64>,
    /// Set reconciliation ran: bundles are merged by content.
    reconciling: bool,
    /// Initiator: the peer's sketch arrived (a second one is refused).
    sketched: bool,
    /// The stations synced before (`PeerState::synced_before`).
    synced_before: bool,
    /// Whether the last session with the peer ended unverified, and the salt
    /// to use (responder).
    hint: (bool, u64),
    /// Authentication with the peer, when it has a key.
    auth: Option<PeerAuth>,
    /// This session's keys, once both nonces needed are known.
    keys: Option<SessionKeys>,
    /// Tags our frames; `None` until we may tag (or without authentication).
    tx_key: Option<MacKey>,
    /// Checks the peer's frames; `None`: untagged frames are taken.
    rx_key: Option<MacKey>,
    /// The initiator's Hello as it went on air (the responder's proof covers it).
    hello_bytes: Vec<u8>,
    /// The peer's Hello as received.
    peer_hello: Vec<u8>,
    /// Responder: the shell accepted the caller; until then a failure is
    /// answered with one short refusal outside the ARQ, never with data.
    accepted: bool,
    /// An `Error` for a caller that was not accepted, for the engine to send once.
    refusal: Option<Vec<u8>>,
    /// This station takes no bundle from the peer.
    refuse_push: bool,
    /// The peer takes no bundle from this station.
    peer_refuses_push: bool,
}

impl Session {
    /// Calls `peer`; `state` is what the shell kept about it.
    pub fn initiate(
        config: Config,
        local: LocalInfo,
        peer: StationId,
        state: PeerState,
    ) -> Result<Self, SessionError> {
        let mut s = Session::new(Role::Initiator, config, local)?;
        s.peer = Some(peer);
        s.summary.peer = Some(peer);
        s.kept = state.outgoing;
        s.partial = state.incoming;
        s.synced_before = state.synced_before;
        s.refuse_push = state.refuse_push;
        if let Some(a) = &state.auth {
            let keys = SessionKeys::new(&a.secret, s.local.station, peer, a.nonce);
            s.rx_key = Some(keys.responder_frames());
            s.keys = Some(keys);
        }
        s.auth = state.auth;
        s.send_hello();
        Ok(s)
    }

    /// Answers whoever calls.
    pub fn respond(config: Config, local: LocalInfo) -> Result<Self, SessionError> {
        Session::new(Role::Responder, config, local)
    }

    fn new(role: Role, config: Config, local: LocalInfo) -> Result<Self, SessionError> {
        if config.max_message < MIN_MESSAGE {
            return Err(SessionError::Local(format!(
                "link message size {} is below the session minimum {MIN_MESSAGE}",
                config.max_message
            )));
        }
        if local.callsign.len() > super::message::MAX_CALLSIGN {
            return Err(SessionError::Local(format!(
                "callsign {:?} is longer than {} bytes",
                local.callsign,
                super::message::MAX_CALLSIGN
            )));
        }
        Ok(Session {
            role,
            config,
            local,
            peer: None,
            peer_vector: VersionVector::default(),
            peer_dict_id: 0,
            peer_resume: None,
            in_apply: None,
            kept: None,
            partial: None,
            state: State::AwaitHello,
            outbox: VecDeque::new(),
            fragments: Defragmenter::default(),
            events: VecDeque::new(),
            summary: Summary::default(),
            reconciled: None,
            export_below: None,
            reconciling: false,
            sketched: false,
            synced_before: false,
            hint: (false, 0),
            auth: None,
            keys: None,
            tx_key: None,
            rx_key: None,
            hello_bytes: Vec::new(),
            peer_hello: Vec::new(),
            accepted: role == Role::Initiator,
            refusal: None,
            refuse_push: false,
            peer_refuses_push: false,
        })
    }

    /// Whether this station called or answered.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The key that tags this station's frames, once it may tag.
    pub fn tx_key(&self) -> Option<&MacKey> {
        self.tx_key.as_ref()
    }

    /// The key the peer's frames must carry a tag of; `None`: untagged frames
    /// are taken (before the Hello, or without authentication).
    pub fn rx_key(&self) -> Option<&MacKey> {
        self.rx_key.as_ref()
    }

    /// A refusal waits to be taken (`take_refusal`).
    pub fn has_refusal(&self) -> bool {
        self.refusal.is_some()
    }

    /// Responder: whether the shell accepted the caller (an initiator: always).
    pub fn was_accepted(&self) -> bool {
        self.accepted
    }

    /// The caller was not accepted: the `Error` to send it once, outside the
    /// ARQ (the engine sends it in a control frame). Taken once.
    pub fn take_refusal(&mut self) -> Option<Vec<u8>> {
        self.refusal.take()
    }

    /// Initiator, before the responder's Hello: the responder refused the call
    /// (an `Error` in a control frame). Ignored once the peer has proven itself.
    pub fn refused_by_peer(&mut self, error: &[u8]) {
        if self.is_closed()
            || self.role != Role::Initiator
            || !matches!(self.state, State::AwaitHello)
        {
            return;
        }
        if let Ok(Message::Error { code, text }) = Message::parse(error) {
            self.fail(SessionError::PeerError { code, text }, None);
        }
    }

    /// The peer, once known.
    pub fn peer(&self) -> Option<StationId> {
        self.peer
    }

    /// Both directions completed.
    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Finished)
    }

    /// Why the session failed, if it did.
    pub fn error(&self) -> Option<&SessionError> {
        match &self.state {
            State::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// Over (finished or failed): nothing more will happen once the outbox is drained.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Finished | State::Failed(_))
    }

    /// What the session did so far.
    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    /// Bundle transfer progress each way (see `Progress`).
    pub fn progress(&self) -> Progress {
        let mut p = Progress::default();
        match &self.state {
            State::Send(_, Sending::Transfer { bytes, next, .. }) => {
                p.sending = Some((*next, bytes.len() as u64));
            }
            State::Recv(_, Receiving::Transfer(r)) => {
                p.receiving = Some((r.received(), r.total()));
            }
            _ => {}
        }
        p
    }

    /// The next event for the shell, if any; handle it before sending more.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    /// The next message for the ARQ, control messages first, then chunks of
    /// the bundle being sent, cut to the ARQ's message size.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        let bytes = match self.outbox.pop_front() {
            Some(b) => b,
            None => self.next_chunk()?.to_bytes(),
        };
        self.summary.message_bytes_sent += bytes.len() as u64;
        Some(bytes)
    }

    fn next_chunk(&mut self) -> Option<Message> {
        let max = self.config.max_message;
        let State::Send(
            _,
            Sending::Transfer {
                bytes, next, skip, ..
            },
        ) = &mut self.state
        else {
            return None;
        };
        let len = bytes.len() as u64;
        skip_held(next, skip);
        if *next >= len {
            return None;
        }
        let room = (max - 1 - super::message::varint_len(*next)) as u64;
        let end = len
            .min(*next + room)
            .min(skip.front().map_or(u64::MAX, |p| p.0));
        let chunk = bytes[*next as usize..end as usize].to_vec();
        let msg = Message::Chunk {
            offset: *next,
            bytes: chunk,
        };
        self.summary.bundle_bytes_sent += end - *next;
        *next = end;
        // At the end as soon as the last missing byte is out.
        skip_held(next, skip);
        Some(msg)
    }

    /// The ARQ gave up: the session fails; what was stored stays for resume.
    pub fn link_lost(&mut self) {
        if !self.is_closed() {
            self.fail(SessionError::LinkLost, None);
        }
    }

    /// Stop the session and tell the peer.
    pub fn cancel(&mut self) {
        if !self.is_closed() {
            self.fail(
                SessionError::Cancelled,
                Some((ErrorCode::Cancelled, "cancelled by operator".into())),
            );
        }
    }

    /// The shell failed at store work (disk full, database locked, ...). Partial
    /// and kept bundles stay, so a later session resumes.
    pub fn local_failure(&mut self, text: impl Into<String>) {
        if !self.is_closed() {
            let text = text.into();
            self.fail(
                SessionError::Local(text.clone()),
                Some((ErrorCode::Local, text)),
            );
        }
    }

    /// Responder: the peer of the last `PeerHello` is registered; `state` is
    /// what the shell kept about it.
    pub fn accept_peer(&mut self, state: PeerState) -> Result<(), WrongState> {
        if self.is_closed() {
            return Ok(());
        }
        self.expect(matches!(self.state, State::AwaitAccept), "accept_peer")?;
        if let Err(why) = self.authenticate_caller(state.auth.as_ref()) {
            self.fail(
                SessionError::Unauthenticated(why.clone()),
                Some((ErrorCode::Unauthenticated, why)),
            );
            return Ok(());
        }
        self.accepted = true;
        self.auth = state.auth;
        self.refuse_push = state.refuse_push;
        self.kept = state.outgoing;
        self.partial = state.incoming;
        self.hint = (state.reconcile, state.salt);
        self.synced_before = state.synced_before;
        self.send_hello();
        if self.is_closed() {
            return Ok(());
        }
        match self.reconcile_capacity() {
            Some(capacity) => {
                self.state = State::Reconcile(Recon::Listing { capacity });
                self.events
                    .push_back(SessionEvent::NeedItems { salt: state.salt });
            }
            None => self.start_sending(Phase::Pull),
        }
        Ok(())
    }

    /// Responder: checks the caller's Hello against its registered key and
    /// sets the session's keys. Err: why it is refused.
    fn authenticate_caller(&mut self, auth: Option<&PeerAuth>) -> Result<(), String> {
        let hello = match Message::parse(&self.peer_hello) {
            Ok(Message::Hello(h)) => h.auth,
            _ => None,
        };
        self.hello_bytes = self.peer_hello.clone();
        let peer = self.peer_id();
        let Some(a) = auth else {
            if hello.is_some() {
                return Err(format!(
                    "station {peer} is registered here without a key (--no-auth): register it \
                     with its card on both sides, or with --no-auth on both"
                ));
            }
            return Ok(());
        };
        let Some(h) = hello else {
            return Err(format!(
                "station {peer} must prove its identity: register this station on it with \
                 this station's card"
            ));
        };
        let keys = SessionKeys::new(&a.secret, peer, self.local.station, h.nonce);
        let signed = &self.hello_bytes[..self.hello_bytes.len() - PROOF_LEN];
        if !keys.initiator_hello().check_proof(signed, &h.proof) {
            return Err(format!(
                "the Hello's proof does not match station {peer}'s key"
            ));
        }
        if h.nonce <= a.last_peer_nonce {
            return Err(
                "a replayed Hello (its nonce is not newer than the last one accepted)".into(),
            );
        }
        self.events.push_back(SessionEvent::Authenticated {
            peer,
            nonce: h.nonce,
        });
        self.tx_key = Some(keys.responder_frames());
        self.rx_key = Some(keys.initiator_frames(a.nonce));
        self.keys = Some(keys);
        self.summary.authenticated = true;
        Ok(())
    }

    /// Responder: the peer of the last `PeerHello` is not registered.
    pub fn refuse_peer(&mut self) -> Result<(), WrongState> {
        if self.is_closed() {
            return Ok(());
        }
        self.expect(matches!(self.state, State::AwaitAccept), "refuse_peer")?;
        let station = self.peer.unwrap_or_default();
        self.fail(
            SessionError::UnknownStation { station },
            Some((
                ErrorCode::UnknownStation,
                format!("station {station} is not registered here"),
            )),
        );
        Ok(())
    }

    /// Responder: whether to reconcile before sending, and the first sketch's
    /// capacity. Only when the contents differ and the change logs cannot be
    /// the whole story: first contact (neither holds a change of the other),
    /// or the last session ended unverified. Never across a resumed transfer.
    fn reconcile_capacity(&self) -> Option<u64> {
        let differ = self
            .summary
            .peer_fingerprint
            .is_some_and(|p| p != self.local.fingerprint);
        let first_contact = self.first_contact();
        let quiet = self.kept.is_none() && self.partial.is_none() && self.peer_resume.is_none();
        let wanted = self.config.reconcile && differ && quiet;
        (wanted && (first_contact || self.hint.0)).then_some(if first_contact {
            // Stations set up from copies of the same data differ by their edits;
            // a sixteenth of the rows is a guess the doubling corrects cheaply.
            0 // sized from our item count in items_ready
        } else {
            DRIFT_CAPACITY
        })
    }

    /// Never synced, and neither station holds a change of the other.
    fn first_contact(&self) -> bool {
        let peer = self.peer_id();
        !self.synced_before
            && self.peer_vector.get(&self.local.station) == 0
            && self.local.vector.get(&peer) == 0
    }

    /// Our reconciliation items (`NeedItems`), and the vector held when listed.
    pub fn items_ready(
        &mut self,
        items: Vec<u32>,
        vector: VersionVector,
    ) -> Result<(), WrongState> {
        if self.is_closed() {
            return Ok(());
        }
        match std::mem::replace(&mut self.state, State::AwaitHello) {
            State::Reconcile(Recon::Listing { capacity }) => {
                let n = items.len() as u64;
                let capacity = if capacity == 0 {
                    (n / 16).clamp(64, 2048)
                } else {
                    capacity
                }
                .min(MAX_SKETCH_CAPACITY) as usize;
                let sketch = Sketch::of(items.iter().copied(), capacity);
                self.summary.sketch_sums += capacity as u64;
                self.queue(Message::Sketch {
                    salt: self.hint.1,
                    items: n,
                    offset: 0,
                    sums: sketch.sums().to_vec(),
                });
                if !self.is_closed() {
                    self.state = State::Reconcile(Recon::Sketched {
                        items,
                        sketch,
                        claim: vector,
                    });
                }
            }
            State::Reconcile(Recon::Listing2 { peer }) => {
                self.try_decode(peer, items, None, vector)
            }
            other => {
                self.state = other;
                return Err(self.wrong("items_ready"));
            }
        }
        Ok(())
    }

    /// Initiator: decode the difference of the peer's sketch and ours; name the
    /// peer's items we lack, or ask for more sums, or give up.
    fn try_decode(
        &mut self,
        peer: PeerSketch,
        items: Vec<u32>,
        mine: Option<Sketch>,
        claim: VersionVector,
    ) {
        let capacity = peer.sums.len();
        // Our own sketch grows with the peer's: only the new sums are computed.
        let mine = match mine {
            Some(mut m) => {
                m.extend(items.iter().copied(), capacity);
                m
            }
            None => Sketch::of(items.iter().copied(), capacity),
        };
        if let Some(d) = crate::recon::difference(&items, &mine, &peer.sums) {
            self.summary.differences = Some((d.ours.len() + d.theirs.len()) as u64);
            let (own, theirs) = (d.ours, d.theirs);
            self.reconciling = true;
            self.reconciled = Some(Reconciled {
                salt: peer.salt,
                items: own,
                claim,
                with_log: !self.first_contact(),
            });
            self.queue(Message::Differences { items: theirs });
            if !self.is_closed() {
                self.state = State::Recv(Phase::Pull, Receiving::AwaitStart);
            }
            return;
        }
        // At least the difference in counts; past a quarter of both sets the
        // change logs carry it for less.
        let cap = capacity as u64;
        let gap = peer.items.abs_diff(items.len() as u64);
        let next = (2 * cap)
            .max(gap.saturating_add(16))
            .min(MAX_SKETCH_CAPACITY);
        if next <= cap || next > peer.items.saturating_add(items.len() as u64) / 4 + 64 {
            self.queue(Message::SketchMore { capacity: 0 });
            if !self.is_closed() {
                self.state = State::Recv(Phase::Pull, Receiving::AwaitStart);
            }
            return;
        }
        self.queue(Message::SketchMore { capacity: next });
        if !self.is_closed() {
            self.state = State::Reconcile(Recon::Extending {
                peer,
                items,
                mine,
                claim,
            });
        }
    }

    /// The store's bundle for the peer; empty when the peer lacks nothing.
    pub fn bundle_ready(&mut self, bytes: Vec<u8>) -> Result<(), WrongState> {
        self.bundle_ready_then(bytes, None)
    }

    /// As `bundle_ready`; `next`: another bundle follows once the peer applied
    /// this one (a lower priority class), and `NeedBundleFor` will carry it as
    /// `below`.
    pub fn bundle_ready_then(
        &mut self,
        bytes: Vec<u8>,
        next: Option<i64>,
    ) -> Result<(), WrongState> {
        if self.is_closed() {
            return Ok(());
        }
        let phase = match self.state {
            State::Send(phase, Sending::AwaitBundle) => phase,
            _ => return Err(self.wrong("bundle_ready")),
        };
        if bytes.is_empty() {
            self.queue(Message::NoBundle);
            self.finish_sending(phase);
            return Ok(());
        }
        let id = BundleId::of(&bytes);
        let peer = self.peer_id();
        self.events.push_back(SessionEvent::KeepOutgoing {
            peer,
            id,
            bytes: bytes.clone(),
        });
        self.export_below = next;
        self.queue(Message::BundleStart {
            id,
            total_len: bytes.len() as u64,
            offset: 0,
            more: next.is_some(),
        });
        if !self.is_closed() {
            self.state = State::Send(
                phase,
                Sending::Transfer {
                    id,
                    bytes,
                    next: 0,
                    skip: VecDeque::new(),
                    resumed: next.is_some(),
                },
            );
        }
        Ok(())
    }

    /// The arrived bundle is committed; `vector` is what this station now holds.
    pub fn bundle_committed(&mut self, vector: VersionVector) -> Result<(), WrongState> {
        if self.is_closed() {
            self.discard_applied();
            return Ok(());
        }
        let (phase, id, resumed) = match self.state {
            State::Recv(phase, Receiving::Applying { id, resumed }) => (phase, id, resumed),
            _ => return Err(self.wrong("bundle_committed")),
        };
        self.discard_applied();
        self.summary.bundles_applied += 1;
        self.local.vector = vector.clone();
        self.queue(Message::Applied {
            id,
            vector,
            fingerprint: Some(self.local.fingerprint),
        });
        if self.is_closed() {
            return Ok(());
        }
        if resumed {
            self.state = State::Recv(phase, Receiving::AwaitStart);
        } else {
            self.finish_receiving(phase);
        }
        Ok(())
    }

    /// The arrived bundle cannot be applied (wrong schema, bad content): the
    /// partial is dropped, the peer told why, and the session fails.
    pub fn bundle_refused(&mut self, reason: impl Into<String>) -> Result<(), WrongState> {
        if self.is_closed() {
            self.discard_applied();
            return Ok(());
        }
        if !matches!(self.state, State::Recv(_, Receiving::Applying { .. })) {
            return Err(self.wrong("bundle_refused"));
        }
        let reason = reason.into();
        self.discard_applied();
        self.fail(
            SessionError::BundleRefused(reason.clone()),
            Some((ErrorCode::BundleRefused, reason)),
        );
        Ok(())
    }

    /// This station's content fingerprint changed (the shell re-read it after a
    /// capture check or a commit): later messages carry the new one.
    pub fn set_fingerprint(&mut self, fingerprint: u64) {
        self.local.fingerprint = fingerprint;
    }

    /// One message from the ARQ, delivered in order exactly once.
    pub fn handle_message(&mut self, bytes: &[u8]) {
        if self.is_closed() {
            return;
        }
        self.summary.message_bytes_received += bytes.len() as u64;
        let msg = match self.fragments.push(bytes) {
            Ok(Some(m)) => m,
            Ok(None) => return,
            Err(e) => return self.reject(e.into()),
        };
        if matches!(msg, Message::Hello(_)) {
            // The proofs cover the Hello's bytes as sent; re-emitting gives them
            // back exactly (a parsed message emits what it was parsed from).
            self.peer_hello = msg.to_bytes();
        }
        if let Message::Error { code, text } = msg {
            self.fail(SessionError::PeerError { code, text }, None);
            return;
        }
        let state = std::mem::replace(&mut self.state, State::AwaitHello);
        match (state, msg) {
            (State::AwaitHello, Message::Hello(h)) => self.on_hello(h),
            (State::Recv(phase, Receiving::AwaitStart), Message::NoBundle) => {
                if let Some(p) = self.partial.take() {
                    let peer = self.peer_id();
                    self.events
                        .push_back(SessionEvent::DiscardPartial { peer, id: p.id });
                }
                self.finish_receiving(phase);
            }
            (
                State::Recv(phase, Receiving::AwaitStart),
                Message::BundleStart {
                    id,
                    total_len,
                    offset,
                    more,
                },
            ) => self.on_bundle_start(phase, id, total_len, offset, more),
            (State::Recv(phase, Receiving::Transfer(r)), Message::Chunk { offset, bytes }) => {
                self.on_chunk(phase, r, offset, bytes)
            }
            (
                State::Send(
                    phase,
                    Sending::Transfer {
                        id,
                        bytes,
                        next,
                        resumed,
                        ..
                    },
                ),
                Message::Applied {
                    id: got,
                    vector,
                    fingerprint,
                },
            ) if got == id && next == bytes.len() as u64 => {
                if fingerprint.is_some() {
                    self.summary.peer_fingerprint = fingerprint;
                }
                self.on_applied(phase, id, resumed, vector);
            }
            (
                State::Recv(Phase::Pull, Receiving::AwaitStart),
                Message::Sketch {
                    salt,
                    items,
                    offset: 0,
                    sums,
                },
            ) if self.role == Role::Initiator
                && !self.sketched
                && !sums.is_empty()
                && sums.len() as u64 <= MAX_SKETCH_CAPACITY =>
            {
                // One reconciliation per session: a second Sketch is a violation.
                self.sketched = true;
                self.summary.sketch_sums += sums.len() as u64;
                self.state = State::Reconcile(Recon::Listing2 {
                    peer: PeerSketch { salt, items, sums },
                });
                self.events.push_back(SessionEvent::NeedItems { salt });
            }
            (
                State::Reconcile(Recon::Extending {
                    mut peer,
                    items,
                    mine,
                    claim,
                }),
                Message::Sketch {
                    salt, offset, sums, ..
                },
            ) if salt == peer.salt
                && offset == peer.sums.len() as u64
                && !sums.is_empty()
                && offset + sums.len() as u64 <= MAX_SKETCH_CAPACITY =>
            {
                self.summary.sketch_sums += sums.len() as u64;
                peer.sums.extend(sums);
                self.try_decode(peer, items, Some(mine), claim);
            }
            (
                State::Reconcile(Recon::Sketched {
                    items,
                    mut sketch,
                    claim,
                }),
                Message::SketchMore { capacity },
            ) => {
                let have = sketch.capacity() as u64;
                if capacity == 0 {
                    // The initiator gave up: sync by the change logs.
                    self.start_sending(Phase::Pull);
                } else if capacity <= have || capacity > MAX_SKETCH_CAPACITY {
                    self.state = State::Reconcile(Recon::Sketched {
                        items,
                        sketch,
                        claim,
                    });
                    self.reject(Violation::SketchCapacity { capacity, have }.into());
                } else {
                    sketch.extend(items.iter().copied(), capacity as usize);
                    self.summary.sketch_sums += capacity - have;
                    self.queue(Message::Sketch {
                        salt: self.hint.1,
                        items: items.len() as u64,
                        offset: have,
                        sums: sketch.sums()[have as usize..].to_vec(),
                    });
                    if !self.is_closed() {
                        self.state = State::Reconcile(Recon::Sketched {
                            items,
                            sketch,
                            claim,
                        });
                    }
                }
            }
            (
                State::Reconcile(Recon::Sketched { items, claim, .. }),
                Message::Differences { items: asked },
            ) => {
                let ours: std::collections::HashSet<u32> = items.into_iter().collect();
                let send: Vec<u32> = asked.into_iter().filter(|i| ours.contains(i)).collect();
                self.summary.differences = Some(send.len() as u64);
                self.reconciling = true;
                self.reconciled = Some(Reconciled {
                    salt: self.hint.1,
                    items: send,
                    claim,
                    with_log: !self.first_contact(),
                });
                self.start_sending(Phase::Pull);
            }
            (State::AwaitDone, Message::Done { fingerprint }) => {
                if fingerprint.is_some() {
                    self.summary.peer_fingerprint = fingerprint;
                }
                self.finish();
            }
            (state, msg) => {
                let v = Violation::Unexpected {
                    message: msg.name(),
                    state: state.name(),
                };
                self.state = state;
                self.reject(v.into());
            }
        }
    }

    fn on_hello(&mut self, h: Hello) {
        if h.version != PROTOCOL_VERSION {
            return self.fail(
                SessionError::Version {
                    ours: PROTOCOL_VERSION,
                    theirs: h.version,
                },
                Some((
                    ErrorCode::Version,
                    format!("this station speaks session protocol {PROTOCOL_VERSION}"),
                )),
            );
        }
        let want_initiator = self.role == Role::Responder;
        if h.initiator != want_initiator {
            return self.reject(Violation::SameRole.into());
        }
        if h.station == self.local.station {
            return self.reject(Violation::OwnId.into());
        }
        if let (Role::Initiator, Some(expected)) = (self.role, self.peer) {
            if h.station != expected {
                return self.fail(
                    SessionError::WrongStation {
                        expected,
                        got: h.station,
                    },
                    Some((
                        ErrorCode::WrongStation,
                        format!("called {expected}, not {}", h.station),
                    )),
                );
            }
        }
        if self.role == Role::Initiator {
            if let Err(why) = self.authenticate_responder(h.auth) {
                return self.fail(SessionError::Unauthenticated(why), None);
            }
        }
        self.peer_refuses_push = h.refuses_push;
        // Differing schemas still sync: bundles carry the sender's table layout
        // and the receiver maps columns by name (the shell decides from `schema`).
        self.peer = Some(h.station);
        self.summary.peer = Some(h.station);
        self.peer_vector = h.vector;
        self.peer_dict_id = h.dict_id;
        self.peer_resume = h.resume;
        self.summary.peer_fingerprint = h.fingerprint;
        self.events.push_back(SessionEvent::PeerHello {
            station: h.station,
            callsign: h.callsign,
            dict_id: h.dict_id,
            schema: h.schema,
        });
        match self.role {
            Role::Responder => self.state = State::AwaitAccept,
            Role::Initiator => self.state = State::Recv(Phase::Pull, Receiving::AwaitStart),
        }
    }

    /// Initiator: checks the responder's proof and sets our sending key.
    fn authenticate_responder(&mut self, auth: Option<HelloAuth>) -> Result<(), String> {
        let Some(keys) = &self.keys else {
            return Ok(());
        };
        let Some(h) = auth else {
            return Err(
                "the peer answered without proving its identity: it has no key for \
                        this station (register this station there with its card)"
                    .into(),
            );
        };
        let mut transcript = self.hello_bytes.clone();
        transcript.extend_from_slice(&self.peer_hello[..self.peer_hello.len() - PROOF_LEN]);
        if !keys
            .responder_hello(h.nonce)
            .check_proof(&transcript, &h.proof)
        {
            return Err("the answer's proof does not match the peer's registered key".into());
        }
        self.tx_key = Some(keys.initiator_frames(h.nonce));
        self.summary.authenticated = true;
        Ok(())
    }

    fn on_bundle_start(&mut self, phase: Phase, id: BundleId, total: u64, offset: u64, more: bool) {
        let max = self.config.max_bundle;
        let stored = self.partial.take();
        let stored_id = stored.as_ref().map(|p| p.id);
        let (r, start) = match BundleReassembly::start(id, total, offset, more, max, stored) {
            Ok(ok) => ok,
            Err(e) => {
                // A partial the sender's resume does not fit (a forged broadcast
                // piece changed its length, say) would fail every later session
                // the same way: it goes, and the next session starts afresh.
                if let (ReceiveError::Protocol(Violation::ResumeMismatch { .. }), Some(old)) =
                    (&e, stored_id)
                {
                    let peer = self.peer_id();
                    self.events
                        .push_back(SessionEvent::DiscardPartial { peer, id: old });
                }
                return self.reject(e.into());
            }
        };
        let peer = self.peer_id();
        if let Start::Fresh { discard } = start {
            if let Some(old) = discard {
                self.events
                    .push_back(SessionEvent::DiscardPartial { peer, id: old });
            }
            self.events.push_back(SessionEvent::BeginPartial {
                peer,
                id,
                total_len: total,
            });
        }
        self.received(phase, r);
    }

    fn on_chunk(&mut self, phase: Phase, mut r: BundleReassembly, offset: u64, bytes: Vec<u8>) {
        if let Err(v) = r.chunk(offset, &bytes) {
            self.state = State::Recv(phase, Receiving::Transfer(r));
            return self.reject(v.into());
        }
        self.summary.bundle_bytes_received += bytes.len() as u64;
        let peer = self.peer_id();
        self.events.push_back(SessionEvent::SaveChunk {
            peer,
            id: r.id(),
            offset,
            bytes,
        });
        self.received(phase, r);
    }

    /// Hand a whole bundle on, or wait for the rest of it.
    fn received(&mut self, phase: Phase, r: BundleReassembly) {
        if r.is_complete() {
            self.complete(phase, r);
        } else {
            self.state = State::Recv(phase, Receiving::Transfer(r));
        }
    }

    fn complete(&mut self, phase: Phase, r: BundleReassembly) {
        let peer = self.peer_id();
        let (id, resumed) = (r.id(), r.resumed());
        let buf = match r.finish() {
            Ok(buf) => buf,
            Err(e) => {
                self.events
                    .push_back(SessionEvent::DiscardPartial { peer, id });
                return self.reject(e.into());
            }
        };
        self.state = State::Recv(phase, Receiving::Applying { id, resumed });
        self.in_apply = Some(id);
        self.events.push_back(SessionEvent::BundleArrived {
            peer,
            id,
            bytes: buf,
            reconciled: self.reconciling,
        });
    }

    fn on_applied(&mut self, phase: Phase, id: BundleId, resumed: bool, vector: VersionVector) {
        let peer = self.peer_id();
        self.summary.bundles_confirmed += 1;
        self.peer_vector = vector.clone();
        self.events
            .push_back(SessionEvent::PeerConfirmed { peer, vector });
        self.events
            .push_back(SessionEvent::DropOutgoing { peer, id });
        if resumed {
            // The kept bundle predates this session: ask for what is new since.
            self.ask_for_bundle(phase);
        } else {
            self.finish_sending(phase);
        }
    }

    /// The partial of the bundle just applied (or refused) is of no more use.
    fn discard_applied(&mut self) {
        if let Some(id) = self.in_apply.take() {
            let peer = self.peer_id();
            self.events
                .push_back(SessionEvent::DiscardPartial { peer, id });
        }
    }

    fn send_hello(&mut self) {
        let resume = self.partial.as_mut().map(PartialIncoming::resume);
        let mut hello = Hello {
            version: PROTOCOL_VERSION,
            initiator: self.role == Role::Initiator,
            station: self.local.station,
            callsign: self.local.callsign.clone(),
            schema: self.local.schema,
            dict_id: self.local.dict_id,
            vector: self.local.vector.clone(),
            resume,
            fingerprint: Some(self.local.fingerprint),
            refuses_push: self.refuse_push,
            auth: None,
        };
        if let (Some(a), Some(keys)) = (&self.auth, &self.keys) {
            hello.auth = Some(HelloAuth {
                nonce: a.nonce,
                proof: [0; PROOF_LEN],
            });
            let bytes = Message::Hello(hello.clone()).to_bytes();
            let signed = &bytes[..bytes.len() - PROOF_LEN];
            let proof = match self.role {
                Role::Initiator => keys.initiator_hello().proof(signed),
                Role::Responder => {
                    let mut transcript = self.hello_bytes.clone();
                    transcript.extend_from_slice(signed);
                    keys.responder_hello(a.nonce).proof(&transcript)
                }
            };
            hello.auth = Some(HelloAuth {
                nonce: a.nonce,
                proof,
            });
        }
        let msg = Message::Hello(hello);
        if self.role == Role::Initiator {
            self.hello_bytes = msg.to_bytes();
        }
        self.queue(msg);
    }

    fn start_sending(&mut self, phase: Phase) {
        if self.peer_refuses_push {
            // The peer takes nothing from us: say so at once, keep nothing.
            self.summary.push_refused = true;
            if let Some(kept) = self.kept.take() {
                let peer = self.peer_id();
                self.events
                    .push_back(SessionEvent::DropOutgoing { peer, id: kept.id });
            }
            self.queue(Message::NoBundle);
            self.finish_sending(phase);
            return;
        }
        let resume = self.peer_resume.take();
        if let Some(kept) = self.kept.take() {
            match resume {
                Some(r)
                    if r.id == kept.id
                        && r.stored <= kept.bytes.len() as u64
                        && r.later.last().is_none_or(|&(off, len)| {
                            off.saturating_add(len) <= kept.bytes.len() as u64
                        }) =>
                {
                    self.queue(Message::BundleStart {
                        id: kept.id,
                        total_len: kept.bytes.len() as u64,
                        offset: r.stored,
                        more: true,
                    });
                    if !self.is_closed() {
                        self.state = State::Send(
                            phase,
                            Sending::Transfer {
                                id: kept.id,
                                bytes: kept.bytes,
                                next: r.stored,
                                skip: r.later.into_iter().collect(),
                                resumed: true,
                            },
                        );
                    }
                    return;
                }
                // The peer holds none of it: it either applied it (its vector
                // says so) or lost it; a fresh export covers both.
                _ => {
                    let peer = self.peer_id();
                    self.events
                        .push_back(SessionEvent::DropOutgoing { peer, id: kept.id });
                }
            }
        }
        self.ask_for_bundle(phase);
    }

    fn ask_for_bundle(&mut self, phase: Phase) {
        self.state = State::Send(phase, Sending::AwaitBundle);
        self.events.push_back(SessionEvent::NeedBundleFor {
            peer: self.peer_id(),
            peer_vector: self.peer_vector.clone(),
            peer_dict_id: self.peer_dict_id,
            reconciled: self.reconciled.take(),
            below: self.export_below,
        });
    }

    fn finish_sending(&mut self, phase: Phase) {
        match phase {
            Phase::Pull => self.state = State::Recv(Phase::Push, Receiving::AwaitStart),
            Phase::Push => self.state = State::AwaitDone,
        }
    }

    fn finish_receiving(&mut self, phase: Phase) {
        match phase {
            Phase::Pull => self.start_sending(Phase::Push),
            Phase::Push => {
                self.queue(Message::Done {
                    fingerprint: Some(self.local.fingerprint),
                });
                if !self.is_closed() {
                    self.finish();
                }
            }
        }
    }

    fn finish(&mut self) {
        self.state = State::Finished;
        self.summary.local_fingerprint = self.local.fingerprint;
        self.summary.local_vector = self.local.vector.clone();
        self.events
            .push_back(SessionEvent::Finished(self.summary.clone()));
    }

    /// Queues a control message, in fragments if it exceeds the ARQ's size.
    fn queue(&mut self, msg: Message) {
        let len = msg.buffer_len();
        let max = self.config.max_message;
        if len <= max {
            self.outbox.push_back(msg.to_bytes());
            return;
        }
        if len > MAX_REASSEMBLY {
            let text = format!("{} of {len} bytes is too large to send", msg.name());
            self.fail(
                SessionError::MessageTooLarge {
                    len,
                    max: MAX_REASSEMBLY,
                },
                Some((ErrorCode::Local, text)),
            );
            return;
        }
        let bytes = msg.to_bytes();
        let mut pieces = bytes.chunks(max - 1).peekable();
        while let Some(piece) = pieces.next() {
            let frag = Message::Fragment {
                last: pieces.peek().is_none(),
                bytes: piece.to_vec(),
            };
            self.outbox.push_back(frag.to_bytes());
        }
    }

    /// Fails on something the peer sent, telling it why.
    fn reject(&mut self, err: SessionError) {
        let tell = err.tell();
        self.fail(err, tell);
    }

    /// Fails for good, once; `tell` becomes an `Error` to the peer.
    fn fail(&mut self, err: SessionError, tell: Option<(ErrorCode, String)>) {
        if self.is_closed() {
            return;
        }
        if let Some((code, mut text)) = tell {
            // Fit the link: 1 type + 1 code + up to 2 length bytes.
            let room = self.config.max_message - 4;
            if text.len() > room {
                let mut end = room;
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                text.truncate(end);
            }
            if !self.accepted {
                // A refusal stays short: the code says what, a few words why.
                let mut end = text.len().min(REFUSAL_TEXT);
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                text.truncate(end);
            }
            let bytes = Message::Error { code, text }.to_bytes();
            if self.accepted {
                self.outbox.push_back(bytes);
            } else {
                // A caller not accepted gets one short refusal, never the ARQ's
                // retries: junk calls must not make this station transmit more.
                self.refusal = Some(bytes);
            }
        }
        self.state = State::Failed(err.clone());
        self.events.push_back(SessionEvent::Failed(err));
    }

    fn expect(&self, ok: bool, call: &'static str) -> Result<(), WrongState> {
        if ok {
            Ok(())
        } else {
            Err(self.wrong(call))
        }
    }

    fn wrong(&self, call: &'static str) -> WrongState {
        WrongState {
            call,
            state: self.state.name(),
        }
    }

    fn peer_id(&self) -> StationId {
        self.peer.unwrap_or_default()
    }
}
