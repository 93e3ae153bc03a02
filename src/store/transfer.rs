//! Radio transfers in flight, kept in the station's own database so a resumed
//! session sends nothing twice: the exact bundle being sent to a peer (until
//! it confirms it) and the stored prefix of a bundle coming from a peer.
//!
//! `rs_transfer` holds one row per peer and direction (`out`: the kept bundle,
//! bytes inline; `in`: the partial's id and total), `rs_transfer_chunk` the
//! partial's chunks by offset. Keeping them in SQLite lets the import delete
//! the partial in the same transaction that applies the bundle.

use rusqlite::{params, Connection, OptionalExtension};

use super::{Store, StoreError};
use crate::codec;
use crate::delta::{RowBody, StationId};
use crate::sync::session::PeerAuth;
use crate::sync::{BundleId, KeptOutgoing, PartialIncoming, PeerState};

/// Deletes the partial from `peer` (inside the caller's transaction).
pub(crate) fn clear_partial(conn: &Connection, peer: &StationId) -> Result<(), StoreError> {
    let key = peer.0.to_vec();
    conn.execute(
        "DELETE FROM rs_transfer WHERE peer = ?1 AND dir = 'in'",
        [&key],
    )?;
    conn.execute("DELETE FROM rs_transfer_chunk WHERE peer = ?1", [&key])?;
    Ok(())
}

/// What is stored of a partial (`Store::transfer_held`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldPartial {
    /// The bundle.
    pub id: BundleId,
    /// Its length.
    pub total: u64,
    /// The ranges (offset, length) stored, ascending.
    pub ranges: Vec<(u64, u64)>,
    /// It can be a broadcast's: its first bytes are a signed envelope's, or it
    /// has none yet (a session's partial always starts at 0).
    pub maybe_cast: bool,
}

fn id_sql(id: BundleId) -> i64 {
    id.0 as i64
}

