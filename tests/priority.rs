//! Priority classes (issue 9): tables with a higher class travel first in every
//! session, each class its own bundle, so a sync cut short has delivered the
//! higher classes; nothing is lost between classes and nothing is sent twice.

mod store_util;

use std::time::Duration;

use radiosync::profile::Profile;
use radiosync::sim::Side;
use radiosync::store::Store;
use radiosync::sync::BundleId;
use radiosync::testkit::{
    assert_converged, cloned_pair, insert_posts, run_sync, sim_pair, update_people,
};
use store_util::*;

/// A with cms_post inserts first (lower sequences), then pr_person updates;
/// pr_person in class 2, the rest in class 0.
fn prioritised_pair(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (a, b) = cloned_pair(dir, false);
    insert_posts(&a, 7, 12, 40);
    update_people(&a, 7, 9);
    Store::open(&a)
        .unwrap()
        .set_priority("pr_person", 2)
        .unwrap();
    (a, b)
}

/// `from` learns that `peer` applied `bytes`, as a session's Applied tells it.
fn confirmed(from: &Store, peer: &radiosync::delta::StationId, bytes: &[u8]) {
    from.transfer_keep_outgoing(peer, BundleId::of(bytes), bytes)
        .unwrap();
    from.transfer_outgoing_applied(peer).unwrap();
}

/// Imports `bytes` at `to`: (table, rows applied) per table the bundle carried.
fn apply(to: &mut Store, bytes: &[u8]) -> Vec<(String, u64)> {
    let rep = to.import_bundle_bytes(bytes).unwrap();
    rep.per_table
        .into_iter()
        .filter(|t| t.1 > 0)
        .map(|t| (t.0, t.2))
        .collect()
}

#[test]
fn the_higher_class_goes_first_and_claims_nothing_it_leaves_behind() {
    let dir = scratch();
    let (a, b) = prioritised_pair(dir.path());
    let (sa, mut sb) = (Store::open(&a).unwrap(), Store::open(&b).unwrap());
    let ib = sb.station().id;
    let holds = sb.vector().unwrap();
    let first = sa.export_class_against(&ib, &holds, None, None).unwrap();
    assert_eq!(first.next, Some(2), "a lower class follows");
    let first = first.exported;
    assert_eq!(apply(&mut sb, &first.bytes), [("pr_person".to_string(), 9)]);
    // B confirms it, as its Applied does in a session.
    confirmed(&sa, &ib, &first.bytes);
    // Cut short here. B's vector does not claim the posts, which were changed
    // before the people: the next session sends the posts, and only them.
    let after_first = sb.vector().unwrap();
    let again = sa
        .export_class_against(&ib, &after_first, None, None)
        .unwrap();
    assert_eq!(again.next, None);
    assert_eq!(
        apply(&mut sb, &again.exported.bytes),
        [("cms_post".to_string(), 12)]
    );
    let rest = sa
        .export_class_against(&ib, &sb.vector().unwrap(), None, None)
        .unwrap();
    assert_eq!(apply(&mut sb, &rest.exported.bytes), []);
    drop((sa, sb));
    let st = station_rows(&a, &b);
    assert_eq!(st.0, st.1, "converged");
}

/// Both stations' synced rows.
fn station_rows(
    a: &std::path::Path,
    b: &std::path::Path,
) -> (
    Vec<radiosync::store::SyncedRow>,
    Vec<radiosync::store::SyncedRow>,
) {
    (
        Store::open(a).unwrap().synced_rows().unwrap(),
        Store::open(b).unwrap().synced_rows().unwrap(),
    )
}

#[test]
fn a_session_sends_one_bundle_per_class_and_converges() {
    let dir = scratch();
    let (a, b) = prioritised_pair(dir.path());
    let p = Profile::load("sim-kiss-1200").unwrap();
    let mut pair = sim_pair(&p, &a, &b, 0.0, 0.05, 9);
    let now = pair.link.now();
    pair.station(Side::A)
        .unwrap()
        .start_sync(now, "B", 0x9001)
        .unwrap();
    let (oa, _) = run_sync(&mut pair, Duration::from_secs(3600));
    let s = oa[0].result.clone().unwrap();
    assert_eq!(s.bundles_confirmed, 2, "{s:?}");
    assert_eq!(s.verified(), Some(true));
    drop(pair);
    assert_converged(&a, &b);
    // Nothing is left to send, and a second session moves no rows.
    let sa = Store::open(&a).unwrap();
    let ib = Store::open(&b).unwrap().station().id;
    assert_eq!(sa.pending_for(&ib).unwrap(), 0);
}

