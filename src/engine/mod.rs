//! One station's side of one sync session over one link, pure: the sync
//! `Session` on top of the stop-and-wait `Arq`, on top of the link framing the
//! profile chooses. No I/O, no clock, no SQL: bytes and `now` come in, bytes
//! for one transmission and events go out (the quinn-proto style). The shell
//! answers the session's store work through `session_mut()`.
//!
//! Order of calls, per wake-up: `handle_bytes` / `handle_timeout`, then drain
//! `poll_event` (doing the store work each `EngineEvent::Session` asks for),
//! then `poll_transmit` until `None`, writing each transmission at once, then
//! sleep until `poll_timeout` or the next bytes.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::arq::{Arq, ArqConfig, ArqEvent, ArqFrame, ArqKind, LinkLost, Role};
use crate::delta::StationId;
use crate::frame::ax25::Callsign;
use crate::frame::framer::{Decoded, LinkFramer, RxError, RxFrame};
use crate::frame::link::Ax25Addresses;
use crate::frame::{DecodeInfo, Frame, FrameKind, Route};
use crate::profile::Profile;
use crate::sync::{self, LocalInfo, PeerState, Session, SessionError, SessionEvent};

/// Payload of a control frame meaning "I know no session of this id, call
/// again": a restarted daemon's answer to data of the session it forgot.
pub const CONTROL_UNKNOWN_SESSION: &[u8] = &[0x01];

/// First payload byte of a control frame refusing a call; a session `Error`
/// message follows (the only answer a caller that was not accepted gets).
pub const CONTROL_REFUSED: u8 = 0x02;

/// A control frame telling the sender of session `session` that it is unknown
/// here (kind Control, seq 0), routed back to it where frames carry routes.
pub fn unknown_session_frame(session: u16, route: Option<Route>) -> Frame {
    Frame {
        kind: FrameKind::Control,
        session,
        seq: 0,
        payload: CONTROL_UNKNOWN_SESSION.to_vec(),
        auth_tag: None,
        route,
    }
}

/// What an engine needs besides the station's data.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Firmware profile of the link: framing, FEC, timing.
    pub profile: Profile,
    /// This station's callsign; required on amateur profiles.
    pub local_callsign: Option<Callsign>,
    /// The peer's callsign (AX.25 destination). A responder learns it from the
    /// first frame when not given.
    pub peer_callsign: Option<Callsign>,
    /// The session id in every frame header. The initiator picks one; a
    /// responder given `None` adopts the id of the first frame it hears.
    pub session_id: Option<u16>,
    /// This station's short address, on links whose frames carry a route
    /// (no AX.25 addresses): frames for other addresses are not ours.
    pub local_address: Option<u16>,
    /// The peer's short address; a responder learns it from the call.
    pub peer_address: Option<u16>,
}

/// Why an engine could not be built (local configuration mistakes).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The profile is amateur and this station has no callsign.
    #[error(
        "profile {profile} is for amateur radio: this station must identify with a callsign \
         (set one with `radiosync init --db FILE --callsign CALL`)"
    )]
    NoCallsign {
        /// Name of the profile.
        profile: String,
    },
    /// The profile wraps frames in AX.25 and the peer's callsign is not known.
    #[error(
        "profile {profile} wraps frames in AX.25: the peer's callsign is needed as the \
         destination (register it with `radiosync peer add ... --callsign CALL`)"
    )]
    NoPeerCallsign {
        /// Name of the profile.
        profile: String,
    },
    /// `initiate` was given no session id.
    #[error("an initiating session needs a session id")]
    NoSessionId,
    /// The profile's FEC parameters are invalid.
    #[error("profile FEC parameters: {0}")]
    Fec(#[from] crate::frame::FecError),
    /// The sync session could not be set up.
    #[error("sync session: {0}")]
    Session(#[from] SessionError),
}

/// The frame header fields worth showing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameInfo {
    /// Data, ack or control.
    pub kind: FrameKind,
    /// Session number from the header.
    pub session: u16,
    /// Sequence number from the header.
    pub seq: u16,
    /// Payload bytes.
    pub payload_len: usize,
    /// What FEC decoding learned; only `encoded_len` is set for frames sent.
    pub decode: DecodeInfo,
}

