//! What a peer lacks (export) and the merge of what arrives (import).

use std::collections::BTreeSet;

use rusqlite::{params, Connection, OptionalExtension};

use super::schema::{quote_ident, TableInfo};
use super::{
    now_text, station_id_from, value_from_ref, value_json, value_to_sql, LogEntry, Store,
    StoreError,
};
use crate::codec;
use crate::delta::merge::{decide, Verdict, VersionKey};
use crate::delta::{
    Bundle, BundleKind, RowBody, RowRef, RowVersion, StationId, TableChanges, Tag, Value,
    VersionVector, Want,
};

/// What one import did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub sender: StationId,
    pub peer_name: String,
    /// Rows whose incoming version won and was written.
    pub applied: u64,
    /// Rows already held (their tag is covered by our vector).
    pub skipped: u64,
    /// Rows whose local version won.
    pub kept_local: u64,
    /// Losing versions stored in rs_conflict.
    pub conflicts: u64,
    /// Deltas that could not apply: asked for in full.
    pub wanted: u64,
    /// Local winners given a new tag so they travel back to a sender that holds a loser.
    pub reannounced: u64,
    /// Rows held in the same version under another tag, which we took.
    pub retagged: u64,
    /// Per table: (name, rows in the bundle, applied, conflicts).
    pub per_table: Vec<(String, u64, u64, u64)>,
}

/// An encoded export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exported {
    pub bytes: Vec<u8>,
    pub rows: u64,
    pub wants: u64,
}

/// A row as it is now in this store.
struct LocalRow {
    tag: Option<Tag>,
    writer: StationId,
    modified_on: String,
    values: Vec<Value>,
}

fn select_payload(info: &TableInfo) -> String {
    info.payload
        .iter()
        .map(|c| format!("t.{}", quote_ident(&c.name)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn payload_prefix(info: &TableInfo) -> String {
    let p = select_payload(info);
    if p.is_empty() {
        String::new()
    } else {
        format!(", {p}")
    }
}

fn read_local(
    conn: &Connection,
    info: &TableInfo,
    uuid: &str,
    me: StationId,
) -> Result<Option<LocalRow>, StoreError> {
    let sql = format!(
        "SELECT r.origin, r.seq, r.writer, t.modified_on{} FROM {} t
         LEFT JOIN rs_row r ON r.tbl = ?1 AND r.uuid = t.uuid WHERE t.uuid = ?2",
        payload_prefix(info),
        quote_ident(&info.name)
    );
    let n = info.payload.len();
    let row = conn
        .query_row(&sql, params![info.name, uuid], |r| {
            let origin: Option<Vec<u8>> = r.get(0)?;
            let tag = match origin {
                Some(o) => Some(Tag {
                    origin: station_id_from(o)?,
                    seq: r.get::<_, i64>(1)?.max(0) as u64,
                }),
                None => None,
            };
            let writer = match r.get::<_, Option<Vec<u8>>>(2)? {
                Some(w) => station_id_from(w)?,
                None => me,
            };
            let modified_on = text_of(value_from_ref(r.get_ref(3)?));
            let values = (0..n)
                .map(|i| r.get_ref(4 + i).map(value_from_ref))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(LocalRow {
                tag,
                writer,
                modified_on,
                values,
            })
        })
        .optional()?;
    Ok(row)
}

/// modified_on as text; other storage classes in their SQL text form.
fn text_of(v: Value) -> String {
    match v {
        Value::Text(t) => t,
        Value::Integer(i) => i.to_string(),
        Value::Real(f) => f.to_string(),
        Value::Null => String::new(),
        Value::Blob(b) => String::from_utf8_lossy(&b).into_owned(),
    }
}

fn history(conn: &Connection, table: &str, uuid: &str) -> Result<Vec<(Tag, u64)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT origin, seq, mask FROM rs_hist WHERE tbl = ?1 AND uuid = ?2 ORDER BY id",
    )?;
    let rows = stmt
        .query_map(params![table, uuid], |r| {
            Ok((
                Tag {
                    origin: station_id_from(r.get(0)?)?,
                    seq: r.get::<_, i64>(1)?.max(0) as u64,
                },
                r.get::<_, i64>(2)? as u64,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// The row of `table` one of whose recent versions (current or in history)
/// carries `tag`. Tags are unique per change, so at most one row matches.
fn row_by_tag(conn: &Connection, table: &str, tag: Tag) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT uuid FROM rs_hist WHERE tbl = ?1 AND origin = ?2 AND seq = ?3 LIMIT 1",
        )?
        .query_row(params![table, tag.origin.0.to_vec(), tag.seq as i64], |r| {
            r.get(0)
        })
        .optional()?)
}

fn push_history(
    conn: &Connection,
    table: &str,
    uuid: &str,
    tag: Tag,
    mask: u64,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO rs_hist (tbl, uuid, origin, seq, mask) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        table,
        uuid,
        tag.origin.0.to_vec(),
        tag.seq as i64,
        mask as i64
    ])?;
    conn.prepare_cached(&format!(
        "DELETE FROM rs_hist WHERE tbl = ?1 AND uuid = ?2 AND id NOT IN
           (SELECT id FROM rs_hist WHERE tbl = ?1 AND uuid = ?2 ORDER BY id DESC LIMIT {})",
        super::schema::HISTORY_PER_ROW
    ))?
    .execute(params![table, uuid])?;
    Ok(())
}

fn set_row_tag(
    conn: &Connection,
    table: &str,
    uuid: &str,
    tag: Tag,
    writer: StationId,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO rs_row (tbl, uuid, origin, seq, writer) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![table, uuid, tag.origin.0.to_vec(), tag.seq as i64, writer.0.to_vec()])?;
    Ok(())
}

