//! Reconciliation by file (issue 6): stations set up apart from copies of the
//! same data swap files and converge in at most two round trips, sending only
//! the rows that differ.

mod store_util;

use std::io::Write;

use proptest::prelude::*;
use radiosync::store::{Store, SyncedRow};
use radiosync::testkit::{edit, mixed_edits, separate_pair, snapshot};
use store_util::*;

/// One leg: `from` writes what it has for `to` (a reconciliation file, or a
/// bundle as usual), `to` applies it. Returns the file's size.
fn leg(from: &mut Store, to: &mut Store) -> usize {
    let peer = to.station().id;
    match from.export_file_for(&peer).unwrap() {
        Some(f) => {
            to.import_file(&f.bytes).unwrap();
            f.bytes.len()
        }
        None => {
            let bytes = from.export_bundle_bytes(&peer).unwrap();
            to.import_bundle_bytes(&bytes).unwrap();
            bytes.len()
        }
    }
}

/// The synced rows that are not soft-deleted (deleted rows count as absent,
/// whatever their other columns say: docs/sync-protocol.md).
fn live_rows(path: &std::path::Path) -> Vec<SyncedRow> {
    let s = Store::open(path).unwrap();
    let deleted: std::collections::BTreeMap<String, usize> = s
        .tables()
        .iter()
        .filter_map(|t| {
            Some((
                t.name.clone(),
                t.payload.iter().position(|c| c.name == "deleted")?,
            ))
        })
        .collect();
    snapshot(path)
        .into_iter()
        .filter(|r| {
            deleted.get(&r.table).is_none_or(|&i| {
                !matches!(r.values.get(i), Some(radiosync::delta::Value::Integer(1)))
            })
        })
        .collect()
}

fn gzip9_json(rows: &[&SyncedRow]) -> usize {
    let v: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            serde_json::json!({"table": r.table, "uuid": r.uuid, "modified_on": r.modified_on,
                "values": r.values.iter().map(|v| format!("{v:?}")).collect::<Vec<_>>()})
        })
        .collect();
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(&serde_json::to_vec(&v).unwrap()).unwrap();
    e.finish().unwrap().len()
}

#[test]
fn first_contact_by_file_sends_only_the_differences() {
    let dir = scratch();
    let (a, b) = separate_pair(dir.path());
    let original = snapshot(&a);
    mixed_edits(&a, 51, 120, 40, 20);
    mixed_edits(&b, 52, 80, 30, 15);
    let (sa, sb) = (snapshot(&a), snapshot(&b));
    let changed = |rows: &[SyncedRow]| -> std::collections::BTreeSet<(String, String)> {
        rows.iter()
            .filter(|r| !original.contains(r))
            .map(|r| (r.table.clone(), r.uuid.clone()))
            .collect()
    };
    let both_edited: std::collections::BTreeSet<_> =
        changed(&sa).intersection(&changed(&sb)).cloned().collect();
    assert!(
        !both_edited.is_empty(),
        "the workload edits some rows on both sides"
    );
    let differ: Vec<&SyncedRow> = sa
        .iter()
        .filter(|r| !sb.contains(r))
        .chain(sb.iter().filter(|r| !sa.contains(r)))
        .collect();
    let json = gzip9_json(&differ);
    let (mut sa, mut sb) = (Store::open(&a).unwrap(), Store::open(&b).unwrap());
    // Offer (A's edits), reply (B's edits), rows (what B asked for, and A's
    // claim), then an ordinary bundle.
    let sizes = [
        leg(&mut sa, &mut sb),
        leg(&mut sb, &mut sa),
        leg(&mut sa, &mut sb),
        leg(&mut sb, &mut sa),
    ];
    let total: usize = sizes.iter().sum();
    let (na, nb) = (live_rows(&a), live_rows(&b));
    let apart = na.iter().filter(|r| !nb.contains(r)).count();
    assert_eq!(apart, 0, "{apart} rows differ");
    assert_eq!(
        sa.content_fingerprint().unwrap(),
        sb.content_fingerprint().unwrap()
    );
    // The goal: at most half the gzip -9 JSON of the changed rows.
    assert!(
        2 * total <= json,
        "files {sizes:?} = {total} bytes, gzip -9 JSON of the {} differing rows {json}",
        differ.len()
    );
    // The claims hold: A owes B nothing by the change logs now, and A's next
    // ordinary bundle (no rows) tells B that A holds B's rows.
    let (ia, ib) = (sa.station().id, sb.station().id);
    assert_eq!(sa.pending_for(&ib).unwrap(), 0);
    let next = leg(&mut sa, &mut sb);
    assert!(next < 200, "{next} bytes");
    assert_eq!(sb.pending_for(&ia).unwrap(), 0);
    // Conflicts only where both sides changed a row: an edit against a base
    // the other side still held is no conflict.
    let conflicts: Vec<_> = sa
        .conflicts()
        .unwrap()
        .into_iter()
        .chain(sb.conflicts().unwrap())
        .collect();
    assert!(!conflicts.is_empty());
    for c in &conflicts {
        assert!(
            both_edited.contains(&(c.table.clone(), c.uuid.clone())),
            "{c:?} is no row edited on both sides"
        );
    }
}

