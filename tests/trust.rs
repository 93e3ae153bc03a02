//! The bad-input catalogue of trust (issue 7): an impersonator, replayed
//! Hellos, junk calls, forged and tampered files. Each asserts that nothing
//! changed and nothing leaked.

use std::path::Path;
use std::time::{Duration, Instant};

use radiosync::frame::framer::LinkFramer;
use radiosync::frame::{Frame, FrameKind};
use radiosync::profile::Profile;
use radiosync::sim::pair::{channel_config, SimLink, SimPair};
use radiosync::sim::Side;
use radiosync::store::{key_path, Store};
use radiosync::testkit::{cloned_pair, edit, run_sync, snapshot, station};

/// A copy of station `b` that has B's UUID, callsign and registered peers
/// (with their public keys), but not B's private key: a new key of its own.
fn impostor_of(b: &Path, c: &Path) {
    std::fs::copy(b, c).unwrap();
    let conn = rusqlite::Connection::open(c).unwrap();
    conn.execute("UPDATE rs_station SET public_key = NULL", [])
        .unwrap();
    drop(conn);
    assert!(!key_path(c).exists());
    let s = Store::open(c).unwrap();
    let real = Store::open(b).unwrap();
    assert_eq!(s.station().id, real.station().id);
    assert_ne!(
        s.station_key().unwrap().public(),
        real.station_key().unwrap().public()
    );
}

fn pair(p: &Profile, caller: &Path, daemon: &Path, seed: u64) -> SimPair {
    let link = SimLink::new(channel_config(p, 0.0, None, 0.0, seed)).unwrap();
    SimPair::new(link, station(caller, p, false), station(daemon, p, true))
}

#[test]
fn an_impersonator_is_refused_gets_nothing_and_the_genuine_peer_still_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = cloned_pair(dir.path(), false);
    edit(&a, 1, 10, 5, 40); // rows only the daemon has
    let c = dir.path().join("impostor.sqlite");
    impostor_of(&b, &c);
    // The impostor's own "edits": soft deletes and far-future versions.
    let conn = rusqlite::Connection::open(&c).unwrap();
    conn.execute_batch(
        "UPDATE pr_person SET deleted = 1, modified_on = '2099-01-01T00:00:00.000Z'
         WHERE id IN (SELECT id FROM pr_person ORDER BY id LIMIT 10)",
    )
    .unwrap();
    drop(conn);
    let a_before = snapshot(&a);
    let c_before = snapshot(&c);

    for profile in ["sim-kiss-1200", "sim-transparent-9600"] {
        let p = Profile::load(profile).unwrap();
        let mut sim = pair(&p, &c, &a, 3);
        let now = sim.link.now();
        sim.station(Side::A)
            .unwrap()
            .start_sync(now, "A", 0x0c0c)
            .unwrap();
        let (oc, oa) = run_sync(&mut sim, Duration::from_secs(600));
        let err = oc[0].result.as_ref().unwrap_err().to_string();
        assert!(err.contains("not authenticated"), "{profile}: {err}");
        assert!(oa.iter().all(|o| o.result.is_err()), "{oa:?}");
        // The daemon answered with one short refusal, nothing more.
        let daemon = sim.station(Side::B).unwrap();
        assert_eq!(daemon.stats().refusals_sent, 1);
        let sent: u64 = oa.iter().map(|o| o.stats.bytes_sent).sum();
        assert!(
            sent < 200,
            "{profile}: the daemon sent {sent} bytes to an impostor"
        );
        assert_eq!(oc[0].stats.bundle_bytes_received, 0);
        drop(sim);
        assert!(
            snapshot(&a) == a_before,
            "{profile}: the daemon's data changed"
        );
        assert!(
            snapshot(&c) == c_before,
            "{profile}: the impostor received rows"
        );
    }
    let log = Store::open(&a).unwrap().log().unwrap();
    let refusals = log.iter().filter(|l| l.result == "refused").count();
    assert!((1..=2).contains(&refusals), "{log:?}");

    // The genuine B still syncs, authenticated, and gets A's rows.
    let p = Profile::load("sim-kiss-1200").unwrap();
    let mut sim = pair(&p, &b, &a, 4);
    let now = sim.link.now();
    sim.station(Side::A)
        .unwrap()
        .start_sync(now, "A", 0x0b0b)
        .unwrap();
    let (ob, _) = run_sync(&mut sim, Duration::from_secs(3600));
    let summary = ob[0].result.as_ref().unwrap();
    assert!(summary.authenticated);
    assert_eq!(summary.verified(), Some(true));
    drop(sim);
    radiosync::testkit::assert_converged(&a, &b);
}

