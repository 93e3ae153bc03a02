//! The station store: the only code that touches SQLite.
//!
//! radiosync's state lives in `rs_` tables beside the application's tables,
//! which it never alters. Local writes are captured by triggers into `rs_row`
//! (each row's current tag and writer) and `rs_hist` (a few recent tags with the
//! payload columns each changed). `rs_ctl.applying` is set inside radiosync's
//! own apply transaction so remote rows are never taken for local changes.

mod capture;
pub mod cast;
mod exchange;
pub mod fingerprint;
mod heard;
mod identity;
mod import;
pub mod reconcile;
pub mod sample;
pub mod schema;
mod sharing;
mod transfer;
pub use transfer::HeldPartial;
mod users;

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};

use crate::codec::{CodecError, Dictionary};
use crate::delta::merge::Policy;
use crate::delta::{RowRef, SchemaFingerprint, StationId, Tag, Value, VersionVector, Want};

pub use capture::{CaptureReport, HeldRow, QuarantinedRow};
pub use exchange::{
    ClassExport, DumpTable, Exported, GetScope, ImportReport, PlanClass, PlanTable, SyncedRow,
};
pub use heard::{HeardStation, Registration};
pub use identity::{copy_station, key_path, KeyError};
pub use import::{dump_value_for_column, PutReport};
pub use reconcile::ReconItem;
pub use schema::{Column, TableInfo};
pub use users::{LoginRecord, Role, UserInfo};

/// Dictionary size trained after `track`.
pub const DICT_SIZE: usize = 64 * 1024;

/// Why a store operation failed. `is_bundle_fault` tells a bad bundle from local trouble.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite failed.
    #[error("SQLite error: {0}")]
    Sql(#[from] rusqlite::Error),
    /// The database has no radiosync tables yet (its path).
    #[error("{0} is not a radiosync station yet: run `radiosync init --db {0}` first")]
    NotInitialised(String),
    /// The file to write the sample data to exists already.
    #[error("{0} already exists: choose a new file")]
    Exists(PathBuf),
    /// The database file does not exist (its path).
    #[error("{0} does not exist: check the path")]
    NoDatabase(String),
    /// No table of this name.
    #[error("table {0} does not exist in this database")]
    NoSuchTable(String),
    /// The table lacks a column a synced table needs.
    #[error("table {table} cannot be synced: it lacks {missing} (a synced table needs uuid, modified_on and deleted columns)")]
    NotSyncable {
        /// The table.
        table: String,
        /// The missing columns.
        missing: String,
    },
    /// A column cannot be site-local.
    #[error("site-local column {table}.{column} refused: {why}")]
    BadLocalColumn {
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// Why not.
        why: String,
    },
    /// A bundle from a station with another schema that carries no table layout.
    #[error("the sender's tables differ from ours (schema {theirs:08x}, ours {ours:08x}) and the bundle does not describe them: import a bundle from this station at the sender first, then export again there")]
    SchemaUnknown {
        /// Our schema fingerprint.
        ours: u32,
        /// The sender's.
        theirs: u32,
    },
    /// A read-only database whose radiosync tables are of an older version (its path).
    #[error("{0} was last used by an older radiosync: open it once with write access (any command) to upgrade it")]
    NeedsUpgrade(String),
    /// A command that writes, on a database opened read-only (its path).
    #[error(
        "{0} is read-only here: this command changes the station (check the file's permissions)"
    )]
    ReadOnly(String),
    /// The table is not tracked.
    #[error("table {0} is not tracked")]
    NotTracked(String),
    /// A conflict policy that cannot be used.
    #[error(transparent)]
    Policy(#[from] crate::delta::merge::PolicyError),
    /// A command that needs tracked tables, with none tracked.
    #[error("no tables are tracked: run `radiosync track --db FILE --all` first")]
    NothingTracked,
    /// No registered peer has this name.
    #[error("no peer named {0:?}: see `radiosync peer list`, or add it with `radiosync peer add`")]
    UnknownPeerName(String),
    /// The station is not a registered peer.
    #[error("station {0} is not a registered peer: add it with `radiosync peer add --uuid {0}` if you trust it")]
    UnknownPeer(StationId),
    /// A peer with the name or UUID is registered already (the name).
    #[error("a peer with this name or UUID is already registered ({0})")]
    PeerExists(String),
    /// The station's own UUID given as a peer.
    #[error("{0} is this station's own UUID, not a peer")]
    SelfAsPeer(StationId),
    /// The bundle is addressed to another station.
    #[error("this bundle is addressed to another station ({to}), but this is {us}: import it at the station it was made for")]
    WrongReceiver {
        /// The station it is for.
        to: String,
        /// This station.
        us: String,
    },
    /// No registered peer, or more than one, has the bundle's sender key.
    #[error("the bundle's sender (station key {key:08x}) is {}: add it with `radiosync peer add` if you trust it", if *matches == 0 { "not a registered peer".to_string() } else { format!("ambiguous ({matches} registered peers share that key)") })]
    UnknownSender {
        /// The sender's station key (`codec::station_key`).
        key: u32,
        /// Registered peers with that key.
        matches: usize,
    },
    /// The bundle was made by this station.
    #[error(
        "this bundle was made by this station itself ({0}): import it at the peer it was made for"
    )]
    FromSelf(StationId),
    /// The bundle's schema fingerprint differs from ours.
    #[error("schema mismatch: the bundle's tables/columns hash to {theirs:08x}, ours to {ours:08x}; both stations must track the same tables with the same columns")]
    SchemaMismatch {
        /// Our fingerprint.
        ours: u32,
        /// The bundle's.
        theirs: u32,
    },
    /// The bundle decoded but does not fit together, with the reason.
    #[error("the bundle is malformed ({0}): ask the sender for a fresh export")]
    Malformed(String),
    /// The bundle bytes do not decode.
    #[error("the bundle is unreadable ({0}): it is truncated or corrupted; copy it again or ask for a fresh export")]
    Codec(CodecError),
    /// A bundle could not be encoded.
    #[error("cannot encode the bundle: {0}")]
    Encode(CodecError),
    /// The bundle needs a dictionary other than ours.
    #[error("the bundle was compressed with dictionary {theirs:08x}, this station holds {ours:08x}: ask the sender for a fresh export (it will then send without a dictionary)")]
    DictMismatch {
        /// The dictionary the bundle names.
        theirs: u32,
        /// Ours.
        ours: u32,
    },
    /// The file to clone the station to exists already.
    #[error("{0} already exists: choose a new file for the clone")]
    TargetExists(String),
    /// Text that is not a station UUID.
    #[error("not a valid station UUID: {0}")]
    BadUuid(String),
    /// A dictionary could not be trained, with the reason.
    #[error("cannot train a compression dictionary: {0}")]
    Dictionary(String),
    /// The station's key, or a peer's, cannot be used.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A signed file or bundle whose signature does not verify.
    #[error("refused: {0}")]
    Unauthenticated(String),
    /// The peer may not push changes to this station.
    #[error("{0} may not push changes to this station (peer edit --push yes allows it)")]
    PushRefused(String),
    /// A nicedbdump that cannot be applied (the API checks its shape first).
    #[error("{0}")]
    BadDump(String),
    /// A user cannot be added, removed or found.
    #[error("{0}")]
    BadUser(String),
    /// The peer sent rows of a table it does not share with this station.
    #[error("{peer} may not push table {table} to this station: it is not in the tables shared with {peer} (peer edit --tables)")]
    TableRefused {
        /// The peer's name.
        peer: String,
        /// The table.
        table: String,
    },
}

