//! The store's side of set reconciliation (`recon`): every synced row as one
//! 32-bit item, read from the per-row digests the fingerprints already keep
//! (`rs_fp`), so listing them reads no application table. By file, the items
//! are the rows' bases (`rs_base`) and the edits since travel with the offer
//! (docs/reconciliation.md).

use std::collections::BTreeSet;

use rusqlite::{params, OptionalExtension};
use sha2::{Digest, Sha256};

use super::{ImportReport, Store, StoreError};
use crate::bytes::ByteReader;
use crate::delta::{StationId, VersionVector};
use crate::recon::file::{FileKind, ReconFile};
use crate::recon::Sketch;
use crate::recon::MAX_SKETCH_CAPACITY;

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
    /// Only the tables shared with `peer` count.
    pub fn recon_items(&self, peer: &StationId, salt: u64) -> Result<Vec<ReconItem>, StoreError> {
        self.shared_rows(
            peer,
            "SELECT r.uuid, f.part FROM rs_row r
             LEFT JOIN rs_fp f ON f.tbl = r.tbl AND f.uuid = r.uuid
             WHERE r.tbl = ?1
               AND NOT EXISTS (SELECT 1 FROM rs_held h WHERE h.tbl = r.tbl AND h.uuid = r.uuid)",
        )
        .map(|rows| self.as_items(salt, rows))
    }

    /// Runs `sql` on every table shared with `peer` (?1 the table's name, ?2,
    /// if it names one, the peer; it selects a uuid and a digest or NULL):
    /// (table index, uuid, digest) of every row it finds.
    fn shared_rows(
        &self,
        peer: &StationId,
        sql: &str,
    ) -> Result<Vec<(u16, String, Option<i64>)>, StoreError> {
        let shared = self.shared_tables(peer)?;
        let mut stmt = self.conn.prepare_cached(sql)?;
        let with_peer = stmt.parameter_count() == 2;
        let mut out = Vec::new();
        for (i, info) in self.tables.iter().enumerate() {
            if !shared[i] {
                continue;
            }
            let row = |r: &rusqlite::Row<'_>| Ok((i as u16, r.get(0)?, r.get(1)?));
            let rows = if with_peer {
                stmt.query_map(params![info.name, peer.0.to_vec()], row)?
            } else {
                stmt.query_map(params![info.name], row)?
            };
            for r in rows {
                out.push(r?);
            }
        }
        Ok(out)
    }

    /// Rows as items under `salt` (a digest of None: the row counts as deleted).
    fn as_items(&self, salt: u64, rows: Vec<(u16, String, Option<i64>)>) -> Vec<ReconItem> {
        rows.into_iter()
            .map(|(table, uuid, digest)| ReconItem {
                item: item_of(salt, &self.tables[table as usize].name, &uuid, digest),
                table,
                uuid,
            })
            .collect()
    }

    /// Every row whose base (`rs_base`: the version held when tracking began,
    /// or the first version received) is known, as an item of that base
    /// under `salt`. Two stations loaded from copies of one dataset hold the
    /// same bases however much either edited since, so their base sets differ
    /// by what was not shared to begin with. Bases that came from `peer` are
    /// left out: it holds that version or a newer one, and its own changes
    /// travel as its edits. Only the tables shared with `peer`; held rows never.
    pub fn base_items(&self, peer: &StationId, salt: u64) -> Result<Vec<ReconItem>, StoreError> {
        self.shared_rows(
            peer,
            "SELECT b.uuid, b.digest FROM rs_base b
             WHERE b.tbl = ?1 AND b.digest IS NOT NULL AND b.origin != ?2
               AND NOT EXISTS (SELECT 1 FROM rs_held h WHERE h.tbl = b.tbl AND h.uuid = b.uuid)",
        )
        .map(|rows| self.as_items(salt, rows))
    }

    /// Our rows whose content is not their base (edited, deleted, or with no
    /// base: inserted here), as (table index, uuid): what `peer` cannot hold
    /// unless it got them from us. Not the peer's own changes. A row we asked
    /// the peer for in full (its version beat ours) still goes: the peer keeps
    /// ours as the conflict's loser (our claim will say it saw it). Shared
    /// tables only.
    fn edits_for(&self, peer: &StationId) -> Result<BTreeSet<(u16, String)>, StoreError> {
        Ok(self
            .shared_rows(
                peer,
                "SELECT r.uuid, NULL FROM rs_row r
                 LEFT JOIN rs_base b ON b.tbl = r.tbl AND b.uuid = r.uuid
                 WHERE r.tbl = ?1 AND r.origin != ?2
                   AND (b.digest IS NULL OR r.digest IS NULL OR r.digest != b.digest)",
            )?
            .into_iter()
            .map(|(table, uuid, _)| (table, uuid))
            .collect())
    }

    /// The rows whose base items (under `salt`) are in `items`.
    fn base_rows(
        &self,
        peer: &StationId,
        salt: u64,
        items: &[u32],
    ) -> Result<BTreeSet<(u16, String)>, StoreError> {
        Ok(rows_behind(self.base_items(peer, salt)?, items))
    }

    /// The rows behind `items` (ours, under `salt`), as (table index, uuid).
    /// Items no row of ours has now (changed since they were listed) are left out.
    pub fn recon_rows(
        &self,
        peer: &StationId,
        salt: u64,
        items: &[u32],
    ) -> Result<BTreeSet<(u16, String)>, StoreError> {
        Ok(rows_behind(self.recon_items(peer, salt)?, items))
    }
}