/// Legs until both hold the same live rows and fingerprints; how many it took.
fn converge(a: &mut Store, b: &mut Store, most: usize) -> usize {
    for i in 0..most {
        if i % 2 == 0 {
            leg(a, b);
        } else {
            leg(b, a);
        }
        if a.content_fingerprint().unwrap() == b.content_fingerprint().unwrap()
            && live(a) == live(b)
        {
            return i + 1;
        }
    }
    panic!("not converged in {most} legs");
}

fn set(path: &std::path::Path, sql: &str) {
    rusqlite::Connection::open(path)
        .unwrap()
        .execute_batch(sql)
        .unwrap();
}

/// A row both stations changed apart: the newer version wins whole, in the
/// first round trip's files, whether the edits touched the same columns or
/// not; each such row is a conflict, and no other row is.
#[test]
fn rows_changed_on_both_sides_converge_in_offer_reply_and_rows() {
    let dir = scratch();
    let mut a = first_station(dir.path(), "A", 30);
    let mut b = first_station(dir.path(), "B", 30);
    a.add_peer("B", b.station().id, None).unwrap();
    b.add_peer("A", a.station().id, None).unwrap();
    let t = |s: u32| time(s);
    set(
        &path_of(dir.path(), "A"),
        &format!(
            "UPDATE item SET qty = 99, modified_on = '{}' WHERE uuid = 'item-1';
             UPDATE item SET qty = 98, modified_on = '{}' WHERE uuid = 'item-2';
             UPDATE item SET qty = 1, modified_on = '{}' WHERE uuid = 'item-3';
             UPDATE item SET price = 7.5, modified_on = '{}' WHERE uuid = 'item-4';",
            t(3000),
            t(2000),
            t(2000),
            t(2000)
        ),
    );
    set(
        &path_of(dir.path(), "B"),
        &format!(
            "UPDATE item SET name = 'renamed', modified_on = '{}' WHERE uuid = 'item-1';
             UPDATE item SET deleted = 1, modified_on = '{}' WHERE uuid = 'item-2';
             UPDATE item SET qty = 2, modified_on = '{}' WHERE uuid = 'item-3';
             UPDATE item SET note = 'counted', modified_on = '{}' WHERE uuid = 'item-9';",
            t(2000),
            t(3000),
            t(3000),
            t(2000)
        ),
    );
    let (mut a, mut b) = (
        Store::open(path_of(dir.path(), "A")).unwrap(),
        Store::open(path_of(dir.path(), "B")).unwrap(),
    );
    assert_eq!(converge(&mut a, &mut b, 4), 3, "offer, reply, rows");
    let rows = content(&a);
    let item = |n: u32| rows[&("item".to_string(), format!("item-{n}"))].clone();
    assert_eq!(item(1).0, t(3000));
    assert_eq!(item(2).0, t(3000));
    assert_eq!(item(3).0, t(3000));
    let mut conflicted: Vec<String> = a
        .conflicts()
        .unwrap()
        .into_iter()
        .chain(b.conflicts().unwrap())
        .map(|c| c.uuid)
        .collect();
    conflicted.sort();
    conflicted.dedup();
    assert_eq!(conflicted, ["item-1", "item-2", "item-3"]);
}

