//! Test scaffolding shared by the unit tests, the integration tests and the benchmarks
//! (feature `testkit`, which the crate's dev-dependency on itself turns on): stations from
//! the embedded sample data, application edits made with plain SQL as an application
//! makes them, and syncs between two stations on the simulated channel in virtual time.
//! Everything panics on failure: it is for tests.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rusqlite::{params, Connection};

use crate::capture::{CaptureHeader, LinkFraming, Record, Writer};
use crate::daemon::{Outcome, Station};
use crate::profile::{Framing, Profile};
use crate::sim::pair::{channel_config, RunEnd, SimLink, SimPair};
use crate::sim::Side;
use crate::store::{sample, Store, SyncedRow};

/// Station `a.sqlite` from the sample data (every table tracked, `id` site-local, with a
/// trained dictionary when `dictionary`), and `b.sqlite` cloned from it.
pub fn cloned_pair(dir: &Path, dictionary: bool) -> (PathBuf, PathBuf) {
    let a = dir.join("a.sqlite");
    let b = dir.join("b.sqlite");
    sample::write_sample(&a).unwrap();
    let mut s = Store::init(&a, Some("A"), None).unwrap();
    s.track(&[], &["id".to_string()]).unwrap();
    if dictionary {
        s.retrain_dictionary().unwrap();
    }
    drop(s);
    Store::clone_station(&a, &b, "B", None).unwrap();
    (a, b)
}

/// Two stations set up apart, as a new user would: the same sample data copied
/// to `a.sqlite` and `b.sqlite` before radiosync, then `init` (fixed ids), `track --all`
/// (`id` site-local) and `peer add` on each. No dictionary.
pub fn separate_pair(dir: &Path) -> (PathBuf, PathBuf) {
    let a = dir.join("a.sqlite");
    let b = dir.join("b.sqlite");
    sample::write_sample(&a).unwrap();
    crate::store::copy_station(&a, &b).unwrap();
    let mut ids = Vec::new();
    // Fixed ids: the tests run the same way every time (A's id is the lower).
    for (path, name, id) in [(&a, "A", [0xa1; 16]), (&b, "B", [0xb2; 16])] {
        let mut s = Store::init_as(path, crate::delta::StationId(id), Some(name), None).unwrap();
        s.track(&[], &["id".to_string()]).unwrap();
        ids.push(s.station().id);
    }
    // Registered from each other's cards, as the operator guide does.
    let card_a = Store::open(&a).unwrap().card().unwrap();
    let card_b = Store::open(&b).unwrap().card().unwrap();
    Store::open(&a)
        .unwrap()
        .add_peer_card(&card_b, Some("B"))
        .unwrap();
    Store::open(&b)
        .unwrap()
        .add_peer_card(&card_a, Some("A"))
        .unwrap();
    let _ = ids;
    (a, b)
}

/// The application changes `updates` random pr_person rows (job title and
/// `modified_on`, a day chosen by `seed`).
pub fn update_people(path: &Path, seed: u64, updates: usize) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let conn = Connection::open(path).unwrap();
    let uuids: Vec<String> = conn
        .prepare("SELECT uuid FROM pr_person ORDER BY uuid")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for i in 0..updates {
        let u = &uuids[rng.gen_range(0..uuids.len())];
        conn.execute(
            "UPDATE pr_person SET job_title = ?1, modified_on = ?2 WHERE uuid = ?3",
            params![
                format!("seen at post {seed}-{i}"),
                format!("2025-03-0{}T10:{:02}:00.000Z", 1 + seed % 8, i % 60),
                u
            ],
        )
        .unwrap();
    }
}

