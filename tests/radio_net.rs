//! A net of processes (issue 9): `chansim` with three links (`--link`) joins a
//! hub's daemon (`radiosync run`) and two field stations' `radiosync sync`,
//! all started at once on one shared channel. Each field station's change
//! reaches the hub, and the second round brings each the other's.

mod radio_util;

use std::path::Path;
use std::time::Duration;

use radio_util::*;

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn sql(db: &Path, stmt: &str) {
    let c = rusqlite::Connection::open(db).unwrap();
    c.execute_batch(stmt).unwrap();
}

fn status_of_hospital_1(db: &Path) -> String {
    let c = rusqlite::Connection::open(db).unwrap();
    c.query_row("SELECT status FROM hms_hospital WHERE id = 1", [], |r| {
        r.get(0)
    })
    .unwrap()
}

fn job_of_person_1(db: &Path) -> String {
    let c = rusqlite::Connection::open(db).unwrap();
    c.query_row("SELECT job_title FROM pr_person WHERE id = 1", [], |r| {
        r.get(0)
    })
    .unwrap()
}

/// SQL for "now" as the applications write `modified_on`.
const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";

/// A hub from the sample data with every table tracked, and stations alpha and
/// bravo cloned from it, in `d`.
fn hub_and_two(d: &Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let (hub, a, b) = (d.join("hub.sqlite"), d.join("a.sqlite"), d.join("b.sqlite"));
    radiosync_ok(&["sample", "--out", &s(&hub)]);
    radiosync_ok(&["init", "--db", &s(&hub), "--name", "hub"]);
    radiosync_ok(&["track", "--db", &s(&hub), "--all"]);
    for (to, name) in [(&a, "alpha"), (&b, "bravo")] {
        radiosync_ok(&["clone", "--from", &s(&hub), "--to", &s(to), "--name", name]);
    }
    (hub, a, b)
}

/// The link arguments of a station's radio command.
fn radio_args(db: &Path, profile: &str, tty: &Path) -> Vec<String> {
    ["--db", &s(db), "--profile", profile, "--port", &s(tty)]
        .iter()
        .map(|x| x.to_string())
        .collect()
}