/// An edit of a row whose base differs between the stations (it was not the
/// same before tracking) cannot be placed as a delta: the sketch finds the
/// row, and the newer version arrives in full.
#[test]
fn an_edit_of_a_row_whose_base_differs_arrives_in_full() {
    let dir = scratch();
    let mut a = first_station(dir.path(), "A", 30);
    let mut b = first_station_with(
        dir.path(),
        "B",
        30,
        "UPDATE item SET note = 'counted' WHERE uuid = 'item-5'",
    );
    a.add_peer("B", b.station().id, None).unwrap();
    b.add_peer("A", a.station().id, None).unwrap();
    set(
        &path_of(dir.path(), "A"),
        &format!(
            "UPDATE item SET qty = 55, modified_on = '{}' WHERE uuid = 'item-5'",
            time(2000)
        ),
    );
    let (mut a, mut b) = (
        Store::open(path_of(dir.path(), "A")).unwrap(),
        Store::open(path_of(dir.path(), "B")).unwrap(),
    );
    assert_eq!(converge(&mut a, &mut b, 4), 3, "offer, reply, rows");
    let (_, values) = content(&b)[&("item".to_string(), "item-5".to_string())].clone();
    assert!(
        values.contains(&radiosync::delta::Value::Integer(55)),
        "{values:?}"
    );
}

/// Station files from before rows had bases take what they hold when
/// upgraded as their bases: edits made before the upgrade are then
/// differences the sketch finds, and the stations still converge by files.
#[test]
fn stations_upgraded_from_before_bases_converge_by_files() {
    let dir = scratch();
    drop(first_station(dir.path(), "A", 40));
    drop(first_station(dir.path(), "B", 40));
    let (pa, pb) = (path_of(dir.path(), "A"), path_of(dir.path(), "B"));
    apply(
        &pa,
        &[Edit::Update { row: 1, qty: 9 }, Edit::Insert { key: 1 }],
        "a",
    );
    apply(&pb, &[Edit::Delete { row: 2 }], "b");
    for p in [&pa, &pb] {
        // The same row deleted hard at both: a tombstone, whose base is "deleted".
        set(p, "DELETE FROM place WHERE uuid = 'place-7'");
        drop(Store::open(p).unwrap());
        set(p, "DROP TABLE rs_base");
    }
    let (mut a, mut b) = (Store::open(&pa).unwrap(), Store::open(&pb).unwrap());
    let bases: i64 = rusqlite::Connection::open(&pa)
        .unwrap()
        .query_row(
            "SELECT count(*) FROM rs_base WHERE digest IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        bases,
        2 * 40 + 1,
        "every row, the insert and the tombstone too"
    );
    a.add_peer("B", b.station().id, None).unwrap();
    b.add_peer("A", a.station().id, None).unwrap();
    converge(&mut a, &mut b, 4);
}

/// An offer found on a stick after the exchange is over changes nothing.
#[test]
fn an_old_offer_found_later_is_ignored() {
    let dir = scratch();
    let mut a = first_station(dir.path(), "A", 30);
    let mut b = first_station(dir.path(), "B", 30);
    a.add_peer("B", b.station().id, None).unwrap();
    b.add_peer("A", a.station().id, None).unwrap();
    set(
        &path_of(dir.path(), "A"),
        &format!(
            "UPDATE item SET qty = 5, modified_on = '{}' WHERE uuid = 'item-1'",
            time(2000)
        ),
    );
    let mut a = Store::open(path_of(dir.path(), "A")).unwrap();
    let offer = a.export_file_for(&b.station().id).unwrap().unwrap();
    b.import_file(&offer.bytes).unwrap();
    // B's reply, A's rows (and claim).
    leg(&mut b, &mut a);
    leg(&mut a, &mut b);
    assert_eq!(live(&a), live(&b));
    let before = dump(&path_of(dir.path(), "B"));
    let (said, report) = b.import_file(&offer.bytes).unwrap();
    assert!(said.contains("old reconciliation offer"), "{said}");
    assert!(report.is_none());
    assert_eq!(dump(&path_of(dir.path(), "B")), before);
}

#[test]
fn a_damaged_or_misaddressed_file_is_refused_and_changes_nothing() {
    let dir = scratch();
    let mut a = first_station(dir.path(), "A", 20);
    let mut b = first_station(dir.path(), "B", 20);
    let c = first_station(dir.path(), "C", 20);
    a.add_peer("B", b.station().id, None).unwrap();
    b.add_peer("A", a.station().id, None).unwrap();
    let offer = a.export_file_for(&b.station().id).unwrap();
    // Equal stations: nothing differs, the offer still goes (first contact).
    let mut bytes = offer.unwrap().bytes;
    let before = dump(&path_of(dir.path(), "B"));
    let n = bytes.len();
    bytes[n / 2] ^= 1;
    assert!(b.import_file(&bytes).is_err());
    assert!(b.import_file(&bytes[..n / 2]).is_err());
    drop(c);
    let mut c = Store::open(path_of(dir.path(), "C")).unwrap();
    assert!(c
        .import_file(&a.export_file_for(&b.station().id).unwrap().unwrap().bytes)
        .is_err());
    assert_eq!(dump(&path_of(dir.path(), "B")), before);
}