/// The application adds `inserts` cms_post rows with `text_len` random letters each
/// (uuids and ids unique per `seed`).
pub fn insert_posts(path: &Path, seed: u64, inserts: usize, text_len: usize) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x9057);
    let conn = Connection::open(path).unwrap();
    let max_id: i64 = conn
        .query_row("SELECT max(id) FROM cms_post", [], |r| r.get(0))
        .unwrap();
    for i in 0..inserts {
        let body: String = (0..text_len)
            .map(|_| char::from(b'a' + rng.gen_range(0..26u8)))
            .collect();
        conn.execute(
            "INSERT INTO cms_post (id, uuid, modified_on, deleted, series, body) \
             VALUES (?1, ?2, ?3, 0, 'Report', ?4)",
            params![
                max_id + 1 + i as i64 + seed as i64 * 1000,
                format!("{seed:04}-{i:08}-0000-0000-000000000000"),
                "2025-03-01T12:00:00.000Z",
                body
            ],
        )
        .unwrap();
    }
}

/// Both kinds of edit at once.
pub fn edit(path: &Path, seed: u64, updates: usize, inserts: usize, text_len: usize) {
    update_people(path, seed, updates);
    insert_posts(path, seed, inserts, text_len);
}

/// Issue 6's mix of edits at one site, the same for a seed: `updates` pr_person rows
/// changed in 1 to 3 columns, `deletes` org_office rows soft-deleted, and `inserts`
/// cms_post rows (`insert_posts`, 60 letters each).
pub fn mixed_edits(path: &Path, seed: u64, updates: usize, inserts: usize, deletes: usize) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x3d1f);
    let conn = Connection::open(path).unwrap();
    let uuids = |table: &str| -> Vec<String> {
        conn.prepare(&format!("SELECT uuid FROM {table} ORDER BY uuid"))
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let day = 1 + seed % 8;
    let people = uuids("pr_person");
    for i in 0..updates {
        let u = &people[rng.gen_range(0..people.len())];
        let mut columns = vec![
            ("job_title", format!("seen at post {seed}-{i}")),
            (
                "mobile_phone",
                format!(
                    "+(670) {:04}-{:04}",
                    rng.gen_range(0..10000),
                    rng.gen_range(0..10000)
                ),
            ),
            ("home_address", format!("Shelter {}", rng.gen_range(1..400))),
            ("email", format!("field.{seed}.{i}@example.org")),
        ];
        let keep = rng.gen_range(1..=3);
        while columns.len() > keep {
            columns.remove(rng.gen_range(0..columns.len()));
        }
        let sets: Vec<String> = columns
            .iter()
            .enumerate()
            .map(|(k, (c, _))| format!("{c} = ?{}", k + 3))
            .collect();
        let mut args: Vec<String> = vec![
            u.clone(),
            format!("2025-03-0{day}T10:{:02}:{:02}.000Z", (i / 60) % 60, i % 60),
        ];
        args.extend(columns.into_iter().map(|(_, v)| v));
        conn.execute(
            &format!(
                "UPDATE pr_person SET modified_on = ?2, {} WHERE uuid = ?1",
                sets.join(", ")
            ),
            rusqlite::params_from_iter(args),
        )
        .unwrap();
    }
    let offices = uuids("org_office");
    for i in 0..deletes {
        let u = &offices[rng.gen_range(0..offices.len())];
        conn.execute(
            "UPDATE org_office SET deleted = 1, modified_on = ?1 WHERE uuid = ?2",
            params![format!("2025-03-0{day}T11:00:{:02}.000Z", i % 60), u],
        )
        .unwrap();
    }
    drop(conn);
    insert_posts(path, seed, inserts, 60);
}

/// The synced content of every tracked table, comparable between stations.
pub fn snapshot(path: &Path) -> Vec<SyncedRow> {
    Store::open(path).unwrap().synced_rows().unwrap()
}

/// A station on the database at `path`; `accept`: it answers calls.
pub fn station(path: &Path, profile: &Profile, accept: bool) -> Station {
    Station::new(Store::open(path).unwrap(), profile.clone(), accept).unwrap()
}

/// A (calling) and B (answering) on the simulated channel of `profile`, with bit error
/// rate `ber` and whole-frame loss `loss`, seeded.
pub fn sim_pair(profile: &Profile, a: &Path, b: &Path, ber: f64, loss: f64, seed: u64) -> SimPair {
    let link = SimLink::new(channel_config(profile, ber, None, loss, seed)).unwrap();
    SimPair::new(link, station(a, profile, false), station(b, profile, true))
}

