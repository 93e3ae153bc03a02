//! The README's quick start: `radiosync demo` (radio, here over the faster transparent
//! simulator profile with bit errors so the test takes seconds) and `radiosync demo --file`.

use std::process::Command;

fn demo(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_radiosync"))
        .arg("demo")
        .args(args)
        .output()
        .expect("run radiosync demo");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "demo {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn radio_demo_converges_over_the_simulator() {
    let out = demo(&["--profile", "sim-transparent-9600", "--ber", "1e-4"]);
    assert!(out.contains("identical on both stations"), "{out}");
    assert!(out.contains("airtime:"), "{out}");
}

#[test]
fn file_demo_converges() {
    let out = demo(&["--file"]);
    assert!(out.contains("identical on both stations"), "{out}");
}

#[test]
fn demo_refuses_an_amateur_profile_without_callsigns() {
    let out = Command::new(env!("CARGO_BIN_EXE_radiosync"))
        .args(["demo", "--profile", "direwolf-1200"])
        .output()
        .expect("run radiosync demo");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("callsign"));
}

/// The net (issue 9): a hub and two field stations calling it at once converge,
/// and each field station's edits reach the other through the hub.
#[test]
fn net_demo_converges_through_the_hub() {
    let out = demo(&["--net"]);
    assert!(out.contains("all three stations hold the same"), "{out}");
    // Then one broadcast brings the hub's update to both.
    assert!(out.contains("one broadcast of"), "{out}");
    assert!(out.contains("all three equal again"), "{out}");
    let out = demo(&[
        "--net",
        "--profile",
        "sim-transparent-9600",
        "--ber",
        "1e-4",
        "--frame-loss",
        "0",
    ]);
    assert!(out.contains("all three stations hold the same"), "{out}");
    assert!(out.contains("all three equal again"), "{out}");
}
