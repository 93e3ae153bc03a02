//! The operator's guide works as written: every `sh` block of
//! docs/operator-guide.md runs, in order, in an empty directory, with the
//! built `radiosync` and `chansim` on PATH (issue 12).

use std::path::Path;
use std::process::Command;

/// The guide's `sh` blocks, in order.
fn sh_blocks(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    for line in text.lines() {
        match (&mut cur, line.trim_end()) {
            (None, "```sh") => cur = Some(String::new()),
            (Some(b), "```") => {
                out.push(std::mem::take(b));
                cur = None;
            }
            (Some(b), l) => {
                b.push_str(l);
                b.push('\n');
            }
            (None, _) => {}
        }
    }
    out
}

#[test]
fn every_command_of_the_operator_guide_runs() {
    let guide = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/operator-guide.md"),
    )
    .unwrap();
    let blocks = sh_blocks(&guide);
    assert!(blocks.len() >= 6, "{} sh blocks", blocks.len());
    let bin = Path::new(env!("CARGO_BIN_EXE_radiosync")).parent().unwrap();
    assert!(
        bin.join("chansim").exists(),
        "chansim is built beside radiosync"
    );
    let dir = tempfile::tempdir().unwrap();
    let script = format!("set -euo pipefail\n{}", blocks.join("\n"));
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        // The guide's `discover` and mDNS lookups stay on loopback, like every test.
        .env(radiosync::discovery::SCOPE_ENV, "loopback")
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "guide failed:\n{stdout}\n{stderr}");
    // The radio sync over the Dire Wolf profile delivered the edits both ways.
    assert!(stdout.contains("synced with shelter"), "{stdout}");
    assert!(stdout.contains("open, 40 beds free"), "{stdout}");
    assert!(stdout.contains("would run station clinic"), "{stdout}");
    // Over IP: the sync by address and the one found by mDNS, and the web services.
    assert!(
        stdout.matches("synced with shelter").count() >= 3,
        "{stdout}"
    );
    assert!(stdout.contains("peer shelter"), "discover: {stdout}");
    assert!(stdout.contains("web services: hms_hospital"), "{stdout}");
    // The net: the beacon heard and listed as the registered peer, the plan by
    // class, and the budgeted sync.
    assert!(stdout.contains("shelter N0CALL-2 ("), "heard: {stdout}");
    assert!(stdout.contains("peer shelter; content"), "heard: {stdout}");
    assert!(stdout.contains("(class, one bundle)"), "plan: {stdout}");
    assert!(
        stdout.matches("synced with shelter").count() >= 4,
        "{stdout}"
    );
}
