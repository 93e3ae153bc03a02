//! Captures written by the real stations (src/daemon) during a sync over
//! chansim's channel model, replayed into copies of the databases as they
//! were before the sync: the application tables must end as the live sync
//! left them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use radiosync::capture::replay::{self, BundleFate, ReplayOptions, ReplayReport, Replayer};
use radiosync::capture::show;
use radiosync::capture::{Reader, Writer};
use radiosync::daemon::station::{Outcome, Station};
use radiosync::profile::Profile;
use radiosync::sim::pair::{channel_config, RunEnd, SimLink, SimPair};
use radiosync::sim::Side;
use radiosync::store::Store;
use radiosync::testkit::{self, cloned_pair, snapshot, SharedCapture};

fn stations(dir: &Path) -> (PathBuf, PathBuf) {
    cloned_pair(dir, false)
}

fn edit(path: &Path, seed: u64, updates: usize, inserts: usize) {
    testkit::edit(path, seed, updates, inserts, 120);
}

/// A station whose frames go into a capture, as `--capture` does.
fn capturing_station(
    path: &Path,
    profile: &Profile,
    accept: bool,
    epoch: Instant,
) -> (Station, SharedCapture) {
    let (_, text) = Profile::load_with_text(&profile.name).unwrap();
    testkit::capturing_station(path, profile, &text, accept, epoch)
}

fn run_sync(pair: &mut SimPair) -> (Vec<Outcome>, Vec<Outcome>) {
    testkit::run_sync(pair, Duration::from_secs(3600))
}

fn replay_into(db: &Path, capture: &[u8], opts: ReplayOptions) -> ReplayReport {
    let mut store = Store::open(db).unwrap();
    let reader = Reader::new(capture).unwrap();
    let header = reader.header().clone();
    let mut r = Replayer::new(&mut store, &header, opts).unwrap();
    for (i, item) in reader.enumerate() {
        r.feed(i as u64, &item.unwrap());
    }
    r.finish(None)
}

/// Both stations capture a two-way sync; each capture replays into a copy of
/// its station's database from before the sync and gives the live result.
fn live_sync_then_replay(profile: &str, loss: f64, ber: f64, seed: u64) -> [ReplayReport; 2] {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = stations(dir.path());
    edit(&a, 1, 30, 20);
    edit(&b, 2, 30, 25);
    let a_before = dir.path().join("a-before.sqlite");
    let b_before = dir.path().join("b-before.sqlite");
    radiosync::store::copy_station(&a, &a_before).unwrap();
    radiosync::store::copy_station(&b, &b_before).unwrap();

    let p = Profile::load(profile).unwrap();
    let link = SimLink::new(channel_config(&p, ber, None, loss, seed)).unwrap();
    let epoch = link.instant(Duration::ZERO);
    let (sa, wa) = capturing_station(&a, &p, false, epoch);
    let (sb, wb) = capturing_station(&b, &p, true, epoch);
    let mut pair = SimPair::new(link, sa, sb);
    let now = pair.link.now();
    pair.station(Side::A)
        .unwrap()
        .start_sync(now, "B", 0x2345)
        .unwrap();
    let (oa, ob) = run_sync(&mut pair);
    let ra = oa[0].result.as_ref().expect("A finished");
    let rb = ob[0].result.as_ref().expect("B finished");
    assert_eq!((ra.bundles_applied, rb.bundles_applied), (1, 1));
    drop(pair);
    let cap_a = Arc::try_unwrap(wa)
        .ok()
        .unwrap()
        .into_inner()
        .unwrap()
        .into_inner();
    let cap_b = Arc::try_unwrap(wb)
        .ok()
        .unwrap()
        .into_inner()
        .unwrap()
        .into_inner();

    let mut reports = Vec::new();
    for (live, before, cap) in [(&a, &a_before, &cap_a), (&b, &b_before, &cap_b)] {
        assert_ne!(
            snapshot(live),
            snapshot(before),
            "the sync changed the station"
        );
        let report = replay_into(before, cap, ReplayOptions::default());
        assert_eq!(report.applied(), 1, "{}", replay::summary(&report));
        assert!(
            snapshot(live) == snapshot(before),
            "replay differs from the live sync"
        );
        // The listing decodes every frame of a real capture.
        let reader = Reader::new(cap.as_slice()).unwrap();
        let header = reader.header().clone();
        let text = show::show(&header, reader);
        let hello = format!("Hello v{} from station", radiosync::sync::PROTOCOL_VERSION);
        assert!(text.contains(&hello), "{text}");
        assert!(text.contains("BundleStart id"), "{text}");
        assert!(!text.contains("ends early"), "{text}");
        reports.push(report);
    }
    reports.try_into().unwrap()
}

