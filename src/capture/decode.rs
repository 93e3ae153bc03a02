//! `capture show --decode`: the bundles inside a capture, row by row, as a monitoring
//! station reads them. Nothing radiosync sends is encrypted (amateur rules); what a
//! reader needs besides the capture is the sender's zstd dictionary, which the operator
//! may publish (`dict export`), and, for table and column names, the schema (a bundle
//! to a station of another schema carries it; otherwise a database of the same schema).
//!
//! Each direction and frame session gets the receiver's own layers: the ARQ's
//! receiver, fragment and bundle reassembly, then `codec::decode`. Frames are not
//! authenticated here: a reader holds no session key, and needs none to read.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Instant;

use super::show::arq_frame;
use super::RecordKind;
use crate::arq::{Arq, ArqConfig, ArqEvent, ArqKind, Role};
use crate::codec::{self, station_key, Dictionary, Ends};
use crate::delta::{Bundle, RowBody, SchemaFingerprint, StationId, TableLayout, Value};
use crate::frame::Frame;
use crate::sync::reassembly::{BundleReassembly, Defragmenter};
use crate::sync::{BundleId, Message};

/// What a reader brings to decode bundles: all optional.
#[derive(Clone, Debug, Default)]
pub struct DecodeKeys {
    /// The sender's dictionary (`dict export`), for bundles compressed with one.
    pub dict: Option<Dictionary>,
    /// A schema's fingerprint and tables, to name tables and columns of bundles
    /// that do not carry their layout.
    pub schema: Option<(SchemaFingerprint, Vec<TableLayout>)>,
    /// Stations the bundles may be between, besides those whose Hellos are in the
    /// capture (a bundle names its ends by 32-bit keys only).
    pub stations: Vec<StationId>,
}

/// Receiving state of one direction of one frame session.
struct Stream {
    arq: Arq,
    fragments: Defragmenter,
    incoming: Option<BundleReassembly>,
}

/// Reads the bundles of a capture's frames, as the frames come.
pub struct BundleReader {
    keys: DecodeKeys,
    cfg: ArqConfig,
    stations: BTreeSet<StationId>,
    streams: BTreeMap<(u8, u16), Stream>,
    /// Bundles that stopped part-way, any session, by direction and id.
    parked: BTreeMap<(u8, BundleId), BundleReassembly>,
}

fn dir_key(kind: RecordKind) -> u8 {
    match kind {
        RecordKind::Sent => 1,
        RecordKind::Received => 2,
        RecordKind::Note => 3,
    }
}

impl BundleReader {
    /// A reader with `keys`, for a link whose ARQ is configured as `cfg`.
    pub fn new(keys: DecodeKeys, cfg: ArqConfig, capturing: StationId) -> BundleReader {
        let mut stations: BTreeSet<StationId> = keys.stations.iter().copied().collect();
        if capturing != StationId::default() {
            stations.insert(capturing);
        }
        BundleReader {
            keys,
            cfg,
            stations,
            streams: BTreeMap::new(),
            parked: BTreeMap::new(),
        }
    }

    /// One decoded frame in direction `kind`: lines about any bundle it completed.
    pub fn frame(&mut self, kind: RecordKind, now: Instant, frame: &Frame) -> Vec<String> {
        let Some(af) = arq_frame(frame) else {
            return Vec::new();
        };
        if af.kind != ArqKind::Data {
            return Vec::new();
        }
        let key = (dir_key(kind), frame.session);
        let cfg = &self.cfg;
        let stream = self.streams.entry(key).or_insert_with(|| Stream {
            arq: Arq::new(cfg.clone(), Role::Responder),
            fragments: Defragmenter::default(),
            incoming: None,
        });
        if stream.arq.handle_input(now, af).is_err() {
            return Vec::new();
        }
        let mut messages = Vec::new();
        while let Some(ev) = stream.arq.poll_event() {
            if let ArqEvent::Delivered(m) = ev {
                messages.push(m);
            }
        }
        let mut out = Vec::new();
        for m in messages {
            self.message(key, &m, &mut out);
        }
        out
    }

    fn message(&mut self, key: (u8, u16), bytes: &[u8], out: &mut Vec<String>) {
        let stream = self.streams.get_mut(&key).expect("stream exists");
        let msg = match stream.fragments.push(bytes) {
            Ok(Some(m)) => m,
            Ok(None) => return,
            Err(e) => return out.push(format!("decode: {e}")),
        };
        match msg {
            Message::Hello(h) => {
                self.stations.insert(h.station);
            }
            Message::BundleStart {
                id,
                total_len,
                offset,
                more,
            } => {
                if let Some(prev) = stream.incoming.take() {
                    self.parked.insert((key.0, prev.id()), prev);
                }
                let stored = if offset == 0 {
                    None
                } else {
                    // A resumed bundle: its start is in an earlier session, if at all.
                    let earlier = self.parked.remove(&(key.0, id)).or_else(|| {
                        self.streams
                            .iter_mut()
                            .filter(|(k, _)| k.0 == key.0 && **k != key)
                            .find_map(|(_, s)| s.incoming.take_if(|b| b.id() == id))
                    });
                    match earlier {
                        Some(b) if b.total() == total_len && b.received() == offset => {
                            Some(b.into_partial())
                        }
                        _ => {
                            return out.push(format!(
                                "bundle {id} resumes at byte {offset} of {total_len}: \
                                 its start is not in this capture"
                            ))
                        }
                    }
                };
                let stream = self.streams.get_mut(&key).expect("stream exists");
                match BundleReassembly::start(id, total_len, offset, more, u64::MAX, stored) {
                    Ok((b, _)) => stream.incoming = Some(b),
                    Err(e) => return out.push(format!("bundle {id}: {e}")),
                }
                self.complete(key, out);
            }
            Message::Chunk { offset, bytes } => {
                let Some(b) = stream.incoming.as_mut() else {
                    return;
                };
                if let Err(e) = b.chunk(offset, &bytes) {
                    stream.incoming = None;
                    return out.push(format!("decode: {e}"));
                }
                self.complete(key, out);
            }
            _ => {}
        }
    }