impl StoreError {
    /// The bundle itself is unacceptable (bad bytes, wrong addressee, unknown
    /// sender, other schema): refuse it. Everything else is a local failure.
    pub fn is_bundle_fault(&self) -> bool {
        matches!(
            self,
            StoreError::WrongReceiver { .. }
                | StoreError::FromSelf(_)
                | StoreError::UnknownPeer(_)
                | StoreError::UnknownSender { .. }
                | StoreError::SchemaMismatch { .. }
                | StoreError::SchemaUnknown { .. }
                | StoreError::Malformed(_)
                | StoreError::Codec(_)
                | StoreError::DictMismatch { .. }
                | StoreError::Unauthenticated(_)
                | StoreError::PushRefused(_)
                | StoreError::TableRefused { .. }
        )
    }
}

// By hand, not #[from]: the message already carries the codec's reason.
impl From<CodecError> for StoreError {
    fn from(e: CodecError) -> Self {
        StoreError::Codec(e)
    }
}

/// This station.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StationInfo {
    /// The station's UUID, made once by `init`.
    pub id: StationId,
    /// The station's name.
    pub name: String,
    /// The station's callsign, if it has one.
    pub callsign: Option<String>,
}

/// A registered peer (the blueprints' sync_instance) and what it confirmed.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerInfo {
    /// The peer's UUID.
    pub id: StationId,
    /// The name it is registered under here.
    pub name: String,
    /// Its callsign, if known.
    pub callsign: Option<String>,
    /// When a bundle from it last brought something (UTC text); `None` before that.
    pub last_sync: Option<String>,
    /// Bundles from it that brought something.
    pub sync_count: u64,
    /// When a sync last ended with both stations' content fingerprints equal.
    pub verified_at: Option<String>,
    /// When the last comparison found the contents different (None once a
    /// later sync verifies).
    pub differs_since: Option<String>,
    /// What the peer told us it holds.
    pub confirmed: VersionVector,
    /// The dictionary id the peer advertised (0 = none).
    pub dict_id: u32,
    /// Rows the peer asked us for in full.
    pub wants: Vec<Want>,
    /// Rows where the peer's version lost here: it gets ours in full (a delta
    /// against its base would not apply) until it confirms ours.
    pub lost: Vec<Want>,
    /// The peer asked for a version by a tag we could not map to a row: our
    /// deltas to it carry their uuids until its next bundle.
    pub unplaced: bool,
    /// The schema fingerprint the peer last showed (a Hello, a bundle header).
    pub schema: Option<SchemaFingerprint>,
    /// Its public key; `None`: registered with `--no-auth`.
    pub key: Option<crate::auth::PublicKey>,
    /// Whether it may push changes here.
    pub may_push: bool,
    /// The tables exchanged with it, both ways (`peer edit --tables`); `None`: all.
    pub tables: Option<Vec<String>>,
}

/// One line of `rs_log`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogEntry {
    /// When (UTC, ISO 8601 text).
    pub time: String,
    /// The peer's name (or UUID if unregistered); `None` for local events.
    pub peer: Option<String>,
    /// The table; `None` for an event of the whole station.
    pub table: Option<String>,
    /// "in", "out" or "local".
    pub direction: String,
    /// Rows received.
    pub rows_in: u64,
    /// Rows sent.
    pub rows_out: u64,
    /// Conflicts decided.
    pub conflicts: u64,
    /// "ok", "refused", "error".
    pub result: String,
    /// What happened, in words.
    pub message: String,
}

/// A losing version kept for review.
#[derive(Clone, Debug, PartialEq)]
pub struct ConflictEntry {
    /// When it was decided (UTC text).
    pub time: String,
    /// The table.
    pub table: String,
    /// The row's uuid.
    pub uuid: String,
    /// The peer whose bundle brought the conflict, by name.
    pub peer: Option<String>,
    /// "local" (our version lost) or "remote" (the peer's version lost).
    pub loser_side: String,
    /// The losing version's `modified_on`.
    pub loser_modified_on: String,
    /// The station that wrote the losing version.
    pub loser_writer: StationId,
    /// The winning version's `modified_on`.
    pub winner_modified_on: String,
    /// The station that wrote the winning version.
    pub winner_writer: StationId,
    /// JSON object: column -> value of the losing version.
    pub loser_values: String,
    /// The rule that picked the winner (`newer`, `station:UUID`, `sql:...`).
    pub policy: String,
}