#[test]
fn a_kiss_capture_replays_to_the_live_result() {
    let [a, b] = live_sync_then_replay("sim-kiss-1200", 0.0, 0.0, 11);
    assert!(a.bad.is_empty() && b.bad.is_empty());
}

#[test]
fn a_lossy_kiss_capture_replays_to_the_live_result() {
    // 20 % of frames lost on air: what was captured is what arrived,
    // including the resends that filled the gaps.
    live_sync_then_replay("sim-kiss-1200", 0.2, 0.0, 12);
}

#[test]
fn a_noisy_transparent_capture_replays_to_the_live_result() {
    let [a, b] = live_sync_then_replay("sim-transparent-9600", 0.0, 1e-4, 13);
    assert!(a.frames_corrected + b.frames_corrected > 0, "{a:?}");
}

#[test]
fn dropping_a_chunk_of_a_real_capture_leaves_the_bundle_incomplete() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = stations(dir.path());
    edit(&b, 5, 10, 30);
    let a_before = dir.path().join("a-before.sqlite");
    radiosync::store::copy_station(&a, &a_before).unwrap();
    let p = Profile::load("sim-kiss-1200").unwrap();
    let link = SimLink::new(channel_config(&p, 0.0, None, 0.0, 21)).unwrap();
    let epoch = link.instant(Duration::ZERO);
    let (sa, wa) = capturing_station(&a, &p, false, epoch);
    let (sb, _) = capturing_station(&b, &p, true, epoch);
    let mut pair = SimPair::new(link, sa, sb);
    let now = pair.link.now();
    pair.station(Side::A)
        .unwrap()
        .start_sync(now, "B", 9)
        .unwrap();
    run_sync(&mut pair);
    drop(pair);
    let cap = Arc::try_unwrap(wa)
        .ok()
        .unwrap()
        .into_inner()
        .unwrap()
        .into_inner();
    // The record of the first Chunk A received.
    let reader = Reader::new(cap.as_slice()).unwrap();
    let header = reader.header().clone();
    let listing = show::show(&header, reader);
    let chunk = listing
        .lines()
        .find(|l| l.contains(" recv ") && l.contains("| Chunk offset 0 "))
        .unwrap_or_else(|| panic!("{listing}"));
    let index: u64 = chunk[1..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let before = snapshot(&a_before);
    let report = replay_into(
        &a_before,
        &cap,
        ReplayOptions {
            drop: [index].into(),
            ..Default::default()
        },
    );
    assert_eq!(report.applied(), 0);
    assert!(
        matches!(report.bundles[0].fate, BundleFate::Incomplete { .. }),
        "{}",
        replay::summary(&report)
    );
    assert!(replay::summary(&report).contains("never arrived"));
    assert_eq!(snapshot(&a_before), before);
}

/// `cargo test --test replay_engine -- --ignored` writes a real capture to
/// look at with `radiosync capture show /tmp/radiosync-real.rscap`.
#[test]
#[ignore]
fn write_a_real_capture() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = stations(dir.path());
    edit(&a, 1, 5, 3);
    edit(&b, 2, 5, 8);
    let p = Profile::load("sim-kiss-1200").unwrap();
    let link = SimLink::new(channel_config(&p, 0.0, None, 0.2, 4)).unwrap();
    let epoch = link.instant(Duration::ZERO);
    let (sa, wa) = capturing_station(&a, &p, false, epoch);
    let (sb, _) = capturing_station(&b, &p, true, epoch);
    let mut pair = SimPair::new(link, sa, sb);
    let now = pair.link.now();
    pair.station(Side::A)
        .unwrap()
        .start_sync(now, "B", 3)
        .unwrap();
    run_sync(&mut pair);
    drop(pair);
    let cap = Arc::try_unwrap(wa)
        .ok()
        .unwrap()
        .into_inner()
        .unwrap()
        .into_inner();
    std::fs::write(std::env::temp_dir().join("radiosync-real.rscap"), cap).unwrap();
}

