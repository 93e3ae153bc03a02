//! Beacons (issue 9): a station announces itself on the channel; others list it
//! with `heard`, flag a registered peer's name with another key, and never act
//! on a beacon otherwise.

mod store_util;

use std::time::Duration;

use radiosync::profile::Profile;
use radiosync::sim::pair::{channel_config, SimLink, SimPair};
use radiosync::sim::Side;
use radiosync::store::{Registration, Store};
use radiosync::sync::beacon::Beacon;
use radiosync::testkit::{cloned_pair, station};
use store_util::*;

fn beacon_pair(profile: &str) -> (tempfile::TempDir, SimPair) {
    let dir = scratch();
    let (a, b) = cloned_pair(dir.path(), false);
    let p = Profile::load(profile).unwrap();
    let link = SimLink::new(channel_config(&p, 0.0, None, 0.0, 3)).unwrap();
    let pair = SimPair::new(link, station(&a, &p, true), station(&b, &p, true));
    (dir, pair)
}

#[test]
fn a_beacon_is_heard_and_listed_with_its_registration() {
    for profile in ["sim-kiss-1200", "sim-transparent-9600"] {
        let (_dir, mut pair) = beacon_pair(profile);
        let now = pair.link.now();
        pair.station(Side::A)
            .unwrap()
            .set_beacon(Some(Duration::from_secs(60)), now);
        pair.run_until(Duration::from_secs(130), |_| false);
        let b = pair.station(Side::B).unwrap().store();
        let heard = b.heard().unwrap();
        assert_eq!(heard.len(), 1, "{profile}: {heard:?}");
        let h = &heard[0];
        assert_eq!(h.name, "A");
        assert_eq!(h.count, 3, "at 0, 60 and 120 s");
        assert_eq!(h.registration, Registration::Peer("A".into()));
        assert_eq!(h.fingerprint, b.fingerprint_for(&h.station).unwrap());
        // Nobody answered: the beacon opened no session anywhere.
        assert!(!pair.station(Side::A).unwrap().has_sessions());
        assert!(!pair.station(Side::B).unwrap().has_sessions());
    }
}

#[test]
fn a_beacon_in_a_peers_name_with_another_key_is_flagged() {
    let dir = scratch();
    let (a, b) = cloned_pair(dir.path(), false);
    let sb = Store::open(&b).unwrap();
    let mut forged = Store::open(&a).unwrap().beacon().unwrap();
    forged.key = [0xee; 8];
    sb.note_beacon(&forged).unwrap();
    let heard = sb.heard().unwrap();
    assert_eq!(heard[0].registration, Registration::AnotherKey("A".into()));
    // A stranger is listed as not registered, and its own beacon is not kept.
    let mut stranger = forged.clone();
    stranger.station = radiosync::delta::StationId([0x5a; 16]);
    sb.note_beacon(&stranger).unwrap();
    sb.note_beacon(&sb.beacon().unwrap()).unwrap();
    let heard = sb.heard().unwrap();
    assert_eq!(heard.len(), 2);
    assert!(heard
        .iter()
        .any(|h| h.registration == Registration::Unknown));
    // What goes on air parses back to the same.
    let own = sb.beacon().unwrap();
    assert_eq!(Beacon::parse(&own.to_payload()).unwrap(), own);
}