/// Records what a station sends.
fn recorder(
    into: std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
) -> radiosync::daemon::station::FrameRecorder {
    Box::new(move |_, kind, bytes| {
        if kind == radiosync::capture::RecordKind::Sent {
            into.lock().unwrap().push(bytes.to_vec());
        }
    })
}

#[test]
fn a_replayed_call_is_refused_and_answered_with_one_short_frame() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = cloned_pair(dir.path(), false);
    edit(&a, 2, 10, 5, 40);
    let p = Profile::load("sim-transparent-9600").unwrap();
    let sent = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut caller = station(&b, &p, false);
    caller.set_recorder(recorder(sent.clone()));
    let link = SimLink::new(channel_config(&p, 0.0, None, 0.0, 5)).unwrap();
    let mut sim = SimPair::new(link, caller, station(&a, &p, true));
    let now = sim.link.now();
    sim.station(Side::A)
        .unwrap()
        .start_sync(now, "A", 0x0101)
        .unwrap();
    let (ob, _) = run_sync(&mut sim, Duration::from_secs(3600));
    assert!(ob[0].result.is_ok());
    drop(sim);
    let hello = sent.lock().unwrap()[0].clone();
    let a_before = snapshot(&a);

    // Someone replays the genuine call, again and again.
    let mut daemon = station(&a, &p, true);
    let t0 = Instant::now();
    let mut out = Vec::new();
    for i in 0..20u64 {
        let now = t0 + Duration::from_secs(i);
        daemon.handle_bytes(now, &hello);
        while let Some(tx) = daemon.poll_transmit(now) {
            out.push(tx);
        }
        daemon.handle_timeout(now + Duration::from_millis(500));
        while let Some(tx) = daemon.poll_transmit(now + Duration::from_millis(500)) {
            out.push(tx);
        }
    }
    // One short refusal; the same call again is a closed session, ignored.
    assert_eq!(out.len(), 1, "{} transmissions", out.len());
    assert!(out[0].len() < 200);
    assert_eq!(daemon.stats().refusals_sent, 1);
    drop(daemon);
    assert!(snapshot(&a) == a_before);
}

#[test]
fn junk_calls_get_at_most_a_rare_short_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _b) = cloned_pair(dir.path(), false);
    let a_before = snapshot(&a);
    let log_before = Store::open(&a).unwrap().log().unwrap().len();
    let mut received = 0usize;
    let mut sent = 0usize;
    for profile in ["sim-transparent-9600", "sim-kiss-1200"] {
        let p = Profile::load(profile).unwrap();
        let framer = LinkFramer::new(&p).unwrap();
        let mut daemon = station(&a, &p, true);
        let t0 = Instant::now();
        for i in 0..300u32 {
            // A 35-byte call (a data frame with seq 0) of a fresh session, full of junk.
            let payload: Vec<u8> = (0..35u32).map(|j| (i * 31 + j * 7) as u8).collect();
            let frame = Frame {
                kind: FrameKind::Data,
                session: i as u16,
                seq: 0,
                payload,
                auth_tag: None,
                route: None,
            };
            let bytes = framer.encode(&frame, None).unwrap();
            received += bytes.len();
            let now = t0 + Duration::from_millis(1400 * i as u64);
            daemon.handle_bytes(now, &bytes);
            daemon.handle_timeout(now + Duration::from_millis(700));
            while let Some(tx) = daemon.poll_transmit(now + Duration::from_millis(700)) {
                sent += tx.len();
            }
            while daemon.poll_outcome().is_some() {}
        }
        // Seven minutes of calls: one refusal per 30 s.
        assert!(daemon.stats().refusals_sent <= 15, "{:?}", daemon.stats());
    }
    // 600 junk calls over 7 minutes each: a refusal per 10 s at most.
    eprintln!("junk: {received} bytes in, {sent} bytes out");
    assert!(
        sent * 10 < received,
        "the daemon sent {sent} bytes in reply to {received}"
    );
    assert!(snapshot(&a) == a_before);
    let log_after = Store::open(&a).unwrap().log().unwrap().len();
    assert!(
        log_after - log_before <= 100,
        "{} log rows for 600 junk calls",
        log_after - log_before
    );
}