/// An open station database. See the module docs.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    station: StationInfo,
    tables: Vec<TableInfo>,
    fingerprint: SchemaFingerprint,
    /// Opened without write access: read-only commands only.
    read_only: bool,
    /// Tracked tables that cannot sync until the operator acts: (table, what to do).
    problems: Vec<(String, String)>,
    /// Schema fingerprints peers showed in a session's Hello (not stored: a
    /// stored one changes only with a layout, so schema upgrades are noticed).
    schema_hints: std::collections::HashMap<StationId, SchemaFingerprint>,
    /// The station's key, or why it cannot be used.
    key: identity::LoadedKey,
}

/// Now, UTC, as `YYYY-MM-DDTHH:MM:SS.mmmZ`: how radiosync writes times.
pub fn now_text() -> String {
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::now_utc()
        .format(&fmt)
        .unwrap_or_default()
}

pub(crate) fn station_id_from(bytes: Vec<u8>) -> Result<StationId, rusqlite::Error> {
    let arr: [u8; 16] = bytes.try_into().map_err(|_| {
        rusqlite::Error::FromSqlConversionFailure(
            16,
            rusqlite::types::Type::Blob,
            "station uuid is not 16 bytes".into(),
        )
    })?;
    Ok(StationId(arr))
}

pub(crate) fn read_vector(
    conn: &Connection,
    sql: &str,
    arg: Option<&[u8]>,
) -> Result<VersionVector, StoreError> {
    let mut stmt = conn.prepare(sql)?;
    let map = |r: &rusqlite::Row<'_>| Ok((station_id_from(r.get(0)?)?, r.get::<_, i64>(1)?));
    let rows = match arg {
        Some(a) => stmt.query_map([a], map)?.collect::<Result<Vec<_>, _>>()?,
        None => stmt.query_map([], map)?.collect::<Result<Vec<_>, _>>()?,
    };
    let mut v = VersionVector::default();
    for (o, s) in rows {
        v.raise(o, s.max(0) as u64);
    }
    Ok(v)
}

/// SQLite value to the exact travelling value.
pub fn value_from_ref(v: rusqlite::types::ValueRef<'_>) -> Value {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Integer(i),
        ValueRef::Real(f) => Value::Real(f),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    }
}

pub(crate) fn value_to_sql(v: &Value) -> rusqlite::types::Value {
    use rusqlite::types::Value as S;
    match v {
        Value::Null => S::Null,
        Value::Integer(i) => S::Integer(*i),
        Value::Real(f) => S::Real(*f),
        Value::Text(t) => S::Text(t.clone()),
        Value::Blob(b) => S::Blob(b.clone()),
    }
}

pub(crate) fn value_json(v: &Value) -> serde_json::Value {
    use serde_json::json;
    match v {
        Value::Null => serde_json::Value::Null,
        Value::Integer(i) => json!(i),
        Value::Real(f) if f.is_finite() => json!(f),
        Value::Real(f) => json!({ "real": f.to_string() }),
        Value::Text(t) => json!(t),
        Value::Blob(b) => {
            json!({ "blob_hex": b.iter().map(|x| format!("{x:02x}")).collect::<String>() })
        }
    }
}

fn open_conn(path: &Path) -> Result<Connection, StoreError> {
    if !path.exists() {
        return Err(StoreError::NoDatabase(path.display().to_string()));
    }
    // A write-protected file opens read-only even for root, whom the OS would let write.
    let protected = std::fs::metadata(path).is_ok_and(|m| m.permissions().readonly());
    let conn = if protected {
        Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI,
        )?
    } else {
        Connection::open(path)?
    };
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(conn)
}

/// A write transaction that takes the write lock at once (BEGIN IMMEDIATE):
/// another process writing (the daemon, an application) makes it wait, up to
/// the busy timeout. A deferred one that read first and then wrote would fail
/// at once with "database is locked" instead, SQLite's way out of a deadlock.
pub(crate) fn write_tx(conn: &Connection) -> rusqlite::Result<rusqlite::Transaction<'_>> {
    rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)
}

impl Store {
    /// Open an initialised station. Its capture is checked (and repaired) and
    /// schema changes are taken in; a file without write access opens
    /// read-only, for the commands that only read.
    pub fn open(path: impl AsRef<Path>) -> Result<Store, StoreError> {
        let path = path.as_ref();
        let conn = open_conn(path)?;
        if !schema::is_initialised(&conn)? {
            return Err(StoreError::NotInitialised(path.display().to_string()));
        }
        let read_only = conn.is_readonly(rusqlite::MAIN_DB)?;
        if read_only {
            if !schema::is_current(&conn)? {
                return Err(StoreError::NeedsUpgrade(path.display().to_string()));
            }
        } else {
            schema::migrate(&conn)?;
        }
        let station = conn.query_row("SELECT uuid, name, callsign FROM rs_station", [], |r| {
            Ok(StationInfo {
                id: station_id_from(r.get(0)?)?,
                name: r.get(1)?,
                callsign: r.get(2)?,
            })
        })?;
        let mut store = Store {
            conn,
            path: path.to_path_buf(),
            station,
            tables: Vec::new(),
            fingerprint: SchemaFingerprint::default(),
            read_only,
            problems: Vec::new(),
            schema_hints: Default::default(),
            key: Err(KeyError::Missing(String::new())),
        };
        store.key = identity::load_key(&store.conn, path, !read_only);
        store.check_capture()?;
        Ok(store)
    }

