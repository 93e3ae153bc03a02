//! Reading captures back: `capture show` (one decoded line per record) and
//! `replay` (received frames through the real decode path into a store), so
//! a field problem can be reproduced at a desk.
//!
//! Both run the captured bytes through the same layers as a live station:
//! one deframer per direction (KISS or transparent, fed record after record,
//! so records holding whole frames and records holding stream pieces both
//! work), `Frame::decode` with the profile's FEC, the ARQ's own receiver
//! (in-order delivery, duplicate suppression) per frame session, session
//! messages with fragment reassembly, bundle reassembly with its offset and
//! id checks, and one `import_bundle_bytes` per complete bundle.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::arq::{AckRepr, Arq, ArqConfig, ArqEvent, ArqFrame, ArqKind, DataRepr, Role, Seq};
use crate::capture::{CaptureError, CaptureHeader, LinkFraming, Record, RecordKind};
use crate::delta::StationId;
use crate::frame::ax25::Callsign;
use crate::frame::kiss::{KissCommand, KissDeframer, KissFrame};
use crate::frame::link::{self, LinkError};
use crate::frame::transparent::TransparentDeframer;
use crate::frame::{FecParams, Frame, FrameKind};
use crate::profile::{Framing, Profile};
use crate::store::{ImportReport, Store, StoreError};
use crate::sync::message::MAX_REASSEMBLY;
use crate::sync::{BundleId, Message};

/// The decoding context of a capture: link framing, FEC, AX.25.
#[derive(Clone, Debug)]
pub struct LinkSetup {
    pub framing: LinkFraming,
    pub fec: Option<FecParams>,
    pub ax25: bool,
    /// The profile the capture names, when it could be read.
    pub profile: Option<Profile>,
    /// Why the profile could not be used, if it could not.
    pub profile_problem: Option<String>,
}

/// FEC parameters of a profile, as src/frame takes them.
pub fn fec_of(profile: &Profile) -> Option<FecParams> {
    profile.fec.map(|f| FecParams {
        parity_bytes_per_block: f.parity as usize,
        block_data_len: f.block as usize,
        interleave: f.interleave,
    })
}

impl LinkSetup {
    /// From the header: the embedded profile text, else the profile by name.
    pub fn from_header(header: &CaptureHeader) -> LinkSetup {
        let loaded = if header.profile_text.trim().is_empty() {
            Profile::load(&header.profile_name).map_err(|e| e.to_string())
        } else {
            Profile::parse(
                &header.profile_text,
                &format!("`{}` (from the capture)", header.profile_name),
            )
            .map_err(|e| e.to_string())
        };
        match loaded {
            Ok(p) => {
                let mut framing = header.framing;
                if let LinkFraming::Unknown(_) = framing {
                    framing = match p.framing {
                        Framing::Kiss => LinkFraming::Kiss,
                        Framing::Transparent => LinkFraming::Transparent,
                    };
                }
                LinkSetup {
                    framing,
                    fec: fec_of(&p),
                    ax25: p.amateur && p.framing == Framing::Kiss,
                    profile: Some(p),
                    profile_problem: None,
                }
            }
            Err(e) => LinkSetup {
                framing: header.framing,
                fec: None,
                ax25: false,
                profile: None,
                profile_problem: Some(e),
            },
        }
    }
}

/// What the framing layer said about one frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkInfo {
    /// KISS port, and (source, destination) callsigns with AX.25.
    Kiss {
        port: u8,
        ax25: Option<(String, String)>,
    },
    Transparent,
}

impl std::fmt::Display for LinkInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkInfo::Kiss {
                port,
                ax25: Some((src, dst)),
            } => write!(f, "KISS p{port} AX.25 {src}>{dst}"),
            LinkInfo::Kiss { port, ax25: None } => write!(f, "KISS p{port}"),
            LinkInfo::Transparent => f.write_str("sync"),
        }
    }
}

/// One item out of the deframer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A frame whose CRC checked; `corrected` byte errors repaired by RS.
    Frame {
        link: LinkInfo,
        frame: Frame,
        corrected: usize,
    },
    /// A KISS command frame (not data).
    Command(String),
    /// Bytes that did not make a frame: the reason (CRC bad, RS failed, ...).
    Bad(String),
}

