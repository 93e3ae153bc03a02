//! Helpers shared by the store tests: small stations, sync steps, snapshots.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use radiosync::delta::{Bundle, Value};
use radiosync::store::Store;

pub const ITEM_SCHEMA: &str =
    "CREATE TABLE item (id INTEGER NOT NULL UNIQUE, uuid TEXT PRIMARY KEY NOT NULL,
    modified_on TEXT NOT NULL, deleted INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
    name TEXT, qty INTEGER, price REAL, note TEXT, photo BLOB);
  CREATE TABLE place (id INTEGER NOT NULL UNIQUE, uuid TEXT PRIMARY KEY NOT NULL,
    modified_on TEXT NOT NULL, deleted INTEGER NOT NULL DEFAULT 0, l1 TEXT, lat REAL, lon REAL);";

pub fn time(sec: u32) -> String {
    format!("2024-05-01T10:{:02}:{:02}.000Z", sec / 60, sec % 60)
}

/// A fresh station with the two test tables, a few rows, tracked.
pub fn first_station(dir: &Path, name: &str, rows: u32) -> Store {
    first_station_with(dir, name, rows, "")
}

/// `first_station`, with `before_tracking` (SQL) run on the data first.
pub fn first_station_with(dir: &Path, name: &str, rows: u32, before_tracking: &str) -> Store {
    let path = dir.join(format!("{name}.db"));
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(ITEM_SCHEMA).unwrap();
        for i in 0..rows {
            conn.execute(
                "INSERT INTO item (id, uuid, modified_on, name, qty, price, note) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                rusqlite::params![i + 1, format!("item-{i}"), time(i), format!("thing {i}"), i * 3, i as f64 * 1.5, "seed"],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO place (id, uuid, modified_on, l1, lat, lon) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                rusqlite::params![i + 1, format!("place-{i}"), time(i), format!("L{i}"), -8.5 + i as f64, 125.5],
            )
            .unwrap();
        }
        conn.execute_batch(before_tracking).unwrap();
    }
    let mut s = Store::init_as(&path, id_of(name), Some(name), None).unwrap();
    s.track(&[], &["id".to_string()]).unwrap();
    s
}

/// Reproducible station ids, so tie-breaks by writer are the same every run.
pub fn id_of(name: &str) -> radiosync::delta::StationId {
    let mut id = [0u8; 16];
    for (i, b) in name.bytes().enumerate().take(16) {
        id[i] = b;
    }
    id[15] |= 1;
    radiosync::delta::StationId(id)
}

/// Clone station `from` (a file in `dir`) as `name`, with a reproducible id.
pub fn clone_of(dir: &Path, from: &str, name: &str) -> Store {
    Store::clone_station_as(
        path_of(dir, from),
        path_of(dir, name),
        id_of(name),
        name,
        None,
    )
    .unwrap()
}

pub fn path_of(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.db"))
}

/// `from` exports for `to`; `to` imports. Returns the bundle.
pub fn send(from: &Store, to: &mut Store) -> Bundle {
    let b = from.export_for(&to.station().id).unwrap();
    to.import_bundle(&b).unwrap();
    b
}

pub fn rows_in(b: &Bundle) -> usize {
    b.tables.iter().map(|t| t.rows.len()).sum()
}

/// The synced content: (table, uuid) -> (modified_on, deleted + payload values).
pub fn content(s: &Store) -> BTreeMap<(String, String), (String, Vec<Value>)> {
    let mut out = BTreeMap::new();
    for t in s.tables() {
        let cols: Vec<String> = t
            .payload
            .iter()
            .map(|c| format!("\"{}\"", c.name))
            .collect();
        let sql = format!(
            "SELECT uuid, modified_on, {} FROM \"{}\"",
            cols.join(", "),
            t.name
        );
        let conn = s.connection();
        let mut stmt = conn.prepare(&sql).unwrap();
        let mut rows = stmt.query([]).unwrap();
        while let Some(r) = rows.next().unwrap() {
            let vals = (0..cols.len())
                .map(|i| value_of(r.get_ref(2 + i).unwrap()))
                .collect();
            out.insert(
                (t.name.clone(), r.get(0).unwrap()),
                (r.get(1).unwrap(), vals),
            );
        }
    }
    out
}

pub fn value_of(v: rusqlite::types::ValueRef<'_>) -> Value {
    radiosync::store::value_from_ref(v)
}

/// Every row of every table except rs_log, as text: "unchanged" means equal dumps.
pub fn dump(path: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name <> 'rs_log' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    let mut out = Vec::new();
    for t in tables {
        let mut stmt = conn.prepare(&format!("SELECT * FROM \"{t}\"")).unwrap();
        let n = stmt.column_count();
        let mut rows = stmt.query([]).unwrap();
        let mut lines = Vec::new();
        while let Some(r) = rows.next().unwrap() {
            let vals: Vec<String> = (0..n)
                .map(|i| format!("{:?}", value_of(r.get_ref(i).unwrap())))
                .collect();
            lines.push(format!("{t}: {}", vals.join("|")));
        }
        lines.sort();
        out.extend(lines);
    }
    out
}

/// A scratch directory, in memory where the OS offers one: these tests open,
/// commit and copy hundreds of small databases, and fsyncs would dominate.
pub fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(d) = tempfile::tempdir_in(shm) {
            return d;
        }
    }
    tempfile::tempdir().unwrap()
}
