//! Radio link benchmark: the whole stack (store export -> codec -> session -> ARQ -> frames ->
//! simulated channel -> back up -> store import) on simulated time over a grid of channels.
//! A program printing tables, not a timing test: `cargo bench --bench radio_link`
//! (`-- --quick` runs only the headline cells; `-- --markdown` prints markdown tables).
//!
//! Workload: two stations cloned from `../shared/data/public.sqlite` (14,587 rows in 8
//! tables), then the same seeded edits on every run (inserts, updates, soft deletes and rows
//! edited on both sides) so each side holds a bundle of tens of KB for the other. Every cell
//! starts from copies of the same two files.

use std::path::{Path, PathBuf};
use std::time::Duration;

use radiosync::delta::StationId;
use radiosync::store::Store;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rusqlite::types::Value as SqlValue;
use rusqlite::{params, Connection};

const DB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/public.sqlite");

/// Edits each station makes before the sync.
#[derive(Clone, Copy, Debug)]
struct EditCounts {
    inserts: usize,
    updates: usize,
    deletes: usize,
    /// Rows both stations update (each side writes some of them later than the other).
    conflicts: usize,
}

const EDITS: EditCounts = EditCounts {
    inserts: 200,
    updates: 500,
    deletes: 60,
    conflicts: 30,
};

const WORKLOAD_SEED: u64 = 0x5ad10_5eed;

/// Station ids fixed so that bundle bytes (and so every figure) repeat from run to run.
const STATION_A: [u8; 16] = *b"radiobench-alpha";
const STATION_B: [u8; 16] = *b"radiobench-bravo";

struct TableShape {
    name: String,
    /// (name, declared type) of the columns other than id, uuid, modified_on, deleted.
    columns: Vec<(String, String)>,
}

fn table_shapes(conn: &Connection) -> rusqlite::Result<Vec<TableShape>> {
    let mut names: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'rs_%' ORDER BY name")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let columns = conn
                .prepare(&format!("PRAGMA table_info(\"{name}\")"))?
                .query_map([], |r| Ok((r.get::<_, String>(1)?, r.get::<_, String>(2)?)))?
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .filter(|(c, _)| !["id", "uuid", "modified_on", "deleted"].contains(&c.as_str()))
                .collect();
            Ok(TableShape { name, columns })
        })
        .collect()
}

fn quoted(c: &str) -> String {
    format!("\"{}\"", c.replace('"', "\"\""))
}

/// `2026-03-02T08:00:00.000Z` plus `ms` milliseconds: edit times later than every
/// dataset row (2023-2024), distinct per edit.
fn edit_time(ms: u64) -> String {
    let s = ms / 1000;
    format!(
        "2026-03-02T{:02}:{:02}:{:02}.{:03}Z",
        8 + s / 3600,
        (s / 60) % 60,
        s % 60,
        ms % 1000
    )
}

fn uuid_of(conn: &Connection, table: &str, rng: &mut ChaCha8Rng) -> rusqlite::Result<String> {
    let n: i64 = conn.query_row(&format!("SELECT count(*) FROM \"{table}\""), [], |r| {
        r.get(0)
    })?;
    let k = rng.gen_range(0..n);
    conn.query_row(
        &format!("SELECT uuid FROM \"{table}\" ORDER BY id LIMIT 1 OFFSET ?1"),
        [k],
        |r| r.get(0),
    )
}

/// A value for column `col` of `table` as a field application would write it: numbers get
/// new values, text is taken from another row of the table (so the content looks like the
/// dataset's, not like random noise or a copy of one row).
fn field_value(
    conn: &Connection,
    table: &str,
    col: &str,
    decl: &str,
    rng: &mut ChaCha8Rng,
) -> rusqlite::Result<SqlValue> {
    Ok(match decl.to_ascii_uppercase().as_str() {
        "REAL" => SqlValue::Real((rng.gen_range(-90_000_000i64..90_000_000) as f64) / 1e6),
        "INTEGER" => SqlValue::Integer(rng.gen_range(0..5000)),
        _ => {
            let n: i64 = conn.query_row(&format!("SELECT count(*) FROM \"{table}\""), [], |r| {
                r.get(0)
            })?;
            conn.query_row(
                &format!(
                    "SELECT {} FROM \"{table}\" ORDER BY id LIMIT 1 OFFSET ?1",
                    quoted(col)
                ),
                [rng.gen_range(0..n)],
                |r| r.get(0),
            )?
        }
    })
}

