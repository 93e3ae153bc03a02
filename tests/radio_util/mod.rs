//! Scaffolding for the process-level radio tests: two stations from the sample
//! data edited with plain SQL, `chansim` between two ptys, `radiosync run` and
//! `radiosync sync` as real processes, and the checks that the two databases
//! converged by the rules. Every process is killed when its guard drops; on a
//! failing test the guard prints chansim's stats and the processes' logs.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rusqlite::types::Value;
use rusqlite::{params_from_iter, Connection, OpenFlags};

/// The binaries, copied once per test process: a build started meanwhile (a
/// shared CARGO_TARGET_DIR, an editor's cargo check) must not swap them under
/// a running test.
struct Bins {
    _dir: tempfile::TempDir,
    radiosync: String,
    chansim: String,
}

fn bins() -> &'static Bins {
    static BINS: std::sync::OnceLock<Bins> = std::sync::OnceLock::new();
    BINS.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("rs-radio-bin-")
            .tempdir()
            .unwrap();
        let copy = |from: &str, name: &str| {
            let to = dir.path().join(name);
            radiosync::store::copy_station(from, &to).unwrap();
            to.to_str().unwrap().to_string()
        };
        let b = Bins {
            radiosync: copy(env!("CARGO_BIN_EXE_radiosync"), "radiosync"),
            chansim: copy(env!("CARGO_BIN_EXE_chansim"), "chansim"),
            _dir: dir,
        };
        let ok = Command::new(&b.radiosync)
            .args(["sync", "--help"])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            ok,
            "{} has no `sync` command: was it rebuilt from another branch?",
            env!("CARGO_BIN_EXE_radiosync")
        );
        b
    })
}

pub fn radiosync_bin() -> &'static str {
    &bins().radiosync
}

pub fn chansim_bin() -> &'static str {
    &bins().chansim
}
pub const SAMPLE_SQL: &str = include_str!("../../data/sample.sql");
pub const REPO: &str = env!("CARGO_MANIFEST_DIR");

// ---------------------------------------------------------------- processes

/// A child process whose stdout and stderr go to a log file; SIGKILLed on drop.
pub struct Proc {
    pub name: String,
    child: Child,
    pub log: PathBuf,
    status: Option<ExitStatus>,
}

