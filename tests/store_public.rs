//! Two copies of the public dataset diverge (inserts, updates of 1-3 columns,
//! soft-deletes, conflicting edits and delete/update conflicts on both sides),
//! swap bundles both ways, and end identical and right by the rules.

mod store_util;

use std::collections::BTreeMap;
use std::path::Path;

use radiosync::delta::merge::{compare, VersionKey};
use radiosync::store::Store;
use store_util::*;

const PUBLIC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/public.sqlite");

const EDITS_A: &str = "
INSERT INTO vulnerability_data (id, uuid, modified_on, deleted, indicator, indicator_description, value, country, date, l1, l2, l3)
  SELECT id + 100000, 'a-' || uuid, '2026-01-05T10:00:00.000Z', 0, indicator, indicator_description, value + 1, country, date, l1, l2, l3
  FROM vulnerability_data WHERE id <= 300;
UPDATE gis_location SET lat = lat + 0.0001, modified_on = '2026-01-05T11:00:00.000Z' WHERE id % 17 = 0;
UPDATE inv_inv_item SET quantity = quantity + 5, comments = 'counted by a', modified_on = '2026-01-05T11:05:00.000Z' WHERE id % 5 = 0;
UPDATE org_office SET deleted = 1, modified_on = '2026-01-05T11:10:00.000Z' WHERE id BETWEEN 10 AND 19;
-- Conflicts on the same rows: a is later on even ids, b on odd ids.
UPDATE pr_person SET job_title = 'a title', mobile_phone = '+670 111', modified_on =
  CASE WHEN id % 2 = 0 THEN '2026-01-06T12:00:00.000Z' ELSE '2026-01-06T09:00:00.000Z' END WHERE id <= 40;
-- Delete vs update: a deletes early on 50..54, late on 55..59.
UPDATE hms_hospital SET deleted = 1, modified_on =
  CASE WHEN id < 55 THEN '2026-01-06T08:00:00.000Z' ELSE '2026-01-06T18:00:00.000Z' END WHERE id BETWEEN 50 AND 59;
-- Same time on both sides: the writer station's id decides.
UPDATE cms_post SET comments = 'a same time', modified_on = '2026-01-07T00:00:00.000Z' WHERE id <= 5;
";

const EDITS_B: &str = "
INSERT INTO pr_person (id, uuid, modified_on, deleted, first_name, last_name, sex)
  SELECT id + 100000, 'b-' || uuid, '2026-01-05T10:30:00.000Z', 0, first_name, last_name, sex FROM pr_person WHERE id <= 150;
UPDATE org_organisation SET website = 'https://b.example', twitter = '@b', modified_on = '2026-01-05T12:00:00.000Z' WHERE id % 7 = 0;
UPDATE vulnerability_data SET value = value * 2, modified_on = '2026-01-05T12:10:00.000Z' WHERE id % 97 = 0;
UPDATE cms_post SET deleted = 1, modified_on = '2026-01-05T12:20:00.000Z' WHERE id BETWEEN 100 AND 109;
UPDATE pr_person SET job_title = 'b title', modified_on =
  CASE WHEN id % 2 = 1 THEN '2026-01-06T12:00:00.000Z' ELSE '2026-01-06T09:00:00.000Z' END WHERE id <= 40;
UPDATE hms_hospital SET beds_total = 99, modified_on = '2026-01-06T10:00:00.000Z' WHERE id BETWEEN 50 AND 59;
UPDATE cms_post SET comments = 'b same time', modified_on = '2026-01-07T00:00:00.000Z' WHERE id <= 5;
";

type Content = BTreeMap<(String, String), (String, Vec<radiosync::delta::Value>)>;

