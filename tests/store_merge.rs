//! Store scenarios at the Bundle level: capture, export, merge, watermarks.

mod store_util;

use radiosync::delta::{BundleKind, RowBody, SchemaFingerprint, StationId, Value};
use radiosync::store::{Store, StoreError};
use store_util::*;

fn exec(s: &Store, sql: &str) {
    s.connection().execute_batch(sql).unwrap();
}

fn pair(dir: &std::path::Path) -> (Store, Store) {
    let a = first_station(dir, "a", 5);
    let b = clone_of(dir, "a", "b");
    let a = Store::open(a.path()).unwrap();
    (a, b)
}

#[test]
fn init_is_idempotent_and_keeps_the_uuid() {
    let dir = scratch();
    let p = dir.path().join("s.db");
    let id = Store::init(&p, Some("alpha"), None).unwrap().station().id;
    let again = Store::init(&p, None, None).unwrap().station();
    assert_eq!(again.id, id);
    assert_eq!(again.name, "alpha");
}

#[test]
fn track_names_missing_columns() {
    let dir = scratch();
    let p = dir.path().join("s.db");
    rusqlite::Connection::open(&p)
        .unwrap()
        .execute_batch("CREATE TABLE notes (id INTEGER, uuid TEXT, body TEXT)")
        .unwrap();
    let mut s = Store::init(&p, None, None).unwrap();
    let err = s.track(&["notes".into()], &["id".into()]).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, StoreError::NotSyncable { .. }));
    assert!(msg.contains("lacks modified_on, deleted ("), "{msg}");
}

#[test]
fn clone_shares_everything_and_sends_nothing() {
    let dir = scratch();
    let (a, b) = pair(dir.path());
    assert_eq!(rows_in(&a.export_for(&b.station().id).unwrap()), 0);
    assert_eq!(rows_in(&b.export_for(&a.station().id).unwrap()), 0);
    assert_ne!(a.station().id, b.station().id);
    assert_eq!(content(&a), content(&b));
}