/// Update 1-3 columns of the row `uuid` at time `t`.
fn update_row(
    conn: &Connection,
    t: &TableShape,
    uuid: &str,
    time: &str,
    rng: &mut ChaCha8Rng,
) -> rusqlite::Result<()> {
    let k = rng.gen_range(1..=3.min(t.columns.len()));
    let cols: Vec<&(String, String)> = t.columns.choose_multiple(rng, k).collect();
    let mut values = Vec::new();
    for (c, decl) in &cols {
        values.push(field_value(conn, &t.name, c, decl, rng)?);
    }
    let sets: Vec<String> = cols
        .iter()
        .enumerate()
        .map(|(i, (c, _))| format!("{} = ?{}", quoted(c), i + 3))
        .collect();
    let sql = format!(
        "UPDATE \"{}\" SET modified_on = ?1, {} WHERE uuid = ?2",
        t.name,
        sets.join(", ")
    );
    let mut args: Vec<SqlValue> = vec![SqlValue::Text(time.into()), SqlValue::Text(uuid.into())];
    args.extend(values);
    conn.execute(&sql, rusqlite::params_from_iter(args))?;
    Ok(())
}

/// Plain SQL edits on one station's file, as its application would make them.
/// `side` 0 or 1 keeps the two stations' inserted uuids and edit times apart.
fn edit_station(
    path: &Path,
    side: u64,
    counts: EditCounts,
    conflict_rows: &[(usize, String)],
) -> rusqlite::Result<()> {
    let conn = Connection::open(path)?;
    let shapes = table_shapes(&conn)?;
    let mut rng = ChaCha8Rng::seed_from_u64(WORKLOAD_SEED ^ (side + 1));
    // Two milliseconds per edit, odd for b: no two edits share a time.
    let mut clock = side;
    let mut next_time = || {
        clock += 2_000 + 2;
        edit_time(clock)
    };
    // Weighted towards the tables field stations write most.
    let weights = |name: &str| match name {
        "pr_person" => 4,
        "gis_location" | "vulnerability_data" => 3,
        "cms_post" | "inv_inv_item" | "org_office" => 2,
        _ => 1,
    };
    let pick = |rng: &mut ChaCha8Rng| -> &TableShape {
        shapes
            .choose_weighted(rng, |t| weights(&t.name))
            .expect("tables")
    };
    let tx = conn.unchecked_transaction()?;
    for i in 0..counts.inserts {
        let t = pick(&mut rng);
        let mut cols = vec![
            "id".to_string(),
            "uuid".into(),
            "modified_on".into(),
            "deleted".into(),
        ];
        let mut args: Vec<SqlValue> = vec![
            SqlValue::Integer(tx.query_row(
                &format!("SELECT max(id) + 1 FROM \"{}\"", t.name),
                [],
                |r| r.get(0),
            )?),
            SqlValue::Text(format!(
                "{:08x}-bench-{}-{:04}-{:012x}",
                rng.gen::<u32>(),
                ["a", "b"][side as usize],
                i,
                rng.gen::<u64>() & 0xffff_ffff_ffff
            )),
            SqlValue::Text(next_time()),
            SqlValue::Integer(0),
        ];
        for (c, decl) in &t.columns {
            cols.push(c.clone());
            args.push(field_value(&tx, &t.name, c, decl, &mut rng)?);
        }
        let marks: Vec<String> = (1..=cols.len()).map(|i| format!("?{i}")).collect();
        let sql = format!(
            "INSERT INTO \"{}\" ({}) VALUES ({})",
            t.name,
            cols.iter()
                .map(|c| quoted(c))
                .collect::<Vec<_>>()
                .join(", "),
            marks.join(", ")
        );
        tx.execute(&sql, rusqlite::params_from_iter(args))?;
    }
    for _ in 0..counts.updates {
        let t = pick(&mut rng);
        let uuid = uuid_of(&tx, &t.name, &mut rng)?;
        let time = next_time();
        update_row(&tx, t, &uuid, &time, &mut rng)?;
    }
    for _ in 0..counts.deletes {
        let t = pick(&mut rng);
        let uuid = uuid_of(&tx, &t.name, &mut rng)?;
        tx.execute(
            &format!(
                "UPDATE \"{}\" SET deleted = 1, modified_on = ?1 WHERE uuid = ?2",
                t.name
            ),
            params![next_time(), uuid],
        )?;
    }
    for (ti, uuid) in conflict_rows {
        let time = next_time();
        update_row(&tx, &shapes[*ti], uuid, &time, &mut rng)?;
    }
    tx.commit()
}

/// Two stations ready to sync, kept as files that every cell copies.
struct Workload {
    a: PathBuf,
    b: PathBuf,
    a_id: StationId,
    b_id: StationId,
    /// Bundle sizes A -> B and B -> A exported right after the edits (file-sync figures).
    bundle_ab: usize,
    bundle_ba: usize,
    rows_ab: u64,
    rows_ba: u64,
    rows_total: usize,
}

