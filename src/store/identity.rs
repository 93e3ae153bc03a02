//! The station's key pair and what each peer's key allows.
//!
//! The private key lives in its own file beside the database (`FILE.key`,
//! mode 0600): an application that reads the database does not read the key,
//! and a database copied to another machine does not carry the identity with
//! it. `rs_station.public_key` records which key belongs to the station, so a
//! missing or swapped key file is an error, never a silent new identity.

use std::io::Write;
use std::path::{Path, PathBuf};

use rusqlite::{params, OptionalExtension};

use super::{Store, StoreError};
use crate::auth::{Card, PublicKey, SharedSecret, StationKey};
use crate::delta::StationId;

const KEY_HEADER: &str = "radiosync-station-key-1";

/// The key file of the database at `db`.
pub fn key_path(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push(".key");
    PathBuf::from(p)
}

/// Why the station's key cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key file is gone.
    #[error("the station key {0} is missing: restore it from the backup made with the database (peers know this station by it); a station without it must be set up again with `init` on a new file and registered anew")]
    Missing(String),
    /// The key file does not hold the station's key.
    #[error("the station key {0} does not belong to this database (its public key differs from the one recorded): restore the right key file")]
    Mismatch(String),
    /// The key file does not read.
    #[error("the station key {path} is unreadable: {why}")]
    Unreadable {
        /// The file.
        path: String,
        /// What failed.
        why: String,
    },
    /// The key file could not be written.
    #[error("cannot write the station key {path}: {why}")]
    Write {
        /// The file.
        path: String,
        /// What failed.
        why: String,
    },
    /// A peer was given without a key and without `--no-auth`.
    #[error("peer {0} has no key: register it with its card (`radiosync peer add --card LINE`), or with --no-auth to sync without authentication")]
    PeerWithoutKey(String),
    /// The peer's key is not usable.
    #[error("peer {0}'s key gives no shared secret: register it again from its card")]
    PeerKey(String),
}

fn read_key_file(path: &Path) -> Result<StationKey, KeyError> {
    let shown = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(KeyError::Missing(shown)),
        Err(e) => {
            return Err(KeyError::Unreadable {
                path: shown,
                why: e.to_string(),
            })
        }
    };
    let bad = |why: &str| KeyError::Unreadable {
        path: shown.clone(),
        why: why.into(),
    };
    let mut words = text.split_whitespace();
    if words.next() != Some(KEY_HEADER) {
        return Err(bad("not a radiosync station key"));
    }
    let hex = words.next().ok_or_else(|| bad("no key after the header"))?;
    if hex.len() != 64 {
        return Err(bad("the key is not 64 hex digits"));
    }
    let mut seed = [0u8; 32];
    for (i, b) in seed.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
            .map_err(|_| bad("the key is not 64 hex digits"))?;
    }
    Ok(StationKey::from_bytes(&seed))
}

fn write_key_file(path: &Path, key: &StationKey) -> Result<(), KeyError> {
    let hex: String = key.to_bytes().iter().map(|b| format!("{b:02x}")).collect();
    let text = format!("{KEY_HEADER} {hex}\n");
    let fail = |e: std::io::Error| KeyError::Write {
        path: path.display().to_string(),
        why: e.to_string(),
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(fail)?;
    f.write_all(text.as_bytes()).map_err(fail)?;
    f.sync_all().map_err(fail)
}

/// The station's key as found when opening: the key, or why it cannot be used.
pub(super) type LoadedKey = Result<StationKey, KeyError>;

/// Reads (or, for a station that has none yet and a writable file, makes)
/// the station's key.
pub(super) fn load_key(conn: &rusqlite::Connection, db: &Path, writable: bool) -> LoadedKey {
    let path = key_path(db);
    let recorded: Option<Vec<u8>> = conn
        .query_row("SELECT public_key FROM rs_station", [], |r| r.get(0))
        .optional()
        .ok()
        .flatten()
        .flatten();
    match recorded {
        Some(public) => {
            let key = read_key_file(&path)?;
            if key.public().to_bytes().as_slice() != public.as_slice() {
                return Err(KeyError::Mismatch(path.display().to_string()));
            }
            Ok(key)
        }
        None if !writable => Err(KeyError::Missing(path.display().to_string())),
        None => {
            // A new station, or one made before keys: a key file already there
            // (an interrupted first open) is adopted, else a new key is made.
            let key = match read_key_file(&path) {
                Ok(k) => k,
                Err(KeyError::Missing(_)) => {
                    let k = StationKey::generate();
                    write_key_file(&path, &k)?;
                    k
                }
                Err(e) => return Err(e),
            };
            conn.execute(
                "UPDATE rs_station SET public_key = ?1",
                [key.public().to_bytes().to_vec()],
            )
            .map_err(|e| KeyError::Write {
                path: "rs_station".into(),
                why: e.to_string(),
            })?;
            Ok(key)
        }
    }
}

/// A nonce above every one this station used in a Hello before: the time in
/// microseconds, or the last one plus one when the clock is behind.
pub(super) fn next_nonce(last: u64) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    now.max(last + 1)
}

