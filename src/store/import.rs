//! The merge of what arrives: decode, check, map the sender's tables onto
//! ours by name, then one transaction that carries out the pure merge plan
//! (`delta::merge::plan`) row by row. A row this database refuses (a
//! constraint, an unreadable time) is quarantined and retried later; it never
//! blocks the rest of the bundle.

mod put;
pub use put::{dump_value_for_column, PutReport};

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rusqlite::{params, Connection, OptionalExtension};

use super::exchange::{
    diff_mask, history, push_history, raise_peer_vector, read_local, row_by_tag, set_row_tag,
    tag_wants, LocalRow,
};
use super::schema::{quote_ident, TableInfo};
use super::{
    now_text, station_id_from, value_json, value_to_sql, ImportReport, LogEntry, Store, StoreError,
};
use crate::codec;
use crate::delta::digest::{base_tag, row_digest, CONTENT_BASE};
use crate::delta::merge::{
    plan_with, IncomingBody, LocalSide, Policy, Preference, RowPlan, VersionKey,
};
use crate::delta::{
    Bundle, BundleKind, RowBody, RowRef, RowVersion, SchemaFingerprint, StationId, TableLayout,
    Tag, Value, VersionVector, Want,
};

/// The rows of one of our tables in a bundle, mapped onto our columns.
struct MappedTable {
    /// Index into `Store::tables`.
    table: usize,
    /// Our payload columns the sender does not have: left as they are here.
    absent: Vec<bool>,
    rows: Vec<RowVersion>,
    /// Rows in the bundle (before mapping), for the report.
    count: u64,
    /// Set when the sender's conflict policy for the table differs from ours.
    clash: Option<String>,
}

/// A bundle in our tables' terms.
struct Mapped {
    tables: Vec<MappedTable>,
    wants: Vec<Want>,
    /// Rows of tables we do not track.
    untracked: u64,
}

fn is_row_fault(e: &StoreError) -> Option<String> {
    use rusqlite::ErrorCode as C;
    match e {
        StoreError::Sql(rusqlite::Error::SqliteFailure(f, msg))
            if matches!(f.code, C::ConstraintViolation | C::TypeMismatch | C::TooBig) =>
        {
            Some(msg.clone().unwrap_or_else(|| f.to_string()))
        }
        _ => None,
    }
}

/// A JSON value as `value_json` wrote it, back to the exact value.
pub(crate) fn value_from_json(v: &serde_json::Value) -> Option<Value> {
    use serde_json::Value as J;
    Some(match v {
        J::Null => Value::Null,
        J::Number(n) => match n.as_i64() {
            Some(i) if !n.is_f64() => Value::Integer(i),
            _ => Value::Real(n.as_f64()?),
        },
        J::String(s) => Value::Text(s.clone()),
        J::Object(o) => {
            if let Some(J::String(r)) = o.get("real") {
                Value::Real(r.parse().ok()?)
            } else if let Some(J::String(h)) = o.get("blob_hex") {
                let bytes = (0..h.len() / 2)
                    .map(|i| u8::from_str_radix(h.get(2 * i..2 * i + 2)?, 16).ok())
                    .collect::<Option<Vec<u8>>>()?;
                Value::Blob(bytes)
            } else {
                return None;
            }
        }
        _ => return None,
    })
}

/// A quarantined row as `rs_quarantine` keeps it (values still JSON).
struct Parked {
    table: String,
    row: RowVersion,
    vals: String,
    peer: StationId,
}

/// What became of one row.
enum Outcome {
    Applied { conflict: bool },
    Kept { conflict: bool, reannounce: bool },
    Same,
    Want,
    Quarantined,
}

/// The context of one import, shared by its rows.
struct RowCtx<'a> {
    tx: &'a Connection,
    sender: StationId,
    sender_vector: &'a VersionVector,
    peer: &'a str,
    now: &'a str,
    /// Rows whose version here the sender saw by content (a delta placed on
    /// its base by `place_by_content`): (table, uuid) -> our tag then.
    seen_by_content: &'a SeenByContent,
}

/// (table, uuid) -> the tag of our version a placed delta was made against.
type SeenByContent = BTreeMap<(String, String), Tag>;

impl Store {
    /// Decode with the right dictionary and import. A refused bundle changes
    /// nothing but an rs_log line.
    pub fn import_bundle_bytes(&mut self, bytes: &[u8]) -> Result<ImportReport, StoreError> {
        self.import_logged(bytes, None, false)
    }

    /// `import_bundle_bytes` for a bundle that arrived over radio: the partial
    /// transfer kept for `peer` is deleted in the import's own transaction, so a
    /// crash can never leave a committed bundle that a later session offers to resume.
    pub fn import_transfer(
        &mut self,
        bytes: &[u8],
        peer: &StationId,
    ) -> Result<ImportReport, StoreError> {
        self.import_logged(bytes, Some(peer), false)
    }

    /// `import_transfer` for a bundle of rows that set reconciliation found
    /// differing: every row is merged by content, even one whose tag our vector
    /// already covers (that is how drift behind the change log is repaired).
    pub fn import_reconciled(
        &mut self,
        bytes: &[u8],
        peer: &StationId,
    ) -> Result<ImportReport, StoreError> {
        self.import_logged(bytes, Some(peer), true)
    }

    /// Imports and logs a refusal (a refused bundle changes nothing but that line).
    fn import_logged(
        &mut self,
        bytes: &[u8],
        clear_partial: Option<&StationId>,
        by_content: bool,
    ) -> Result<ImportReport, StoreError> {
        let res = self.import_bytes_inner(bytes, clear_partial, by_content);
        if let Err(e) = &res {
            self.log_refusal(None, e);
        }
        res
    }

    fn import_bytes_inner(
        &mut self,
        bytes: &[u8],
        clear_partial: Option<&StationId>,
        by_content: bool,
    ) -> Result<ImportReport, StoreError> {
        self.writable()?;
        if crate::auth::SignedFile::is_signed(bytes) {
            return self.import_cast_inner(bytes, clear_partial);
        }
        let (bundle, header) = self.decode_checked(bytes)?;
        self.import_checked(
            &bundle,
            Some(header.dict_id),
            clear_partial,
            by_content,
            false,
        )
    }

