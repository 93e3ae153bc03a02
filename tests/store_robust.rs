//! A station survives its application: schema upgrades, table rebuilds, hard
//! deletes, bad rows and read-only files (issue 8). Each test is a case that
//! locked a station out or diverged silently before.

mod store_util;

use std::path::Path;

use radiosync::delta::Value;
use radiosync::store::Store;
use store_util::*;

fn exec(s: &Store, sql: &str) {
    s.connection().execute_batch(sql).unwrap();
}

fn reopen(dir: &Path, name: &str) -> Store {
    Store::open(path_of(dir, name)).unwrap()
}

fn cell(s: &Store, sql: &str) -> Value {
    s.connection()
        .query_row(sql, [], |r| Ok(value_of(r.get_ref(0)?)))
        .unwrap()
}

fn text(v: &str) -> Value {
    Value::Text(v.into())
}

/// A station with a `note` table whose uuid is neither unique nor NOT NULL,
/// as some applications have them, and its clone.
fn note_pair(dir: &Path) -> (Store, Store) {
    let path = path_of(dir, "a");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE note (id INTEGER PRIMARY KEY, uuid TEXT, modified_on TEXT, deleted INTEGER DEFAULT 0, body TEXT);
             INSERT INTO note (uuid, modified_on, body) VALUES ('n1', '2024-05-01T10:00:00.000Z', 'one'),
               ('n2', '2024-05-01T10:00:00.000Z', 'two');",
        )
        .unwrap();
    }
    let mut a = Store::init_as(&path, id_of("a"), Some("a"), None).unwrap();
    a.track(&[], &["id".to_string()]).unwrap();
    let b = clone_of(dir, "a", "b");
    (a, b)
}

#[test]
fn an_added_column_joins_the_sync_and_its_values_arrive_once_both_have_it() {
    let d = scratch();
    let a = first_station(d.path(), "a", 5);
    let mut b = clone_of(d.path(), "a", "b");
    exec(&a, "ALTER TABLE item ADD COLUMN colour TEXT");
    // Before: every command refused with "the columns of item changed".
    let mut a = {
        drop(a);
        reopen(d.path(), "a")
    };
    exec(
        &a,
        &format!(
            "UPDATE item SET colour = 'red', modified_on = '{}' WHERE uuid = 'item-1';
             UPDATE item SET name = 'renamed', modified_on = '{}' WHERE uuid = 'item-2';",
            time(100),
            time(100)
        ),
    );
    // b has not upgraded: it takes the columns it has.
    send(&a, &mut b);
    assert_eq!(
        cell(&b, "SELECT name FROM item WHERE uuid = 'item-2'"),
        text("renamed")
    );
    exec(
        &b,
        &format!(
            "UPDATE item SET qty = 99, modified_on = '{}' WHERE uuid = 'item-3'",
            time(101)
        ),
    );
    send(&b, &mut a);
    assert_eq!(
        cell(&a, "SELECT qty FROM item WHERE uuid = 'item-3'"),
        Value::Integer(99)
    );
    // b upgrades: the values written before reach it.
    exec(&b, "ALTER TABLE item ADD COLUMN colour TEXT");
    let mut b = {
        drop(b);
        reopen(d.path(), "b")
    };
    send(&b, &mut a);
    send(&a, &mut b);
    assert_eq!(
        cell(&b, "SELECT colour FROM item WHERE uuid = 'item-1'"),
        text("red")
    );
    assert_eq!(content(&a), content(&b));
    // And new writes of the column travel as any other.
    exec(
        &b,
        &format!(
            "UPDATE item SET colour = 'blue', modified_on = '{}' WHERE uuid = 'item-4'",
            time(102)
        ),
    );
    send(&b, &mut a);
    assert_eq!(
        cell(&a, "SELECT colour FROM item WHERE uuid = 'item-4'"),
        text("blue")
    );
    assert_eq!(content(&a), content(&b));
}