#[test]
fn forged_and_tampered_files_are_all_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = cloned_pair(dir.path(), false);
    edit(&b, 3, 5, 2, 40);
    let sb = Store::open(&b).unwrap();
    let a_id = Store::open(&a).unwrap().station().id;
    let bundle = sb.export_bundle_bytes(&a_id).unwrap();
    let sealed = sb.seal_file(&bundle).unwrap();
    drop(sb);
    let before = snapshot(&a);
    let sa = Store::open(&a).unwrap();
    // Every byte flipped, CRCs and all: refused before a row is read.
    let mut refused = 0;
    for i in 0..sealed.len() {
        let mut bad = sealed.clone();
        bad[i] ^= 0x5a;
        if sa.open_file(&bad).is_err() {
            refused += 1;
        }
    }
    assert_eq!(refused, sealed.len());
    // Unsigned, from a peer registered with a key: refused.
    assert!(sa
        .open_file(&bundle)
        .unwrap_err()
        .to_string()
        .contains("not signed"));
    // Made by an impostor with B's UUID and its own key.
    let c = dir.path().join("impostor.sqlite");
    impostor_of(&b, &c);
    edit(&c, 4, 5, 2, 40);
    let sc = Store::open(&c).unwrap();
    let forged = sc
        .seal_file(&sc.export_bundle_bytes(&a_id).unwrap())
        .unwrap();
    drop(sc);
    let e = sa.open_file(&forged).unwrap_err();
    assert!(
        e.is_bundle_fault() && e.to_string().contains("signature"),
        "{e}"
    );
    drop(sa);
    assert!(snapshot(&a) == before);
    // The genuine file goes in.
    let mut sa = Store::open(&a).unwrap();
    let payload = sa.open_file(&sealed).unwrap().to_vec();
    sa.import_bundle_bytes(&payload).unwrap();
}

#[test]
fn a_peer_without_push_permission_is_told_and_its_bundle_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = cloned_pair(dir.path(), false);
    edit(&a, 5, 5, 2, 40);
    edit(&b, 6, 5, 2, 40);
    let b_id = Store::open(&b).unwrap().station().id;
    Store::open(&a)
        .unwrap()
        .set_peer_push(&b_id, false)
        .unwrap();
    let b_before = snapshot(&b);
    let p = Profile::load("sim-kiss-1200").unwrap();
    // B calls A: it pulls A's rows, and pushes nothing (A's Hello says so).
    let mut sim = pair(&p, &b, &a, 6);
    let now = sim.link.now();
    sim.station(Side::A)
        .unwrap()
        .start_sync(now, "A", 0x0202)
        .unwrap();
    let (ob, _) = run_sync(&mut sim, Duration::from_secs(3600));
    let s = ob[0].result.as_ref().unwrap();
    assert!(s.push_refused);
    assert_eq!(s.bundles_confirmed, 0);
    assert_eq!(s.bundles_applied, 1);
    drop(sim);
    assert!(snapshot(&b) != b_before);
    // A bundle file from B is refused too, and logged.
    let sb = Store::open(&b).unwrap();
    let a_id = Store::open(&a).unwrap().station().id;
    let bytes = sb.export_bundle_bytes(&a_id).unwrap();
    drop(sb);
    let a_before = snapshot(&a);
    let mut sa = Store::open(&a).unwrap();
    let e = sa.import_bundle_bytes(&bytes).unwrap_err();
    assert!(e.to_string().contains("may not push"), "{e}");
    assert!(sa
        .log()
        .unwrap()
        .iter()
        .any(|l| l.message.contains("may not push")));
    drop(sa);
    assert!(snapshot(&a) == a_before);
}

