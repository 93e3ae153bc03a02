//! `replay`: a capture's received (or sent) frames through the live station's own
//! layers into a store, so a field problem can be reproduced at a desk: the link framer
//! (`frame::framer`, fed record after record, so records holding whole frames and
//! records holding stream pieces both work), the ARQ's receiver per frame session, the
//! session's fragment and bundle reassembly (`sync::reassembly`, with its resume, offset
//! and id checks), and the store's import of each complete bundle.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::show::{arq_frame, deframe, describe_message, record_time, CaptureLink};
use super::{CaptureHeader, LinkFraming, Record, RecordKind};
use crate::arq::{Arq, ArqConfig, ArqEvent, ArqKind, Role, Seq};
use crate::delta::StationId;
use crate::frame::ax25::Callsign;
use crate::frame::framer::{LinkFramer, RxFrame};
use crate::store::{ImportReport, Store};
use crate::sync::reassembly::{BundleReassembly, Defragmenter, ReceiveError, Violation};
use crate::sync::{BundleId, Message, PartialIncoming};

/// What `replay` should do to the captured frames.
#[derive(Clone, Debug)]
pub struct ReplayOptions {
    /// Which frames to feed: the station's received frames (default) or its sent ones.
    pub direction: RecordKind,
    /// Record indexes (as `capture show` numbers them) to leave out.
    pub drop: BTreeSet<u64>,
    /// Also drop each fed record with this probability, from this seed.
    pub drop_rate: Option<(f64, u64)>,
    /// Record indexes to damage before decoding.
    pub corrupt: BTreeSet<u64>,
    /// Bytes damaged in each corrupted record, spread over it.
    pub corrupt_bytes: usize,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            direction: RecordKind::Received,
            drop: BTreeSet::new(),
            drop_rate: None,
            corrupt: BTreeSet::new(),
            corrupt_bytes: 1,
        }
    }
}

/// Why a replay could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// The capture's profile cannot be loaded or its FEC parameters are invalid.
    #[error("cannot replay: {0}; replay needs the modem profile for the FEC and ARQ settings")]
    Profile(String),
    /// The header names a link framing this build does not know.
    #[error("cannot replay a capture with unknown link framing {0}")]
    Framing(u8),
    /// The direction asked for is `Note`.
    #[error("replay --direction must be sent or received")]
    Direction,
}

/// How a bundle seen in the capture ended.
#[derive(Clone, Debug, PartialEq)]
pub enum BundleFate {
    /// The store applied it.
    Applied(ImportReport),
    /// The store refused it (addressing, schema, ...): nothing changed.
    Refused(String),
    /// The reassembled bytes do not match the id.
    Corrupt {
        /// What its bytes hash to.
        computed: BundleId,
    },
    /// Not all bytes arrived.
    Incomplete {
        /// Bytes that did arrive.
        received: u64,
    },
    /// It resumed an earlier session's transfer: its first bytes are not in this capture.
    Resumed {
        /// Where the capture's part starts.
        offset: u64,
        /// Bytes received in this capture.
        received: u64,
    },
}

/// One bundle the capture carried and what became of it.
#[derive(Clone, Debug, PartialEq)]
pub struct BundleOutcome {
    /// Frame session it came in.
    pub session: u16,
    /// Its id from the `BundleStart`.
    pub id: BundleId,
    /// Its length from the `BundleStart`.
    pub total_len: u64,
    /// Record of the BundleStart.
    pub record: u64,
    /// How it ended.
    pub fate: BundleFate,
}