impl Store {
    /// The station's key, or why it cannot be used (missing key file).
    pub fn station_key(&self) -> Result<&StationKey, StoreError> {
        self.key.as_ref().map_err(|e| StoreError::Key(e.clone()))
    }

    /// This station's card (`radiosync card`).
    pub fn card(&self) -> Result<Card, StoreError> {
        Ok(Card {
            name: self.station.name.clone(),
            callsign: self.station.callsign.clone(),
            station: self.station.id,
            key: self.station_key()?.public(),
        })
    }

    /// Registers a peer from its card, under `name` (default: the card's).
    pub fn add_peer_card(&mut self, card: &Card, name: Option<&str>) -> Result<String, StoreError> {
        let name = name.unwrap_or(&card.name).to_string();
        self.add_peer(&name, card.station, card.callsign.as_deref())?;
        self.set_peer_key(&card.station, Some(&card.key))?;
        Ok(name)
    }

    /// Sets (or, with `None`, removes: no authentication) a peer's key.
    pub fn set_peer_key(
        &self,
        peer: &StationId,
        key: Option<&PublicKey>,
    ) -> Result<(), StoreError> {
        self.writable()?;
        self.conn.execute(
            "UPDATE rs_peer SET public_key = ?1, hello_nonce = 0 WHERE uuid = ?2",
            params![key.map(|k| k.to_bytes().to_vec()), peer.0.to_vec()],
        )?;
        Ok(())
    }

    /// Whether a peer may push changes to this station (`peer edit --push`).
    pub fn set_peer_push(&self, peer: &StationId, may_push: bool) -> Result<(), StoreError> {
        self.writable()?;
        self.conn.execute(
            "UPDATE rs_peer SET may_push = ?1 WHERE uuid = ?2",
            params![may_push as i64, peer.0.to_vec()],
        )?;
        Ok(())
    }

    /// The secret shared with a peer that has a key; `None` for a peer
    /// registered with `--no-auth`.
    pub fn peer_secret(&self, peer: &StationId) -> Result<Option<SharedSecret>, StoreError> {
        let Some(info) = self.peer_by_id(peer)? else {
            return Err(StoreError::UnknownPeer(*peer));
        };
        let Some(key) = info.key else {
            return Ok(None);
        };
        self.station_key()?
            .shared_secret(&key)
            .map(Some)
            .map_err(|_| StoreError::Key(KeyError::PeerKey(info.name)))
    }

    /// A fresh nonce for a Hello to any peer, stored before it is used.
    pub fn next_hello_nonce(&self) -> Result<u64, StoreError> {
        self.writable()?;
        let last: i64 =
            self.conn
                .query_row("SELECT COALESCE(hello_nonce, 0) FROM rs_station", [], |r| {
                    r.get(0)
                })?;
        let n = next_nonce(last as u64);
        self.conn
            .execute("UPDATE rs_station SET hello_nonce = ?1", [n as i64])?;
        Ok(n)
    }

