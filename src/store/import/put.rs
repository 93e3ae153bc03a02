//! The web services' `putdata`: rows from an application or another Sahana
//! instance, applied by the same row merge as a bundle's (`merge_row`: the
//! table's conflict policy, conflict records, quarantine, fingerprints), under
//! new change tags of this station, so they travel on to its peers.

use rusqlite::params;

use super::{merge_row, Outcome, RowCtx};
use crate::delta::{RowBody, RowVersion, Tag, Value};
use crate::store::exchange::{read_api_vector, read_local, DumpTable};
use crate::store::{now_text, Store, StoreError};

/// What one `putdata` did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutReport {
    /// Rows written (new, or newer than the one held).
    pub applied: u64,
    /// Rows not newer than the one held: left as they are.
    pub not_newer: u64,
    /// Rows the table's conflict policy kept local.
    pub kept_local: u64,
    /// Rows that replaced a version the caller had not been given (by `getdata`).
    pub conflicts: u64,
    /// Rows the database refused (a constraint); see `status`.
    pub quarantined: u64,
    /// Tables this station does not track: ignored, as the blueprint says.
    pub ignored_tables: Vec<String>,
    /// Columns this station does not sync (`table.column`): ignored.
    pub ignored_columns: Vec<String>,
}

/// A value of a nicedbdump for a column declared `decl_type`: `base64:` text
/// goes back to the blob `getdata` wrote it from when the column holds blobs
/// (JSON has no bytes).
pub fn dump_value_for_column(v: &Value, decl_type: &str) -> Value {
    if let Value::Text(t) = v {
        if decl_type.to_ascii_uppercase().contains("BLOB") {
            if let Some(b) = t
                .strip_prefix("base64:")
                .and_then(|b64| data_encoding::BASE64.decode(b64.as_bytes()).ok())
            {
                return Value::Blob(b);
            }
        }
    }
    v.clone()
}

/// `a` is later than `b`: as instants when both read as times, else as text.
fn newer(a: &str, b: &str) -> bool {
    use crate::delta::time::parse_millis;
    match (parse_millis(a), parse_millis(b)) {
        (Some(x), Some(y)) => x > y,
        _ => a > b,
    }
}

struct Mapped<'a> {
    table: usize,
    uuid: usize,
    modified_on: usize,
    /// Per payload column, its position in the dump's columns.
    payload: Vec<Option<usize>>,
    absent: Vec<bool>,
    rows: &'a [Vec<Value>],
}