/// Bit i set = payload column i differs (type or bits).
fn diff_mask(a: &[Value], b: &[Value]) -> u64 {
    if a.len() > 64 {
        return u64::MAX;
    }
    a.iter()
        .zip(b)
        .enumerate()
        .filter(|(_, (x, y))| x != y)
        .fold(0, |m, (i, _)| m | (1u64 << i))
}

pub(crate) fn raise_peer_vector(
    conn: &Connection,
    peer: &StationId,
    v: &VersionVector,
) -> Result<(), StoreError> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO rs_peer_vector (peer, origin, seq) VALUES (?1, ?2, ?3)
         ON CONFLICT (peer, origin) DO UPDATE SET seq = max(seq, excluded.seq)",
    )?;
    for (o, s) in &v.0 {
        stmt.execute(params![peer.0.to_vec(), o.0.to_vec(), *s as i64])?;
    }
    Ok(())
}

/// A full-row body over `values` or a delta of the columns in `mask`.
fn body_for(values: Vec<Value>, delta: Option<(Tag, u64)>, ncols: usize) -> RowBody {
    match delta {
        Some((base, mask)) if ncols <= 64 && (mask.count_ones() as usize) * 4 < ncols * 3 => {
            let values = values
                .into_iter()
                .enumerate()
                .filter(|(i, _)| mask & (1u64 << i) != 0)
                .map(|(_, v)| v)
                .collect();
            RowBody::Delta { base, mask, values }
        }
        _ => RowBody::Full(values),
    }
}

/// One synced row as `Store::synced_rows` lists it.
#[derive(Clone, Debug, PartialEq)]
pub struct SyncedRow {
    pub table: String,
    pub uuid: String,
    pub modified_on: String,
    /// Payload columns in the table's payload order (`deleted` among them).
    pub values: Vec<Value>,
}