    /// The highest Hello nonce a peer used in a session this station accepted.
    pub fn peer_hello_nonce(&self, peer: &StationId) -> Result<u64, StoreError> {
        let n: Option<i64> = self
            .conn
            .query_row(
                "SELECT hello_nonce FROM rs_peer WHERE uuid = ?1",
                [peer.0.to_vec()],
                |r| r.get(0),
            )
            .optional()?
            .flatten();
        Ok(n.unwrap_or(0) as u64)
    }

    /// Records an accepted Hello's nonce: an older or equal one is a replay.
    pub fn note_peer_hello_nonce(&self, peer: &StationId, nonce: u64) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE rs_peer SET hello_nonce = MAX(COALESCE(hello_nonce, 0), ?1) WHERE uuid = ?2",
            params![nonce as i64, peer.0.to_vec()],
        )?;
        Ok(())
    }
}

/// Copies a station to `to` with its key file (tests that need a backup or a
/// second copy of the same station).
pub fn copy_station(from: impl AsRef<Path>, to: impl AsRef<Path>) -> std::io::Result<()> {
    let (from, to) = (from.as_ref(), to.as_ref());
    std::fs::copy(from, to)?;
    let k = key_path(from);
    if k.exists() {
        let _ = std::fs::remove_file(key_path(to));
        std::fs::copy(k, key_path(to))?;
    }
    Ok(())
}

impl Store {
    /// `bytes` (a bundle or reconciliation file) signed with the station key,
    /// for a file that leaves the station.
    pub fn seal_file(&self, bytes: &[u8]) -> Result<Vec<u8>, StoreError> {
        Ok(crate::auth::SignedFile::seal(
            self.station_key()?,
            self.station.id,
            bytes,
        ))
    }

    /// Checks a file before anything in it is read: a signed file must verify
    /// against the key registered for its signer, and be made by the signer;
    /// an unsigned file is taken only from a peer registered with `--no-auth`.
    /// Returns the payload.
    pub fn open_file<'a>(&self, bytes: &'a [u8]) -> Result<&'a [u8], StoreError> {
        use crate::auth::SignedFile;
        let (payload, signer) = if SignedFile::is_signed(bytes) {
            let f = SignedFile::parse(bytes).ok_or_else(|| {
                StoreError::Malformed("a signed file shorter than its envelope".into())
            })?;
            let peer = self
                .peer_by_id(&f.signer)?
                .ok_or(StoreError::UnknownPeer(f.signer))?;
            // A peer registered with --no-auth is taken on its word, signed or not.
            let payload = match peer.key {
                None => &bytes[bytes.len() - f.payload_len()..],
                Some(key) => f.verify(&key).map_err(|_| {
                    StoreError::Unauthenticated(format!(
                        "the signature does not match {}'s registered key: the file was altered, \
                     or made by another station",
                        peer.name
                    ))
                })?,
            };
            (payload, Some(peer))
        } else {
            (bytes, None)
        };
        // Who the payload says made it.
        let maker = if crate::recon::file::ReconFile::is_recon(payload) {
            let f = crate::recon::file::ReconFile::parse(payload)
                .map_err(|e| StoreError::Malformed(e.to_string()))?;
            self.peer_by_id(&f.sender)?
                .ok_or(StoreError::UnknownPeer(f.sender))?
        } else {
            let h = crate::codec::peek_header(payload)?;
            let id = self.sender_by_key(h.sender_key)?;
            self.peer_by_id(&id)?.ok_or(StoreError::UnknownPeer(id))?
        };
        match signer {
            Some(s) if s.id != maker.id => Err(StoreError::Unauthenticated(format!(
                "the file is signed by {} but made by {}",
                s.name, maker.name
            ))),
            None if maker.key.is_some() => Err(StoreError::Unauthenticated(format!(
                "the file is not signed, and {} is registered with a key: its files are \
                 always signed (an unsigned one was made by someone else)",
                maker.name
            ))),
            _ => Ok(payload),
        }
    }
}