    fn complete(&mut self, key: (u8, u16), out: &mut Vec<String>) {
        let stream = self.streams.get_mut(&key).expect("stream exists");
        if !stream.incoming.as_ref().is_some_and(|b| b.is_complete()) {
            return;
        }
        let b = stream.incoming.take().expect("checked");
        let id = b.id();
        match b.finish() {
            Ok(bytes) => out.extend(self.describe(id, &bytes)),
            Err(e) => out.push(format!("bundle {id}: {e}")),
        }
    }

    /// The lines about one whole bundle: who to whom, then one line per row.
    pub fn describe(&self, id: BundleId, bytes: &[u8]) -> Vec<String> {
        let header = match codec::peek_header(bytes) {
            Ok(h) => h,
            Err(e) => return vec![format!("bundle {id}: {e}")],
        };
        let find = |k: u32| self.stations.iter().find(|s| station_key(s) == k).copied();
        let Some(sender) = find(header.sender_key) else {
            return vec![format!(
                "bundle {id}: sent by station key {:08x}, whose UUID is not known here \
                 (give --db with a station that knows it)",
                header.sender_key
            )];
        };
        let receiver = match header.receiver_key {
            None => None,
            Some(k) => match find(k) {
                Some(r) => Some(r),
                None => {
                    return vec![format!(
                    "bundle {id}: addressed to station key {k:08x}, whose UUID is not known here"
                )]
                }
            },
        };
        let ends = Ends { sender, receiver };
        match codec::decode(bytes, self.keys.dict.as_ref(), &ends) {
            Ok(b) => self.rows(id, &b, bytes.len()),
            Err(e) => vec![format!("bundle {id}: {e}")],
        }
    }

    fn rows(&self, id: BundleId, b: &Bundle, len: usize) -> Vec<String> {
        let count: usize = b.tables.iter().map(|t| t.rows.len()).sum();
        let mut out = vec![format!(
            "bundle {id} ({len} bytes, {:?}) from {} to {}: {count} row version(s), {} want(s)",
            b.kind,
            b.sender,
            b.receiver.map_or("any station".into(), |r| r.to_string()),
            b.wants.len()
        )];
        let layout: Option<&[TableLayout]> = match (&b.layout, &self.keys.schema) {
            (Some(l), _) => Some(l),
            (None, Some((fp, l))) if *fp == b.schema => Some(l),
            _ => None,
        };
        if layout.is_none() {
            out.push(format!(
                "  (schema {:08x}: tables and columns by number; give --db with a station \
                 of that schema for names)",
                b.schema.0
            ));
        }
        for tc in &b.tables {
            let table = layout.and_then(|l| l.get(tc.table as usize));
            let tname = table.map_or(format!("table#{}", tc.table), |t| t.name.clone());
            let col = |i: usize| {
                table
                    .and_then(|t| t.columns.get(i))
                    .cloned()
                    .unwrap_or_else(|| format!("col#{i}"))
            };
            for r in &tc.rows {
                let mut line = format!(
                    "  {tname} {} modified {} tag {}:{}",
                    if r.uuid.is_empty() {
                        "(by base)"
                    } else {
                        &r.uuid
                    },
                    r.modified_on,
                    r.tag.origin,
                    r.tag.seq
                );
                let values: Vec<(usize, &Value)> = match &r.body {
                    RowBody::Full(v) => v.iter().enumerate().collect(),
                    RowBody::Delta { base, mask, values } => {
                        let _ = write!(line, " delta on {}:{}", base.origin, base.seq);
                        (0..64)
                            .filter(|i| mask & (1u64 << i) != 0)
                            .zip(values)
                            .collect()
                    }
                };
                for (i, v) in values {
                    let _ = write!(line, " {}={}", col(i), show_value(v));
                }
                out.push(line);
            }
        }
        out
    }
}

/// A value as SQL would write it.
fn show_value(v: &Value) -> String {
    match v {
        Value::Null => "NULL".into(),
        Value::Integer(i) => i.to_string(),
        Value::Real(r) => r.to_string(),
        Value::Text(t) => format!("{t:?}"),
        Value::Blob(b) => {
            let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
            format!("x'{hex}'")
        }
    }
}