    /// Whether the file was opened without write access.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    pub(crate) fn writable(&self) -> Result<(), StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly(self.path.display().to_string()));
        }
        Ok(())
    }

    /// Tracked tables that cannot sync until the operator acts: (table, what to do).
    pub fn problems(&self) -> &[(String, String)] {
        &self.problems
    }

    /// The schema fingerprint a peer showed in a session's Hello: its bundle
    /// carries our table layout unless it matches ours.
    pub fn set_peer_schema_hint(&mut self, peer: StationId, fp: SchemaFingerprint) {
        self.schema_hints.insert(peer, fp);
    }

    /// Create radiosync's tables and the station UUID once (creating the file
    /// if needed). Running it again keeps the UUID; a given name or callsign
    /// replaces the stored one.
    pub fn init(
        path: impl AsRef<Path>,
        name: Option<&str>,
        callsign: Option<&str>,
    ) -> Result<Store, StoreError> {
        Store::init_as(path, StationId::new_random(), name, callsign)
    }

    /// `init` with a given station id for a new station (tests and tools that
    /// need reproducible ids; stations should use `init`).
    pub fn init_as(
        path: impl AsRef<Path>,
        id: StationId,
        name: Option<&str>,
        callsign: Option<&str>,
    ) -> Result<Store, StoreError> {
        let path = path.as_ref();
        if std::fs::metadata(path).is_ok_and(|m| m.permissions().readonly()) {
            return Err(StoreError::ReadOnly(path.display().to_string()));
        }
        let conn = Connection::open(path)?;
        let tx = write_tx(&conn)?;
        schema::migrate(&tx)?;
        let exists: Option<i64> = tx
            .query_row("SELECT 1 FROM rs_station", [], |r| r.get(0))
            .optional()?;
        if exists.is_none() {
            let default_name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "station".into());
            tx.execute(
                "INSERT INTO rs_station (one, uuid, name, callsign, created_on) VALUES (1, ?1, ?2, ?3, ?4)",
                params![
                    id.0.to_vec(),
                    name.unwrap_or(&default_name),
                    callsign,
                    now_text()
                ],
            )?;
        } else {
            if let Some(n) = name {
                tx.execute("UPDATE rs_station SET name = ?1", [n])?;
            }
            if let Some(c) = callsign {
                tx.execute("UPDATE rs_station SET callsign = ?1", [c])?;
            }
        }
        tx.commit()?;
        drop(conn);
        Store::open(path)
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// This station.
    pub fn station(&self) -> StationInfo {
        self.station.clone()
    }

    /// Fingerprint of the tracked tables.
    pub fn schema_fingerprint(&self) -> SchemaFingerprint {
        self.fingerprint
    }

    /// The tracked tables, sorted by name (bundles index this list).
    pub fn tables(&self) -> &[TableInfo] {
        &self.tables
    }

    /// Direct access for tests and tools that play "the application".
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// A tracked table's description.
    fn info(&self, table: &str) -> Result<&TableInfo, StoreError> {
        self.tables
            .iter()
            .find(|t| t.name == table)
            .ok_or_else(|| StoreError::NotTracked(table.to_string()))
    }

    /// Put tables under sync (or re-create their triggers). Rows already
    /// present get local tags so a new peer receives them. Returns rows tagged.
    pub fn track(
        &mut self,
        tables: &[String],
        local_columns: &[String],
    ) -> Result<usize, StoreError> {
        self.writable()?;
        let names = if tables.is_empty() {
            schema::user_tables(&self.conn)?
        } else {
            tables.to_vec()
        };
        let kept: std::collections::BTreeMap<String, String> = schema::recorded_tables(&self.conn)?
            .into_iter()
            .map(|r| (r.name, r.policy))
            .collect();
        let tx = write_tx(&self.conn)?;
        let mut tagged = 0;
        for name in &names {
            let mut info = schema::describe(&tx, name, local_columns)?;
            // Tracking again keeps the table's conflict policy.
            if let Some(p) = kept.get(name).and_then(|p| Policy::parse(p).ok()) {
                info.policy = p;
            }
            schema::install(&tx, &info)?;
            // Masks of an older column list would name the wrong columns.
            tx.execute("UPDATE rs_hist SET mask = -1 WHERE tbl = ?1", [name])?;
            tagged += schema::tag_existing_rows(&tx, &info)?;
        }
        tx.commit()?;
        self.check_capture()?;
        Ok(tagged)
    }

    /// Set a tracked table's conflict policy. Every station must set the same:
    /// peers whose policy differs do not sync the table (their rows wait in
    /// quarantine). An `sql:` expression is compiled against the table and
    /// tried on pairs of its rows: one that says both versions win is refused.
    pub fn set_policy(&mut self, table: &str, policy: Policy) -> Result<(), StoreError> {
        self.writable()?;
        let info = self.info(table)?.clone();
        if let Policy::Sql(expr) = &policy {
            self.check_sql_policy(&info, expr)?;
        }
        self.conn.execute(
            "UPDATE rs_table SET policy = ?1 WHERE name = ?2",
            params![policy.text(), table],
        )?;
        self.log_event(&LogEntry {
            table: Some(table.to_string()),
            direction: "local".into(),
            result: "ok".into(),
            message: format!("conflict policy set to {}", policy.text()),
            ..Default::default()
        })?;
        self.check_capture()?;
        Ok(())
    }

    fn check_sql_policy(&self, info: &TableInfo, expr: &str) -> Result<(), StoreError> {
        let bad = |why: String| {
            StoreError::Policy(crate::delta::merge::PolicyError::BadExpression {
                expr: expr.to_string(),
                why,
            })
        };
        let sql = import::sql_policy_statement(info, expr);
        self.conn
            .prepare(&sql)
            .map_err(|e| bad(format!("does not compile here: {e}")))?;
        // Try it on pairs of real rows: a rule that prefers both is no rule.
        let sample = self.sample_rows(info, 12)?;
        for (i, x) in sample.iter().enumerate() {
            for y in &sample[i + 1..] {
                let both = [(x, y), (y, x)]
                    .iter()
                    .map(|(a, b)| {
                        let mut args: Vec<rusqlite::types::Value> = Vec::new();
                        for side in [a, b] {
                            args.push(side.0.clone().into());
                            args.push(side.1.clone().into());
                            args.extend(side.2.iter().map(value_to_sql));
                        }
                        self.conn
                            .query_row(&sql, rusqlite::params_from_iter(args), |r| {
                                r.get::<_, bool>(0)
                            })
                            .map_err(|e| bad(format!("fails on rows {} and {}: {e}", x.0, y.0)))
                    })
                    .collect::<Result<Vec<bool>, _>>()?;
                if both == [true, true] {
                    return Err(bad(format!(
                        "holds both ways for rows {} and {}: it must say which of two versions wins \
                         (e.g. `a.qty > b.qty`), not something true of both",
                        x.0, y.0
                    )));
                }
            }
        }
        Ok(())
    }

    /// Up to `n` rows of a table: (uuid, modified_on, payload values).
    fn sample_rows(
        &self,
        info: &TableInfo,
        n: usize,
    ) -> Result<Vec<(String, String, Vec<Value>)>, StoreError> {
        let cols: Vec<String> = info
            .payload
            .iter()
            .map(|c| schema::quote_ident(&c.name))
            .collect();
        let sql = format!(
            "SELECT uuid, modified_on{}{} FROM {} WHERE uuid IS NOT NULL LIMIT {n}",
            if cols.is_empty() { "" } else { ", " },
            cols.join(", "),
            schema::quote_ident(&info.name)
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    exchange::text_of(value_from_ref(r.get_ref(0)?)),
                    exchange::text_of(value_from_ref(r.get_ref(1)?)),
                    (0..cols.len())
                        .map(|i| r.get_ref(2 + i).map(value_from_ref))
                        .collect::<Result<Vec<_>, _>>()?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Stop syncing a table: its triggers and radiosync's records of it go;
    /// the table itself is left as it is.
    pub fn untrack(&mut self, table: &str) -> Result<(), StoreError> {
        self.writable()?;
        let tx = write_tx(&self.conn)?;
        let n = tx.execute("DELETE FROM rs_table WHERE name = ?1", [table])?;
        if n == 0 {
            return Err(StoreError::NotTracked(table.to_string()));
        }
        for t in schema::trigger_names(table) {
            tx.execute_batch(&format!(
                "DROP TRIGGER IF EXISTS {}",
                schema::quote_ident(&t)
            ))?;
        }
        for own in [
            "rs_row",
            "rs_hist",
            "rs_tomb",
            "rs_tomb_val",
            "rs_held",
            "rs_quarantine",
            "rs_peer_want",
            "rs_want",
            "rs_want_tag",
            "rs_peer_backfill",
            "rs_fp",
            "rs_base",
        ] {
            tx.execute(&format!("DELETE FROM {own} WHERE tbl = ?1"), [table])?;
        }
        tx.execute(
            "INSERT INTO rs_log (time, tbl, direction, result, message) VALUES (?1, ?2, 'local', 'ok', ?3)",
            params![now_text(), table, "untracked: no longer synced"],
        )?;
        tx.commit()?;
        self.check_capture()?;
        Ok(())
    }

    /// Rows in a tracked table, from the count the triggers keep.
    pub fn row_count(&self, table: &str) -> Result<u64, StoreError> {
        let kept: Option<i64> = self
            .conn
            .query_row("SELECT nrows FROM rs_table WHERE name = ?1", [table], |r| {
                r.get(0)
            })
            .optional()?
            .flatten();
        let n = match kept {
            Some(n) => n,
            None => self.conn.query_row(
                &format!("SELECT count(*) FROM {}", schema::quote_ident(table)),
                [],
                |r| r.get(0),
            )?,
        };
        Ok(n.max(0) as u64)
    }

    /// Tracked tables that pass `track`'s check, for `track --all`.
    pub fn syncable_tables(&self) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        for t in schema::user_tables(&self.conn)? {
            let cols = schema::table_columns(&self.conn, &t)?;
            if ["uuid", "modified_on", "deleted"]
                .iter()
                .all(|m| cols.iter().any(|c| c.name == *m))
            {
                out.push(t);
            }
        }
        Ok(out)
    }

    /// The local change counter: the seq of this station's latest change.
    pub fn clock(&self) -> Result<u64, StoreError> {
        let s: i64 = self
            .conn
            .query_row("SELECT seq FROM rs_clock", [], |r| r.get(0))?;
        Ok(s.max(0) as u64)
    }

    /// Per origin, the highest sequence held, before caps from pending wants.
    pub(crate) fn raw_vector(&self) -> Result<VersionVector, StoreError> {
        let mut v = read_vector(&self.conn, "SELECT origin, seq FROM rs_vector", None)?;
        v.0.remove(&self.station.id);
        let clock = self.clock()?;
        if clock > 0 {
            v.raise(self.station.id, clock);
        }
        Ok(v)
    }

    /// What this station holds: per origin the highest sequence, lowered below
    /// any change we could not apply and still want in full.
    pub fn vector(&self) -> Result<VersionVector, StoreError> {
        let mut v = self.raw_vector()?;
        let mut stmt = self.conn.prepare(
            "SELECT origin, min(seq) FROM (SELECT origin, seq FROM rs_want
                 UNION ALL SELECT origin, seq FROM rs_want_tag) GROUP BY origin",
        )?;
        let caps = stmt
            .query_map([], |r| {
                Ok((station_id_from(r.get(0)?)?, r.get::<_, i64>(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        for (origin, seq) in caps {
            let cap = (seq.max(1) - 1) as u64;
            if let Some(e) = v.0.get_mut(&origin) {
                if *e > cap {
                    *e = cap;
                }
            }
        }
        v.0.retain(|_, s| *s > 0);
        Ok(v)
    }

    /// Registers a peer; fails if the name or UUID is taken, or `id` is our own.
    pub fn add_peer(
        &mut self,
        name: &str,
        id: StationId,
        callsign: Option<&str>,
    ) -> Result<(), StoreError> {
        self.writable()?;
        if id == self.station.id {
            return Err(StoreError::SelfAsPeer(id));
        }
        let clash: Option<String> = self
            .conn
            .query_row(
                "SELECT name FROM rs_peer WHERE name = ?1 OR uuid = ?2",
                params![name, id.0.to_vec()],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(existing) = clash {
            return Err(StoreError::PeerExists(existing));
        }
        self.conn.execute(
            "INSERT INTO rs_peer (uuid, name, callsign, added_on) VALUES (?1, ?2, ?3, ?4)",
            params![id.0.to_vec(), name, callsign, now_text()],
        )?;
        Ok(())
    }

    fn peer_from_row(&self, r: &rusqlite::Row<'_>) -> Result<PeerInfo, rusqlite::Error> {
        Ok(PeerInfo {
            id: station_id_from(r.get(0)?)?,
            name: r.get(1)?,
            callsign: r.get(2)?,
            last_sync: r.get(3)?,
            sync_count: r.get::<_, i64>(4)?.max(0) as u64,
            confirmed: VersionVector::default(),
            dict_id: r.get::<_, i64>(5)? as u32,
            wants: Vec::new(),
            lost: Vec::new(),
            unplaced: false,
            schema: r
                .get::<_, Option<i64>>(6)?
                .map(|f| SchemaFingerprint(f as u32)),
            verified_at: r.get(7)?,
            differs_since: r.get(8)?,
            key: r
                .get::<_, Option<Vec<u8>>>(9)?
                .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
                .and_then(|b| crate::auth::PublicKey::from_bytes(&b).ok()),
            may_push: r.get::<_, Option<i64>>(10)?.unwrap_or(1) != 0,
            tables: r
                .get::<_, Option<String>>(11)?
                .map(|t| sharing::parse_list(&t)),
        })
    }

    fn complete_peer(&self, mut p: PeerInfo) -> Result<PeerInfo, StoreError> {
        let key = p.id.0.to_vec();
        p.confirmed = read_vector(
            &self.conn,
            "SELECT origin, seq FROM rs_peer_vector WHERE peer = ?1",
            Some(&key),
        )?;
        let mut stmt = self.conn.prepare(
            "SELECT tbl, uuid, kind FROM rs_peer_want WHERE peer = ?1 ORDER BY tbl, uuid",
        )?;
        let wants = stmt
            .query_map([&key], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        for (t, uuid, kind) in wants {
            if let Some(table) = self.table_index(&t) {
                let w = Want {
                    table,
                    row: RowRef::Uuid(uuid),
                };
                match kind.as_str() {
                    "lost" => p.lost.push(w),
                    "unplaced" => p.unplaced = true,
                    _ => p.wants.push(w),
                }
            }
        }
        Ok(p)
    }

    const PEER_COLS: &'static str =
        "uuid, name, callsign, last_sync, sync_count, dict_id, schema, verified_at, differs_since, \
         public_key, may_push, tables";

    /// Every registered peer, by name.
    pub fn peers(&self) -> Result<Vec<PeerInfo>, StoreError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {} FROM rs_peer ORDER BY name",
            Self::PEER_COLS
        ))?;
        let peers = stmt
            .query_map([], |r| self.peer_from_row(r))?
            .collect::<Result<Vec<_>, _>>()?;
        peers.into_iter().map(|p| self.complete_peer(p)).collect()
    }

    /// The peer registered under `name`.
    pub fn peer_by_name(&self, name: &str) -> Result<Option<PeerInfo>, StoreError> {
        let p = self
            .conn
            .query_row(
                &format!("SELECT {} FROM rs_peer WHERE name = ?1", Self::PEER_COLS),
                [name],
                |r| self.peer_from_row(r),
            )
            .optional()?;
        p.map(|p| self.complete_peer(p)).transpose()
    }

    /// The peer with UUID `id`.
    pub fn peer_by_id(&self, id: &StationId) -> Result<Option<PeerInfo>, StoreError> {
        let p = self
            .conn
            .query_row(
                &format!("SELECT {} FROM rs_peer WHERE uuid = ?1", Self::PEER_COLS),
                [id.0.to_vec()],
                |r| self.peer_from_row(r),
            )
            .optional()?;
        p.map(|p| self.complete_peer(p)).transpose()
    }

    /// Rename a peer or change its callsign (`Some(None)` removes it).
    pub fn edit_peer(
        &mut self,
        name: &str,
        rename: Option<&str>,
        callsign: Option<Option<&str>>,
    ) -> Result<(), StoreError> {
        self.writable()?;
        let p = self
            .peer_by_name(name)?
            .ok_or_else(|| StoreError::UnknownPeerName(name.to_string()))?;
        let key = p.id.0.to_vec();
        if let Some(new) = rename.filter(|n| *n != name) {
            if self.peer_by_name(new)?.is_some() {
                return Err(StoreError::PeerExists(new.to_string()));
            }
            self.conn.execute(
                "UPDATE rs_peer SET name = ?1 WHERE uuid = ?2",
                params![new, key],
            )?;
        }
        if let Some(c) = callsign {
            self.conn.execute(
                "UPDATE rs_peer SET callsign = ?1 WHERE uuid = ?2",
                params![c, key],
            )?;
        }
        Ok(())
    }

    /// Forget a peer and everything kept for it.
    pub fn remove_peer(&mut self, name: &str) -> Result<(), StoreError> {
        self.writable()?;
        let p = self
            .peer_by_name(name)?
            .ok_or_else(|| StoreError::UnknownPeerName(name.to_string()))?;
        let key = p.id.0.to_vec();
        let tx = write_tx(&self.conn)?;
        for (table, column) in [
            ("rs_peer_vector", "peer"),
            ("rs_peer_want", "peer"),
            ("rs_want", "peer"),
            ("rs_want_tag", "peer"),
            ("rs_transfer", "peer"),
            ("rs_transfer_chunk", "peer"),
            ("rs_peer_backfill", "peer"),
            ("rs_peer_sent", "peer"),
            ("rs_peer", "uuid"),
        ] {
            tx.execute(&format!("DELETE FROM {table} WHERE {column} = ?1"), [&key])?;
        }
        tx.execute(
            "INSERT INTO rs_log (time, peer, direction, result, message) VALUES (?1, ?2, 'local', 'ok', ?3)",
            params![now_text(), name, format!("peer {name} ({}) removed", p.id)],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The peer confirmed it holds `v` (its own sender vector): raise its watermark.
    /// Records how a sync with `peer` ended: contents equal (`verified`) or not.
    /// `differs_since` keeps the first sync that found a difference until one verifies.
    pub fn note_verification(&self, peer: &StationId, verified: bool) -> Result<(), StoreError> {
        let key = peer.0.to_vec();
        if verified {
            self.conn.execute(
                "UPDATE rs_peer SET verified_at = ?2, differs_since = NULL WHERE uuid = ?1",
                params![key, now_text()],
            )?;
        } else {
            self.conn.execute(
                "UPDATE rs_peer SET differs_since = coalesce(differs_since, ?2) WHERE uuid = ?1",
                params![key, now_text()],
            )?;
        }
        Ok(())
    }

    /// A session with `peer` ended verified: it holds the same content as
    /// this station did when it held `then` (a snapshot of our vector taken
    /// with, or before, the fingerprint compared). So it has seen every
    /// version `then` covers that we hold now (our wants left out): recorded
    /// as confirmed. Without this, a peer that got our rows another way (a
    /// broadcast, a third station) and so received no bundle from us would
    /// show them pending for ever. Only when it shares every table: the
    /// fingerprint covers shared tables only.
    pub fn note_verified_holds(
        &self,
        peer: &StationId,
        then: &VersionVector,
    ) -> Result<(), StoreError> {
        let Some(p) = self.peer_by_id(peer)? else {
            return Err(StoreError::UnknownPeer(*peer));
        };
        if p.tables.is_some() || self.read_only {
            return Ok(());
        }
        let now = self.vector()?;
        let mut seen = VersionVector::default();
        for (o, s) in &then.0 {
            let low = (*s).min(now.get(o));
            if low > 0 {
                seen.0.insert(*o, low);
            }
        }
        exchange::raise_peer_vector(&self.conn, peer, &seen)
    }

    /// Records what a registered peer confirmed it holds (raising, never lowering).
    pub fn note_peer_vector(&self, peer: &StationId, v: &VersionVector) -> Result<(), StoreError> {
        if self.peer_by_id(peer)?.is_none() {
            return Err(StoreError::UnknownPeer(*peer));
        }
        exchange::raise_peer_vector(&self.conn, peer, v)
    }

    pub(crate) fn table_index(&self, name: &str) -> Option<u16> {
        self.tables
            .iter()
            .position(|t| t.name == name)
            .map(|i| i as u16)
    }

    /// Appends a line to `rs_log`; an empty `time` means now.
    pub fn log_event(&self, e: &LogEntry) -> Result<(), StoreError> {
        let time = if e.time.is_empty() {
            now_text()
        } else {
            e.time.clone()
        };
        self.conn.execute(
            "INSERT INTO rs_log (time, peer, tbl, direction, rows_in, rows_out, conflicts, result, message)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                time,
                e.peer,
                e.table,
                e.direction,
                e.rows_in as i64,
                e.rows_out as i64,
                e.conflicts as i64,
                e.result,
                e.message
            ],
        )?;
        Ok(())
    }

    /// Every line of `rs_log`, oldest first.
    pub fn log(&self) -> Result<Vec<LogEntry>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT time, peer, tbl, direction, rows_in, rows_out, conflicts, result, message
             FROM rs_log ORDER BY id",
        )?;
        let rows = stmt
            .query_map([], |r| {
                Ok(LogEntry {
                    time: r.get(0)?,
                    peer: r.get(1)?,
                    table: r.get(2)?,
                    direction: r.get(3)?,
                    rows_in: r.get::<_, i64>(4)? as u64,
                    rows_out: r.get::<_, i64>(5)? as u64,
                    conflicts: r.get::<_, i64>(6)? as u64,
                    result: r.get(7)?,
                    message: r.get(8)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Every kept losing version, oldest first.
    pub fn conflicts(&self) -> Result<Vec<ConflictEntry>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT time, tbl, uuid, peer, loser_side, loser_modified_on, loser_writer,
                    winner_modified_on, winner_writer, loser_values, coalesce(policy, 'newer')
             FROM rs_conflict ORDER BY id",
        )?;
        let rows = stmt
            .query_map([], |r| {
                Ok(ConflictEntry {
                    time: r.get(0)?,
                    table: r.get(1)?,
                    uuid: r.get(2)?,
                    peer: r.get(3)?,
                    loser_side: r.get(4)?,
                    loser_modified_on: r.get(5)?,
                    loser_writer: station_id_from(r.get(6)?)?,
                    winner_modified_on: r.get(7)?,
                    winner_writer: station_id_from(r.get(8)?)?,
                    loser_values: r.get(9)?,
                    policy: r.get(10)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// The station's zstd dictionary, if one was trained.
    pub fn dictionary(&self) -> Result<Option<Dictionary>, StoreError> {
        let d = self
            .conn
            .query_row("SELECT id, bytes FROM rs_dict", [], |r| {
                Ok(Dictionary {
                    id: r.get::<_, i64>(0)? as u32,
                    bytes: r.get(1)?,
                })
            })
            .optional()?;
        Ok(d)
    }

    /// Train a dictionary from the tracked rows in their bundle form and keep
    /// it. Peers use it only once they advertise the same id.
    pub fn retrain_dictionary(&mut self) -> Result<Dictionary, StoreError> {
        self.writable()?;
        let tables = self.all_rows_full()?;
        let samples = crate::codec::training_samples(&tables);
        if samples.len() < 8 {
            return Err(StoreError::Dictionary(format!(
                "only {} rows to learn from; sync works without one",
                samples.len()
            )));
        }
        let dict = crate::codec::train_dictionary(&samples, DICT_SIZE)
            .map_err(|e| StoreError::Dictionary(e.to_string()))?;
        self.conn.execute(
            "INSERT OR REPLACE INTO rs_dict (one, id, bytes, created_on) VALUES (1, ?1, ?2, ?3)",
            params![dict.id as i64, dict.bytes, now_text()],
        )?;
        Ok(dict)
    }

    /// The real deployment path: copy station `from` into a new file `to` with
    /// a new station UUID. The copy holds everything `from` holds, and the two
    /// are registered as each other's peers with that knowledge confirmed, so
    /// nothing shared is ever resent.
    pub fn clone_station(
        from: impl AsRef<Path>,
        to: impl AsRef<Path>,
        name: &str,
        callsign: Option<&str>,
    ) -> Result<Store, StoreError> {
        Store::clone_station_as(from, to, StationId::new_random(), name, callsign)
    }

    /// `clone_station` with a given id for the new station (reproducible tests).
    pub fn clone_station_as(
        from: impl AsRef<Path>,
        to: impl AsRef<Path>,
        b_id: StationId,
        name: &str,
        callsign: Option<&str>,
    ) -> Result<Store, StoreError> {
        let to = to.as_ref();
        if to.exists() {
            return Err(StoreError::TargetExists(to.display().to_string()));
        }
        if key_path(to).exists() {
            return Err(StoreError::TargetExists(key_path(to).display().to_string()));
        }
        let mut a = Store::open(from)?;
        a.writable()?;
        let a_vec = a.vector()?;
        a.conn
            .execute("VACUUM INTO ?1", [to.to_string_lossy().as_ref()])?;
        let dict_id = a.dictionary()?.map(|d| d.id).unwrap_or(0);
        {
            let conn = open_conn(to)?;
            let tx = write_tx(&conn)?;
            tx.execute(
                "UPDATE rs_station SET uuid = ?1, name = ?2, callsign = ?3, created_on = ?4, \
                 public_key = NULL, hello_nonce = 0",
                params![b_id.0.to_vec(), name, callsign, now_text()],
            )?;
            tx.execute_batch(
                "DELETE FROM rs_vector; DELETE FROM rs_peer; DELETE FROM rs_peer_vector;
                 DELETE FROM rs_peer_want; DELETE FROM rs_want; DELETE FROM rs_want_tag; DELETE FROM rs_conflict;
                 DELETE FROM rs_log; DELETE FROM rs_transfer; DELETE FROM rs_transfer_chunk;
                 UPDATE rs_clock SET seq = 0; UPDATE rs_ctl SET applying = 0;
                 INSERT OR IGNORE INTO rs_origin SELECT DISTINCT origin FROM rs_row;",
            )?;
            for (o, s) in &a_vec.0 {
                tx.execute(
                    "INSERT INTO rs_vector (origin, seq) VALUES (?1, ?2)",
                    params![o.0.to_vec(), *s as i64],
                )?;
            }
            tx.commit()?;
        }
        let mut b = Store::open(to)?;
        let a_key = a.station_key()?.public();
        let b_key = b.station_key()?.public();
        b.add_peer(&a.station.name, a.station.id, a.station.callsign.as_deref())?;
        b.set_peer_key(&a.station.id, Some(&a_key))?;
        b.set_peer_schema(&a.station.id, a.fingerprint)?;
        b.note_peer_vector(&a.station.id, &a_vec)?;
        b.set_peer_dict(&a.station.id, dict_id)?;
        let b_name = b.station.name.clone();
        if a.peer_by_name(&b_name)?.is_some() {
            return Err(StoreError::PeerExists(b_name));
        }
        a.add_peer(&b_name, b_id, callsign)?;
        a.set_peer_key(&b_id, Some(&b_key))?;
        a.set_peer_schema(&b_id, a.fingerprint)?;
        a.note_peer_vector(&b_id, &a_vec)?;
        a.set_peer_dict(&b_id, dict_id)?;
        let msg = format!("cloned into {} as {b_name} ({b_id})", to.display());
        a.log_event(&LogEntry {
            peer: Some(b_name),
            direction: "local".into(),
            result: "ok".into(),
            message: msg,
            ..Default::default()
        })?;
        Ok(b)
    }

    /// The dictionary id a peer advertised (a hello, a bundle header): bundles for
    /// it use our dictionary only when the ids match.
    pub fn set_peer_dict(&self, peer: &StationId, dict_id: u32) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE rs_peer SET dict_id = ?1 WHERE uuid = ?2",
            params![dict_id as i64, peer.0.to_vec()],
        )?;
        Ok(())
    }

    /// Record that a peer's tables are known to have this shape (a clone has ours).
    pub(crate) fn set_peer_schema(
        &self,
        peer: &StationId,
        fp: SchemaFingerprint,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE rs_peer SET schema = ?1 WHERE uuid = ?2",
            params![fp.0 as i64, peer.0.to_vec()],
        )?;
        Ok(())
    }

    /// The current tag of a row, if it has one.
    pub fn row_tag(&self, table: &str, uuid: &str) -> Result<Option<(Tag, StationId)>, StoreError> {
        let t = self
            .conn
            .query_row(
                "SELECT origin, seq, writer FROM rs_row WHERE tbl = ?1 AND uuid = ?2",
                params![table, uuid],
                |r| {
                    Ok((
                        Tag {
                            origin: station_id_from(r.get(0)?)?,
                            seq: r.get::<_, i64>(1)?.max(0) as u64,
                        },
                        station_id_from(r.get(2)?)?,
                    ))
                },
            )
            .optional()?;
        Ok(t)
    }
}
