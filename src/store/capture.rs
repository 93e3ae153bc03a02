//! Change capture checks itself: on open and before each sync the station
//! verifies its triggers and its tables' shapes, takes in schema changes,
//! finds writes made while capture was missing, and holds back rows that
//! cannot travel (no uuid, a duplicated uuid, an unreadable `modified_on`).
//!
//! When all is well this costs O(tables) plus the rows changed since the last
//! check (`rs_row.digest` is NULL for those): each gets its content digest,
//! which is what a later scan compares against.

use std::collections::BTreeMap;

use rusqlite::{params, Connection, OptionalExtension};

use super::exchange::{payload_prefix, push_history, text_of};
use super::fingerprint;
use super::schema::{self, quote_ident, TableCheck, TableInfo};
use super::{now_text, value_from_ref, Store, StoreError};
use crate::delta::digest::row_digest;
use crate::delta::time::parse_millis;
use crate::delta::{StationId, Tag, Value};

/// What one capture check found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CaptureReport {
    /// Tables whose columns changed: (table, added, removed).
    pub evolved: Vec<(String, Vec<String>, Vec<String>)>,
    /// Tables whose triggers were missing and were put back.
    pub reinstalled: Vec<String>,
    /// Rows found changed, added or deleted while capture was missing.
    pub missed: u64,
    /// Rows newly held back.
    pub newly_held: u64,
}

/// A row that does not leave this station until it is fixed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldRow {
    /// Table name.
    pub table: String,
    /// Empty for the count of rows without a uuid.
    pub uuid: String,
    /// Why it is held, and what to fix.
    pub reason: String,
    /// When it was held (UTC text).
    pub since: String,
}

/// A row from a peer that this database could not take, kept aside and retried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuarantinedRow {
    /// Table name.
    pub table: String,
    /// The row's uuid.
    pub uuid: String,
    /// The peer it came from, by name (hex UUID if not registered).
    pub peer: String,
    /// Why this database refused it.
    pub reason: String,
    /// When it was refused (UTC text).
    pub since: String,
}

impl Store {
    /// Verify and repair change capture (see the module doc). Read-only
    /// stations only look.
    pub fn check_capture(&mut self) -> Result<CaptureReport, StoreError> {
        let mut rep = CaptureReport::default();
        let recorded = schema::recorded_tables(&self.conn)?;
        let mut tables = Vec::new();
        let mut problems = Vec::new();
        let mut checks = Vec::new();
        for rec in &recorded {
            match schema::check_table(&self.conn, rec)? {
                TableCheck::Broken { table, problem } => problems.push((table, problem)),
                c => checks.push(c),
            }
        }
        if self.read_only {
            for c in checks {
                match c {
                    TableCheck::Same(info) | TableCheck::Evolved { info, .. } => tables.push(info),
                    TableCheck::Broken { .. } => {}
                }
            }
            self.set_tables(tables, problems);
            return Ok(rep);
        }
        let me = self.station.id;
        let tx = super::write_tx(&self.conn)?;
        let now = now_text();
        for c in checks {
            let (info, evolved) = match c {
                TableCheck::Same(info) => (info, None),
                TableCheck::Evolved {
                    info,
                    added,
                    removed,
                } => (info, Some((added, removed))),
                TableCheck::Broken { .. } => continue,
            };
            let had_triggers = schema::triggers_present(&tx, &info.name)?;
            if let Some((added, removed)) = evolved {
                schema::install(&tx, &info)?;
                // Masks of the old column list would name the wrong columns.
                tx.execute("UPDATE rs_hist SET mask = -1 WHERE tbl = ?1", [&info.name])?;
                log(
                    &tx,
                    &now,
                    &info.name,
                    "ok",
                    &format!(
                        "columns changed (added: {}; removed: {}): the table syncs with its new \
                         columns; peers that lack them keep syncing the others",
                        list_or_none(&added),
                        list_or_none(&removed)
                    ),
                )?;
                rep.evolved.push((info.name.clone(), added, removed));
            } else if !had_triggers {
                schema::install(&tx, &info)?;
            }
            if !had_triggers {
                let missed = scan_missed_writes(&tx, &info, me)?;
                log(
                    &tx,
                    &now,
                    &info.name,
                    "warning",
                    &format!(
                        "change capture was missing (a table rebuild or migration dropped its \
                         triggers): put back; {missed} row(s) written meanwhile found and queued"
                    ),
                )?;
                rep.reinstalled.push(info.name.clone());
                rep.missed += missed;
            }
            rep.newly_held += check_changed_rows(&tx, &info, &now)?;
            tables.push(info);
        }
        tx.commit()?;
        self.set_tables(tables, problems);
        self.conn.execute(
            "INSERT OR IGNORE INTO rs_schema_seen (fp, layout) VALUES (?1, ?2)",
            params![
                self.fingerprint.0 as i64,
                super::import::layout_json(&self.layout())
            ],
        )?;
        Ok(rep)
    }