impl Store {
    fn table_rows(
        &self,
        info: &TableInfo,
        mut keep: impl FnMut(&str, Tag, &str) -> bool,
        mut make: impl FnMut(&str, Tag, Vec<Value>) -> Result<RowBody, StoreError>,
    ) -> Result<Vec<RowVersion>, StoreError> {
        let sql = format!(
            "SELECT r.uuid, r.origin, r.seq, r.writer, t.modified_on{} FROM rs_row r
             JOIN {} t ON t.uuid = r.uuid WHERE r.tbl = ?1 ORDER BY r.seq, r.uuid",
            payload_prefix(info),
            quote_ident(&info.name)
        );
        let n = info.payload.len();
        let mut stmt = self.conn.prepare(&sql)?;
        let mut rows = stmt.query([&info.name])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let uuid: String = r.get(0)?;
            let tag = Tag {
                origin: station_id_from(r.get(1)?)?,
                seq: r.get::<_, i64>(2)?.max(0) as u64,
            };
            let modified_on = text_of(value_from_ref(r.get_ref(4)?));
            if !keep(&uuid, tag, &modified_on) {
                continue;
            }
            let writer = station_id_from(r.get(3)?)?;
            let values = (0..n)
                .map(|i| r.get_ref(5 + i).map(value_from_ref))
                .collect::<Result<Vec<_>, _>>()?;
            let body = make(&uuid, tag, values)?;
            out.push(RowVersion {
                uuid,
                tag,
                writer,
                modified_on,
                body,
            });
        }
        Ok(out)
    }

    /// Every synced row as `(table, uuid, modified_on, payload values)`, tables in
    /// tracked order and rows by uuid. Two stations that have converged return
    /// the same list (site-local columns such as `id` are left out).
    pub fn synced_rows(&self) -> Result<Vec<SyncedRow>, StoreError> {
        let mut out = Vec::new();
        for info in &self.tables {
            let sql = format!(
                "SELECT t.uuid, t.modified_on{} FROM {} t ORDER BY t.uuid",
                payload_prefix(info),
                quote_ident(&info.name)
            );
            let n = info.payload.len();
            let mut stmt = self.conn.prepare(&sql)?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                out.push(SyncedRow {
                    table: info.name.clone(),
                    uuid: text_of(value_from_ref(r.get_ref(0)?)),
                    modified_on: text_of(value_from_ref(r.get_ref(1)?)),
                    values: (0..n)
                        .map(|i| r.get_ref(2 + i).map(value_from_ref))
                        .collect::<Result<Vec<_>, _>>()?,
                });
            }
        }
        Ok(out)
    }

    /// Every tracked row, full: the dictionary's training material.
    pub(crate) fn all_rows_full(&self) -> Result<Vec<TableChanges>, StoreError> {
        let mut out = Vec::new();
        for (i, info) in self.tables.iter().enumerate() {
            let rows = self.table_rows(info, |_, _, _| true, |_, _, v| Ok(RowBody::Full(v)))?;
            out.push(TableChanges {
                table: i as u16,
                rows,
            });
        }
        Ok(out)
    }

    /// Everything `peer` lacks: rows whose tag its confirmed vector does not
    /// cover, except its own changes (no echo), plus rows it asked for in full.
    pub fn export_for(&self, peer: &StationId) -> Result<Bundle, StoreError> {
        self.export_against(peer, None)
    }

    /// `export_for`, measured against `holds` (the peer's own word of what it
    /// holds, from a session Hello) instead of its confirmed vector.
    pub fn export_against(
        &self,
        peer: &StationId,
        holds: Option<&VersionVector>,
    ) -> Result<Bundle, StoreError> {
        let mut p = self
            .peer_by_id(peer)?
            .ok_or(StoreError::UnknownPeer(*peer))?;
        if let Some(v) = holds {
            p.confirmed = v.clone();
        }
        if self.tables.is_empty() {
            return Err(StoreError::NothingTracked);
        }
        let wanted: BTreeSet<(u16, String)> = p.wants.iter().filter_map(uuid_key).collect();
        let lost: BTreeSet<(u16, String)> = p.lost.iter().filter_map(uuid_key).collect();
        // Deltas name their row by base tag, unless the peer asked for a tag we
        // could not map back to a row: then every delta carries its uuid again.
        let by_base = !p.unplaced;
        let mut tables = Vec::new();
        for (i, info) in self.tables.iter().enumerate() {
            let ti = i as u16;
            let n = info.payload.len();
            let rows = self.table_rows(
                info,
                |uuid, tag, _| {
                    wanted.contains(&(ti, uuid.to_string()))
                        || (tag.origin != *peer && !p.confirmed.covers(&tag))
                },
                |uuid, tag, values| {
                    let key = (ti, uuid.to_string());
                    if wanted.contains(&key) || lost.contains(&key) {
                        return Ok(RowBody::Full(values));
                    }
                    let hist = history(&self.conn, &info.name, uuid)?;
                    // The latest entry the peer has seen is the base; the masks after it
                    // name the columns that changed since.
                    let mut delta = None;
                    if hist.last().map(|h| h.0) == Some(tag) {
                        if let Some(j) = hist[..hist.len() - 1]
                            .iter()
                            .rposition(|(t, _)| p.confirmed.covers(t))
                        {
                            let mask = hist[j + 1..].iter().fold(0u64, |m, (_, k)| m | k);
                            delta = Some((hist[j].0, mask));
                        }
                    }
                    Ok(body_for(values, delta, n))
                },
            )?;
            let mut rows = rows;
            if by_base {
                for r in rows.iter_mut() {
                    if matches!(r.body, RowBody::Delta { .. }) {
                        r.uuid.clear();
                    }
                }
            }
            if !rows.is_empty() {
                tables.push(TableChanges { table: ti, rows });
            }
        }
        Ok(Bundle {
            kind: BundleKind::Delta,
            sender: self.station.id,
            receiver: Some(*peer),
            schema: self.fingerprint,
            sender_vector: self.vector()?,
            wants: self.my_wants(peer)?,
            tables,
        })
    }

    /// A manual export by age: full rows with `modified_on >= since` (compared
    /// as instants when both parse, else as text). Any peer may import it; it
    /// claims nothing about what this station holds.
    pub fn export_since(&self, since: &str) -> Result<Bundle, StoreError> {
        if self.tables.is_empty() {
            return Err(StoreError::NothingTracked);
        }
        let since_ms = crate::delta::time::parse_millis(since);
        let recent = |m: &str| match (crate::delta::time::parse_millis(m), since_ms) {
            (Some(a), Some(b)) => a >= b,
            _ => m >= since,
        };
        let mut tables = Vec::new();
        for (i, info) in self.tables.iter().enumerate() {
            let rows =
                self.table_rows(info, |_, _, m| recent(m), |_, _, v| Ok(RowBody::Full(v)))?;
            if !rows.is_empty() {
                tables.push(TableChanges {
                    table: i as u16,
                    rows,
                });
            }
        }
        Ok(Bundle {
            kind: BundleKind::Slice,
            sender: self.station.id,
            receiver: None,
            schema: self.fingerprint,
            // Used by the receiver only to tell conflicts from updates.
            sender_vector: self.vector()?,
            wants: Vec::new(),
            tables,
        })
    }

    fn my_wants(&self, peer: &StationId) -> Result<Vec<Want>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT tbl, uuid FROM rs_want WHERE peer = ?1 ORDER BY tbl, uuid")?;
        let rows = stmt
            .query_map([peer.0.to_vec()], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let mut out: Vec<Want> = rows
            .into_iter()
            .filter_map(|(t, uuid)| {
                self.table_index(&t).map(|table| Want {
                    table,
                    row: RowRef::Uuid(uuid),
                })
            })
            .collect();
        for (t, tag) in tag_wants(&self.conn, peer)? {
            if let Some(table) = self.table_index(&t) {
                out.push(Want {
                    table,
                    row: RowRef::Tag(tag),
                });
            }
        }
        Ok(out)
    }

    /// How many rows an export to `peer` would carry now.
    pub fn pending_for(&self, peer: &StationId) -> Result<u64, StoreError> {
        Ok(self
            .export_for(peer)?
            .tables
            .iter()
            .map(|t| t.rows.len() as u64)
            .sum())
    }

    /// `export_for`, encoded: with our dictionary only when the peer advertised
    /// the same one. Logs the export.
    pub fn export_bundle_bytes(&self, peer: &StationId) -> Result<Vec<u8>, StoreError> {
        Ok(self.export_encoded(peer)?.bytes)
    }

    /// As `export_bundle_bytes`, also saying how many rows and wants it carries
    /// (a session sends "nothing" instead of a bundle without either).
    pub fn export_encoded(&self, peer: &StationId) -> Result<Exported, StoreError> {
        self.export_encoded_against(peer, None)
    }

    /// `export_encoded` measured against `holds` (see `export_against`).
    pub fn export_encoded_against(
        &self,
        peer: &StationId,
        holds: Option<&VersionVector>,
    ) -> Result<Exported, StoreError> {
        let bundle = self.export_against(peer, holds)?;
        let p = self
            .peer_by_id(peer)?
            .ok_or(StoreError::UnknownPeer(*peer))?;
        let dict = self.dictionary()?;
        let use_dict = matches!(&dict, Some(d) if d.id != 0 && d.id == p.dict_id);
        let bytes = codec::encode(&bundle, dict.as_ref(), use_dict).map_err(StoreError::Encode)?;
        let rows: u64 = bundle.tables.iter().map(|t| t.rows.len() as u64).sum();
        self.log_event(&LogEntry {
            peer: Some(p.name),
            direction: "out".into(),
            rows_out: rows,
            result: "ok".into(),
            message: format!(
                "bundle of {} bytes{}",
                bytes.len(),
                if use_dict { ", dictionary" } else { "" }
            ),
            ..Default::default()
        })?;
        Ok(Exported {
            bytes,
            rows,
            wants: bundle.wants.len() as u64,
        })
    }

    /// Decode with the right dictionary and import. A refused bundle changes
    /// nothing but an rs_log line.
    pub fn import_bundle_bytes(&mut self, bytes: &[u8]) -> Result<ImportReport, StoreError> {
        let res = self.import_bytes_inner(bytes, None);
        if let Err(e) = &res {
            self.log_refusal(None, e);
        }
        res
    }

    /// `import_bundle_bytes` for a bundle that arrived over radio: the partial
    /// transfer kept for `peer` is deleted in the import's own transaction, so a
    /// crash can never leave a committed bundle that a later session offers to resume.
    pub fn import_transfer(
        &mut self,
        bytes: &[u8],
        peer: &StationId,
    ) -> Result<ImportReport, StoreError> {
        let res = self.import_bytes_inner(bytes, Some(peer));
        if let Err(e) = &res {
            self.log_refusal(None, e);
        }
        res
    }

    fn import_bytes_inner(
        &mut self,
        bytes: &[u8],
        clear_partial: Option<&StationId>,
    ) -> Result<ImportReport, StoreError> {
        let header = codec::peek_header(bytes)?;
        let ends = self.resolve_ends(&header)?;
        self.check_addressing(ends.sender, ends.receiver, header.schema)?;
        let dict = self.dictionary()?;
        let dict = if header.uses_dict {
            match dict {
                Some(d) if d.id == header.dict_id => Some(d),
                other => {
                    return Err(StoreError::DictMismatch {
                        theirs: header.dict_id,
                        ours: other.map(|d| d.id).unwrap_or(0),
                    })
                }
            }
        } else {
            None
        };
        let bundle = codec::decode(bytes, dict.as_ref(), &ends)?;
        if bundle.sender != ends.sender
            || bundle.receiver != ends.receiver
            || bundle.schema != header.schema
        {
            return Err(StoreError::Malformed("header and body disagree".into()));
        }
        self.import_checked(&bundle, Some(header.dict_id), clear_partial)
    }

    /// The stations behind the header's 4-byte keys: the receiver must be us,
    /// the sender exactly one registered peer.
    fn resolve_ends(&self, h: &codec::Header) -> Result<codec::Ends, StoreError> {
        let me = self.station.id;
        let my_key = codec::station_key(&me);
        if h.sender_key == my_key {
            return Err(StoreError::FromSelf(me));
        }
        if let Some(k) = h.receiver_key {
            if k != my_key {
                return Err(StoreError::WrongReceiver {
                    to: format!("with key {k:08x}"),
                    us: format!("{me} (key {my_key:08x})"),
                });
            }
        }
        let peers: Vec<StationId> = self
            .peers()?
            .into_iter()
            .map(|p| p.id)
            .filter(|id| codec::station_key(id) == h.sender_key)
            .collect();
        match peers[..] {
            [sender] => Ok(codec::Ends {
                sender,
                receiver: h.receiver_key.map(|_| me),
            }),
            _ => Err(StoreError::UnknownSender {
                key: h.sender_key,
                matches: peers.len(),
            }),
        }
    }

    /// Merge a bundle in one transaction: all or nothing.
    pub fn import_bundle(&mut self, bundle: &Bundle) -> Result<ImportReport, StoreError> {
        let res = self.import_checked(bundle, None, None);
        if let Err(e) = &res {
            self.log_refusal(Some(bundle.sender), e);
        }
        res
    }

    fn log_refusal(&self, sender: Option<StationId>, e: &StoreError) {
        let peer = sender.and_then(|s| {
            self.peer_by_id(&s)
                .ok()
                .flatten()
                .map(|p| p.name)
                .or(Some(s.to_string()))
        });
        // Best effort: the refusal itself is what the caller reports.
        let _ = self.log_event(&LogEntry {
            peer,
            direction: "in".into(),
            result: "refused".into(),
            message: e.to_string(),
            ..Default::default()
        });
    }

    fn check_addressing(
        &self,
        sender: StationId,
        receiver: Option<StationId>,
        schema: crate::delta::SchemaFingerprint,
    ) -> Result<(), StoreError> {
        let me = self.station.id;
        if sender == me {
            return Err(StoreError::FromSelf(me));
        }
        if let Some(to) = receiver {
            if to != me {
                return Err(StoreError::WrongReceiver {
                    to: to.to_string(),
                    us: me.to_string(),
                });
            }
        }
        if self.peer_by_id(&sender)?.is_none() {
            return Err(StoreError::UnknownPeer(sender));
        }
        if self.tables.is_empty() {
            return Err(StoreError::NothingTracked);
        }
        if schema != self.fingerprint {
            return Err(StoreError::SchemaMismatch {
                ours: self.fingerprint.0,
                theirs: schema.0,
            });
        }
        Ok(())
    }

    fn validate(&self, b: &Bundle) -> Result<(), StoreError> {
        self.check_addressing(b.sender, b.receiver, b.schema)?;
        match (b.kind, b.receiver) {
            (BundleKind::Delta, None) => {
                return Err(StoreError::Malformed(
                    "a delta bundle without a receiver".into(),
                ))
            }
            (BundleKind::Slice, Some(_))
            | (BundleKind::Slice, None)
            | (BundleKind::Delta, Some(_)) => {}
        }
        let mut seen = BTreeSet::new();
        let mut seen_bases = BTreeSet::new();
        for t in &b.tables {
            let info = self.tables.get(t.table as usize).ok_or_else(|| {
                StoreError::Malformed(format!("table index {} out of range", t.table))
            })?;
            let n = info.payload.len();
            for r in &t.rows {
                let dup = match &r.body {
                    RowBody::Delta { base, .. } if r.by_base() => {
                        !seen_bases.insert((t.table, *base))
                    }
                    _ => !seen.insert((t.table, r.uuid.as_str())),
                };
                if dup {
                    return Err(StoreError::Malformed(format!(
                        "row {} of {} appears twice",
                        r.uuid, info.name
                    )));
                }
                match &r.body {
                    RowBody::Full(v) if v.len() != n => {
                        return Err(StoreError::Malformed(format!(
                            "a row of {} has {} values, the table has {n} synced columns",
                            info.name,
                            v.len()
                        )))
                    }
                    RowBody::Delta { mask, values, .. } => {
                        let beyond = n < 64 && (mask >> n) != 0;
                        if beyond || mask.count_ones() as usize != values.len() {
                            return Err(StoreError::Malformed(format!(
                                "a delta row of {} has a mask that does not match its values",
                                info.name
                            )));
                        }
                    }
                    RowBody::Full(_) => {}
                }
            }
        }
        for w in &b.wants {
            if self.tables.get(w.table as usize).is_none() {
                return Err(StoreError::Malformed(format!(
                    "want for table index {}",
                    w.table
                )));
            }
        }
        Ok(())
    }

    fn import_checked(
        &mut self,
        b: &Bundle,
        dict_id: Option<u32>,
        clear_partial: Option<&StationId>,
    ) -> Result<ImportReport, StoreError> {
        self.validate(b)?;
        let peer = self
            .peer_by_id(&b.sender)?
            .ok_or(StoreError::UnknownPeer(b.sender))?;
        // Skip what we processed before. The raw vector (not lowered by wants) is
        // right here: a wanted row from this sender is never skipped, and a
        // change we only lack in full comes from the peer we asked.
        // Lowered below the versions we asked this sender for by tag: the answer
        // (the full row, under that tag or a newer one) must not be skipped.
        let mut our_vector = self.raw_vector()?;
        let sender_key = b.sender.0.to_vec();
        let by_tag = tag_wants(&self.conn, &b.sender)?;
        for (_, t) in &by_tag {
            if let Some(e) = our_vector.0.get_mut(&t.origin) {
                *e = (*e).min(t.seq.saturating_sub(1));
            }
        }
        let me = self.station.id;
        let tx = self.conn.unchecked_transaction()?;
        tx.execute("UPDATE rs_ctl SET applying = 1", [])?;
        // A bundle made after the one we could not place (its vector covers the
        // tag) carries the row again: in full if the sender read our want, else
        // as before, when the want is recorded again below.
        if b.kind == BundleKind::Delta {
            for (t, tag) in &by_tag {
                if b.sender_vector.covers(tag) {
                    tx.execute(
                        "DELETE FROM rs_want_tag WHERE peer = ?1 AND tbl = ?2 AND origin = ?3 AND seq = ?4",
                        params![sender_key, t, tag.origin.0.to_vec(), tag.seq as i64],
                    )?;
                }
            }
        }
        let mut rep = ImportReport {
            sender: b.sender,
            peer_name: peer.name.clone(),
            ..Default::default()
        };
        let mut wanted_from_sender: BTreeSet<(String, String)> = BTreeSet::new();
        {
            let mut stmt = tx.prepare("SELECT tbl, uuid FROM rs_want WHERE peer = ?1")?;
            for w in stmt.query_map([&sender_key], |r| Ok((r.get(0)?, r.get(1)?)))? {
                wanted_from_sender.insert(w?);
            }
        }
        // Rows whose version here beat the sender's: the sender gets them in full.
        let mut lost_at_sender: Vec<(String, String)> = Vec::new();
        let peer_before = dump_peer_state(&tx, &sender_key)?;
        let mut clock: i64 = tx.query_row("SELECT seq FROM rs_clock", [], |r| r.get(0))?;
        let now = now_text();
        for tc in &b.tables {
            let info = &self.tables[tc.table as usize];
            let (mut applied, mut conflicts) = (0u64, 0u64);
            for row in &tc.rows {
                let key = (info.name.clone(), row.uuid.clone());
                let is_wanted = wanted_from_sender.contains(&key);
                if our_vector.covers(&row.tag) && !is_wanted {
                    rep.skipped += 1;
                    continue;
                }
                let placed;
                let row = match &row.body {
                    RowBody::Delta { base, .. } if row.by_base() => {
                        match row_by_tag(&tx, &info.name, *base)? {
                            Some(uuid) => {
                                placed = RowVersion {
                                    uuid,
                                    ..row.clone()
                                };
                                &placed
                            }
                            None => {
                                // We hold another version, or forgot the base: ask by tag.
                                let added = tx.execute(
                                    "INSERT OR IGNORE INTO rs_want_tag (peer, tbl, origin, seq) VALUES (?1, ?2, ?3, ?4)",
                                    params![sender_key, info.name, row.tag.origin.0.to_vec(), row.tag.seq as i64],
                                )?;
                                rep.wanted += added as u64;
                                continue;
                            }
                        }
                    }
                    _ => row,
                };
                let local = read_local(&tx, info, &row.uuid, me)?;
                let outcome = apply_row(&tx, info, row, local.as_ref(), b, &peer.name, &now)?;
                match outcome {
                    Outcome::Applied { conflict } => {
                        applied += 1;
                        rep.applied += 1;
                        conflicts += conflict as u64;
                        rep.conflicts += conflict as u64;
                    }
                    Outcome::Kept {
                        conflict,
                        reannounce,
                    } => {
                        rep.kept_local += 1;
                        lost_at_sender.push((info.name.clone(), row.uuid.clone()));
                        conflicts += conflict as u64;
                        rep.conflicts += conflict as u64;
                        if reannounce && b.kind == BundleKind::Delta {
                            let l = local.as_ref().expect("kept implies a local row");
                            clock += 1;
                            let tag = Tag {
                                origin: me,
                                seq: clock as u64,
                            };
                            set_row_tag(&tx, &info.name, &row.uuid, tag, l.writer)?;
                            // All-ones: the sender holds another version, so it gets the row in full.
                            push_history(&tx, &info.name, &row.uuid, tag, u64::MAX)?;
                            rep.reannounced += 1;
                        }
                    }
                    Outcome::Same => {
                        // The same version under another tag: a re-announcement. Take its tag,
                        // so our exports carry it to stations that hold a loser yet would
                        // claim this tag through our vector.
                        let l = local.as_ref().expect("same implies a local row");
                        if b.kind == BundleKind::Delta && l.tag != Some(row.tag) {
                            set_row_tag(&tx, &info.name, &row.uuid, row.tag, l.writer)?;
                            push_history(&tx, &info.name, &row.uuid, row.tag, u64::MAX)?;
                            rep.retagged += 1;
                        }
                    }
                    Outcome::Want => {
                        // Record the need; the vector cap keeps this change unclaimed.
                        // Keep the first want: its cap is the one that matters.
                        let added = tx.execute(
                            "INSERT OR IGNORE INTO rs_want (peer, tbl, uuid, origin, seq) VALUES (?1, ?2, ?3, ?4, ?5)",
                            params![sender_key, info.name, row.uuid, row.tag.origin.0.to_vec(), row.tag.seq as i64],
                        )?;
                        rep.wanted += added as u64;
                        continue;
                    }
                }
                if is_wanted {
                    tx.execute(
                        "DELETE FROM rs_want WHERE peer = ?1 AND tbl = ?2 AND uuid = ?3",
                        params![sender_key, info.name, row.uuid],
                    )?;
                }
            }
            rep.per_table
                .push((info.name.clone(), tc.rows.len() as u64, applied, conflicts));
        }
        tx.execute("UPDATE rs_clock SET seq = ?1", [clock])?;
        if b.kind == BundleKind::Delta {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO rs_vector (origin, seq) VALUES (?1, ?2)
                 ON CONFLICT (origin) DO UPDATE SET seq = max(seq, excluded.seq)",
            )?;
            for (o, s) in &b.sender_vector.0 {
                if *o != me {
                    stmt.execute(params![o.0.to_vec(), *s as i64])?;
                }
            }
            drop(stmt);
            raise_peer_vector(&tx, &b.sender, &b.sender_vector)?;
            // The bundle's wants are the sender's whole current list.
            tx.execute(
                "DELETE FROM rs_peer_want WHERE peer = ?1 AND kind IN ('asked', 'unplaced')",
                [&sender_key],
            )?;
            for w in &b.wants {
                let name = &self.tables[w.table as usize].name;
                // A tag we no longer map to a row: the peer gets uuids on deltas
                // again (kind 'unplaced'), so its next miss names the row by uuid.
                let (uuid, kind) = match &w.row {
                    RowRef::Uuid(u) => (u.clone(), "asked"),
                    RowRef::Tag(tag) => match row_by_tag(&tx, name, *tag)? {
                        Some(u) => (u, "asked"),
                        None => (String::new(), "unplaced"),
                    },
                };
                tx.execute(
                    "INSERT OR REPLACE INTO rs_peer_want (peer, tbl, uuid, kind) VALUES (?1, ?2, ?3, ?4)",
                    params![sender_key, name, uuid, kind],
                )?;
            }
            // A lost version is moot once the peer confirms our current one.
            let confirmed = super::read_vector(
                &tx,
                "SELECT origin, seq FROM rs_peer_vector WHERE peer = ?1",
                Some(&sender_key),
            )?;
            let lost: Vec<(String, String, Vec<u8>, i64)> = {
                let mut stmt = tx.prepare(
                    "SELECT w.tbl, w.uuid, r.origin, r.seq FROM rs_peer_want w
                     JOIN rs_row r ON r.tbl = w.tbl AND r.uuid = w.uuid
                     WHERE w.peer = ?1 AND w.kind = 'lost'",
                )?;
                let v = stmt
                    .query_map([&sender_key], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                v
            };
            for (t, u, o, s) in lost {
                let tag = Tag {
                    origin: station_id_from(o)?,
                    seq: s.max(0) as u64,
                };
                if confirmed.covers(&tag) {
                    tx.execute(
                        "DELETE FROM rs_peer_want WHERE peer = ?1 AND tbl = ?2 AND uuid = ?3 AND kind = 'lost'",
                        params![sender_key, t, u],
                    )?;
                }
            }
        }
        for (t, u) in &lost_at_sender {
            tx.execute(
                "INSERT OR IGNORE INTO rs_peer_want (peer, tbl, uuid, kind) VALUES (?1, ?2, ?3, 'lost')",
                params![sender_key, t, u],
            )?;
        }
        if let Some(d) = dict_id {
            tx.execute(
                "UPDATE rs_peer SET dict_id = ?1 WHERE uuid = ?2",
                params![d as i64, sender_key],
            )?;
        }
        // A bundle that brings nothing new (e.g. the same one twice) changes nothing.
        let news = rep.applied + rep.kept_local + rep.wanted + rep.retagged > 0
            || dump_peer_state(&tx, &sender_key)? != peer_before;
        if news {
            tx.execute(
                "UPDATE rs_peer SET last_sync = ?1, sync_count = sync_count + 1 WHERE uuid = ?2",
                params![now, sender_key],
            )?;
        }
        let kind = match b.kind {
            BundleKind::Delta => "delta",
            BundleKind::Slice => "slice",
        };
        let mut log = tx.prepare(
            "INSERT INTO rs_log (time, peer, tbl, direction, rows_in, rows_out, conflicts, result, message)
             VALUES (?1, ?2, ?3, 'in', ?4, 0, ?5, 'ok', ?6)",
        )?;
        for (t, n, applied, c) in &rep.per_table {
            log.execute(params![
                now,
                peer.name,
                t,
                *n as i64,
                *c as i64,
                format!("{kind}: {applied} applied")
            ])?;
        }
        log.execute(params![
            now,
            peer.name,
            Option::<String>::None,
            rep.applied as i64 + rep.skipped as i64 + rep.kept_local as i64 + rep.wanted as i64,
            rep.conflicts as i64,
            format!(
                "{kind}: {} applied, {} already held, {} kept local, {} asked in full, {} re-announced",
                rep.applied, rep.skipped, rep.kept_local, rep.wanted, rep.reannounced
            )
        ])?;
        drop(log);
        if let Some(p) = clear_partial {
            super::transfer::clear_partial(&tx, p)?;
        }
        tx.execute("UPDATE rs_ctl SET applying = 0", [])?;
        tx.commit()?;
        Ok(rep)
    }
}

