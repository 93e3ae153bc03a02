//! `capture show`: one decoded line per record, through the same link framer as a live
//! station, and one-line descriptions of frames and session messages.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use super::decode::{BundleReader, DecodeKeys};
use super::{CaptureError, CaptureHeader, LinkFraming, Record, RecordKind};
use crate::arq::{AckRepr, ArqConfig, ArqFrame, ArqKind, DataRepr};
use crate::frame::framer::{Decoded, LinkFramer, LinkShape, RxFrame};
use crate::frame::{Frame, FrameKind};
use crate::profile::{Framing, Profile};
use crate::sync::Message;

/// How a capture's bytes are framed: its header's framing and the profile it names.
#[derive(Clone, Debug)]
pub struct CaptureLink {
    /// The link as the profile describes it; `None` when the framing is unknown.
    pub shape: Option<LinkShape>,
    /// The profile (the embedded text, else by name), or why it cannot be used.
    pub profile: Result<Profile, String>,
}

impl CaptureLink {
    /// The link of a capture: its header's framing (the profile's if unknown), with the
    /// profile's FEC and AX.25 choice; without a usable profile, no FEC and no AX.25.
    pub fn from_header(header: &CaptureHeader) -> CaptureLink {
        let profile = if header.profile_text.trim().is_empty() {
            Profile::load(&header.profile_name).map_err(|e| e.to_string())
        } else {
            Profile::parse(
                &header.profile_text,
                &format!("`{}` (from the capture)", header.profile_name),
            )
            .map_err(|e| e.to_string())
        };
        let shape = profile
            .as_ref()
            .map_err(String::clone)
            .and_then(|p| LinkShape::of(p).map_err(|e| format!("profile FEC parameters: {e}")));
        let framing = match (header.framing, &shape) {
            (LinkFraming::Kiss, _) => Some(Framing::Kiss),
            (LinkFraming::Transparent, _) => Some(Framing::Transparent),
            (LinkFraming::Unknown(_), Ok(s)) => Some(s.framing),
            (LinkFraming::Unknown(_), Err(_)) => None,
        };
        match (framing, shape) {
            (None, _) => CaptureLink {
                shape: None,
                profile,
            },
            (Some(framing), Ok(s)) => CaptureLink {
                shape: Some(LinkShape { framing, ..s }),
                profile,
            },
            // Without a usable profile: the header's framing, no FEC, no AX.25.
            (Some(framing), Err(e)) => CaptureLink {
                shape: Some(LinkShape {
                    framing,
                    fec: None,
                    ax25: false,
                    bitrate: 1200,
                }),
                profile: Err(e),
            },
        }
    }

    /// A framer for one direction of the capture.
    pub fn framer(&self) -> Option<LinkFramer> {
        self.shape.clone().map(LinkFramer::with_shape)
    }
}

/// The time of a record, as the framer takes it (only differences matter).
pub(crate) fn record_time(base: Instant, record: &Record) -> Instant {
    // Any time a damaged record claims must not overflow the clock.
    base.checked_add(Duration::from_millis(record.at_ms))
        .unwrap_or(base)
}

/// Feeds one record to a direction's framer: the frames it completed and the bytes it
/// skipped as noise.
pub(crate) fn deframe(framer: &mut LinkFramer, at: Instant, bytes: &[u8]) -> (Vec<RxFrame>, u64) {
    let skipped = framer.skipped_bytes();
    // A frame that stopped arriving before this record is given up, as live.
    framer.handle_timeout(at);
    framer.push(at, bytes);
    let mut out = Vec::new();
    while let Some(rx) = framer.next() {
        out.push(rx);
    }
    (out, framer.skipped_bytes() - skipped)
}