/// The live rows (not soft-deleted) of every table.
type Row = ((String, String), (String, Vec<radiosync::delta::Value>));

fn live(s: &Store) -> Vec<Row> {
    content(s)
        .into_iter()
        .filter(|(_, (_, v))| !matches!(v.first(), Some(radiosync::delta::Value::Integer(1))))
        .collect()
}

#[derive(Clone, Debug)]
enum Edit {
    Update { row: u8, qty: u8 },
    Delete { row: u8 },
    Insert { key: u8 },
}

fn apply(path: &std::path::Path, edits: &[Edit], side: &str) {
    let conn = rusqlite::Connection::open(path).unwrap();
    for (k, e) in edits.iter().enumerate() {
        let t = time(2000 + k as u32);
        match e {
            Edit::Update { row, qty } => conn.execute(
                "UPDATE item SET qty = ?1, modified_on = ?2 WHERE uuid = ?3",
                rusqlite::params![*qty as i64, t, format!("item-{row}")],
            ),
            Edit::Delete { row } => conn.execute(
                "UPDATE item SET deleted = 1, modified_on = ?1 WHERE uuid = ?2",
                rusqlite::params![t, format!("item-{row}")],
            ),
            Edit::Insert { key } => conn.execute(
                "INSERT OR IGNORE INTO item (id, uuid, modified_on, name, qty)
                 VALUES ((SELECT max(id) + 1 FROM item), ?1, ?2, ?3, 1)",
                rusqlite::params![format!("new-{side}-{key}"), t, format!("new {key}")],
            ),
        }
        .unwrap();
    }
}