impl Store {
    /// What was kept for `peer` from earlier sessions. Writes when what is
    /// kept is of no use: a kept bundle that no longer matches its id, and
    /// partial pieces past the ones a Hello can name, are deleted.
    pub fn transfer_state(&self, peer: &StationId) -> Result<PeerState, StoreError> {
        let key = peer.0.to_vec();
        let outgoing = self
            .conn
            .query_row(
                "SELECT id, bytes FROM rs_transfer WHERE peer = ?1 AND dir = 'out'",
                [&key],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Option<Vec<u8>>>(1)?)),
            )
            .optional()?;
        // A kept bundle whose bytes no longer match their id is dropped: the
        // next session exports afresh.
        let outgoing = match outgoing {
            Some((id, Some(bytes))) if BundleId::of(&bytes) == BundleId(id as u64) => {
                Some(KeptOutgoing {
                    id: BundleId(id as u64),
                    bytes,
                })
            }
            Some(_) => {
                self.conn.execute(
                    "DELETE FROM rs_transfer WHERE peer = ?1 AND dir = 'out'",
                    [&key],
                )?;
                None
            }
            None => None,
        };
        let head = self
            .conn
            .query_row(
                "SELECT id, total FROM rs_transfer WHERE peer = ?1 AND dir = 'in'",
                [&key],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
            )
            .optional()?;
        let incoming = match head {
            None => None,
            Some((id, total)) => {
                let mut stmt = self.conn.prepare(
                    "SELECT off, bytes FROM rs_transfer_chunk WHERE peer = ?1 ORDER BY off",
                )?;
                let chunks = stmt
                    .query_map([&key], |r| {
                        Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                // Chunks never overlap (`transfer_save_chunk`): the prefix from
                // 0, then the pieces past the first gap, touching ones joined.
                let total = total.max(0) as u64;
                let mut bytes = Vec::new();
                let mut later: Vec<(u64, Vec<u8>)> = Vec::new();
                for (off, c) in chunks {
                    let off = off.max(0) as u64;
                    if off + c.len() as u64 > total {
                        break;
                    }
                    match later.last_mut() {
                        None if off == bytes.len() as u64 => bytes.extend_from_slice(&c),
                        Some((o, b)) if *o + b.len() as u64 == off => b.extend_from_slice(&c),
                        _ => later.push((off, c)),
                    }
                }
                // A Hello names at most this many pieces; the sender sends the
                // rest again, so they must not stay stored (a chunk over them
                // would be refused).
                let max = crate::sync::message::MAX_RESUME_PIECES;
                if let Some(&(cut, _)) = later.get(max) {
                    if !self.read_only {
                        self.conn.execute(
                            "DELETE FROM rs_transfer_chunk WHERE peer = ?1 AND off >= ?2",
                            params![key, cut as i64],
                        )?;
                    }
                    later.truncate(max);
                }
                Some(PartialIncoming {
                    id: BundleId(id as u64),
                    total_len: total,
                    bytes,
                    later,
                })
            }
        };
        let info = self.peer_by_id(peer)?;
        let reconcile = info.as_ref().is_some_and(|p| p.differs_since.is_some());
        let synced_before = info
            .as_ref()
            .is_some_and(|p| p.last_sync.is_some() || p.verified_at.is_some());
        Ok(PeerState {
            outgoing,
            incoming,
            reconcile,
            salt: rand::random(),
            synced_before,
            auth: None,
            refuse_push: info.as_ref().is_some_and(|p| !p.may_push),
        })
    }

    /// What a session with `peer` needs to authenticate (`None`: the peer is
    /// registered with `--no-auth`). The nonce is a responder's (random); a
    /// caller replaces it with `next_hello_nonce`.
    pub fn peer_auth(&self, peer: &StationId) -> Result<Option<PeerAuth>, StoreError> {
        Ok(match self.peer_secret(peer)? {
            Some(secret) => Some(PeerAuth {
                secret,
                nonce: rand::random(),
                last_peer_nonce: self.peer_hello_nonce(peer)?,
            }),
            None => None,
        })
    }

    /// Rows this station asked `peer` for in full and still lacks.
    pub fn wanted_from(&self, peer: &StationId) -> Result<u64, StoreError> {
        let n: i64 = self.conn.query_row(
            "SELECT (SELECT count(*) FROM rs_want WHERE peer = ?1)
                  + (SELECT count(*) FROM rs_want_tag WHERE peer = ?1)",
            [peer.0.to_vec()],
            |r| r.get(0),
        )?;
        Ok(n.max(0) as u64)
    }

    /// Keep the exact bytes being sent to `peer` (replacing any earlier ones).
    pub fn transfer_keep_outgoing(
        &self,
        peer: &StationId,
        id: BundleId,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT OR REPLACE INTO rs_transfer (peer, dir, id, total, bytes) VALUES (?1, 'out', ?2, ?3, ?4)",
            params![peer.0.to_vec(), id_sql(id), bytes.len() as i64, bytes],
        )?;
        Ok(())
    }

    /// The peer committed the bundle kept for it: rows that bundle carried in
    /// full are no longer owed to the peer. Without this, a peer with nothing
    /// to send back (no bundle, so no fresh wants list) would get them again
    /// on every later sync.
    pub fn transfer_outgoing_applied(&self, peer: &StationId) -> Result<u64, StoreError> {
        let Some(kept) = self.transfer_state(peer)?.outgoing else {
            return Ok(0);
        };
        let dict = self.dictionary()?;
        let ends = codec::Ends {
            sender: self.station.id,
            receiver: Some(*peer),
        };
        let bundle = match crate::auth::SignedFile::parse(&kept.bytes) {
            // A broadcast of ours (`store::cast`): its bundle is unaddressed.
            Some(f) => {
                let payload = &kept.bytes[kept.bytes.len() - f.payload_len()..];
                let (_, inner) = super::cast::parse_cast_payload(payload)?;
                let ends = codec::Ends {
                    receiver: None,
                    ..ends
                };
                codec::decode(inner, dict.as_ref(), &ends)?
            }
            None => codec::decode(&kept.bytes, dict.as_ref(), &ends)?,
        };
        let mut cleared = 0;
        for tc in &bundle.tables {
            let Some(info) = self.tables.get(tc.table as usize) else {
                continue;
            };
            for row in &tc.rows {
                // A priority class's bundle claims less than it carries: remember
                // what the peer now holds beyond its vector, so it is not sent again.
                // Not a delta named by its base tag: if the peer could not place
                // one, its want for it is by tag, which a later claim clears. (A
                // row named by uuid it could not place, it asks for by uuid, and
                // that want stands until the row comes.) With the claim's entry for
                // the row's origin: a peer whose vector is below it again
                // (restored from a backup) holds none of it.
                if !bundle.sender_vector.covers(&row.tag) && !row.by_base() {
                    self.conn.execute(
                        "INSERT OR IGNORE INTO rs_peer_sent (peer, tbl, origin, seq, claim)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![
                            peer.0.to_vec(),
                            info.name,
                            row.tag.origin.0.to_vec(),
                            row.tag.seq as i64,
                            bundle.sender_vector.get(&row.tag.origin) as i64
                        ],
                    )?;
                }
                if matches!(row.body, RowBody::Full(_)) {
                    cleared += self.conn.execute(
                        "DELETE FROM rs_peer_want WHERE peer = ?1 AND tbl = ?2 AND uuid = ?3 AND kind = 'asked'",
                        params![peer.0.to_vec(), info.name, row.uuid],
                    )? as u64;
                }
            }
        }
        Ok(cleared)
    }

    /// The peer settled bundle `id`: forget it.
    pub fn transfer_drop_outgoing(&self, peer: &StationId, id: BundleId) -> Result<(), StoreError> {
        self.conn.execute(
            "DELETE FROM rs_transfer WHERE peer = ?1 AND dir = 'out' AND id = ?2",
            params![peer.0.to_vec(), id_sql(id)],
        )?;
        Ok(())
    }

    /// Start a fresh partial for bundle `id` from `peer`, replacing any.
    pub fn transfer_begin_partial(
        &self,
        peer: &StationId,
        id: BundleId,
        total_len: u64,
    ) -> Result<(), StoreError> {
        let tx = super::write_tx(&self.conn)?;
        clear_partial(&tx, peer)?;
        tx.execute(
            "INSERT INTO rs_transfer (peer, dir, id, total) VALUES (?1, 'in', ?2, ?3)",
            params![peer.0.to_vec(), id_sql(id), total_len as i64],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The partial from `peer`, without its bytes.
    pub fn transfer_held(&self, peer: &StationId) -> Result<Option<HeldPartial>, StoreError> {
        let key = peer.0.to_vec();
        let head: Option<(i64, i64)> = self
            .conn
            .query_row(
                "SELECT id, total FROM rs_transfer WHERE peer = ?1 AND dir = 'in'",
                [&key],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((id, total)) = head else {
            return Ok(None);
        };
        let mut stmt = self.conn.prepare_cached(
            "SELECT off, length(bytes), substr(bytes, 1, 8) FROM rs_transfer_chunk
             WHERE peer = ?1 ORDER BY off",
        )?;
        let mut ranges = Vec::new();
        let mut cast = true;
        for r in stmt.query_map([&key], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Vec<u8>>(2)?,
            ))
        })? {
            let (off, len, head) = r?;
            if off == 0 && !crate::auth::SignedFile::is_signed(&head) {
                cast = false;
            }
            ranges.push((off.max(0) as u64, len.max(0) as u64));
        }
        Ok(Some(HeldPartial {
            id: BundleId(id as u64),
            total: total.max(0) as u64,
            ranges,
            maybe_cast: cast,
        }))
    }

    /// Store one chunk of the partial of bundle `id`. A chunk for another
    /// bundle, past its end, or over bytes already stored, is refused.
    pub fn transfer_save_chunk(
        &self,
        peer: &StationId,
        id: BundleId,
        offset: u64,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        let key = peer.0.to_vec();
        let tx = super::write_tx(&self.conn)?;
        let head: Option<(i64, i64)> = tx
            .query_row(
                "SELECT id, total FROM rs_transfer WHERE peer = ?1 AND dir = 'in'",
                [&key],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((_, total)) = head.filter(|h| h.0 == id_sql(id)) else {
            return Err(StoreError::Malformed(format!(
                "chunk of bundle {id} without its partial transfer"
            )));
        };
        let end = offset + bytes.len() as u64;
        let overlaps: i64 = tx.query_row(
            "SELECT count(*) FROM rs_transfer_chunk
             WHERE peer = ?1 AND off < ?2 AND off + length(bytes) > ?3",
            params![key, end as i64, offset as i64],
            |r| r.get(0),
        )?;
        if overlaps > 0 || end > total.max(0) as u64 {
            return Err(StoreError::Malformed(format!(
                "chunk of {} bytes at offset {offset} of bundle {id} overlaps stored bytes or its end",
                bytes.len()
            )));
        }
        tx.execute(
            "INSERT INTO rs_transfer_chunk (peer, off, bytes) VALUES (?1, ?2, ?3)",
            params![key, offset as i64, bytes],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Delete the partial from `peer` if it is bundle `id`'s.
    pub fn transfer_discard_partial(
        &self,
        peer: &StationId,
        id: BundleId,
    ) -> Result<(), StoreError> {
        let key = peer.0.to_vec();
        let head: Option<i64> = self
            .conn
            .query_row(
                "SELECT id FROM rs_transfer WHERE peer = ?1 AND dir = 'in'",
                [&key],
                |r| r.get(0),
            )
            .optional()?;
        if head == Some(id_sql(id)) {
            let tx = super::write_tx(&self.conn)?;
            clear_partial(&tx, peer)?;
            tx.commit()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    fn in_flight(st: &crate::sync::PeerState) -> (bool, bool) {
        (st.outgoing.is_some(), st.incoming.is_some())
    }
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::init(dir.path().join("a.sqlite"), Some("a"), None).unwrap();
        s.add_peer("b", StationId([7; 16]), None).unwrap();
        (dir, s)
    }

    #[test]
    fn kept_and_partial_round_trip() {
        let (_d, s) = store();
        let p = StationId([7; 16]);
        assert_eq!(in_flight(&s.transfer_state(&p).unwrap()), (false, false));
        let bundle = b"bundle bytes".to_vec();
        let id = BundleId::of(&bundle);
        s.transfer_keep_outgoing(&p, id, &bundle).unwrap();
        s.transfer_begin_partial(&p, BundleId(9), 10).unwrap();
        s.transfer_save_chunk(&p, BundleId(9), 0, b"abcd").unwrap();
        s.transfer_save_chunk(&p, BundleId(9), 4, b"ef").unwrap();
        // Over stored bytes, past the end and wrong bundle are refused, nothing stored.
        assert!(s.transfer_save_chunk(&p, BundleId(9), 3, b"x").is_err());
        assert!(s.transfer_save_chunk(&p, BundleId(9), 9, b"xy").is_err());
        assert!(s.transfer_save_chunk(&p, BundleId(8), 6, b"x").is_err());
        let st = s.transfer_state(&p).unwrap();
        assert_eq!(st.outgoing, Some(KeptOutgoing { id, bytes: bundle }));
        assert_eq!(
            st.incoming,
            Some(PartialIncoming {
                id: BundleId(9),
                total_len: 10,
                bytes: b"abcdef".to_vec(),
                later: Vec::new(),
            })
        );
        // A piece past a gap is held apart, and joins a touching one.
        s.transfer_save_chunk(&p, BundleId(9), 8, b"i").unwrap();
        s.transfer_save_chunk(&p, BundleId(9), 9, b"j").unwrap();
        let held = s.transfer_state(&p).unwrap().incoming.unwrap();
        assert_eq!(held.bytes, b"abcdef");
        assert_eq!(held.later, vec![(8, b"ij".to_vec())]);
        // Discarding another bundle's partial leaves this one.
        s.transfer_discard_partial(&p, BundleId(8)).unwrap();
        assert!(s.transfer_state(&p).unwrap().incoming.is_some());
        s.transfer_discard_partial(&p, BundleId(9)).unwrap();
        s.transfer_drop_outgoing(&p, id).unwrap();
        assert_eq!(in_flight(&s.transfer_state(&p).unwrap()), (false, false));
    }

    /// Another process in the middle of a write (the daemon, an application):
    /// a store write waits for it instead of failing "database is locked".
    #[test]
    fn a_write_waits_for_another_process_writing() {
        let (d, s) = store();
        let p = StationId([7; 16]);
        s.transfer_begin_partial(&p, BundleId(4), 100).unwrap();
        let other = rusqlite::Connection::open(d.path().join("a.sqlite")).unwrap();
        other
            .busy_timeout(std::time::Duration::from_secs(10))
            .unwrap();
        other
            .execute_batch("BEGIN IMMEDIATE; UPDATE rs_clock SET seq = seq;")
            .unwrap();
        let committer = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            other.execute_batch("COMMIT").unwrap();
        });
        // Reads, then writes, in one transaction, while the other commits.
        s.transfer_save_chunk(&p, BundleId(4), 0, b"abc").unwrap();
        committer.join().unwrap();
        assert_eq!(
            s.transfer_state(&p).unwrap().incoming.unwrap().bytes,
            b"abc"
        );
    }

    #[test]
    fn pieces_past_the_ones_a_hello_names_are_dropped() {
        let (_d, s) = store();
        let p = StationId([7; 16]);
        s.transfer_begin_partial(&p, BundleId(3), 1000).unwrap();
        for k in 0..40u64 {
            s.transfer_save_chunk(&p, BundleId(3), 10 + 20 * k, b"xy")
                .unwrap();
        }
        let held = s.transfer_state(&p).unwrap().incoming.unwrap();
        assert_eq!(held.later.len(), crate::sync::message::MAX_RESUME_PIECES);
        // They are gone from the store too: the sender sends those bytes again.
        let h = s.transfer_held(&p).unwrap().unwrap();
        assert_eq!(h.ranges.len(), crate::sync::message::MAX_RESUME_PIECES);
        assert!(h.maybe_cast);
        s.transfer_save_chunk(&p, BundleId(3), 10 + 20 * 39, b"xy")
            .unwrap();
    }

    #[test]
    fn begin_replaces_and_damaged_kept_is_dropped() {
        let (_d, s) = store();
        let p = StationId([7; 16]);
        s.transfer_begin_partial(&p, BundleId(1), 5).unwrap();
        s.transfer_save_chunk(&p, BundleId(1), 0, b"abc").unwrap();
        s.transfer_begin_partial(&p, BundleId(2), 4).unwrap();
        let st = s.transfer_state(&p).unwrap();
        assert_eq!(st.incoming.unwrap().bytes, Vec::<u8>::new());
        // Bytes that do not match their id.
        s.transfer_keep_outgoing(&p, BundleId(5), b"not five")
            .unwrap();
        assert_eq!(s.transfer_state(&p).unwrap().outgoing, None);
    }
}