#[test]
fn a_changed_column_type_names_table_column_and_fix_and_the_rest_syncs() {
    let d = scratch();
    let a = first_station(d.path(), "a", 3);
    let mut b = clone_of(d.path(), "a", "b");
    exec(
        &a,
        "CREATE TABLE place2 (id INTEGER NOT NULL UNIQUE, uuid TEXT PRIMARY KEY NOT NULL,
           modified_on TEXT NOT NULL, deleted INTEGER NOT NULL DEFAULT 0, l1 TEXT, lat TEXT, lon REAL);
         INSERT INTO place2 SELECT * FROM place; DROP TABLE place; ALTER TABLE place2 RENAME TO place;",
    );
    drop(a);
    let a = reopen(d.path(), "a");
    let problems = a.problems().to_vec();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].0, "place");
    assert!(problems[0].1.contains("place.lat"), "{}", problems[0].1);
    assert!(problems[0].1.contains("untrack"), "{}", problems[0].1);
    exec(
        &a,
        &format!(
            "UPDATE item SET name = 'still syncing', modified_on = '{}' WHERE uuid = 'item-0'",
            time(100)
        ),
    );
    send(&a, &mut b);
    assert_eq!(
        cell(&b, "SELECT name FROM item WHERE uuid = 'item-0'"),
        text("still syncing")
    );
}

#[test]
fn a_rebuilt_table_gets_its_capture_back_and_edits_made_meanwhile_arrive() {
    let d = scratch();
    let a = first_station(d.path(), "a", 5);
    let mut b = clone_of(d.path(), "a", "b");
    // The usual SQLite rebuild: the triggers go with the old table.
    exec(
        &a,
        "CREATE TABLE item_new (id INTEGER NOT NULL UNIQUE, uuid TEXT PRIMARY KEY NOT NULL,
           modified_on TEXT NOT NULL, deleted INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
           name TEXT, qty INTEGER, price REAL, note TEXT, photo BLOB);
         INSERT INTO item_new SELECT * FROM item; DROP TABLE item; ALTER TABLE item_new RENAME TO item;",
    );
    exec(
        &a,
        &format!(
            "UPDATE item SET name = 'edited blind', modified_on = '{t}' WHERE uuid = 'item-1';
             INSERT INTO item (id, uuid, modified_on, name) VALUES (50, 'item-new', '{t}', 'added blind');
             DELETE FROM item WHERE uuid = 'item-2';",
            t = time(100)
        ),
    );
    drop(a);
    let a = reopen(d.path(), "a");
    assert!(a
        .log()
        .unwrap()
        .iter()
        .any(|e| e.result == "warning" && e.message.contains("3 row(s)")));
    // Capture is back: a later edit is seen as well.
    exec(
        &a,
        &format!(
            "UPDATE item SET qty = 7, modified_on = '{}' WHERE uuid = 'item-3'",
            time(101)
        ),
    );
    send(&a, &mut b);
    assert_eq!(
        cell(&b, "SELECT name FROM item WHERE uuid = 'item-1'"),
        text("edited blind")
    );
    assert_eq!(
        cell(&b, "SELECT name FROM item WHERE uuid = 'item-new'"),
        text("added blind")
    );
    assert_eq!(
        cell(&b, "SELECT deleted FROM item WHERE uuid = 'item-2'"),
        Value::Integer(1)
    );
    assert_eq!(
        cell(&b, "SELECT qty FROM item WHERE uuid = 'item-3'"),
        Value::Integer(7)
    );
}

#[test]
fn a_hard_delete_arrives_as_a_soft_delete_and_a_later_edit_brings_the_row_back() {
    let d = scratch();
    let mut a = first_station(d.path(), "a", 3);
    let mut b = clone_of(d.path(), "a", "b");
    exec(&a, "DELETE FROM item WHERE uuid = 'item-1'");
    assert_eq!(a.pending_for(&b.station().id).unwrap(), 1);
    send(&a, &mut b);
    assert_eq!(
        cell(&b, "SELECT deleted FROM item WHERE uuid = 'item-1'"),
        Value::Integer(1)
    );
    // The other columns keep their last values.
    assert_eq!(
        cell(&b, "SELECT name FROM item WHERE uuid = 'item-1'"),
        text("thing 1")
    );
    assert_eq!(b.pending_for(&a.station().id).unwrap(), 0);
    // An edit made after the delete wins over it (the blueprint's delete rule).
    exec(
        &b,
        "UPDATE item SET deleted = 0, name = 'back', modified_on = '2099-01-01T00:00:00.000Z'
         WHERE uuid = 'item-1'",
    );
    send(&b, &mut a);
    assert_eq!(
        cell(&a, "SELECT name FROM item WHERE uuid = 'item-1'"),
        text("back")
    );
    assert_eq!(content(&a), content(&b));
}