fn build_workload(dir: &Path) -> anyhow::Result<Workload> {
    let a = dir.join("alpha.sqlite");
    let b = dir.join("bravo.sqlite");
    std::fs::copy(DB, &a).map_err(|e| anyhow::anyhow!("cannot copy {DB}: {e}"))?;
    let mut perms = std::fs::metadata(&a)?.permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&a, perms)?;
    drop(Store::init(&a, Some("alpha"), None)?);
    Connection::open(&a)?.execute("UPDATE rs_station SET uuid = ?1", [STATION_A.to_vec()])?;
    let mut sa = Store::open(&a)?;
    let tables = sa.syncable_tables()?;
    let rows_total = sa.track(&tables, &["id".to_string()])? as usize;
    sa.retrain_dictionary()?;
    drop(sa);
    let old_b = Store::clone_station(&a, &b, "bravo", None)?.station().id;
    // Fix bravo's random id in both files (nothing else refers to it yet).
    Connection::open(&b)?.execute("UPDATE rs_station SET uuid = ?1", [STATION_B.to_vec()])?;
    {
        let c = Connection::open(&a)?;
        c.execute(
            "UPDATE rs_peer SET uuid = ?1 WHERE uuid = ?2",
            params![STATION_B.to_vec(), old_b.0.to_vec()],
        )?;
        c.execute(
            "UPDATE rs_peer_vector SET peer = ?1 WHERE peer = ?2",
            params![STATION_B.to_vec(), old_b.0.to_vec()],
        )?;
    }

    // Rows both sides will edit: chosen from the shared data.
    let conflict_rows = {
        let conn = Connection::open(&a)?;
        let shapes = table_shapes(&conn)?;
        let mut rng = ChaCha8Rng::seed_from_u64(WORKLOAD_SEED);
        (0..EDITS.conflicts)
            .map(|_| {
                let ti = rng.gen_range(0..shapes.len());
                Ok((ti, uuid_of(&conn, &shapes[ti].name, &mut rng)?))
            })
            .collect::<rusqlite::Result<Vec<_>>>()?
    };
    edit_station(&a, 0, EDITS, &conflict_rows)?;
    edit_station(&b, 1, EDITS, &conflict_rows)?;

    let (sa, sb) = (Store::open(&a)?, Store::open(&b)?);
    let (a_id, b_id) = (sa.station().id, sb.station().id);
    let ab = sa.export_encoded(&b_id)?;
    let ba = sb.export_encoded(&a_id)?;
    Ok(Workload {
        a,
        b,
        a_id,
        b_id,
        bundle_ab: ab.bytes.len(),
        bundle_ba: ba.bytes.len(),
        rows_ab: ab.rows,
        rows_ba: ba.rows,
        rows_total,
    })
}

/// Every synced row's identity, version and payload, table by table: equal on both
/// stations when they have converged.
fn synced_content(s: &Store) -> anyhow::Result<Vec<Vec<SqlValue>>> {
    let mut out = Vec::new();
    for t in s.tables() {
        let cols: Vec<String> = t.payload.iter().map(|c| quoted(&c.name)).collect();
        let sql = format!(
            "SELECT uuid, modified_on, {} FROM \"{}\" ORDER BY uuid",
            cols.join(", "),
            t.name
        );
        let mut stmt = s.connection().prepare(&sql)?;
        let n = cols.len() + 2;
        let rows = stmt.query_map([], |r| {
            (0..n)
                .map(|i| r.get::<_, SqlValue>(i))
                .collect::<Result<Vec<_>, _>>()
        })?;
        for r in rows {
            let mut r = r?;
            r.insert(0, SqlValue::Text(t.name.clone()));
            out.push(r);
        }
    }
    Ok(out)
}

fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let started = std::time::Instant::now();
    let w = build_workload(dir.path())?;
    println!(
        "workload: {} rows in 8 tables cloned to two stations; each side {} inserts, {} updates, \
         {} soft deletes, {} rows edited on both sides",
        w.rows_total, EDITS.inserts, EDITS.updates, EDITS.deletes, EDITS.conflicts
    );
    println!(
        "bundles: alpha -> bravo {} rows in {} bytes, bravo -> alpha {} rows in {} bytes \
         (set up in {:.1} s)",
        w.rows_ab,
        w.bundle_ab,
        w.rows_ba,
        w.bundle_ba,
        started.elapsed().as_secs_f64()
    );
    let _ = (&w.a, &w.b, w.a_id, w.b_id, Duration::ZERO);
    let sa = Store::open(&w.a)?;
    let _ = synced_content(&sa)?;
    Ok(())
}