impl FrameInfo {
    fn of(f: &Frame, decode: DecodeInfo) -> FrameInfo {
        FrameInfo {
            kind: f.kind,
            session: f.session,
            seq: f.seq,
            payload_len: f.payload.len(),
            decode,
        }
    }
}

/// What happened, for the shell.
#[derive(Debug, Clone, PartialEq)]
pub enum EngineEvent {
    /// Store work or an outcome from the sync session: see `SessionEvent`.
    Session(SessionEvent),
    /// One frame went out (its on-air bytes), for captures.
    FrameSent {
        /// The bytes as written to the link.
        bytes: Vec<u8>,
        /// Its header fields.
        info: FrameInfo,
    },
    /// One frame came in (raw bytes; empty when a transparent frame failed
    /// before its extent was known), decoded or not.
    FrameReceived {
        /// The bytes as read from the link.
        bytes: Vec<u8>,
        /// Its header fields, or why it did not decode.
        result: Result<FrameInfo, RxError>,
    },
    /// The ARQ gave the link up; the session fails with `LinkLost` too.
    LinkLost(LinkLost),
}

/// Counters for progress bars, logs and the benchmark.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Bytes written to the link, framing included.
    pub bytes_sent: u64,
    /// Bytes of the frames received, decoded or not.
    pub bytes_received: u64,
    /// Frames sent.
    pub frames_sent: u64,
    /// Frames received, decoded or not.
    pub frames_received: u64,
    /// Transmissions (key-ups).
    pub transmissions: u64,
    /// Data frames the ARQ sent again.
    pub retransmissions: u64,
    /// Reply deadlines that passed with nothing heard.
    pub timeouts: u64,
    /// Frames that failed to decode (CRC, uncorrectable FEC, bad framing).
    pub crc_failures: u64,
    /// Byte errors Reed-Solomon repaired.
    pub fec_corrections: u64,
    /// Frames of other sessions or addressed to other stations, ignored.
    pub foreign_frames: u64,
    /// Frames the ARQ refused (a misbehaving peer).
    pub refused_frames: u64,
    /// Frames dropped because their tag was missing or wrong (forged, replayed
    /// from another session, or damaged beyond the CRC's notice).
    pub unauthenticated_frames: u64,
    /// Estimated time on air of our transmissions, TXDELAY included.
    pub airtime: Duration,
    /// Session message bytes the peer acknowledged / delivered to us.
    pub payload_bytes_acked: u64,
    /// Session message bytes the ARQ delivered to us.
    pub payload_bytes_delivered: u64,
    /// Bundle bytes carried each way (chunks).
    pub bundle_bytes_sent: u64,
    /// Bundle bytes received in chunks.
    pub bundle_bytes_received: u64,
}

/// One station's side of one session. See the module docs for the call order.
#[derive(Debug)]
pub struct Engine {
    profile: Profile,
    local_callsign: Option<Callsign>,
    peer_callsign: Option<Callsign>,
    session_id: Option<u16>,
    local_address: Option<u16>,
    peer_address: Option<u16>,
    framer: LinkFramer,
    arq: Arq,
    session: Session,
    events: VecDeque<EngineEvent>,
    stats: EngineStats,
    /// Messages handed to the ARQ are capped near two transmissions' worth, so
    /// the session's progress follows the air and memory stays small.
    feed_limit: usize,
    gave_up: bool,
    /// A data or ack frame of the peer came in this session.
    heard: bool,
    /// The peer, heard before, said it knows no such session.
    peer_forgot: bool,
    /// The session refused its caller: the ARQ stays silent.
    refused: bool,
    /// A frame with a valid tag came in: untagged acks are refused from now on.
    peer_tagged: bool,
    /// The session's receive key was in place at the last frame.
    rx_keyed: bool,
}

impl Engine {
    /// Calls `peer`; `peer_state` is what the shell kept from earlier sessions.
    pub fn initiate(
        cfg: EngineConfig,
        local: LocalInfo,
        peer: StationId,
        peer_state: PeerState,
    ) -> Result<Engine, EngineError> {
        if cfg.session_id.is_none() {
            return Err(EngineError::NoSessionId);
        }
        let (arq, scfg) = Self::check(&cfg, Role::Initiator)?;
        if cfg.profile.amateur
            && cfg.profile.framing == crate::profile::Framing::Kiss
            && cfg.peer_callsign.is_none()
        {
            return Err(EngineError::NoPeerCallsign {
                profile: cfg.profile.name.clone(),
            });
        }
        let session = Session::initiate(scfg, local, peer, peer_state)?;
        Self::build(cfg, arq, session)
    }