fn uuid_key(w: &Want) -> Option<(u16, String)> {
    match &w.row {
        RowRef::Uuid(u) => Some((w.table, u.clone())),
        RowRef::Tag(_) => None,
    }
}

/// Versions we asked `peer` for by tag: (table name, tag).
pub(crate) fn tag_wants(
    conn: &Connection,
    peer: &StationId,
) -> Result<Vec<(String, Tag)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT tbl, origin, seq FROM rs_want_tag WHERE peer = ?1 ORDER BY tbl, origin, seq",
    )?;
    let rows = stmt
        .query_map([peer.0.to_vec()], |r| {
            Ok((
                r.get::<_, String>(0)?,
                Tag {
                    origin: station_id_from(r.get(1)?)?,
                    seq: r.get::<_, i64>(2)?.max(0) as u64,
                },
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// What we know of a peer, to tell whether an import brought anything new.
fn dump_peer_state(tx: &Connection, peer: &[u8]) -> Result<String, StoreError> {
    let s: String = tx.query_row(
        "SELECT coalesce((SELECT group_concat(hex(origin) || ':' || seq, ',') FROM
            (SELECT origin, seq FROM rs_peer_vector WHERE peer = ?1 ORDER BY origin)), '')
         || '|' || coalesce((SELECT group_concat(tbl || ':' || uuid || ':' || kind, ',') FROM
            (SELECT tbl, uuid, kind FROM rs_peer_want WHERE peer = ?1 ORDER BY tbl, uuid)), '')
         || '|' || coalesce((SELECT dict_id FROM rs_peer WHERE uuid = ?1), '')",
        [peer],
        |r| r.get(0),
    )?;
    Ok(s)
}

enum Outcome {
    Applied { conflict: bool },
    Kept { conflict: bool, reannounce: bool },
    Same,
    Want,
}

#[allow(clippy::too_many_arguments)]
fn record_conflict(
    conn: &Connection,
    info: &TableInfo,
    uuid: &str,
    peer: &str,
    now: &str,
    loser_side: &str,
    loser: (&str, StationId, Vec<(usize, &Value)>),
    winner: (&str, StationId),
) -> Result<(), StoreError> {
    let dup: Option<i64> = conn
        .query_row(
            "SELECT 1 FROM rs_conflict WHERE tbl = ?1 AND uuid = ?2 AND loser_side = ?3
               AND loser_modified_on = ?4 AND loser_writer = ?5",
            params![info.name, uuid, loser_side, loser.0, loser.1 .0.to_vec()],
            |r| r.get(0),
        )
        .optional()?;
    if dup.is_some() {
        return Ok(());
    }
    let mut obj = serde_json::Map::new();
    for (i, v) in loser.2 {
        obj.insert(info.payload[i].name.clone(), value_json(v));
    }
    conn.execute(
        "INSERT INTO rs_conflict (time, tbl, uuid, peer, loser_side, loser_modified_on, loser_writer,
           winner_modified_on, winner_writer, loser_values) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            now,
            info.name,
            uuid,
            peer,
            loser_side,
            loser.0,
            loser.1 .0.to_vec(),
            winner.0,
            winner.1 .0.to_vec(),
            serde_json::Value::Object(obj).to_string()
        ],
    )?;
    Ok(())
}