#[test]
fn a_budget_delivers_the_higher_class_and_leaves_the_rest_for_next_time() {
    let dir = scratch();
    let (a, b) = cloned_pair(dir.path(), false);
    insert_posts(&a, 8, 300, 200);
    update_people(&a, 8, 20);
    Store::open(&a)
        .unwrap()
        .set_priority("pr_person", 2)
        .unwrap();
    let ib = Store::open(&b).unwrap().station().id;
    let plan = Store::open(&a).unwrap().plan_for(&ib).unwrap();
    assert_eq!(plan.len(), 2);
    assert_eq!(plan[0].tables[0].table, "pr_person");
    let p = Profile::load("sim-kiss-1200").unwrap();
    let cfg = radiosync::arq::ArqConfig::from_profile(&p);
    // Room for the people and about half the posts.
    let budget = cfg.session_airtime(&[plan[0].bytes as usize, plan[1].bytes as usize / 2, 0]);
    let mut pair = sim_pair(&p, &a, &b, 0.0, 0.0, 11);
    let now = pair.link.now();
    pair.station(Side::A)
        .unwrap()
        .start_sync_within(now, "B", 0x9002, Some(now + budget))
        .unwrap();
    let (oa, _) = run_sync(&mut pair, Duration::from_secs(3600));
    let took = pair.link.elapsed();
    let left = oa[0].left_for_budget;
    let s = oa[0].result.clone().unwrap();
    assert!(left > 0 && left < 300, "{left} rows left");
    assert!(
        took <= budget.mul_f64(1.2),
        "{took:?} for a budget of {budget:?}"
    );
    assert!(s.verified() != Some(true), "rows are still to go");
    drop(pair);
    // B holds every person update and some posts; A owes it only posts now.
    let sa = Store::open(&a).unwrap();
    let owed = sa.export_for(&ib).unwrap();
    let names: Vec<&str> = owed
        .tables
        .iter()
        .map(|t| sa.tables()[t.table as usize].name.as_str())
        .collect();
    assert_eq!(names, ["cms_post"]);
    assert_eq!(owed.tables[0].rows.len() as u64, left);
    drop(sa);
    // The next sync, without a budget, sends the rest and converges.
    let mut pair = sim_pair(&p, &a, &b, 0.0, 0.0, 12);
    let now = pair.link.now();
    pair.station(Side::A)
        .unwrap()
        .start_sync(now, "B", 0x9003)
        .unwrap();
    let (oa, _) = run_sync(&mut pair, Duration::from_secs(3600));
    assert_eq!(oa[0].result.clone().unwrap().verified(), Some(true));
    drop(pair);
    assert_converged(&a, &b);
}

#[test]
fn a_change_made_between_classes_is_not_claimed_by_the_next() {
    let dir = scratch();
    let (a, b) = prioritised_pair(dir.path());
    let (sa, mut sb) = (Store::open(&a).unwrap(), Store::open(&b).unwrap());
    let ib = sb.station().id;
    let first = sa
        .export_class_against(&ib, &sb.vector().unwrap(), None, None)
        .unwrap();
    assert_eq!(first.next, Some(2));
    apply(&mut sb, &first.exported.bytes);
    confirmed(&sa, &ib, &first.exported.bytes);
    drop(sa);
    // The application writes a class-2 row while the class-0 bundle is made.
    update_people(&a, 77, 1);
    let mut sa = Store::open(&a).unwrap();
    sa.check_capture().unwrap();
    let second = sa
        .export_class_against(&ib, &sb.vector().unwrap(), Some(2), None)
        .unwrap();
    assert_eq!(
        apply(&mut sb, &second.exported.bytes),
        [("cms_post".to_string(), 12)]
    );
    // Its claim did not cover the new row: the next session sends it.
    let rest = sa
        .export_class_against(&ib, &sb.vector().unwrap(), None, None)
        .unwrap();
    assert_eq!(
        apply(&mut sb, &rest.exported.bytes),
        [("pr_person".to_string(), 1)]
    );
    drop((sa, sb));
    let st = station_rows(&a, &b);
    assert_eq!(st.0, st.1, "converged");
}