impl Store {
    /// Applies `tables` from web-services caller `caller` (its machine uuid) in
    /// one transaction: a row goes in only if this station has none under its
    /// uuid or it is newer than the one held. The site-local `id` is the
    /// station's own, as for rows from peers. Nothing changes on an error.
    pub fn put_rows(
        &mut self,
        caller: &str,
        tables: &[DumpTable],
    ) -> Result<PutReport, StoreError> {
        self.writable()?;
        let mut rep = PutReport::default();
        let mut mapped = Vec::new();
        for t in tables {
            let Some(ti) = self.tables.iter().position(|i| i.name == t.name) else {
                rep.ignored_tables.push(t.name.clone());
                continue;
            };
            let info = &self.tables[ti];
            let pos = |name: &str| t.columns.iter().position(|c| c == name);
            let (Some(uuid), Some(modified_on)) = (pos("uuid"), pos("modified_on")) else {
                return Err(StoreError::BadDump(format!(
                    "table {} has no 'uuid' or no 'modified_on' attribute",
                    t.name
                )));
            };
            let payload: Vec<Option<usize>> = info.payload.iter().map(|c| pos(&c.name)).collect();
            for c in &t.columns {
                let known = ["id", "uuid", "modified_on"].contains(&c.as_str())
                    || info.payload.iter().any(|p| &p.name == c)
                    || info.local.iter().any(|p| &p.name == c);
                if !known {
                    rep.ignored_columns.push(format!("{}.{c}", t.name));
                }
            }
            for (k, row) in t.rows.iter().enumerate() {
                if row.len() != t.columns.len() {
                    return Err(StoreError::BadDump(format!(
                        "table {} row {k} has {} values for {} attributes",
                        t.name,
                        row.len(),
                        t.columns.len()
                    )));
                }
                match (&row[uuid], &row[modified_on]) {
                    (Value::Text(u), Value::Text(_)) if !u.is_empty() => {}
                    _ => {
                        return Err(StoreError::BadDump(format!(
                            "table {} row {k}: 'uuid' and 'modified_on' must be non-empty strings",
                            t.name
                        )))
                    }
                }
            }
            mapped.push(Mapped {
                table: ti,
                uuid,
                modified_on,
                absent: payload.iter().map(Option::is_none).collect(),
                payload,
                rows: &t.rows,
            });
        }
        let me = self.station.id;
        let label = format!("api {caller}");
        // What the caller was given by `getdata`: overwriting anything newer is a conflict.
        let seen = read_api_vector(&self.conn, caller)?;
        let now = now_text();
        let tx = crate::store::write_tx(&self.conn)?;
        tx.execute("UPDATE rs_ctl SET applying = 1", [])?;
        let ctx = RowCtx {
            tx: &tx,
            sender: me,
            sender_vector: &seen,
            peer: &label,
            now: &now,
            seen_by_content: &std::collections::BTreeMap::new(),
        };
        let mut clock: i64 = tx.query_row("SELECT seq FROM rs_clock", [], |r| r.get(0))?;
        let mut per_table = Vec::new();
        for m in &mapped {
            let info = &self.tables[m.table];
            let (mut applied, mut conflicts) = (0u64, 0u64);
            for row in m.rows {
                let (Value::Text(uuid), Value::Text(modified_on)) =
                    (&row[m.uuid], &row[m.modified_on])
                else {
                    continue;
                };
                let local = read_local(&tx, info, uuid, me)?;
                if local
                    .as_ref()
                    .is_some_and(|l| !newer(modified_on, &l.modified_on))
                {
                    rep.not_newer += 1;
                    continue;
                }
                let values = m
                    .payload
                    .iter()
                    .zip(&info.payload)
                    .map(|(p, col)| {
                        p.map_or(Value::Null, |i| {
                            dump_value_for_column(&row[i], &col.decl_type)
                        })
                    })
                    .collect();
                let version = RowVersion {
                    uuid: uuid.clone(),
                    tag: Tag {
                        origin: me,
                        seq: (clock + 1) as u64,
                    },
                    writer: me,
                    modified_on: modified_on.clone(),
                    body: RowBody::Full(values),
                };
                match merge_row(&ctx, info, &m.absent, &version, local.as_ref(), None)? {
                    Outcome::Applied { conflict } => {
                        clock += 1;
                        applied += 1;
                        conflicts += conflict as u64;
                    }
                    Outcome::Kept { conflict, .. } => {
                        rep.kept_local += 1;
                        conflicts += conflict as u64;
                    }
                    Outcome::Same | Outcome::Want => rep.not_newer += 1,
                    Outcome::Quarantined => {
                        clock += 1;
                        rep.quarantined += 1;
                    }
                }
            }
            rep.applied += applied;
            rep.conflicts += conflicts;
            per_table.push((info.name.clone(), m.rows.len(), applied, conflicts));
        }
        tx.execute("UPDATE rs_clock SET seq = ?1", [clock])?;
        {
            let mut log = tx.prepare(
                "INSERT INTO rs_log (time, peer, tbl, direction, rows_in, rows_out, conflicts, result, message)
                 VALUES (?1, ?2, ?3, 'in', ?4, 0, ?5, 'ok', ?6)",
            )?;
            for (t, n, applied, c) in &per_table {
                log.execute(params![
                    now,
                    label,
                    t,
                    *n as i64,
                    *c as i64,
                    format!("putdata: {applied} applied")
                ])?;
            }
            let mut extra = String::new();
            if !rep.ignored_tables.is_empty() {
                extra += &format!(
                    ", tables not tracked here ignored: {}",
                    rep.ignored_tables.join(", ")
                );
            }
            if rep.quarantined > 0 {
                extra += &format!(", {} quarantined (see `radiosync status`)", rep.quarantined);
            }
            log.execute(params![
                now,
                label,
                Option::<String>::None,
                per_table.iter().map(|p| p.1 as i64).sum::<i64>(),
                rep.conflicts as i64,
                format!(
                    "putdata: {} applied, {} not newer, {} kept local{extra}",
                    rep.applied, rep.not_newer, rep.kept_local
                )
            ])?;
        }
        tx.execute("UPDATE rs_ctl SET applying = 0", [])?;
        tx.commit()?;
        Ok(rep)
    }
}
