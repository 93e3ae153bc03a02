//! radiosync's own tables, tracked-table metadata, change-capture triggers and
//! the schema fingerprint.

use rusqlite::{params, Connection, OptionalExtension};

use super::StoreError;
use crate::delta::merge::Policy;
use crate::delta::SchemaFingerprint;

/// History entries kept per row: enough to find a base the peer has seen after
/// a few unconfirmed edits, small enough to stay cheap.
pub const HISTORY_PER_ROW: u32 = 4;

/// All of radiosync's own state. Application tables are never altered.
pub const DDL: &str = "
CREATE TABLE IF NOT EXISTS rs_station (one INTEGER PRIMARY KEY CHECK (one = 1), uuid BLOB NOT NULL,
    name TEXT NOT NULL, callsign TEXT, created_on TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rs_clock (one INTEGER PRIMARY KEY CHECK (one = 1), seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS rs_ctl (one INTEGER PRIMARY KEY CHECK (one = 1), applying INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS rs_table (name TEXT PRIMARY KEY, local_columns TEXT NOT NULL,
    payload_columns TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rs_row (tbl TEXT NOT NULL, uuid TEXT NOT NULL, origin BLOB NOT NULL,
    seq INTEGER NOT NULL, writer BLOB NOT NULL, PRIMARY KEY (tbl, uuid)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rs_hist (id INTEGER PRIMARY KEY, tbl TEXT NOT NULL, uuid TEXT NOT NULL,
    origin BLOB NOT NULL, seq INTEGER NOT NULL, mask INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS rs_hist_row ON rs_hist (tbl, uuid);
CREATE INDEX IF NOT EXISTS rs_hist_tag ON rs_hist (tbl, origin, seq);
CREATE TABLE IF NOT EXISTS rs_vector (origin BLOB PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS rs_peer (uuid BLOB PRIMARY KEY, name TEXT NOT NULL UNIQUE, callsign TEXT,
    added_on TEXT NOT NULL, last_sync TEXT, sync_count INTEGER NOT NULL DEFAULT 0,
    dict_id INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS rs_user (name TEXT PRIMARY KEY, role TEXT NOT NULL, hash TEXT NOT NULL,
    created_on TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rs_api_vector (caller TEXT NOT NULL, origin BLOB NOT NULL,
    seq INTEGER NOT NULL, PRIMARY KEY (caller, origin)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rs_peer_vector (peer BLOB NOT NULL, origin BLOB NOT NULL,
    seq INTEGER NOT NULL, PRIMARY KEY (peer, origin));
CREATE TABLE IF NOT EXISTS rs_peer_want (peer BLOB NOT NULL, tbl TEXT NOT NULL, uuid TEXT NOT NULL,
    kind TEXT NOT NULL, PRIMARY KEY (peer, tbl, uuid));
CREATE TABLE IF NOT EXISTS rs_want (peer BLOB NOT NULL, tbl TEXT NOT NULL, uuid TEXT NOT NULL,
    origin BLOB NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (peer, tbl, uuid));
CREATE TABLE IF NOT EXISTS rs_want_tag (peer BLOB NOT NULL, tbl TEXT NOT NULL, origin BLOB NOT NULL,
    seq INTEGER NOT NULL, PRIMARY KEY (peer, tbl, origin, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rs_conflict (id INTEGER PRIMARY KEY, time TEXT NOT NULL, tbl TEXT NOT NULL,
    uuid TEXT NOT NULL, peer TEXT, loser_side TEXT NOT NULL, loser_modified_on TEXT NOT NULL,
    loser_writer BLOB NOT NULL, winner_modified_on TEXT NOT NULL, winner_writer BLOB NOT NULL,
    loser_values TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rs_dict (one INTEGER PRIMARY KEY CHECK (one = 1), id INTEGER NOT NULL,
    bytes BLOB NOT NULL, created_on TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rs_log (id INTEGER PRIMARY KEY, time TEXT NOT NULL, peer TEXT, tbl TEXT,
    direction TEXT NOT NULL, rows_in INTEGER NOT NULL DEFAULT 0, rows_out INTEGER NOT NULL DEFAULT 0,
    conflicts INTEGER NOT NULL DEFAULT 0, result TEXT NOT NULL, message TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rs_transfer (peer BLOB NOT NULL, dir TEXT NOT NULL CHECK (dir IN ('in', 'out')),
    id INTEGER NOT NULL, total INTEGER NOT NULL, bytes BLOB, PRIMARY KEY (peer, dir));
CREATE TABLE IF NOT EXISTS rs_transfer_chunk (peer BLOB NOT NULL, off INTEGER NOT NULL,
    bytes BLOB NOT NULL, PRIMARY KEY (peer, off));
CREATE TABLE IF NOT EXISTS rs_tomb (tbl TEXT NOT NULL, uuid TEXT NOT NULL, modified_on TEXT NOT NULL,
    deleted ANY, PRIMARY KEY (tbl, uuid)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rs_tomb_val (tbl TEXT NOT NULL, uuid TEXT NOT NULL, col TEXT NOT NULL,
    v ANY, PRIMARY KEY (tbl, uuid, col)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rs_held (tbl TEXT NOT NULL, uuid TEXT NOT NULL, reason TEXT NOT NULL,
    since TEXT NOT NULL, PRIMARY KEY (tbl, uuid)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rs_quarantine (tbl TEXT NOT NULL, uuid TEXT NOT NULL, peer BLOB NOT NULL,
    origin BLOB NOT NULL, seq INTEGER NOT NULL, writer BLOB NOT NULL, modified_on TEXT NOT NULL,
    vals TEXT NOT NULL, reason TEXT NOT NULL, since TEXT NOT NULL, PRIMARY KEY (tbl, uuid));
CREATE TABLE IF NOT EXISTS rs_schema_seen (fp INTEGER PRIMARY KEY, layout TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rs_origin (origin BLOB PRIMARY KEY);
CREATE TABLE IF NOT EXISTS rs_peer_backfill (peer BLOB NOT NULL, tbl TEXT NOT NULL,
    sent_at INTEGER, PRIMARY KEY (peer, tbl));
CREATE TABLE IF NOT EXISTS rs_fp (tbl TEXT NOT NULL, uuid TEXT NOT NULL, part INTEGER NOT NULL,
    PRIMARY KEY (tbl, uuid)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rs_peer_sent (peer BLOB NOT NULL, tbl TEXT NOT NULL, origin BLOB NOT NULL,
    seq INTEGER NOT NULL, claim INTEGER NOT NULL, PRIMARY KEY (peer, tbl, origin, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rs_heard (station BLOB PRIMARY KEY, name TEXT NOT NULL, callsign TEXT NOT NULL,
    key BLOB NOT NULL, fingerprint INTEGER NOT NULL, rows INTEGER NOT NULL, changes INTEGER NOT NULL,
    first_heard TEXT NOT NULL, last_heard TEXT NOT NULL, count INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS rs_base (tbl TEXT NOT NULL, uuid TEXT NOT NULL, origin BLOB NOT NULL,
    seq INTEGER NOT NULL, digest INTEGER, PRIMARY KEY (tbl, uuid)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rs_recon (peer BLOB PRIMARY KEY, state TEXT NOT NULL,
    salt INTEGER NOT NULL, items INTEGER NOT NULL, vector BLOB NOT NULL, data BLOB NOT NULL);
INSERT OR IGNORE INTO rs_clock (one, seq) VALUES (1, 0);
INSERT OR IGNORE INTO rs_ctl (one, applying) VALUES (1, 0);
";

/// Columns added to radiosync's own tables after their first release:
/// (table, column, declaration). Added on open when missing.
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("rs_table", "payload_types", "TEXT"),
    ("rs_row", "digest", "INTEGER"),
    ("rs_peer", "schema", "INTEGER"),
    ("rs_table", "nrows", "INTEGER"),
    ("rs_table", "policy", "TEXT"),
    ("rs_conflict", "policy", "TEXT"),
    ("rs_table", "fp", "INTEGER"),
    ("rs_peer", "verified_at", "TEXT"),
    ("rs_peer", "differs_since", "TEXT"),
    ("rs_station", "public_key", "BLOB"),
    ("rs_station", "hello_nonce", "INTEGER"),
    ("rs_peer", "public_key", "BLOB"),
    ("rs_peer", "hello_nonce", "INTEGER"),
    ("rs_peer", "may_push", "INTEGER"),
    ("rs_peer", "tables", "TEXT"),
    ("rs_table", "priority", "INTEGER"),
    // A 'lost' version's changed columns when it came as a delta (NULL: unknown).
    ("rs_peer_want", "mask", "INTEGER"),
];

/// Bring an older station file's own tables up to date. Idempotent.
pub fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let had_origins = !table_columns(conn, "rs_origin")?.is_empty();
    let had_fingerprints = !table_columns(conn, "rs_fp")?.is_empty();
    let existing = !table_columns(conn, "rs_row")?.is_empty();
    let had_bases = !table_columns(conn, "rs_base")?.is_empty();
    conn.execute_batch(DDL)?;
    if !had_origins {
        conn.execute_batch("INSERT OR IGNORE INTO rs_origin SELECT DISTINCT origin FROM rs_row")?;
    }
    for (table, column, decl) in ADDED_COLUMNS {
        if !table_columns(conn, table)?
            .iter()
            .any(|c| c.name == *column)
        {
            conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"))?;
        }
    }
    if existing && !had_fingerprints {
        // Fingerprints start from every row's digest: the next capture check
        // computes them all once (an upgrade's only full pass).
        conn.execute_batch("UPDATE rs_row SET digest = NULL WHERE digest != 0")?;
    }
    if existing && !had_bases {
        // Rows held before the upgrade: their base is what this station holds
        // now (after the columns and digests above: a digest not computed yet is
        // filled in by the capture check, the row's tag being its base's).
        // A tombstone's digest is 0: its base is "deleted", the same at every
        // station that holds the tombstone.
        conn.execute_batch(
            "INSERT OR IGNORE INTO rs_base (tbl, uuid, origin, seq, digest)
             SELECT tbl, uuid, origin, seq, digest FROM rs_row",
        )?;
    }
    conn.execute_batch(
        "CREATE INDEX IF NOT EXISTS rs_row_undigested ON rs_row (tbl, uuid) WHERE digest IS NULL;
         CREATE INDEX IF NOT EXISTS rs_row_tag ON rs_row (tbl, origin, seq);",
    )?;
    Ok(())
}

/// Whether a station file has every table and column this build uses (a
/// read-only open cannot add them).
pub fn is_current(conn: &Connection) -> Result<bool, StoreError> {
    for (table, column, _) in ADDED_COLUMNS {
        if !table_columns(conn, table)?
            .iter()
            .any(|c| c.name == *column)
        {
            return Ok(false);
        }
    }
    for t in [
        "rs_tomb",
        "rs_held",
        "rs_quarantine",
        "rs_schema_seen",
        "rs_peer_backfill",
        "rs_origin",
        "rs_fp",
        "rs_recon",
        "rs_base",
    ] {
        if table_columns(conn, t)?.is_empty() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// SQLite's type affinity of a declared type (section 3.1 of its datatype rules).
pub fn affinity(decl: &str) -> &'static str {
    let d = decl.to_ascii_uppercase();
    if d.contains("INT") {
        "INTEGER"
    } else if d.contains("CHAR") || d.contains("CLOB") || d.contains("TEXT") {
        "TEXT"
    } else if d.contains("BLOB") || d.is_empty() {
        "BLOB"
    } else if d.contains("REAL") || d.contains("FLOA") || d.contains("DOUB") {
        "REAL"
    } else {
        "NUMERIC"
    }
}

/// One column of an application table, as PRAGMA table_info reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    /// Column name.
    pub name: String,
    /// Declared type as written in CREATE TABLE; empty if none.
    pub decl_type: String,
    /// Declared NOT NULL.
    pub notnull: bool,
    /// Has a DEFAULT.
    pub has_default: bool,
    /// Part of the primary key (an INTEGER PRIMARY KEY gets a fresh rowid by itself).
    pub pk: bool,
}

/// A tracked table: its synced payload columns (sorted by name) and its
/// site-local columns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableInfo {
    /// Table name.
    pub name: String,
    /// Synced columns: all but `uuid`, `modified_on` and the site-local ones, sorted by name.
    pub payload: Vec<Column>,
    /// Site-local columns: never synced, filled in locally for rows from peers.
    pub local: Vec<Column>,
    /// How a conflict on this table is decided (the same at every station).
    pub policy: Policy,
}

/// `name` as a double-quoted SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `text` as a single-quoted SQL string literal.
pub fn quote_text(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The columns of `table`, in table order; empty if it does not exist.
pub fn table_columns(conn: &Connection, table: &str) -> Result<Vec<Column>, StoreError> {
    let mut stmt =
        conn.prepare("SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info(?1)")?;
    let cols = stmt
        .query_map([table], |r| {
            Ok(Column {
                name: r.get(0)?,
                decl_type: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                notnull: r.get::<_, i64>(2)? != 0,
                has_default: r.get::<_, Option<String>>(3)?.is_some(),
                pk: r.get::<_, i64>(4)? != 0,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(cols)
}

/// The application's tables (neither `sqlite_*` nor `rs_*`), by name.
pub fn user_tables(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'
         AND name NOT LIKE 'rs\\_%' ESCAPE '\\' ORDER BY name",
    )?;
    let names = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    Ok(names)
}

/// Work out which columns of `table` sync, refusing tables that lack the
/// blueprint columns and local columns that cannot get a fresh value.
pub fn describe(conn: &Connection, table: &str, local: &[String]) -> Result<TableInfo, StoreError> {
    let cols = table_columns(conn, table)?;
    if cols.is_empty() {
        return Err(StoreError::NoSuchTable(table.to_string()));
    }
    let missing: Vec<&str> = ["uuid", "modified_on", "deleted"]
        .into_iter()
        .filter(|m| !cols.iter().any(|c| c.name == *m))
        .collect();
    if !missing.is_empty() {
        return Err(StoreError::NotSyncable {
            table: table.to_string(),
            missing: missing.join(", "),
        });
    }
    let mut local_cols = Vec::new();
    for name in local {
        if ["uuid", "modified_on", "deleted"].contains(&name.as_str()) {
            return Err(StoreError::BadLocalColumn {
                table: table.to_string(),
                column: name.clone(),
                why: "it is a blueprint column that must sync".into(),
            });
        }
        // The default `id` may be absent; an explicitly named column must exist.
        match cols.iter().find(|c| &c.name == name) {
            Some(c) => {
                let integer = c.decl_type.to_ascii_uppercase().contains("INT");
                if c.notnull && !c.has_default && !c.pk && !integer {
                    return Err(StoreError::BadLocalColumn {
                        table: table.to_string(),
                        column: name.clone(),
                        why: "it is NOT NULL without a default and not an integer, so a row from a peer \
                              cannot be given a fresh local value"
                            .into(),
                    });
                }
                local_cols.push(c.clone());
            }
            None if name == "id" => {}
            None => {
                return Err(StoreError::BadLocalColumn {
                    table: table.to_string(),
                    column: name.clone(),
                    why: "no such column".into(),
                })
            }
        }
    }
    let mut payload: Vec<Column> = cols
        .into_iter()
        .filter(|c| c.name != "uuid" && c.name != "modified_on" && !local.contains(&c.name))
        .collect();
    payload.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(TableInfo {
        name: table.to_string(),
        payload,
        local: local_cols,
        policy: Policy::Newer,
    })
}

fn column_list(cols: &[Column]) -> String {
    cols.iter()
        .map(|c| c.name.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Separates declared types in `rs_table.payload_types` (types may hold commas: `DECIMAL(10,2)`).
const TYPE_SEP: char = '\u{1f}';

/// A tracked table as radiosync recorded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// Table name.
    pub name: String,
    /// Site-local column names.
    pub local: Vec<String>,
    /// Payload column names, in payload order.
    pub payload: Vec<String>,
    /// Declared types aligned with `payload` (empty for files from before types were kept).
    pub types: Vec<String>,
    /// The conflict policy's stored text.
    pub policy: String,
}

/// Every table `rs_table` records, by name.
pub fn recorded_tables(conn: &Connection) -> Result<Vec<Recorded>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT name, local_columns, payload_columns, coalesce(payload_types, ''), coalesce(policy, 'newer')
         FROM rs_table ORDER BY name",
    )?;
    let rows = stmt
        .query_map([], |r| {
            let types: String = r.get(3)?;
            Ok(Recorded {
                name: r.get(0)?,
                local: split_list(&r.get::<_, String>(1)?),
                payload: split_list(&r.get::<_, String>(2)?),
                types: if types.is_empty() {
                    Vec::new()
                } else {
                    types.split(TYPE_SEP).map(str::to_string).collect()
                },
                policy: r.get(4)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// What became of a tracked table when the station opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TableCheck {
    /// As recorded.
    Same(TableInfo),
    /// Columns were added or removed by the application: the table syncs with
    /// its new columns once its record and triggers are renewed.
    Evolved {
        /// The table with its current columns.
        info: TableInfo,
        /// Payload columns the application added.
        added: Vec<String>,
        /// Payload columns the application removed.
        removed: Vec<String>,
    },
    /// The table cannot sync until the operator acts: the message says what to do.
    Broken {
        /// The table.
        table: String,
        /// What is wrong and what to do.
        problem: String,
    },
}

/// Compare a recorded table with the live one.
pub fn check_table(conn: &Connection, rec: &Recorded) -> Result<TableCheck, StoreError> {
    let broken = |problem: String| TableCheck::Broken {
        table: rec.name.clone(),
        problem,
    };
    let policy = match Policy::parse(&rec.policy) {
        Ok(p) => p,
        Err(e) => {
            return Ok(broken(format!(
                "{e}: set it again with `radiosync track {} --conflict POLICY`",
                rec.name
            )))
        }
    };
    let info = match describe(conn, &rec.name, &rec.local) {
        Ok(info) => TableInfo { policy, ..info },
        Err(StoreError::NoSuchTable(_)) => {
            return Ok(broken(format!(
            "table {} no longer exists: restore it, or stop syncing it with `radiosync untrack {}`",
            rec.name, rec.name
        )))
        }
        Err(e @ (StoreError::NotSyncable { .. } | StoreError::BadLocalColumn { .. })) => {
            return Ok(broken(format!(
                "{e}: restore the column, or stop syncing the table with `radiosync untrack {}`",
                rec.name
            )))
        }
        Err(e) => return Err(e),
    };
    for (i, name) in rec.payload.iter().enumerate() {
        let (Some(old), Some(now)) = (
            rec.types.get(i),
            info.payload.iter().find(|c| &c.name == name),
        ) else {
            continue;
        };
        if affinity(old) != affinity(&now.decl_type) {
            return Ok(broken(format!(
                "column {}.{} changed type from {} to {} ({} to {} affinity), so its values \
                 would no longer match the peers': change it back, or run `radiosync untrack {}` \
                 and `radiosync track {}` on every station",
                rec.name,
                name,
                if old.is_empty() { "(none)" } else { old },
                if now.decl_type.is_empty() {
                    "(none)"
                } else {
                    &now.decl_type
                },
                affinity(old),
                affinity(&now.decl_type),
                rec.name,
                rec.name
            )));
        }
    }
    let live: Vec<String> = info.payload.iter().map(|c| c.name.clone()).collect();
    let types_now: Vec<String> = info.payload.iter().map(|c| c.decl_type.clone()).collect();
    if live == rec.payload && (rec.types.is_empty() || rec.types == types_now) {
        return Ok(TableCheck::Same(info));
    }
    let added = live
        .iter()
        .filter(|c| !rec.payload.contains(c))
        .cloned()
        .collect();
    let removed = rec
        .payload
        .iter()
        .filter(|c| !live.contains(c))
        .cloned()
        .collect();
    Ok(TableCheck::Evolved {
        info,
        added,
        removed,
    })
}

/// The history mask of a deletion: the `deleted` column's bit.
pub fn deleted_mask(info: &TableInfo) -> String {
    match info.payload.iter().position(|c| c.name == "deleted") {
        Some(i) if i < 63 => (1i64 << i).to_string(),
        _ => "-1".into(),
    }
}

/// The triggers radiosync keeps on `table`.
pub fn trigger_names(table: &str) -> [String; 10] {
    [
        "ins", "upd", "del", "deldup", "mv", "mvdup", "noid", "noidupd", "cntins", "cntdel",
    ]
    .map(|k| format!("rs_{k}_{table}"))
}

/// Whether every capture trigger of `table` is in place.
pub fn triggers_present(conn: &Connection, table: &str) -> Result<bool, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT count(*) FROM sqlite_schema WHERE type = 'trigger' AND name = ?1 AND tbl_name = ?2",
    )?;
    for name in trigger_names(table) {
        let n: i64 = stmt.query_row(params![name, table], |r| r.get(0))?;
        if n != 1 {
            return Ok(false);
        }
    }
    Ok(true)
}

/// CRC-32 over the sorted tracked tables, their payload columns with declared
/// types, and their local-column lists.
pub fn fingerprint(tables: &[TableInfo]) -> SchemaFingerprint {
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
    let mut d = crc.digest();
    for t in tables {
        d.update(t.name.as_bytes());
        d.update(&[0]);
        for c in &t.payload {
            d.update(c.name.as_bytes());
            d.update(&[1]);
            d.update(c.decl_type.to_ascii_uppercase().as_bytes());
            d.update(&[2]);
        }
        d.update(&[3]);
        for c in &t.local {
            d.update(c.name.as_bytes());
            d.update(&[4]);
        }
        // Only a policy other than the default counts, so tables that keep
        // the default hash as they always did.
        if t.policy != Policy::Newer {
            d.update(&[6]);
            d.update(t.policy.text().as_bytes());
        }
        d.update(&[5]);
    }
    SchemaFingerprint(d.finalize())
}

/// Record the table as tracked and (re)create its capture triggers.
pub fn install(conn: &Connection, info: &TableInfo) -> Result<(), StoreError> {
    let types: Vec<&str> = info.payload.iter().map(|c| c.decl_type.as_str()).collect();
    // An upsert, not a replace: a re-install (triggers put back after a
    // migration) keeps the table's content fingerprint, which its rows' parts
    // in rs_fp still add up to. (A replace zeroed it: found by verified sync.)
    conn.execute(
        "INSERT INTO rs_table (name, local_columns, payload_columns, payload_types, policy)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (name) DO UPDATE SET local_columns = excluded.local_columns,
           payload_columns = excluded.payload_columns, payload_types = excluded.payload_types,
           policy = excluded.policy",
        params![
            info.name,
            column_list(&info.local),
            column_list(&info.payload),
            types.join(&TYPE_SEP.to_string()),
            info.policy.text()
        ],
    )?;
    conn.execute_batch(&triggers_sql(info))?;
    // Counted once here, then kept by the triggers: `status` never scans.
    conn.execute(
        &format!(
            "UPDATE rs_table SET nrows = (SELECT count(*) FROM {}) WHERE name = ?1",
            quote_ident(&info.name)
        ),
        [&info.name],
    )?;
    Ok(())
}

/// Rows without a uuid cannot sync; their writes are not captured (and never
/// fail). Local writes clear the row's digest (`rs_row.digest` NULL = "changed
/// here, not yet checked"). A hard delete, or a uuid changed away, leaves a
/// tombstone with the row's last values so the deletion travels; when another
/// row still has that uuid (a duplicate removed) the uuid is re-tagged instead.
fn triggers_sql(info: &TableInfo) -> String {
    let t = &info.name;
    let qt = quote_ident(t);
    let lit = quote_text(t);
    let mask = if info.payload.len() > 63 {
        "-1".to_string()
    } else {
        info.payload
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let q = quote_ident(&c.name);
                format!(
                    "((typeof(OLD.{q}) IS NOT typeof(NEW.{q}) OR OLD.{q} IS NOT NEW.{q}) << {i})"
                )
            })
            .collect::<Vec<_>>()
            .join(" | ")
    };
    let mask = if mask.is_empty() {
        "0".to_string()
    } else {
        mask
    };
    let record = |row: &str, mask: &str| {
        format!(
            "UPDATE rs_clock SET seq = seq + 1;
             INSERT OR REPLACE INTO rs_row (tbl, uuid, origin, seq, writer)
               VALUES ({lit}, {row}.uuid, (SELECT uuid FROM rs_station), (SELECT seq FROM rs_clock),
                       (SELECT uuid FROM rs_station));
             INSERT INTO rs_hist (tbl, uuid, origin, seq, mask)
               VALUES ({lit}, {row}.uuid, (SELECT uuid FROM rs_station), (SELECT seq FROM rs_clock), {mask});
             DELETE FROM rs_hist WHERE tbl = {lit} AND uuid = {row}.uuid AND id NOT IN
               (SELECT id FROM rs_hist WHERE tbl = {lit} AND uuid = {row}.uuid ORDER BY id DESC LIMIT {HISTORY_PER_ROW});"
        )
    };
    let untomb = |row: &str| {
        format!(
            "DELETE FROM rs_tomb WHERE tbl = {lit} AND uuid = {row}.uuid;
             DELETE FROM rs_tomb_val WHERE tbl = {lit} AND uuid = {row}.uuid;"
        )
    };
    let tomb_values: String = info
        .payload
        .iter()
        .map(|c| {
            format!(
                "INSERT OR REPLACE INTO rs_tomb_val (tbl, uuid, col, v) VALUES ({lit}, OLD.uuid, {}, OLD.{});",
                quote_text(&c.name),
                quote_ident(&c.name)
            )
        })
        .collect();
    let tomb = format!(
        "INSERT OR REPLACE INTO rs_tomb (tbl, uuid, modified_on, deleted) VALUES ({lit}, OLD.uuid,
           strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
           CASE typeof(OLD.deleted) WHEN 'text' THEN 'T' ELSE 1 END);
         {tomb_values}
         {}",
        // Only `deleted` changed: peers that hold the last version get a one-column delta.
        record("OLD", &deleted_mask(info))
    );
    let gone = format!("NOT EXISTS (SELECT 1 FROM {qt} WHERE uuid = OLD.uuid)");
    let live = "(SELECT applying FROM rs_ctl) = 0";
    let moved = "OLD.uuid IS NOT NULL AND OLD.uuid IS NOT NEW.uuid";
    let [ins, upd, del, deldup, mv, mvdup, noid, noidupd, cntins, cntdel] =
        trigger_names(t).map(|n| quote_ident(&n));
    // A row without a uuid cannot sync: the capture check counts them.
    let no_uuid = format!(
        "INSERT OR IGNORE INTO rs_held (tbl, uuid, reason, since)
           VALUES ({lit}, '', 'rows without a uuid', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));"
    );
    let drops: String = trigger_names(t)
        .iter()
        .map(|n| format!("DROP TRIGGER IF EXISTS {};", quote_ident(n)))
        .collect();
    format!(
        "{drops}
         CREATE TRIGGER {ins} AFTER INSERT ON {qt}
           WHEN {live} AND NEW.uuid IS NOT NULL
         BEGIN {untomb_new} {rec_new_all} END;
         CREATE TRIGGER {upd} AFTER UPDATE ON {qt}
           WHEN {live} AND NEW.uuid IS NOT NULL
         BEGIN {untomb_new} {rec_new_mask} END;
         CREATE TRIGGER {del} AFTER DELETE ON {qt}
           WHEN {live} AND OLD.uuid IS NOT NULL AND {gone}
         BEGIN {tomb} END;
         CREATE TRIGGER {deldup} AFTER DELETE ON {qt}
           WHEN {live} AND OLD.uuid IS NOT NULL AND NOT {gone}
         BEGIN {rec_old} END;
         CREATE TRIGGER {mv} AFTER UPDATE OF uuid ON {qt}
           WHEN {live} AND {moved} AND {gone}
         BEGIN {tomb} END;
         CREATE TRIGGER {mvdup} AFTER UPDATE OF uuid ON {qt}
           WHEN {live} AND {moved} AND NOT {gone}
         BEGIN {rec_old} END;
         CREATE TRIGGER {noid} AFTER INSERT ON {qt} WHEN NEW.uuid IS NULL BEGIN {no_uuid} END;
         CREATE TRIGGER {noidupd} AFTER UPDATE ON {qt} WHEN NEW.uuid IS NULL BEGIN {no_uuid} END;
         CREATE TRIGGER {cntins} AFTER INSERT ON {qt}
         BEGIN UPDATE rs_table SET nrows = nrows + 1 WHERE name = {lit}; END;
         CREATE TRIGGER {cntdel} AFTER DELETE ON {qt}
         BEGIN UPDATE rs_table SET nrows = nrows - 1 WHERE name = {lit}; END;",
        untomb_new = untomb("NEW"),
        rec_new_all = record("NEW", "-1"),
        rec_new_mask = record("NEW", &mask),
        rec_old = record("OLD", "-1"),
    )
}

/// Give every row that has no tag yet a local tag, so a new peer receives it.
pub fn tag_existing_rows(conn: &Connection, info: &TableInfo) -> Result<usize, StoreError> {
    let qt = quote_ident(&info.name);
    let uuids: Vec<String> = {
        let mut stmt = conn.prepare(&format!(
            "SELECT t.uuid FROM {qt} t WHERE NOT EXISTS
               (SELECT 1 FROM rs_row r WHERE r.tbl = ?1 AND r.uuid = t.uuid) AND t.uuid IS NOT NULL ORDER BY t.uuid"
        ))?;
        let v = stmt
            .query_map([&info.name], |r| r.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
        v
    };
    let me: Vec<u8> = conn.query_row("SELECT uuid FROM rs_station", [], |r| r.get(0))?;
    let mut seq: i64 = conn.query_row("SELECT seq FROM rs_clock", [], |r| r.get(0))?;
    {
        let mut row = conn.prepare(
            "INSERT INTO rs_row (tbl, uuid, origin, seq, writer) VALUES (?1, ?2, ?3, ?4, ?3)",
        )?;
        let mut hist = conn.prepare(
            "INSERT INTO rs_hist (tbl, uuid, origin, seq, mask) VALUES (?1, ?2, ?3, ?4, -1)",
        )?;
        // The version held when tracking began is the row's base (`rs_base`);
        // the capture check records its digest.
        let mut base = conn.prepare(
            "INSERT OR REPLACE INTO rs_base (tbl, uuid, origin, seq, digest) VALUES (?1, ?2, ?3, ?4, NULL)",
        )?;
        for u in &uuids {
            seq += 1;
            row.execute(params![info.name, u, me, seq])?;
            hist.execute(params![info.name, u, me, seq])?;
            base.execute(params![info.name, u, me, seq])?;
        }
    }
    conn.execute("UPDATE rs_clock SET seq = ?1", [seq])?;
    conn.execute(
        "INSERT OR IGNORE INTO rs_origin (origin) VALUES (?1)",
        [&me],
    )?;
    conn.execute(
        &format!(
            "INSERT OR IGNORE INTO rs_held (tbl, uuid, reason, since)
             SELECT ?1, '', 'rows without a uuid', ?2 WHERE EXISTS (SELECT 1 FROM {qt} WHERE uuid IS NULL)"
        ),
        params![info.name, super::now_text()],
    )?;
    Ok(uuids.len())
}

/// The database has radiosync's tables and its one station row.
pub fn is_initialised(conn: &Connection) -> Result<bool, StoreError> {
    let found: Option<i64> = conn
        .query_row(
            "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'rs_station'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if found.is_none() {
        return Ok(false);
    }
    let rows: i64 = conn.query_row("SELECT count(*) FROM rs_station", [], |r| r.get(0))?;
    Ok(rows == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> Connection {
        let c = Connection::open_in_memory().unwrap();
        migrate(&c).unwrap();
        c.execute(
            "INSERT INTO rs_station (one, uuid, name, created_on) VALUES (1, ?1, 's', 'now')",
            [vec![7u8; 16]],
        )
        .unwrap();
        c.execute_batch(
            "CREATE TABLE t (id INTEGER NOT NULL UNIQUE, uuid TEXT PRIMARY KEY, modified_on TEXT,
               deleted INTEGER, a TEXT, b REAL, \"odd \"\"name\" INTEGER)",
        )
        .unwrap();
        c
    }

    #[test]
    fn payload_is_sorted_and_excludes_identity_and_local_columns() {
        let c = conn();
        let info = describe(&c, "t", &["id".into()]).unwrap();
        let names: Vec<_> = info.payload.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "deleted", "odd \"name"]);
        assert_eq!(info.local.len(), 1);
        assert!(matches!(
            describe(&c, "t", &["uuid".into()]),
            Err(StoreError::BadLocalColumn { .. })
        ));
        assert!(matches!(
            describe(&c, "nope", &[]),
            Err(StoreError::NoSuchTable(_))
        ));
    }

    #[test]
    fn fingerprint_sees_types_columns_and_local_lists() {
        let c = conn();
        let base = fingerprint(&[describe(&c, "t", &["id".into()]).unwrap()]);
        assert_eq!(
            base,
            fingerprint(&[describe(&c, "t", &["id".into()]).unwrap()])
        );
        let no_local = fingerprint(&[describe(&c, "t", &[]).unwrap()]);
        assert_ne!(base, no_local);
        let mut other_type = describe(&c, "t", &["id".into()]).unwrap();
        other_type.payload[0].decl_type = "BLOB".into();
        assert_ne!(base, fingerprint(&[other_type]));
    }

    #[test]
    fn triggers_capture_local_writes_with_column_masks_and_skip_applies() {
        // (rs_row's digest is NULL after a local write: changed, not yet checked.)
        let c = conn();
        let info = describe(&c, "t", &["id".into()]).unwrap();
        install(&c, &info).unwrap();
        c.execute_batch("INSERT INTO t VALUES (1, 'u', 'm', 0, 'x', 1.0, 5)")
            .unwrap();
        // b is REAL: 1 is stored as 1.0, so only the last column changed.
        c.execute_batch("UPDATE t SET b = 1, \"odd \"\"name\" = 6 WHERE uuid = 'u'")
            .unwrap();
        let masks: Vec<i64> = c
            .prepare("SELECT mask FROM rs_hist ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(masks, [-1, 0b1000]);
        let seq: i64 = c
            .query_row("SELECT seq FROM rs_row", [], |r| r.get(0))
            .unwrap();
        assert_eq!(seq, 2);
        c.execute_batch(
            "UPDATE rs_ctl SET applying = 1; UPDATE t SET a = 'y'; UPDATE rs_ctl SET applying = 0;",
        )
        .unwrap();
        let clock: i64 = c
            .query_row("SELECT seq FROM rs_clock", [], |r| r.get(0))
            .unwrap();
        assert_eq!(clock, 2, "an apply is not a local change");
        for i in 0..6 {
            c.execute("UPDATE t SET a = ?1", [i]).unwrap();
        }
        let kept: i64 = c
            .query_row("SELECT count(*) FROM rs_hist", [], |r| r.get(0))
            .unwrap();
        assert_eq!(kept, HISTORY_PER_ROW as i64);
    }
}