fn apply_row(
    tx: &Connection,
    info: &TableInfo,
    row: &RowVersion,
    local: Option<&LocalRow>,
    b: &Bundle,
    peer: &str,
    now: &str,
) -> Result<Outcome, StoreError> {
    let Some(l) = local else {
        return match &row.body {
            RowBody::Full(values) => {
                insert_row(tx, info, row, values)?;
                set_row_tag(tx, &info.name, &row.uuid, row.tag, row.writer)?;
                push_history(tx, &info.name, &row.uuid, row.tag, u64::MAX)?;
                Ok(Outcome::Applied { conflict: false })
            }
            RowBody::Delta { .. } => Ok(Outcome::Want),
        };
    };
    let verdict = decide(
        VersionKey {
            modified_on: &l.modified_on,
            writer: l.writer,
        },
        VersionKey {
            modified_on: &row.modified_on,
            writer: row.writer,
        },
    );
    match verdict {
        Verdict::Incoming => {
            let new_values: Vec<Value> = match &row.body {
                RowBody::Full(v) => v.clone(),
                RowBody::Delta { base, mask, values } => {
                    if !delta_applies(tx, info, &row.uuid, l.tag, *base, *mask)? {
                        return Ok(Outcome::Want);
                    }
                    let mut out = l.values.clone();
                    let mut it = values.iter();
                    for (i, slot) in out.iter_mut().enumerate() {
                        if i < 64 && mask & (1u64 << i) != 0 {
                            if let Some(v) = it.next() {
                                *slot = v.clone();
                            }
                        }
                    }
                    out
                }
            };
            // Our version loses; it is a conflict if the sender never saw it.
            let seen_by_sender = l.tag.is_some_and(|t| b.sender_vector.covers(&t));
            let conflict = !seen_by_sender;
            if conflict {
                record_conflict(
                    tx,
                    info,
                    &row.uuid,
                    peer,
                    now,
                    "local",
                    (
                        &l.modified_on,
                        l.writer,
                        l.values.iter().enumerate().collect(),
                    ),
                    (&row.modified_on, row.writer),
                )?;
            }
            let mask = diff_mask(&l.values, &new_values);
            update_row(tx, info, &row.uuid, &row.modified_on, &new_values, mask)?;
            set_row_tag(tx, &info.name, &row.uuid, row.tag, row.writer)?;
            push_history(tx, &info.name, &row.uuid, row.tag, mask)?;
            Ok(Outcome::Applied { conflict })
        }
        Verdict::Local => {
            let seen_before = history(tx, &info.name, &row.uuid)?
                .iter()
                .any(|(t, _)| *t == row.tag);
            let conflict = !seen_before;
            if conflict {
                let loser: Vec<(usize, &Value)> = match &row.body {
                    RowBody::Full(v) => v.iter().enumerate().collect(),
                    RowBody::Delta { mask, values, .. } => (0..info.payload.len().min(64))
                        .filter(|i| mask & (1u64 << i) != 0)
                        .zip(values.iter())
                        .collect(),
                };
                record_conflict(
                    tx,
                    info,
                    &row.uuid,
                    peer,
                    now,
                    "remote",
                    (&row.modified_on, row.writer, loser),
                    (&l.modified_on, l.writer),
                )?;
            }
            // The sender saw our winner yet holds a loser: send the winner again.
            let reannounce = match l.tag {
                Some(t) => b.sender_vector.covers(&t),
                None => true,
            };
            Ok(Outcome::Kept {
                conflict,
                reannounce,
            })
        }
        Verdict::Same => Ok(Outcome::Same),
    }
}