/// The rows of `table` at the station at `path`.
fn rows_of(path: &Path, table: &str) -> Vec<radiosync::store::SyncedRow> {
    snapshot(path)
        .into_iter()
        .filter(|r| r.table == table)
        .collect()
}

/// One session, B calling A, on a clean simulated KISS channel.
fn sync_b_to_a(a: &Path, b: &Path, seed: u64) -> radiosync::sync::Summary {
    let p = Profile::load("sim-kiss-1200").unwrap();
    let mut sim = pair(&p, b, a, seed);
    let now = sim.link.now();
    sim.station(Side::A)
        .unwrap()
        .start_sync(now, "A", 0x0300 + seed as u16)
        .unwrap();
    let (ob, _) = run_sync(&mut sim, Duration::from_secs(3600));
    ob[0].result.clone().unwrap()
}

#[test]
fn a_table_list_keeps_other_tables_home_and_a_push_outside_it_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = cloned_pair(dir.path(), false);
    // Both edit pr_person (shared) and cms_post (not shared).
    edit(&a, 11, 8, 3, 40);
    edit(&b, 12, 8, 3, 40);
    let (sa, sb) = (Store::open(&a).unwrap(), Store::open(&b).unwrap());
    let (a_id, b_id) = (sa.station().id, sb.station().id);
    let people = ["pr_person".to_string()];
    sa.set_peer_tables(&b_id, Some(&people)).unwrap();
    sb.set_peer_tables(&a_id, Some(&people)).unwrap();
    assert!(sa
        .set_peer_tables(&b_id, Some(&["no_such".to_string()]))
        .is_err());
    drop((sa, sb));
    let (a_posts, b_posts) = (rows_of(&a, "cms_post"), rows_of(&b, "cms_post"));
    assert!(a_posts != b_posts);

    // Over the radio: pr_person converges, verified over the shared table;
    // cms_post stays as it was at each station.
    let s = sync_b_to_a(&a, &b, 1);
    assert_eq!(s.verified(), Some(true), "{s:?}");
    assert!(rows_of(&a, "pr_person") == rows_of(&b, "pr_person"));
    assert!(rows_of(&a, "cms_post") == a_posts);
    assert!(rows_of(&b, "cms_post") == b_posts);
    let sb = Store::open(&b).unwrap();
    assert_eq!(sb.pending_for(&a_id).unwrap(), 0);

    // B's operator widens B's list but A's is unchanged: B's file carries
    // cms_post, and A refuses it whole, says why, and changes nothing.
    sb.set_peer_tables(&b_id_of(&sb, "A"), None).unwrap();
    edit(&b, 13, 2, 2, 40);
    let bytes = Store::open(&b).unwrap().export_bundle_bytes(&a_id).unwrap();
    drop(sb);
    let a_before = snapshot(&a);
    let mut sa = Store::open(&a).unwrap();
    let e = sa.import_bundle_bytes(&bytes).unwrap_err();
    assert!(e.to_string().contains("may not push table cms_post"), "{e}");
    assert!(sa
        .log()
        .unwrap()
        .iter()
        .any(|l| l.result == "refused" && l.message.contains("cms_post")));
    drop(sa);
    assert!(snapshot(&a) == a_before);

    // Both share everything now: the posts each side kept home are found by
    // the content check and reconciliation (measured: the first session ends
    // unverified, the second reconciles 6 rows), and the stations converge.
    Store::open(&a)
        .unwrap()
        .set_peer_tables(&b_id, None)
        .unwrap();
    let mut verified = false;
    for seed in 2..5 {
        if sync_b_to_a(&a, &b, seed).verified() == Some(true) {
            verified = true;
            break;
        }
    }
    assert!(verified);
    radiosync::testkit::assert_converged(&a, &b);
}

fn b_id_of(s: &Store, name: &str) -> radiosync::delta::StationId {
    s.peer_by_name(name).unwrap().unwrap().id
}