#[test]
fn insert_gets_a_fresh_local_id_and_keeps_its_text() {
    let dir = scratch();
    let (a, mut b) = pair(dir.path());
    exec(&b, "INSERT INTO item (id, uuid, modified_on, name) VALUES (6, 'b-new', '2024-06-01T00:00:00Z', 'b thing')");
    exec(
        &a,
        "INSERT INTO item (id, uuid, modified_on, name, qty, price, photo)
              VALUES (6, 'a-new', '2024-06-01 00:00:00', 'a thing', 7, 0.1 + 0.2, x'00ff')",
    );
    let clock_b = b.clock().unwrap();
    let bundle = send(&a, &mut b);
    assert_eq!(rows_in(&bundle), 1);
    assert_eq!(
        b.clock().unwrap(),
        clock_b,
        "applying must not look like a local change"
    );
    let (id, m, price): (i64, String, f64) = b
        .connection()
        .query_row(
            "SELECT id, modified_on, price FROM item WHERE uuid = 'a-new'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(id, 7);
    assert_eq!(m, "2024-06-01 00:00:00");
    assert_eq!(price.to_bits(), (0.1f64 + 0.2).to_bits());
    assert_eq!(
        b.row_tag("item", "a-new").unwrap().unwrap().1,
        a.station().id
    );
}

#[test]
fn an_update_of_one_column_travels_as_a_delta() {
    let dir = scratch();
    let (a, mut b) = pair(dir.path());
    exec(
        &a,
        "UPDATE item SET qty = 99, modified_on = '2024-07-01T00:00:00.000Z' WHERE uuid = 'item-2'",
    );
    let bundle = send(&a, &mut b);
    let row = &bundle.tables[0].rows[0];
    match &row.body {
        RowBody::Delta { values, .. } => assert_eq!(values, &vec![Value::Integer(99)]),
        other => panic!("expected a delta, got {other:?}"),
    }
    assert_eq!(content(&a), content(&b));
}

#[test]
fn unconfirmed_changes_repeat_and_are_skipped_when_held() {
    let dir = scratch();
    let (mut a, mut b) = pair(dir.path());
    exec(&a, "UPDATE item SET note = 'x', modified_on = '2024-07-01T00:00:00.000Z' WHERE uuid = 'item-1'");
    let first = send(&a, &mut b);
    let again = a.export_for(&b.station().id).unwrap();
    assert_eq!(rows_in(&again), 1, "not confirmed yet: sent again");
    let before = dump(b.path());
    let rep = b.import_bundle(&again).unwrap();
    assert_eq!((rep.applied, rep.skipped), (0, 1));
    assert_eq!(dump(b.path()), before);
    b.import_bundle(&first).unwrap();
    assert_eq!(dump(b.path()), before);
    // b's bundle back confirms it.
    send(&b, &mut a);
    assert_eq!(rows_in(&a.export_for(&b.station().id).unwrap()), 0);
}

#[test]
fn concurrent_edits_newest_wins_and_loser_is_kept() {
    let dir = scratch();
    let (mut a, mut b) = pair(dir.path());
    exec(&a, "UPDATE item SET name = 'from a', modified_on = '2024-08-01T00:00:00.000Z' WHERE uuid = 'item-0'");
    exec(&b, "UPDATE item SET name = 'from b', modified_on = '2024-08-02T00:00:00.000Z' WHERE uuid = 'item-0'");
    // Delete rule: b soft-deletes after a's update of the same row.
    exec(
        &a,
        "UPDATE item SET qty = 1, modified_on = '2024-08-01T00:00:00.000Z' WHERE uuid = 'item-3'",
    );
    exec(&b, "UPDATE item SET deleted = 1, modified_on = '2024-08-03T00:00:00.000Z' WHERE uuid = 'item-3'");
    // A delete older than the other side's update does not apply.
    exec(&a, "UPDATE item SET deleted = 1, modified_on = '2024-08-01T00:00:00.000Z' WHERE uuid = 'item-4'");
    exec(
        &b,
        "UPDATE item SET qty = 44, modified_on = '2024-08-05T00:00:00.000Z' WHERE uuid = 'item-4'",
    );
    send(&a, &mut b);
    send(&b, &mut a);
    for (k, v) in content(&a) {
        assert_eq!(Some(&v), content(&b).get(&k), "{k:?}");
    }
    let get = |s: &Store, u: &str| -> (String, i64, Option<i64>) {
        s.connection()
            .query_row(
                "SELECT name, deleted, qty FROM item WHERE uuid = ?1",
                [u],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap()
    };
    assert_eq!(get(&a, "item-0").0, "from b");
    assert_eq!(get(&a, "item-3").1, 1);
    assert_eq!(get(&a, "item-4"), ("thing 4".into(), 0, Some(44)));
    // Each losing version is kept once, where the decision was made (here at b,
    // which saw a's versions first; a later saw that b had seen its versions).
    let mut lost = a.conflicts().unwrap();
    lost.extend(b.conflicts().unwrap());
    assert_eq!(lost.len(), 3, "{lost:?}");
    assert!(lost
        .iter()
        .any(|c| c.uuid == "item-0" && c.loser_values.contains("from a")));
    // Once a confirms what it got, nothing is left to send either way.
    send(&a, &mut b);
    let left = a.export_for(&b.station().id).unwrap();
    assert_eq!(rows_in(&left), 0, "{left:?}");
    assert_eq!(rows_in(&b.export_for(&a.station().id).unwrap()), 0);
}

#[test]
fn equal_times_break_the_same_way_on_both_sides() {
    let dir = scratch();
    let (mut a, mut b) = pair(dir.path());
    exec(&a, "UPDATE place SET l1 = 'A', modified_on = '2024-09-01T00:00:00.000Z' WHERE uuid = 'place-1'");
    exec(&b, "UPDATE place SET l1 = 'B', modified_on = '2024-09-01T00:00:00.000Z' WHERE uuid = 'place-1'");
    let ba = b.export_for(&a.station().id).unwrap();
    send(&a, &mut b);
    a.import_bundle(&ba).unwrap();
    assert_eq!(content(&a), content(&b));
}

#[test]
fn a_write_with_a_wrong_clock_is_not_skipped_and_the_winner_travels_back() {
    let dir = scratch();
    let (mut a, mut b) = pair(dir.path());
    exec(&a, "UPDATE item SET note = 'good', modified_on = '2024-10-01T00:00:00.000Z' WHERE uuid = 'item-1'");
    send(&a, &mut b);
    // b's clock is a year behind: its later edit carries an older time.
    exec(&b, "UPDATE item SET note = 'stale clock', modified_on = '2023-10-01T00:00:00.000Z' WHERE uuid = 'item-1'");
    let rep = send(&b, &mut a);
    assert_eq!(rows_in(&rep), 1, "captured by sequence, not by time");
    send(&a, &mut b);
    assert_eq!(content(&a), content(&b));
    let note: String = b
        .connection()
        .query_row("SELECT note FROM item WHERE uuid = 'item-1'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(note, "good");
}

#[test]
fn a_b_c_change_reaches_c_through_b_exactly_once() {
    let dir = scratch();
    let a = first_station(dir.path(), "a", 3);
    let mut b = Store::clone_station(
        path_of(dir.path(), "a"),
        path_of(dir.path(), "b"),
        "b",
        None,
    )
    .unwrap();
    let mut c = Store::clone_station(
        path_of(dir.path(), "b"),
        path_of(dir.path(), "c"),
        "c",
        None,
    )
    .unwrap();
    let mut a = Store::open(a.path()).unwrap();
    // a and c are peers too.
    a.add_peer("c", c.station().id, None).unwrap();
    c.add_peer("a", a.station().id, None).unwrap();
    a.note_peer_vector(&c.station().id, &c.vector().unwrap())
        .unwrap();
    c.note_peer_vector(&a.station().id, &a.vector().unwrap())
        .unwrap();
    exec(&a, "INSERT INTO item (id, uuid, modified_on, name) VALUES (10, 'from-a', '2024-11-01T00:00:00.000Z', 'hello')");
    let tag = a.row_tag("item", "from-a").unwrap().unwrap().0;
    let carries = |bundle: &radiosync::delta::Bundle| {
        bundle
            .tables
            .iter()
            .flat_map(|t| &t.rows)
            .filter(|r| r.tag == tag)
            .count()
    };
    let mut to_c = 0;
    send(&a, &mut b);
    let bc = send(&b, &mut c);
    to_c += carries(&bc);
    // c confirms to both; afterwards nobody sends it to c again.
    send(&c, &mut b);
    send(&c, &mut a);
    to_c += carries(&send(&a, &mut c));
    to_c += carries(&send(&b, &mut c));
    assert_eq!(to_c, 1);
    let back_to_a = send(&b, &mut a);
    assert_eq!(carries(&back_to_a), 0, "no echo");
    assert_eq!(content(&a), content(&c));
}

#[test]
fn refused_bundles_change_nothing() {
    let dir = scratch();
    let (mut a, mut b) = pair(dir.path());
    exec(
        &a,
        "UPDATE item SET qty = 5, modified_on = '2024-12-01T00:00:00.000Z' WHERE uuid = 'item-0'",
    );
    let good = a.export_for(&b.station().id).unwrap();
    let before = dump(b.path());
    let mut cases = Vec::new();
    let mut wrong_to = good.clone();
    wrong_to.receiver = Some(StationId([7; 16]));
    cases.push(("wrong receiver", wrong_to));
    let mut unknown = good.clone();
    unknown.sender = StationId([9; 16]);
    cases.push(("unknown peer", unknown));
    let mut schema = good.clone();
    schema.schema = SchemaFingerprint(schema.schema.0 ^ 1);
    cases.push(("other schema", schema));
    let mut bad_table = good.clone();
    bad_table.tables[0].table = 9;
    cases.push(("table index", bad_table));
    let mut bad_row = good.clone();
    bad_row.tables[0].rows[0].body = RowBody::Full(vec![Value::Null]);
    cases.push(("short row", bad_row));
    let mut no_receiver = good.clone();
    no_receiver.receiver = None;
    cases.push(("delta without receiver", no_receiver));
    let mut own = good.clone();
    own.sender = b.station().id;
    cases.push(("from self", own));
    for (what, bundle) in cases {
        let err = b.import_bundle(&bundle).expect_err(what);
        assert!(
            err.is_bundle_fault(),
            "{what}: {err} is not the bundle's fault"
        );
        assert_eq!(dump(b.path()), before, "{what} changed the database");
    }
    // A bad row late in the bundle rolls back the rows before it.
    let mut late = good.clone();
    let mut extra = late.tables[0].rows[0].clone();
    extra.uuid = "other".into();
    extra.body = RowBody::Full(vec![]);
    late.tables[0].rows.push(extra);
    assert!(b.import_bundle(&late).is_err());
    assert_eq!(dump(b.path()), before);
    b.import_bundle(&good).unwrap();
    assert_ne!(dump(b.path()), before);
    let _ = &mut a;
}

#[test]
fn slice_carries_rows_by_age_and_claims_nothing() {
    let dir = scratch();
    let (a, mut b) = pair(dir.path());
    exec(
        &a,
        "UPDATE item SET qty = 1, modified_on = '2025-01-01T00:00:00.000Z' WHERE uuid = 'item-0'",
    );
    let slice = a.export_since("2025-01-01T00:00:00Z").unwrap();
    assert_eq!(slice.kind, BundleKind::Slice);
    assert_eq!(rows_in(&slice), 1);
    let v = b.vector().unwrap();
    b.import_bundle(&slice).unwrap();
    assert_eq!(b.vector().unwrap(), v);
    assert_eq!(content(&a), content(&b));
}

#[test]
fn stale_base_asks_for_the_full_row() {
    let dir = scratch();
    let (mut a, mut b) = pair(dir.path());
    // b's own later edit of another column makes a's delta inapplicable there... unless it is
    // newer: then a's delta loses anyway. Make b's edit older so a's delta wins.
    exec(&b, "UPDATE item SET note = 'b note', modified_on = '2024-01-01T00:00:00.000Z' WHERE uuid = 'item-2'");
    exec(
        &a,
        "UPDATE item SET qty = 77, modified_on = '2024-12-31T00:00:00.000Z' WHERE uuid = 'item-2'",
    );
    let rep = b
        .import_bundle(&a.export_for(&b.station().id).unwrap())
        .unwrap();
    assert_eq!(rep.wanted, 1);
    assert!(!b
        .vector()
        .unwrap()
        .covers(&a.row_tag("item", "item-2").unwrap().unwrap().0));
    send(&b, &mut a);
    let full = send(&a, &mut b);
    assert!(matches!(full.tables[0].rows[0].body, RowBody::Full(_)));
    send(&b, &mut a);
    assert_eq!(content(&a), content(&b));
    assert!(b
        .vector()
        .unwrap()
        .covers(&a.row_tag("item", "item-2").unwrap().unwrap().0));
}

fn edit(s: &Store, uuid: &str, set: &str, time: &str) {
    exec(
        s,
        &format!("UPDATE item SET {set}, modified_on = '{time}' WHERE uuid = '{uuid}'"),
    );
}

#[test]
fn a_delta_is_addressed_by_its_base_tag_and_applied() {
    let dir = scratch();
    let (a, mut b) = pair(dir.path());
    edit(&a, "item-2", "qty = 42", "2024-07-01T00:00:00.000Z");
    let bundle = a.export_for(&b.station().id).unwrap();
    let row = &bundle.tables[0].rows[0];
    assert!(row.by_base(), "no uuid travels: {row:?}");
    // Through the bytes too: the codec drops the uuid and the store finds the row.
    let bytes = a.export_bundle_bytes(&b.station().id).unwrap();
    let rep = b.import_bundle_bytes(&bytes).unwrap();
    assert_eq!((rep.applied, rep.wanted), (1, 0));
    assert_eq!(content(&a), content(&b));
}

#[test]
fn an_unplaceable_base_tag_is_wanted_by_tag_then_sent_in_full() {
    let dir = scratch();
    let (mut a, mut b) = pair(dir.path());
    // b's own older edits push the shared base out of its history.
    for i in 0..5 {
        edit(
            &b,
            "item-2",
            &format!("note = 'b{i}'"),
            &format!("2024-01-0{}T00:00:00.000Z", i + 1),
        );
    }
    edit(&a, "item-2", "qty = 77", "2024-12-31T00:00:00.000Z");
    let rep = b
        .import_bundle_bytes(&a.export_bundle_bytes(&b.station().id).unwrap())
        .unwrap();
    assert_eq!(rep.wanted, 1);
    let tag = a.row_tag("item", "item-2").unwrap().unwrap().0;
    assert!(!b.vector().unwrap().covers(&tag));
    let back = b.export_for(&a.station().id).unwrap();
    assert!(back
        .wants
        .iter()
        .any(|w| w.row == radiosync::delta::RowRef::Tag(tag)));
    a.import_bundle_bytes(&b.export_bundle_bytes(&a.station().id).unwrap())
        .unwrap();
    let full = send(&a, &mut b);
    let row = full.tables[0]
        .rows
        .iter()
        .find(|r| r.uuid == "item-2")
        .expect("item-2 in full");
    assert!(matches!(row.body, RowBody::Full(_)));
    send(&b, &mut a);
    send(&a, &mut b);
    assert_eq!(content(&a), content(&b));
    assert!(b.vector().unwrap().covers(&tag));
    assert_eq!(rows_in(&a.export_for(&b.station().id).unwrap()), 0);
    assert_eq!(rows_in(&b.export_for(&a.station().id).unwrap()), 0);
}

#[test]
fn a_tag_the_sender_forgot_falls_back_to_uuids_and_converges() {
    let dir = scratch();
    let (mut a, mut b) = pair(dir.path());
    for i in 0..5 {
        edit(
            &b,
            "item-2",
            &format!("note = 'b{i}'"),
            &format!("2024-01-0{}T00:00:00.000Z", i + 1),
        );
    }
    edit(&a, "item-2", "qty = 77", "2024-12-30T00:00:00.000Z");
    let rep = send(&a, &mut b);
    assert!(rep.tables[0].rows[0].by_base());
    // a moves on before it reads b's want: the wanted tag leaves its history.
    for i in 0..5 {
        edit(
            &a,
            "item-2",
            &format!("qty = {}", 100 + i),
            &format!("2024-12-31T00:00:0{i}.000Z"),
        );
    }
    send(&b, &mut a);
    assert!(a.peer_by_id(&b.station().id).unwrap().unwrap().unplaced);
    let next = a.export_for(&b.station().id).unwrap();
    assert!(
        next.tables[0].rows.iter().all(|r| !r.uuid.is_empty()),
        "uuids again after an unplaced want"
    );
    for _ in 0..4 {
        send(&a, &mut b);
        send(&b, &mut a);
    }
    assert_eq!(content(&a), content(&b));
    assert_eq!(rows_in(&a.export_for(&b.station().id).unwrap()), 0);
    assert_eq!(rows_in(&b.export_for(&a.station().id).unwrap()), 0);
}

#[test]
fn station_keys_refuse_another_receiver_and_an_unregistered_sender() {
    let dir = scratch();
    let (a, mut b) = pair(dir.path());
    edit(&a, "item-1", "qty = 3", "2024-07-01T00:00:00.000Z");
    let for_b = a.export_bundle_bytes(&b.station().id).unwrap();
    // c is a's peer too, but the bundle is for b.
    let mut c = clone_of(dir.path(), "a", "c");
    let err = c.import_bundle_bytes(&for_b).unwrap_err();
    assert!(matches!(err, StoreError::WrongReceiver { .. }), "{err}");
    assert!(err.to_string().contains("another station"), "{err}");
    // d never registered a: a's key names no peer there.
    let mut d = first_station(dir.path(), "d", 5);
    let mut a = Store::open(a.path()).unwrap();
    a.add_peer("d", d.station().id, None).unwrap();
    let for_d = a.export_bundle_bytes(&d.station().id).unwrap();
    let before = dump(d.path());
    let err = d.import_bundle_bytes(&for_d).unwrap_err();
    assert!(
        matches!(err, StoreError::UnknownSender { matches: 0, .. }),
        "{err}"
    );
    assert!(err.is_bundle_fault());
    assert_eq!(dump(d.path()), before);
    // b itself takes it.
    b.import_bundle_bytes(&for_b).unwrap();
    assert_eq!(content(&a), content(&b));
}
