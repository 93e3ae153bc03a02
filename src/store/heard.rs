//! Stations heard on the air by their beacons (`radiosync heard`). A beacon
//! is unauthenticated: it only fills this list. Registering a heard station
//! still takes its card, and a beacon whose key digest differs from the
//! registered key is flagged.

use rusqlite::params;

use super::{now_text, station_id_from, Store, StoreError};
use crate::delta::StationId;
use crate::sync::beacon::Beacon;

/// Stations kept in the list; the one heard longest ago goes first.
const MAX_HEARD: i64 = 256;

/// How a heard station relates to this station's peers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Registration {
    /// Not a registered peer: register it with its card (`peer add --card`).
    Unknown,
    /// The registered peer of this name, and the beacon's key matches.
    Peer(String),
    /// Registered `--no-auth` under this name: nothing to compare.
    PeerWithoutKey(String),
    /// A beacon in the name of this registered peer with another key: an
    /// impostor, or the peer's key changed (check its card).
    AnotherKey(String),
}

/// One station heard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeardStation {
    /// Its UUID, as its beacon says.
    pub station: StationId,
    /// Its name and callsign, as its beacon says.
    pub name: String,
    /// Empty if none.
    pub callsign: String,
    /// Its key digest in hex; empty for a station without a key.
    pub key: String,
    /// Its content fingerprint, rows and change counter at the last beacon.
    pub fingerprint: u64,
    /// Rows it holds.
    pub rows: u64,
    /// Its change counter.
    pub changes: u64,
    /// When it was first and last heard (UTC text), and how many beacons.
    pub first_heard: String,
    /// Last heard.
    pub last_heard: String,
    /// Beacons heard.
    pub count: u64,
    /// Whether it is a registered peer.
    pub registration: Registration,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Store {
    /// Records a beacon heard on the air (not this station's own).
    pub fn note_beacon(&self, b: &Beacon) -> Result<(), StoreError> {
        self.writable()?;
        if b.station == self.station.id {
            return Ok(());
        }
        let now = now_text();
        self.conn.execute(
            "INSERT INTO rs_heard (station, name, callsign, key, fingerprint, rows, changes,
                 first_heard, last_heard, count)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, 1)
             ON CONFLICT (station) DO UPDATE SET name = excluded.name,
                 callsign = excluded.callsign, key = excluded.key,
                 fingerprint = excluded.fingerprint, rows = excluded.rows,
                 changes = excluded.changes, last_heard = excluded.last_heard,
                 count = count + 1",
            params![
                b.station.0.to_vec(),
                b.name,
                b.callsign,
                b.key.to_vec(),
                b.fingerprint as i64,
                b.rows as i64,
                b.changes as i64,
                now
            ],
        )?;
        // Strangers can make up any number of stations: keep the newest few.
        self.conn.execute(
            "DELETE FROM rs_heard WHERE station NOT IN
               (SELECT station FROM rs_heard ORDER BY last_heard DESC LIMIT ?1)",
            [MAX_HEARD],
        )?;
        Ok(())
    }

    /// Every station heard, last heard first.
    pub fn heard(&self) -> Result<Vec<HeardStation>, StoreError> {
        type Raw = (
            Vec<u8>,
            String,
            String,
            Vec<u8>,
            i64,
            i64,
            i64,
            String,
            String,
            i64,
        );
        let rows: Vec<Raw> = self
            .conn
            .prepare(
                "SELECT station, name, callsign, key, fingerprint, rows, changes, first_heard,
                        last_heard, count FROM rs_heard ORDER BY last_heard DESC",
            )?
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                    r.get(9)?,
                ))
            })?
            .collect::<Result<_, _>>()?;
        let mut out = Vec::new();
        for (st, name, callsign, key, fp, n, changes, first, last, count) in rows {
            let station = station_id_from(st)?;
            let key = if key.iter().all(|b| *b == 0) {
                String::new()
            } else {
                hex(&key)
            };
            let registration = match self.peer_by_id(&station)? {
                None => Registration::Unknown,
                Some(p) => match &p.key {
                    None => Registration::PeerWithoutKey(p.name),
                    Some(k) if k.short() == key => Registration::Peer(p.name),
                    Some(_) => Registration::AnotherKey(p.name),
                },
            };
            out.push(HeardStation {
                station,
                name,
                callsign,
                key,
                fingerprint: fp as u64,
                rows: n.max(0) as u64,
                changes: changes.max(0) as u64,
                first_heard: first,
                last_heard: last,
                count: count.max(0) as u64,
                registration,
            });
        }
        Ok(out)
    }

    /// This station's beacon, as it would go on air now.
    pub fn beacon(&self) -> Result<Beacon, StoreError> {
        let mut key = [0u8; 8];
        if let Ok(k) = self.station_key() {
            let short = k.public().short();
            for (i, b) in key.iter_mut().enumerate() {
                *b = u8::from_str_radix(&short[2 * i..2 * i + 2], 16).unwrap_or(0);
            }
        }
        let mut rows = 0;
        for t in &self.tables {
            rows += self.row_count(&t.name)?;
        }
        Ok(Beacon {
            station: self.station.id,
            key,
            fingerprint: self.content_fingerprint()?,
            rows,
            changes: self.clock()?,
            callsign: self.station.callsign.clone().unwrap_or_default(),
            name: self.station.name.clone(),
        })
    }
}