#[test]
fn duplicate_uuids_are_held_back_and_everything_else_syncs() {
    let d = scratch();
    let (a, mut b) = note_pair(d.path());
    exec(
        &a,
        "INSERT INTO note (uuid, modified_on, body) VALUES ('n1', '2024-06-01T00:00:00.000Z', 'copy');
         UPDATE note SET body = 'two edited', modified_on = '2024-06-01T00:00:00.000Z' WHERE uuid = 'n2';",
    );
    drop(a);
    let a = reopen(d.path(), "a");
    let held = a.held_rows().unwrap();
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(
        (held[0].table.as_str(), held[0].uuid.as_str()),
        ("note", "n1")
    );
    // Before: the export carried both rows and the peer refused every bundle.
    send(&a, &mut b);
    assert_eq!(
        cell(&b, "SELECT body FROM note WHERE uuid = 'n2'"),
        text("two edited")
    );
    assert_eq!(
        cell(&b, "SELECT body FROM note WHERE uuid = 'n1'"),
        text("one")
    );
    // Fixed: the copy goes, the row travels again.
    exec(&a, "DELETE FROM note WHERE body = 'one'");
    drop(a);
    let a = reopen(d.path(), "a");
    assert!(a.held_rows().unwrap().is_empty());
    send(&a, &mut b);
    assert_eq!(
        cell(&b, "SELECT body FROM note WHERE uuid = 'n1'"),
        text("copy")
    );
}

#[test]
fn an_unreadable_modified_on_is_held_never_reverted() {
    let d = scratch();
    let a = first_station(d.path(), "a", 3);
    let mut b = clone_of(d.path(), "a", "b");
    exec(
        &a,
        "UPDATE item SET name = 'mine', modified_on = 'last tuesday' WHERE uuid = 'item-1'",
    );
    drop(a);
    let mut a = reopen(d.path(), "a");
    assert!(a.held_rows().unwrap()[0].reason.contains("last tuesday"));
    send(&a, &mut b);
    send(&b, &mut a);
    send(&a, &mut b);
    // Before: both stations went back to the old name.
    assert_eq!(
        cell(&a, "SELECT name FROM item WHERE uuid = 'item-1'"),
        text("mine")
    );
    assert_eq!(
        cell(&b, "SELECT name FROM item WHERE uuid = 'item-1'"),
        text("thing 1")
    );
    exec(
        &a,
        &format!(
            "UPDATE item SET modified_on = '{}' WHERE uuid = 'item-1'",
            time(200)
        ),
    );
    drop(a);
    let a = reopen(d.path(), "a");
    assert!(a.held_rows().unwrap().is_empty());
    send(&a, &mut b);
    assert_eq!(
        cell(&b, "SELECT name FROM item WHERE uuid = 'item-1'"),
        text("mine")
    );
}

#[test]
fn a_row_without_uuid_is_reported_and_syncs_once_it_has_one() {
    let d = scratch();
    let (a, mut b) = note_pair(d.path());
    exec(
        &a,
        "INSERT INTO note (uuid, modified_on, body) VALUES (NULL, '2024-06-01T00:00:00.000Z', 'anonymous')",
    );
    drop(a);
    let a = reopen(d.path(), "a");
    let held = a.held_rows().unwrap();
    assert_eq!(held.len(), 1, "{held:?}");
    assert!(held[0].uuid.is_empty() && held[0].reason.contains("1 row(s) have no uuid"));
    exec(&a, "UPDATE note SET uuid = 'n3' WHERE body = 'anonymous'");
    drop(a);
    let a = reopen(d.path(), "a");
    assert!(a.held_rows().unwrap().is_empty());
    send(&a, &mut b);
    assert_eq!(
        cell(&b, "SELECT body FROM note WHERE uuid = 'n3'"),
        text("anonymous")
    );
}