/// The rows (table index, uuid) of `listed` whose items are in `items`.
fn rows_behind(listed: Vec<ReconItem>, items: &[u32]) -> BTreeSet<(u16, String)> {
    let wanted: BTreeSet<u32> = items.iter().copied().collect();
    listed
        .into_iter()
        .filter(|i| wanted.contains(&i.item))
        .map(|i| (i.table, i.uuid))
        .collect()
}

/// Where a reconciliation by file with one peer stands (`rs_recon`).
#[derive(Clone, Debug, PartialEq)]
enum FileState {
    /// We sent an offer under `salt`, listing our items when we held `vector`.
    Offered { salt: u64, vector: VersionVector },
    /// The peer's offer, to answer.
    Received {
        salt: u64,
        items: u64,
        sums: Vec<u32>,
    },
    /// The stations were found too different to reconcile: exchange by the
    /// change logs from now on.
    Declined,
    /// The peer's reply named these items of ours (under `salt`): send them,
    /// claiming `vector`.
    Owe {
        salt: u64,
        vector: VersionVector,
        items: Vec<u32>,
    },
}

/// An `rs_recon` row: state, salt, items, vector, data.
type StateRow = (String, i64, i64, Vec<u8>, Vec<u8>);

/// What `export_file_for` wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct FileExport {
    /// The file's bytes.
    pub bytes: Vec<u8>,
    /// What it is, for the operator.
    pub what: String,
}

fn items_blob(items: &[u32]) -> Vec<u8> {
    items.iter().flat_map(|i| i.to_le_bytes()).collect()
}