/// What the replay did, with a log in capture order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReplayReport {
    /// Records fed through the layers (after drops).
    pub records_fed: u64,
    /// Records left out, by index.
    pub dropped: Vec<u64>,
    /// Records damaged on purpose, by index.
    pub corrupted: Vec<u64>,
    /// Frames that decoded.
    pub frames: u64,
    /// Frames RS repaired, and the byte errors repaired in them.
    pub frames_corrected: u64,
    /// Byte errors RS repaired.
    pub symbols_corrected: u64,
    /// Bytes that did not make a frame (CRC, RS, framing), with the record.
    pub bad: Vec<(u64, String)>,
    /// Data frames already delivered (resent by the peer): suppressed.
    pub duplicates: u64,
    /// AX.25 frames addressed to another station: not ours, not fed.
    pub ignored: u64,
    /// Frames the ARQ refused.
    pub refused: Vec<(u64, String)>,
    /// ARQ messages delivered to the session layer (fragments counted one by one).
    pub messages: u64,
    /// Where the peer broke the session protocol, as a live session would have
    /// stopped (record, frame session, the session layer's own error).
    pub violations: Vec<(u64, u16, ReceiveError)>,
    /// Every bundle seen, in capture order.
    pub bundles: Vec<BundleOutcome>,
    /// Per session: data sequence numbers the ARQ still waited for at the end
    /// (the first gap), and how many later frames it held.
    pub stalled: Vec<(u16, u16, usize)>,
    /// The capture ended early or was damaged here.
    pub capture_warning: Option<String>,
    /// One line per event, prefixed with its record.
    pub log: Vec<String>,
}

impl ReplayReport {
    /// Bundles the store applied.
    pub fn applied(&self) -> usize {
        self.bundles
            .iter()
            .filter(|b| matches!(b.fate, BundleFate::Applied(_)))
            .count()
    }
}

/// A bundle being received in one frame session.
enum Incoming {
    /// Put together by the session's own reassembly.
    Whole {
        bundle: BundleReassembly,
        record: u64,
    },
    /// It resumes an earlier transfer whose first bytes are neither in this capture
    /// nor in the database: only counted.
    Resumed {
        id: BundleId,
        total_len: u64,
        offset: u64,
        received: u64,
        record: u64,
    },
}

/// Receiving state of one frame session.
struct SessionReplay {
    arq: Arq,
    next: Seq,
    held: BTreeSet<u16>,
    fragments: Defragmenter,
    incoming: Option<Incoming>,
    /// The peer's station, from its Hello: bundles are imported as the live
    /// station does (`import_transfer`), and a resumed bundle continues the
    /// partial the database holds from that peer.
    peer: Option<StationId>,
}

/// Feeds the chosen frames of a capture through decode and apply.
pub struct Replayer<'s> {
    store: &'s mut Store,
    cfg: ArqConfig,
    opts: ReplayOptions,
    rng: Option<(f64, ChaCha8Rng)>,
    framer: LinkFramer,
    /// The database's callsign, as AX.25 destinations print it.
    local_call: Option<Callsign>,
    sessions: BTreeMap<u16, SessionReplay>,
    base: Instant,
    report: ReplayReport,
}

