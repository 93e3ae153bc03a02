//! Bytes per changed row: our bundle against the blueprints' nicedbdump JSON
//! (`[[table, [columns], [[values]...]], ...]`) raw, gzip -9 and xz -9, on
//! `../shared/data/public.sqlite`. A program printing tables, not a timing test:
//! `cargo bench --bench bundle_size`.

use flate2::write::GzEncoder;
use radiosync::codec::{self, Dictionary};
use radiosync::delta::{
    Bundle, BundleKind, RowBody, RowVersion, SchemaFingerprint, StationId, TableChanges, Tag,
    Value, VersionVector,
};
use radiosync::store::value_from_ref;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::io::Write;

const DB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/public.sqlite");
fn dict_size() -> usize {
    std::env::var("DICT_KIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
        * 1024
}

/// Columns that are not payload: identity, version and the site-local id.
const NOT_PAYLOAD: [&str; 3] = ["id", "uuid", "modified_on"];

struct Table {
    name: String,
    columns: Vec<String>,
    rows: Vec<Vec<Value>>,
}

/// One row of the dataset: (table index, row index).
type RowRef = (usize, usize);

fn load() -> Vec<Table> {
    let db = rusqlite::Connection::open_with_flags(DB, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap_or_else(|e| panic!("cannot open {DB}: {e}"));
    let mut names: Vec<String> = db
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let mut stmt = db
                .prepare(&format!("SELECT * FROM \"{name}\" ORDER BY id"))
                .unwrap();
            let columns: Vec<String> = stmt.column_names().map(|s| s.to_string()).collect();
            let n = columns.len();
            let rows = stmt
                .query_map([], |r| {
                    (0..n).map(|i| Ok(value_from_ref(r.get_ref(i)?))).collect()
                })
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            Table {
                name,
                columns,
                rows,
            }
        })
        .collect()
}

fn json_value(v: &Value) -> serde_json::Value {
    match v {
        Value::Null => serde_json::Value::Null,
        Value::Integer(i) => (*i).into(),
        Value::Real(x) => serde_json::Number::from_f64(*x)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null),
        Value::Text(t) => t.clone().into(),
        Value::Blob(b) => b.iter().map(|x| u64::from(*x)).collect::<Vec<_>>().into(),
    }
}

/// nicedbdump: per table, its name, every column, and the whole rows.
fn nicedbdump(tables: &[Table], rows: &[RowRef]) -> Vec<u8> {
    let mut out = Vec::new();
    for (ti, t) in tables.iter().enumerate() {
        let mine: Vec<serde_json::Value> = rows
            .iter()
            .filter(|(x, _)| *x == ti)
            .map(|(_, ri)| t.rows[*ri].iter().map(json_value).collect())
            .collect();
        if !mine.is_empty() {
            out.push(serde_json::json!([t.name, t.columns, mine]));
        }
    }
    serde_json::to_vec(&out).unwrap()
}

fn gzip9(b: &[u8]) -> usize {
    let mut e = GzEncoder::new(Vec::new(), flate2::Compression::new(9));
    e.write_all(b).unwrap();
    e.finish().unwrap().len()
}

fn xz9(b: &[u8]) -> usize {
    let mut e = xz2::write::XzEncoder::new(Vec::new(), 9);
    e.write_all(b).unwrap();
    e.finish().unwrap().len()
}

struct World {
    sender: StationId,
    receiver: StationId,
    third: StationId,
}

fn station(rng: &mut ChaCha8Rng) -> StationId {
    StationId(rng.gen())
}

/// A full RowVersion straight from the table row.
fn row_version(t: &Table, row: &[Value], origin: StationId, seq: u64) -> RowVersion {
    let mut uuid = String::new();
    let mut modified_on = String::new();
    let mut payload = Vec::new();
    for (c, v) in t.columns.iter().zip(row) {
        match (c.as_str(), v) {
            ("uuid", Value::Text(s)) => uuid = s.clone(),
            ("modified_on", Value::Text(s)) => modified_on = s.clone(),
            (c, _) if NOT_PAYLOAD.contains(&c) => {}
            _ => payload.push(v.clone()),
        }
    }
    RowVersion {
        uuid,
        tag: Tag { origin, seq },
        writer: origin,
        modified_on,
        body: RowBody::Full(payload),
    }
}