fn blob_items(b: &[u8]) -> Vec<u32> {
    b.chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn vector_blob(v: &VersionVector) -> Vec<u8> {
    let mut b = Vec::new();
    v.write(&mut b);
    b
}

fn blob_vector(b: &[u8]) -> Result<VersionVector, StoreError> {
    VersionVector::read(&mut ByteReader::new(b))
        .map_err(|e| StoreError::Malformed(format!("rs_recon vector: {e:?}")))
}

impl Store {
    fn file_state(&self, peer: &StationId) -> Result<Option<FileState>, StoreError> {
        let row: Option<StateRow> = self
            .conn
            .query_row(
                "SELECT state, salt, items, vector, data FROM rs_recon WHERE peer = ?1",
                [peer.0.to_vec()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()?;
        let Some((state, salt, items, vector, data)) = row else {
            return Ok(None);
        };
        let salt = salt as u64;
        Ok(Some(match state.as_str() {
            "offered" => FileState::Offered {
                salt,
                vector: blob_vector(&vector)?,
            },
            "received" => FileState::Received {
                salt,
                items: items.max(0) as u64,
                sums: blob_items(&data),
            },
            "declined" => FileState::Declined,
            "owe" => FileState::Owe {
                salt,
                vector: blob_vector(&vector)?,
                items: blob_items(&data),
            },
            other => return Err(StoreError::Malformed(format!("rs_recon state {other}"))),
        }))
    }

    fn set_file_state(&self, peer: &StationId, st: Option<&FileState>) -> Result<(), StoreError> {
        let key = peer.0.to_vec();
        let Some(st) = st else {
            self.conn
                .execute("DELETE FROM rs_recon WHERE peer = ?1", [key])?;
            return Ok(());
        };
        let (state, salt, items, vector, data) = match st {
            FileState::Offered { salt, vector } => {
                ("offered", *salt, 0, vector_blob(vector), Vec::new())
            }
            FileState::Received { salt, items, sums } => {
                ("received", *salt, *items, Vec::new(), items_blob(sums))
            }
            FileState::Owe {
                salt,
                vector,
                items,
            } => ("owe", *salt, 0, vector_blob(vector), items_blob(items)),
            FileState::Declined => ("declined", 0, 0, Vec::new(), Vec::new()),
        };
        self.conn.execute(
            "INSERT OR REPLACE INTO rs_recon (peer, state, salt, items, vector, data)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![key, state, salt as i64, items as i64, vector, data],
        )?;
        Ok(())
    }

    /// The file for `peer` when reconciliation by file has a step to take:
    /// answer its offer, send the rows its reply asked for, or, at first contact
    /// (neither station holds a change of the other), offer our edits and a
    /// sketch of our bases instead of a full export. None: export a bundle as usual.
    pub fn export_file_for(&mut self, peer: &StationId) -> Result<Option<FileExport>, StoreError> {
        self.writable()?;
        let p = self
            .peer_by_id(peer)?
            .ok_or(StoreError::UnknownPeer(*peer))?;
        self.check_capture()?;
        let me = self.station.id;
        let dict = self.dictionary()?.map_or(0, |d| d.id);
        let file = |kind, salt, items, vector, sums, differences, bundle| ReconFile {
            kind,
            sender: me,
            receiver: *peer,
            salt,
            items,
            dict,
            vector,
            sums,
            differences,
            bundle,
        };
        match self.file_state(peer)? {
            Some(FileState::Received { salt, items, sums }) => {
                let mine = self.base_items(peer, salt)?;
                let my_items: Vec<u32> = mine.iter().map(|i| i.item).collect();
                // The claim: capped below rows we still wait for in full (`vector`),
                // so a claim never covers a change we do not hold.
                let vector = self.vector()?;
                let capacity = sums.len();
                let mine_sketch = Sketch::of(my_items.iter().copied(), capacity);
                if let Some(d) = crate::recon::difference(&my_items, &mine_sketch, &sums) {
                    let (own, theirs) = (d.ours, d.theirs);
                    // Rows whose base the peer lacks go in full; our edits of
                    // the bases we share go as deltas against them.
                    let rows = self.base_rows(peer, salt, &own)?;
                    let edits = self.edits_for(peer)?;
                    let ex = self.export_first_contact(peer, &rows, &edits, &vector)?;
                    self.set_file_state(peer, None)?;
                    let what = format!(
                        "reconciliation reply: {} row(s) of ours, {} of the peer's asked for",
                        ex.rows,
                        theirs.len()
                    );
                    let f = file(
                        FileKind::Reply,
                        salt,
                        my_items.len() as u64,
                        vector,
                        vec![],
                        Some(theirs),
                        ex.bytes,
                    );
                    return Ok(Some(FileExport {
                        bytes: f.to_bytes(),
                        what,
                    }));
                }
                // By file a round trip can take a day: the counter-offer is sized to
                // decode any difference worth reconciling (up to a quarter of both
                // sets), so a second failure means "too different" for sure.
                let n = my_items.len() as u64;
                let next = (items.saturating_add(n) / 4 + 64)
                    .max(items.abs_diff(n).saturating_add(16))
                    .min(MAX_SKETCH_CAPACITY);
                // An empty station, or sets whose sizes alone differ by more than a
                // quarter: full exports at once, not a counter-offer that cannot pay.
                let too_far = n == 0 || items.abs_diff(n) > items.saturating_add(n) / 4;
                if next <= capacity as u64 || too_far {
                    // Too different to reconcile: our full export, and the peer sends its.
                    self.set_file_state(peer, Some(&FileState::Declined))?;
                    let ex = self.export_encoded(peer)?;
                    let what = format!(
                        "reconciliation reply: the stations differ too much; full export of {} row(s)",
                        ex.rows
                    );
                    let f = file(FileKind::Reply, salt, n, vector, vec![], None, ex.bytes);
                    return Ok(Some(FileExport {
                        bytes: f.to_bytes(),
                        what,
                    }));
                }
                // Under the offer's own salt: that is how the peer tells a
                // counter-offer from an offer that crossed its own.
                Ok(Some(self.offer_salted(peer, salt, next as usize, &mine)?))
            }
            Some(FileState::Owe {
                salt,
                vector,
                items,
            }) => {
                let rows = self.base_rows(peer, salt, &items)?;
                // We hold the peer's changes its reply carried: say so, so that it
                // does not send them again. Everything else as when we offered.
                let mut claim = vector.clone();
                let peer_seq = self.vector()?.get(peer);
                if peer_seq > 0 {
                    claim.0.insert(*peer, peer_seq);
                }
                // With the rows the peer asked for in full (`export_first_contact`).
                let ex = self.export_first_contact(peer, &rows, &BTreeSet::new(), &claim)?;
                self.set_file_state(peer, None)?;
                let what = format!("the last reconciliation file: {} row(s)", ex.rows);
                let f = file(FileKind::Rows, salt, 0, claim, vec![], None, ex.bytes);
                Ok(Some(FileExport {
                    bytes: f.to_bytes(),
                    what,
                }))
            }
            Some(FileState::Declined) => Ok(None),
            state => {
                let first_contact = p.confirmed.get(&me) == 0
                    && self.raw_vector()?.get(peer) == 0
                    && (matches!(state, Some(FileState::Offered { .. })) || p.last_sync.is_none());
                if !first_contact {
                    return Ok(None);
                }
                let salt: u64 = rand::random();
                let mine = self.base_items(peer, salt)?;
                if mine.is_empty() {
                    return Ok(None);
                }
                // Copies of one dataset share their bases whatever either edited
                // since (the edits travel with the offer): a small sketch is
                // expected to decode; if not, the counter-offer is sized to settle it.
                let capacity = (mine.len() / 256).clamp(64, 2048);
                self.offer_salted(peer, salt, capacity, &mine).map(Some)
            }
        }
    }

    fn offer_salted(
        &self,
        peer: &StationId,
        salt: u64,
        capacity: usize,
        mine: &[ReconItem],
    ) -> Result<FileExport, StoreError> {
        let vector = self.vector()?;
        let sketch = Sketch::of(mine.iter().map(|i| i.item), capacity);
        // Our edits since the bases, claiming nothing: whether the peer holds
        // our bases is what the sketch is to find out. The claim comes with
        // the last file, once the peer holds everything we held.
        let edits = self.edits_for(peer)?;
        let ex =
            self.export_first_contact(peer, &BTreeSet::new(), &edits, &VersionVector::default())?;
        self.set_file_state(
            peer,
            Some(&FileState::Offered {
                salt,
                vector: vector.clone(),
            }),
        )?;
        let f = ReconFile {
            kind: FileKind::Offer,
            sender: self.station.id,
            receiver: *peer,
            salt,
            items: mine.len() as u64,
            dict: self.dictionary()?.map_or(0, |d| d.id),
            vector,
            sums: sketch.sums().to_vec(),
            differences: None,
            bundle: ex.bytes,
        };
        Ok(FileExport {
            bytes: f.to_bytes(),
            what: format!(
                "reconciliation offer: {} edit(s) of ours and a sketch of {} row(s), capacity \
                 {capacity} ({} bytes); the peer imports it and exports its answer to us",
                ex.rows,
                mine.len(),
                4 * capacity
            ),
        })
    }

    /// Applies a reconciliation file (`recon::file`) from a registered peer.
    /// Returns what happened, and the import report when rows were applied.
    pub fn import_file(
        &mut self,
        bytes: &[u8],
    ) -> Result<(String, Option<ImportReport>), StoreError> {
        self.writable()?;
        let f = ReconFile::parse(bytes).map_err(|e| StoreError::Malformed(e.to_string()))?;
        if f.receiver != self.station.id {
            return Err(StoreError::WrongReceiver {
                to: f.receiver.to_string(),
                us: self.station.id.to_string(),
            });
        }
        let p = self
            .peer_by_id(&f.sender)?
            .ok_or(StoreError::UnknownPeer(f.sender))?;
        // Current digests: deltas are placed on the rows still at their base.
        self.check_capture()?;
        let (sender, dict) = (f.sender, f.dict);
        let done = self.import_file_checked(f, p)?;
        // Our answers may use the dictionary we share with the sender.
        self.set_peer_dict(&sender, dict)?;
        Ok(done)
    }

    fn import_file_checked(
        &mut self,
        f: ReconFile,
        p: super::PeerInfo,
    ) -> Result<(String, Option<ImportReport>), StoreError> {
        match f.kind {
            FileKind::Offer => {
                if f.sums.is_empty() || f.sums.len() as u64 > MAX_SKETCH_CAPACITY {
                    return Err(StoreError::Malformed(format!(
                        "reconciliation offer with {} sums",
                        f.sums.len()
                    )));
                }
                // Both offered at once (the sticks crossed): the lower station id's
                // offer stands, so exactly one side answers.
                let crossed = matches!(
                    self.file_state(&f.sender)?,
                    Some(FileState::Offered { salt, .. }) if salt != f.salt
                );
                if crossed && self.station.id < f.sender {
                    return Ok((
                        format!(
                            "{} offered too; our offer stands: wait for its reply",
                            p.name
                        ),
                        None,
                    ));
                }
                // An old offer (a stick found in a drawer): the sender has since
                // confirmed holding our changes, so this is no first contact.
                if p.confirmed.get(&self.station.id) > 0 {
                    return Ok((
                        format!(
                            "an old reconciliation offer from {}: the stations have synced \
                             since; ignored",
                            p.name
                        ),
                        None,
                    ));
                }
                // The sender's edits against the bases we share: applied now,
                // unless this station takes no pushes from it.
                let rep = if f.bundle.is_empty() || !p.may_push {
                    None
                } else {
                    Some(self.import_reconciled(&f.bundle, &f.sender)?)
                };
                self.set_file_state(
                    &f.sender,
                    Some(&FileState::Received {
                        salt: f.salt,
                        items: f.items,
                        sums: f.sums.clone(),
                    }),
                )?;
                Ok((
                    format!(
                        "reconciliation offer from {} ({} row(s), {} of its edits applied): \
                         export to {} for the answer",
                        p.name,
                        f.items,
                        rep.as_ref().map_or(0, |r| r.applied),
                        p.name
                    ),
                    rep,
                ))
            }
            FileKind::Reply => {
                let Some(FileState::Offered { salt, vector }) = self.file_state(&f.sender)? else {
                    return Err(StoreError::Malformed(format!(
                        "a reconciliation reply from {}, which has no offer of ours to answer",
                        p.name
                    )));
                };
                let Some(differences) = f.differences else {
                    // Too different: a full export, applied as usual.
                    let rep = self.import_transfer(&f.bundle, &f.sender)?;
                    self.set_file_state(&f.sender, Some(&FileState::Declined))?;
                    return Ok((
                        format!(
                            "{} found the stations too different to reconcile and sent its \
                             full export: export to {} to send ours",
                            p.name, p.name
                        ),
                        Some(rep),
                    ));
                };
                if f.salt != salt {
                    return Err(StoreError::Malformed(format!(
                        "a reconciliation reply from {} to another offer than our last",
                        p.name
                    )));
                }
                let rep = self.import_reconciled(&f.bundle, &f.sender)?;
                self.set_file_state(
                    &f.sender,
                    Some(&FileState::Owe {
                        salt,
                        vector,
                        items: differences.clone(),
                    }),
                )?;
                Ok((
                    format!(
                        "reconciliation reply from {}: {} row(s) applied; it lacks {} of ours: \
                         export to {} to send them",
                        p.name,
                        rep.applied,
                        differences.len(),
                        p.name
                    ),
                    Some(rep),
                ))
            }
            FileKind::Rows => {
                let rep = self.import_reconciled(&f.bundle, &f.sender)?;
                self.set_file_state(&f.sender, None)?;
                Ok((format!("reconciled rows from {}: done", p.name), Some(rep)))
            }
        }
    }
}