/// A capture being written by a station's recorder.
pub type SharedCapture = Arc<Mutex<Writer<Vec<u8>>>>;

/// A station whose frames go into an in-memory capture, as `--capture` does; capture
/// times count from `epoch`.
pub fn capturing_station(
    path: &Path,
    profile: &Profile,
    profile_text: &str,
    accept: bool,
    epoch: Instant,
) -> (Station, SharedCapture) {
    let store = Store::open(path).unwrap();
    let header = CaptureHeader {
        start_unix_ms: 1_700_000_000_000,
        station: store.station().id,
        framing: match profile.framing {
            Framing::Kiss => LinkFraming::Kiss,
            Framing::Transparent => LinkFraming::Transparent,
        },
        profile_name: profile.name.clone(),
        profile_text: profile_text.to_string(),
    };
    let w = Arc::new(Mutex::new(Writer::new(Vec::new(), &header).unwrap()));
    let mut st = Station::new(store, profile.clone(), accept).unwrap();
    let w2 = w.clone();
    st.set_recorder(Box::new(move |now: Instant, kind, bytes: &[u8]| {
        let at_ms = now.saturating_duration_since(epoch).as_millis() as u64;
        let rec = Record {
            at_ms,
            kind,
            bytes: bytes.to_vec(),
        };
        w2.lock().unwrap().write(&rec).unwrap();
    }));
    (st, w)
}

/// Runs until A's session has an outcome and neither side has a session running;
/// returns both sides' outcomes.
pub fn run_sync(pair: &mut SimPair, limit: Duration) -> (Vec<Outcome>, Vec<Outcome>) {
    let mut outs: [Vec<Outcome>; 2] = [Vec::new(), Vec::new()];
    let end = pair.run_until(limit, |p| {
        for (i, side) in [Side::A, Side::B].into_iter().enumerate() {
            if let Some(s) = p.station(side) {
                while let Some(o) = s.poll_outcome() {
                    outs[i].push(o);
                }
            }
        }
        let idle = |s: Option<&mut Station>| s.is_none_or(|s| !s.has_sessions());
        !outs[0].is_empty() && idle(p.station(Side::A)) && idle(p.station(Side::B))
    });
    assert_eq!(end, RunEnd::Done, "A: {:?} B: {:?}", outs[0], outs[1]);
    let [a, b] = outs;
    (a, b)
}

/// Both databases hold the same synced content and nothing is left in flight.
pub fn assert_converged(a: &Path, b: &Path) {
    let (sa, sb) = (Store::open(a).unwrap(), Store::open(b).unwrap());
    let (x, y) = (sa.synced_rows().unwrap(), sb.synced_rows().unwrap());
    assert_eq!(x.len(), y.len());
    assert!(x == y, "stations differ");
    for (s, other) in [(&sa, &sb), (&sb, &sa)] {
        let st = s.transfer_state(&other.station().id).unwrap();
        assert_eq!(
            (st.outgoing, st.incoming),
            (None, None),
            "nothing in flight"
        );
    }
}

/// A fixed station id from a short name: addresses and random draws repeat.
pub fn id_of(name: &str) -> crate::delta::StationId {
    let mut id = [0x5a; 16];
    id[..name.len()].copy_from_slice(name.as_bytes());
    crate::delta::StationId(id)
}

/// A hub `H` (the sample data, every table tracked) and field stations cloned
/// from it, each registered with the hub only; then the hub changes `people`
/// people and adds `posts` posts of about `text_len` bytes: news every field
/// station lacks.
pub fn hub_with_news(
    dir: &Path,
    fields: &[&str],
    people: usize,
    posts: usize,
    text_len: usize,
) -> (PathBuf, Vec<PathBuf>) {
    let (hub, paths) = hub_and_fields(dir, fields);
    update_people(&hub, 77, people);
    insert_posts(&hub, 78, posts, text_len);
    (hub, paths)
}