    /// Answers whoever calls (the shell accepts or refuses the peer on `PeerHello`).
    pub fn respond(cfg: EngineConfig, local: LocalInfo) -> Result<Engine, EngineError> {
        let (arq, scfg) = Self::check(&cfg, Role::Responder)?;
        let session = Session::respond(scfg, local)?;
        Self::build(cfg, arq, session)
    }

    fn check(cfg: &EngineConfig, role: Role) -> Result<(Arq, sync::Config), EngineError> {
        if cfg.profile.amateur && cfg.local_callsign.is_none() {
            return Err(EngineError::NoCallsign {
                profile: cfg.profile.name.clone(),
            });
        }
        let mut arq = Arq::new(ArqConfig::from_profile(&cfg.profile), role);
        arq.seed_backoff(backoff_seed(
            cfg.local_callsign.as_ref(),
            cfg.session_id,
            role,
        ));
        let scfg = sync::Config::new(arq.max_message());
        Ok((arq, scfg))
    }

    fn build(cfg: EngineConfig, arq: Arq, session: Session) -> Result<Engine, EngineError> {
        let framer = LinkFramer::new(&cfg.profile)?;
        let feed_limit = (2 * cfg.profile.max_frames_per_transmission as usize).clamp(4, 64);
        let mut e = Engine {
            profile: cfg.profile,
            local_callsign: cfg.local_callsign,
            peer_callsign: cfg.peer_callsign,
            session_id: cfg.session_id,
            local_address: cfg.local_address,
            peer_address: cfg.peer_address,
            framer,
            arq,
            session,
            events: VecDeque::new(),
            stats: EngineStats::default(),
            feed_limit,
            gave_up: false,
            heard: false,
            peer_forgot: false,
            refused: false,
            peer_tagged: false,
            rx_keyed: false,
        };
        e.pump();
        Ok(e)
    }

    /// The firmware profile of the link.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// The session id, once known (a responder adopts it from the first frame).
    pub fn session_id(&self) -> Option<u16> {
        self.session_id
    }

    /// The peer's callsign, given or learnt from its AX.25 header.
    pub fn peer_callsign(&self) -> Option<&Callsign> {
        self.peer_callsign.as_ref()
    }

    /// The sync session, read-only.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// For the shell's answers to store work (`bundle_ready`, `bundle_committed`, ...).
    pub fn session_mut(&mut self) -> &mut Session {
        &mut self.session
    }

    /// The ARQ endpoint, read-only.
    pub fn arq(&self) -> &Arq {
        &self.arq
    }

    /// Raw bytes from the modem or port.
    pub fn handle_bytes(&mut self, now: Instant, bytes: &[u8]) {
        self.framer.push(now, bytes);
        self.drain_framer(now);
    }

    fn drain_framer(&mut self, now: Instant) {
        while let Some(rx) = self.framer.next() {
            self.handle_frame(now, rx);
        }
    }

