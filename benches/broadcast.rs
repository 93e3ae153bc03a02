//! One transmission for many (issue 9): the airtime a hub needs to bring N = 3
//! and 5 field stations up to date by one broadcast (then a sync with each,
//! which sends only what that station missed) against N separate syncs, on
//! the shared-channel model (`sim::net`, virtual time). The hub's news: 30
//! people changed, 100 posts of ~120 bytes. A program printing a table, not
//! a timing test: every figure is simulated time, so it repeats exactly.
//!
//! `cargo bench --bench broadcast` (about a minute).

use std::time::Duration;

use radiosync::profile::Profile;
use radiosync::testkit::{hub_brings_up_to_date, hub_with_news, snapshot, NetRun};

const NAMES: [&str; 5] = ["A", "B", "C", "D", "E"];

fn run(profile: &Profile, n: usize, broadcast: bool, ber: f64, loss: f64, seed: u64) -> NetRun {
    let dir = tempfile::tempdir().unwrap();
    let (hub, fields) = hub_with_news(dir.path(), &NAMES[..n], 30, 100, 120);
    let paths: Vec<_> = std::iter::once(hub).chain(fields).collect();
    let r = hub_brings_up_to_date(profile, &paths, &NAMES[..n], broadcast, ber, loss, seed);
    let first = snapshot(&paths[0]);
    assert!(
        paths[1..].iter().all(|p| snapshot(p) == first),
        "not converged"
    );
    r
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn main() {
    println!("one transmission for many: hub brings N stations up to date (simulated time)");
    println!(
        "{:<34} {:>2} {:>12} {:>12} {:>7} {:>12} {:>12} {:>7} {:>6}",
        "channel",
        "N",
        "cast air s",
        "separate s",
        "ratio",
        "cast wall s",
        "separate s",
        "ratio",
        "heard"
    );
    let cells: [(&str, &str, f64, f64); 3] = [
        ("KISS 1200, clean", "sim-kiss-1200", 0.0, 0.0),
        ("KISS 1200, 5 % frame loss", "sim-kiss-1200", 0.0, 0.05),
        (
            "transparent 9600, BER 1e-4",
            "sim-transparent-9600",
            1e-4,
            0.0,
        ),
    ];
    for (label, profile, ber, loss) in cells {
        let p = Profile::load(profile).unwrap();
        for n in [3, 5] {
            let cast = run(&p, n, true, ber, loss, 21);
            let sep = run(&p, n, false, ber, loss, 21);
            println!(
                "{:<34} {:>2} {:>12.1} {:>12.1} {:>7.2} {:>12.1} {:>12.1} {:>7.2} {:>4}/{}",
                label,
                n,
                secs(cast.airtime),
                secs(sep.airtime),
                secs(cast.airtime) / secs(sep.airtime),
                secs(cast.elapsed),
                secs(sep.elapsed),
                secs(cast.elapsed) / secs(sep.elapsed),
                cast.heard_whole,
                n
            );
        }
    }
    println!(
        "air: every station's time on air, key-ups included; wall: start to the last \
         session's end; heard: stations that took the whole broadcast from the air"
    );
}