/// A deframer for one direction of a capture.
pub struct LinkDecoder {
    setup: LinkSetup,
    kiss: KissDeframer,
    transparent: TransparentDeframer,
    skipped: u64,
}

impl LinkDecoder {
    pub fn new(setup: &LinkSetup) -> LinkDecoder {
        LinkDecoder {
            setup: setup.clone(),
            kiss: KissDeframer::default(),
            transparent: TransparentDeframer::new(setup.fec),
            skipped: 0,
        }
    }

    /// Feeds one record's bytes; returns the frames they completed and the
    /// bytes skipped as noise (transparent framing).
    pub fn push(&mut self, bytes: &[u8]) -> (Vec<Decoded>, u64) {
        let mut out = Vec::new();
        match self.setup.framing {
            LinkFraming::Kiss => {
                self.kiss.push(bytes);
                while let Some(item) = self.kiss.next() {
                    out.push(match item {
                        Ok(kf) => self.kiss_frame(&kf),
                        Err(e) => Decoded::Bad(format!("KISS: {e}")),
                    });
                }
                (out, 0)
            }
            LinkFraming::Transparent => {
                self.transparent.push(bytes);
                while let Some(item) = self.transparent.next() {
                    out.push(match item {
                        Ok((frame, info)) => Decoded::Frame {
                            link: LinkInfo::Transparent,
                            frame,
                            corrected: info.corrected_symbols,
                        },
                        Err(e) => Decoded::Bad(e.to_string()),
                    });
                }
                let skipped = self.transparent.stats().skipped_bytes;
                let new = skipped - self.skipped;
                self.skipped = skipped;
                (out, new)
            }
            LinkFraming::Unknown(b) => (
                vec![Decoded::Bad(format!(
                    "{} bytes in unknown link framing {b}",
                    bytes.len()
                ))],
                0,
            ),
        }
    }

    /// The stream ended: a transparent frame still waiting for its body is given up.
    pub fn finish(&mut self) -> Vec<Decoded> {
        if self.setup.framing == LinkFraming::Transparent && self.transparent.channel_idle() {
            vec![Decoded::Bad(
                "capture ends inside a frame (its body never arrived)".into(),
            )]
        } else {
            Vec::new()
        }
    }

    fn kiss_frame(&self, kf: &KissFrame) -> Decoded {
        match link::decode_kiss(kf, self.setup.fec.as_ref(), self.setup.ax25) {
            Ok(r) => Decoded::Frame {
                link: LinkInfo::Kiss {
                    port: r.port,
                    ax25: r.ax25.map(|(s, d)| (s.to_string(), d.to_string())),
                },
                frame: r.frame,
                corrected: r.info.corrected_symbols,
            },
            Err(LinkError::NotData) => Decoded::Command(format!("KISS command {:?}", kf.command)),
            Err(e) => {
                let len = match &kf.command {
                    KissCommand::Data(d) => d.len(),
                    _ => 0,
                };
                Decoded::Bad(format!("KISS p{} data of {len} bytes: {e}", kf.port))
            }
        }
    }
}

/// The ARQ frame inside a radiosync frame, if its kind is one of the ARQ's.
pub fn arq_frame(frame: &Frame) -> Option<ArqFrame> {
    let kind = match frame.kind {
        FrameKind::Data => ArqKind::Data,
        FrameKind::Ack => ArqKind::Ack,
        _ => return None,
    };
    Some(ArqFrame {
        kind,
        seq: frame.seq,
        payload: frame.payload.clone(),
    })
}