    /// A broadcast (`store::cast`) heard whole, over the air or resumed in a
    /// session with `from`: the signature checks against the signer's
    /// registered key before a byte of it is read. Its rows are merged like
    /// any bundle's; its claim is taken only by a station that holds at least
    /// the base it was made against (else it is a slice).
    /// Not through `import_logged`: bytes put together from unauthenticated
    /// pieces must be a signed broadcast, never taken as a plain bundle.
    pub fn import_cast(
        &mut self,
        bytes: &[u8],
        from: &StationId,
    ) -> Result<ImportReport, StoreError> {
        let res = self
            .writable()
            .and_then(|_| self.import_cast_inner(bytes, Some(from)));
        if let Err(e) = &res {
            self.log_refusal(None, e);
        }
        res
    }

    fn import_cast_inner(
        &mut self,
        bytes: &[u8],
        from: Option<&StationId>,
    ) -> Result<ImportReport, StoreError> {
        let f = crate::auth::SignedFile::parse(bytes)
            .ok_or_else(|| StoreError::Malformed("a broadcast shorter than its envelope".into()))?;
        let peer = self
            .peer_by_id(&f.signer)?
            .ok_or(StoreError::UnknownPeer(f.signer))?;
        if from.is_some_and(|s| *s != f.signer) {
            return Err(StoreError::Unauthenticated(format!(
                "a broadcast signed by {} passed on by another station",
                peer.name
            )));
        }
        let Some(key) = peer.key else {
            return Err(StoreError::Unauthenticated(format!(
                "a broadcast from {}, registered here with --no-auth: broadcasts are taken \
                 only from peers registered with their key",
                peer.name
            )));
        };
        let payload = f.verify(&key).map_err(|_| {
            StoreError::Unauthenticated(format!(
                "the broadcast's signature does not match {}'s registered key",
                peer.name
            ))
        })?;
        let (base, inner) = super::cast::parse_cast_payload(payload)?;
        let (mut bundle, header) = self.decode_checked(inner)?;
        if bundle.sender != f.signer
            || bundle.receiver.is_some()
            || bundle.kind != BundleKind::Slice
        {
            return Err(StoreError::Malformed(
                "a broadcast's bundle must be an unaddressed slice by its signer".into(),
            ));
        }
        let ours = self.raw_vector()?;
        let holds_base = base.0.iter().all(|(o, s)| ours.get(o) >= *s);
        if holds_base {
            bundle.kind = BundleKind::Delta;
            bundle.receiver = Some(self.station.id);
        }
        self.import_checked(&bundle, Some(header.dict_id), from, false, holds_base)
    }

    /// Decodes a bundle after checking its header: who it is between, its
    /// schema, its dictionary.
    fn decode_checked(&self, bytes: &[u8]) -> Result<(Bundle, codec::Header), StoreError> {
        let header = codec::peek_header(bytes)?;
        let ends = self.resolve_ends(&header)?;
        self.check_addressing(ends.sender, ends.receiver)?;
        if header.schema != self.fingerprint
            && !header.has_layout
            && self.seen_layout(header.schema)?.is_none()
        {
            return Err(StoreError::SchemaUnknown {
                theirs: header.schema.0,
                ours: self.fingerprint.0,
            });
        }
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
        Ok((bundle, header))
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
        Ok(codec::Ends {
            sender: self.sender_by_key(h.sender_key)?,
            receiver: h.receiver_key.map(|_| me),
        })
    }

