//! Content fingerprints (issue 6): equal synced content gives equal fingerprints,
//! whatever the change logs say, and a difference the logs hide still shows.

mod store_util;

use radiosync::store::Store;
use store_util::*;

fn exec(s: &Store, sql: &str) {
    s.connection().execute_batch(sql).unwrap();
}

/// The fingerprint after the capture check has seen every write.
fn fp(s: &mut Store) -> u64 {
    s.check_capture().unwrap();
    s.content_fingerprint().unwrap()
}

#[test]
fn a_clone_and_its_source_match_until_one_changes_and_match_again_after_sync() {
    let dir = scratch();
    let mut a = first_station(dir.path(), "a", 20);
    let mut b = clone_of(dir.path(), "a", "b");
    assert_ne!(fp(&mut a), 0);
    assert_eq!(fp(&mut a), fp(&mut b));
    exec(
        &a,
        &format!(
            "UPDATE item SET qty = 99, modified_on = '{}' WHERE uuid = 'item-3'",
            time(300)
        ),
    );
    assert_ne!(fp(&mut a), fp(&mut b));
    send(&a, &mut b);
    assert_eq!(fp(&mut a), fp(&mut b));
    // Per table too: only `item` had moved.
    assert_eq!(
        a.table_fingerprints().unwrap(),
        b.table_fingerprints().unwrap()
    );
}

#[test]
fn stations_set_up_separately_with_the_same_rows_match() {
    let dir = scratch();
    let mut a = first_station(dir.path(), "a", 15);
    let mut b = first_station(dir.path(), "b", 15);
    assert_eq!(fp(&mut a), fp(&mut b));
    let mut c = first_station(dir.path(), "c", 14);
    assert_ne!(fp(&mut a), fp(&mut c));
}

#[test]
fn a_hard_delete_matches_the_soft_delete_it_becomes_at_the_peer() {
    let dir = scratch();
    let mut a = first_station(dir.path(), "a", 10);
    let mut b = clone_of(dir.path(), "a", "b");
    exec(&a, "DELETE FROM item WHERE uuid = 'item-2'");
    assert_ne!(fp(&mut a), fp(&mut b));
    send(&a, &mut b);
    assert_eq!(fp(&mut a), fp(&mut b));
    // A soft delete written by the application leaves the fingerprint the same way.
    exec(
        &b,
        &format!(
            "UPDATE place SET deleted = 1, modified_on = '{}' WHERE uuid = 'place-4'",
            time(400)
        ),
    );
    send(&b, &mut a);
    assert_eq!(fp(&mut a), fp(&mut b));
}

#[test]
fn a_forged_vector_leaves_the_stations_different_and_the_fingerprints_say_so() {
    let dir = scratch();
    let mut a = first_station(dir.path(), "a", 10);
    let mut b = clone_of(dir.path(), "a", "b");
    exec(
        &a,
        &format!(
            "UPDATE item SET note = 'new', modified_on = '{}' WHERE uuid = 'item-1'",
            time(500)
        ),
    );
    // A believes B holds everything A will ever write (a forged vector):
    // A's export for B is empty.
    exec(
        &a,
        &format!(
            "INSERT OR REPLACE INTO rs_peer_vector (peer, origin, seq) VALUES (x'{}', x'{}', 1000000)",
            hex(&b.station().id.0),
            hex(&a.station().id.0)
        ),
    );
    let bundle = send(&a, &mut b);
    assert_eq!(rows_in(&bundle), 0, "the forged vector hides the change");
    assert_ne!(
        fp(&mut a),
        fp(&mut b),
        "but the content differs, and it shows"
    );
}

#[test]
fn fingerprints_survive_reopening_and_upgrades_recompute_them() {
    let dir = scratch();
    let mut a = first_station(dir.path(), "a", 12);
    let before = fp(&mut a);
    drop(a);
    let mut a = Store::open(path_of(dir.path(), "a")).unwrap();
    assert_eq!(fp(&mut a), before);
    // A station file from before fingerprints: no rs_fp, no rs_table.fp.
    exec(&a, "DROP TABLE rs_fp; ALTER TABLE rs_table DROP COLUMN fp;");
    drop(a);
    let mut a = Store::open(path_of(dir.path(), "a")).unwrap();
    assert_eq!(fp(&mut a), before);
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Putting back triggers a migration dropped keeps the table's fingerprint in
/// step with its rows' parts (a re-install once zeroed it, so two equal
/// stations stayed "different" for ever).
#[test]
fn triggers_put_back_keep_the_fingerprint() {
    let dir = scratch();
    let mut a = first_station(dir.path(), "a", 20);
    let mut b = clone_of(dir.path(), "a", "b");
    for name in radiosync::store::schema::trigger_names("item") {
        exec(&a, &format!("DROP TRIGGER IF EXISTS \"{name}\""));
    }
    exec(
        &a,
        &format!(
            "UPDATE item SET qty = 7, modified_on = '{}' WHERE uuid = 'item-2'",
            time(400)
        ),
    );
    assert_ne!(fp(&mut a), fp(&mut b));
    send(&a, &mut b);
    assert_eq!(fp(&mut a), fp(&mut b));
}