/// A hub `H` (the sample data, every table tracked, `id` site-local) and field
/// stations cloned from it with fixed ids (`id_of`), each registered with the
/// hub only.
pub fn hub_and_fields(dir: &Path, fields: &[&str]) -> (PathBuf, Vec<PathBuf>) {
    let hub = dir.join("H.sqlite");
    sample::write_sample(&hub).unwrap();
    let mut s = Store::init_as(&hub, id_of("H"), Some("H"), None).unwrap();
    s.track(&[], &["id".to_string()]).unwrap();
    drop(s);
    let paths: Vec<PathBuf> = fields
        .iter()
        .map(|name| {
            let p = dir.join(format!("{name}.sqlite"));
            Store::clone_station_as(&hub, &p, id_of(name), name, None).unwrap();
            p
        })
        .collect();
    (hub, paths)
}

/// How a hub brought its field stations up to date (`hub_brings_up_to_date`).
#[derive(Debug, Clone)]
pub struct NetRun {
    /// Virtual time from start to the last outcome.
    pub elapsed: Duration,
    /// Time on air of every station together, key-ups included.
    pub airtime: Duration,
    /// Of that, the hub's.
    pub hub_airtime: Duration,
    /// Transmissions lost to collisions.
    pub collisions: u64,
    /// The hub's sessions, in order.
    pub outcomes: Vec<Outcome>,
    /// Field stations that applied the whole broadcast from the air.
    pub heard_whole: usize,
}

/// The hub (`stations[0]`) brings the field stations (`names`, the others, all
/// answering calls) up to date on one shared channel: with `broadcast`, one
/// broadcast to all of them, then a sync with each in turn (it resumes what
/// that station missed of the broadcast); without, the syncs alone.
pub fn hub_brings_up_to_date(
    profile: &Profile,
    paths: &[PathBuf],
    names: &[&str],
    broadcast: bool,
    ber: f64,
    loss: f64,
    seed: u64,
) -> NetRun {
    use crate::sim::net::{NetConfig, SimNet};
    let stations: Vec<Station> = paths.iter().map(|p| station(p, profile, true)).collect();
    let mut sim = SimNet::new(NetConfig::for_profile(profile, ber, loss, seed), stations);
    let mut heard_whole = 0;
    if broadcast {
        let now = sim.now();
        let all: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cast = sim.stations[0].start_cast(now, &all).unwrap();
        assert_eq!(
            cast.peers.len(),
            names.len(),
            "left out: {:?}",
            cast.left_out
        );
        let end = sim.run_until(sim.elapsed() + Duration::from_secs(24 * 3600), |s| {
            let now = s.now();
            !s.stations[0].casting(now) && s.channel.next_event().is_none()
        });
        assert_eq!(end, RunEnd::Done);
        for s in &mut sim.stations[1..] {
            while let Some(n) = s.poll_note() {
                if n.contains("applied") {
                    heard_whole += 1;
                }
            }
        }
    }
    let mut outcomes = Vec::new();
    for (k, name) in names.iter().enumerate() {
        let now = sim.now();
        sim.stations[0]
            .start_sync(now, name, 0x4000 + k as u16 * 0x111 + seed as u16)
            .unwrap();
        let mut got = None;
        let end = sim.run_until(sim.elapsed() + Duration::from_secs(24 * 3600), |s| {
            if let Some(o) = s.stations[0].poll_outcome() {
                got = Some(o);
            }
            got.is_some() && s.stations.iter().all(|st| !st.has_sessions())
        });
        assert_eq!(end, RunEnd::Done, "sync with {name}");
        outcomes.push(got.unwrap());
    }
    let st = &sim.channel.stats;
    NetRun {
        elapsed: sim.elapsed(),
        airtime: st.airtime.iter().sum(),
        hub_airtime: st.airtime[0],
        collisions: st.collisions,
        outcomes,
        heard_whole,
    }
}