    /// One frame the shell deframed itself (a daemon that routes frames of
    /// several sessions from one port).
    pub fn handle_frame(&mut self, now: Instant, rx: RxFrame) {
        if !self.rx_keyed && self.session.rx_key().is_some() {
            // Keys came with the caller's acceptance: frames held for a gap
            // were taken unchecked, and anyone could have sent them.
            self.rx_keyed = true;
            self.arq.drop_out_of_order();
        }
        self.stats.frames_received += 1;
        self.stats.bytes_received += rx.bytes.len() as u64;
        let d = match rx.decoded {
            Ok(d) => d,
            Err(e) => {
                self.stats.crc_failures += 1;
                self.events.push_back(EngineEvent::FrameReceived {
                    bytes: rx.bytes,
                    result: Err(e),
                });
                return;
            }
        };
        self.stats.fec_corrections += d.info.corrected_symbols as u64;
        self.events.push_back(EngineEvent::FrameReceived {
            bytes: rx.bytes,
            result: Ok(FrameInfo::of(&d.frame, d.info)),
        });
        if !self.accepts(&d) {
            self.stats.foreign_frames += 1;
            return;
        }
        let kind = match d.frame.kind {
            FrameKind::Data => ArqKind::Data,
            FrameKind::Ack => ArqKind::Ack,
            // Only a peer that had answered can have forgotten the session; before
            // that, our call may simply not have reached it yet.
            FrameKind::Control
                if d.frame.payload == CONTROL_UNKNOWN_SESSION
                    && self.heard
                    && !self.session.is_closed() =>
            {
                self.peer_forgot = true;
                self.give_up();
                return;
            }
            FrameKind::Control if d.frame.payload.first() == Some(&CONTROL_REFUSED) => {
                // Untagged by nature (the refuser has no key for us), so only
                // heeded before the peer has proven itself.
                self.session.refused_by_peer(&d.frame.payload[1..]);
                if self.session.is_closed() {
                    self.gave_up = true;
                }
                return;
            }
            FrameKind::Control | FrameKind::Unknown(_) => {
                self.stats.refused_frames += 1;
                return;
            }
        };
        if !self.authentic(&d.frame, kind) {
            self.stats.unauthenticated_frames += 1;
            return;
        }
        if d.frame.auth_tag.is_some() && self.session.rx_key().is_some() {
            self.peer_tagged = true;
        }
        self.heard = true;
        let frame = ArqFrame {
            kind,
            seq: d.frame.seq,
            payload: d.frame.payload,
        };
        // A refused frame is the peer's fault: dropped. A lost link shows as an event.
        if self.arq.handle_input(now, frame).is_err() {
            self.stats.refused_frames += 1;
        }
        self.pump();
    }

    /// Whether a data or ack frame may go to the ARQ: it carries the tag of the
    /// peer's key, or the session takes untagged frames (before the Hello is
    /// checked, or without authentication). An untagged copy of a data frame
    /// already delivered passes too: the caller's Hello sent again because our
    /// ack was lost; it only makes the ARQ ack again.
    fn authentic(&self, f: &Frame, kind: ArqKind) -> bool {
        let Some(key) = self.session.rx_key() else {
            return true;
        };
        match &f.auth_tag {
            Some(tag) => key.check_frame_tag(u8::from(f.kind), f.session, f.seq, &f.payload, tag),
            // Before the initiator has read our Hello it cannot tag its acks;
            // a forged ack then can only stall the session (bundles are
            // confirmed by the peer's tagged `Applied`), never lose data.
            None if kind == ArqKind::Ack => !self.peer_tagged,
            None => self.arq.delivered(f.seq),
        }
    }

    /// Whether a decoded frame belongs to this session (adopting the session id
    /// and the peer's callsign on a responder's first frame).
    fn accepts(&mut self, d: &Decoded) -> bool {
        if let Some(me) = self.local_address {
            match d.frame.route {
                // On a shared channel, frames of other pairs are not ours.
                Some(r) if r.to != me => return false,
                Some(r) if self.peer_address.is_some_and(|p| p != r.from) => return false,
                _ => {}
            }
        }
        if let Some((source, destination)) = &d.ax25 {
            if Some(destination) != self.local_callsign.as_ref() {
                return false;
            }
            match &self.peer_callsign {
                Some(p) if p != source => return false,
                _ => {}
            }
        }
        match self.session_id {
            Some(id) if id != d.frame.session => return false,
            Some(_) => {}
            None => {
                self.session_id = Some(d.frame.session);
                self.arq.seed_backoff(backoff_seed(
                    self.local_callsign.as_ref(),
                    self.session_id,
                    Role::Responder,
                ));
            }
        }
        if self.peer_callsign.is_none() {
            if let Some((source, _)) = &d.ax25 {
                self.peer_callsign = Some(source.clone());
            }
        }
        if self.local_address.is_some() && self.peer_address.is_none() {
            self.peer_address = d.frame.route.map(|r| r.from);
        }
        true
    }

    /// The route of our frames, once both addresses are known.
    fn route(&self) -> Option<Route> {
        match (self.local_address, self.peer_address) {
            (Some(from), Some(to)) => Some(Route { to, from }),
            _ => None,
        }
    }