    /// The one registered peer whose station key (`codec::station_key`) a
    /// bundle header names.
    /// The registered peer whose `codec::station_key` is `key`, if exactly one.
    pub fn peer_by_key(&self, key: u32) -> Result<Option<super::PeerInfo>, StoreError> {
        match self.sender_by_key(key) {
            Ok(id) => self.peer_by_id(&id),
            Err(StoreError::UnknownSender { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub(super) fn sender_by_key(&self, key: u32) -> Result<StationId, StoreError> {
        let peers: Vec<StationId> = self
            .peers()?
            .into_iter()
            .map(|p| p.id)
            .filter(|id| codec::station_key(id) == key)
            .collect();
        match peers[..] {
            [sender] => Ok(sender),
            _ => Err(StoreError::UnknownSender {
                key,
                matches: peers.len(),
            }),
        }
    }

    /// Merge a bundle in one transaction: all or nothing.
    pub fn import_bundle(&mut self, bundle: &Bundle) -> Result<ImportReport, StoreError> {
        let res = self.import_checked(bundle, None, None, false, false);
        if let Err(e) = &res {
            self.log_refusal(Some(bundle.sender), e);
        }
        res
    }

    pub(super) fn log_refusal(&self, sender: Option<StationId>, e: &StoreError) {
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
            result: if e.is_bundle_fault() {
                "refused"
            } else {
                "error"
            }
            .into(),
            message: e.to_string(),
            ..Default::default()
        });
    }

    fn check_addressing(
        &self,
        sender: StationId,
        receiver: Option<StationId>,
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
        match self.peer_by_id(&sender)? {
            None => return Err(StoreError::UnknownPeer(sender)),
            // Refused before a row is read; the log line and the error tell the sender.
            Some(p) if !p.may_push => return Err(StoreError::PushRefused(p.name)),
            Some(_) => {}
        }
        if self.tables.is_empty() {
            return Err(StoreError::NothingTracked);
        }
        Ok(())
    }

    /// A layout we saw under `fp` (ours now or before, or a peer's).
    pub(super) fn seen_layout(
        &self,
        fp: SchemaFingerprint,
    ) -> Result<Option<Vec<TableLayout>>, StoreError> {
        if fp == self.fingerprint {
            return Ok(Some(self.layout()));
        }
        let text: Option<String> = self
            .conn
            .query_row(
                "SELECT layout FROM rs_schema_seen WHERE fp = ?1",
                [fp.0 as i64],
                |r| r.get(0),
            )
            .optional()?;
        Ok(text.and_then(|t| layout_from_json(&t)))
    }

    /// The sender's layout for this bundle: carried, ours, or seen before.
    fn sender_layout(&self, b: &Bundle) -> Result<Vec<TableLayout>, StoreError> {
        if let Some(l) = &b.layout {
            return Ok(l.clone());
        }
        self.seen_layout(b.schema)?
            .ok_or(StoreError::SchemaUnknown {
                theirs: b.schema.0,
                ours: self.fingerprint.0,
            })
    }

    /// Check the bundle against the sender's layout, then map its tables,
    /// columns and wants onto ours by name.
    fn map_bundle(&self, b: &Bundle, layout: &[TableLayout]) -> Result<Mapped, StoreError> {
        match (b.kind, b.receiver) {
            (BundleKind::Delta, None) => {
                return Err(StoreError::Malformed(
                    "a delta bundle without a receiver".into(),
                ))
            }
            (BundleKind::Slice, _) | (BundleKind::Delta, Some(_)) => {}
        }
        // Content addresses name bases only, never a change or a writer.
        let pseudo = b.sender_vector.0.contains_key(&CONTENT_BASE)
            || b.tables
                .iter()
                .flat_map(|t| &t.rows)
                .any(|r| r.tag.origin == CONTENT_BASE || r.writer == CONTENT_BASE);
        if pseudo {
            return Err(StoreError::Malformed(
                "a change named by a content address".into(),
            ));
        }
        let mut seen = BTreeSet::new();
        let mut seen_bases = BTreeSet::new();
        let mut out = Mapped {
            tables: Vec::new(),
            wants: Vec::new(),
            untracked: 0,
        };
        for t in &b.tables {
            let theirs = layout.get(t.table as usize).ok_or_else(|| {
                StoreError::Malformed(format!("table index {} out of range", t.table))
            })?;
            let n = theirs.columns.len();
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
                        r.uuid, theirs.name
                    )));
                }
                match &r.body {
                    RowBody::Full(v) if v.len() != n => {
                        return Err(StoreError::Malformed(format!(
                            "a row of {} has {} values, the table has {n} synced columns",
                            theirs.name,
                            v.len()
                        )))
                    }
                    RowBody::Delta { mask, values, .. } => {
                        let beyond = n < 64 && (mask >> n) != 0;
                        if beyond || mask.count_ones() as usize != values.len() {
                            return Err(StoreError::Malformed(format!(
                                "a delta row of {} has a mask that does not match its values",
                                theirs.name
                            )));
                        }
                    }
                    RowBody::Full(_) => {}
                }
            }
            let Some(ours) = self.tables.iter().position(|i| i.name == theirs.name) else {
                out.untracked += t.rows.len() as u64;
                continue;
            };
            let info = &self.tables[ours];
            // Where each of their columns goes here (None: we lack it).
            let to_ours: Vec<Option<usize>> = theirs
                .columns
                .iter()
                .map(|c| info.payload.iter().position(|p| &p.name == c))
                .collect();
            let identity = to_ours.len() == info.payload.len()
                && to_ours.iter().enumerate().all(|(i, o)| *o == Some(i));
            let absent: Vec<bool> = info
                .payload
                .iter()
                .map(|p| !theirs.columns.contains(&p.name))
                .collect();
            let rows = if identity {
                t.rows.clone()
            } else {
                t.rows
                    .iter()
                    .map(|r| RowVersion {
                        body: remap_body(&r.body, &to_ours, info.payload.len()),
                        ..r.clone()
                    })
                    .collect()
            };
            out.tables.push(MappedTable {
                table: ours,
                absent,
                rows,
                count: t.rows.len() as u64,
                clash: policy_clash(&info.name, &info.policy.text(), &theirs.policy),
            });
        }
        for w in &b.wants {
            let theirs = layout.get(w.table as usize).ok_or_else(|| {
                StoreError::Malformed(format!("want for table index {}", w.table))
            })?;
            if let Some(i) = self.table_index(&theirs.name) {
                out.wants.push(Want {
                    table: i,
                    row: w.row.clone(),
                });
            }
        }
        Ok(out)
    }

    /// Deltas whose base is named by content (`delta::digest::base_tag`: a
    /// first contact's edits, see `store::reconcile`) are placed on the row
    /// whose base (`rs_base`) that is. Where our row is still that version,
    /// the delta applies to it and the sender saw it; where we changed it
    /// since, the merge rule decides by uuid (ours, or ask for theirs in
    /// full); where no row has that base, the delta stays unplaced and is
    /// asked for by tag. An address two of our rows share places nothing.
    fn place_by_content(&self, mut mapped: Mapped) -> Result<(Mapped, SeenByContent), StoreError> {
        let mut seen = BTreeMap::new();
        let by_content = |r: &RowVersion| {
            r.by_base()
                && matches!(&r.body, RowBody::Delta { base, .. } if base.origin == CONTENT_BASE)
        };
        for tc in &mut mapped.tables {
            if !tc.rows.iter().any(by_content) {
                continue;
            }
            let info = &self.tables[tc.table];
            // address -> (uuid, still the base, the tag to apply against); None: ambiguous.
            let mut by_addr: HashMap<u64, Option<(String, bool, Tag)>> = HashMap::new();
            let mut stmt = self.conn.prepare_cached(
                "SELECT b.uuid, b.digest, r.digest, r.origin, r.seq, b.origin, b.seq FROM rs_base b
                 JOIN rs_row r ON r.tbl = b.tbl AND r.uuid = b.uuid
                 WHERE b.tbl = ?1 AND b.digest IS NOT NULL",
            )?;
            let tag = |origin, seq: i64| Tag {
                origin,
                seq: seq.max(0) as u64,
            };
            let rows = stmt.query_map([&info.name], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Option<i64>>(2)?,
                    tag(station_id_from(r.get(3)?)?, r.get(4)?),
                    tag(station_id_from(r.get(5)?)?, r.get(6)?),
                ))
            })?;
            for row in rows {
                let (uuid, base, now, current, base_tag_here) = row?;
                let addr = base_tag(&info.name, &uuid, base).seq;
                let unchanged = now == Some(base);
                // Changed here since: the delta still applies when our changes
                // since the base touch only columns it carries (`delta_applies`).
                let against = if unchanged { current } else { base_tag_here };
                by_addr
                    .entry(addr)
                    .and_modify(|e| *e = None)
                    .or_insert(Some((uuid, unchanged, against)));
            }
            // A row named both by uuid and by its base would be merged twice.
            let named: BTreeSet<String> = tc
                .rows
                .iter()
                .filter(|r| !r.by_base())
                .map(|r| r.uuid.clone())
                .collect();
            for r in tc.rows.iter_mut() {
                if !by_content(r) {
                    continue;
                }
                let RowBody::Delta { base, .. } = &mut r.body else {
                    continue;
                };
                if let Some(Some((uuid, unchanged, against))) = by_addr.get(&base.seq) {
                    if named.contains(uuid) {
                        return Err(StoreError::Malformed(format!(
                            "row {uuid} of {} appears twice",
                            info.name
                        )));
                    }
                    r.uuid = uuid.clone();
                    *base = *against;
                    if *unchanged {
                        seen.insert((info.name.clone(), uuid.clone()), *against);
                    }
                }
            }
        }
        Ok((mapped, seen))
    }

    /// A peer showed its schema fingerprint (a session's Hello). Our bundles
    /// carry our layout unless it matches ours; when we know the layout behind
    /// it, a peer that gained columns is noticed now, not only when it next
    /// sends a bundle (it may have nothing to send).
    pub fn note_peer_schema(
        &mut self,
        peer: &StationId,
        fp: SchemaFingerprint,
    ) -> Result<(), StoreError> {
        self.set_peer_schema_hint(*peer, fp);
        if self.read_only || self.peer_by_id(peer)?.is_none() {
            return Ok(());
        }
        if let Some(layout) = self.seen_layout(fp)? {
            let tx = super::write_tx(&self.conn)?;
            self.note_sender_schema(&tx, peer, fp, &layout)?;
            tx.commit()?;
        }
        Ok(())
    }

    /// A clash between our policy for `info` and the one `peer` last showed.
    fn peer_policy_clash(
        &self,
        tx: &Connection,
        peer: &StationId,
        info: &TableInfo,
    ) -> Result<Option<String>, StoreError> {
        let fp: Option<i64> = tx
            .query_row(
                "SELECT schema FROM rs_peer WHERE uuid = ?1",
                [peer.0.to_vec()],
                |r| r.get(0),
            )
            .optional()?
            .flatten();
        let Some(layout) =
            fp.and_then(|f| self.seen_layout(SchemaFingerprint(f as u32)).ok().flatten())
        else {
            return Ok(None);
        };
        Ok(layout
            .iter()
            .find(|t| t.name == info.name)
            .and_then(|t| policy_clash(&info.name, &info.policy.text(), &t.policy)))
    }

    /// Remember the sender's schema; when its tables gained columns we have,
    /// it gets those tables in full (their values never reached it).
    fn note_sender_schema(
        &self,
        tx: &Connection,
        sender: &StationId,
        fp: SchemaFingerprint,
        layout: &[TableLayout],
    ) -> Result<(), StoreError> {
        let key = sender.0.to_vec();
        let before: Option<i64> = tx
            .query_row("SELECT schema FROM rs_peer WHERE uuid = ?1", [&key], |r| {
                r.get(0)
            })
            .optional()?
            .flatten();
        if before == Some(fp.0 as i64) {
            return Ok(());
        }
        tx.execute(
            "INSERT OR IGNORE INTO rs_schema_seen (fp, layout) VALUES (?1, ?2)",
            params![fp.0 as i64, layout_to_json(layout)],
        )?;
        tx.execute(
            "UPDATE rs_peer SET schema = ?1 WHERE uuid = ?2",
            params![fp.0 as i64, key],
        )?;
        let Some(old) =
            before.and_then(|f| self.seen_layout(SchemaFingerprint(f as u32)).ok().flatten())
        else {
            return Ok(());
        };
        for info in &self.tables {
            let had: &[String] = old
                .iter()
                .find(|t| t.name == info.name)
                .map(|t| &t.columns[..])
                .unwrap_or(&[]);
            let Some(has) = layout.iter().find(|t| t.name == info.name) else {
                continue;
            };
            let gained: Vec<&String> = has
                .columns
                .iter()
                .filter(|c| !had.contains(c) && info.payload.iter().any(|p| &p.name == *c))
                .collect();
            if !gained.is_empty() {
                tx.execute(
                    "INSERT OR REPLACE INTO rs_peer_backfill (peer, tbl, sent_at) VALUES (?1, ?2, NULL)",
                    params![key, info.name],
                )?;
                let names: Vec<&str> = gained.iter().map(|s| s.as_str()).collect();
                tx.execute(
                    "INSERT INTO rs_log (time, peer, tbl, direction, result, message)
                     VALUES (?1, (SELECT name FROM rs_peer WHERE uuid = ?2), ?3, 'local', 'ok', ?4)",
                    params![
                        now_text(),
                        key,
                        info.name,
                        format!(
                            "the peer's {} gained column(s) {}: it gets the table in full once",
                            info.name,
                            names.join(", ")
                        )
                    ],
                )?;
            }
        }
        Ok(())
    }

    /// `cast`: a broadcast whose claim this station takes (see `import_cast`):
    /// applied as a delta, but it says nothing of the sender's wants.
    fn import_checked(
        &mut self,
        b: &Bundle,
        dict_id: Option<u32>,
        clear_partial: Option<&StationId>,
        by_content: bool,
        cast: bool,
    ) -> Result<ImportReport, StoreError> {
        self.writable()?;
        self.check_addressing(b.sender, b.receiver)?;
        let layout = self.sender_layout(b)?;
        let mapped = self.map_bundle(b, &layout)?;
        let (mapped, seen_by_content) = self.place_by_content(mapped)?;
        let peer = self
            .peer_by_id(&b.sender)?
            .ok_or(StoreError::UnknownPeer(b.sender))?;
        // A peer pushes only the tables shared with it. Its bundle is refused
        // whole and the sender told why: its operator sets the same list there.
        if let Some(list) = &peer.tables {
            if let Some(tc) = mapped
                .tables
                .iter()
                .find(|tc| !tc.rows.is_empty() && !list.contains(&self.tables[tc.table].name))
            {
                return Err(StoreError::TableRefused {
                    peer: peer.name.clone(),
                    table: self.tables[tc.table].name.clone(),
                });
            }
        }
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
        let tx = super::write_tx(&self.conn)?;
        tx.execute("UPDATE rs_ctl SET applying = 1", [])?;
        self.note_sender_schema(&tx, &b.sender, b.schema, &layout)?;
        // A bundle made after the one we could not place (its vector covers the
        // tag) carries the row again: in full if the sender read our want, else
        // as before, when the want is recorded again below.
        if b.kind == BundleKind::Delta && !cast {
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
            untracked: mapped.untracked,
            ..Default::default()
        };
        let now = now_text();
        let ctx = RowCtx {
            tx: &tx,
            sender: b.sender,
            sender_vector: &b.sender_vector,
            peer: &peer.name,
            now: &now,
            seen_by_content: &BTreeMap::new(),
        };
        // Quarantined versions came with other bundles: nothing here was seen for them.
        rep.released = self.retry_quarantine(&ctx)?;
        let ctx = RowCtx {
            seen_by_content: &seen_by_content,
            ..ctx
        };
        let mut wanted_from_sender: BTreeSet<(String, String)> = BTreeSet::new();
        {
            let mut stmt = tx.prepare("SELECT tbl, uuid FROM rs_want WHERE peer = ?1")?;
            for w in stmt.query_map([&sender_key], |r| Ok((r.get(0)?, r.get(1)?)))? {
                wanted_from_sender.insert(w?);
            }
        }
        // Rows whose version here beat the sender's: the sender gets them in full.
        // With the columns the losing version changed, when it came as a delta.
        let mut lost_at_sender: Vec<(String, String, Option<u64>)> = Vec::new();
        let peer_before = dump_peer_state(&tx, &sender_key)?;
        let mut clock: i64 = tx.query_row("SELECT seq FROM rs_clock", [], |r| r.get(0))?;
        for tc in &mapped.tables {
            let info = &self.tables[tc.table];
            let (mut applied, mut conflicts) = (0u64, 0u64);
            for row in &tc.rows {
                let key = (info.name.clone(), row.uuid.clone());
                let is_wanted = wanted_from_sender.contains(&key);
                if by_content && !is_wanted {
                    // Reconciled: the same version with other values is one side
                    // missing columns (a schema upgrade): fill in what we lack only.
                    if let RowBody::Full(values) = &row.body {
                        match repair_same_version(&tx, info, &tc.absent, row, values, me, true)? {
                            Some(true) => {
                                rep.repaired += 1;
                                continue;
                            }
                            Some(false) => {
                                rep.skipped += 1;
                                continue;
                            }
                            None => {}
                        }
                    }
                } else if our_vector.covers(&row.tag) && !is_wanted {
                    // The same version again (a backfill after a schema upgrade):
                    // fill in what this station could not hold before.
                    if let RowBody::Full(values) = &row.body {
                        if repair_same_version(&tx, info, &tc.absent, row, values, me, false)?
                            == Some(true)
                        {
                            rep.repaired += 1;
                        }
                    }
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
                match merge_row(
                    &ctx,
                    info,
                    &tc.absent,
                    row,
                    local.as_ref(),
                    tc.clash.as_deref(),
                )? {
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
                        let mask = match &row.body {
                            RowBody::Delta { mask, .. } => Some(*mask),
                            RowBody::Full(_) => None,
                        };
                        lost_at_sender.push((info.name.clone(), row.uuid.clone(), mask));
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
                    Outcome::Quarantined => rep.quarantined += 1,
                }
                if is_wanted {
                    tx.execute(
                        "DELETE FROM rs_want WHERE peer = ?1 AND tbl = ?2 AND uuid = ?3",
                        params![sender_key, info.name, row.uuid],
                    )?;
                }
            }
            rep.per_table
                .push((info.name.clone(), tc.count, applied, conflicts));
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
        }
        if b.kind == BundleKind::Delta && !cast {
            // The bundle's wants are the sender's whole current list.
            tx.execute(
                "DELETE FROM rs_peer_want WHERE peer = ?1 AND kind IN ('asked', 'unplaced')",
                [&sender_key],
            )?;
            for w in &mapped.wants {
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
        for (t, u, mask) in &lost_at_sender {
            tx.execute(
                "INSERT INTO rs_peer_want (peer, tbl, uuid, kind, mask) VALUES (?1, ?2, ?3, 'lost', ?4)
                 ON CONFLICT (peer, tbl, uuid) DO UPDATE SET mask = CASE
                   WHEN rs_peer_want.mask IS NULL OR excluded.mask IS NULL THEN NULL
                   ELSE rs_peer_want.mask | excluded.mask END
                 WHERE rs_peer_want.kind = 'lost'",
                params![sender_key, t, u, mask.map(|m| m as i64)],
            )?;
        }
        if let Some(d) = dict_id {
            tx.execute(
                "UPDATE rs_peer SET dict_id = ?1 WHERE uuid = ?2",
                params![d as i64, sender_key],
            )?;
        }
        // A bundle that brings nothing new (e.g. the same one twice) changes nothing.
        let news = rep.applied + rep.kept_local + rep.wanted + rep.retagged + rep.repaired > 0
            || dump_peer_state(&tx, &sender_key)? != peer_before;
        if news {
            tx.execute(
                "UPDATE rs_peer SET last_sync = ?1, sync_count = sync_count + 1 WHERE uuid = ?2",
                params![now, sender_key],
            )?;
        }
        let kind = match b.kind {
            _ if cast => "broadcast",
            BundleKind::Delta => "delta",
            BundleKind::Slice if b.receiver.is_none() && b.layout.is_none() => "broadcast",
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
        let mut extra = String::new();
        if rep.quarantined > 0 {
            extra += &format!(", {} quarantined (see `radiosync status`)", rep.quarantined);
        }
        if rep.released > 0 {
            extra += &format!(", {} released from quarantine", rep.released);
        }
        if rep.repaired > 0 {
            extra += &format!(", {} filled in", rep.repaired);
        }
        if rep.untracked > 0 {
            extra += &format!(", {} of tables not tracked here", rep.untracked);
        }
        log.execute(params![
            now,
            peer.name,
            Option::<String>::None,
            rep.applied as i64 + rep.skipped as i64 + rep.kept_local as i64 + rep.wanted as i64,
            rep.conflicts as i64,
            format!(
                "{kind}: {} applied, {} already held, {} kept local, {} asked in full, {} re-announced{extra}",
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

    /// Try the quarantined rows again (the cause may be fixed); returns how
    /// many went in.
    fn retry_quarantine(&self, ctx: &RowCtx<'_>) -> Result<u64, StoreError> {
        // (table, the version without its values, the values as JSON)
        let parked: Vec<Parked> = {
            let mut stmt = ctx.tx.prepare(
                "SELECT tbl, uuid, origin, seq, writer, modified_on, vals, peer FROM rs_quarantine ORDER BY rowid",
            )?;
            let v = stmt
                .query_map([], |r| {
                    Ok(Parked {
                        table: r.get(0)?,
                        row: RowVersion {
                            uuid: r.get(1)?,
                            tag: Tag {
                                origin: station_id_from(r.get(2)?)?,
                                seq: r.get::<_, i64>(3)?.max(0) as u64,
                            },
                            writer: station_id_from(r.get(4)?)?,
                            modified_on: r.get(5)?,
                            body: RowBody::Full(Vec::new()),
                        },
                        vals: r.get(6)?,
                        peer: station_id_from(r.get(7)?)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            v
        };
        let mut released = 0;
        for Parked {
            table: tbl,
            mut row,
            vals,
            peer,
        } in parked
        {
            let Some(info) = self.tables.iter().find(|t| t.name == tbl) else {
                continue;
            };
            let obj: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(&vals).unwrap_or_default();
            let mut absent = Vec::with_capacity(info.payload.len());
            let mut values = Vec::with_capacity(info.payload.len());
            for c in &info.payload {
                match obj.get(&c.name).and_then(value_from_json) {
                    Some(v) => {
                        absent.push(false);
                        values.push(v);
                    }
                    None => {
                        absent.push(true);
                        values.push(Value::Null);
                    }
                }
            }
            row.body = RowBody::Full(values);
            let local = read_local(ctx.tx, info, &row.uuid, self.station.id)?;
            let clash = self.peer_policy_clash(ctx.tx, &peer, info)?;
            // Still refused: merge_row parked it again (logged only if the reason changed).
            if !matches!(
                merge_row(ctx, info, &absent, &row, local.as_ref(), clash.as_deref())?,
                Outcome::Quarantined
            ) {
                ctx.tx.execute(
                    "DELETE FROM rs_quarantine WHERE tbl = ?1 AND uuid = ?2",
                    params![tbl, row.uuid],
                )?;
                released += 1;
            }
        }
        Ok(released)
    }
}

/// Why a table does not sync with a peer whose policy for it differs.
fn policy_clash(table: &str, ours: &str, theirs: &str) -> Option<String> {
    (ours != theirs).then(|| {
        format!(
            "the stations' conflict policies for {table} differ (here {ours}, there {theirs}), \
             so they could pick different winners: set the same one on both with \
             `radiosync track {table} --conflict POLICY`; the row is retried then"
        )
    })
}

fn remap_body(body: &RowBody, to_ours: &[Option<usize>], n: usize) -> RowBody {
    match body {
        RowBody::Full(vals) => {
            let mut out = vec![Value::Null; n];
            for (j, v) in vals.iter().enumerate() {
                if let Some(Some(i)) = to_ours.get(j) {
                    out[*i] = v.clone();
                }
            }
            RowBody::Full(out)
        }
        RowBody::Delta { base, mask, values } => {
            let mut picked: Vec<(usize, Value)> = Vec::new();
            let mut it = values.iter();
            for (j, dest) in to_ours.iter().enumerate().take(64) {
                if mask & (1u64 << j) != 0 {
                    let v = it.next().cloned().unwrap_or(Value::Null);
                    if let Some(i) = dest.filter(|i| *i < 64) {
                        picked.push((i, v));
                    }
                }
            }
            picked.sort_by_key(|(i, _)| *i);
            RowBody::Delta {
                base: *base,
                mask: picked.iter().fold(0, |m, (i, _)| m | 1u64 << i),
                values: picked.into_iter().map(|(_, v)| v).collect(),
            }
        }
    }
}

fn layout_to_json(layout: &[TableLayout]) -> String {
    serde_json::Value::Array(
        layout
            .iter()
            .map(
                |t| serde_json::json!({ "name": t.name, "columns": t.columns, "policy": t.policy }),
            )
            .collect(),
    )
    .to_string()
}

pub(super) fn layout_json(layout: &[TableLayout]) -> String {
    layout_to_json(layout)
}

fn layout_from_json(text: &str) -> Option<Vec<TableLayout>> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    v.as_array()?
        .iter()
        .map(|t| {
            Some(TableLayout {
                name: t.get("name")?.as_str()?.to_string(),
                columns: t
                    .get("columns")?
                    .as_array()?
                    .iter()
                    .map(|c| c.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()?,
                policy: t
                    .get("policy")
                    .and_then(|p| p.as_str())
                    .unwrap_or("newer")
                    .to_string(),
            })
        })
        .collect()
}

/// A covered full row whose version we hold under the same tag: write the
/// columns that differ (a column this station lacked when it first got the
/// row; with `only_nulls`, only where ours is NULL). Not a new version: no
/// tag, no history. None: not the same version; Some(changed) otherwise.
fn repair_same_version(
    tx: &Connection,
    info: &TableInfo,
    absent: &[bool],
    row: &RowVersion,
    values: &[Value],
    me: StationId,
    only_nulls: bool,
) -> Result<Option<bool>, StoreError> {
    let Some(l) = read_local(tx, info, &row.uuid, me)? else {
        return Ok(None);
    };
    if l.gone || l.tag != Some(row.tag) || l.modified_on != row.modified_on {
        return Ok(None);
    }
    let mut merged = l.values.clone();
    for (i, v) in values.iter().enumerate() {
        if !absent[i] && (!only_nulls || merged[i] == Value::Null) {
            merged[i] = v.clone();
        }
    }
    let mask = diff_mask(&l.values, &merged);
    if mask == 0 {
        return Ok(Some(false));
    }
    update_row(tx, info, &row.uuid, &row.modified_on, &merged, mask)?;
    set_digest(tx, info, &row.uuid, &row.modified_on, Some(&merged))?;
    Ok(Some(true))
}

/// The row's digest after radiosync wrote it (None: not known exactly, the
/// next capture check computes it).
fn set_digest(
    tx: &Connection,
    info: &TableInfo,
    uuid: &str,
    modified_on: &str,
    values: Option<&[Value]>,
) -> Result<(), StoreError> {
    let d = values.map(|v| {
        row_digest(
            uuid,
            modified_on,
            info.payload.iter().map(|c| c.name.as_str()).zip(v.iter()),
        )
    });
    tx.prepare_cached("UPDATE rs_row SET digest = ?1 WHERE tbl = ?2 AND uuid = ?3")?
        .execute(params![d, info.name, uuid])?;
    if let Some(d) = d {
        // The first version of a row this station holds from elsewhere is its
        // base (`rs_base`); its own writes (the JSON API's) are edits.
        tx.prepare_cached(
            "INSERT OR IGNORE INTO rs_base (tbl, uuid, origin, seq, digest)
             SELECT tbl, uuid, origin, seq, ?1 FROM rs_row WHERE tbl = ?2 AND uuid = ?3
               AND origin != (SELECT uuid FROM rs_station)",
        )?
        .execute(params![d, info.name, uuid])?;
    }
    if let (Some(d), Some(v)) = (d, values) {
        super::fingerprint::record_row(tx, info, uuid, d, v)?;
    }
    Ok(())
}

/// Plan one row with the pure merge rule and carry the plan out, inside a
/// savepoint: a row the database refuses is quarantined, the rest goes on.
fn merge_row(
    ctx: &RowCtx<'_>,
    info: &TableInfo,
    absent: &[bool],
    row: &RowVersion,
    local: Option<&LocalRow>,
    clash: Option<&str>,
) -> Result<Outcome, StoreError> {
    let tx = ctx.tx;
    let body = match &row.body {
        RowBody::Full(_) => IncomingBody::Full,
        RowBody::Delta { base, mask, .. } => IncomingBody::Delta {
            // A tombstone with its last values is a base like any other.
            applies: match local {
                Some(l) if !l.partial => delta_applies(tx, info, &row.uuid, l.tag, *base, *mask)?,
                _ => false,
            },
        },
    };
    let seen_here = match local {
        Some(l) => {
            l.tag == Some(row.tag)
                || history(tx, &info.name, &row.uuid)?
                    .iter()
                    .any(|(t, _)| *t == row.tag)
        }
        None => false,
    };
    let side = local.map(|l| LocalSide {
        key: VersionKey {
            modified_on: &l.modified_on,
            writer: l.writer,
        },
        seen_by_sender: l.tag.is_some_and(|t| ctx.sender_vector.covers(&t))
            // A delta against our version: the sender built on it.
            || matches!(&row.body, RowBody::Delta { base, .. } if Some(*base) == l.tag)
            || (l.tag.is_some()
                && ctx
                    .seen_by_content
                    .get(&(info.name.clone(), row.uuid.clone()))
                    .copied()
                    == l.tag),
        untagged: l.tag.is_none(),
        incoming_seen_here: seen_here,
    });
    let incoming = VersionKey {
        modified_on: &row.modified_on,
        writer: row.writer,
    };
    let new_values = |l: Option<&LocalRow>| -> Vec<Value> {
        match &row.body {
            RowBody::Full(v) => match l {
                // Columns the sender lacks keep our values.
                Some(l) => v
                    .iter()
                    .zip(&l.values)
                    .zip(absent)
                    .map(|((new, old), a)| if *a { old.clone() } else { new.clone() })
                    .collect(),
                None => v.clone(),
            },
            RowBody::Delta { mask, values, .. } => {
                let mut out = l.map(|l| l.values.clone()).unwrap_or_default();
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
        }
    };
    // Policies differ between the stations for this table: neither decides.
    if let Some(why) = clash {
        let values = match (&row.body, body) {
            (RowBody::Full(_), _) | (_, IncomingBody::Delta { applies: true }) => {
                new_values(local.filter(|l| !l.partial))
            }
            _ => vec![Value::Null; info.payload.len()],
        };
        quarantine(ctx, info, absent, row, &values, why)?;
        return Ok(Outcome::Quarantined);
    }
    let preferred = match (
        local,
        info.policy
            .prefers(side.map(|s| s.key).unwrap_or(incoming), incoming),
    ) {
        (None, _) => Preference::Neither,
        (Some(_), Some(p)) => p,
        (Some(l), None) => {
            // sql: needs the incoming version whole.
            if matches!(body, IncomingBody::Delta { applies: false }) || l.partial {
                return Ok(if local.is_some_and(|l| !l.gone) {
                    Outcome::Want
                } else {
                    Outcome::Quarantined
                });
            }
            let Policy::Sql(expr) = &info.policy else {
                unreachable!("only sql: needs the store")
            };
            sql_prefers(
                tx,
                info,
                expr,
                (&row.uuid, &l.modified_on, &l.values),
                (&row.uuid, &row.modified_on, &new_values(Some(l))),
            )?
        }
    };
    let decided = plan_with(side, incoming, body, preferred);
    // The rule that picked the winner, kept with a conflict.
    let rule = if preferred == Preference::Neither {
        "newer".to_string()
    } else {
        info.policy.text()
    };
    match decided {
        RowPlan::Insert | RowPlan::Overwrite { .. } => {
            let conflict = matches!(decided, RowPlan::Overwrite { conflict: true });
            let live_local = local.filter(|l| !l.gone);
            let values = new_values(local.filter(|l| !l.partial));
            tx.execute_batch("SAVEPOINT rs_row_apply")?;
            let written = (|| -> Result<(), StoreError> {
                match live_local {
                    Some(l) => {
                        let mask = diff_mask(&l.values, &values);
                        update_row(tx, info, &row.uuid, &row.modified_on, &values, mask)?;
                        set_row_tag(tx, &info.name, &row.uuid, row.tag, row.writer)?;
                        push_history(tx, &info.name, &row.uuid, row.tag, mask)?;
                        set_digest(tx, info, &row.uuid, &row.modified_on, Some(&values))?;
                    }
                    None => {
                        insert_row(tx, info, row, &values, absent)?;
                        tx.prepare_cached("DELETE FROM rs_tomb WHERE tbl = ?1 AND uuid = ?2")?
                            .execute(params![info.name, row.uuid])?;
                        tx.prepare_cached("DELETE FROM rs_tomb_val WHERE tbl = ?1 AND uuid = ?2")?
                            .execute(params![info.name, row.uuid])?;
                        set_row_tag(tx, &info.name, &row.uuid, row.tag, row.writer)?;
                        push_history(tx, &info.name, &row.uuid, row.tag, u64::MAX)?;
                        let exact = !absent.iter().any(|a| *a);
                        set_digest(
                            tx,
                            info,
                            &row.uuid,
                            &row.modified_on,
                            exact.then_some(&values[..]),
                        )?;
                    }
                }
                Ok(())
            })();
            match written {
                Ok(()) => {
                    tx.execute_batch("RELEASE rs_row_apply")?;
                }
                Err(e) => {
                    tx.execute_batch("ROLLBACK TO rs_row_apply; RELEASE rs_row_apply")?;
                    return match is_row_fault(&e) {
                        Some(why) => {
                            quarantine(
                                ctx,
                                info,
                                absent,
                                row,
                                &values,
                                &format!("this database refused it: {why}"),
                            )?;
                            Ok(Outcome::Quarantined)
                        }
                        None => Err(e),
                    };
                }
            }
            if conflict {
                if let Some(l) = local {
                    record_conflict(
                        tx,
                        info,
                        &row.uuid,
                        ctx.peer,
                        ctx.now,
                        "local",
                        (
                            &l.modified_on,
                            l.writer,
                            l.values.iter().enumerate().collect(),
                        ),
                        (&row.modified_on, row.writer),
                        &rule,
                    )?;
                }
            }
            Ok(Outcome::Applied { conflict })
        }
        RowPlan::Keep {
            conflict,
            reannounce,
        } => {
            let l = local.expect("keep implies a local row");
            if conflict {
                let loser: Vec<(usize, &Value)> = match &row.body {
                    RowBody::Full(v) => v.iter().enumerate().filter(|(i, _)| !absent[*i]).collect(),
                    RowBody::Delta { mask, values, .. } => (0..info.payload.len().min(64))
                        .filter(|i| mask & (1u64 << i) != 0)
                        .zip(values.iter())
                        .collect(),
                };
                record_conflict(
                    tx,
                    info,
                    &row.uuid,
                    ctx.peer,
                    ctx.now,
                    "remote",
                    (&row.modified_on, row.writer, loser),
                    (&l.modified_on, l.writer),
                    &rule,
                )?;
            }
            Ok(Outcome::Kept {
                conflict,
                reannounce,
            })
        }
        RowPlan::Same => Ok(Outcome::Same),
        RowPlan::AskFull => Ok(Outcome::Want),
        RowPlan::Hold(reason) => {
            let values = new_values(local.filter(|l| !l.gone));
            let values = if values.len() == info.payload.len() {
                values
            } else {
                vec![Value::Null; info.payload.len()]
            };
            quarantine(ctx, info, absent, row, &values, reason.describe())?;
            Ok(Outcome::Quarantined)
        }
    }
}

fn quarantine(
    ctx: &RowCtx<'_>,
    info: &TableInfo,
    absent: &[bool],
    row: &RowVersion,
    values: &[Value],
    reason: &str,
) -> Result<(), StoreError> {
    let mut obj = serde_json::Map::new();
    for (i, c) in info.payload.iter().enumerate() {
        if !absent.get(i).copied().unwrap_or(true) {
            if let Some(v) = values.get(i) {
                obj.insert(c.name.clone(), value_json(v));
            }
        }
    }
    let fresh: Option<String> = ctx
        .tx
        .query_row(
            "SELECT reason FROM rs_quarantine WHERE tbl = ?1 AND uuid = ?2",
            params![info.name, row.uuid],
            |r| r.get(0),
        )
        .optional()?;
    ctx.tx.execute(
        "INSERT OR REPLACE INTO rs_quarantine (tbl, uuid, peer, origin, seq, writer, modified_on,
           vals, reason, since) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            info.name,
            row.uuid,
            ctx.sender.0.to_vec(),
            row.tag.origin.0.to_vec(),
            row.tag.seq as i64,
            row.writer.0.to_vec(),
            row.modified_on,
            serde_json::Value::Object(obj).to_string(),
            reason,
            ctx.now
        ],
    )?;
    if fresh.as_deref() != Some(reason) {
        ctx.tx.execute(
            "INSERT INTO rs_log (time, peer, tbl, direction, result, message)
             VALUES (?1, ?2, ?3, 'in', 'quarantined', ?4)",
            params![
                ctx.now,
                ctx.peer,
                info.name,
                format!("row {} quarantined: {reason}", row.uuid)
            ],
        )?;
    }
    Ok(())
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
    rule: &str,
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
           winner_modified_on, winner_writer, loser_values, policy)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
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
            serde_json::Value::Object(obj).to_string(),
            rule
        ],
    )?;
    Ok(())
}

/// An `sql:` policy's preference: the expression is evaluated with (a, b) =
/// (local, incoming) and the other way round; a version is preferred only
/// when the expression holds for it and not for the other, so every station
/// reaches the same verdict whichever version it holds.
pub(super) fn sql_prefers(
    conn: &Connection,
    info: &TableInfo,
    expr: &str,
    local: (&str, &str, &[Value]),
    incoming: (&str, &str, &[Value]),
) -> Result<Preference, StoreError> {
    let a_wins =
        |a: (&str, &str, &[Value]), b: (&str, &str, &[Value])| -> Result<bool, StoreError> {
            let sql = sql_policy_statement(info, expr);
            let mut stmt = conn.prepare_cached(&sql)?;
            let mut args: Vec<rusqlite::types::Value> = Vec::new();
            for side in [a, b] {
                args.push(side.0.to_string().into());
                args.push(side.1.to_string().into());
                args.extend(side.2.iter().map(value_to_sql));
            }
            Ok(stmt.query_row(rusqlite::params_from_iter(args), |r| r.get::<_, bool>(0))?)
        };
    Ok(match (a_wins(local, incoming)?, a_wins(incoming, local)?) {
        (true, false) => Preference::Local,
        (false, true) => Preference::Incoming,
        _ => Preference::Neither,
    })
}

/// `SELECT (expr) <> 0 FROM (SELECT ? AS uuid, ? AS modified_on, ...) a, (...) b`.
pub(super) fn sql_policy_statement(info: &TableInfo, expr: &str) -> String {
    let cols: Vec<&str> = ["uuid", "modified_on"]
        .into_iter()
        .chain(info.payload.iter().map(|c| c.name.as_str()))
        .collect();
    let side = |first: usize| {
        cols.iter()
            .enumerate()
            .map(|(i, c)| format!("?{} AS {}", first + i, quote_ident(c)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "SELECT coalesce(({expr}), 0) <> 0 FROM (SELECT {}) AS a, (SELECT {}) AS b",
        side(1),
        side(1 + cols.len())
    )
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

/// Insert a row from a peer; columns the sender lacks take the table's defaults.
fn insert_row(
    tx: &Connection,
    info: &TableInfo,
    row: &RowVersion,
    values: &[Value],
    absent: &[bool],
) -> Result<(), StoreError> {
    let qt = quote_ident(&info.name);
    let mut cols = vec!["uuid".to_string(), "modified_on".to_string()];
    let mut args: Vec<rusqlite::types::Value> =
        vec![row.uuid.clone().into(), row.modified_on.clone().into()];
    for ((c, v), a) in info.payload.iter().zip(values).zip(absent) {
        if !a {
            cols.push(quote_ident(&c.name));
            args.push(value_to_sql(v));
        }
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

    #[test]
    fn json_values_round_trip_exactly() {
        for v in [
            Value::Null,
            Value::Integer(-7),
            Value::Real(1.0),
            Value::Real(-0.0),
            Value::Real(f64::NAN),
            Value::Text("x".into()),
            Value::Blob(vec![0, 255, 16]),
        ] {
            assert_eq!(value_from_json(&value_json(&v)), Some(v));
        }
    }

    #[test]
    fn remapped_delta_keeps_only_shared_columns() {
        let t = Tag {
            origin: StationId([1; 16]),
            seq: 3,
        };
        // Theirs: a, new, z; ours: a, z.
        let body = RowBody::Delta {
            base: t,
            mask: 0b111,
            values: vec![Value::Integer(1), Value::Integer(2), Value::Integer(3)],
        };
        let out = remap_body(&body, &[Some(0), None, Some(1)], 2);
        assert_eq!(
            out,
            RowBody::Delta {
                base: t,
                mask: 0b11,
                values: vec![Value::Integer(1), Value::Integer(3)]
            }
        );
        let full = RowBody::Full(vec![
            Value::Integer(1),
            Value::Integer(2),
            Value::Integer(3),
        ]);
        assert_eq!(
            remap_body(&full, &[Some(1), None, Some(0)], 2),
            RowBody::Full(vec![Value::Integer(3), Value::Integer(1)])
        );
    }
}
