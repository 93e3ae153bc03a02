//! Content fingerprints: per tracked table, the wrapping sum of the content digests of its
//! live rows (uuid, `modified_on` and every non-NULL synced column, by name; see
//! `delta::digest`). Two stations whose synced content is equal have equal fingerprints,
//! whatever their change logs say. Kept up to date row by row as the capture check and the
//! import record digests (`rs_fp` holds each row's part), so reading one costs O(tables).
//!
//! Soft-deleted rows count as absent: a row deleted here hard (a tombstone) ends
//! soft-deleted at a peer, and both must still compare equal.

use rusqlite::{params, Connection, OptionalExtension};
use sha2::{Digest, Sha256};

use super::schema::TableInfo;
use super::{Store, StoreError};
use crate::delta::Value;

/// Whether a row's synced values say it is soft-deleted.
pub(super) fn is_deleted(info: &TableInfo, values: &[Value]) -> bool {
    let Some(i) = info.payload.iter().position(|c| c.name == "deleted") else {
        return false;
    };
    match values.get(i) {
        Some(Value::Integer(n)) => *n != 0,
        Some(Value::Real(x)) => *x != 0.0,
        Some(Value::Text(t)) => matches!(t.as_str(), "1" | "T" | "t" | "true" | "True" | "TRUE"),
        _ => false,
    }
}

/// Records a row's part of its table's fingerprint (0: the row counts as absent).
pub(super) fn record(
    conn: &Connection,
    table: &str,
    uuid: &str,
    part: i64,
) -> Result<(), StoreError> {
    let old: i64 = conn
        .prepare_cached("SELECT part FROM rs_fp WHERE tbl = ?1 AND uuid = ?2")?
        .query_row(params![table, uuid], |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    if old == part {
        return Ok(());
    }
    if part == 0 {
        conn.prepare_cached("DELETE FROM rs_fp WHERE tbl = ?1 AND uuid = ?2")?
            .execute(params![table, uuid])?;
    } else {
        conn.prepare_cached("INSERT OR REPLACE INTO rs_fp (tbl, uuid, part) VALUES (?1, ?2, ?3)")?
            .execute(params![table, uuid, part])?;
    }
    let fp: i64 = conn
        .prepare_cached("SELECT coalesce(fp, 0) FROM rs_table WHERE name = ?1")?
        .query_row([table], |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    conn.prepare_cached("UPDATE rs_table SET fp = ?2 WHERE name = ?1")?
        .execute(params![table, fp.wrapping_add(part).wrapping_sub(old)])?;
    Ok(())
}

/// Records the digest radiosync computed for a row with these synced values.
pub(super) fn record_row(
    conn: &Connection,
    info: &TableInfo,
    uuid: &str,
    digest: i64,
    values: &[Value],
) -> Result<(), StoreError> {
    let part = if is_deleted(info, values) { 0 } else { digest };
    record(conn, &info.name, uuid, part)
}

/// One number for a station's whole synced content: each non-empty table's name and
/// fingerprint hashed, the hashes summed (order-independent). 0 for no content.
pub fn combine<'a>(tables: impl IntoIterator<Item = (&'a str, u64)>) -> u64 {
    let mut sum = 0u64;
    for (name, fp) in tables {
        if fp == 0 {
            continue;
        }
        let mut h = Sha256::new();
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update(fp.to_le_bytes());
        let out = h.finalize();
        let mut b = [0u8; 8];
        b.copy_from_slice(&out[..8]);
        sum = sum.wrapping_add(u64::from_le_bytes(b));
    }
    sum
}

impl Store {
    /// Per tracked table, its content fingerprint as last recorded (run
    /// `check_capture` first for writes made since the last check).
    pub fn table_fingerprints(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let mut out = Vec::new();
        for info in &self.tables {
            let fp: Option<i64> = self
                .conn
                .query_row(
                    "SELECT fp FROM rs_table WHERE name = ?1",
                    [&info.name],
                    |r| r.get(0),
                )
                .optional()?
                .flatten();
            out.push((info.name.clone(), fp.unwrap_or(0) as u64));
        }
        Ok(out)
    }

    /// The station's content fingerprint (`combine` of the tables').
    pub fn content_fingerprint(&self) -> Result<u64, StoreError> {
        let t = self.table_fingerprints()?;
        Ok(combine(t.iter().map(|(n, f)| (n.as_str(), *f))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combining_ignores_order_and_empty_tables() {
        let a = combine([("x", 5), ("y", 7)]);
        assert_eq!(a, combine([("y", 7), ("x", 5)]));
        assert_eq!(a, combine([("y", 7), ("x", 5), ("z", 0)]));
        assert_ne!(a, combine([("x", 7), ("y", 5)]));
        assert_eq!(combine([]), 0);
    }
}