/// One line about a session message.
pub fn describe_message(bytes: &[u8]) -> String {
    let msg = match Message::parse(bytes) {
        Ok(m) => m,
        Err(e) => return format!("unreadable message ({} bytes): {e}", bytes.len()),
    };
    match msg {
        Message::Hello(h) => {
            let mut s = format!(
                "Hello v{} from station {} callsign {:?} ({}), schema {:08x}, dict {}, vector {} origin(s)",
                h.version,
                h.station,
                h.callsign,
                if h.initiator { "initiator" } else { "responder" },
                h.schema.0,
                h.dict_id,
                h.vector.0.len()
            );
            if let Some(r) = h.resume {
                let _ = write!(s, ", resume {} at {}", r.id, r.stored);
            }
            s
        }
        Message::BundleStart {
            id,
            total_len,
            offset,
            more,
        } => format!(
            "BundleStart id {id} len {total_len} offset {offset}{}",
            if more { " more" } else { "" }
        ),
        Message::Chunk { offset, bytes } => format!("Chunk offset {offset} len {}", bytes.len()),
        Message::NoBundle => "NoBundle".into(),
        Message::Applied { id, vector } => {
            format!("Applied id {id}, vector {} origin(s)", vector.0.len())
        }
        Message::Error { code, text } => format!("Error {code}: {text:?}"),
        Message::Done => "Done".into(),
        Message::Fragment { last, bytes } => format!(
            "{} of {} bytes",
            if last { "LastFragment" } else { "Fragment" },
            bytes.len()
        ),
        Message::Unknown(t) => format!("unknown message type {t:#04x}"),
    }
}

/// One line about a frame: header, then the ARQ content and its message.
pub fn describe_frame(frame: &Frame) -> String {
    let mut s = format!(
        "{:?} session {:04x} seq {} payload {}",
        frame.kind,
        frame.session,
        frame.seq,
        frame.payload.len()
    );
    if let Some(tag) = &frame.auth_tag {
        let _ = write!(s, " tag {}", tag.len());
    }
    let Some(af) = arq_frame(frame) else {
        return s;
    };
    match af.kind {
        ArqKind::Data => match DataRepr::parse(af.seq, &af.payload) {
            Ok(d) => {
                let _ = write!(
                    s,
                    " | data seq {} tx {} rem {} ms | {}",
                    d.seq.0,
                    d.tx,
                    d.rem_ms,
                    describe_message(d.message)
                );
            }
            Err(e) => {
                let _ = write!(s, " | bad ARQ data: {e}");
            }
        },
        ArqKind::Ack => match AckRepr::parse(af.seq, &af.payload) {
            Ok(a) => {
                let _ = write!(s, " | ack next {}", a.next_expected.0);
                let held: Vec<String> = (0..63)
                    .filter(|i| a.received & (1 << i) != 0)
                    .map(|i| a.next_expected.plus(1 + i as u16).0.to_string())
                    .collect();
                if !held.is_empty() {
                    let _ = write!(s, " +[{}]", held.join(","));
                }
                let _ = write!(s, " tx {} rem {} ms", a.tx, a.rem_ms);
                if let Some(e) = a.echo {
                    let _ = write!(s, " echo {e}");
                }
                if a.poll {
                    s.push_str(" POLL");
                }
            }
            Err(e) => {
                let _ = write!(s, " | bad ARQ ack: {e}");
            }
        },
    }
    s
}

fn direction(kind: RecordKind) -> &'static str {
    match kind {
        RecordKind::Sent => "sent",
        RecordKind::Received => "recv",
        RecordKind::Note => "note",
    }
}

/// The `capture show` listing: a header block, one line per record (more
/// lines when a record holds several frames), and a closing line. Reader
/// errors end the listing with a note; nothing here panics on bad bytes.
pub fn show<I>(header: &CaptureHeader, records: I) -> String
where
    I: IntoIterator<Item = Result<Record, CaptureError>>,
{
    show_with(header, records, false)
}

