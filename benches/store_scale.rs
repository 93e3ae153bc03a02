//! Cost grows with the changes, not with the database (issues 8 and 14).
//!
//! Builds stations of 800 (8 tables of 100 rows), 10k, 100k and 1M rows, each
//! cloned into a peer, applies the same change set on the first (100 updates,
//! 20 inserts, 10 soft deletes, 5 hard deletes) and measures, in one run:
//! opening the station (with its capture check), `status` (row counts and
//! pending rows per peer), `export --peer`, `import` of that bundle at the
//! peer, and a session start (capture check, then the export against the
//! peer's Hello vector). Times are medians of 5 and are printed as ratios to
//! the 10k station, with bundle bytes.
//!
//! `cargo bench --bench store_scale [-- --sizes 10000,100000]`

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use radiosync::store::Store;

const TABLES: usize = 8;
const REPS: usize = 5;

fn build(dir: &Path, rows: usize) -> (PathBuf, PathBuf) {
    let a = dir.join(format!("a-{rows}.db"));
    let b = dir.join(format!("b-{rows}.db"));
    let _ = std::fs::remove_file(&a);
    let _ = std::fs::remove_file(&b);
    {
        let conn = rusqlite::Connection::open(&a).unwrap();
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
            .unwrap();
        let per = rows / TABLES;
        for t in 0..TABLES {
            conn.execute_batch(&format!(
                "CREATE TABLE t{t} (id INTEGER PRIMARY KEY, uuid TEXT UNIQUE, modified_on TEXT,
                   deleted INTEGER DEFAULT 0, name TEXT, qty INTEGER, price REAL, note TEXT);
                 INSERT INTO t{t} (uuid, modified_on, name, qty, price, note)
                 WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < {per})
                 SELECT printf('%08x-0000-4000-8000-%012x', {t}, i),
                        '2024-01-01T00:00:00.000Z', 'name ' || i, i % 97, i * 0.25,
                        'a note of moderate length for row ' || i FROM c;"
            ))
            .unwrap();
        }
    }
    let mut s = Store::init(&a, Some("alpha"), None).unwrap();
    s.track(&[], &["id".to_string()]).unwrap();
    drop(s);
    Store::clone_station(&a, &b, "bravo", None).unwrap();
    // The same changes at every size.
    let s = Store::open(&a).unwrap();
    let c = s.connection();
    for i in 0..100 {
        let t = i % TABLES;
        c.execute(
            &format!(
                "UPDATE t{t} SET qty = qty + 1, modified_on = '2024-02-01T00:00:00.000Z' WHERE id = ?1"
            ),
            [i as i64 + 1],
        )
        .unwrap();
    }
    for i in 0..20 {
        let t = i % TABLES;
        c.execute(
            &format!(
                "INSERT INTO t{t} (uuid, modified_on, name, qty) VALUES (?1, '2024-02-01T00:00:00.000Z', 'new', 1)"
            ),
            [format!("ffffffff-0000-4000-8000-{i:012x}")],
        )
        .unwrap();
    }
    for i in 0..10 {
        let t = i % TABLES;
        c.execute(
            &format!(
                "UPDATE t{t} SET deleted = 1, modified_on = '2024-02-01T00:00:00.000Z' WHERE id = ?1"
            ),
            [i as i64 + 200],
        )
        .unwrap();
    }
    for i in 0..5 {
        c.execute(&format!("DELETE FROM t{i} WHERE id = 300"), [])
            .unwrap();
    }
    drop(s);
    // Settle: the first open after the edits records their digests.
    drop(Store::open(&a).unwrap());
    (a, b)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time<T>(mut f: impl FnMut() -> T) -> Duration {
    let mut v = Vec::new();
    for _ in 0..REPS {
        let t = Instant::now();
        std::hint::black_box(f());
        v.push(t.elapsed());
    }
    median(v)
}