impl<'s> Replayer<'s> {
    /// A replayer into `store` for a capture with `header`; fails if the capture's
    /// profile or framing cannot be used.
    pub fn new(
        store: &'s mut Store,
        header: &CaptureHeader,
        opts: ReplayOptions,
    ) -> Result<Replayer<'s>, ReplayError> {
        if opts.direction == RecordKind::Note {
            return Err(ReplayError::Direction);
        }
        let link = CaptureLink::from_header(header);
        if let LinkFraming::Unknown(b) = header.framing {
            if link.shape.is_none() {
                return Err(ReplayError::Framing(b));
            }
        }
        let profile = link.profile.clone().map_err(ReplayError::Profile)?;
        // A usable profile means `CaptureLink` checked its FEC parameters already.
        let framer = link
            .framer()
            .ok_or(ReplayError::Framing(header.framing.to_byte()))?;
        let cfg = ArqConfig::from_profile(&profile);
        let rng = opts
            .drop_rate
            .map(|(p, seed)| (p, ChaCha8Rng::seed_from_u64(seed)));
        let local_call = store
            .station()
            .callsign
            .and_then(|c| c.parse::<Callsign>().ok());
        Ok(Replayer {
            store,
            local_call,
            framer,
            cfg,
            opts,
            rng,
            sessions: BTreeMap::new(),
            // The ARQ wants instants; only their differences matter here.
            base: Instant::now(),
            report: ReplayReport::default(),
        })
    }

    /// One record of the capture, with its index in the file.
    pub fn feed(&mut self, index: u64, record: &Record) {
        if record.kind == RecordKind::Note {
            let text = String::from_utf8_lossy(&record.bytes).into_owned();
            log(&mut self.report.log, index, format!("note: {text}"));
            return;
        }
        if record.kind != self.opts.direction {
            return;
        }
        let random_drop = match &mut self.rng {
            Some((p, rng)) => rng.gen_bool(p.clamp(0.0, 1.0)),
            None => false,
        };
        if self.opts.drop.contains(&index) || random_drop {
            self.report.dropped.push(index);
            log(&mut self.report.log, index, "dropped".into());
            return;
        }
        self.report.records_fed += 1;
        let mut bytes = record.bytes.clone();
        if self.opts.corrupt.contains(&index) {
            corrupt(&mut bytes, self.opts.corrupt_bytes);
            self.report.corrupted.push(index);
            log(
                &mut self.report.log,
                index,
                format!("corrupted {} byte(s)", self.opts.corrupt_bytes.max(1)),
            );
        }
        let now = record_time(self.base, record);
        let (frames, skipped) = deframe(&mut self.framer, now, &bytes);
        if skipped > 0 {
            log(
                &mut self.report.log,
                index,
                format!("{skipped} bytes of noise skipped"),
            );
        }
        for rx in frames {
            self.frame(index, now, rx);
        }
    }

    fn frame(&mut self, index: u64, now: Instant, rx: RxFrame) {
        let d = match rx.decoded {
            Ok(d) => d,
            Err(e) => {
                let e = e.to_string();
                log(
                    &mut self.report.log,
                    index,
                    format!("refused by the frame layer: {e}"),
                );
                self.report.bad.push((index, e));
                return;
            }
        };
        if let (Some((_, dest)), Some(local), RecordKind::Received) =
            (&d.ax25, &self.local_call, self.opts.direction)
        {
            if dest != local {
                // The live station ignores what is not addressed to it, too.
                self.report.ignored += 1;
                return log(
                    &mut self.report.log,
                    index,
                    format!("frame for {dest}, not this station: ignored"),
                );
            }
        }
        let frame = d.frame;
        let corrected = d.info.corrected_symbols;
        self.report.frames += 1;
        if corrected > 0 {
            self.report.frames_corrected += 1;
            self.report.symbols_corrected += corrected as u64;
            log(
                &mut self.report.log,
                index,
                format!(
                    "FEC corrected {corrected} byte(s) in session {:04x} seq {}",
                    frame.session, frame.seq
                ),
            );
        }
        // Acks and control frames concern the other direction: shown, not fed.
        let Some(af) = arq_frame(&frame) else {
            return;
        };
        if af.kind != ArqKind::Data {
            return;
        }
        let cfg = &self.cfg;
        let s = self
            .sessions
            .entry(frame.session)
            .or_insert_with(|| SessionReplay {
                arq: Arq::new(cfg.clone(), Role::Responder),
                next: Seq(0),
                held: BTreeSet::new(),
                fragments: Defragmenter::default(),
                incoming: None,
                peer: None,
            });
        if Seq(af.seq).before(s.next) || s.held.contains(&af.seq) {
            self.report.duplicates += 1;
            log(
                &mut self.report.log,
                index,
                format!(
                    "session {:04x} data seq {}: duplicate, suppressed",
                    frame.session, af.seq
                ),
            );
        }
        let seq = af.seq;
        if let Err(e) = s.arq.handle_input(now, af) {
            let e = e.to_string();
            log(
                &mut self.report.log,
                index,
                format!("session {:04x} seq {seq}: ARQ refused: {e}", frame.session),
            );
            self.report.refused.push((index, e));
            return;
        }
        if !Seq(seq).before(s.next) {
            s.held.insert(seq);
        }
        let mut delivered = Vec::new();
        while let Some(ev) = s.arq.poll_event() {
            if let ArqEvent::Delivered(m) = ev {
                s.held.remove(&s.next.0);
                s.next = s.next.plus(1);
                delivered.push(m);
            }
        }
        for m in delivered {
            self.message(index, frame.session, m);
        }
    }

    fn message(&mut self, index: u64, session: u16, bytes: Vec<u8>) {
        self.report.messages += 1;
        let s = self.sessions.get_mut(&session).expect("session exists");
        let msg = match s.fragments.push(&bytes) {
            Ok(Some(m)) => m,
            Ok(None) => return,
            Err(e) => return self.violation(index, session, e),
        };
        log(
            &mut self.report.log,
            index,
            format!(
                "session {session:04x}: {}",
                describe_message(&msg.to_bytes())
            ),
        );
        match msg {
            Message::Hello(h) => s.peer = Some(h.station),
            Message::BundleStart {
                id,
                total_len,
                offset,
                more,
            } => {
                if let Some(prev) = s.incoming.take() {
                    self.unfinished(session, prev);
                }
                let peer = self.sessions[&session].peer;
                let stored = match (offset, peer) {
                    (0, _) | (_, None) => None,
                    (_, Some(peer)) => {
                        self.stored_prefix(index, session, peer, id, total_len, offset)
                    }
                };
                let max = u64::MAX;
                let incoming =
                    match BundleReassembly::start(id, total_len, offset, more, max, stored) {
                        Ok((bundle, _)) => Incoming::Whole {
                            bundle,
                            record: index,
                        },
                        Err(ReceiveError::Protocol(Violation::ResumeMismatch { .. })) => {
                            Incoming::Resumed {
                                id,
                                total_len,
                                offset,
                                received: 0,
                                record: index,
                            }
                        }
                        Err(e) => return self.violation(index, session, e),
                    };
                self.sessions
                    .get_mut(&session)
                    .expect("session exists")
                    .incoming = Some(incoming);
                self.check_complete(index, session);
            }
            Message::Chunk { offset, bytes } => {
                let placed = match s.incoming.as_mut() {
                    None => {
                        return log(
                            &mut self.report.log,
                            index,
                            format!("session {session:04x}: chunk without a BundleStart, ignored"),
                        );
                    }
                    Some(Incoming::Whole { bundle, .. }) => bundle.chunk(offset, &bytes),
                    Some(Incoming::Resumed { received, .. }) => {
                        *received += bytes.len() as u64;
                        Ok(())
                    }
                };
                if let Err(v) = placed {
                    let inc = s.incoming.take().expect("checked");
                    self.violation(index, session, v.into());
                    return self.unfinished(session, inc);
                }
                self.check_complete(index, session);
            }
            _ => {}
        }
    }

    fn violation(&mut self, index: u64, session: u16, e: ReceiveError) {
        log(
            &mut self.report.log,
            index,
            format!("session {session:04x}: {e}; a live session stops here"),
        );
        self.report.violations.push((index, session, e));
    }

    /// The first `offset` bytes of a resumed bundle: in an earlier session of this
    /// capture (the live station kept them as its partial), else in the partial the
    /// database holds.
    fn stored_prefix(
        &mut self,
        index: u64,
        session: u16,
        peer: StationId,
        id: BundleId,
        total_len: u64,
        offset: u64,
    ) -> Option<PartialIncoming> {
        let earlier = self.sessions.iter_mut().find_map(|(&k, s)| {
            let fits = k != session
                && s.peer == Some(peer)
                && matches!(&s.incoming, Some(Incoming::Whole { bundle, .. })
                    if bundle.id() == id && bundle.total() == total_len && bundle.received() == offset);
            if !fits {
                return None;
            }
            let Some(Incoming::Whole { bundle, .. }) = s.incoming.take() else {
                return None;
            };
            Some((k, bundle.into_partial()))
        });
        if let Some((k, partial)) = earlier {
            log(
                &mut self.report.log,
                index,
                format!(
                    "session {session:04x}: resumes bundle {id} at {offset}, where session {k:04x} left it"
                ),
            );
            return Some(partial);
        }
        let stored = self.store.transfer_state(&peer).ok()?.incoming?;
        if stored.id == id && stored.total_len == total_len && stored.bytes.len() as u64 == offset {
            log(
                &mut self.report.log,
                index,
                format!(
                    "session {session:04x}: resumes the {offset} bytes of bundle {id} \
                     that the database holds from an earlier session"
                ),
            );
            return Some(stored);
        }
        None
    }

    fn check_complete(&mut self, index: u64, session: u16) {
        let s = self.sessions.get_mut(&session).expect("session exists");
        let complete =
            matches!(&s.incoming, Some(Incoming::Whole { bundle, .. }) if bundle.is_complete());
        if !complete {
            return;
        }
        let Some(Incoming::Whole { bundle, record }) = s.incoming.take() else {
            return;
        };
        let peer = s.peer;
        let (id, total_len) = (bundle.id(), bundle.total());
        let computed = BundleId::of(bundle.bytes());
        let fate = match bundle.finish() {
            Err(e) => {
                log(
                    &mut self.report.log,
                    index,
                    format!("bundle {id}: bytes hash to {computed}: corrupt, not applied"),
                );
                self.report.violations.push((index, session, e));
                BundleFate::Corrupt { computed }
            }
            Ok(bytes) => {
                let imported = match &peer {
                    Some(p) => self.store.import_transfer(&bytes, p),
                    None => self.store.import_bundle_bytes(&bytes),
                };
                match imported {
                    Ok(r) => {
                        log(
                            &mut self.report.log,
                            index,
                            format!(
                                "bundle {id} applied: {} row(s) applied, {} skipped, {} kept local, {} conflict(s)",
                                r.applied, r.skipped, r.kept_local, r.conflicts
                            ),
                        );
                        BundleFate::Applied(r)
                    }
                    Err(e) => {
                        let text = e.to_string();
                        log(
                            &mut self.report.log,
                            index,
                            format!("bundle {id} refused: {text}"),
                        );
                        BundleFate::Refused(text)
                    }
                }
            }
        };
        self.report.bundles.push(BundleOutcome {
            session,
            id,
            total_len,
            record,
            fate,
        });
    }

    fn unfinished(&mut self, session: u16, inc: Incoming) {
        let outcome = match inc {
            Incoming::Whole { bundle, record } => BundleOutcome {
                session,
                id: bundle.id(),
                total_len: bundle.total(),
                record,
                fate: BundleFate::Incomplete {
                    received: bundle.received(),
                },
            },
            Incoming::Resumed {
                id,
                total_len,
                offset,
                received,
                record,
            } => BundleOutcome {
                session,
                id,
                total_len,
                record,
                fate: BundleFate::Resumed { offset, received },
            },
        };
        self.report.bundles.push(outcome);
    }

    /// Ends the replay: bundles still open are incomplete, and the ARQ gaps are listed.
    pub fn finish(mut self, capture_warning: Option<String>) -> ReplayReport {
        if self.framer.end_of_stream() {
            self.report.bad.push((
                u64::MAX,
                "capture ends inside a frame (its body never arrived)".into(),
            ));
        }
        let sessions = std::mem::take(&mut self.sessions);
        for (id, mut s) in sessions {
            if !s.held.is_empty() {
                self.report.stalled.push((id, s.next.0, s.held.len()));
            }
            if let Some(inc) = s.incoming.take() {
                self.unfinished(id, inc);
            }
        }
        self.report.capture_warning = capture_warning;
        self.report
    }
}

