//! File sync end to end through the `radiosync` binary: bundles as files, and
//! bad bundles refused with exit code != 0 and the database untouched.

mod store_util;

use std::path::{Path, PathBuf};
use std::process::Command;

use store_util::{dump, scratch};

const SAMPLE: &str = include_str!("../data/sample.sql");

fn rs(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_radiosync"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(args: &[&str]) -> String {
    let (code, out, err) = rs(args);
    assert_eq!(code, 0, "radiosync {args:?} failed: {err}");
    out
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Station a from the sample, tracked, and clone b.
fn two_stations(dir: &Path) -> (PathBuf, PathBuf) {
    let a = dir.join("a.sqlite");
    let b = dir.join("b.sqlite");
    rusqlite::Connection::open(&a)
        .unwrap()
        .execute_batch(SAMPLE)
        .unwrap();
    ok(&["init", "--db", s(&a), "--name", "alpha"]);
    ok(&["track", "--db", s(&a), "--all"]);
    ok(&["clone", "--from", s(&a), "--to", s(&b), "--name", "bravo"]);
    (a, b)
}

fn sql(db: &Path, sql: &str) {
    rusqlite::Connection::open(db)
        .unwrap()
        .execute_batch(sql)
        .unwrap();
}

fn station_uuid(db: &Path) -> String {
    let out = ok(&["status", "--db", s(db), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["station"]["uuid"].as_str().unwrap().to_string()
}

#[test]
fn two_stations_sync_through_files() {
    let dir = scratch();
    let d = dir.path();
    let (a, b) = two_stations(d);
    let uuid_a = station_uuid(&a);
    ok(&["init", "--db", s(&a)]);
    assert_eq!(station_uuid(&a), uuid_a, "init again keeps the UUID");
    sql(&a, "UPDATE hms_hospital SET status = 'a', modified_on = '2026-01-01T10:00:00.000Z' WHERE id = 1;
             INSERT INTO gis_location (id, uuid, modified_on, l2) VALUES (1000, 'new-a', '2026-01-01T10:00:00.000Z', 'x');");
    sql(&b, "UPDATE hms_hospital SET status = 'b', modified_on = '2026-01-01T11:00:00.000Z' WHERE id = 1;
             UPDATE pr_person SET deleted = 1, modified_on = '2026-01-01T11:00:00.000Z' WHERE id = 3;");
    let ab = d.join("ab.bundle");
    let ba = d.join("ba.bundle");
    for _ in 0..2 {
        ok(&["export", "--db", s(&a), "--peer", "bravo", "--out", s(&ab)]);
        ok(&["import", "--db", s(&b), s(&ab)]);
        ok(&["export", "--db", s(&b), "--peer", "alpha", "--out", s(&ba)]);
        ok(&["import", "--db", s(&a), s(&ba)]);
    }
    let q = |db: &Path| -> (String, i64, i64) {
        rusqlite::Connection::open(db)
            .unwrap()
            .query_row(
                "SELECT (SELECT status FROM hms_hospital WHERE id = 1),
                        (SELECT deleted FROM pr_person WHERE id = 3),
                        (SELECT count(*) FROM gis_location WHERE uuid = 'new-a')",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap()
    };
    assert_eq!(q(&a), ("b".into(), 1, 1));
    assert_eq!(q(&b), q(&a));
    let status: serde_json::Value =
        serde_json::from_str(&ok(&["status", "--db", s(&a), "--json"])).unwrap();
    assert_eq!(status["peers"][0]["pending_rows"], 0);
    assert!(ok(&["log", "--db", s(&b)]).contains("alpha"));
    assert!(ok(&["conflicts", "--db", s(&b)]).contains("hms_hospital"));
    assert!(ok(&["peer", "list", "--db", s(&a)]).contains("bravo"));
    // A slice by age is importable by a peer and changes nothing it already has.
    let slice = d.join("slice.bundle");
    ok(&[
        "export",
        "--db",
        s(&a),
        "--since",
        "2026-01-01T00:00:00Z",
        "--out",
        s(&slice),
    ]);
    let before = dump(&b);
    ok(&["import", "--db", s(&b), s(&slice)]);
    assert_eq!(dump(&b), before);
}

#[test]
fn bad_bundles_are_refused_and_change_nothing() {
    let dir = scratch();
    let d = dir.path();
    let (a, b) = two_stations(d);
    sql(&a, "UPDATE inv_inv_item SET quantity = 1, modified_on = '2026-02-01T00:00:00.000Z' WHERE id <= 20;");
    let good = d.join("good.bundle");
    ok(&[
        "export",
        "--db",
        s(&a),
        "--peer",
        "bravo",
        "--out",
        s(&good),
    ]);
    let bytes = std::fs::read(&good).unwrap();

    // Another station c (a clone of a), and a station e with a different schema.
    let c = d.join("c.sqlite");
    ok(&["clone", "--from", s(&a), "--to", s(&c), "--name", "charlie"]);
    let for_c = d.join("for-c.bundle");
    ok(&[
        "export",
        "--db",
        s(&a),
        "--peer",
        "charlie",
        "--out",
        s(&for_c),
    ]);
    let uuid_b = station_uuid(&b);
    ok(&[
        "peer",
        "add",
        "--db",
        s(&c),
        "--name",
        "bravo",
        "--uuid",
        &uuid_b,
        "--no-auth",
    ]);
    let from_c = d.join("from-c.bundle");
    ok(&[
        "export",
        "--db",
        s(&c),
        "--peer",
        "bravo",
        "--out",
        s(&from_c),
    ]);
    let e = d.join("e.sqlite");
    ok(&["clone", "--from", s(&a), "--to", s(&e), "--name", "echo"]);
    sql(&e, "CREATE TABLE extra (id INTEGER, uuid TEXT PRIMARY KEY, modified_on TEXT, deleted INTEGER);");
    ok(&["track", "--db", s(&e), "extra"]);
    sql(
        &e,
        "INSERT INTO extra VALUES (1, 'x1', '2026-01-01T00:00:00.000Z', 0);",
    );
    ok(&[
        "peer",
        "add",
        "--db",
        s(&e),
        "--name",
        "bravo",
        "--uuid",
        &uuid_b,
        "--no-auth",
    ]);
    let uuid_e = station_uuid(&e);
    ok(&[
        "peer",
        "add",
        "--db",
        s(&b),
        "--name",
        "echo",
        "--uuid",
        &uuid_e,
        "--no-auth",
    ]);
    let from_e = d.join("from-e.bundle");
    ok(&[
        "export",
        "--db",
        s(&e),
        "--peer",
        "bravo",
        "--out",
        s(&from_e),
    ]);

    let mut corrupted = bytes.clone();
    let mid = corrupted.len() / 2;
    corrupted[mid] ^= 0x40;
    let write = |name: &str, data: &[u8]| {
        let p = d.join(name);
        std::fs::write(&p, data).unwrap();
        p
    };
    let cases: Vec<(&str, PathBuf)> = vec![
        (
            "truncated",
            write("trunc.bundle", &bytes[..bytes.len() / 2]),
        ),
        (
            "cut by one byte",
            write("cut1.bundle", &bytes[..bytes.len() - 1]),
        ),
        ("corrupted", write("bad.bundle", &corrupted)),
        ("empty", write("empty.bundle", &[])),
        (
            "garbage",
            write("garbage.bundle", b"radiosync? no, just text\n"),
        ),
        ("addressed to another station", for_c),
        ("from an unknown peer", from_c),
        ("missing file", d.join("nothing-here.bundle")),
    ];
    let before = dump(&b);
    for (what, file) in cases {
        let (code, _, err) = rs(&["import", "--db", s(&b), s(&file)]);
        assert_ne!(code, 0, "{what}: accepted");
        assert!(!err.is_empty(), "{what}: no message");
        assert_eq!(dump(&b), before, "{what}: database changed");
    }
    // The good one applies; the same bundle again changes nothing.
    ok(&["import", "--db", s(&b), s(&good)]);
    let after = dump(&b);
    assert_ne!(after, before);
    ok(&["import", "--db", s(&b), s(&good)]);
    assert_eq!(dump(&b), after);
    // Refusals are in the log.
    assert!(ok(&["log", "--db", s(&b)]).contains("refused"));
    // A station that tracks one more table still syncs the tables both have;
    // the other table's rows are counted and left out. (At first contact the
    // exchange is a reconciliation: offer, reply, rows.)
    ok(&["import", "--db", s(&b), s(&from_e)]);
    let reply = d.join("reply-to-e.rsr");
    ok(&[
        "export",
        "--db",
        s(&b),
        "--peer",
        "echo",
        "--out",
        s(&reply),
    ]);
    ok(&["import", "--db", s(&e), s(&reply)]);
    let rows = d.join("rows-from-e.rsr");
    ok(&[
        "export",
        "--db",
        s(&e),
        "--peer",
        "bravo",
        "--out",
        s(&rows),
    ]);
    ok(&["import", "--db", s(&b), s(&rows)]);
    assert!(ok(&["log", "--db", s(&b)]).contains("of tables not tracked here"));
}

#[test]
fn track_refuses_a_table_without_blueprint_columns() {
    let dir = scratch();
    let db = dir.path().join("x.sqlite");
    sql(
        &db,
        "CREATE TABLE notes (id INTEGER, uuid TEXT, body TEXT);",
    );
    ok(&["init", "--db", s(&db)]);
    let (code, _, err) = rs(&["track", "--db", s(&db), "notes"]);
    assert_ne!(code, 0);
    assert!(err.contains("modified_on, deleted"), "{err}");
}

#[test]
fn dictionary_is_used_only_while_both_hold_it() {
    use radiosync::store::Store;
    let dir = scratch();
    let d = dir.path();
    let (a, b) = two_stations(d);
    let mut sa = Store::open(&a).unwrap();
    let mut sb = Store::open(&b).unwrap();
    let ida = sa.station().id;
    let idb = sb.station().id;
    assert!(
        sa.dictionary().unwrap().is_some(),
        "track trains a dictionary"
    );
    let dict_id = sa.dictionary().unwrap().unwrap().id;
    assert_eq!(sa.peer_by_id(&idb).unwrap().unwrap().dict_id, dict_id);
    // Enough rows that compression pays (else the codec sends the body raw).
    sql(&a, "UPDATE org_office SET name = 'x', modified_on = '2026-04-01T00:00:00.000Z' WHERE id <= 60;");
    let bytes = sa.export_bundle_bytes(&idb).unwrap();
    assert!(
        radiosync::codec::peek_header(&bytes).unwrap().uses_dict,
        "clones share the dictionary"
    );
    sb.import_bundle_bytes(&bytes).unwrap();
    // b trains a new one: a does not hold it, so neither side uses a dictionary now.
    let old_id = sb.dictionary().unwrap().unwrap().id;
    sql(
        &b,
        "UPDATE org_organisation SET website = 'https://retrained.example/' || id,
             modified_on = '2026-04-01T12:00:00.000Z';",
    );
    assert_ne!(sb.retrain_dictionary().unwrap().id, old_id);
    let back = sb.export_bundle_bytes(&ida).unwrap();
    let h = radiosync::codec::peek_header(&back).unwrap();
    assert!(!h.uses_dict);
    sa.import_bundle_bytes(&back).unwrap();
    sql(&a, "UPDATE org_office SET name = 'y', modified_on = '2026-04-02T00:00:00.000Z' WHERE id <= 60;");
    let again = sa.export_bundle_bytes(&idb).unwrap();
    assert!(!radiosync::codec::peek_header(&again).unwrap().uses_dict);
    let r = sb.import_bundle_bytes(&again).unwrap();
    assert_eq!(r.applied, 60);
}
