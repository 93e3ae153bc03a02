//! "Done when": a capture taken during a sync replays into a fresh copy of the
//! receiving database and gives the same result. Both stations capture (each
//! receives a bundle: bravo the push, alpha the pull); each capture is replayed
//! into a copy of that station's database from before the sync.

mod radio_util;

use radio_util::*;

fn replay(
    db_before: &std::path::Path,
    copy: &std::path::Path,
    capture: &std::path::Path,
) -> String {
    radiosync::store::copy_station(db_before, copy).unwrap();
    radiosync_ok(&[
        "replay",
        "--db",
        copy.to_str().unwrap(),
        capture.to_str().unwrap(),
    ])
}

#[test]
fn capture_replays_into_a_fresh_copy_to_the_same_tables() {
    // Bit errors and bursts, so the capture holds frames that needed FEC and
    // frames that were lost and sent again.
    let mut rig = Rig::on_channel("sim-transparent-9600", 2, 71, NOISY_WITH_BURSTS);
    let cap_b = rig.path("bravo.cap");
    let cap_a = rig.path("alpha.cap");
    rig.start_daemon(&["--capture", cap_b.to_str().unwrap()]);
    rig.sync(120, &["--capture", cap_a.to_str().unwrap()])
        .assert_ok("sync with captures");
    // The daemon writes its capture as frames come and go; stop it so nothing
    // is half written.
    rig.kill_daemon();

    for (name, cap) in [("bravo", &cap_b), ("alpha", &cap_a)] {
        let shown = radiosync_ok(&["capture", "show", cap.to_str().unwrap()]);
        assert!(
            shown.lines().count() > 4,
            "capture show printed almost nothing for {name}:\n{shown}"
        );
    }

    let b_copy = rig.path("bravo-replayed.sqlite");
    let out = replay(&rig.st.b_before, &b_copy, &cap_b);
    let diff = diff_app_tables(&rig.st.b, &b_copy);
    assert!(
        diff.is_empty(),
        "bravo's capture replayed differs from the live sync:\n  {}\nreplay said:\n{out}",
        diff.join("\n  ")
    );
    let a_copy = rig.path("alpha-replayed.sqlite");
    let out = replay(&rig.st.a_before, &a_copy, &cap_a);
    let diff = diff_app_tables(&rig.st.a, &a_copy);
    assert!(
        diff.is_empty(),
        "alpha's capture replayed differs from the live sync:\n  {}\nreplay said:\n{out}",
        diff.join("\n  ")
    );
    // The replay did something: the copies were not already equal.
    assert!(!diff_app_tables(&rig.st.b_before, &b_copy).is_empty());
    assert!(!diff_app_tables(&rig.st.a_before, &a_copy).is_empty());
    // Last, so that the replay's own checks speak first.
    rig.assert_converged(true);
}