#[test]
fn a_row_the_receiver_cannot_store_is_quarantined_and_never_blocks_the_rest() {
    let d = scratch();
    let a = first_station(d.path(), "a", 4);
    let mut b = clone_of(d.path(), "a", "b");
    // Only b's database refuses two items with one name.
    exec(&b, "CREATE UNIQUE INDEX item_name ON item (name)");
    exec(
        &a,
        &format!(
            "UPDATE item SET name = 'thing 2', modified_on = '{t}' WHERE uuid = 'item-1';
             UPDATE item SET qty = 42, modified_on = '{t}' WHERE uuid = 'item-3';",
            t = time(100)
        ),
    );
    let r = {
        let bundle = a.export_for(&b.station().id).unwrap();
        b.import_bundle(&bundle).unwrap()
    };
    assert_eq!((r.applied, r.quarantined), (1, 1));
    assert_eq!(
        cell(&b, "SELECT qty FROM item WHERE uuid = 'item-3'"),
        Value::Integer(42)
    );
    let q = b.quarantined_rows().unwrap();
    assert_eq!((q[0].uuid.as_str(), q[0].peer.as_str()), ("item-1", "a"));
    assert!(q[0].reason.contains("UNIQUE"), "{}", q[0].reason);
    // Later bundles still apply.
    exec(
        &a,
        &format!(
            "UPDATE item SET qty = 43, modified_on = '{}' WHERE uuid = 'item-0'",
            time(101)
        ),
    );
    send(&a, &mut b);
    assert_eq!(
        cell(&b, "SELECT qty FROM item WHERE uuid = 'item-0'"),
        Value::Integer(43)
    );
    // b's operator fixes the clash: the row goes in at the next import.
    exec(&b, "DROP INDEX item_name");
    let r = send_report(&a, &mut b);
    assert_eq!(r.released, 1);
    assert!(b.quarantined_rows().unwrap().is_empty());
    assert_eq!(
        cell(&b, "SELECT name FROM item WHERE uuid = 'item-1'"),
        text("thing 2")
    );
}

fn send_report(from: &Store, to: &mut Store) -> radiosync::store::ImportReport {
    let b = from.export_for(&to.station().id).unwrap();
    to.import_bundle(&b).unwrap()
}

#[test]
fn a_read_only_file_still_answers_read_only_commands() {
    let d = scratch();
    let a = first_station(d.path(), "a", 3);
    let _b = clone_of(d.path(), "a", "b");
    drop(a);
    let path = path_of(d.path(), "a");
    let mut perm = std::fs::metadata(&path).unwrap().permissions();
    perm.set_readonly(true);
    std::fs::set_permissions(&path, perm).unwrap();
    let mut a = Store::open(&path).unwrap();
    assert!(a.is_read_only());
    assert_eq!(a.tables().len(), 2);
    assert_eq!(a.peers().unwrap().len(), 1);
    a.log().unwrap();
    a.conflicts().unwrap();
    let err = a.track(&[], &["id".into()]).unwrap_err();
    assert!(err.to_string().contains("read-only"), "{err}");
    assert!(!err.is_bundle_fault());
}

#[test]
fn peers_can_be_edited_and_removed_and_tables_untracked() {
    let d = scratch();
    let mut a = first_station(d.path(), "a", 3);
    let _b = clone_of(d.path(), "a", "b");
    // A clone's peer gets a callsign afterwards.
    a.edit_peer("b", Some("bravo"), Some(Some("N0CALL-2")))
        .unwrap();
    let p = a.peer_by_name("bravo").unwrap().unwrap();
    assert_eq!(p.callsign.as_deref(), Some("N0CALL-2"));
    a.untrack("place").unwrap();
    assert_eq!(a.tables().len(), 1);
    exec(&a, "UPDATE place SET l1 = 'x'");
    assert_eq!(a.pending_for(&p.id).unwrap(), 0);
    a.remove_peer("bravo").unwrap();
    assert!(a.peers().unwrap().is_empty());
}

#[test]
fn a_clone_passes_on_the_rows_it_was_cloned_with_to_a_new_peer() {
    // Exports read rows by origin: the rows a clone got from its source have
    // the source as origin, and a peer met later must still get them.
    let d = scratch();
    let _a = first_station(d.path(), "a", 4);
    let mut b = clone_of(d.path(), "a", "b");
    let c = radiosync::delta::StationId([0xcc; 16]);
    b.add_peer("c", c, None).unwrap();
    assert_eq!(b.pending_for(&c).unwrap(), 8);
}