fn log(log: &mut Vec<String>, index: u64, text: String) {
    log.push(format!("#{index}: {text}"));
}

/// Damages `n` bytes spread over the record, keeping the first and last
/// (KISS delimiters) where the record is long enough.
fn corrupt(bytes: &mut [u8], n: usize) {
    let len = bytes.len();
    if len == 0 {
        return;
    }
    let (lo, hi) = if len > 2 { (1, len - 1) } else { (0, len) };
    let span = hi - lo;
    let n = n.clamp(1, span);
    for k in 0..n {
        let i = lo + (2 * k + 1) * span / (2 * n);
        // Not 0xC0-making: flipping the low bits keeps a KISS frame one frame.
        bytes[i] ^= 0x5A;
        if bytes[i] == 0xC0 || bytes[i] == 0xDB {
            bytes[i] ^= 0x01;
        }
    }
}

/// Human-readable summary of a report (the `replay` command prints it).
pub fn summary(report: &ReplayReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} record(s) fed, {} dropped, {} corrupted; {} frame(s) decoded, {} repaired by FEC ({} byte errors), {} refused by the frame layer, {} refused by the ARQ, {} duplicate(s) suppressed, {} for other stations; {} message(s)",
        report.records_fed,
        report.dropped.len(),
        report.corrupted.len(),
        report.frames,
        report.frames_corrected,
        report.symbols_corrected,
        report.bad.len(),
        report.refused.len(),
        report.duplicates,
        report.ignored,
        report.messages
    );
    for b in &report.bundles {
        let what = match &b.fate {
            BundleFate::Applied(r) => format!(
                "applied: {} row(s) applied, {} skipped, {} kept local, {} conflict(s)",
                r.applied, r.skipped, r.kept_local, r.conflicts
            ),
            BundleFate::Refused(e) => format!("refused by the store: {e}"),
            BundleFate::Corrupt { computed } => {
                format!("corrupt: its bytes hash to {computed}; not applied")
            }
            BundleFate::Incomplete { received } => format!(
                "incomplete: {received} of {} bytes arrived; not applied",
                b.total_len
            ),
            BundleFate::Resumed { offset, received } => format!(
                "resumed at offset {offset} from an earlier session (those bytes are not in this capture); {received} more arrived; not applied"
            ),
        };
        let _ = writeln!(
            out,
            "bundle {} (session {:04x}, {} bytes, from record #{}): {what}",
            b.id, b.session, b.total_len, b.record
        );
    }
    for (record, session, e) in &report.violations {
        let _ = writeln!(
            out,
            "session {session:04x}, record #{record}: {e} (a live session stops here)"
        );
    }
    for (session, next, held) in &report.stalled {
        let _ = writeln!(
            out,
            "session {session:04x}: data seq {next} never arrived; {held} later frame(s) held back by the ARQ"
        );
    }
    if report.bundles.is_empty() {
        out.push_str("no bundle in these frames\n");
    }
    if let Some(w) = &report.capture_warning {
        let _ = writeln!(out, "warning: {w}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corruption_spreads_and_keeps_delimiters() {
        let mut b = vec![0xc0, 0, 0, 0, 0, 0, 0, 0, 0, 0xc0];
        corrupt(&mut b, 2);
        assert_eq!((b[0], b[9]), (0xc0, 0xc0));
        let changed: Vec<usize> = (0..10).filter(|&i| b[i] != 0 && b[i] != 0xc0).collect();
        assert_eq!(changed, vec![3, 7]);
        // A byte that would become FEND or FESC is nudged off it.
        let mut b = vec![0xc0, 0xc0 ^ 0x5a, 0xc0];
        corrupt(&mut b, 1);
        assert_eq!(b, vec![0xc0, 0xc1, 0xc0]);
        let mut empty: Vec<u8> = Vec::new();
        corrupt(&mut empty, 3);
        let mut one = vec![7];
        corrupt(&mut one, 5);
        assert_eq!(one, vec![7 ^ 0x5a]);
    }
}