/// B (the responder) restarts in the middle of the pull; A calls again and
/// the bundle resumes where it stopped. A's capture spans both sessions: the
/// replay carries the first session's bytes into the second, as A's partial
/// did live. Replaying only the second session into a copy of A's database
/// taken between the two (which holds the partial) also completes.
#[test]
fn a_capture_across_a_resumed_transfer_replays_to_the_live_result() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = stations(dir.path());
    edit(&a, 7, 5, 0);
    edit(&b, 8, 20, 250);
    let a_before = dir.path().join("a-before.sqlite");
    radiosync::store::copy_station(&a, &a_before).unwrap();
    let p = Profile::load("sim-transparent-9600").unwrap();
    let link = SimLink::new(channel_config(&p, 1e-5, None, 0.0, 6)).unwrap();
    let epoch = link.instant(Duration::ZERO);
    let (sa, wa) = capturing_station(&a, &p, false, epoch);
    let (sb, _) = capturing_station(&b, &p, true, epoch);
    let mut pair = SimPair::new(link, sa, sb);
    let now = pair.link.now();
    pair.station(Side::A)
        .unwrap()
        .start_sync(now, "B", 300)
        .unwrap();
    let b_id = Store::open(&b).unwrap().station().id;
    let stored = |p: &mut SimPair| {
        p.station(Side::A)
            .unwrap()
            .store()
            .transfer_state(&b_id)
            .unwrap()
            .incoming
            .map_or(0, |x| x.bytes.len())
    };
    let end = pair.run_until(Duration::from_secs(3600), |p| stored(p) > 4000);
    assert_eq!(end, RunEnd::Done);
    drop(pair.take(Side::B));
    pair.put(
        Side::B,
        Station::new(Store::open(&b).unwrap(), p.clone(), true).unwrap(),
    );
    let mut first = Vec::new();
    let end = pair.run_until(Duration::from_secs(7200), |p| {
        while let Some(o) = p.station(Side::A).unwrap().poll_outcome() {
            first.push(o);
        }
        !first.is_empty()
    });
    assert_eq!(end, RunEnd::Done);
    assert!(first[0].result.is_err(), "the first session fails");
    // A's database between the sessions, with its partial.
    let a_between = dir.path().join("a-between.sqlite");
    pair.station(Side::A)
        .unwrap()
        .store()
        .connection()
        .execute("VACUUM INTO ?1", [a_between.to_str().unwrap()])
        .unwrap();
    let between_bytes = wa.lock().unwrap().get_ref().len();
    let now = pair.link.now();
    pair.station(Side::A)
        .unwrap()
        .start_sync(now, "B", 301)
        .unwrap();
    let (oa, _) = run_sync(&mut pair);
    assert!(oa[0].result.is_ok(), "{:?}", oa[0].result);
    drop(pair);
    let cap = Arc::try_unwrap(wa)
        .ok()
        .unwrap()
        .into_inner()
        .unwrap()
        .into_inner();

    let report = replay_into(&a_before, &cap, ReplayOptions::default());
    assert_eq!(report.applied(), 1, "{}", replay::summary(&report));
    assert!(
        report
            .log
            .iter()
            .any(|l| l.contains("where session 012c left it")),
        "{:?}",
        report.log
    );
    assert!(
        snapshot(&a) == snapshot(&a_before),
        "replay differs from the live sync"
    );

    // The second session alone (header + the records written after the cut).
    let mut second = Vec::new();
    {
        let reader = Reader::new(cap.as_slice()).unwrap();
        let mut w = Writer::new(&mut second, reader.header()).unwrap();
        let mut offset = 0usize;
        let mut head = Vec::new();
        reader.header().emit(&mut head).unwrap();
        offset += head.len();
        for item in reader {
            let rec = item.unwrap();
            let mut buf = Vec::new();
            rec.emit(&mut buf).unwrap();
            if offset >= between_bytes {
                w.write(&rec).unwrap();
            }
            offset += buf.len();
        }
    }
    let report = replay_into(&a_between, &second, ReplayOptions::default());
    assert_eq!(report.applied(), 1, "{}", replay::summary(&report));
    assert!(report
        .log
        .iter()
        .any(|l| l.contains("that the database holds from an earlier session")));
    assert!(
        snapshot(&a) == snapshot(&a_between),
        "replay differs from the live sync"
    );
}