/// The link layer's words about a decoded frame: KISS port and AX.25 addresses.
pub fn link_label(d: &Decoded) -> String {
    match (d.kiss_port, &d.ax25) {
        (Some(port), Some((src, dst))) => format!("KISS p{port} AX.25 {src}>{dst}"),
        (Some(port), None) => format!("KISS p{port}"),
        (None, _) => "sync".into(),
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
            if let Some(r) = &h.resume {
                let _ = write!(s, ", resume {} at {}", r.id, r.stored);
                if !r.later.is_empty() {
                    let held: u64 = r.later.iter().map(|p| p.1).sum();
                    let _ = write!(s, " (+{held} B in {} pieces past it)", r.later.len());
                }
            }
            if let Some(f) = h.fingerprint {
                let _ = write!(s, ", fingerprint {f:016x}");
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
        Message::Applied {
            id,
            vector,
            fingerprint,
        } => format!(
            "Applied id {id}, vector {} origin(s){}",
            vector.0.len(),
            fingerprint.map_or(String::new(), |f| format!(", fingerprint {f:016x}"))
        ),
        Message::Error { code, text } => format!("Error {code}: {text:?}"),
        Message::Done { fingerprint } => match fingerprint {
            Some(f) => format!("Done, fingerprint {f:016x}"),
            None => "Done".into(),
        },
        Message::Fragment { last, bytes } => format!(
            "{} of {} bytes",
            if last { "LastFragment" } else { "Fragment" },
            bytes.len()
        ),
        Message::Sketch {
            salt,
            items,
            offset,
            sums,
        } => format!(
            "Sketch salt {salt:016x}, {items} item(s), sums {offset}..{}",
            offset.saturating_add(sums.len() as u64)
        ),
        Message::SketchMore { capacity: 0 } => "SketchMore: give up".into(),
        Message::SketchMore { capacity } => format!("SketchMore up to capacity {capacity}"),
        Message::Differences { items } => format!("Differences: {} item(s)", items.len()),
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
    show_with(header, records, false, None)
}

/// `show`, with each frame record's bytes in hex under its line when `hex`, and
/// the rows of every bundle the frames carry when `decode` is given.
pub fn show_with<I>(
    header: &CaptureHeader,
    records: I,
    hex: bool,
    decode: Option<DecodeKeys>,
) -> String
where
    I: IntoIterator<Item = Result<Record, CaptureError>>,
{
    let link = CaptureLink::from_header(header);
    // The receiving ARQ needs only sizes; any built-in profile's do without one.
    let profile = link.profile.clone().ok().or_else(|| {
        Profile::known_names()
            .next()
            .and_then(|n| Profile::load(n).ok())
    });
    let mut bundles = match (decode, profile) {
        (Some(k), Some(p)) => Some(BundleReader::new(
            k,
            ArqConfig::from_profile(&p),
            header.station,
        )),
        _ => None,
    };
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
    match (&link.profile, &link.shape) {
        (Err(p), _) => {
            let _ = writeln!(
                out,
                "warning: cannot use the profile ({p}); decoding without FEC"
            );
        }
        (Ok(_), Some(shape)) => {
            let fec = match &shape.fec {
                Some(f) => format!(
                    "RS {} parity per {} bytes{}",
                    f.parity_bytes_per_block,
                    f.block_data_len,
                    if f.interleave { ", interleaved" } else { "" }
                ),
                None => "no FEC".into(),
            };
            let _ = writeln!(out, "{fec}{}", if shape.ax25 { ", AX.25 UI" } else { "" });
        }
        (Ok(_), None) => {}
    }
    let base = Instant::now();
    let mut sent = link.framer();
    let mut recv = link.framer();
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
        let framer = match r.kind {
            RecordKind::Note => {
                let _ = writeln!(out, "{prefix}  {}", String::from_utf8_lossy(&r.bytes));
                continue;
            }
            RecordKind::Sent => &mut sent,
            RecordKind::Received => &mut recv,
        };
        let mut lines = Vec::new();
        match framer {
            None => lines.push(format!(
                "BAD {} bytes in unknown link framing {}",
                r.bytes.len(),
                header.framing.to_byte()
            )),
            Some(f) => {
                let at = record_time(base, &r);
                let (frames, skipped) = deframe(f, at, &r.bytes);
                if skipped > 0 {
                    lines.push(format!("{skipped} bytes of noise skipped"));
                }
                for rx in frames {
                    match rx.decoded {
                        Ok(d) => {
                            lines.push(format!(
                                "{} | {} | CRC ok{}",
                                link_label(&d),
                                describe_frame(&d.frame),
                                match d.info.corrected_symbols {
                                    0 => String::new(),
                                    n => format!(", FEC corrected {n}"),
                                }
                            ));
                            if let Some(b) = bundles.as_mut() {
                                lines.extend(b.frame(r.kind, at, &d.frame));
                            }
                        }
                        Err(e) => lines.push(format!("BAD {e}")),
                    }
                }
            }
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
    for (name, framer) in [("sent", &mut sent), ("received", &mut recv)] {
        if framer.as_mut().is_some_and(LinkFramer::end_of_stream) {
            let _ = writeln!(
                out,
                "{name}: capture ends inside a frame (its body never arrived)"
            );
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
}