impl Proc {
    pub fn spawn(name: &str, program: &str, args: &[String], log: PathBuf) -> Proc {
        let out = File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let child = Command::new(program)
            .args(args)
            .current_dir(REPO)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {name}: {e}"));
        Proc {
            name: name.to_string(),
            child,
            log,
            status: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`USR1`, `TERM`) to this process only.
    pub fn signal(&self, sig: &str) {
        assert!(
            self.try_signal(sig),
            "kill -{sig} {} ({}) failed",
            self.pid(),
            self.name
        );
    }

    pub fn try_signal(&self, sig: &str) -> bool {
        Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().unwrap();
        }
        self.status
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait_for(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.try_status() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL (what a crash or a pulled power cord looks like) and reap.
    pub fn kill_hard(&mut self) {
        if self.try_status().is_none() {
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill_hard();
    }
}

/// Runs a radiosync command to completion; panics with its output if it fails.
pub fn radiosync_ok(args: &[&str]) -> String {
    let out = Command::new(radiosync_bin())
        .args(args)
        .current_dir(REPO)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "radiosync {} failed ({}):\n{text}",
        args.join(" "),
        out.status
    );
    text
}

fn p(path: &Path) -> String {
    path.to_str().unwrap().to_string()
}

// ---------------------------------------------------------------- the workload

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum St {
    A,
    B,
}

/// One application write: an insert or an update of some columns (a soft-delete
/// is an update of `deleted`).
#[derive(Clone, Debug)]
pub struct Edit {
    pub station: St,
    pub table: &'static str,
    pub uuid: String,
    pub insert: bool,
    pub modified_on: String,
    pub sets: Vec<(&'static str, Value)>,
}

/// What both stations must hold for one row after the sync.
#[derive(Clone, Debug)]
pub struct Expect {
    pub table: &'static str,
    pub uuid: String,
    pub modified_on: String,
    pub values: Vec<(&'static str, Value)>,
    /// Which station's write is expected to win (for the messages).
    pub winner: St,
}

#[derive(Clone, Debug, Default)]
pub struct Workload {
    pub edits: Vec<Edit>,
    /// Rows both stations wrote.
    pub conflicts: BTreeSet<(String, String)>,
}

fn at(day_sec: u32) -> String {
    format!(
        "2026-06-01T{:02}:{:02}:{:02}.000Z",
        day_sec / 3600,
        day_sec / 60 % 60,
        day_sec % 60
    )
}

const FIRST: &[&str] = &[
    "Ana",
    "Jose",
    "Maria",
    "Joao",
    "Rosa",
    "Paulo",
    "Ines",
    "Tomas",
    "Lucia",
    "Mateus",
    "Filomena",
    "Agostinho",
];
const LAST: &[&str] = &[
    "Soares", "Belo", "Guterres", "Pereira", "Ximenes", "Amaral", "da Costa", "Freitas", "Lobato",
    "Martins",
];
const WORDS: &[&str] = &[
    "road",
    "bridge",
    "water",
    "clinic",
    "supplies",
    "convoy",
    "flooded",
    "open",
    "closed",
    "generator",
    "tents",
    "rice",
    "fuel",
    "north",
    "south",
    "village",
    "school",
    "shelter",
    "damaged",
    "repaired",
    "team",
    "arrived",
    "needs",
    "urgent",
];

fn sentence(rng: &mut ChaCha8Rng, n: usize) -> String {
    let mut s: Vec<&str> = (0..n)
        .map(|_| WORDS[rng.gen_range(0..WORDS.len())])
        .collect();
    s[0] = WORDS[rng.gen_range(0..WORDS.len())];
    format!("{} {}.", s.join(" "), rng.gen_range(1..1000))
}

/// uuids of `n` rows of `table` that are not deleted, from the `skip`-th on, by id.
fn pick(conn: &Connection, table: &str, skip: usize, n: usize) -> Vec<String> {
    let v: Vec<String> = conn
        .prepare(&format!(
            "SELECT uuid FROM \"{table}\" WHERE deleted = 0 ORDER BY id LIMIT ?1 OFFSET ?2"
        ))
        .unwrap()
        .query_map([n as i64, skip as i64], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(v.len(), n, "{table}: not enough live rows from {skip}");
    v
}

impl Workload {
    /// Inserts, 1-3 column updates and soft-deletes on both stations, plus six
    /// rows of hms_hospital written on both (later wins, a delete against a later
    /// update both ways, an equal time). `scale` multiplies the non-conflicting
    /// edits (0 leaves the fixed part). Bundle bytes pull + push, first round:
    /// scale 0 about 0.5 + 0.4 kB, 1: 1.1 + 1.3 kB, 3: 2 + 2.6 kB; the second
    /// round (the row alpha asks for in full) about 0.2 kB.
    pub fn new(base: &Connection, scale: usize, seed: u64) -> Workload {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut w = Workload::default();
        let mut t = 8 * 3600;
        let mut next = || {
            t += 7;
            at(t)
        };
        let s = scale;
        // Station A: new people, stock counts, moved locations, edited offices, two
        // posts withdrawn.
        for i in 0..6 * s {
            let first = FIRST[rng.gen_range(0..FIRST.len())];
            let last = LAST[rng.gen_range(0..LAST.len())];
            w.edits.push(Edit {
                station: St::A,
                table: "pr_person",
                uuid: format!("a-person-{seed}-{i}"),
                insert: true,
                modified_on: next(),
                sets: vec![
                    ("first_name", Value::Text(first.into())),
                    ("last_name", Value::Text(last.into())),
                    ("sex", Value::Text(["male", "female"][i % 2].into())),
                    (
                        "email",
                        Value::Text(format!(
                            "{}.{}{}@example.org",
                            first.to_lowercase(),
                            last.to_lowercase().replace(' ', ""),
                            rng.gen_range(1..100)
                        )),
                    ),
                    (
                        "mobile_phone",
                        Value::Text(format!(
                            "+670 7{:03}-{:04}",
                            rng.gen_range(0..1000),
                            rng.gen_range(0..10000)
                        )),
                    ),
                    ("organisation", Value::Text("Timor-Leste Red Cross".into())),
                ],
            });
        }
        for u in pick(base, "inv_inv_item", 0, 10 * s) {
            w.upd(
                St::A,
                "inv_inv_item",
                u,
                next(),
                vec![("quantity", Value::Integer(rng.gen_range(0..500)))],
            );
        }
        for u in pick(base, "gis_location", 0, 8 * s) {
            let lat = -8.5 - rng.gen_range(0..100_000) as f64 / 100_000.0;
            let lon = 125.5 + rng.gen_range(0..100_000) as f64 / 100_000.0;
            w.upd(
                St::A,
                "gis_location",
                u,
                next(),
                vec![("lat", Value::Real(lat)), ("lon", Value::Real(lon))],
            );
        }
        for u in pick(base, "org_office", 0, 4 * s) {
            let street = sentence(&mut rng, 2);
            let pc = format!("{:05}", rng.gen_range(0..100_000));
            w.upd(
                St::A,
                "org_office",
                u,
                next(),
                vec![
                    ("address", Value::Text(street)),
                    ("postcode", Value::Text(pc)),
                    ("type", Value::Text("Field Office".into())),
                ],
            );
        }
        for u in pick(base, "cms_post", 80, 2) {
            w.upd(
                St::A,
                "cms_post",
                u,
                next(),
                vec![("deleted", Value::Integer(1))],
            );
        }
        // Station B: news posts, indicator values, organisation links, phone
        // numbers, two stock items withdrawn.
        for i in 0..4 * s {
            let body = sentence(&mut rng, 8);
            w.edits.push(Edit {
                station: St::B,
                table: "cms_post",
                uuid: format!("b-post-{seed}-{i}"),
                insert: true,
                modified_on: next(),
                sets: vec![
                    ("series", Value::Text("News".into())),
                    ("body", Value::Text(body)),
                    ("country", Value::Text("TL".into())),
                ],
            });
        }
        for u in pick(base, "vulnerability_data", 0, 10 * s) {
            w.upd(
                St::B,
                "vulnerability_data",
                u,
                next(),
                vec![("value", Value::Integer(rng.gen_range(0..10_000)))],
            );
        }
        for u in pick(base, "org_organisation", 0, 5 * s) {
            let n = rng.gen_range(0..1000);
            w.upd(
                St::B,
                "org_organisation",
                u,
                next(),
                vec![
                    ("website", Value::Text(format!("https://example.org/{n}"))),
                    ("twitter", Value::Text(format!("org{n}"))),
                ],
            );
        }
        for u in pick(base, "pr_person", 40, 6) {
            w.upd(
                St::B,
                "pr_person",
                u,
                next(),
                vec![(
                    "mobile_phone",
                    Value::Text(format!(
                        "+670 7{:03}-{:04}",
                        rng.gen_range(0..1000),
                        rng.gen_range(0..10000)
                    )),
                )],
            );
        }
        for u in pick(base, "inv_inv_item", 80, 2) {
            w.upd(
                St::B,
                "inv_inv_item",
                u,
                next(),
                vec![("deleted", Value::Integer(1))],
            );
        }
        // Both stations write the same hospitals.
        let h = pick(base, "hms_hospital", 0, 6);
        let text = |s: &str| Value::Text(s.to_string());
        let both = [
            // B's later status wins.
            (
                (at(36_000), vec![("status", text("Closed (a)"))]),
                (at(39_600), vec![("status", text("Open (b)"))]),
            ),
            // A's later edit of two columns wins over B's earlier one.
            (
                (
                    at(43_200),
                    vec![
                        ("beds_total", Value::Integer(120)),
                        ("comments", text("extended by a")),
                    ],
                ),
                (at(41_400), vec![("beds_total", Value::Integer(80))]),
            ),
            // A deletes, B updates later: the delete does not apply.
            (
                (at(32_400), vec![("deleted", Value::Integer(1))]),
                (at(34_200), vec![("status", text("Reopened (b)"))]),
            ),
            // B deletes, A updates later: the delete does not apply.
            (
                (at(35_100), vec![("comments", text("still open (a)"))]),
                (at(33_300), vec![("deleted", Value::Integer(1))]),
            ),
            // The same time on both: the higher station UUID wins.
            (
                (at(46_800), vec![("status", text("tie (a)"))]),
                (at(46_800), vec![("status", text("tie (b)"))]),
            ),
            // A deletes after B's update: the delete applies.
            (
                (at(50_400), vec![("deleted", Value::Integer(1))]),
                (at(48_600), vec![("comments", text("moved (b)"))]),
            ),
        ];
        for (u, ((ta, sa), (tb, sb))) in h.into_iter().zip(both) {
            w.conflicts.insert(("hms_hospital".to_string(), u.clone()));
            w.upd(St::A, "hms_hospital", u.clone(), ta, sa);
            w.upd(St::B, "hms_hospital", u, tb, sb);
        }
        w
    }

    fn upd(
        &mut self,
        st: St,
        table: &'static str,
        uuid: String,
        t: String,
        sets: Vec<(&'static str, Value)>,
    ) {
        self.edits.push(Edit {
            station: st,
            table,
            uuid,
            insert: false,
            modified_on: t,
            sets,
        });
    }

    /// Runs one station's writes as its application would: plain SQL.
    pub fn apply(&self, db: &Path, st: St) {
        let mut conn = Connection::open(db).unwrap();
        let tx = conn.transaction().unwrap();
        for e in self.edits.iter().filter(|e| e.station == st) {
            let cols: Vec<&str> = e.sets.iter().map(|(c, _)| *c).collect();
            let mut vals: Vec<Value> = e.sets.iter().map(|(_, v)| v.clone()).collect();
            vals.push(Value::Text(e.modified_on.clone()));
            vals.push(Value::Text(e.uuid.clone()));
            let sql = if e.insert {
                format!(
                    "INSERT INTO \"{t}\" (id, {c}, modified_on, uuid, deleted) \
                     VALUES ((SELECT max(id) + 1 FROM \"{t}\"), {q}, ?, ?, 0)",
                    t = e.table,
                    c = cols.join(", "),
                    q = vec!["?"; cols.len()].join(", ")
                )
            } else {
                let set: Vec<String> = cols.iter().map(|c| format!("{c} = ?")).collect();
                format!(
                    "UPDATE \"{}\" SET {}, modified_on = ? WHERE uuid = ?",
                    e.table,
                    set.join(", ")
                )
            };
            let n = tx.execute(&sql, params_from_iter(vals)).unwrap();
            assert_eq!(n, 1, "{sql}");
        }
        tx.commit().unwrap();
    }

    /// The winner of every written row by the rules: newer `modified_on`, equal
    /// times to the higher writer UUID. `a_id`/`b_id` are the station UUIDs.
    pub fn expected(&self, a_id: &str, b_id: &str) -> Vec<Expect> {
        let mut by_row: BTreeMap<(String, String), Vec<&Edit>> = BTreeMap::new();
        for e in &self.edits {
            by_row
                .entry((e.table.to_string(), e.uuid.clone()))
                .or_default()
                .push(e);
        }
        let writer = |st: St| if st == St::A { a_id } else { b_id };
        by_row
            .into_values()
            .map(|es| {
                let win = es
                    .iter()
                    .max_by(|x, y| {
                        x.modified_on
                            .cmp(&y.modified_on)
                            .then_with(|| writer(x.station).cmp(writer(y.station)))
                    })
                    .unwrap();
                let mut values = win.sets.clone();
                if !values.iter().any(|(c, _)| *c == "deleted") {
                    values.push(("deleted", Value::Integer(0)));
                }
                Expect {
                    table: win.table,
                    uuid: win.uuid.clone(),
                    modified_on: win.modified_on.clone(),
                    values,
                    winner: win.station,
                }
            })
            .collect()
    }
}

// ---------------------------------------------------------------- stations

/// A scratch directory: in memory where the OS offers one (fsyncs of SQLite
/// commits on a slow disk would add seconds that are not the radio's).
/// chansim arguments: BER 1e-4 plus bursts of ~200 bits at BER 0.5 (the shape docs/arq.md
/// measured; long-run BER ~1.1e-3).
pub const NOISY_WITH_BURSTS: &[&str] = &[
    "--ber",
    "1e-4",
    "--burst-prob",
    "1e-5",
    "--burst-len",
    "200",
    "--burst-ber",
    "0.5",
];

/// chansim arguments matching a sim profile's channel, seeded, plus `extra`.
pub fn chansim_args(profile: &str, seed: u64, extra: &[&str]) -> Vec<String> {
    let base: &[&str] = match profile {
        "sim-kiss-1200" => &["--mode", "kiss", "--bitrate", "1200", "--txdelay-ms", "300"],
        "sim-transparent-9600" => &[
            "--mode",
            "transparent",
            "--bitrate",
            "9600",
            "--txdelay-ms",
            "100",
        ],
        other => panic!("no chansim channel for profile {other}"),
    };
    let mut v: Vec<String> = base.iter().map(|s| s.to_string()).collect();
    v.extend(["--seed".to_string(), seed.to_string()]);
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

pub fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(d) = tempfile::Builder::new().prefix("rs-radio-").tempdir_in(shm) {
            return d;
        }
    }
    tempfile::Builder::new()
        .prefix("rs-radio-")
        .tempdir()
        .unwrap()
}

pub struct Stations {
    pub a: PathBuf,
    pub b: PathBuf,
    pub a_id: String,
    pub b_id: String,
    pub workload: Workload,
    /// Copies of both databases after the edits, before any sync.
    pub a_before: PathBuf,
    pub b_before: PathBuf,
}

pub fn station_id(db: &Path) -> String {
    let out = radiosync_ok(&["status", "--db", &p(db), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["station"]["uuid"].as_str().unwrap().to_lowercase()
}

impl Stations {
    /// alpha from the sample data (`init`, `track --all`), bravo by `clone`, then
    /// the workload's writes on both.
    pub fn new(dir: &Path, scale: usize, seed: u64) -> Stations {
        Stations::with_callsigns(dir, scale, seed, None)
    }

    /// As `new`, with amateur callsigns for alpha and bravo.
    pub fn with_callsigns(
        dir: &Path,
        scale: usize,
        seed: u64,
        calls: Option<(&str, &str)>,
    ) -> Stations {
        std::fs::create_dir_all(dir).unwrap();
        let a = dir.join("alpha.sqlite");
        let b = dir.join("bravo.sqlite");
        Connection::open(&a)
            .unwrap()
            .execute_batch(SAMPLE_SQL)
            .unwrap();
        let (mut init, mut clone) = (
            vec!["init", "--db", a.to_str().unwrap(), "--name", "alpha"],
            vec![
                "clone",
                "--from",
                a.to_str().unwrap(),
                "--to",
                b.to_str().unwrap(),
                "--name",
                "bravo",
            ],
        );
        if let Some((ca, cb)) = calls {
            init.extend(["--callsign", ca]);
            clone.extend(["--callsign", cb]);
        }
        radiosync_ok(&init);
        radiosync_ok(&["track", "--db", &p(&a), "--all"]);
        radiosync_ok(&clone);
        let workload = Workload::new(&Connection::open(&a).unwrap(), scale, seed);
        workload.apply(&a, St::A);
        workload.apply(&b, St::B);
        let a_before = dir.join("alpha-before.sqlite");
        let b_before = dir.join("bravo-before.sqlite");
        radiosync::store::copy_station(&a, &a_before).unwrap();
        radiosync::store::copy_station(&b, &b_before).unwrap();
        Stations {
            a_id: station_id(&a),
            b_id: station_id(&b),
            a,
            b,
            workload,
            a_before,
            b_before,
        }
    }

    /// The same exchange over bundle files on copies of the pre-sync databases
    /// (same station UUIDs): pull then push, as the radio session orders them,
    /// until neither side has anything for the other.
    pub fn reference(&self, dir: &Path) -> Reference {
        std::fs::create_dir_all(dir).unwrap();
        let (a, b) = (dir.join("alpha.sqlite"), dir.join("bravo.sqlite"));
        radiosync::store::copy_station(&self.a_before, &a).unwrap();
        radiosync::store::copy_station(&self.b_before, &b).unwrap();
        let mut bundles = Vec::new();
        for round in 0..6 {
            for (from, peer, to, what) in [(&b, "alpha", &a, "pull"), (&a, "bravo", &b, "push")] {
                let f = dir.join(format!("{round}-{what}.bundle"));
                radiosync_ok(&["export", "--db", &p(from), "--peer", peer, "--out", &p(&f)]);
                radiosync_ok(&["import", "--db", &p(to), &p(&f)]);
                bundles.push(std::fs::metadata(&f).unwrap().len());
            }
            if pending_rows(&a) == 0 && pending_rows(&b) == 0 && wants(&a) == 0 && wants(&b) == 0 {
                return Reference {
                    tables: app_tables(&a),
                    log_a: log_totals(&a),
                    log_b: log_totals(&b),
                    bundles,
                };
            }
        }
        panic!("the file exchange did not converge in 6 rounds");
    }

    /// Rows a station would still send its peer (`status`: pending rows). After
    /// a complete sync there are none; a row the peer holds but is sent again
    /// shows here.
    pub fn pending_problems(&self) -> Vec<String> {
        let mut bad = Vec::new();
        for (name, db) in [("alpha", &self.a), ("bravo", &self.b)] {
            let pending = pending_rows(db);
            if pending != 0 {
                bad.push(format!("{name}: {pending} rows still pending for its peer"));
            }
        }
        bad
    }

    /// Everything that shows the two stations converged by the rules, to the
    /// same result as the file exchange `r`, with each losing version kept
    /// once, and no row is still asked for in full. The rows applied (rs_log) must
    /// match the file exchange's; with `exact_log` also no row may arrive that
    /// the station already held, and no more rows than by file may arrive: no
    /// row crossed twice. Without it (a process killed mid-transfer) only the
    /// applied rows must match.
    /// Returns the problems found (empty = converged).
    pub fn check_converged(&self, r: &Reference, exact_log: bool) -> Vec<String> {
        let mut bad = diff_app_tables(&self.a, &self.b);
        if bad.is_empty() && app_tables(&self.a) != r.tables {
            bad.push("both stations agree but differ from the file exchange's result".into());
        }
        for (name, db, want) in [("alpha", &self.a, &r.log_a), ("bravo", &self.b, &r.log_b)] {
            bad.extend(
                check_expected(db, &self.workload.expected(&self.a_id, &self.b_id))
                    .into_iter()
                    .map(|e| format!("{name}: {e}")),
            );
            let w = wants(db);
            if w != 0 {
                bad.push(format!("{name}: {w} rows still asked for in full"));
            }
            let got = log_totals(db);
            // The file exchange sends a row alpha already holds when alpha asked
            // for another in full (its claimed vector is capped meanwhile); the
            // radio session may do better, never worse.
            let same = if exact_log {
                got.applied == want.applied && got.already_held == 0 && got.rows_in <= want.rows_in
            } else {
                got.applied == want.applied
            };
            if !same {
                bad.push(format!(
                    "{name}: imports {got:?}, the file exchange's {want:?}"
                ));
            }
        }
        // Each losing version is kept for review, once per station.
        let mut rows = BTreeSet::new();
        for (name, db) in [("alpha", &self.a), ("bravo", &self.b)] {
            let mut seen = BTreeSet::new();
            for c in conflict_rows(db) {
                rows.insert((c.0.clone(), c.1.clone()));
                if !seen.insert(c.clone()) {
                    bad.push(format!("{name}: losing version {c:?} kept twice"));
                }
            }
        }
        if rows != self.workload.conflicts {
            bad.push(format!(
                "conflicts kept for rows {rows:?}, expected {:?}",
                self.workload.conflicts
            ));
        }
        bad
    }
}

/// What the file exchange gave.
#[derive(Debug)]
pub struct Reference {
    pub tables: BTreeMap<String, BTreeMap<String, BTreeMap<String, Value>>>,
    pub log_a: LogTotals,
    pub log_b: LogTotals,
    /// Sizes of the bundle files, in exchange order.
    pub bundles: Vec<u64>,
}

// ---------------------------------------------------------------- checks

/// Application tables (everything but rs_* and sqlite_*), as
/// table -> uuid -> column -> value, without the site-local `id`.
pub fn app_tables(db: &Path) -> BTreeMap<String, BTreeMap<String, BTreeMap<String, Value>>> {
    let conn = Connection::open(db).unwrap();
    let names: Vec<String> = conn
        .prepare(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'rs\\_%' ESCAPE '\\' \
             AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    let mut out = BTreeMap::new();
    for t in names {
        let mut stmt = conn.prepare(&format!("SELECT * FROM \"{t}\"")).unwrap();
        let cols: Vec<String> = stmt.column_names().map(|s| s.to_string()).collect();
        let uuid_at = cols.iter().position(|c| c == "uuid").expect("uuid column");
        let mut rows = stmt.query([]).unwrap();
        let mut table = BTreeMap::new();
        while let Some(r) = rows.next().unwrap() {
            let mut row = BTreeMap::new();
            for (i, c) in cols.iter().enumerate() {
                if c != "id" {
                    row.insert(c.clone(), r.get::<_, Value>(i).unwrap());
                }
            }
            let uuid: String = r.get(uuid_at).unwrap();
            table.insert(uuid, row);
        }
        out.insert(t, table);
    }
    out
}

/// Row-by-row differences of the application tables (at most 20 listed).
pub fn diff_app_tables(a: &Path, b: &Path) -> Vec<String> {
    let (ta, tb) = (app_tables(a), app_tables(b));
    let mut bad = Vec::new();
    let names: BTreeSet<&String> = ta.keys().chain(tb.keys()).collect();
    for t in names {
        let empty = BTreeMap::new();
        let (ra, rb) = (ta.get(t).unwrap_or(&empty), tb.get(t).unwrap_or(&empty));
        let uuids: BTreeSet<&String> = ra.keys().chain(rb.keys()).collect();
        for u in uuids {
            match (ra.get(u), rb.get(u)) {
                (Some(x), Some(y)) if x == y => {}
                (Some(x), Some(y)) => {
                    let cols: Vec<String> = x
                        .iter()
                        .filter(|(c, v)| y.get(*c) != Some(v))
                        .map(|(c, v)| format!("{c}: {v:?} vs {:?}", y.get(c)))
                        .collect();
                    bad.push(format!("{t}/{u} differs: {}", cols.join("; ")));
                }
                (Some(_), None) => bad.push(format!("{t}/{u} only in {}", a.display())),
                (None, _) => bad.push(format!("{t}/{u} only in {}", b.display())),
            }
        }
    }
    if bad.len() > 20 {
        let n = bad.len();
        bad.truncate(20);
        bad.push(format!("... {} more differences", n - 20));
    }
    bad
}

/// The winning values of every written row are there.
pub fn check_expected(db: &Path, expected: &[Expect]) -> Vec<String> {
    let tables = app_tables(db);
    let mut bad = Vec::new();
    for x in expected {
        let Some(row) = tables.get(x.table).and_then(|t| t.get(&x.uuid)) else {
            bad.push(format!("{}/{} missing", x.table, x.uuid));
            continue;
        };
        let mo = row.get("modified_on");
        if mo != Some(&Value::Text(x.modified_on.clone())) {
            bad.push(format!(
                "{}/{}: modified_on {mo:?}, expected {} ({:?}'s write)",
                x.table, x.uuid, x.modified_on, x.winner
            ));
        }
        for (c, v) in &x.values {
            if row.get(*c) != Some(v) {
                bad.push(format!(
                    "{}/{}: {c} = {:?}, expected {v:?} ({:?}'s write)",
                    x.table,
                    x.uuid,
                    row.get(*c),
                    x.winner
                ));
            }
        }
    }
    bad
}

/// Rows the station asked a peer for in full and has not received.
pub fn wants(db: &Path) -> u64 {
    let conn = Connection::open(db).unwrap();
    conn.query_row("SELECT count(*) FROM rs_want", [], |r| r.get::<_, i64>(0))
        .unwrap() as u64
}

/// The bundle a station is receiving and keeps for resume (`rs_transfer` row
/// `in`): (bytes stored, total). Read-only, so a running process is not
/// disturbed; None while there is none or the file cannot be read (busy, or a
/// hot journal a killed process left).
pub fn partial_in(db: &Path) -> Option<(u64, u64)> {
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY).ok()?;
    conn.busy_timeout(Duration::from_millis(500)).ok()?;
    conn.query_row(
        "SELECT (SELECT coalesce(sum(length(c.bytes)), 0) FROM rs_transfer_chunk c \
                 WHERE c.peer = t.peer), t.total FROM rs_transfer t WHERE t.dir = 'in'",
        [],
        |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
    )
    .ok()
}

/// Waits up to `limit` until the station at `db` has stored part, not all, of
/// a bundle it is receiving; returns (stored, total). A kill right after this
/// leaves a partial to resume whatever the machine's speed: the rest of the
/// bundle takes at least one more chunk's airtime.
pub fn wait_partial(db: &Path, limit: Duration) -> Option<(u64, u64)> {
    let mut seen = None;
    wait_until(limit, || {
        seen = partial_in(db).filter(|&(stored, total)| stored > 0 && stored < total);
        seen.is_some()
    });
    seen
}

/// Rows the station still has for its peers (`status --json`).
pub fn pending_rows(db: &Path) -> u64 {
    let out = radiosync_ok(&["status", "--db", &p(db), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pending_rows"].as_u64().unwrap())
        .sum()
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct LogTotals {
    /// Committed bundles (imports that brought at least a summary line).
    pub imports: u64,
    pub rows_in: u64,
    pub applied: u64,
    pub already_held: u64,
}

/// Sums of the import summary lines of rs_log.
pub fn log_totals(db: &Path) -> LogTotals {
    let conn = Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare("SELECT rows_in, message FROM rs_log WHERE direction = 'in' AND tbl IS NULL AND result = 'ok'")
        .unwrap();
    let mut rows = stmt.query([]).unwrap();
    let mut t = LogTotals::default();
    while let Some(r) = rows.next().unwrap() {
        let n: i64 = r.get(0).unwrap();
        let msg: String = r.get(1).unwrap();
        t.imports += 1;
        t.rows_in += n as u64;
        t.applied += number_before(&msg, " applied");
        t.already_held += number_before(&msg, " already held");
    }
    t
}

/// The integer just before `what` in `msg` ("delta: 3 applied, 0 already held").
fn number_before(msg: &str, what: &str) -> u64 {
    let i = msg
        .find(what)
        .unwrap_or_else(|| panic!("no {what:?} in log line {msg:?}"));
    let digits: String = msg[..i]
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_digit())
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    digits.parse().unwrap()
}

/// (table, uuid, loser's modified_on) of every kept losing version.
pub fn conflict_rows(db: &Path) -> Vec<(String, String, String)> {
    let conn = Connection::open(db).unwrap();
    let v = conn
        .prepare("SELECT tbl, uuid, loser_modified_on FROM rs_conflict")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    v
}

// ---------------------------------------------------------------- the channel

pub struct Chansim {
    pub proc: Proc,
    pub link_a: PathBuf,
    pub link_b: PathBuf,
    pub stats: PathBuf,
}

impl Chansim {
    pub fn start(dir: &Path, args: &[&str]) -> Chansim {
        let link_a = dir.join("ttyA");
        let link_b = dir.join("ttyB");
        let stats = dir.join("chansim-stats.json");
        let mut all = vec![
            "--link-a".to_string(),
            p(&link_a),
            "--link-b".to_string(),
            p(&link_b),
            "--stats".to_string(),
            p(&stats),
            "--stats-interval-ms".to_string(),
            "100".to_string(),
        ];
        all.extend(args.iter().map(|s| s.to_string()));
        let mut proc = Proc::spawn("chansim", chansim_bin(), &all, dir.join("chansim.log"));
        let deadline = Instant::now() + Duration::from_secs(15);
        while !(link_a.exists() && link_b.exists() && stats.exists()) {
            if let Some(s) = proc.try_status() {
                panic!("chansim exited ({s}):\n{}", proc.output());
            }
            assert!(
                Instant::now() < deadline,
                "chansim did not create its links"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Chansim {
            proc,
            link_a,
            link_b,
            stats,
        }
    }

    pub fn stats(&self) -> serde_json::Value {
        // Rewritten atomically by chansim, so a read sees a whole file.
        std::fs::read(&self.stats)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(serde_json::Value::Null)
    }

    /// Bytes delivered so far in one direction ("a_to_b" or "b_to_a"), as of
    /// the last stats write (every 100 ms).
    pub fn delivered(&self, dir: &str) -> u64 {
        self.count(dir, "bytes_delivered")
    }

    /// A counter of the stats file: `count("a_to_b", "frames_lost_random")`.
    pub fn count(&self, group: &str, key: &str) -> u64 {
        self.stats()[group][key].as_u64().unwrap_or(0)
    }

    /// SIGUSR1: the link goes down, or comes back.
    pub fn toggle_link(&self) {
        self.proc.signal("USR1");
    }

    /// A one-line summary of the channel for test output.
    pub fn summary(&self) -> String {
        let s = self.stats();
        let d = |k: &str| {
            let x = &s[k];
            format!(
                "{k}: airtime {:.1} s, {} transmissions, {} B sent, {} B delivered, {} bits flipped, frames {}/{} delivered, collisions {}",
                x["airtime_s"].as_f64().unwrap_or(0.0),
                x["transmissions"],
                x["bytes_sent"],
                x["bytes_delivered"],
                x["bits_flipped"],
                x["frames_delivered"],
                x["frames_sent"],
                x["collisions"]
            )
        };
        format!(
            "chansim after {:.1} s (link {}):\n  {}\n  {}\n  host_a {} host_b {}",
            s["elapsed_s"].as_f64().unwrap_or(0.0),
            if s["link_up"] == serde_json::Value::Bool(false) {
                "down"
            } else {
                "up"
            },
            d("a_to_b"),
            d("b_to_a"),
            s["host_a"],
            s["host_b"]
        )
    }
}

// ---------------------------------------------------------------- the rig

/// Two stations, a channel, bravo's daemon and alpha's syncs. Dropping it kills
/// every process; if the test is failing it prints the channel's statistics and
/// the logs first.
pub struct Rig {
    pub dir: tempfile::TempDir,
    pub st: Stations,
    /// The same workload exchanged as files: what the radio must give.
    pub reference: Reference,
    pub profile: String,
    /// None on real hardware.
    pub chansim: Option<Chansim>,
    pub port_a: PathBuf,
    pub port_b: PathBuf,
    pub daemon: Option<Proc>,
    /// Finished or killed processes, kept for their logs.
    pub done: Vec<Proc>,
    runs: usize,
}

pub struct SyncHandle {
    i: usize,
    started: Instant,
    timeout_s: u64,
}

pub struct SyncRun {
    pub status: Option<ExitStatus>,
    pub output: String,
    pub elapsed: Duration,
}

impl SyncRun {
    pub fn ok(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// Panics with the sync's output unless it exited 0.
    pub fn assert_ok(&self, what: &str) {
        assert!(
            self.ok(),
            "{what}: sync ended with {:?} after {:.1} s:\n{}",
            self.status,
            self.elapsed.as_secs_f64(),
            self.output
        );
    }
}

/// Polls `cond` every 20 ms for up to `limit`; false if it never held.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Rig {
    /// Stations at `scale`, chansim with `chan` arguments; bravo's daemon is not
    /// started yet (see `start_daemon`).
    /// As `new`, on chansim's channel for the profile (its mode, bitrate and TXDELAY),
    /// seeded, plus `extra` chansim arguments.
    pub fn on_channel(profile: &str, scale: usize, seed: u64, extra: &[&str]) -> Rig {
        let args = chansim_args(profile, seed, extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Rig::new(profile, scale, seed, &args)
    }

    pub fn new(profile: &str, scale: usize, seed: u64, chan: &[&str]) -> Rig {
        let dir = scratch();
        let st = Stations::new(dir.path(), scale, seed);
        let reference = st.reference(&dir.path().join("reference"));
        let chansim = Chansim::start(dir.path(), chan);
        let (port_a, port_b) = (chansim.link_a.clone(), chansim.link_b.clone());
        Rig {
            dir,
            st,
            reference,
            profile: profile.to_string(),
            chansim: Some(chansim),
            port_a,
            port_b,
            daemon: None,
            done: Vec::new(),
            runs: 0,
        }
    }

    /// Two real ports joined by real radios (the hardware tier): no simulator.
    pub fn on_ports(
        profile: &str,
        scale: usize,
        seed: u64,
        port_a: &Path,
        port_b: &Path,
        calls: Option<(&str, &str)>,
    ) -> Rig {
        let dir = scratch();
        let st = Stations::with_callsigns(dir.path(), scale, seed, calls);
        let reference = st.reference(&dir.path().join("reference"));
        Rig {
            dir,
            st,
            reference,
            profile: profile.to_string(),
            chansim: None,
            port_a: port_a.to_path_buf(),
            port_b: port_b.to_path_buf(),
            daemon: None,
            done: Vec::new(),
            runs: 0,
        }
    }

    /// The channel (panics on the hardware tier).
    pub fn chan(&self) -> &Chansim {
        self.chansim.as_ref().expect("a simulated channel")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `radiosync run` for bravo on link B, with extra arguments (`--capture F`).
    pub fn start_daemon(&mut self, extra: &[&str]) {
        if let Some(old) = self.daemon.take() {
            self.done.push(old);
        }
        self.runs += 1;
        let mut args: Vec<String> = [
            "run",
            "--db",
            &p(&self.st.b),
            "--profile",
            &self.profile,
            "--port",
            &p(&self.port_b),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let log = self.path(&format!("run-{}.log", self.runs));
        self.daemon = Some(Proc::spawn(
            &format!("run #{}", self.runs),
            radiosync_bin(),
            &args,
            log,
        ));
    }

    /// SIGKILL bravo's daemon.
    pub fn kill_daemon(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            d.kill_hard();
            self.done.push(d);
        }
    }

    /// Starts `radiosync sync` for alpha with `--peer bravo` and `--timeout`.
    pub fn spawn_sync(&mut self, timeout_s: u64, extra: &[&str]) -> SyncHandle {
        self.runs += 1;
        let mut args: Vec<String> = [
            "sync",
            "--db",
            &p(&self.st.a),
            "--profile",
            &self.profile,
            "--port",
            &p(&self.port_a),
            "--peer",
            "bravo",
            "--timeout",
            &format!("{timeout_s}s"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let log = self.path(&format!("sync-{}.log", self.runs));
        let name = format!("sync #{}", self.runs);
        self.done
            .push(Proc::spawn(&name, radiosync_bin(), &args, log));
        SyncHandle {
            i: self.done.len() - 1,
            started: Instant::now(),
            timeout_s,
        }
    }

    pub fn sync_running(&mut self, h: &SyncHandle) -> bool {
        self.done[h.i].try_status().is_none()
    }

    /// SIGKILL a running sync.
    pub fn kill_sync(&mut self, h: &SyncHandle) {
        self.done[h.i].kill_hard();
    }

    /// Waits for a sync to end; kills it if it outlives its own `--timeout` by
    /// more than 30 s.
    pub fn wait_sync(&mut self, h: &SyncHandle) -> SyncRun {
        let limit = Duration::from_secs(h.timeout_s + 30).saturating_sub(h.started.elapsed());
        let proc = &mut self.done[h.i];
        let status = proc.wait_for(limit);
        if status.is_none() {
            proc.kill_hard();
        }
        SyncRun {
            status,
            output: proc.output(),
            elapsed: h.started.elapsed(),
        }
    }

    /// One `radiosync sync` to its end.
    pub fn sync(&mut self, timeout_s: u64, extra: &[&str]) -> SyncRun {
        let h = self.spawn_sync(timeout_s, extra);
        self.wait_sync(&h)
    }

    /// Panics with the stations' differences unless they converged (see
    /// `Stations::check_converged`).
    pub fn assert_converged(&self, exact_log: bool) {
        let bad = self.st.check_converged(&self.reference, exact_log);
        assert!(
            bad.is_empty(),
            "stations did not converge:\n  {}",
            bad.join("\n  ")
        );
    }

    /// Panics unless neither station has rows left for the other.
    pub fn assert_nothing_pending(&self) {
        let bad = self.st.pending_problems();
        assert!(bad.is_empty(), "rows left to send:\n  {}", bad.join("\n  "));
    }

    /// Processes' logs and the channel's statistics.
    pub fn report(&self) -> String {
        let mut s = self
            .chansim
            .as_ref()
            .map(Chansim::summary)
            .unwrap_or_default();
        for p in self.done.iter().chain(self.daemon.iter()) {
            let out = p.output();
            let lines: Vec<&str> = out.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            s.push_str(&format!(
                "\n--- {} ({}):\n{}",
                p.name,
                p.log.display(),
                tail.join("\n")
            ));
        }
        s
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.report());
        }
        if let Some(mut d) = self.daemon.take() {
            d.kill_hard();
        }
        for p in &mut self.done {
            p.kill_hard();
        }
        // chansim removes its links on SIGTERM; a kill would leave them (in the
        // temp dir, which goes anyway).
        if let Some(c) = &mut self.chansim {
            if c.proc.try_status().is_none() {
                c.proc.try_signal("TERM");
            }
            if c.proc.wait_for(Duration::from_secs(5)).is_none() {
                c.proc.kill_hard();
            }
        }
    }
}

// ---------------------------------------------------------------- captures

/// `capture show`'s frame lines as (sent by the capturing station, line).
pub fn capture_lines(cap: &Path) -> Vec<(bool, String)> {
    let shown = radiosync_ok(&["capture", "show", &p(cap)]);
    let mut out = Vec::new();
    let mut sent = None;
    for line in shown.lines() {
        if let Some(rest) = line.strip_prefix('#') {
            // "#12       300 ms sent   120 B  ..."
            let mut words = rest.split_whitespace();
            sent = match words.nth(3) {
                Some("sent") => Some(true),
                Some("recv") => Some(false),
                _ => None,
            };
        } else if !line.starts_with(' ') {
            sent = None;
        }
        if let Some(s) = sent {
            out.push((s, line.to_string()));
        }
    }
    out
}

/// What a capture shows of one resumed bundle transfer.
#[derive(Debug)]
pub struct Resumed {
    pub id: String,
    /// Bytes the receiver said it had stored (its Hello's resume part).
    pub stored: u64,
    /// Where the sender's BundleStart for that bundle began.
    pub start: u64,
    /// Offsets of the chunks of that bundle that followed.
    pub chunks: Vec<u64>,
}

fn number_after(line: &str, what: &str) -> Option<u64> {
    let i = line.find(what)? + what.len();
    let digits: String = line[i..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

fn word_after<'l>(line: &'l str, what: &str) -> Option<&'l str> {
    let i = line.find(what)? + what.len();
    line[i..].split([' ', ',']).next()
}

/// The first resume offer in a Hello from the receiving side (`receiver_sent`:
/// whether the capturing station is that receiver) and what the sender did
/// with it. None when no Hello offered to resume.
pub fn resumed_transfer(cap: &Path, receiver_sent: bool) -> Option<Resumed> {
    let lines = capture_lines(cap);
    let (id, stored) = lines.iter().find_map(|(s, l)| {
        (*s == receiver_sent && l.contains("Hello v")).then_some(())?;
        Some((
            word_after(l, ", resume ")?.to_string(),
            number_after(l, &format!("resume {} at ", word_after(l, ", resume ")?))?,
        ))
    })?;
    let mut r = Resumed {
        id: id.clone(),
        stored,
        start: u64::MAX,
        chunks: Vec::new(),
    };
    let mut inside = false;
    for (s, l) in &lines {
        if *s == receiver_sent {
            continue;
        }
        if l.contains("BundleStart id ") {
            inside = word_after(l, "BundleStart id ") == Some(id.as_str());
            if inside && r.start == u64::MAX {
                r.start = number_after(l, " offset ").unwrap();
            }
        } else if inside && l.contains("Chunk offset ") {
            r.chunks.push(number_after(l, "Chunk offset ").unwrap());
        }
    }
    Some(r)
}