    fn set_tables(&mut self, tables: Vec<TableInfo>, problems: Vec<(String, String)>) {
        self.fingerprint = schema::fingerprint(&tables);
        self.tables = tables;
        self.problems = problems;
    }

    /// Rows held back from every peer until fixed.
    pub fn held_rows(&self) -> Result<Vec<HeldRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT tbl, uuid, reason, since FROM rs_held ORDER BY tbl, uuid")?;
        let rows = stmt
            .query_map([], |r| {
                Ok(HeldRow {
                    table: r.get(0)?,
                    uuid: r.get(1)?,
                    reason: r.get(2)?,
                    since: r.get(3)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Rows from peers this database could not take yet.
    pub fn quarantined_rows(&self) -> Result<Vec<QuarantinedRow>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT q.tbl, q.uuid, coalesce(p.name, hex(q.peer)), q.reason, q.since
             FROM rs_quarantine q LEFT JOIN rs_peer p ON p.uuid = q.peer ORDER BY q.tbl, q.uuid",
        )?;
        let rows = stmt
            .query_map([], |r| {
                Ok(QuarantinedRow {
                    table: r.get(0)?,
                    uuid: r.get(1)?,
                    peer: r.get(2)?,
                    reason: r.get(3)?,
                    since: r.get(4)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }
}

fn list_or_none(cols: &[String]) -> String {
    if cols.is_empty() {
        "none".into()
    } else {
        cols.join(", ")
    }
}

fn log(tx: &Connection, now: &str, table: &str, result: &str, msg: &str) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO rs_log (time, tbl, direction, result, message) VALUES (?1, ?2, 'local', ?3, ?4)",
        params![now, table, result, msg],
    )?;
    Ok(())
}

/// A new local tag for a row found changed behind capture's back.
fn retag(
    tx: &Connection,
    table: &str,
    uuid: &str,
    me: StationId,
    mask: u64,
) -> Result<(), StoreError> {
    tx.execute("UPDATE rs_clock SET seq = seq + 1", [])?;
    let seq: i64 = tx.query_row("SELECT seq FROM rs_clock", [], |r| r.get(0))?;
    tx.prepare_cached(
        "INSERT OR REPLACE INTO rs_row (tbl, uuid, origin, seq, writer, digest) VALUES (?1, ?2, ?3, ?4, ?3, NULL)",
    )?
    .execute(params![table, uuid, me.0.to_vec(), seq])?;
    push_history(
        tx,
        table,
        uuid,
        Tag {
            origin: me,
            seq: seq as u64,
        },
        mask,
    )?;
    Ok(())
}

fn payload_values(r: &rusqlite::Row<'_>, from: usize, n: usize) -> rusqlite::Result<Vec<Value>> {
    (0..n)
        .map(|i| r.get_ref(from + i).map(value_from_ref))
        .collect()
}

fn digest_of(info: &TableInfo, uuid: &str, modified_on: &str, values: &[Value]) -> i64 {
    row_digest(
        uuid,
        modified_on,
        info.payload.iter().map(|c| c.name.as_str()).zip(values),
    )
}

/// Capture was missing on this table: compare every row with its digest,
/// find rows inserted (no record) and deleted (a record, no row). O(rows),
/// only after triggers were found missing.
fn scan_missed_writes(tx: &Connection, info: &TableInfo, me: StationId) -> Result<u64, StoreError> {
    let qt = quote_ident(&info.name);
    let n = info.payload.len();
    let mut changed: Vec<String> = Vec::new();
    {
        let mut stmt = tx.prepare(&format!(
            "SELECT t.uuid, t.modified_on{}, r.uuid IS NOT NULL, r.digest FROM {qt} t
             LEFT JOIN rs_row r ON r.tbl = ?1 AND r.uuid = t.uuid WHERE t.uuid IS NOT NULL",
            payload_prefix(info)
        ))?;
        let mut rows = stmt.query([&info.name])?;
        while let Some(r) = rows.next()? {
            let uuid = text_of(value_from_ref(r.get_ref(0)?));
            let modified_on = text_of(value_from_ref(r.get_ref(1)?));
            let values = payload_values(r, 2, n)?;
            let recorded: bool = r.get(2 + n)?;
            let digest: Option<i64> = r.get(3 + n)?;
            let differs = match digest {
                _ if !recorded => true,
                // NULL: changed here since the last check, already queued.
                None => false,
                Some(d) => d != digest_of(info, &uuid, &modified_on, &values),
            };
            if differs {
                changed.push(uuid);
            }
        }
    }
    for uuid in &changed {
        tx.execute(
            "DELETE FROM rs_tomb WHERE tbl = ?1 AND uuid = ?2",
            params![info.name, uuid],
        )?;
        tx.execute(
            "DELETE FROM rs_tomb_val WHERE tbl = ?1 AND uuid = ?2",
            params![info.name, uuid],
        )?;
        retag(tx, &info.name, uuid, me, u64::MAX)?;
    }
    // Deleted while capture was missing: a tombstone without the last values.
    let gone: Vec<String> = {
        let mut stmt = tx.prepare(&format!(
            "SELECT r.uuid FROM rs_row r WHERE r.tbl = ?1
               AND NOT EXISTS (SELECT 1 FROM {qt} t WHERE t.uuid = r.uuid)
               AND NOT EXISTS (SELECT 1 FROM rs_tomb b WHERE b.tbl = r.tbl AND b.uuid = r.uuid)"
        ))?;
        let v = stmt
            .query_map([&info.name], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        v
    };
    let mask: i64 = schema::deleted_mask(info).parse().unwrap_or(-1);
    for uuid in &gone {
        tx.execute(
            "INSERT OR REPLACE INTO rs_tomb (tbl, uuid, modified_on, deleted) VALUES (?1, ?2, ?3, 1)",
            params![info.name, uuid, now_text()],
        )?;
        retag(tx, &info.name, uuid, me, mask as u64)?;
    }
    Ok((changed.len() + gone.len()) as u64)
}

/// The rows changed since the last check (digest NULL): record their digest,
/// and hold back those that cannot travel. Returns rows newly held.
fn check_changed_rows(tx: &Connection, info: &TableInfo, now: &str) -> Result<u64, StoreError> {
    let qt = quote_ident(&info.name);
    let n = info.payload.len();
    // uuid -> (modified_on, values, rows sharing the uuid)
    let mut seen: BTreeMap<String, (String, Vec<Value>, u64)> = BTreeMap::new();
    {
        let mut stmt = tx.prepare(&format!(
            "SELECT r.uuid, t.modified_on{} FROM rs_row r INDEXED BY rs_row_undigested
             JOIN {qt} t ON t.uuid = r.uuid WHERE r.tbl = ?1 AND r.digest IS NULL",
            payload_prefix(info)
        ))?;
        let mut rows = stmt.query([&info.name])?;
        while let Some(r) = rows.next()? {
            let uuid: String = r.get(0)?;
            let modified_on = text_of(value_from_ref(r.get_ref(1)?));
            let values = payload_values(r, 2, n)?;
            seen.entry(uuid)
                .and_modify(|e| e.2 += 1)
                .or_insert((modified_on, values, 1));
        }
    }
    let mut newly = 0;
    for (uuid, (modified_on, values, count)) in &seen {
        let reason = if *count > 1 {
            Some(format!(
                "{count} rows share this uuid: give each its own uuid (or delete the copy)"
            ))
        } else if parse_millis(modified_on).is_none() {
            Some(format!(
                "modified_on {modified_on:?} is not a readable time: write it as ISO 8601 in UTC"
            ))
        } else {
            None
        };
        match reason {
            Some(reason) => {
                let before: Option<String> = tx
                    .query_row(
                        "SELECT reason FROM rs_held WHERE tbl = ?1 AND uuid = ?2",
                        params![info.name, uuid],
                        |r| r.get(0),
                    )
                    .optional()?;
                if before.as_deref() != Some(reason.as_str()) {
                    tx.execute(
                        "INSERT OR REPLACE INTO rs_held (tbl, uuid, reason, since) VALUES (?1, ?2, ?3, ?4)",
                        params![info.name, uuid, reason, now],
                    )?;
                    log(
                        tx,
                        now,
                        &info.name,
                        "held",
                        &format!("row {uuid} held back from every peer: {reason}"),
                    )?;
                    newly += 1;
                }
                // A duplicate stays undigested so every check looks again.
                if *count == 1 {
                    set_digest(tx, info, uuid, modified_on, values)?;
                }
            }
            None => {
                let released = tx.execute(
                    "DELETE FROM rs_held WHERE tbl = ?1 AND uuid = ?2",
                    params![info.name, uuid],
                )?;
                if released > 0 {
                    // Versions made while held never reached a peer: no delta
                    // may take them as its base, so the row goes in full.
                    tx.execute(
                        "UPDATE rs_hist SET mask = -1 WHERE tbl = ?1 AND uuid = ?2",
                        params![info.name, uuid],
                    )?;
                    log(
                        tx,
                        now,
                        &info.name,
                        "ok",
                        &format!("row {uuid} fixed: it travels again"),
                    )?;
                }
                set_digest(tx, info, uuid, modified_on, values)?;
            }
        }
    }
    // Tombstones need no digest: mark them so the undigested index stays small.
    // A deleted row leaves the fingerprint.
    let gone: Vec<String> = tx
        .prepare(
            "SELECT uuid FROM rs_row WHERE tbl = ?1 AND digest IS NULL
               AND uuid IN (SELECT uuid FROM rs_tomb WHERE tbl = ?1)",
        )?
        .query_map([&info.name], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for uuid in &gone {
        fingerprint::record(tx, &info.name, uuid, 0)?;
    }
    tx.execute(
        "UPDATE rs_row SET digest = 0 WHERE tbl = ?1 AND digest IS NULL
           AND uuid IN (SELECT uuid FROM rs_tomb WHERE tbl = ?1)",
        [&info.name],
    )?;
    // Rows without a uuid: the triggers flag the table; count only then.
    let flagged: Option<String> = tx
        .query_row(
            "SELECT reason FROM rs_held WHERE tbl = ?1 AND uuid = ''",
            [&info.name],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(before) = flagged {
        let nulls: i64 = tx.query_row(
            &format!("SELECT count(*) FROM {qt} WHERE uuid IS NULL"),
            [],
            |r| r.get(0),
        )?;
        if nulls == 0 {
            tx.execute(
                "DELETE FROM rs_held WHERE tbl = ?1 AND uuid = ''",
                [&info.name],
            )?;
        } else {
            let reason = format!(
                "{nulls} row(s) have no uuid and never sync: give them one (e.g. lower(hex(randomblob(16))))"
            );
            if before != reason {
                tx.execute(
                    "UPDATE rs_held SET reason = ?2, since = ?3 WHERE tbl = ?1 AND uuid = ''",
                    params![info.name, reason, now],
                )?;
                log(tx, now, &info.name, "held", &reason)?;
                newly += 1;
            }
        }
    }
    Ok(newly)
}

fn set_digest(
    tx: &Connection,
    info: &TableInfo,
    uuid: &str,
    modified_on: &str,
    values: &[Value],
) -> Result<(), StoreError> {
    let d = digest_of(info, uuid, modified_on, values);
    tx.prepare_cached("UPDATE rs_row SET digest = ?1 WHERE tbl = ?2 AND uuid = ?3")?
        .execute(params![d, info.name, uuid])?;
    // Still the version tracking began with: that is the row's base content.
    tx.prepare_cached(
        "UPDATE rs_base SET digest = ?1 WHERE tbl = ?2 AND uuid = ?3 AND digest IS NULL
           AND (origin, seq) = (SELECT origin, seq FROM rs_row WHERE tbl = ?2 AND uuid = ?3)",
    )?
    .execute(params![d, info.name, uuid])?;
    fingerprint::record_row(tx, info, uuid, d, values)
}