struct Row {
    rows: usize,
    open: Duration,
    status: Duration,
    export: Duration,
    import: Duration,
    session: Duration,
    bytes: usize,
}

fn measure(dir: &Path, rows: usize) -> Row {
    let t0 = Instant::now();
    let (a, b) = build(dir, rows);
    eprintln!("built {rows} rows in {:.1} s", t0.elapsed().as_secs_f64());
    let peer = Store::open(&b).unwrap().station().id;
    let open = time(|| Store::open(&a).unwrap());
    let status = time(|| {
        let s = Store::open(&a).unwrap();
        let counts: u64 = s
            .tables()
            .iter()
            .map(|t| s.row_count(&t.name).unwrap())
            .sum();
        let pending: u64 = s
            .peers()
            .unwrap()
            .iter()
            .map(|p| s.pending_for(&p.id).unwrap())
            .sum();
        (counts, pending, s.held_rows().unwrap().len())
    });
    let mut bytes = Vec::new();
    let export = time(|| {
        let s = Store::open(&a).unwrap();
        bytes = s.export_bundle_bytes(&peer).unwrap();
    });
    let hello = radiosync::daemon::store_work::local_info(&Store::open(&b).unwrap(), None)
        .unwrap()
        .vector;
    let session = time(|| {
        let mut s = Store::open(&a).unwrap();
        s.check_capture().unwrap();
        s.export_encoded_against(&peer, Some(&hello))
            .unwrap()
            .bytes
            .len()
    });
    let mut imports = Vec::new();
    for i in 0..REPS {
        let copy = dir.join(format!("b-copy-{i}.db"));
        radiosync::store::copy_station(&b, &copy).unwrap();
        // Flush the copy first: the import's commit fsyncs, and would pay for it.
        std::fs::File::open(&copy).unwrap().sync_all().unwrap();
        let mut s = Store::open(&copy).unwrap();
        let t = Instant::now();
        s.import_bundle_bytes(&bytes).unwrap();
        imports.push(t.elapsed());
        drop(s);
        std::fs::remove_file(&copy).unwrap();
    }
    for p in [&a, &b] {
        let _ = std::fs::remove_file(p);
        for ext in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{ext}", p.display()));
        }
    }
    Row {
        rows,
        open,
        status,
        export,
        import: median(imports),
        session,
        bytes: bytes.len(),
    }
}

fn main() {
    let mut sizes = vec![800, 10_000, 100_000, 1_000_000];
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--sizes") {
        sizes = args[i + 1]
            .split(',')
            .map(|s| s.parse().expect("a row count"))
            .collect();
    }
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let results: Vec<Row> = sizes.iter().map(|n| measure(dir.path(), *n)).collect();
    let base = results
        .iter()
        .find(|r| r.rows == 10_000)
        .unwrap_or(&results[0]);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let ratio = |d: Duration, b: Duration| ms(d) / ms(b);
    println!(
        "| rows | bundle bytes | open ms (×) | status ms (×) | export ms (×) | import ms (×) | session start ms (×) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for r in &results {
        println!(
            "| {} | {} | {:.1} ({:.2}) | {:.1} ({:.2}) | {:.1} ({:.2}) | {:.1} ({:.2}) | {:.1} ({:.2}) |",
            r.rows,
            r.bytes,
            ms(r.open),
            ratio(r.open, base.open),
            ms(r.status),
            ratio(r.status, base.status),
            ms(r.export),
            ratio(r.export, base.export),
            ms(r.import),
            ratio(r.import, base.import),
            ms(r.session),
            ratio(r.session, base.session),
        );
    }
    if let [.., a, b] = &results[..] {
        println!(
            "\n{} -> {} rows: open {:.2}×, status {:.2}×, export {:.2}×, import {:.2}×, session start {:.2}×",
            a.rows,
            b.rows,
            ratio(b.open, a.open),
            ratio(b.status, a.status),
            ratio(b.export, a.export),
            ratio(b.import, a.import),
            ratio(b.session, a.session)
        );
    }
}
