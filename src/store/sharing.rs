//! Per-peer table lists (`peer add/edit --tables`), as in the Eden repository
//! registry: a table is exchanged with a peer both ways, or not at all.
//!
//! One list for both directions, not separate push and pull lists: with a table
//! that flows only one way the two stations can never show equal content for it,
//! so no sync between them could ever be verified. `--push no` makes a peer
//! pull-only for every table.
//!
//! Version vectors are per origin, not per table, so a station claims rows of
//! tables it does not share with the peer it got the claim from. Such a claim
//! can hide rows from a third station; the content fingerprints (computed per
//! peer over the shared tables) then differ and reconciliation sends exactly the
//! hidden rows. See docs/security.md.

use rusqlite::params;

use super::{Store, StoreError};
use crate::delta::StationId;

/// The stored form: names sorted, one per line (a table name may hold a comma).
pub(super) fn parse_list(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

impl Store {
    /// The tables exchanged with `peer` (`None`: every tracked table). Each name
    /// must be a tracked table.
    pub fn set_peer_tables(
        &self,
        peer: &StationId,
        tables: Option<&[String]>,
    ) -> Result<(), StoreError> {
        self.writable()?;
        let text = match tables {
            None => None,
            Some(list) => {
                let mut names: Vec<String> = Vec::new();
                for t in list {
                    if !self.tables.iter().any(|i| &i.name == t) {
                        return Err(StoreError::NotTracked(t.clone()));
                    }
                    names.push(t.clone());
                }
                names.sort();
                names.dedup();
                Some(names.join("\n"))
            }
        };
        let changed = self.conn.execute(
            "UPDATE rs_peer SET tables = ?1 WHERE uuid = ?2",
            params![text, peer.0.to_vec()],
        )?;
        if changed == 0 {
            return Err(StoreError::UnknownPeer(*peer));
        }
        Ok(())
    }

    /// Per tracked table (by index), whether it is exchanged with `peer`. An
    /// unregistered peer shares nothing.
    pub fn shared_tables(&self, peer: &StationId) -> Result<Vec<bool>, StoreError> {
        let Some(p) = self.peer_by_id(peer)? else {
            return Ok(vec![false; self.tables.len()]);
        };
        Ok(self
            .tables
            .iter()
            .map(|t| p.tables.as_ref().is_none_or(|l| l.contains(&t.name)))
            .collect())
    }

    /// The content fingerprint as `peer` should see it: over the tables shared
    /// with it (all of them for most peers).
    pub fn fingerprint_for(&self, peer: &StationId) -> Result<u64, StoreError> {
        let shared = self.shared_tables(peer)?;
        let t = self.table_fingerprints()?;
        Ok(super::fingerprint::combine(
            t.iter()
                .zip(&shared)
                .filter(|(_, s)| **s)
                .map(|((n, f), _)| (n.as_str(), *f)),
        ))
    }
}
