//! Sync over IP (issue 10): `run --tcp-listen` and `sync --tcp` as processes
//! on loopback, the same session protocol and authentication as on the radio.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use radiosync::delta::Value;
use radiosync::discovery;
use radiosync::store::Store;
use radiosync::testkit::{edit, separate_pair, snapshot};

const EXE: &str = env!("CARGO_BIN_EXE_radiosync");

/// `radiosync run` with `args`, stopped on drop; `addr` is where it answers TCP.
struct Daemon {
    child: Child,
    addr: String,
    log: mpsc::Receiver<String>,
}

impl Daemon {
    fn start(db: &Path, extra: &[&str]) -> Daemon {
        let mut child = Command::new(EXE)
            .args([
                "run",
                "--db",
                db.to_str().unwrap(),
                "--tcp-listen",
                "127.0.0.1:0",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, log) = mpsc::channel();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut d = Daemon {
            child,
            addr: String::new(),
            log,
        };
        let line = d.wait_for("answering peers over TCP on");
        d.addr = line.rsplit(' ').next().unwrap().to_string();
        d
    }

    /// The first log line (from now) containing `what`.
    fn wait_for(&mut self, what: &str) -> String {
        loop {
            let line = self
                .log
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("the daemon never logged {what:?}"));
            if line.contains(what) {
                return line;
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sync(db: &Path, peer: &str, addr: &str) -> Output {
    Command::new(EXE)
        .args([
            "sync",
            "--db",
            db.to_str().unwrap(),
            "--peer",
            peer,
            "--tcp",
            addr,
        ])
        .args(["--timeout", "2m"])
        .output()
        .unwrap()
}

/// Live rows that differ between the stations at `a` and `b` (the first few),
/// so a failure does not print two whole databases. Soft-deleted rows are left
/// out, as the content fingerprint leaves them out (docs/reconciliation.md).
fn differences(a: &Path, b: &Path) -> Vec<String> {
    let live = |p: &Path| {
        let s = Store::open(p).unwrap();
        let deleted_at: Vec<(String, usize)> = s
            .tables()
            .iter()
            .filter_map(|t| {
                let i = t.payload.iter().position(|c| c.name == "deleted")?;
                Some((t.name.clone(), i))
            })
            .collect();
        let mut rows = snapshot(p);
        rows.retain(|r| {
            !deleted_at
                .iter()
                .any(|(t, i)| *t == r.table && r.values[*i] == Value::Integer(1))
        });
        rows
    };
    let (x, y) = (live(a), live(b));
    let mut out: Vec<String> = x
        .iter()
        .filter(|r| !y.contains(r))
        .map(|r| format!("only at {}: {r:?}", a.display()))
        .chain(
            y.iter()
                .filter(|r| !x.contains(r))
                .map(|r| format!("only at {}: {r:?}", b.display())),
        )
        .collect();
    out.truncate(6);
    out
}

/// `radiosync` with `args`, mDNS kept on loopback (tests send nothing beyond it).
fn local_mdns(args: &[&str]) -> Output {
    Command::new(EXE)
        .args(args)
        .env(discovery::SCOPE_ENV, "loopback")
        .output()
        .unwrap()
}

/// Station C from the sample data, set up apart; it registered A from its card,
/// A does not know it.
fn third_station(dir: &Path, a: &Path) -> std::path::PathBuf {
    let c = dir.join("c.sqlite");
    radiosync::store::sample::write_sample(&c).unwrap();
    let mut s = Store::init(&c, Some("C"), None).unwrap();
    s.track(&[], &["id".to_string()]).unwrap();
    s.add_peer_card(&Store::open(a).unwrap().card().unwrap(), Some("A"))
        .unwrap();
    c
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn two_stations_set_up_apart_converge_over_tcp_and_the_next_sync_sends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = separate_pair(dir.path());
    edit(&a, 1, 40, 20, 80);
    edit(&b, 2, 30, 10, 80);
    assert!(!differences(&a, &b).is_empty());
    let mut daemon = Daemon::start(&a, &[]);
    let first = sync(&b, "A", &daemon.addr);
    assert!(first.status.success(), "{}", text(&first));
    let out = String::from_utf8_lossy(&first.stdout);
    assert!(
        out.contains("verified: both stations hold the same content"),
        "{out}"
    );
    daemon.wait_for("disconnected");
    assert_eq!(differences(&a, &b), Vec::<String>::new());

    // Nothing new: no bundle bytes either way, still verified.
    let again = sync(&b, "A", &daemon.addr);
    assert!(again.status.success(), "{}", text(&again));
    let out = String::from_utf8_lossy(&again.stdout);
    assert!(
        out.contains("0 bundle bytes sent, 0 received") && out.contains("verified"),
        "{out}"
    );
    // The daemon's side of it is in its log, as for a radio session.
    daemon.wait_for("disconnected");
    let log = Store::open(&a).unwrap().log().unwrap();
    assert!(
        log.iter()
            .any(|l| l.peer.as_deref() == Some("B") && l.message.contains("verified")),
        "{log:?}"
    );
}

#[test]
fn over_tcp_an_unregistered_station_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _b) = separate_pair(dir.path());
    // A third station that registered A from its card, but A does not know it.
    let c = third_station(dir.path(), &a);
    edit(&c, 9, 10, 5, 40);
    let before = snapshot(&a);
    let daemon = Daemon::start(&a, &[]);
    let o = sync(&c, "A", &daemon.addr);
    assert_eq!(o.status.code(), Some(7), "{}", text(&o));
    assert!(text(&o).contains("refused this station"), "{}", text(&o));
    assert_eq!(snapshot(&a), before);
}

#[test]
fn sync_over_tcp_says_plainly_when_nobody_listens() {
    let dir = tempfile::tempdir().unwrap();
    let (_a, b) = separate_pair(dir.path());
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let o = sync(&b, "A", &format!("127.0.0.1:{port}"));
    assert!(!o.status.success());
    assert!(
        text(&o).contains("is `radiosync run --tcp-listen` running there?"),
        "{}",
        text(&o)
    );
}

/// Zeroconf, as the blueprints' daemonX had it: `run --tcp-listen` announces the
/// station by mDNS, `sync --peer` with no address finds a registered peer, and a
/// third station's `discover` lists both daemons and which of them it knows. An
/// impostor announcing A's UUID with another key is listed apart and flagged.
/// mDNS stays on loopback here (RADIOSYNC_MDNS=loopback), so the test needs no
/// network beyond this machine.
#[test]
fn stations_find_each_other_by_mdns_and_an_impostors_announcement_is_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = separate_pair(dir.path());
    edit(&a, 3, 10, 5, 40);
    let mut daemon_a = Daemon::start(&a, &[]);
    let _daemon_b = Daemon::start(&b, &[]);

    // B knows A only by name: mDNS says where it listens.
    let o = local_mdns(&["sync", "--db", b.to_str().unwrap(), "--peer", "A"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("syncing with A over TCP {}", daemon_a.addr)),
        "{}",
        text(&o)
    );
    daemon_a.wait_for("disconnected");
    assert_eq!(differences(&a, &b), Vec::<String>::new());

    // A third station that registered A from its card, and an impostor of A.
    let c = third_station(dir.path(), &a);
    let impostor = dir.path().join("impostor.sqlite");
    std::fs::copy(&a, &impostor).unwrap();
    rusqlite::Connection::open(&impostor)
        .unwrap()
        .execute("UPDATE rs_station SET public_key = NULL", [])
        .unwrap();
    let _daemon_x = Daemon::start(&impostor, &[]);

    let o = local_mdns(&["discover", "--db", c.to_str().unwrap(), "--wait", "5s"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    // Other tests' stations may announce on loopback too (with their own keys):
    // each of ours is found by its key.
    let key_of = |p: &Path| Store::open(p).unwrap().card().unwrap().key.short();
    let line_of = |p: &Path| {
        let key = key_of(p);
        out.lines()
            .find(|l| l.contains(&key))
            .unwrap_or_else(|| panic!("{} not listed: {out}", p.display()))
            .to_string()
    };
    let a_line = line_of(&a);
    assert!(
        a_line.ends_with("peer A") && a_line.contains(&daemon_a.addr),
        "{out}"
    );
    let b_line = line_of(&b);
    assert!(
        b_line.starts_with("B ")
            && b_line.ends_with("not registered (peer add --card with its card)"),
        "{out}"
    );
    let x_line = line_of(&impostor);
    assert!(x_line.contains("ANOTHER KEY"), "{out}");

    // C's sync by name reaches the real A, not the impostor with A's UUID.
    let o = local_mdns(&["sync", "--db", c.to_str().unwrap(), "--peer", "A"]);
    assert!(
        text(&o).contains(&format!("over TCP {}", daemon_a.addr)),
        "{}",
        text(&o)
    );
}

/// `run --tcp-listen --every` with no radio calls its peers over IP each round,
/// finding them by mDNS: B's edit reaches A without anyone running `sync`.
#[test]
fn run_every_calls_its_peers_over_ip() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = separate_pair(dir.path());
    edit(&b, 5, 10, 4, 40);
    let _daemon_b = Daemon::start(&b, &[]);
    let mut daemon_a = Daemon::start(&a, &["--every", "2s"]);
    let line = daemon_a.wait_for("round done");
    assert!(line.contains("sync B"), "{line}");
    assert_eq!(differences(&a, &b), Vec::<String>::new());
}
