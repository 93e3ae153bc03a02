//! The capture of a real sync between two `radiosync` processes through the
//! channel simulator (`sync --capture`, `run --capture`), listed with
//! `capture show` and replayed with `replay` into copies of the databases
//! taken before the sync: the application tables end as the live sync left
//! them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use radiosync::testkit::{self, cloned_pair, snapshot};

const WAIT: Duration = Duration::from_secs(20);

/// Ends the process when the test ends, however it ends.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn stations(dir: &Path) -> (PathBuf, PathBuf) {
    cloned_pair(dir, false)
}

/// New posts, and one person edited.
fn edit(path: &Path, seed: u64, inserts: usize) {
    testkit::edit(path, seed, 1, inserts, 100);
}

fn radiosync(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_radiosync"))
        .args(args)
        .output()
        .unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn a_capture_from_two_processes_replays_to_the_live_result() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = stations(dir.path());
    edit(&a, 1, 6);
    edit(&b, 2, 10);
    let a_before = dir.path().join("a-before.sqlite");
    let b_before = dir.path().join("b-before.sqlite");
    radiosync::store::copy_station(&a, &a_before).unwrap();
    radiosync::store::copy_station(&b, &b_before).unwrap();

    let tty_a = dir.path().join("ttyA");
    let tty_b = dir.path().join("ttyB");
    let _chansim = Proc(
        Command::new(env!("CARGO_BIN_EXE_chansim"))
            .args(["--link-a", s(&tty_a), "--link-b", s(&tty_b)])
            .args([
                "--mode",
                "transparent",
                "--bitrate",
                "9600",
                "--txdelay-ms",
                "100",
            ])
            .args(["--ber", "1e-5", "--seed", "4", "--quiet"])
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn chansim"),
    );
    let deadline = Instant::now() + WAIT;
    while !(tty_a.exists() && tty_b.exists()) {
        assert!(
            Instant::now() < deadline,
            "chansim did not create its links"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let cap_a = dir.path().join("a.rscap");
    let cap_b = dir.path().join("b.rscap");
    let profile = "sim-transparent-9600";
    let daemon = Proc(
        Command::new(env!("CARGO_BIN_EXE_radiosync"))
            .args([
                "run",
                "--db",
                s(&b),
                "--profile",
                profile,
                "--port",
                s(&tty_b),
            ])
            .args(["--capture", s(&cap_b)])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn radiosync run"),
    );
    let out = radiosync(&[
        "sync",
        "--db",
        s(&a),
        "--profile",
        profile,
        "--port",
        s(&tty_a),
        "--peer",
        "B",
        "--capture",
        s(&cap_a),
        "--timeout",
        "120s",
    ]);
    assert!(
        out.status.success(),
        "sync failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Let the daemon finish its side (it commits A's push), then stop it.
    let deadline = Instant::now() + WAIT;
    while snapshot(&b) != snapshot(&a) {
        assert!(Instant::now() < deadline, "B did not converge");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(daemon);

    for (live, before, cap) in [(&a, &a_before, &cap_a), (&b, &b_before, &cap_b)] {
        let show = radiosync(&["capture", "show", s(cap)]);
        assert!(show.status.success());
        let listing = String::from_utf8(show.stdout).unwrap();
        let hello = format!("Hello v{} from station", radiosync::sync::PROTOCOL_VERSION);
        assert!(listing.contains(&hello), "{listing}");
        assert!(listing.contains("BundleStart id"), "{listing}");
        assert!(
            listing.contains(" recv ") && listing.contains(" sent "),
            "{listing}"
        );

        assert_ne!(snapshot(live), snapshot(before));
        let out = radiosync(&["replay", "--db", s(before), s(cap)]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("applied: "), "{text}");
        assert!(
            snapshot(live) == snapshot(before),
            "replay differs from the live sync:\n{text}"
        );
    }
}