fn edits(rows: u8) -> impl Strategy<Value = Vec<Edit>> {
    prop::collection::vec(
        prop_oneof![
            (0..rows, any::<u8>()).prop_map(|(row, qty)| Edit::Update { row, qty }),
            (0..rows).prop_map(|row| Edit::Delete { row }),
            (0..8u8).prop_map(|key| Edit::Insert { key }),
        ],
        0..12,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Two stores with arbitrary overlapping contents (the same rows, then
    /// edits on each side) converge by files and verify.
    #[test]
    fn overlapping_stores_converge_by_files_and_verify(ea in edits(30), eb in edits(30)) {
        let dir = scratch();
        drop(first_station(dir.path(), "A", 30));
        drop(first_station(dir.path(), "B", 30));
        let (pa, pb) = (path_of(dir.path(), "A"), path_of(dir.path(), "B"));
        apply(&pa, &ea, "a");
        apply(&pb, &eb, "b");
        let (mut a, mut b) = (Store::open(&pa).unwrap(), Store::open(&pb).unwrap());
        a.add_peer("B", b.station().id, None).unwrap();
        b.add_peer("A", a.station().id, None).unwrap();
        // At most two round trips: offer, (counter-offer,) reply, rows.
        for i in 0..4 {
            if i % 2 == 0 { leg(&mut a, &mut b); } else { leg(&mut b, &mut a); }
            if a.content_fingerprint().unwrap() == b.content_fingerprint().unwrap()
                && live(&a) == live(&b)
            {
                break;
            }
        }
        // Soft-deleted rows count as absent (docs/sync-protocol.md): compare the live ones.
        prop_assert_eq!(live(&a), live(&b));
        prop_assert_eq!(a.content_fingerprint().unwrap(), b.content_fingerprint().unwrap());
        // Conflicts only on rows both sides changed.
        let touched = |edits: &[Edit]| -> std::collections::BTreeSet<String> {
            edits
                .iter()
                .filter_map(|e| match e {
                    Edit::Update { row, .. } | Edit::Delete { row } => Some(format!("item-{row}")),
                    Edit::Insert { .. } => None,
                })
                .collect()
        };
        let both: std::collections::BTreeSet<String> =
            touched(&ea).intersection(&touched(&eb)).cloned().collect();
        for c in a.conflicts().unwrap().into_iter().chain(b.conflicts().unwrap()) {
            prop_assert!(both.contains(&c.uuid), "{:?} was changed on one side only", c.uuid);
        }
    }
}

/// A new, empty station gets a full export after one offer, not a counter-offer.
#[test]
fn an_empty_station_answers_an_offer_with_full_exports() {
    let dir = scratch();
    // 400 rows: more than the first sketch (64 sums) can hold.
    let mut a = first_station(dir.path(), "A", 200);
    let mut b = first_station(dir.path(), "B", 0);
    a.add_peer("B", b.station().id, None).unwrap();
    b.add_peer("A", a.station().id, None).unwrap();
    leg(&mut a, &mut b);
    let reply = b.export_file_for(&a.station().id).unwrap().unwrap();
    assert!(reply.what.contains("differ too much"), "{}", reply.what);
    a.import_file(&reply.bytes).unwrap();
    // Now the change logs carry it: A's next export is an ordinary bundle.
    assert!(a.export_file_for(&b.station().id).unwrap().is_none());
    leg(&mut a, &mut b);
    assert_eq!(live(&a), live(&b));
}

/// Both operators export at once and swap sticks: one offer stands (the lower
/// station id's), the other side answers it, and the pair converges.
#[test]
fn crossed_offers_settle_on_one_and_converge() {
    let dir = scratch();
    drop(first_station(dir.path(), "A", 200));
    drop(first_station(dir.path(), "B", 200));
    let (pa, pb) = (path_of(dir.path(), "A"), path_of(dir.path(), "B"));
    apply(
        &pa,
        &[Edit::Update { row: 1, qty: 9 }, Edit::Insert { key: 1 }],
        "a",
    );
    apply(
        &pb,
        &[Edit::Delete { row: 2 }, Edit::Insert { key: 2 }],
        "b",
    );
    let (mut a, mut b) = (Store::open(&pa).unwrap(), Store::open(&pb).unwrap());
    a.add_peer("B", b.station().id, None).unwrap();
    b.add_peer("A", a.station().id, None).unwrap();
    let fa = a.export_file_for(&b.station().id).unwrap().unwrap();
    let fb = b.export_file_for(&a.station().id).unwrap().unwrap();
    let (said_a, _) = a.import_file(&fb.bytes).unwrap();
    b.import_file(&fa.bytes).unwrap();
    assert!(said_a.contains("our offer stands"), "{said_a}");
    // B answers A's offer; A sends the rows asked for.
    leg(&mut b, &mut a);
    leg(&mut a, &mut b);
    assert_eq!(live(&a), live(&b));
    assert_eq!(
        a.content_fingerprint().unwrap(),
        b.content_fingerprint().unwrap()
    );
}

#[test]
fn stations_that_trained_the_same_dictionary_answer_with_it() {
    let dir = scratch();
    let (a, b) = separate_pair(dir.path());
    // `track --all` trains one on each copy: the same data, the same dictionary.
    let d = Store::open(&a).unwrap().retrain_dictionary().unwrap().id;
    assert_eq!(Store::open(&b).unwrap().retrain_dictionary().unwrap().id, d);
    edit(&a, 61, 20, 5, 60);
    edit(&b, 62, 20, 5, 60);
    let (mut sa, mut sb) = (Store::open(&a).unwrap(), Store::open(&b).unwrap());
    let mut with_rows = 0;
    for i in 0..4 {
        let (from, to) = if i % 2 == 0 {
            (&mut sa, &mut sb)
        } else {
            (&mut sb, &mut sa)
        };
        let Some(f) = from.export_file_for(&to.station().id).unwrap() else {
            break;
        };
        let inner = radiosync::recon::file::ReconFile::parse(&f.bytes).unwrap();
        if !inner.bundle.is_empty() {
            let header = radiosync::codec::peek_header(&inner.bundle).unwrap();
            if i == 0 {
                // The offer's edits: the peer's dictionary is not known yet.
                assert!(!header.uses_dict, "{header:?}");
            } else if header.body_len > 16 {
                assert!(header.uses_dict && header.dict_id == d, "{header:?}");
                with_rows += 1;
            }
        }
        to.import_file(&f.bytes).unwrap();
    }
    // The reply; the last file carries only the claim (nothing was asked for).
    assert_eq!(with_rows, 1);
    assert_eq!(
        sa.content_fingerprint().unwrap(),
        sb.content_fingerprint().unwrap()
    );
}
