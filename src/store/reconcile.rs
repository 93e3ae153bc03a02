//! The store's side of set reconciliation (`recon`): every synced row as one
//! 32-bit item, read from the per-row digests the fingerprints already keep
//! (`rs_fp`), so listing them reads no application table.

use std::collections::BTreeSet;

use rusqlite::params;
use sha2::{Digest, Sha256};

use super::{Store, StoreError};

/// One synced row as a reconciliation item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReconItem {
    /// The item: a salted hash of the table, the uuid and the row's content
    /// digest (or "deleted"), never 0.
    pub item: u32,
    /// The table's index among the tracked tables.
    pub table: u16,
    /// The row's uuid.
    pub uuid: String,
}

/// The item of a row: live rows by their content digest; soft-deleted rows and
/// tombstones alike by "deleted", so a row deleted here hard and there soft is
/// the same item on both sides.
pub fn item_of(salt: u64, table: &str, uuid: &str, digest: Option<i64>) -> u32 {
    let mut h = Sha256::new();
    h.update(salt.to_le_bytes());
    for part in [table.as_bytes(), uuid.as_bytes()] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    match digest {
        Some(d) => h.update(d.to_le_bytes()),
        None => h.update(b"deleted"),
    }
    let out = h.finalize();
    u32::from_le_bytes([out[0], out[1], out[2], out[3]]).max(1)
}

impl Store {
    /// Every synced row of the tracked tables as an item, under `salt`. Rows
    /// held back (they cannot travel) are left out. Run `check_capture` first
    /// so every digest is current.
    pub fn recon_items(&self, salt: u64) -> Result<Vec<ReconItem>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT r.uuid, f.part FROM rs_row r
             LEFT JOIN rs_fp f ON f.tbl = r.tbl AND f.uuid = r.uuid
             WHERE r.tbl = ?1
               AND NOT EXISTS (SELECT 1 FROM rs_held h WHERE h.tbl = r.tbl AND h.uuid = r.uuid)",
        )?;
        let mut out = Vec::new();
        for (i, info) in self.tables.iter().enumerate() {
            let rows = stmt.query_map(params![info.name], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Option<i64>>(1)?))
            })?;
            for row in rows {
                let (uuid, part) = row?;
                out.push(ReconItem {
                    item: item_of(salt, &info.name, &uuid, part),
                    table: i as u16,
                    uuid,
                });
            }
        }
        Ok(out)
    }

    /// The rows behind `items` (ours, under `salt`), as (table index, uuid).
    /// Items no row of ours has now (changed since they were listed) are left out.
    pub fn recon_rows(
        &self,
        salt: u64,
        items: &[u32],
    ) -> Result<BTreeSet<(u16, String)>, StoreError> {
        let wanted: BTreeSet<u32> = items.iter().copied().collect();
        Ok(self
            .recon_items(salt)?
            .into_iter()
            .filter(|i| wanted.contains(&i.item))
            .map(|i| (i.table, i.uuid))
            .collect())
    }
}