/// `show`, with each frame record's bytes in hex under its line when `hex`.
pub fn show_with<I>(header: &CaptureHeader, records: I, hex: bool) -> String
where
    I: IntoIterator<Item = Result<Record, CaptureError>>,
{
    let setup = LinkSetup::from_header(header);
    let mut out = String::new();
    let framing = match header.framing {
        LinkFraming::Kiss => "kiss".to_string(),
        LinkFraming::Transparent => "transparent".to_string(),
        LinkFraming::Unknown(b) => format!("unknown ({b})"),
    };
    let _ = writeln!(
        out,
        "capture by station {}, started {} ms after the Unix epoch; framing {framing}, profile {:?}",
        header.station, header.start_unix_ms, header.profile_name
    );
    match &setup.profile_problem {
        Some(p) => {
            let _ = writeln!(
                out,
                "warning: cannot use the profile ({p}); decoding without FEC"
            );
        }
        None => {
            let fec = match &setup.fec {
                Some(f) => format!(
                    "RS {} parity per {} bytes{}",
                    f.parity_bytes_per_block,
                    f.block_data_len,
                    if f.interleave { ", interleaved" } else { "" }
                ),
                None => "no FEC".into(),
            };
            let _ = writeln!(out, "{fec}{}", if setup.ax25 { ", AX.25 UI" } else { "" });
        }
    }
    let mut sent = LinkDecoder::new(&setup);
    let mut recv = LinkDecoder::new(&setup);
    let mut count = 0u64;
    let mut end_note = None;
    for (index, item) in records.into_iter().enumerate() {
        let r = match item {
            Ok(r) => r,
            Err(e) => {
                end_note = Some(e.to_string());
                break;
            }
        };
        count += 1;
        let prefix = format!(
            "#{index:<4} {:>9} ms {} {:>5} B",
            r.at_ms,
            direction(r.kind),
            r.bytes.len()
        );
        let dec = match r.kind {
            RecordKind::Note => {
                let _ = writeln!(out, "{prefix}  {}", String::from_utf8_lossy(&r.bytes));
                continue;
            }
            RecordKind::Sent => &mut sent,
            RecordKind::Received => &mut recv,
        };
        let (items, skipped) = dec.push(&r.bytes);
        let mut lines = Vec::new();
        if skipped > 0 {
            lines.push(format!("{skipped} bytes of noise skipped"));
        }
        for d in items {
            lines.push(match d {
                Decoded::Frame {
                    link,
                    frame,
                    corrected,
                } => format!(
                    "{link} | {} | CRC ok{}",
                    describe_frame(&frame),
                    if corrected > 0 {
                        format!(", FEC corrected {corrected}")
                    } else {
                        String::new()
                    }
                ),
                Decoded::Command(c) => c,
                Decoded::Bad(e) => format!("BAD {e}"),
            });
        }
        if lines.is_empty() {
            lines.push("(no complete frame yet)".into());
        }
        for (i, l) in lines.iter().enumerate() {
            if i == 0 {
                let _ = writeln!(out, "{prefix}  {l}");
            } else {
                let _ = writeln!(out, "{:width$}  {l}", "", width = prefix.len());
            }
        }
        if hex {
            for row in r.bytes.chunks(32) {
                let h: Vec<String> = row.iter().map(|b| format!("{b:02x}")).collect();
                let _ = writeln!(out, "{:width$}  {}", "", h.join(" "), width = prefix.len());
            }
        }
    }
    for (name, dec) in [("sent", &mut sent), ("received", &mut recv)] {
        for d in dec.finish() {
            if let Decoded::Bad(e) = d {
                let _ = writeln!(out, "{name}: {e}");
            }
        }
    }
    match end_note {
        Some(e) => {
            let _ = writeln!(out, "{count} records; the capture ends early: {e}");
        }
        None => {
            let _ = writeln!(out, "{count} records");
        }
    }
    out
}

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
pub enum ReplayError {
    #[error("cannot replay: {0}; replay needs the modem profile for the FEC and ARQ settings")]
    Profile(String),
    #[error("cannot replay a capture with unknown link framing {0}")]
    Framing(u8),
    #[error("replay --direction must be sent or received")]
    Direction,
}