/// A delta applies when our row is exactly its base, or when every change we
/// hold since the base touched only columns the delta carries (then all other
/// columns still equal the base's, and the result is the sender's version).
fn delta_applies(
    tx: &Connection,
    info: &TableInfo,
    uuid: &str,
    current: Option<Tag>,
    base: Tag,
    mask: u64,
) -> Result<bool, StoreError> {
    if current == Some(base) {
        return Ok(true);
    }
    let hist = history(tx, &info.name, uuid)?;
    if hist.last().map(|h| h.0) != current {
        return Ok(false);
    }
    Ok(match hist.iter().rposition(|(t, _)| *t == base) {
        Some(j) => hist[j + 1..].iter().all(|(_, m)| m & !mask == 0),
        None => false,
    })
}

fn update_row(
    tx: &Connection,
    info: &TableInfo,
    uuid: &str,
    modified_on: &str,
    values: &[Value],
    mask: u64,
) -> Result<(), StoreError> {
    let mut sets = vec!["modified_on = ?1".to_string()];
    let mut args: Vec<rusqlite::types::Value> = vec![modified_on.to_string().into()];
    for (i, c) in info.payload.iter().enumerate() {
        let changed = i >= 64 || mask & (1u64 << i) != 0;
        if changed {
            args.push(value_to_sql(&values[i]));
            sets.push(format!("{} = ?{}", quote_ident(&c.name), args.len()));
        }
    }
    args.push(uuid.to_string().into());
    let sql = format!(
        "UPDATE {} SET {} WHERE uuid = ?{}",
        quote_ident(&info.name),
        sets.join(", "),
        args.len()
    );
    tx.execute(&sql, rusqlite::params_from_iter(args))?;
    Ok(())
}

