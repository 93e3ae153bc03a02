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
    let (first, next) = sa.export_class_against(&ib, &holds, None).unwrap();
    assert_eq!(next, Some(2), "a lower class follows");
    assert_eq!(apply(&mut sb, &first.bytes), [("pr_person".to_string(), 9)]);
    // B confirms it, as its Applied does in a session.
    sa.transfer_keep_outgoing(&ib, BundleId::of(&first.bytes), &first.bytes)
        .unwrap();
    sa.transfer_outgoing_applied(&ib).unwrap();
    // Cut short here. B's vector does not claim the posts, which were changed
    // before the people: the next session sends the posts, and only them.
    let after_first = sb.vector().unwrap();
    let (again, next) = sa.export_class_against(&ib, &after_first, None).unwrap();
    assert_eq!(next, None);
    assert_eq!(apply(&mut sb, &again.bytes), [("cms_post".to_string(), 12)]);
    let (rest, _) = sa
        .export_class_against(&ib, &sb.vector().unwrap(), None)
        .unwrap();
    assert_eq!(apply(&mut sb, &rest.bytes), []);
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
