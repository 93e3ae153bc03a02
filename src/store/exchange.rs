//! What a peer lacks (export) and the merge of what arrives (import).

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::{params, Connection, OptionalExtension};

use super::schema::{quote_ident, TableInfo};
use super::{station_id_from, value_from_ref, LogEntry, Store, StoreError};
use crate::codec;
use crate::delta::digest::{base_tag, CONTENT_BASE};
use crate::delta::{
    Bundle, BundleKind, RowBody, RowRef, RowVersion, StationId, TableChanges, TableLayout, Tag,
    Value, VersionVector, Want,
};

/// What one import did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// The station that sent the bundle.
    pub sender: StationId,
    /// Its name here.
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
    /// Rows this database refused (a constraint, an unreadable time), kept aside.
    pub quarantined: u64,
    /// Quarantined rows that went in this time.
    pub released: u64,
    /// Rows held in the same version whose columns we lacked, filled in.
    pub repaired: u64,
    /// Rows of tables this station does not track.
    pub untracked: u64,
}

/// An encoded export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exported {
    /// The bundle bytes.
    pub bytes: Vec<u8>,
    /// Row versions in it.
    pub rows: u64,
    /// Rows it asks the peer for in full.
    pub wants: u64,
}

/// A row as it is now in this store.
pub(super) struct LocalRow {
    pub tag: Option<Tag>,
    pub writer: StationId,
    pub modified_on: String,
    pub values: Vec<Value>,
    /// Hard-deleted here: only the tombstone remains.
    pub gone: bool,
    /// Some values are unknown (a tombstone made by a scan after the fact).
    pub partial: bool,
}

fn select_payload(info: &TableInfo) -> String {
    info.payload
        .iter()
        .map(|c| format!("t.{}", quote_ident(&c.name)))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn payload_prefix(info: &TableInfo) -> String {
    let p = select_payload(info);
    if p.is_empty() {
        String::new()
    } else {
        format!(", {p}")
    }
}

pub(super) fn read_local(
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
                gone: false,
                partial: false,
            })
        })
        .optional()?;
    if row.is_some() {
        return Ok(row);
    }
    read_tombstone(conn, info, uuid)
}

/// A hard-deleted row as its tombstone keeps it: the last values (NULL where
/// unknown) with `deleted` set, at the time of deletion.
pub(super) fn read_tombstone(
    conn: &Connection,
    info: &TableInfo,
    uuid: &str,
) -> Result<Option<LocalRow>, StoreError> {
    let head = conn
        .prepare_cached(
            "SELECT b.modified_on, b.deleted, r.origin, r.seq, r.writer FROM rs_tomb b
             JOIN rs_row r ON r.tbl = b.tbl AND r.uuid = b.uuid WHERE b.tbl = ?1 AND b.uuid = ?2",
        )?
        .query_row(params![info.name, uuid], |r| {
            Ok((
                text_of(value_from_ref(r.get_ref(0)?)),
                value_from_ref(r.get_ref(1)?),
                Tag {
                    origin: station_id_from(r.get(2)?)?,
                    seq: r.get::<_, i64>(3)?.max(0) as u64,
                },
                station_id_from(r.get(4)?)?,
            ))
        })
        .optional()?;
    let Some((modified_on, deleted, tag, writer)) = head else {
        return Ok(None);
    };
    let mut values = vec![Value::Null; info.payload.len()];
    let mut known = vec![false; info.payload.len()];
    let mut stmt =
        conn.prepare_cached("SELECT col, v FROM rs_tomb_val WHERE tbl = ?1 AND uuid = ?2")?;
    let mut rows = stmt.query(params![info.name, uuid])?;
    while let Some(r) = rows.next()? {
        let col: String = r.get(0)?;
        if let Some(i) = info.payload.iter().position(|c| c.name == col) {
            values[i] = value_from_ref(r.get_ref(1)?);
            known[i] = true;
        }
    }
    let deleted_at = info.payload.iter().position(|c| c.name == "deleted");
    let partial = known
        .iter()
        .enumerate()
        .any(|(i, k)| !k && Some(i) != deleted_at);
    if let Some(i) = info.payload.iter().position(|c| c.name == "deleted") {
        values[i] = deleted;
    }
    Ok(Some(LocalRow {
        tag: Some(tag),
        writer,
        modified_on,
        values,
        gone: true,
        partial,
    }))
}

/// modified_on as text; other storage classes in their SQL text form.
pub(super) fn text_of(v: Value) -> String {
    match v {
        Value::Text(t) => t,
        Value::Integer(i) => i.to_string(),
        Value::Real(f) => f.to_string(),
        Value::Null => String::new(),
        Value::Blob(b) => String::from_utf8_lossy(&b).into_owned(),
    }
}

pub(super) fn history(
    conn: &Connection,
    table: &str,
    uuid: &str,
) -> Result<Vec<(Tag, u64)>, StoreError> {
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
pub(super) fn row_by_tag(
    conn: &Connection,
    table: &str,
    tag: Tag,
) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT uuid FROM rs_hist WHERE tbl = ?1 AND origin = ?2 AND seq = ?3 LIMIT 1",
        )?
        .query_row(params![table, tag.origin.0.to_vec(), tag.seq as i64], |r| {
            r.get(0)
        })
        .optional()?)
}

pub(super) fn push_history(
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

pub(super) fn set_row_tag(
    conn: &Connection,
    table: &str,
    uuid: &str,
    tag: Tag,
    writer: StationId,
) -> Result<(), StoreError> {
    // Exports find rows by origin: every origin a row carries is listed.
    conn.prepare_cached("INSERT OR IGNORE INTO rs_origin (origin) VALUES (?1)")?
        .execute([tag.origin.0.to_vec()])?;
    conn.prepare_cached(
        "INSERT INTO rs_row (tbl, uuid, origin, seq, writer) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (tbl, uuid) DO UPDATE SET origin = excluded.origin, seq = excluded.seq,
           writer = excluded.writer",
    )?
    .execute(params![
        table,
        uuid,
        tag.origin.0.to_vec(),
        tag.seq as i64,
        writer.0.to_vec()
    ])?;
    Ok(())
}

/// Bit i set = payload column i differs (type or bits).
pub(super) fn diff_mask(a: &[Value], b: &[Value]) -> u64 {
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

/// Which rows of a table an export reads.
enum Scope<'a> {
    /// Every row (dictionary training, a backfill, `export --since`).
    All,
    /// Rows whose tag `holds` does not cover, except `peer`'s own changes,
    /// plus the rows named in `uuids`.
    Lacking {
        peer: StationId,
        holds: &'a VersionVector,
        uuids: BTreeSet<String>,
    },
    /// Exactly these rows (set reconciliation found them differing).
    Only(BTreeSet<String>),
}

/// One synced row as `Store::synced_rows` lists it.
#[derive(Clone, Debug, PartialEq)]
pub struct SyncedRow {
    /// Table name.
    pub table: String,
    /// The row's uuid.
    pub uuid: String,
    /// The row's `modified_on`, as written.
    pub modified_on: String,
    /// Payload columns in the table's payload order (`deleted` among them).
    pub values: Vec<Value>,
}

/// How many priority classes the tables fall in.
fn distinct_classes(prios: &[i64]) -> usize {
    prios.iter().collect::<BTreeSet<_>>().len()
}

/// The next bundle of a session with priority classes (`Store::export_class_against`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassExport {
    /// The bundle, encoded.
    pub exported: Exported,
    /// A lower class follows: the session asks again with this as `below`.
    pub next: Option<i64>,
    /// Rows the budget left for a later session (nothing follows then).
    pub left_for_budget: u64,
}