/// Rows grouped per table, in table order; `origin_of` picks each row's origin.
fn table_changes(
    tables: &[Table],
    rows: &[RowRef],
    mut origin_of: impl FnMut(usize) -> StationId,
) -> Vec<TableChanges> {
    let mut seqs = std::collections::HashMap::new();
    let mut out: Vec<TableChanges> = Vec::new();
    for (ti, t) in tables.iter().enumerate() {
        let mut tc = TableChanges {
            table: ti as u16,
            rows: vec![],
        };
        for (i, (_, ri)) in rows.iter().enumerate().filter(|(_, (x, _))| *x == ti) {
            let origin = origin_of(i);
            let seq = seqs.entry(origin).or_insert(19_000u64);
            *seq += 1;
            tc.rows.push(row_version(t, &t.rows[*ri], origin, *seq));
        }
        if !tc.rows.is_empty() {
            out.push(tc);
        }
    }
    out
}

fn bundle(w: &World, tables: Vec<TableChanges>) -> Bundle {
    let mut v = VersionVector::default();
    // The sender's newest change is in the bundle; it holds some of the receiver's.
    v.raise(w.receiver, 3_000);
    for t in &tables {
        for r in &t.rows {
            v.raise(r.tag.origin, r.tag.seq);
        }
    }
    Bundle {
        kind: BundleKind::Delta,
        sender: w.sender,
        receiver: Some(w.receiver),
        schema: SchemaFingerprint(0x5eed_f00d),
        sender_vector: v,
        wants: vec![],
        tables,
        layout: None,
    }
}

/// A dictionary trained on every row not in `measured` (held out).
fn dictionary(tables: &[Table], w: &World, measured: &[RowRef]) -> Dictionary {
    let held: std::collections::HashSet<RowRef> = measured.iter().copied().collect();
    let all: Vec<RowRef> = tables
        .iter()
        .enumerate()
        .flat_map(|(ti, t)| (0..t.rows.len()).map(move |ri| (ti, ri)))
        .filter(|r| !held.contains(r))
        .collect();
    let samples = codec::training_samples(&table_changes(tables, &all, |_| w.sender));
    codec::train_dictionary(&samples, dict_size()).expect("training")
}

struct Sizes {
    json: usize,
    gzip: usize,
    xz: usize,
    ours: usize,
    ours_dict: usize,
}

fn measure(
    tables: &[Table],
    w: &World,
    rows: &[RowRef],
    tc: Vec<TableChanges>,
    d: &Dictionary,
) -> Sizes {
    let json = nicedbdump(tables, rows);
    let b = bundle(w, tc);
    let plain = codec::encode(&b, None, false).unwrap();
    let with = codec::encode(&b, Some(d), true).unwrap();
    assert_eq!(
        codec::decode(&plain, None, &codec::Ends::of(&b)).unwrap(),
        b
    );
    assert_eq!(
        codec::decode(&with, Some(d), &codec::Ends::of(&b)).unwrap(),
        b
    );
    Sizes {
        json: json.len(),
        gzip: gzip9(&json),
        xz: xz9(&json),
        ours: plain.len(),
        ours_dict: with.len(),
    }
}

