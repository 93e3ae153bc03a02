//! The hardware tier: two stations over two real modems on one machine, e.g.
//! two Dire Wolf instances or two TNCs on a bench with dummy loads or
//! attenuators. Ignored unless the environment names the ports:
//!
//! ```sh
//! RADIOSYNC_HW_PORT_A=/dev/ttyUSB0 RADIOSYNC_HW_PORT_B=/dev/ttyUSB1 \
//! RADIOSYNC_HW_PROFILE=mobilinkd-tnc4 cargo test --release --test radio_hardware -- --ignored
//! ```
//!
//! An amateur profile needs callsigns: add `RADIOSYNC_HW_CALL_A=N0CALL-1
//! RADIOSYNC_HW_CALL_B=N0CALL-2` (your own).

mod radio_util;

use std::path::PathBuf;

use radio_util::*;

#[test]
#[ignore = "needs RADIOSYNC_HW_PORT_A, RADIOSYNC_HW_PORT_B and RADIOSYNC_HW_PROFILE naming real modems"]
fn two_stations_converge_over_real_modems() {
    let var =
        |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("set {k} (see the file's comment)"));
    let (a, b, profile) = (
        PathBuf::from(var("RADIOSYNC_HW_PORT_A")),
        PathBuf::from(var("RADIOSYNC_HW_PORT_B")),
        var("RADIOSYNC_HW_PROFILE"),
    );
    let calls = (
        std::env::var("RADIOSYNC_HW_CALL_A").ok(),
        std::env::var("RADIOSYNC_HW_CALL_B").ok(),
    );
    let calls = match &calls {
        (Some(a), Some(b)) => Some((a.as_str(), b.as_str())),
        _ => None,
    };
    let mut rig = Rig::on_ports(&profile, 1, 81, &a, &b, calls);
    rig.start_daemon(&[]);
    let run = rig.sync(900, &[]);
    run.assert_ok("sync over the real modems");
    rig.assert_converged(true);
    eprintln!("synced in {:.1} s", run.elapsed.as_secs_f64());
}