/// One priority class of what a station would send a peer (`Store::plan_for`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanClass {
    /// The class (`track --priority`).
    pub priority: i64,
    /// The class's bundle, encoded as it would go.
    pub bytes: u64,
    /// Each table of the class with rows to send.
    pub tables: Vec<PlanTable>,
}

/// One table's part of a plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanTable {
    /// Table name.
    pub table: String,
    /// Row versions to send.
    pub rows: u64,
    /// Its rows alone as a bundle (compression works across rows, so the
    /// tables of a class add up to a little more than the class).
    pub bytes: u64,
}

impl Store {
    /// The rows of `info` in `scope` that `keep` selects (by uuid, tag,
    /// modified_on), hard-deleted ones as their tombstones, in tag order. Rows
    /// held back (`rs_held`: unreadable time, duplicate uuid) never leave.
    fn table_rows(
        &self,
        info: &TableInfo,
        scope: &Scope<'_>,
        mut keep: impl FnMut(&str, Tag, &str) -> bool,
        mut make: impl FnMut(&str, Tag, Vec<Value>) -> Result<RowBody, StoreError>,
    ) -> Result<Vec<RowVersion>, StoreError> {
        let held: BTreeSet<String> = {
            let mut stmt = self
                .conn
                .prepare_cached("SELECT uuid FROM rs_held WHERE tbl = ?1")?;
            let v = stmt
                .query_map([&info.name], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            v
        };
        let n = info.payload.len();
        let mut found: Vec<(String, Tag, StationId, String, Vec<Value>)> = Vec::new();
        let mut tombs: Vec<(String, Tag, String)> = Vec::new();
        // (uuid, tag, writer) of the rows in scope.
        let candidates = self.candidates(info, scope)?;
        let mut read = self.conn.prepare_cached(&format!(
            "SELECT t.modified_on{} FROM {} t WHERE t.uuid = ?1",
            payload_prefix(info),
            quote_ident(&info.name)
        ))?;
        let mut tomb = self
            .conn
            .prepare_cached("SELECT modified_on FROM rs_tomb WHERE tbl = ?1 AND uuid = ?2")?;
        for (uuid, tag, writer) in candidates {
            if held.contains(&uuid) {
                continue;
            }
            let mut rows = read.query([&uuid])?;
            let mut live = Vec::new();
            while let Some(r) = rows.next()? {
                let modified_on = text_of(value_from_ref(r.get_ref(0)?));
                let values = (0..n)
                    .map(|i| r.get_ref(1 + i).map(value_from_ref))
                    .collect::<Result<Vec<_>, _>>()?;
                live.push((modified_on, values));
            }
            match live.len() {
                0 => {
                    let gone: Option<String> = tomb
                        .query_row(params![info.name, uuid], |r| {
                            Ok(text_of(value_from_ref(r.get_ref(0)?)))
                        })
                        .optional()?;
                    if let Some(m) = gone {
                        tombs.push((uuid, tag, m));
                    }
                }
                1 => {
                    let (modified_on, values) = live.pop().expect("one row");
                    if keep(&uuid, tag, &modified_on) {
                        found.push((uuid, tag, writer, modified_on, values));
                    }
                }
                // Two application rows under one uuid cannot travel; the capture check holds them.
                _ => {}
            }
        }
        for (uuid, tag, modified_on) in tombs {
            if !keep(&uuid, tag, &modified_on) {
                continue;
            }
            if let Some(l) = read_tombstone(&self.conn, info, &uuid)? {
                found.push((uuid, tag, l.writer, l.modified_on, l.values));
            }
        }
        found.sort_by(|a, b| (a.1.seq, &a.0).cmp(&(b.1.seq, &b.0)));
        let mut out = Vec::with_capacity(found.len());
        for (uuid, tag, writer, modified_on, values) in found {
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

    /// The `rs_row` entries of `info` in `scope`: through the (tbl, origin,
    /// seq) index for what a peer lacks, so the cost follows the changes.
    fn candidates(
        &self,
        info: &TableInfo,
        scope: &Scope<'_>,
    ) -> Result<Vec<(String, Tag, StationId)>, StoreError> {
        let map = |r: &rusqlite::Row<'_>| {
            Ok((
                r.get::<_, String>(0)?,
                Tag {
                    origin: station_id_from(r.get(1)?)?,
                    seq: r.get::<_, i64>(2)?.max(0) as u64,
                },
                station_id_from(r.get(3)?)?,
            ))
        };
        let mut out = Vec::new();
        match scope {
            Scope::All => {
                let mut stmt = self.conn.prepare_cached(
                    "SELECT uuid, origin, seq, writer FROM rs_row WHERE tbl = ?1 ORDER BY seq, uuid",
                )?;
                for r in stmt.query_map([&info.name], map)? {
                    out.push(r?);
                }
            }
            Scope::Lacking { peer, holds, uuids } => {
                let mut by_tag = self.conn.prepare_cached(
                    "SELECT uuid, origin, seq, writer FROM rs_row
                     WHERE tbl = ?1 AND origin = ?2 AND seq > ?3",
                )?;
                let mut seen = BTreeSet::new();
                for origin in self.origins()? {
                    if origin == *peer {
                        continue;
                    }
                    let from = holds.get(&origin).min(i64::MAX as u64) as i64;
                    for r in by_tag.query_map(params![info.name, origin.0.to_vec(), from], map)? {
                        let r = r?;
                        seen.insert(r.0.clone());
                        out.push(r);
                    }
                }
                let mut by_uuid = self.conn.prepare_cached(
                    "SELECT uuid, origin, seq, writer FROM rs_row WHERE tbl = ?1 AND uuid = ?2",
                )?;
                for u in uuids.iter().filter(|u| !seen.contains(*u)) {
                    if let Some(r) = by_uuid.query_row(params![info.name, u], map).optional()? {
                        out.push(r);
                    }
                }
                out.sort_by(|a, b| (a.1.seq, &a.0).cmp(&(b.1.seq, &b.0)));
            }
            Scope::Only(uuids) => {
                let mut by_uuid = self.conn.prepare_cached(
                    "SELECT uuid, origin, seq, writer FROM rs_row WHERE tbl = ?1 AND uuid = ?2",
                )?;
                for u in uuids {
                    if let Some(r) = by_uuid.query_row(params![info.name, u], map).optional()? {
                        out.push(r);
                    }
                }
                out.sort_by(|a, b| (a.1.seq, &a.0).cmp(&(b.1.seq, &b.0)));
            }
        }
        Ok(out)
    }

    /// Every station whose changes this station holds rows of.
    fn origins(&self) -> Result<Vec<StationId>, StoreError> {
        // rs_vector too: every origin we imported from is there, whatever rs_origin missed.
        let mut stmt = self.conn.prepare_cached(
            "SELECT origin FROM rs_origin UNION SELECT origin FROM rs_vector ORDER BY origin",
        )?;
        let mut out = stmt
            .query_map([], |r| station_id_from(r.get(0)?))?
            .collect::<Result<Vec<_>, _>>()?;
        if !out.contains(&self.station.id) {
            out.push(self.station.id);
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

    /// One row's synced columns by name (`uuid`, `modified_on` and the payload, which
    /// holds `deleted`; site-local columns left out), or `None` if the table has no such row.
    pub fn row(&self, table: &str, uuid: &str) -> Result<Option<Vec<(String, Value)>>, StoreError> {
        let info = self.info(table)?;
        let sql = format!(
            "SELECT t.uuid, t.modified_on{} FROM {} t WHERE t.uuid = ?1",
            payload_prefix(info),
            quote_ident(&info.name)
        );
        // `deleted` is a payload column like any other.
        let names = ["uuid", "modified_on"]
            .into_iter()
            .map(String::from)
            .chain(info.payload.iter().map(|c| c.name.clone()));
        let mut stmt = self.conn.prepare(&sql)?;
        let mut rows = stmt.query([uuid])?;
        let Some(r) = rows.next()? else {
            return Ok(None);
        };
        let values = names
            .enumerate()
            .map(|(i, name)| Ok((name, value_from_ref(r.get_ref(i)?))))
            .collect::<Result<Vec<_>, rusqlite::Error>>()?;
        Ok(Some(values))
    }

    /// Every tracked row, full: the dictionary's training material.
    pub(crate) fn all_rows_full(&self) -> Result<Vec<TableChanges>, StoreError> {
        let mut out = Vec::new();
        for (i, info) in self.tables.iter().enumerate() {
            let rows = self.table_rows(
                info,
                &Scope::All,
                |_, _, _| true,
                |_, _, v| Ok(RowBody::Full(v)),
            )?;
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
        self.export_with(peer, holds, &BTreeSet::new(), None)
    }

    /// Each tracked table's priority class (`track --priority`; 0 unless set),
    /// in table order. Higher classes travel first.
    pub fn table_priorities(&self) -> Result<Vec<i64>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT coalesce(priority, 0) FROM rs_table WHERE name = ?1")?;
        self.tables
            .iter()
            .map(|t| {
                Ok(stmt
                    .query_row([&t.name], |r| r.get::<_, i64>(0))
                    .optional()?
                    .unwrap_or(0))
            })
            .collect()
    }

    /// Sets the priority class of tracked `table` (higher goes first).
    pub fn set_priority(&mut self, table: &str, priority: i64) -> Result<(), StoreError> {
        self.writable()?;
        self.info(table)?;
        self.conn.execute(
            "UPDATE rs_table SET priority = ?1 WHERE name = ?2",
            params![priority, table],
        )?;
        Ok(())
    }

    /// The next bundle of a session to `peer` (which holds `holds`) when tables
    /// have priority classes: the highest class below `below` (None: any) that
    /// the peer lacks something of. `next` is `Some(class)` when a lower class
    /// still has rows to send (the session asks again with that as `below`).
    /// Such a bundle claims only what it leaves no gap below: per origin, the
    /// claim stops short of the first change still to come, so a session cut
    /// short between classes loses nothing. With `max_bytes` (a budget), the
    /// class's rows are cut, in order, to a bundle of at most that many bytes,
    /// and nothing follows. With one class and no budget this is
    /// `export_encoded_against`.
    pub fn export_class_against(
        &self,
        peer: &StationId,
        holds: &VersionVector,
        below: Option<i64>,
        max_bytes: Option<u64>,
    ) -> Result<ClassExport, StoreError> {
        self.writable()?;
        let prios = self.table_priorities()?;
        let mut classes: Vec<i64> = prios
            .iter()
            .copied()
            .filter(|c| below.is_none_or(|b| *c < b))
            .collect();
        classes.sort_unstable_by(|a, b| b.cmp(a));
        classes.dedup();
        // A backfill (a peer that gained columns gets whole tables again) goes
        // in one bundle: its bookkeeping (`mark_backfills_sent`) is per bundle.
        let backfilling = !self.backfills(peer)?.is_empty();
        if backfilling || (below.is_none() && classes.len() <= 1 && max_bytes.is_none()) {
            return Ok(ClassExport {
                exported: self.export_encoded_against(peer, Some(holds))?,
                next: None,
                left_for_budget: 0,
            });
        }
        self.mark_backfills_sent(peer, Some(holds))?;
        let tables_of = |c: i64| -> BTreeSet<u16> {
            (0..prios.len())
                .filter(|&i| prios[i] == c)
                .map(|i| i as u16)
                .collect()
        };
        for (k, &c) in classes.iter().enumerate() {
            // One class in all: every table, deltas named by base as usual.
            let only = (distinct_classes(&prios) > 1).then(|| tables_of(c));
            let mut bundle =
                self.export_with(peer, Some(holds), &BTreeSet::new(), only.as_ref())?;
            let last = k + 1 == classes.len();
            if bundle.tables.is_empty() && !last {
                continue;
            }
            let mut left_for_budget = 0;
            if let Some(max) = max_bytes {
                left_for_budget = self.cut_to(peer, &mut bundle, max)?;
            }
            let sent: BTreeSet<(u16, Tag)> = bundle
                .tables
                .iter()
                .flat_map(|t| t.rows.iter().map(move |r| (t.table, r.tag)))
                .collect();
            let gaps = self.first_lacking(peer, holds, &sent)?;
            for (origin, seq) in &gaps {
                if let Some(e) = bundle.sender_vector.0.get_mut(origin) {
                    *e = (*e).min(seq.saturating_sub(1));
                }
            }
            bundle.sender_vector.0.retain(|_, s| *s > 0);
            let p = self
                .peer_by_id(peer)?
                .ok_or(StoreError::UnknownPeer(*peer))?;
            let below_c: BTreeSet<u16> = classes[k + 1..]
                .iter()
                .flat_map(|&l| tables_of(l))
                .collect();
            let asked_below = p
                .wants
                .iter()
                .chain(&p.lost)
                .any(|w| below_c.contains(&w.table));
            let next = (left_for_budget == 0 && (!gaps.is_empty() || asked_below)).then_some(c);
            let what = format!("bundle (priority {c})");
            return Ok(ClassExport {
                exported: self.encode_for(peer, &bundle, &what)?,
                next,
                left_for_budget,
            });
        }
        // Nothing in any class: an empty bundle with the full claim.
        let bundle =
            self.export_with(peer, Some(holds), &BTreeSet::new(), Some(&BTreeSet::new()))?;
        Ok(ClassExport {
            exported: self.encode_for(peer, &bundle, "bundle")?,
            next: None,
            left_for_budget: 0,
        })
    }

    /// Cuts `bundle`'s rows, in order, to the most that encode within `max`
    /// bytes; returns how many rows were left out.
    fn cut_to(&self, peer: &StationId, bundle: &mut Bundle, max: u64) -> Result<u64, StoreError> {
        let p = self
            .peer_by_id(peer)?
            .ok_or(StoreError::UnknownPeer(*peer))?;
        let dict = self.dictionary()?;
        let use_dict = matches!(&dict, Some(d) if d.id != 0 && d.id == p.dict_id);
        let total: usize = bundle.tables.iter().map(|t| t.rows.len()).sum();
        let first = |k: usize| -> Bundle {
            let mut b = bundle.clone();
            let mut left = k;
            for t in &mut b.tables {
                t.rows.truncate(left);
                left -= t.rows.len();
            }
            b.tables.retain(|t| !t.rows.is_empty());
            b
        };
        let fits = |k: usize| -> Result<bool, StoreError> {
            let bytes =
                codec::encode(&first(k), dict.as_ref(), use_dict).map_err(StoreError::Encode)?;
            Ok(bytes.len() as u64 <= max)
        };
        if fits(total)? {
            return Ok(0);
        }
        // The largest k that fits: fits(lo) or lo == 0, !fits(hi).
        let (mut lo, mut hi) = (0usize, total);
        while lo + 1 < hi {
            let mid = (lo + hi) / 2;
            if fits(mid)? {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        *bundle = first(lo);
        Ok((total - lo) as u64)
    }

    /// What this station would send `peer` now (against what the peer
    /// confirmed), per priority class, highest first: each class's bundle size
    /// as it would go, and each table's rows and size alone. Sends nothing and
    /// logs nothing: the input of `radiosync plan`.
    pub fn plan_for(&self, peer: &StationId) -> Result<Vec<PlanClass>, StoreError> {
        let p = self
            .peer_by_id(peer)?
            .ok_or(StoreError::UnknownPeer(*peer))?;
        let dict = self.dictionary()?;
        let use_dict = matches!(&dict, Some(d) if d.id != 0 && d.id == p.dict_id);
        let encode = |b: &Bundle| -> Result<u64, StoreError> {
            Ok(codec::encode(b, dict.as_ref(), use_dict)
                .map_err(StoreError::Encode)?
                .len() as u64)
        };
        let prios = self.table_priorities()?;
        let mut classes = prios.clone();
        classes.sort_unstable_by(|a, b| b.cmp(a));
        classes.dedup();
        let mut out = Vec::new();
        for c in classes {
            let only: BTreeSet<u16> = (0..prios.len())
                .filter(|&i| prios[i] == c)
                .map(|i| i as u16)
                .collect();
            let only = (distinct_classes(&prios) > 1).then_some(only);
            let bundle = self.export_with(peer, None, &BTreeSet::new(), only.as_ref())?;
            if bundle.tables.is_empty() {
                continue;
            }
            let mut tables = Vec::new();
            for tc in &bundle.tables {
                let one = Bundle {
                    tables: vec![tc.clone()],
                    ..bundle.clone()
                };
                tables.push(PlanTable {
                    table: self.tables[tc.table as usize].name.clone(),
                    rows: tc.rows.len() as u64,
                    bytes: encode(&one)?,
                });
            }
            out.push(PlanClass {
                priority: c,
                bytes: encode(&bundle)?,
                tables,
            });
        }
        Ok(out)
    }

    /// Versions `peer` applied from bundles that claimed less than they carried
    /// (priority classes), as (table index, tag). Those its vector `holds` now
    /// covers are moot, and those whose bundle's claim it no longer holds
    /// (restored from a backup) are void: both are forgotten when `prune`.
    fn delivered_beyond_claim(
        &self,
        peer: &StationId,
        holds: &VersionVector,
        prune: bool,
    ) -> Result<BTreeSet<(u16, Tag)>, StoreError> {
        let key = peer.0.to_vec();
        let rows: Vec<(String, Vec<u8>, i64, i64)> = self
            .conn
            .prepare_cached("SELECT tbl, origin, seq, claim FROM rs_peer_sent WHERE peer = ?1")?
            .query_map([&key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
            .collect::<Result<_, _>>()?;
        let mut out = BTreeSet::new();
        for (t, o, s, claim) in rows {
            let tag = Tag {
                origin: station_id_from(o.clone())?,
                seq: s.max(0) as u64,
            };
            let table = self.tables.iter().position(|i| i.name == t);
            let still_held = holds.get(&tag.origin) >= claim.max(0) as u64;
            match table {
                Some(i) if !holds.covers(&tag) && still_held => {
                    out.insert((i as u16, tag));
                }
                _ if prune && !self.read_only => {
                    self.conn.execute(
                        "DELETE FROM rs_peer_sent WHERE peer = ?1 AND tbl = ?2 AND origin = ?3 AND seq = ?4",
                        params![key, t, o, s],
                    )?;
                }
                _ => {}
            }
        }
        Ok(out)
    }

    /// Per origin, the lowest sequence the claim of a bundle carrying `sent`
    /// must stay below: of every version `peer` (holding `holds`) has not seen
    /// of a row an export would still send it (superseded versions too, or a
    /// later delta would name a base the peer never got). Over every table
    /// shared with the peer, as the export reads them.
    fn first_lacking(
        &self,
        peer: &StationId,
        holds: &VersionVector,
        sent: &BTreeSet<(u16, Tag)>,
    ) -> Result<BTreeMap<StationId, u64>, StoreError> {
        let mut out: BTreeMap<StationId, u64> = BTreeMap::new();
        let delivered = self.delivered_beyond_claim(peer, holds, true)?;
        let shared = self.shared_tables(peer)?;
        let unseen = |tag: &Tag| tag.origin != *peer && !holds.covers(tag);
        for (i, info) in self.tables.iter().enumerate() {
            if !shared[i] {
                continue;
            }
            let t = i as u16;
            let qt = quote_ident(&info.name);
            let mut rows = self.conn.prepare(&format!(
                "SELECT r.uuid, r.origin, r.seq FROM rs_row r WHERE r.tbl = ?1
                   AND NOT EXISTS (SELECT 1 FROM rs_held h WHERE h.tbl = r.tbl AND h.uuid = r.uuid)
                   AND (EXISTS (SELECT 1 FROM {qt} a WHERE a.uuid = r.uuid)
                        OR EXISTS (SELECT 1 FROM rs_tomb m WHERE m.tbl = r.tbl AND m.uuid = r.uuid))"
            ))?;
            let lacking: Vec<String> = rows
                .query_map([&info.name], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Vec<u8>>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                })?
                .map(|r| {
                    let (u, o, s) = r?;
                    let tag = Tag {
                        origin: station_id_from(o)?,
                        seq: s.max(0) as u64,
                    };
                    let owed =
                        unseen(&tag) && !delivered.contains(&(t, tag)) && !sent.contains(&(t, tag));
                    Ok(owed.then_some(u))
                })
                .filter_map(|r: Result<Option<String>, StoreError>| r.transpose())
                .collect::<Result<_, _>>()?;
            for uuid in lacking {
                for (tag, _) in history(&self.conn, &info.name, &uuid)? {
                    if unseen(&tag) {
                        let e = out.entry(tag.origin).or_insert(tag.seq);
                        *e = (*e).min(tag.seq);
                    }
                }
                let current: Option<(Vec<u8>, i64)> = self
                    .conn
                    .prepare_cached("SELECT origin, seq FROM rs_row WHERE tbl = ?1 AND uuid = ?2")?
                    .query_row(params![info.name, uuid], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?;
                if let Some((o, s)) = current {
                    let tag = Tag {
                        origin: station_id_from(o)?,
                        seq: s.max(0) as u64,
                    };
                    let e = out.entry(tag.origin).or_insert(tag.seq);
                    *e = (*e).min(tag.seq);
                }
            }
        }
        Ok(out)
    }

    /// `export_against`, with the rows `extra` (table index, uuid) in full
    /// as if the peer had asked for them.
    /// `only`: just these tables (a priority class).
    fn export_with(
        &self,
        peer: &StationId,
        holds: Option<&VersionVector>,
        extra: &BTreeSet<(u16, String)>,
        only: Option<&BTreeSet<u16>>,
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
        let mut wanted: BTreeSet<(u16, String)> = p.wants.iter().filter_map(uuid_key).collect();
        wanted.extend(extra.iter().cloned());
        let lost: BTreeSet<(u16, String)> = p.lost.iter().filter_map(uuid_key).collect();
        // Tables whose every row the peer gets in full: it gained columns we have.
        let me = self.station.id;
        let backfill: BTreeSet<String> = self
            .backfills(peer)?
            .into_iter()
            .filter(|(_, sent_at)| sent_at.is_none_or(|s| p.confirmed.get(&me) < s))
            .map(|(t, _)| t)
            .collect();
        let delivered = self.delivered_beyond_claim(peer, &p.confirmed, holds.is_some())?;
        // Deltas name their row by base tag, unless the peer asked for a tag we
        // could not map back to a row: then every delta carries its uuid again.
        // A class's bundle (`only`) names every row by uuid: see
        // `transfer_outgoing_applied` for why a chain of bundles needs that.
        let by_base = !p.unplaced && only.is_none();
        let shared = self.shared_tables(peer)?;
        let mut tables = Vec::new();
        for (i, info) in self.tables.iter().enumerate() {
            if !shared[i] || only.is_some_and(|o| !o.contains(&(i as u16))) {
                continue;
            }
            let ti = i as u16;
            let all = backfill.contains(&info.name);
            let scope = if all {
                Scope::All
            } else {
                Scope::Lacking {
                    peer: *peer,
                    holds: &p.confirmed,
                    uuids: wanted
                        .iter()
                        .filter(|(t, _)| *t == ti)
                        .map(|(_, u)| u.clone())
                        .collect(),
                }
            };
            let rows = self.table_rows(
                info,
                &scope,
                |uuid, tag, _| {
                    all || wanted.contains(&(ti, uuid.to_string()))
                        || (tag.origin != *peer
                            && !p.confirmed.covers(&tag)
                            && !delivered.contains(&(ti, tag)))
                },
                |uuid, tag, values| {
                    let key = (ti, uuid.to_string());
                    if all || wanted.contains(&key) || lost.contains(&key) {
                        return Ok(RowBody::Full(values));
                    }
                    self.body_since(info, uuid, tag, values, &p.confirmed)
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
            // A peer not known to share our tables learns their layout.
            layout: (self.schema_hints.get(peer).copied().or(p.schema) != Some(self.fingerprint))
                .then(|| self.layout()),
        })
    }

    /// One broadcast for the peers `names` (issue 9; `store::cast`): every
    /// row version not covered by the pointwise minimum of what they
    /// confirmed, deltas named by a base all of them have seen, signed. It is
    /// kept as the outgoing bundle of each peer it is for, so each one's next
    /// session resumes it from what that station heard. Peers it cannot serve
    /// exactly (tables shared in part, a backfill open, a schema or key not
    /// known to match) are left out, with the reason, for their own syncs.
    pub fn export_cast(&self, names: &[String]) -> Result<super::cast::CastExport, StoreError> {
        self.writable()?;
        if self.tables.is_empty() {
            return Err(StoreError::NothingTracked);
        }
        let mut peers = Vec::new();
        let mut left_out = Vec::new();
        for name in names {
            let p = self
                .peer_by_name(name)?
                .ok_or_else(|| StoreError::UnknownPeerName(name.clone()))?;
            let schema = self.schema_hints.get(&p.id).copied().or(p.schema);
            let why = if p.key.is_none() {
                Some("registered with --no-auth: a broadcast is signed, and taken only with a key")
            } else if p.tables.is_some() {
                Some("shares only some tables")
            } else if !self.backfills(&p.id)?.is_empty() {
                Some("gets whole tables again (a backfill is open)")
            } else if schema != Some(self.fingerprint) {
                Some("not known to share this station's schema")
            } else if p.unplaced {
                Some("asked for a version this station cannot place")
            } else {
                None
            };
            match why {
                Some(w) => left_out.push((p.name.clone(), w.to_string())),
                None => peers.push(p),
            }
        }
        let dict = self.dictionary()?;
        let use_dict = !peers.is_empty()
            && matches!(&dict, Some(d) if d.id != 0 && peers.iter().all(|p| p.dict_id == d.id));
        // What every one of them has seen.
        let mut base = VersionVector::default();
        if let Some((first, rest)) = peers.split_first() {
            for (o, s) in &first.confirmed.0 {
                let low = rest.iter().map(|p| p.confirmed.get(o)).fold(*s, u64::min);
                if low > 0 {
                    base.0.insert(*o, low);
                }
            }
        }
        let nobody = StationId([0; 16]);
        let mut tables = Vec::new();
        if !peers.is_empty() {
            for (i, info) in self.tables.iter().enumerate() {
                let scope = Scope::Lacking {
                    peer: nobody,
                    holds: &base,
                    uuids: BTreeSet::new(),
                };
                let mut rows = self.table_rows(
                    info,
                    &scope,
                    |_, tag, _| !base.covers(&tag),
                    |uuid, tag, values| self.body_since(info, uuid, tag, values, &base),
                )?;
                for r in rows.iter_mut() {
                    if matches!(r.body, RowBody::Delta { .. }) {
                        r.uuid.clear();
                    }
                }
                if !rows.is_empty() {
                    tables.push(TableChanges {
                        table: i as u16,
                        rows,
                    });
                }
            }
        }
        let rows: u64 = tables.iter().map(|t| t.rows.len() as u64).sum();
        if rows == 0 {
            return Ok(super::cast::CastExport {
                peers: peers.into_iter().map(|p| p.name).collect(),
                left_out,
                ..Default::default()
            });
        }
        let bundle = Bundle {
            kind: BundleKind::Slice,
            sender: self.station.id,
            receiver: None,
            schema: self.fingerprint,
            sender_vector: self.vector()?,
            wants: Vec::new(),
            tables,
            layout: None,
        };
        let inner = codec::encode(&bundle, dict.as_ref(), use_dict).map_err(StoreError::Encode)?;
        let sealed = self.seal_file(&super::cast::cast_payload(&base, &inner))?;
        let id = crate::sync::BundleId::of(&sealed);
        for p in &peers {
            self.transfer_keep_outgoing(&p.id, id, &sealed)?;
        }
        let names: Vec<String> = peers.into_iter().map(|p| p.name).collect();
        self.log_event(&LogEntry {
            peer: None,
            direction: "out".into(),
            rows_out: rows,
            result: "ok".into(),
            message: format!(
                "broadcast {id} of {} bytes for {}{}",
                sealed.len(),
                names.join(", "),
                if use_dict { ", dictionary" } else { "" }
            ),
            ..Default::default()
        })?;
        Ok(super::cast::CastExport {
            id,
            bytes: sealed,
            rows,
            peers: names,
            left_out,
        })
    }

    /// How row `uuid` (current version `tag`, `values`) travels to stations
    /// that have seen `seen`: as a delta against the latest version of its
    /// history they have seen (the masks after it name the columns changed
    /// since), or in full.
    fn body_since(
        &self,
        info: &TableInfo,
        uuid: &str,
        tag: Tag,
        values: Vec<Value>,
        seen: &VersionVector,
    ) -> Result<RowBody, StoreError> {
        let hist = history(&self.conn, &info.name, uuid)?;
        let mut delta = None;
        if hist.last().map(|h| h.0) == Some(tag) {
            if let Some(j) = hist[..hist.len() - 1]
                .iter()
                .rposition(|(t, _)| seen.covers(t))
            {
                let mask = hist[j + 1..].iter().fold(0u64, |m, (_, k)| m | k);
                delta = Some((hist[j].0, mask));
            }
        }
        Ok(body_for(values, delta, info.payload.len()))
    }

    /// A row's delta against its base (`rs_base`): the base's content address
    /// and the columns changed since (every column when the row's history no
    /// longer reaches back to the base). A row we changed after taking a
    /// version of `peer`'s goes against that version, by its tag: the peer
    /// then sees ours was built on its own. None: no base digest is known,
    /// or the table has more than 64 columns.
    fn delta_since_base(
        &self,
        info: &TableInfo,
        uuid: &str,
        tag: Tag,
        peer: &StationId,
    ) -> Result<Option<(Tag, u64)>, StoreError> {
        let base: Option<(Vec<u8>, i64, Option<i64>)> = self
            .conn
            .prepare_cached("SELECT origin, seq, digest FROM rs_base WHERE tbl = ?1 AND uuid = ?2")?
            .query_row(params![info.name, uuid], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()?;
        let n = info.payload.len();
        let (Some((origin, seq, Some(digest))), true) = (base, n <= 64) else {
            return Ok(None);
        };
        let every = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
        let base = Tag {
            origin: station_id_from(origin)?,
            seq: seq.max(0) as u64,
        };
        let hist = history(&self.conn, &info.name, uuid)?;
        if hist.last().map(|h| h.0) == Some(tag) {
            if let Some(j) = hist[..hist.len() - 1]
                .iter()
                .rposition(|(t, _)| t.origin == *peer)
            {
                let mask = hist[j + 1..].iter().fold(0u64, |m, (_, k)| m | k) & every;
                return Ok(Some((hist[j].0, mask)));
            }
        }
        let mut mask = every;
        if hist.last().map(|h| h.0) == Some(tag) {
            if let Some(j) = hist[..hist.len() - 1].iter().rposition(|(t, _)| *t == base) {
                mask = hist[j + 1..].iter().fold(0u64, |m, (_, k)| m | k) & every;
            }
        }
        Ok(Some((base_tag(&info.name, uuid, digest), mask)))
    }

    /// Our tracked tables and their payload columns, in bundle order.
    pub fn layout(&self) -> Vec<TableLayout> {
        self.tables
            .iter()
            .map(|t| TableLayout {
                name: t.name.clone(),
                columns: t.payload.iter().map(|c| c.name.clone()).collect(),
                policy: t.policy.text(),
            })
            .collect()
    }

    /// Before a bundle with backfilled tables goes out: our clock moves on one
    /// step and the tables remember it, so the peer's vector tells when it
    /// holds the bundle. Backfills the peer confirmed are dropped.
    fn mark_backfills_sent(
        &self,
        peer: &StationId,
        holds: Option<&VersionVector>,
    ) -> Result<(), StoreError> {
        let backfills = self.backfills(peer)?;
        if backfills.is_empty() {
            return Ok(());
        }
        let confirmed = match holds {
            Some(v) => v.get(&self.station.id),
            None => self
                .peer_by_id(peer)?
                .map(|p| p.confirmed.get(&self.station.id))
                .unwrap_or(0),
        };
        let key = peer.0.to_vec();
        let mut open = false;
        for (t, sent_at) in &backfills {
            if sent_at.is_some_and(|s| confirmed >= s) {
                self.conn.execute(
                    "DELETE FROM rs_peer_backfill WHERE peer = ?1 AND tbl = ?2",
                    params![key, t],
                )?;
            } else {
                open = true;
            }
        }
        if open {
            self.conn.execute("UPDATE rs_clock SET seq = seq + 1", [])?;
            self.conn.execute(
                "UPDATE rs_peer_backfill SET sent_at = (SELECT seq FROM rs_clock) WHERE peer = ?1",
                [key],
            )?;
        }
        Ok(())
    }

    /// Tables the peer gets in full (it gained columns), and our clock when
    /// that was last sent (None: not yet).
    fn backfills(&self, peer: &StationId) -> Result<Vec<(String, Option<u64>)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT tbl, sent_at FROM rs_peer_backfill WHERE peer = ?1")?;
        let rows = stmt
            .query_map([peer.0.to_vec()], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<i64>>(1)?.map(|s| s.max(0) as u64),
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// What `peer` lacks in `tables` only (the blueprint's per-module export):
    /// a Slice addressed to it, applied by the merge rules, claiming nothing.
    pub fn export_tables_for(
        &self,
        peer: &StationId,
        tables: &[String],
    ) -> Result<Bundle, StoreError> {
        let mut b = self.export_against(peer, None)?;
        b.tables
            .retain(|t| tables.contains(&self.tables[t.table as usize].name));
        // It carries only some tables, so it must claim nothing of what we hold.
        b.kind = BundleKind::Slice;
        b.wants.clear();
        b.layout = Some(self.layout());
        Ok(b)
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
            let rows = self.table_rows(
                info,
                &Scope::All,
                |_, _, m| recent(m),
                |_, _, v| Ok(RowBody::Full(v)),
            )?;
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
            // Any station may import it: it describes itself.
            layout: Some(self.layout()),
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
        self.writable()?;
        self.mark_backfills_sent(peer, holds)?;
        let bundle = self.export_against(peer, holds)?;
        self.encode_for(peer, &bundle, "bundle")
    }

    /// The rows `rows` (table index, uuid) in full, current versions, for a peer
    /// that reconciliation showed lacks them. At first contact (`holds` None)
    /// only those, in a Delta bundle claiming `claim` (what this station held
    /// when it listed its items), so once applied the peer holds what we held
    /// then. With `holds` (stations that synced before) they join the usual
    /// export against it, whose wants and backfills keep working.
    /// Encoded as `export_encoded` does.
    pub fn export_reconciled(
        &self,
        peer: &StationId,
        rows: &BTreeSet<(u16, String)>,
        claim: &VersionVector,
        holds: Option<&VersionVector>,
    ) -> Result<Exported, StoreError> {
        self.writable()?;
        if let Some(h) = holds {
            self.mark_backfills_sent(peer, Some(h))?;
            let bundle = self.export_with(peer, Some(h), rows, None)?;
            return self.encode_for(peer, &bundle, "reconciled bundle");
        }
        self.reconciled_bundle(peer, rows, &BTreeSet::new(), claim, false)
    }

    /// `export_reconciled` at first contact, with our `edits` (table index,
    /// uuid) besides: each goes as the columns changed since its base
    /// (`rs_base`), addressed by the base's content (`delta::digest::base_tag`),
    /// when the history still reaches back to it, else in full. Rows in `full`,
    /// and rows the peer asked for, go in full; a row whose version at the peer
    /// lost to ours goes as a delta only if it carries every column the peer's
    /// version changed (so it applies there too), else in full.
    pub fn export_first_contact(
        &self,
        peer: &StationId,
        full: &BTreeSet<(u16, String)>,
        edits: &BTreeSet<(u16, String)>,
        claim: &VersionVector,
    ) -> Result<Exported, StoreError> {
        self.reconciled_bundle(peer, full, edits, claim, true)
    }

    /// `export_reconciled` (`answer`: false) and `export_first_contact`.
    fn reconciled_bundle(
        &self,
        peer: &StationId,
        full: &BTreeSet<(u16, String)>,
        edits: &BTreeSet<(u16, String)>,
        claim: &VersionVector,
        answer: bool,
    ) -> Result<Exported, StoreError> {
        self.writable()?;
        let p = self
            .peer_by_id(peer)?
            .ok_or(StoreError::UnknownPeer(*peer))?;
        let mut full = full.clone();
        // (table, uuid) -> the columns the peer's losing version changed.
        let mut lost: BTreeMap<(u16, String), Option<u64>> = BTreeMap::new();
        if answer {
            full.extend(p.wants.iter().filter_map(uuid_key));
            let mut stmt = self.conn.prepare_cached(
                "SELECT tbl, uuid, mask FROM rs_peer_want WHERE peer = ?1 AND kind = 'lost'",
            )?;
            let rows = stmt.query_map([peer.0.to_vec()], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<i64>>(2)?,
                ))
            })?;
            for row in rows {
                let (t, u, m) = row?;
                if let Some(ti) = self.table_index(&t) {
                    lost.insert((ti, u), m.map(|m| m as u64));
                }
            }
        }
        let mut tables = Vec::new();
        for (i, info) in self.tables.iter().enumerate() {
            let ti = i as u16;
            let uuids: BTreeSet<String> = full
                .iter()
                .chain(edits)
                .chain(lost.keys())
                .filter(|(t, _)| *t == ti)
                .map(|(_, u)| u.clone())
                .collect();
            if uuids.is_empty() {
                continue;
            }
            let mut rows = self.table_rows(
                info,
                &Scope::Only(uuids),
                |_, _, _| true,
                |uuid, tag, v| {
                    let key = (ti, uuid.to_string());
                    if full.contains(&key) {
                        return Ok(RowBody::Full(v));
                    }
                    let mut delta = self.delta_since_base(info, uuid, tag, peer)?;
                    if let Some(theirs) = lost.get(&key) {
                        let covers =
                            |(_, ours): &(Tag, u64)| theirs.is_some_and(|m| m & !ours == 0);
                        delta = delta.filter(covers);
                    }
                    // Even with most columns changed: the base address is what
                    // tells the peer it saw the version this one replaces.
                    Ok(match delta {
                        Some((base, mask)) => RowBody::Delta {
                            base,
                            mask,
                            values: v
                                .into_iter()
                                .enumerate()
                                .filter(|(i, _)| mask & (1u64 << i) != 0)
                                .map(|(_, v)| v)
                                .collect(),
                        },
                        None => RowBody::Full(v),
                    })
                },
            )?;
            for r in rows.iter_mut() {
                if matches!(&r.body, RowBody::Delta { base, .. }
                    if base.origin == CONTENT_BASE || base.origin == *peer)
                {
                    r.uuid.clear();
                }
            }
            if !rows.is_empty() {
                tables.push(TableChanges { table: ti, rows });
            }
        }
        let bundle = Bundle {
            kind: BundleKind::Delta,
            sender: self.station.id,
            receiver: Some(*peer),
            schema: self.fingerprint,
            sender_vector: claim.clone(),
            wants: self.my_wants(peer)?,
            tables,
            layout: (self.schema_hints.get(peer).copied().or(p.schema) != Some(self.fingerprint))
                .then(|| self.layout()),
        };
        self.encode_for(peer, &bundle, "reconciled bundle")
    }

    /// Encodes `bundle` for `peer` (with our dictionary only when the peer
    /// advertised the same one) and logs the export.
    fn encode_for(
        &self,
        peer: &StationId,
        bundle: &Bundle,
        what: &str,
    ) -> Result<Exported, StoreError> {
        let p = self
            .peer_by_id(peer)?
            .ok_or(StoreError::UnknownPeer(*peer))?;
        let dict = self.dictionary()?;
        let use_dict = matches!(&dict, Some(d) if d.id != 0 && d.id == p.dict_id);
        let bytes = codec::encode(bundle, dict.as_ref(), use_dict).map_err(StoreError::Encode)?;
        let rows: u64 = bundle.tables.iter().map(|t| t.rows.len() as u64).sum();
        self.log_event(&LogEntry {
            peer: Some(p.name),
            direction: "out".into(),
            rows_out: rows,
            result: "ok".into(),
            message: format!(
                "{what} of {} bytes{}",
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
}

pub(super) fn uuid_key(w: &Want) -> Option<(u16, String)> {
    match &w.row {
        RowRef::Uuid(u) => Some((w.table, u.clone())),
        RowRef::Tag(_) => None,
    }
}

/// Versions we asked `peer` for by tag: (table name, tag).
pub(super) fn tag_wants(
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

/// One table as the web services' nicedbdump carries it: name, column names
/// (`id`, `uuid`, `modified_on`, then the synced columns) and rows of values.
#[derive(Clone, Debug, PartialEq)]
pub struct DumpTable {
    /// Table name.
    pub name: String,
    /// Column names, in the order of each row's values.
    pub columns: Vec<String>,
    /// Rows, each with one value per column.
    pub rows: Vec<Vec<Value>>,
}

/// Which rows `getdata` returns.
#[derive(Clone, Copy, Debug)]
pub enum GetScope<'a> {
    /// Rows whose `modified_on` is after this instant (tombstones included).
    After(&'a str),
    /// Rows changed here since the caller's last such call (by change tag, so
    /// rows that arrived from peers with old timestamps are not missed).
    SinceLastCall,
}

impl Store {
    /// The web services' `getdata` for `caller`: rows of every tracked table,
    /// the site-local `id` looked up here (NULL for a hard-deleted row).
    pub fn get_rows(
        &self,
        caller: &str,
        scope: GetScope<'_>,
    ) -> Result<Vec<DumpTable>, StoreError> {
        let holds = read_api_vector(&self.conn, caller)?;
        let after_ms = match scope {
            GetScope::After(t) => Some((t, crate::delta::time::parse_millis(t))),
            GetScope::SinceLastCall => None,
        };
        let newer = |m: &str| match after_ms {
            None => true,
            Some((text, ms)) => match (crate::delta::time::parse_millis(m), ms) {
                (Some(a), Some(b)) => a > b,
                _ => m > text,
            },
        };
        let nobody = StationId::default();
        let mut out = Vec::new();
        for info in &self.tables {
            let rows = match scope {
                GetScope::After(_) => self.table_rows(
                    info,
                    &Scope::All,
                    |_, _, m| newer(m),
                    |_, _, v| Ok(RowBody::Full(v)),
                )?,
                GetScope::SinceLastCall => self.table_rows(
                    info,
                    &Scope::Lacking {
                        peer: nobody,
                        holds: &holds,
                        uuids: BTreeSet::new(),
                    },
                    |_, tag, _| !holds.covers(&tag),
                    |_, _, v| Ok(RowBody::Full(v)),
                )?,
            };
            if rows.is_empty() {
                continue;
            }
            let id_synced = info.payload.iter().any(|c| c.name == "id");
            let id_local = info.local.iter().any(|c| c.name == "id");
            let mut columns = Vec::new();
            if !id_synced {
                columns.push("id".to_string());
            }
            columns.extend(["uuid".to_string(), "modified_on".to_string()]);
            columns.extend(info.payload.iter().map(|c| c.name.clone()));
            let mut id_of = self.conn.prepare_cached(&format!(
                "SELECT id FROM {} WHERE uuid = ?1",
                quote_ident(&info.name)
            ));
            let mut dump = DumpTable {
                name: info.name.clone(),
                columns,
                rows: Vec::with_capacity(rows.len()),
            };
            for r in rows {
                let RowBody::Full(values) = r.body else {
                    continue;
                };
                let mut row = Vec::with_capacity(values.len() + 3);
                if !id_synced {
                    let id = match (&mut id_of, id_local) {
                        (Ok(stmt), true) => stmt
                            .query_row([&r.uuid], |x| Ok(value_from_ref(x.get_ref(0)?)))
                            .optional()?
                            .unwrap_or(Value::Null),
                        _ => Value::Null,
                    };
                    row.push(id);
                }
                row.push(Value::Text(r.uuid));
                row.push(Value::Text(r.modified_on));
                row.extend(values);
                dump.rows.push(row);
            }
            out.push(dump);
        }
        Ok(out)
    }

    /// After a `getdata` without a timestamp: the caller now holds `held`
    /// (this station's vector read before its rows were).
    pub fn note_api_call(&self, caller: &str, held: &VersionVector) -> Result<(), StoreError> {
        self.writable()?;
        let v = held;
        let mut stmt = self.conn.prepare_cached(
            "INSERT INTO rs_api_vector (caller, origin, seq) VALUES (?1, ?2, ?3)
             ON CONFLICT (caller, origin) DO UPDATE SET seq = max(seq, excluded.seq)",
        )?;
        for (o, s) in &v.0 {
            stmt.execute(params![caller, o.0.to_vec(), *s as i64])?;
        }
        Ok(())
    }
}

pub(super) fn read_api_vector(
    conn: &Connection,
    caller: &str,
) -> Result<VersionVector, StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT origin, seq FROM rs_api_vector WHERE caller = ?1")?;
    let rows = stmt
        .query_map([caller], |r| {
            Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut v = VersionVector::default();
    for (o, s) in rows {
        v.raise(station_id_from(o)?, s.max(0) as u64);
    }
    Ok(v)
}