/// How a bundle seen in the capture ended.
#[derive(Clone, Debug, PartialEq)]
pub enum BundleFate {
    Applied(ImportReport),
    /// The store refused it (addressing, schema, ...): nothing changed.
    Refused(String),
    /// The reassembled bytes do not match the id.
    Corrupt {
        computed: BundleId,
    },
    /// Not all bytes arrived.
    Incomplete {
        received: u64,
    },
    /// It resumed an earlier session's transfer: its first bytes are not in this capture.
    Resumed {
        offset: u64,
        received: u64,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct BundleOutcome {
    pub session: u16,
    pub id: BundleId,
    pub total_len: u64,
    /// Record of the BundleStart.
    pub record: u64,
    pub fate: BundleFate,
}

/// What the replay did, with a log in capture order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReplayReport {
    pub records_fed: u64,
    pub dropped: Vec<u64>,
    pub corrupted: Vec<u64>,
    pub frames: u64,
    /// Frames RS repaired, and the byte errors repaired in them.
    pub frames_corrected: u64,
    pub symbols_corrected: u64,
    /// Bytes that did not make a frame (CRC, RS, framing), with the record.
    pub bad: Vec<(u64, String)>,
    /// Data frames already delivered (resent by the peer): suppressed.
    pub duplicates: u64,
    /// AX.25 frames addressed to another station: not ours, not fed.
    pub ignored: u64,
    /// Frames the ARQ refused.
    pub refused: Vec<(u64, String)>,
    pub messages: u64,
    pub bundles: Vec<BundleOutcome>,
    /// Per session: data sequence numbers the ARQ still waited for at the end
    /// (the first gap), and how many later frames it held.
    pub stalled: Vec<(u16, u16, usize)>,
    /// The capture ended early or was damaged here.
    pub capture_warning: Option<String>,
    pub log: Vec<String>,
}

impl ReplayReport {
    pub fn applied(&self) -> usize {
        self.bundles
            .iter()
            .filter(|b| matches!(b.fate, BundleFate::Applied(_)))
            .count()
    }
}

struct Incoming {
    id: BundleId,
    total_len: u64,
    start: u64,
    buf: Vec<u8>,
    record: u64,
}

/// Receiving state of one frame session.
struct SessionReplay {
    arq: Arq,
    next: Seq,
    held: BTreeSet<u16>,
    fragments: Option<Vec<u8>>,
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
    decoder: LinkDecoder,
    /// The database's callsign, as AX.25 destinations print it.
    local_call: Option<String>,
    sessions: BTreeMap<u16, SessionReplay>,
    base: Instant,
    report: ReplayReport,
}

impl<'s> Replayer<'s> {
    pub fn new(
        store: &'s mut Store,
        header: &CaptureHeader,
        opts: ReplayOptions,
    ) -> Result<Replayer<'s>, ReplayError> {
        if opts.direction == RecordKind::Note {
            return Err(ReplayError::Direction);
        }
        let setup = LinkSetup::from_header(header);
        if let LinkFraming::Unknown(b) = setup.framing {
            return Err(ReplayError::Framing(b));
        }
        let Some(profile) = &setup.profile else {
            return Err(ReplayError::Profile(
                setup.profile_problem.clone().unwrap_or_default(),
            ));
        };
        let cfg = ArqConfig::from_profile(profile);
        let rng = opts
            .drop_rate
            .map(|(p, seed)| (p, ChaCha8Rng::seed_from_u64(seed)));
        let local_call = store
            .station()
            .callsign
            .and_then(|c| c.parse::<Callsign>().ok())
            .map(|c| c.to_string());
        Ok(Replayer {
            store,
            local_call,
            decoder: LinkDecoder::new(&setup),
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
        let (items, skipped) = self.decoder.push(&bytes);
        if skipped > 0 {
            log(
                &mut self.report.log,
                index,
                format!("{skipped} bytes of noise skipped"),
            );
        }
        // Any time a damaged record claims must not overflow the clock.
        let now = self
            .base
            .checked_add(Duration::from_millis(record.at_ms))
            .unwrap_or(self.base);
        for d in items {
            self.decoded(index, now, d);
        }
    }

    fn decoded(&mut self, index: u64, now: Instant, d: Decoded) {
        let (frame, corrected) = match d {
            Decoded::Frame {
                link:
                    LinkInfo::Kiss {
                        ax25: Some((_, dest)),
                        ..
                    },
                ..
            } if self.opts.direction == RecordKind::Received
                && self.local_call.as_ref().is_some_and(|c| *c != dest) =>
            {
                // The live station ignores what is not addressed to it, too.
                self.report.ignored += 1;
                return log(
                    &mut self.report.log,
                    index,
                    format!("frame for {dest}, not this station: ignored"),
                );
            }
            Decoded::Frame {
                frame, corrected, ..
            } => (frame, corrected),
            Decoded::Command(c) => return log(&mut self.report.log, index, c),
            Decoded::Bad(e) => {
                log(
                    &mut self.report.log,
                    index,
                    format!("refused by the frame layer: {e}"),
                );
                self.report.bad.push((index, e));
                return;
            }
        };
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
                fragments: None,
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
        if let Err(e) = s.arq.handle_input(now, af.clone()) {
            let e = e.to_string();
            log(
                &mut self.report.log,
                index,
                format!(
                    "session {:04x} seq {}: ARQ refused: {e}",
                    frame.session, af.seq
                ),
            );
            self.report.refused.push((index, e));
            return;
        }
        if !Seq(af.seq).before(s.next) {
            s.held.insert(af.seq);
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
        // Fragments concatenate into one message, as the session does.
        let bytes = match Message::parse(&bytes) {
            Ok(Message::Fragment { last, bytes: piece }) => {
                let buf = s.fragments.get_or_insert_with(Vec::new);
                buf.extend_from_slice(&piece);
                if buf.len() > MAX_REASSEMBLY {
                    s.fragments = None;
                    return log(
                        &mut self.report.log,
                        index,
                        format!(
                            "session {session:04x}: fragmented message over \
                             {MAX_REASSEMBLY} bytes, dropped"
                        ),
                    );
                }
                if !last {
                    return;
                }
                s.fragments.take().unwrap_or_default()
            }
            _ => bytes,
        };
        let text = describe_message(&bytes);
        log(
            &mut self.report.log,
            index,
            format!("session {session:04x}: {text}"),
        );
        match Message::parse(&bytes) {
            Ok(Message::Hello(h)) => s.peer = Some(h.station),
            Ok(Message::BundleStart {
                id,
                total_len,
                offset,
                ..
            }) => {
                if let Some(prev) = s.incoming.take() {
                    self.unfinished(session, prev);
                }
                let peer = self.sessions[&session].peer;
                let (start, buf) = match (offset, peer) {
                    (0, _) | (_, None) => (offset, Vec::new()),
                    (_, Some(peer)) => {
                        self.resume_from(index, session, peer, id, total_len, offset)
                    }
                };
                let s = self.sessions.get_mut(&session).expect("session exists");
                s.incoming = Some(Incoming {
                    id,
                    total_len,
                    start,
                    buf,
                    record: index,
                });
                if total_len == offset {
                    self.complete(index, session);
                }
            }
            Ok(Message::Chunk { offset, bytes }) => {
                let Some(inc) = s.incoming.as_mut() else {
                    return log(
                        &mut self.report.log,
                        index,
                        format!("session {session:04x}: chunk without a BundleStart, ignored"),
                    );
                };
                let have = inc.start + inc.buf.len() as u64;
                if offset != have || have + bytes.len() as u64 > inc.total_len {
                    let inc = s.incoming.take().expect("checked");
                    log(
                        &mut self.report.log,
                        index,
                        format!(
                            "session {session:04x}: chunk at offset {offset} but {have} bytes \
                             held: protocol violation, bundle abandoned"
                        ),
                    );
                    return self.unfinished(session, inc);
                }
                inc.buf.extend_from_slice(&bytes);
                if inc.start + inc.buf.len() as u64 == inc.total_len {
                    self.complete(index, session);
                }
            }
            _ => {}
        }
    }

    /// Where a resumed bundle's first `offset` bytes are: in an earlier
    /// session of this capture (the live station kept them as its partial),
    /// else in the partial the database holds. `(offset, empty)` if neither.
    fn resume_from(
        &mut self,
        index: u64,
        session: u16,
        peer: StationId,
        id: BundleId,
        total_len: u64,
        offset: u64,
    ) -> (u64, Vec<u8>) {
        let earlier = self.sessions.iter_mut().find_map(|(&k, s)| {
            let fits = k != session
                && s.peer == Some(peer)
                && s.incoming.as_ref().is_some_and(|inc| {
                    inc.id == id
                        && inc.total_len == total_len
                        && inc.start == 0
                        && inc.buf.len() as u64 == offset
                });
            fits.then(|| (k, s.incoming.take().expect("checked").buf))
        });
        if let Some((k, buf)) = earlier {
            log(
                &mut self.report.log,
                index,
                format!(
                    "session {session:04x}: resumes bundle {id} at {offset}, where session {k:04x} left it"
                ),
            );
            return (0, buf);
        }
        let stored = self.store.transfer_state(&peer).ok().and_then(|st| {
            st.incoming.filter(|p| {
                p.id == id && p.total_len == total_len && p.bytes.len() as u64 == offset
            })
        });
        match stored {
            Some(p) => {
                log(
                    &mut self.report.log,
                    index,
                    format!(
                        "session {session:04x}: resumes the {offset} bytes of bundle {id} \
                         that the database holds from an earlier session"
                    ),
                );
                (0, p.bytes)
            }
            None => (offset, Vec::new()),
        }
    }

    fn complete(&mut self, index: u64, session: u16) {
        let s = self.sessions.get_mut(&session).expect("session exists");
        let inc = s.incoming.take().expect("a bundle in progress");
        let peer = s.peer;
        if inc.start > 0 {
            return self.unfinished(session, inc);
        }
        let computed = BundleId::of(&inc.buf);
        let fate = if computed != inc.id {
            log(
                &mut self.report.log,
                index,
                format!(
                    "bundle {}: bytes hash to {computed}: corrupt, not applied",
                    inc.id
                ),
            );
            BundleFate::Corrupt { computed }
        } else {
            let imported = match &peer {
                Some(p) => self.store.import_transfer(&inc.buf, p),
                None => self.store.import_bundle_bytes(&inc.buf),
            };
            match imported {
                Ok(r) => {
                    log(
                        &mut self.report.log,
                        index,
                        format!(
                            "bundle {} applied: {} row(s) applied, {} skipped, {} kept local, {} conflict(s)",
                            inc.id, r.applied, r.skipped, r.kept_local, r.conflicts
                        ),
                    );
                    BundleFate::Applied(r)
                }
                Err(e) => {
                    let text = refusal(&e);
                    log(
                        &mut self.report.log,
                        index,
                        format!("bundle {} refused: {text}", inc.id),
                    );
                    BundleFate::Refused(text)
                }
            }
        };
        self.report.bundles.push(BundleOutcome {
            session,
            id: inc.id,
            total_len: inc.total_len,
            record: inc.record,
            fate,
        });
    }

    fn unfinished(&mut self, session: u16, inc: Incoming) {
        let received = inc.buf.len() as u64;
        let fate = if inc.start > 0 {
            BundleFate::Resumed {
                offset: inc.start,
                received,
            }
        } else {
            BundleFate::Incomplete { received }
        };
        self.report.bundles.push(BundleOutcome {
            session,
            id: inc.id,
            total_len: inc.total_len,
            record: inc.record,
            fate,
        });
    }

    /// Ends the replay: bundles still open are incomplete, and the ARQ gaps are listed.
    pub fn finish(mut self, capture_warning: Option<String>) -> ReplayReport {
        for d in self.decoder.finish() {
            if let Decoded::Bad(e) = d {
                self.report.bad.push((u64::MAX, e));
            }
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

fn refusal(e: &StoreError) -> String {
    e.to_string()
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
    fn messages_from_the_protocol_doc() {
        let start = [
            0x02, 0x00, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0xe8, 0x07, 0x00,
        ];
        assert_eq!(
            describe_message(&start),
            "BundleStart id 1122334455667788 len 1000 offset 0"
        );
        assert_eq!(
            describe_message(&[0x03, 0xc8, 0x01, 0xde, 0xad]),
            "Chunk offset 200 len 2"
        );
        assert_eq!(describe_message(&[0x08, 0x01, 0x01]), "Fragment of 2 bytes");
        assert_eq!(
            describe_message(&[0x06, 0x02, 0x02, b'n', b'o']),
            "Error schema mismatch: \"no\""
        );
        assert_eq!(describe_message(&[0x04]), "NoBundle");
        assert!(describe_message(&[0x02, 0x00]).starts_with("unreadable message (2 bytes): "));
        assert_eq!(describe_message(&[0x7f]), "unknown message type 0x7f");
    }

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