fn expected(a: &Store, ca: &Content, b: &Store, cb: &Content) -> Content {
    let mut out = ca.clone();
    for (k, vb) in cb {
        match ca.get(k) {
            None => {
                out.insert(k.clone(), vb.clone());
            }
            Some(va) if va != vb => {
                let wa = a.row_tag(&k.0, &k.1).unwrap().unwrap().1;
                let wb = b.row_tag(&k.0, &k.1).unwrap().unwrap().1;
                let b_wins = compare(
                    VersionKey {
                        modified_on: &vb.0,
                        writer: wb,
                    },
                    VersionKey {
                        modified_on: &va.0,
                        writer: wa,
                    },
                )
                .is_gt();
                if b_wins {
                    out.insert(k.clone(), vb.clone());
                }
            }
            Some(_) => {}
        }
    }
    out
}

#[test]
fn diverged_copies_of_the_public_dataset_converge_by_the_rules() {
    if !Path::new(PUBLIC).exists() {
        panic!("{PUBLIC} missing: the tests need ../shared/data beside the repository");
    }
    let dir = scratch();
    let a_path = dir.path().join("a.sqlite");
    radiosync::store::copy_station(PUBLIC, &a_path).unwrap();
    // The shared data is write-protected; so is a plain copy of it.
    let mut perms = std::fs::metadata(&a_path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&a_path, perms).unwrap();
    let mut a = Store::init_as(&a_path, id_of("a"), Some("a"), None).unwrap();
    let tables = a.syncable_tables().unwrap();
    assert_eq!(tables.len(), 8);
    assert_eq!(a.track(&tables, &["id".into()]).unwrap(), 14_587);
    let mut b =
        Store::clone_station_as(&a_path, dir.path().join("b.sqlite"), id_of("b"), "b", None)
            .unwrap();
    let mut a = Store::open(&a_path).unwrap();
    a.connection().execute_batch(EDITS_A).unwrap();
    b.connection().execute_batch(EDITS_B).unwrap();
    let (ca, cb) = (content(&a), content(&b));
    let want = expected(&a, &ca, &b, &cb);

    let first = a.export_for(&b.station().id).unwrap();
    // Only what changed travels: 300 inserts + 166 + 31 + 10 + 40 + 10 + 5 updates.
    assert_eq!(rows_in(&first), 300 + 165 + 30 + 10 + 40 + 10 + 5);
    b.import_bundle(&first).unwrap();
    let mut rounds = 1;
    loop {
        let ba = b.export_for(&a.station().id).unwrap();
        a.import_bundle(&ba).unwrap();
        let ab = a.export_for(&b.station().id).unwrap();
        b.import_bundle(&ab).unwrap();
        rounds += 1;
        if rows_in(&ab) == 0 && rows_in(&b.export_for(&a.station().id).unwrap()) == 0 {
            break;
        }
        assert!(rounds < 5, "still sending after {rounds} rounds");
    }
    let (fa, fb) = (content(&a), content(&b));
    assert!(fa == fb, "the copies differ");
    assert!(fa == want, "the result is not the one the rules give");
    // Spot checks of the rules.
    let person = |s: &Store, id: i64| -> String {
        s.connection()
            .query_row("SELECT job_title FROM pr_person WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .unwrap()
    };
    assert_eq!(person(&b, 2), "a title");
    assert_eq!(person(&a, 3), "b title");
    let hosp = |s: &Store, id: i64| -> (i64, Option<i64>) {
        s.connection()
            .query_row(
                "SELECT deleted, beds_total FROM hms_hospital WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap()
    };
    assert_eq!(
        hosp(&a, 50),
        (0, Some(99)),
        "an update after the delete wins"
    );
    assert_eq!(hosp(&b, 56).0, 1, "a delete after the update wins");
    // Inserted rows got fresh local ids at the other station.
    let max_id: i64 = a
        .connection()
        .query_row(
            "SELECT max(id) FROM pr_person WHERE uuid LIKE 'b-%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(max_id <= 1184 + 150);
    // Every losing version is kept for review (at one station, or at both when a
    // pending want made the sender's confirmation conservative).
    let mut losers = std::collections::BTreeSet::new();
    for c in a
        .conflicts()
        .unwrap()
        .into_iter()
        .chain(b.conflicts().unwrap())
    {
        losers.insert((c.table, c.uuid, c.loser_modified_on, c.loser_writer));
    }
    assert_eq!(losers.len(), 40 + 10 + 5);
}