fn print_header(first: &str) {
    println!(
        "| {first} | JSON | gzip -9 | xz -9 | ours | ours+dict | ours/gzip | ours+dict/gzip | ours+dict/xz |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
}

fn print_row(label: &str, s: &Sizes, per: f64) {
    let g = s.gzip as f64;
    println!(
        "| {label} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} | {:.2} |",
        s.json as f64 / per,
        g / per,
        s.xz as f64 / per,
        s.ours as f64 / per,
        s.ours_dict as f64 / per,
        s.ours as f64 / g,
        s.ours_dict as f64 / g,
        s.ours_dict as f64 / s.xz as f64,
    );
}

fn add(a: &mut Sizes, b: &Sizes) {
    a.json += b.json;
    a.gzip += b.gzip;
    a.xz += b.xz;
    a.ours += b.ours;
    a.ours_dict += b.ours_dict;
}

fn zero() -> Sizes {
    Sizes {
        json: 0,
        gzip: 0,
        xz: 0,
        ours: 0,
        ours_dict: 0,
    }
}

fn main() {
    let tables = load();
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let w = World {
        sender: station(&mut rng),
        receiver: station(&mut rng),
        third: station(&mut rng),
    };
    let total: usize = tables.iter().map(|t| t.rows.len()).sum();
    let every: Vec<RowRef> = tables
        .iter()
        .enumerate()
        .flat_map(|(ti, t)| (0..t.rows.len()).map(move |ri| (ti, ri)))
        .collect();
    println!("# Bundle size: bytes per changed row ({total} rows in {DB})\n");
    println!(
        "Dictionary: {} KiB, trained on rows held out of the measured sample. Ratios are of total bytes.\n",
        dict_size() / 1024
    );

    // Single rows, per table: mean over up to 40 rows each, one bundle per row.
    println!("## One changed row per bundle (full row; origin = writer = sender)\n");
    const PER_TABLE: usize = 40;
    let mut picks: Vec<RowRef> = Vec::new();
    for (ti, t) in tables.iter().enumerate() {
        let mut idx: Vec<usize> = (0..t.rows.len()).collect();
        idx.shuffle(&mut rng);
        picks.extend(idx.into_iter().take(PER_TABLE).map(|ri| (ti, ri)));
    }
    let d = dictionary(&tables, &w, &picks);
    print_header("table (mean of 40)");
    let mut all = zero();
    let mut worst: f64 = 0.0;
    for (ti, t) in tables.iter().enumerate() {
        let mut sum = zero();
        let mine: Vec<RowRef> = picks.iter().copied().filter(|(x, _)| *x == ti).collect();
        for r in &mine {
            let tc = table_changes(&tables, &[*r], |_| w.sender);
            add(&mut sum, &measure(&tables, &w, &[*r], tc, &d));
        }
        worst = worst.max(sum.ours_dict as f64 / sum.gzip as f64);
        print_row(&t.name, &sum, mine.len() as f64);
        add(&mut all, &sum);
    }
    print_row("**all tables**", &all, picks.len() as f64);
    println!("\nWorst table, ours+dict/gzip: {worst:.2} (target <= 0.50)\n");

    // Batches across tables.
    println!("## N changed rows in one bundle (full rows, sampled across tables; origin 80 % sender, 20 % a third station)\n");
    print_header("rows");
    for n in [1usize, 10, 100, 1000, 10000] {
        // Small batches vary a lot: average several draws.
        let draws = match n {
            1 => 200,
            10 => 20,
            100 => 5,
            _ => 1,
        };
        let mut sum = zero();
        for _ in 0..draws {
            let mut pool = every.clone();
            pool.shuffle(&mut rng);
            pool.truncate(n);
            let d = dictionary(&tables, &w, &pool);
            let origins: Vec<StationId> = (0..n)
                .map(|_| {
                    if n > 1 && rng.gen_bool(0.2) {
                        w.third
                    } else {
                        w.sender
                    }
                })
                .collect();
            let tc = table_changes(&tables, &pool, |i| origins[i]);
            add(&mut sum, &measure(&tables, &w, &pool, tc, &d));
        }
        let label = if draws > 1 {
            format!("{n} (mean of {draws})")
        } else {
            n.to_string()
        };
        print_row(&label, &sum, (n * draws) as f64);
    }

    mixed_store(&tables, &mut rng);
}

/// Indexes (into a table row) of the payload columns, in payload order.
fn payload_columns(t: &Table) -> Vec<usize> {
    (0..t.columns.len())
        .filter(|c| !NOT_PAYLOAD.contains(&t.columns[*c].as_str()))
        .collect()
}

fn sql_value(v: &Value) -> rusqlite::types::Value {
    match v {
        Value::Null => rusqlite::types::Value::Null,
        Value::Integer(i) => rusqlite::types::Value::Integer(*i),
        Value::Real(x) => rusqlite::types::Value::Real(*x),
        Value::Text(t) => rusqlite::types::Value::Text(t.clone()),
        Value::Blob(b) => rusqlite::types::Value::Blob(b.clone()),
    }
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// What one site changed: inserted rows and (table, uuid) of edited rows.
struct SiteEdits {
    inserted: Vec<RowRef>,
    edited: Vec<(usize, String)>,
}

/// The mixed workload through the real store: both sites start from the same
/// data (station B is a `clone` of A, dictionary trained at `track` time), each
/// makes a few hundred inserts of rows nobody had, updates of 1-3 columns and
/// soft-deletes with plain SQL, then exports a bundle for the other.
fn mixed_store(tables: &[Table], rng: &mut ChaCha8Rng) {
    use radiosync::store::Store;
    const INSERTS: usize = 300;
    const UPDATES: usize = 200;
    const DELETES: usize = 40;
    println!(
        "\n## Mixed workload through the store (`clone`, plain SQL edits, `export_bundle_bytes`)\n"
    );
    println!(
        "Per site: {INSERTS} inserts (rows neither site nor the dictionary had), {UPDATES} updates of 1-3 columns, \
         {DELETES} soft-deletes, then one bundle for the other site. JSON carries whole rows, as getdata does. \
         Our bundle is exactly what `export_bundle_bytes` writes (store dictionary: {} KiB).\n",
        radiosync::store::DICT_SIZE / 1024
    );
    let dir = tempfile::tempdir().unwrap();
    let a_path = dir.path().join("a.sqlite");
    let b_path = dir.path().join("b.sqlite");
    radiosync::store::copy_station(DB, &a_path).unwrap();
    // The shared data is write-protected; so is a plain copy of it.
    let mut perms = std::fs::metadata(&a_path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&a_path, perms).unwrap();

    let mut pool: Vec<RowRef> = tables
        .iter()
        .enumerate()
        .flat_map(|(ti, t)| (0..t.rows.len()).map(move |ri| (ti, ri)))
        .collect();
    pool.shuffle(rng);
    let (new_a, rest) = pool.split_at(INSERTS);
    let (new_b, rest) = rest.split_at(INSERTS);
    let (edit_a, rest) = rest.split_at(UPDATES + DELETES);
    let edit_b = &rest[..UPDATES + DELETES];
    let uuid_of = |(ti, ri): RowRef| -> String {
        let t = &tables[ti];
        match &t.rows[ri][t.columns.iter().position(|c| c == "uuid").unwrap()] {
            Value::Text(u) => u.clone(),
            _ => unreachable!("uuid is text"),
        }
    };
    {
        // The rows to be inserted later exist nowhere yet.
        let conn = rusqlite::Connection::open(&a_path).unwrap();
        for r in new_a.iter().chain(new_b) {
            conn.execute(
                &format!("DELETE FROM {} WHERE uuid = ?1", quote(&tables[r.0].name)),
                [uuid_of(*r)],
            )
            .unwrap();
        }
    }
    let mut a = Store::init(&a_path, Some("site-a"), None).unwrap();
    a.track(&[], &["id".to_string()]).unwrap();
    a.retrain_dictionary().unwrap();
    let mut b = Store::clone_station(&a_path, &b_path, "site-b", None).unwrap();

    let mut ms = 1_736_496_000_000i64;
    let mut edit = |store: &Store, inserts: &[RowRef], edits: &[RowRef], rng: &mut ChaCha8Rng| {
        let conn = store.connection();
        let mut out = SiteEdits {
            inserted: inserts.to_vec(),
            edited: Vec::new(),
        };
        let mut now = |rng: &mut ChaCha8Rng| {
            ms += rng.gen_range(1_000..600_000);
            radiosync::delta::time::canonical_text(ms).expect("in range")
        };
        for (ti, ri) in inserts {
            let t = &tables[*ti];
            let next_id: i64 = conn
                .query_row(
                    &format!("SELECT COALESCE(MAX(id), 0) + 1 FROM {}", quote(&t.name)),
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            let mut row: Vec<rusqlite::types::Value> = t.rows[*ri].iter().map(sql_value).collect();
            for (c, v) in t.columns.iter().zip(row.iter_mut()) {
                match c.as_str() {
                    "id" => *v = rusqlite::types::Value::Integer(next_id),
                    // An inserted row carries the site's clock.
                    "modified_on" => *v = rusqlite::types::Value::Text(now(rng)),
                    _ => {}
                }
            }
            let cols: Vec<String> = t.columns.iter().map(|c| quote(c)).collect();
            let marks: Vec<String> = (1..=cols.len()).map(|i| format!("?{i}")).collect();
            conn.execute(
                &format!(
                    "INSERT INTO {} ({}) VALUES ({})",
                    quote(&t.name),
                    cols.join(", "),
                    marks.join(", ")
                ),
                rusqlite::params_from_iter(row),
            )
            .unwrap();
        }
        for (k, r) in edits.iter().enumerate() {
            let t = &tables[r.0];
            let uuid = uuid_of(*r);
            let mut sets: Vec<(String, rusqlite::types::Value)> = Vec::new();
            if k < UPDATES {
                let cols = payload_columns(t);
                let mut picks: Vec<usize> = cols
                    .into_iter()
                    .filter(|c| t.columns[*c] != "deleted")
                    .collect();
                picks.shuffle(rng);
                picks.truncate(rng.gen_range(1..=3));
                for c in picks {
                    // A value this column holds in another row.
                    let other = &t.rows[rng.gen_range(0..t.rows.len())];
                    sets.push((t.columns[c].clone(), sql_value(&other[c])));
                }
            } else {
                sets.push(("deleted".into(), rusqlite::types::Value::Integer(1)));
            }
            sets.push(("modified_on".into(), rusqlite::types::Value::Text(now(rng))));
            let assign: Vec<String> = sets
                .iter()
                .enumerate()
                .map(|(i, (c, _))| format!("{} = ?{}", quote(c), i + 1))
                .collect();
            let mut params: Vec<rusqlite::types::Value> =
                sets.into_iter().map(|(_, v)| v).collect();
            params.push(rusqlite::types::Value::Text(uuid.clone()));
            conn.execute(
                &format!(
                    "UPDATE {} SET {} WHERE uuid = ?{}",
                    quote(&t.name),
                    assign.join(", "),
                    params.len()
                ),
                rusqlite::params_from_iter(params),
            )
            .unwrap();
            out.edited.push((r.0, uuid));
        }
        out
    };
    let ea = edit(&a, new_a, edit_a, rng);
    let eb = edit(&b, new_b, edit_b, rng);

    print_header("site");
    let mut total = zero();
    let mut changed = 0usize;
    let a_id = a.station().id;
    let b_id = b.station().id;
    for (name, from, to, edits, peer_id) in [
        ("site A -> B", &a, &b, &ea, b_id),
        ("site B -> A", &b, &a, &eb, a_id),
    ] {
        let bytes = from.export_bundle_bytes(&peer_id).unwrap();
        let bundle = from.export_for(&peer_id).unwrap();
        let rows: usize = bundle.tables.iter().map(|t| t.rows.len()).sum();
        let deltas: usize = bundle
            .tables
            .iter()
            .flat_map(|t| &t.rows)
            .filter(|r| matches!(r.body, RowBody::Delta { .. }))
            .count();
        let by_base = bundle
            .tables
            .iter()
            .flat_map(|t| &t.rows)
            .filter(|r| r.uuid.is_empty() && matches!(r.body, RowBody::Delta { .. }))
            .count();
        let _ = to;
        // JSON: the changed rows, whole, as they are now at the sender.
        let mut json_rows: Vec<(usize, Vec<Value>)> = Vec::new();
        let changed_uuids = edits
            .inserted
            .iter()
            .map(|r| (r.0, uuid_of(*r)))
            .chain(edits.edited.iter().cloned());
        for (ti, uuid) in changed_uuids {
            let t = &tables[ti];
            let n = t.columns.len();
            let row = from
                .connection()
                .query_row(
                    &format!("SELECT * FROM {} WHERE uuid = ?1", quote(&t.name)),
                    [uuid],
                    |r| {
                        (0..n)
                            .map(|i| Ok(value_from_ref(r.get_ref(i)?)))
                            .collect::<Result<Vec<_>, _>>()
                    },
                )
                .unwrap();
            json_rows.push((ti, row));
        }
        let json = nicedbdump_rows(tables, &json_rows);
        let dict = from.dictionary().unwrap().expect("trained");
        let plain = codec::encode(&bundle, None, false).unwrap();
        let s = Sizes {
            json: json.len(),
            gzip: gzip9(&json),
            xz: xz9(&json),
            ours: plain.len(),
            ours_dict: bytes.len(),
        };
        assert_eq!(
            codec::decode(&bytes, Some(&dict), &codec::Ends::of(&bundle)).unwrap(),
            bundle
        );
        print_row(
            &format!("{name}: {rows} rows ({deltas} deltas, {by_base} by base tag)"),
            &s,
            json_rows.len() as f64,
        );
        add(&mut total, &s);
        changed += json_rows.len();
    }
    print_row("**both sites**", &total, changed as f64);
    // The bundles really carry the changes: apply them both ways.
    let ab = a.export_bundle_bytes(&b_id).unwrap();
    let ba = b.export_bundle_bytes(&a_id).unwrap();
    let rb = b.import_bundle_bytes(&ab).unwrap();
    let ra = a.import_bundle_bytes(&ba).unwrap();
    println!(
        "\nImported: A -> B applied {}, B -> A applied {} (conflicts kept local: {} / {}).",
        rb.applied, ra.applied, rb.kept_local, ra.kept_local
    );
}

/// nicedbdump of explicit row values (edited rows carry their new values).
fn nicedbdump_rows(tables: &[Table], rows: &[(usize, Vec<Value>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (ti, t) in tables.iter().enumerate() {
        let mine: Vec<serde_json::Value> = rows
            .iter()
            .filter(|(x, _)| *x == ti)
            .map(|(_, r)| r.iter().map(json_value).collect())
            .collect();
        if !mine.is_empty() {
            out.push(serde_json::json!([t.name, t.columns, mine]));
        }
    }
    serde_json::to_vec(&out).unwrap()
}