fn insert_row(
    tx: &Connection,
    info: &TableInfo,
    row: &RowVersion,
    values: &[Value],
) -> Result<(), StoreError> {
    let qt = quote_ident(&info.name);
    let mut cols = vec!["uuid".to_string(), "modified_on".to_string()];
    let mut args: Vec<rusqlite::types::Value> =
        vec![row.uuid.clone().into(), row.modified_on.clone().into()];
    for (c, v) in info.payload.iter().zip(values) {
        cols.push(quote_ident(&c.name));
        args.push(value_to_sql(v));
    }
    // A fresh site-local value where the table cannot provide one itself.
    for c in &info.local {
        let rowid_alias = c.pk && c.decl_type.eq_ignore_ascii_case("INTEGER");
        if c.notnull && !c.has_default && !rowid_alias {
            let next: i64 = tx.query_row(
                &format!(
                    "SELECT coalesce(max({}), 0) + 1 FROM {qt}",
                    quote_ident(&c.name)
                ),
                [],
                |r| r.get(0),
            )?;
            cols.push(quote_ident(&c.name));
            args.push(next.into());
        }
    }
    let marks: Vec<String> = (1..=args.len()).map(|i| format!("?{i}")).collect();
    let sql = format!(
        "INSERT INTO {qt} ({}) VALUES ({})",
        cols.join(", "),
        marks.join(", ")
    );
    tx.execute(&sql, rusqlite::params_from_iter(args))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(seq: u64) -> Tag {
        Tag {
            origin: StationId([1; 16]),
            seq,
        }
    }

    #[test]
    fn diff_mask_compares_types_and_bits() {
        let a = vec![Value::Integer(1), Value::Real(0.5), Value::Text("x".into())];
        let b = vec![Value::Real(1.0), Value::Real(0.5), Value::Text("y".into())];
        assert_eq!(diff_mask(&a, &b), 0b101);
        assert_eq!(diff_mask(&a, &a), 0);
    }

    #[test]
    fn delta_only_when_it_pays() {
        let vals = vec![
            Value::Integer(1),
            Value::Integer(2),
            Value::Integer(3),
            Value::Integer(4),
        ];
        match body_for(vals.clone(), Some((tag(1), 0b0100)), 4) {
            RowBody::Delta { values, mask, .. } => {
                assert_eq!(mask, 0b0100);
                assert_eq!(values, vec![Value::Integer(3)]);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            body_for(vals.clone(), Some((tag(1), 0b0111)), 4),
            RowBody::Full(_)
        ));
        assert!(matches!(body_for(vals, None, 4), RowBody::Full(_)));
    }
}