    /// A deadline from `poll_timeout` may have passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.framer.handle_timeout(now);
        self.drain_framer(now);
        self.arq.handle_timeout(now);
        self.pump();
    }

    /// ARQ events into the session.
    fn pump(&mut self) {
        while let Some(ev) = self.arq.poll_event() {
            match ev {
                ArqEvent::Delivered(m) => self.session.handle_message(&m),
                ArqEvent::AllAcked => {}
                ArqEvent::LinkLost(l) => {
                    self.session.link_lost();
                    self.events.push_back(EngineEvent::LinkLost(l));
                }
            }
        }
    }

    /// Session messages into the ARQ, up to the feed limit.
    fn feed(&mut self) {
        while self.arq.error().is_none() && self.arq.unacked() < self.feed_limit {
            let Some(m) = self.session.poll_transmit() else {
                break;
            };
            if let Err(e) = self.arq.send(m) {
                // The session sizes messages to the ARQ's limit; only a lost link gets here.
                self.session
                    .local_failure(format!("ARQ refused a message: {e}"));
                self.pump();
                break;
            }
        }
    }

    /// All bytes of one transmission (write them to the port at once), if it
    /// is our turn and there is something to send.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.session.has_refusal() {
            let bytes = self.take_refusal_frame()?;
            let info = FrameInfo {
                kind: FrameKind::Control,
                session: self.session_id.unwrap_or(0),
                seq: 0,
                payload_len: 0,
                decode: DecodeInfo::default(),
            };
            self.events.push_back(EngineEvent::FrameSent {
                bytes: bytes.clone(),
                info,
            });
            return Some(bytes);
        }
        if self.refused {
            // A caller that was not accepted gets one refusal and nothing from
            // the ARQ: not even acks of its junk.
            return None;
        }
        self.feed();
        let tx = self.arq.poll_transmit(now);
        self.pump();
        let tx = tx?;
        let Some(session) = self.session_id else {
            // A responder that has heard nothing cannot speak; the ARQ never asks it to.
            return None;
        };
        let addrs = match (&self.local_callsign, &self.peer_callsign) {
            (Some(l), Some(p)) => Some(Ax25Addresses {
                local: l.clone(),
                peer: p.clone(),
            }),
            _ => None,
        };
        let mut out = Vec::new();
        for af in tx.frames {
            let kind = match af.kind {
                ArqKind::Data => FrameKind::Data,
                ArqKind::Ack => FrameKind::Ack,
            };
            let auth_tag = self.session.tx_key().map(|k| {
                k.frame_tag(u8::from(kind), session, af.seq, &af.payload)
                    .to_vec()
            });
            let frame = Frame {
                kind,
                session,
                seq: af.seq,
                payload: af.payload,
                auth_tag,
                route: self.route(),
            };
            match self.framer.encode(&frame, addrs.as_ref()) {
                Ok(bytes) => {
                    let info = FrameInfo::of(
                        &frame,
                        DecodeInfo {
                            encoded_len: frame.encoded_len(self.framer.fec()),
                            ..DecodeInfo::default()
                        },
                    );
                    self.stats.frames_sent += 1;
                    self.stats.bytes_sent += bytes.len() as u64;
                    out.extend_from_slice(&bytes);
                    self.events
                        .push_back(EngineEvent::FrameSent { bytes, info });
                }
                Err(e) => {
                    self.session
                        .local_failure(format!("cannot frame a message: {e}"));
                    self.pump();
                }
            }
        }
        if out.is_empty() {
            return None;
        }
        self.stats.transmissions += 1;
        self.stats.airtime += Duration::from_millis(self.profile.txdelay_ms.into()) + tx.airtime;
        Some(out)
    }

    /// The session refused its caller: the one control frame to send it (the
    /// shell may hold it back to rate-limit refusals). Afterwards the engine is done.
    pub fn take_refusal_frame(&mut self) -> Option<Vec<u8>> {
        let error = self.session.take_refusal()?;
        self.refused = true;
        self.gave_up = true;
        let session = self.session_id?;
        let mut payload = vec![CONTROL_REFUSED];
        payload.extend_from_slice(&error);
        let frame = Frame {
            kind: FrameKind::Control,
            session,
            seq: 0,
            payload,
            auth_tag: None,
            route: self.route(),
        };
        let addrs = match (&self.local_callsign, &self.peer_callsign) {
            (Some(l), Some(p)) => Some(Ax25Addresses {
                local: l.clone(),
                peer: p.clone(),
            }),
            _ => None,
        };
        let bytes = self.framer.encode(&frame, addrs.as_ref()).ok()?;
        self.stats.frames_sent += 1;
        self.stats.bytes_sent += bytes.len() as u64;
        self.stats.transmissions += 1;
        Some(bytes)
    }

    /// When to call `handle_timeout` next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.refused {
            return None;
        }
        [self.arq.poll_timeout(), self.framer.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Frame observations first, then the session's store work and outcome.
    pub fn poll_event(&mut self) -> Option<EngineEvent> {
        if let Some(e) = self.events.pop_front() {
            return Some(e);
        }
        self.session.poll_event().map(EngineEvent::Session)
    }

    /// The session ended (finished or failed) and the ARQ has nothing left to
    /// deliver or answer (or gave up): the engine can be dropped.
    pub fn is_done(&self) -> bool {
        self.session.is_closed()
            && self.events.is_empty()
            && (self.gave_up
                || self.arq.is_quiet()
                || self.arq.error().is_some()
                // On TCP nothing is lost: no need to wait for the peer to repeat
                // a transmission whose ack it missed.
                || (self.profile.ip && self.arq.owes_nothing()))
    }

    /// Another pair holds the channel until `busy_until` (see `Arq::postpone`).
    pub fn postpone(&mut self, busy_until: Instant) {
        self.arq.postpone(busy_until);
    }

    /// Our transmissions in a row that got no answer (0 while the peer answers).
    pub fn unanswered(&self) -> u32 {
        match self.arq.state() {
            crate::arq::State::Ready { attempt, .. }
            | crate::arq::State::AwaitingReply { attempt, .. } => *attempt,
            _ => 0,
        }
    }

    /// The shell stopped waiting for a silent peer: the session fails with a
    /// lost link and the engine is done.
    pub fn give_up(&mut self) {
        self.gave_up = true;
        self.session.link_lost();
    }

    /// The peer said it knows no such session (its process restarted): the
    /// session failed with a lost link, and a new call can resume at once.
    pub fn peer_forgot(&self) -> bool {
        self.peer_forgot
    }

    /// The operator stopped: the peer is told (if the link still works).
    pub fn cancel(&mut self) {
        self.session.cancel();
    }

    /// Bundle progress each way, (bytes done, total). Sending counts what the
    /// peer acknowledged, not what was handed to the ARQ: message bytes still
    /// unacknowledged are taken off the session's count.
    pub fn progress(&self) -> crate::sync::Progress {
        let mut p = self.session.progress();
        if let Some((next, total)) = p.sending {
            let in_flight = self
                .session
                .summary()
                .message_bytes_sent
                .saturating_sub(self.arq.stats().bytes_acked);
            p.sending = Some((next.saturating_sub(in_flight), total));
        }
        p
    }

    /// Counters so far, with the ARQ's and the session's folded in.
    pub fn stats(&self) -> EngineStats {
        let a = self.arq.stats();
        let s = self.session.summary();
        EngineStats {
            retransmissions: a.retransmissions,
            timeouts: a.timeouts,
            payload_bytes_acked: a.bytes_acked,
            payload_bytes_delivered: a.bytes_delivered,
            bundle_bytes_sent: s.bundle_bytes_sent,
            bundle_bytes_received: s.bundle_bytes_received,
            ..self.stats
        }
    }
}

#[cfg(test)]
mod tests;

/// The seed of a session's retry backoff: its id (random per call), this
/// station's callsign and its role, so stations calling at once draw apart.
fn backoff_seed(callsign: Option<&Callsign>, session: Option<u16>, role: Role) -> u64 {
    // FNV-1a: any fixed mix does; only distinctness matters.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let call = callsign.map(|c| c.to_string()).unwrap_or_default();
    let bytes = call
        .bytes()
        .chain(session.unwrap_or(0).to_be_bytes())
        .chain([role as u8]);
    for b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}