/// chansim joining three links (hub, alpha, bravo) in `d`, with stats in chan.json.
fn chansim_for_three(d: &Path, profile: &str) -> (Proc, Vec<std::path::PathBuf>) {
    let links: Vec<_> = ["hub", "alpha", "bravo"]
        .iter()
        .map(|n| d.join(format!("{n}.tty")))
        .collect();
    let mut args = chansim_args(profile, 5, &["--quiet"]);
    args.extend([
        "--link-a".into(),
        s(&links[0]),
        "--link-b".into(),
        s(&links[1]),
    ]);
    args.extend(["--link".into(), s(&links[2])]);
    args.extend(["--stats".into(), s(&d.join("chan.json"))]);
    let chan = Proc::spawn("chansim", chansim_bin(), &args, d.join("chansim.log"));
    let t0 = std::time::Instant::now();
    while !links.iter().all(|l| l.exists()) {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "chansim made no links"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (chan, links)
}

/// `radiosync broadcast` at the hub, the field stations' daemons listening:
/// one transmission brings both the hub's change, and the sessions after it
/// send no bundle bytes (all pieces were heard on the clean channel).
#[test]
fn a_hub_broadcasts_to_two_listening_stations() {
    let dir = scratch();
    let d = dir.path();
    let (hub, a, b) = hub_and_two(d);
    sql(
        &hub,
        &format!(
            "UPDATE hms_hospital SET status = 'hub: closed', modified_on = {NOW} WHERE id = 1"
        ),
    );
    let profile = "sim-kiss-1200";
    let (mut chan, links) = chansim_for_three(d, profile);
    let radio = |db: &Path, tty: &Path| radio_args(db, profile, tty);
    let mut daemons: Vec<Proc> = [("alpha", &a, &links[1]), ("bravo", &b, &links[2])]
        .iter()
        .map(|(name, db, tty)| {
            Proc::spawn(
                name,
                radiosync_bin(),
                &[vec!["run".to_string()], radio(db, tty)].concat(),
                d.join(format!("{name}.log")),
            )
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let mut args = vec!["broadcast".to_string()];
    args.extend(radio(&hub, &links[0]));
    args.extend(["--timeout".into(), "5m".into()]);
    let mut cast = Proc::spawn("broadcast", radiosync_bin(), &args, d.join("broadcast.log"));
    let st = cast.wait_for(Duration::from_secs(330));
    let out = cast.output();
    assert!(st.is_some_and(|s| s.success()), "{st:?}:\n{out}");
    for name in ["alpha", "bravo"] {
        assert!(
            out.contains(&format!("{name}: 0 bundle bytes sent after the broadcast")),
            "{out}"
        );
    }
    for p in &mut daemons {
        p.signal("INT");
        let _ = p.wait_for(Duration::from_secs(10));
        assert!(p.output().contains("applied"), "{}", p.output());
    }
    chan.signal("INT");
    let _ = chan.wait_for(Duration::from_secs(10));
    for db in [&a, &b] {
        assert_eq!(status_of_hospital_1(db), "hub: closed", "{}", db.display());
    }
}

/// The same by file: `export --broadcast` writes one signed file for both
/// stations; `import` at each applies it; a second import holds it already;
/// a damaged copy is refused with the database unchanged.
#[test]
fn one_broadcast_file_for_two_stations() {
    let dir = scratch();
    let d = dir.path();
    let (hub, a, b) = hub_and_two(d);
    sql(
        &hub,
        &format!(
            "UPDATE hms_hospital SET status = 'hub: by file', modified_on = {NOW} WHERE id = 1"
        ),
    );
    let file = d.join("update.rsc");
    let out = radiosync_ok(&[
        "export",
        "--db",
        &s(&hub),
        "--broadcast",
        "alpha,bravo",
        "--out",
        &s(&file),
    ]);
    assert!(out.contains("for alpha, bravo"), "{out}");
    // A damaged copy: refused, nothing applied.
    let mut bad = std::fs::read(&file).unwrap();
    let at = bad.len() - 3;
    bad[at] ^= 0x01;
    let bad_file = d.join("bad.rsc");
    std::fs::write(&bad_file, bad).unwrap();
    let o = std::process::Command::new(radiosync_bin())
        .args(["import", "--db", &s(&a), &s(&bad_file)])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert_ne!(status_of_hospital_1(&a), "hub: by file");
    for db in [&a, &b] {
        let out = radiosync_ok(&["import", "--db", &s(db), &s(&file)]);
        assert!(out.contains("1 applied"), "{out}");
        assert_eq!(status_of_hospital_1(db), "hub: by file");
    }
    let again = radiosync_ok(&["import", "--db", &s(&a), &s(&file)]);
    assert!(again.contains("0 applied"), "{again}");
}

#[test]
fn a_hub_and_two_stations_as_processes_on_one_chansim() {
    let dir = scratch();
    let d = dir.path();
    let (hub, a, b) = hub_and_two(d);
    sql(
        &a,
        &format!(
            "UPDATE hms_hospital SET status = 'alpha: 3 beds', modified_on = {NOW} WHERE id = 1"
        ),
    );
    sql(
        &b,
        &format!(
            "UPDATE pr_person SET job_title = 'bravo: driver', modified_on = {NOW} WHERE id = 1"
        ),
    );
    let profile = "sim-transparent-9600";
    let (mut chan, links) = chansim_for_three(d, profile);
    let radio = |db: &Path, tty: &Path| radio_args(db, profile, tty);
    let mut daemon = Proc::spawn(
        "hub",
        radiosync_bin(),
        &[vec!["run".to_string()], radio(&hub, &links[0])].concat(),
        d.join("hub.log"),
    );
    std::thread::sleep(Duration::from_millis(500));
    for round in 0..2 {
        // Both field stations call the hub at the same moment.
        let mut syncs: Vec<Proc> = [("alpha", &a, &links[1]), ("bravo", &b, &links[2])]
            .iter()
            .map(|(name, db, tty)| {
                let mut v = vec!["sync".to_string()];
                v.extend(radio(db, tty));
                v.extend([
                    "--peer".into(),
                    "hub".into(),
                    "--timeout".into(),
                    "5m".into(),
                ]);
                Proc::spawn(
                    name,
                    radiosync_bin(),
                    &v,
                    d.join(format!("{name}-{round}.log")),
                )
            })
            .collect();
        for p in &mut syncs {
            let st = p.wait_for(Duration::from_secs(330));
            assert!(
                st.is_some_and(|s| s.success()),
                "round {round}: {} ended {st:?}:\n{}\nhub:\n{}",
                p.name,
                p.output(),
                daemon.output()
            );
        }
    }
    daemon.signal("INT");
    let _ = daemon.wait_for(Duration::from_secs(10));
    chan.signal("INT");
    let _ = chan.wait_for(Duration::from_secs(10));
    for db in [&hub, &a, &b] {
        assert_eq!(
            status_of_hospital_1(db),
            "alpha: 3 beds",
            "{}",
            db.display()
        );
        assert_eq!(job_of_person_1(db), "bravo: driver", "{}", db.display());
    }
    let stats: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("chan.json")).unwrap()).unwrap();
    eprintln!("chansim: {stats}");
    let tx = stats["transmissions"].as_array().unwrap();
    assert!(tx.iter().all(|n| n.as_u64().unwrap() > 0), "{stats}");
}
