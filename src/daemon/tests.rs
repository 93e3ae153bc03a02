//! Two stations with real SQLite stores syncing through chansim's channel
//! model on virtual time: convergence over lossy and noisy channels, and
//! resume after either process restarts mid-transfer.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::station::{LinkLoss, Outcome, Station};
use crate::profile::Profile;
use crate::sim::pair::{channel_config, RunEnd, SimLink, SimPair};
use crate::sim::{Burst, Side};
use crate::store::Store;
use crate::testkit::{assert_converged, cloned_pair, edit, run_sync, sim_pair, snapshot, station};

/// Station A from the sample data (with a dictionary), and B cloned from it.
fn stations(dir: &Path) -> (PathBuf, PathBuf) {
    cloned_pair(dir, true)
}

/// The same row written `times` times at one station: its history (4
/// entries) no longer holds the version the other station started from.
fn edit_row_times(path: &Path, uuid_rank: usize, times: usize, day: u32) {
    let conn = rusqlite::Connection::open(path).unwrap();
    let uuid: String = conn
        .query_row(
            "SELECT uuid FROM pr_person ORDER BY uuid LIMIT 1 OFFSET ?1",
            [uuid_rank as i64],
            |r| r.get(0),
        )
        .unwrap();
    for i in 0..times {
        conn.execute(
            "UPDATE pr_person SET job_title = ?1, modified_on = ?2 WHERE uuid = ?3",
            rusqlite::params![
                format!("edit {day}-{i}"),
                format!("2025-05-{day:02}T08:{i:02}:00.000Z"),
                uuid
            ],
        )
        .unwrap();
    }
}

/// A calls B in sessions until neither lacks anything (at most 3, as `sync`).
fn sync_rounds(pair: &mut SimPair, first_id: u16) -> Vec<(Outcome, Vec<Outcome>)> {
    let mut rounds = Vec::new();
    for i in 0..3u16 {
        let now = pair.link.now();
        pair.station(Side::A)
            .unwrap()
            .start_sync(now, "B", first_id + i)
            .unwrap();
        let (oa, ob) = run_sync(pair, pair.link.elapsed() + Duration::from_secs(3600));
        assert!(oa[0].result.is_ok(), "{:?}", oa[0].result);
        let peer_side = ob.iter().find(|o| o.session == oa[0].session);
        assert!(peer_side.is_some_and(|o| o.result.is_ok()), "{ob:?}");
        rounds.push((oa[0].clone(), ob));
        if !pair
            .station(Side::A)
            .unwrap()
            .needs_another_round("B")
            .unwrap()
        {
            return rounds;
        }
    }
    panic!("still not converged after 3 sessions");
}

fn converge(profile: &str, ber: f64, burst: Option<Burst>, loss: f64, seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = stations(dir.path());
    edit(&a, 1, 40, 30, 120);
    edit(&b, 2, 40, 20, 120);
    let p = Profile::load(profile).unwrap();
    let link = SimLink::new(channel_config(&p, ber, burst, loss, seed)).unwrap();
    let mut pair = SimPair::new(link, station(&a, &p, false), station(&b, &p, true));
    let rounds = sync_rounds(&mut pair, 0x1234);
    let (oa, ob) = &rounds[0];
    let sa = oa.result.as_ref().unwrap();
    let sb = ob.last().unwrap().result.as_ref().unwrap();
    assert_eq!((sa.bundles_applied, sb.bundles_applied), (1, 1));
    assert!(oa.stats.bundle_bytes_received > 1000);
    assert!(oa.stats.airtime > Duration::ZERO);
    drop(pair);
    assert_converged(&a, &b);
}

#[test]
fn a_delta_that_cannot_apply_comes_in_full_in_a_second_session() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = stations(dir.path());
    // A writes row 3 six times (its history forgets the shared base); B writes
    // it once, later: A cannot apply B's delta and asks for the row in full.
    edit_row_times(&a, 3, 6, 10);
    edit_row_times(&b, 3, 1, 20);
    edit(&b, 9, 10, 5, 50);
    let p = Profile::load("sim-kiss-1200").unwrap();
    let mut pair = sim_pair(&p, &a, &b, 0.0, 0.0, 8);
    let rounds = sync_rounds(&mut pair, 40);
    assert_eq!(rounds.len(), 2);
    drop(pair);
    assert_converged(&a, &b);
}

#[test]
fn kiss_1200_with_10_percent_loss_converges() {
    converge("sim-kiss-1200", 0.0, None, 0.1, 1);
}

#[test]
fn transparent_9600_with_bit_errors_and_bursts_converges() {
    let burst = Burst {
        enter_prob: 1e-5,
        mean_len_bits: 200.0,
        ber: 0.5,
    };
    converge("sim-transparent-9600", 1e-4, Some(burst), 0.0, 2);
}

#[test]
fn nothing_to_send_either_way() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = stations(dir.path());
    let p = Profile::load("sim-kiss-1200").unwrap();
    let mut pair = sim_pair(&p, &a, &b, 0.0, 0.0, 3);
    let now = pair.link.now();
    pair.station(Side::A)
        .unwrap()
        .start_sync(now, "B", 7)
        .unwrap();
    let (oa, ob) = run_sync(&mut pair, Duration::from_secs(600));
    let sa = oa[0].result.as_ref().unwrap();
    assert_eq!(sa.bundle_bytes_received + sa.bundle_bytes_sent, 0);
    assert!(ob[0].result.is_ok());
}

#[test]
fn unregistered_caller_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _b) = stations(dir.path());
    // C is a clone of A that B has never heard of.
    let c = dir.path().join("c.sqlite");
    Store::clone_station(&a, &c, "C", None).unwrap();
    let b2 = dir.path().join("b2.sqlite");
    Store::clone_station(&a, &b2, "B2", None).unwrap();
    let p = Profile::load("sim-kiss-1200").unwrap();
    let link = SimLink::new(channel_config(&p, 0.0, None, 0.0, 4)).unwrap();
    // C calls "B2" by name (registered at C? no: C only knows A) -> register B2 at C.
    let mut cs = Store::open(&c).unwrap();
    let b2_id = Store::open(&b2).unwrap().station().id;
    cs.add_peer("B2", b2_id, None).unwrap();
    let mut pair = SimPair::new(
        link,
        Station::new(cs, p.clone(), false).unwrap(),
        station(&b2, &p, true),
    );
    let now = pair.link.now();
    pair.station(Side::A)
        .unwrap()
        .start_sync(now, "B2", 9)
        .unwrap();
    let (oa, _) = run_sync(&mut pair, Duration::from_secs(600));
    let err = oa[0].result.as_ref().unwrap_err();
    assert!(
        matches!(
            err,
            crate::sync::SessionError::PeerError {
                code: crate::sync::ErrorCode::UnknownStation,
                ..
            }
        ),
        "{err}"
    );
}

/// Bundle bytes a side received over all its sessions.
fn received(outs: &[Outcome]) -> u64 {
    outs.iter().map(|o| o.stats.bundle_bytes_received).sum()
}

fn partial_len(path_of_receiver: &Station, sender: &Path) -> u64 {
    let id = Store::open(sender).unwrap().station().id;
    path_of_receiver
        .store()
        .transfer_state(&id)
        .unwrap()
        .incoming
        .map_or(0, |p| p.bytes.len() as u64)
}

#[test]
fn initiator_restart_mid_push_resumes_without_resending() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = stations(dir.path());
    // A pushes a large bundle; B has little.
    edit(&a, 5, 20, 80, 200);
    edit(&b, 6, 5, 0, 0);
    let p = Profile::load("sim-kiss-1200").unwrap();
    let mut pair = sim_pair(&p, &a, &b, 0.0, 0.05, 5);
    let now = pair.link.now();
    pair.station(Side::A)
        .unwrap()
        .start_sync(now, "B", 100)
        .unwrap();
    // Until B has stored a good part of A's bundle.
    let end = pair.run_until(Duration::from_secs(3600), |p| {
        let st = p.stations[1].as_ref().unwrap();
        partial_len(st, &a) > 8000
    });
    assert_eq!(end, RunEnd::Done);
    let stored_before = partial_len(pair.stations[1].as_ref().unwrap(), &a);
    // A's process dies and comes back with a new session.
    drop(pair.take(Side::A));
    let total = Store::open(&a)
        .unwrap()
        .transfer_state(&Store::open(&b).unwrap().station().id)
        .unwrap()
        .outgoing
        .expect("A keeps the bundle it was sending")
        .bytes
        .len() as u64;
    let later = pair.link.elapsed() + Duration::from_secs(5);
    pair.run_until(later, |_| false);
    pair.put(Side::A, station(&a, &p, false));
    let now = pair.link.now();
    pair.station(Side::A)
        .unwrap()
        .start_sync(now, "B", 200)
        .unwrap();
    let mut outs_b = Vec::new();
    let mut outs_a = Vec::new();
    let end = pair.run_until(Duration::from_secs(7200), |p| {
        for (side, v) in [(Side::A, &mut outs_a), (Side::B, &mut outs_b)] {
            while let Some(o) = p.station(side).unwrap().poll_outcome() {
                v.push(o);
            }
        }
        !outs_a.is_empty() && !p.station(Side::B).unwrap().has_sessions()
    });
    assert_eq!(end, RunEnd::Done, "{outs_a:?} {outs_b:?}");
    assert!(outs_a[0].result.is_ok(), "{:?}", outs_a[0].result);
    // B's first session gave up on the silent peer; the second finished.
    assert!(outs_b.iter().any(|o| o.session == 200 && o.result.is_ok()));
    // Every bundle byte reached B once: what was stored was not sent again.
    let got = received(&outs_b);
    assert!(stored_before > 0 && stored_before < total);
    assert_eq!(
        got, total,
        "B received {got} bundle bytes of a {total}-byte bundle"
    );
    drop(pair);
    assert_converged(&a, &b);
}

#[test]
fn responder_restart_mid_pull_resumes_without_resending() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = stations(dir.path());
    // B (the responder) sends a large bundle in the pull phase.
    edit(&a, 7, 5, 0, 0);
    edit(&b, 8, 20, 80, 200);
    let p = Profile::load("sim-transparent-9600").unwrap();
    let mut pair = sim_pair(&p, &a, &b, 1e-5, 0.0, 6);
    let now = pair.link.now();
    pair.station(Side::A)
        .unwrap()
        .start_sync(now, "B", 300)
        .unwrap();
    let end = pair.run_until(Duration::from_secs(3600), |p| {
        partial_len(p.stations[0].as_ref().unwrap(), &b) > 6000
    });
    assert_eq!(end, RunEnd::Done);
    drop(pair.take(Side::B));
    let total = Store::open(&b)
        .unwrap()
        .transfer_state(&Store::open(&a).unwrap().station().id)
        .unwrap()
        .outgoing
        .expect("B keeps the bundle it was sending")
        .bytes
        .len() as u64;
    pair.put(Side::B, station(&b, &p, true));
    // A's first session gives up on its own; then it calls again.
    let mut outs_a = Vec::new();
    let end = pair.run_until(Duration::from_secs(7200), |p| {
        while let Some(o) = p.station(Side::A).unwrap().poll_outcome() {
            outs_a.push(o);
        }
        !outs_a.is_empty()
    });
    assert_eq!(end, RunEnd::Done);
    assert!(outs_a[0].result.is_err());
    let now = pair.link.now();
    pair.station(Side::A)
        .unwrap()
        .start_sync(now, "B", 301)
        .unwrap();
    let (oa, _ob) = run_sync(&mut pair, Duration::from_secs(14_400));
    assert!(oa[0].result.is_ok(), "{:?}", oa[0].result);
    outs_a.extend(oa);
    assert_eq!(received(&outs_a), total);
    drop(pair);
    assert_converged(&a, &b);
}

/// B's daemon restarts mid-push and forgets the session: it answers A's next
/// transmission with "unknown session", so A ends that session within one
/// exchange (not after `RECALL_AFTER` silent retries) and its new call resumes.
#[test]
fn restarted_responder_tells_the_caller_to_call_again() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = stations(dir.path());
    edit(&a, 9, 20, 80, 200);
    edit(&b, 10, 5, 0, 0);
    let p = Profile::load("sim-kiss-1200").unwrap();
    let mut pair = sim_pair(&p, &a, &b, 0.0, 0.0, 9);
    let now = pair.link.now();
    pair.station(Side::A)
        .unwrap()
        .start_sync(now, "B", 400)
        .unwrap();
    let end = pair.run_until(Duration::from_secs(3600), |p| {
        partial_len(p.stations[1].as_ref().unwrap(), &a) > 4000
    });
    assert_eq!(end, RunEnd::Done);
    let stored_before = partial_len(pair.stations[1].as_ref().unwrap(), &a);
    drop(pair.take(Side::B));
    pair.put(Side::B, station(&b, &p, true));
    let restarted = pair.link.elapsed();
    let mut outs_a = Vec::new();
    let end = pair.run_until(Duration::from_secs(7200), |p| {
        while let Some(o) = p.station(Side::A).unwrap().poll_outcome() {
            outs_a.push(o);
        }
        !outs_a.is_empty()
    });
    assert_eq!(end, RunEnd::Done);
    let ended_after = pair.link.elapsed() - restarted;
    let first = &outs_a[0];
    assert!(first.result.is_err(), "{:?}", first.result);
    assert_eq!(first.link_lost, Some(LinkLoss::PeerForgot));
    assert!(pair.station(Side::B).unwrap().stats().unknown_told > 0);
    // Within one exchange of the restart (the silent retries took 40 s and more).
    assert!(
        ended_after < Duration::from_secs(20),
        "A's session ended {ended_after:?} after B's restart"
    );
    let total = Store::open(&a)
        .unwrap()
        .transfer_state(&Store::open(&b).unwrap().station().id)
        .unwrap()
        .outgoing
        .expect("A keeps the bundle it was sending")
        .bytes
        .len() as u64;
    assert!(stored_before > 0 && stored_before < total);
    let now = pair.link.now();
    pair.station(Side::A)
        .unwrap()
        .start_sync(now, "B", 401)
        .unwrap();
    let (oa, ob) = run_sync(&mut pair, Duration::from_secs(14_400));
    assert!(oa[0].result.is_ok(), "{:?}", oa[0].result);
    // The new session brought only what B had not stored.
    let got_b = received(&ob);
    assert_eq!(
        got_b,
        total - stored_before,
        "B received {got_b} bytes again"
    );
    drop(pair);
    assert_converged(&a, &b);
}

#[test]
fn amateur_profile_needs_a_callsign() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _b) = stations(dir.path());
    let p = Profile::load("direwolf-1200").unwrap();
    assert!(p.amateur);
    let err = Station::new(Store::open(&a).unwrap(), p, false)
        .err()
        .unwrap();
    assert!(err.to_string().contains("callsign"), "{err}");
}

/// Figures for a look by hand (the benchmark has the full grid):
/// `cargo test --release --lib -- --ignored --nocapture daemon::tests::measure`
#[test]
#[ignore]
fn measure() {
    for (profile, ber, loss) in [
        ("sim-kiss-1200", 0.0, 0.0),
        ("sim-kiss-1200", 0.0, 0.1),
        ("sim-transparent-9600", 0.0, 0.0),
        ("sim-transparent-9600", 1e-4, 0.0),
        ("sim-transparent-9600", 1e-3, 0.0),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = stations(dir.path());
        let big = profile.contains("9600");
        edit(&a, 1, 100, if big { 600 } else { 150 }, 200);
        edit(&b, 2, 100, if big { 600 } else { 150 }, 200);
        let p = Profile::load(profile).unwrap();
        let mut pair = sim_pair(&p, &a, &b, ber, loss, 11);
        let now = pair.link.now();
        pair.station(Side::A)
            .unwrap()
            .start_sync(now, "B", 1)
            .unwrap();
        let mut t_done = None;
        let mut outs = Vec::new();
        let end = pair.run_until(Duration::from_secs(20_000), |p| {
            while let Some(o) = p.station(Side::A).unwrap().poll_outcome() {
                outs.push(o);
                t_done = Some(p.link.elapsed());
            }
            !outs.is_empty()
        });
        assert_eq!(end, RunEnd::Done);
        let o = &outs[0];
        let s = o.result.as_ref().unwrap();
        let t = t_done.unwrap().as_secs_f64();
        let payload = (s.bundle_bytes_sent + s.bundle_bytes_received) as f64;
        println!(
            "{profile} ber {ber} loss {loss}: bundles {} + {} B in {t:.1} s: {:.1} B/s, efficiency {:.3}; A airtime {:.1} s, retrans {}, crc fail {}",
            s.bundle_bytes_sent,
            s.bundle_bytes_received,
            payload / t,
            payload * 8.0 / (f64::from(p.bitrate) * t),
            o.stats.airtime.as_secs_f64(),
            o.stats.retransmissions,
            o.stats.crc_failures,
        );
    }
}

#[test]
fn crossed_calls_leave_one_session() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = stations(dir.path());
    edit(&a, 11, 10, 5, 80);
    edit(&b, 12, 10, 5, 80);
    let p = Profile::load("sim-kiss-1200").unwrap();
    let link = SimLink::new(channel_config(&p, 0.0, None, 0.0, 9)).unwrap();
    // Both run the daemon and call each other at the same moment.
    let mut pair = SimPair::new(link, station(&a, &p, true), station(&b, &p, true));
    let now = pair.link.now();
    pair.station(Side::A)
        .unwrap()
        .start_sync(now, "B", 500)
        .unwrap();
    pair.station(Side::B)
        .unwrap()
        .start_sync(now, "A", 600)
        .unwrap();
    let mut outs = Vec::new();
    let end = pair.run_until(Duration::from_secs(3600), |p| {
        for side in [Side::A, Side::B] {
            while let Some(o) = p.station(side).unwrap().poll_outcome() {
                outs.push(o);
            }
        }
        [Side::A, Side::B]
            .into_iter()
            .all(|s| !p.station(s).unwrap().has_sessions())
    });
    assert_eq!(end, RunEnd::Done, "{outs:?}");
    // Both sides of one call finished; the other call was declined.
    let ok: Vec<u16> = outs
        .iter()
        .filter(|o| o.result.is_ok())
        .map(|o| o.session)
        .collect();
    assert_eq!(ok.len(), 2, "{outs:?}");
    assert_eq!(ok[0], ok[1]);
    drop(pair);
    assert_converged(&a, &b);
}

#[test]
fn resume_with_a_pending_want_sends_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = stations(dir.path());
    // A will ask for row 3 in full; B's bundle is large.
    edit_row_times(&a, 3, 6, 10);
    edit_row_times(&b, 3, 1, 20);
    edit(&b, 13, 20, 80, 200);
    let p = Profile::load("sim-kiss-1200").unwrap();
    let mut pair = sim_pair(&p, &a, &b, 0.0, 0.0, 10);
    let now = pair.link.now();
    pair.station(Side::A)
        .unwrap()
        .start_sync(now, "B", 70)
        .unwrap();
    let end = pair.run_until(Duration::from_secs(3600), |p| {
        partial_len(p.stations[0].as_ref().unwrap(), &b) > 6000
    });
    assert_eq!(end, RunEnd::Done);
    let first = pair.take(Side::A).unwrap().sessions()[0]
        .stats
        .bundle_bytes_received;
    let total = Store::open(&b)
        .unwrap()
        .transfer_state(&Store::open(&a).unwrap().station().id)
        .unwrap()
        .outgoing
        .unwrap()
        .bytes
        .len() as u64;
    pair.put(Side::A, station(&a, &p, false));
    let rounds = sync_rounds(&mut pair, 71);
    let rest: u64 = rounds
        .iter()
        .map(|(o, _)| o.stats.bundle_bytes_received)
        .sum();
    // The kept bundle once, then only the row asked for in full (a few hundred bytes).
    assert!(
        first + rest < total + 1000,
        "{first} + {rest} for a {total}-byte bundle"
    );
    drop(pair);
    assert_converged(&a, &b);
}

/// A `Write` into a shared buffer, for capture files in memory.
#[derive(Clone, Default)]
struct SharedBuf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for SharedBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn capture_holds_every_frame_as_on_air() {
    use crate::capture::{CaptureHeader, LinkFraming, Reader, Record, RecordKind, Writer};
    use crate::frame::framer::LinkFramer;
    for (profile, ber) in [("sim-transparent-9600", 2e-4), ("sim-kiss-1200", 0.0)] {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = stations(dir.path());
        edit(&a, 21, 10, 10, 100);
        edit(&b, 22, 10, 10, 100);
        let p = Profile::load(profile).unwrap();
        let link = SimLink::new(channel_config(&p, ber, None, 0.05, 12)).unwrap();
        let mut sb = station(&b, &p, true);
        let buf = SharedBuf::default();
        let header = CaptureHeader {
            start_unix_ms: 0,
            station: sb.store().station().id,
            framing: LinkFraming::Transparent,
            profile_name: profile.into(),
            profile_text: String::new(),
        };
        let mut w = Writer::new(buf.clone(), &header).unwrap();
        let start = link.now();
        sb.set_recorder(Box::new(move |at, kind, bytes| {
            let at_ms = at.duration_since(start).as_millis() as u64;
            w.write(&Record {
                at_ms,
                kind,
                bytes: bytes.to_vec(),
            })
            .unwrap();
        }));
        let mut pair = SimPair::new(link, station(&a, &p, false), sb);
        let rounds = sync_rounds(&mut pair, 90);
        let bytes = buf.0.lock().unwrap().clone();
        let (mut sent, mut received, mut corrected) = (0u64, 0u64, 0u64);
        let mut last_ms = 0;
        for r in Reader::new(&bytes[..]).unwrap() {
            let r = r.unwrap();
            assert!(r.at_ms >= last_ms);
            last_ms = r.at_ms;
            if r.kind == RecordKind::Note {
                continue;
            }
            // Each frame record decodes on its own, as `capture show` will do it.
            let mut f = LinkFramer::new(&p).unwrap();
            f.push(pair.link.now(), &r.bytes);
            let rx = f.next().expect("one frame");
            let d = rx.decoded.expect("decodes");
            assert_eq!(rx.bytes, r.bytes);
            assert!(f.next().is_none());
            match r.kind {
                RecordKind::Sent => sent += 1,
                _ => {
                    received += 1;
                    corrected += d.info.corrected_symbols as u64;
                }
            }
        }
        let b_sent: u64 = rounds
            .iter()
            .flat_map(|(_, ob)| ob)
            .map(|o| o.stats.frames_sent)
            .sum();
        assert_eq!(sent, b_sent, "{profile}");
        assert!(received > 3, "{profile}: {received} frames received");
        if ber > 0.0 {
            assert!(corrected > 0, "BER {ber} but nothing corrected");
        }
    }
}

#[test]
fn link_cut_for_a_minute_mid_transfer() {
    for profile in ["sim-kiss-1200", "sim-transparent-9600"] {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = stations(dir.path());
        edit(&a, 31, 20, 60, 200);
        edit(&b, 32, 20, 60, 200);
        let p = Profile::load(profile).unwrap();
        let mut pair = sim_pair(&p, &a, &b, 0.0, 0.0, 13);
        let now = pair.link.now();
        pair.station(Side::A)
            .unwrap()
            .start_sync(now, "B", 1)
            .unwrap();
        let end = pair.run_until(Duration::from_secs(3600), |p| {
            partial_len(p.stations[0].as_ref().unwrap(), &b) > 3000
        });
        assert_eq!(end, RunEnd::Done);
        pair.link.set_link_up(false);
        let back = pair.link.elapsed() + Duration::from_secs(60);
        let mut outs = Vec::new();
        pair.run_until(back, |p| {
            while let Some(o) = p.station(Side::A).unwrap().poll_outcome() {
                outs.push(o);
            }
            false
        });
        pair.link.set_link_up(true);
        // As `sync` does: call again if the link was lost after the peer had answered.
        for id in 2..6 {
            if outs.iter().any(|o| o.result.is_ok()) {
                break;
            }
            if !pair.station(Side::A).unwrap().has_sessions() {
                assert!(outs.last().is_some_and(|o| o.stats.frames_received > 0));
                let now = pair.link.now();
                pair.station(Side::A)
                    .unwrap()
                    .start_sync(now, "B", id)
                    .unwrap();
            }
            let end = pair.run_until(pair.link.elapsed() + Duration::from_secs(3600), |p| {
                while let Some(o) = p.station(Side::A).unwrap().poll_outcome() {
                    outs.push(o);
                }
                !p.station(Side::A).unwrap().has_sessions()
            });
            assert_eq!(end, RunEnd::Done);
        }
        assert!(outs.last().unwrap().result.is_ok(), "{profile}: {outs:?}");
        if pair
            .station(Side::A)
            .unwrap()
            .needs_another_round("B")
            .unwrap()
        {
            sync_rounds(&mut pair, 50);
        }
        let b_idle = pair.run_until(pair.link.elapsed() + Duration::from_secs(3600), |p| {
            !p.station(Side::B).unwrap().has_sessions()
        });
        assert_eq!(b_idle, RunEnd::Done);
        drop(pair);
        assert_converged(&a, &b);
    }
}

#[test]
fn a_call_nobody_answers_fails_as_peer_silent() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = stations(dir.path());
    let p = Profile::load("sim-kiss-1200").unwrap();
    let mut pair = sim_pair(&p, &a, &b, 0.0, 0.0, 14);
    drop(pair.take(Side::B));
    let now = pair.link.now();
    pair.station(Side::A)
        .unwrap()
        .start_sync(now, "B", 1)
        .unwrap();
    let mut outs = Vec::new();
    let end = pair.run_until(Duration::from_secs(3600), |p| {
        while let Some(o) = p.station(Side::A).unwrap().poll_outcome() {
            outs.push(o);
        }
        !outs.is_empty()
    });
    assert_eq!(end, RunEnd::Done);
    let o = &outs[0];
    assert_eq!(o.result, Err(crate::sync::SessionError::LinkLost));
    assert!(
        matches!(o.link_lost, Some(LinkLoss::NeverAnswered { .. })),
        "{o:?}"
    );
    assert_eq!(o.stats.frames_received, 0);
    // Six calls with doubling backoff: about two minutes at 1200 bit/s.
    let t = pair.link.elapsed();
    assert!(
        t > Duration::from_secs(60) && t < Duration::from_secs(180),
        "{t:?}"
    );
}

/// A fast, lossless KISS link so the tokio loop can run on the wall clock
/// in a test: timeouts come out in milliseconds.
const FAST_PROFILE: &str = r#"
name = "test-fast"
description = "test only: 1 Mbit/s, no key-up delay"
source = "tests"
framing = "kiss"
amateur = false
bitrate = 1000000
txdelay_ms = 0
turnaround_ms = 0
persist = 255
slottime_ms = 0
duplex = "half"
mtu = 512
max_frames_per_transmission = 6
kiss_tcp_port = 8001
[retry]
max_tries = 12
backoff_cap_ms = 2000
"#;

struct Quiet;

impl super::Observer for Quiet {
    fn note(&mut self, _: &str) {}
    fn progress(&mut self, _: &[super::SessionView]) {}
    fn outcome(&mut self, _: &Outcome) {}
}

#[test]
fn drive_syncs_over_an_in_process_stream() {
    use super::{drive, End, Mode, Options};
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = stations(dir.path());
    edit(&a, 41, 10, 10, 100);
    edit(&b, 42, 10, 10, 100);
    let p = Profile::parse(FAST_PROFILE, "test").unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (ea, eb) = rt.block_on(async {
        let (mut la, mut lb) = tokio::io::duplex(1 << 16);
        let mut sa = station(&a, &p, false);
        let mut sb = station(&b, &p, true);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (mut qa, mut qb) = (Quiet, Quiet);
        let opts = |mode| Options {
            mode,
            timeout: Some(Duration::from_secs(120)),
            link_status: None,
            tick: Duration::from_millis(100),
        };
        let b_side = drive(
            &mut lb,
            &mut sb,
            opts(Mode::Run {
                every: None,
                broadcast: false,
            }),
            async {
                let _ = stopped.await;
            },
            &mut qb,
        );
        let a_side = async {
            let end = drive(
                &mut la,
                &mut sa,
                opts(Mode::Sync {
                    peer: "B".into(),
                    budget: None,
                }),
                std::future::pending(),
                &mut qa,
            )
            .await;
            let _ = stop.send(());
            end
        };
        tokio::join!(a_side, b_side)
    });
    match ea.unwrap() {
        End::Synced { outcomes, complete } => {
            assert!(complete);
            assert!(outcomes.last().unwrap().result.is_ok());
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(eb.unwrap(), End::Shutdown));
    assert_converged(&a, &b);
}

#[test]
fn kiss_1200_with_30_percent_loss_converges() {
    converge("sim-kiss-1200", 0.0, None, 0.3, 15);
}

/// A's last transmission, the ack of B's last data, is lost (and A's next
/// ack too): B resends, A's closed session acks again (TIME-WAIT), and B
/// ends well within a few exchanges instead of retrying until it gives up.
#[test]
fn a_lost_final_ack_is_answered_by_the_closed_session() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = stations(dir.path());
    edit(&a, 21, 5, 5, 100);
    edit(&b, 22, 5, 5, 100);
    let p = Profile::load("sim-kiss-1200").unwrap();
    // The same two stations twice: a clean run counts A's transmissions, the
    // second loses A's last one (and the one after it).
    let (a2, b2) = copies(dir.path(), &a, &b);
    let run = |a: &Path, b: &Path, lose: Vec<u64>| {
        let mut pair = sim_pair(&p, a, b, 0.0, 0.0, 21);
        pair.lose_tx[0] = lose;
        let now = pair.link.now();
        pair.station(Side::A)
            .unwrap()
            .start_sync(now, "B", 70)
            .unwrap();
        let (oa, ob) = run_sync(&mut pair, Duration::from_secs(3600));
        (oa, ob, pair.tx_count[0], pair.link.elapsed())
    };
    let (_, ob, a_txs, clean_end) = run(&a, &b, Vec::new());
    assert!(ob[0].result.is_ok(), "{:?}", ob[0].result);
    assert_eq!(ob[0].stats.retransmissions, 0);
    let (oa, ob, _, end) = run(&a2, &b2, vec![a_txs - 1, a_txs]);
    assert!(oa[0].result.is_ok(), "{:?}", oa[0].result);
    let o = &ob[0];
    assert!(o.result.is_ok() && o.link_lost.is_none(), "{o:?}");
    assert!(o.stats.retransmissions > 0);
    // Two resends after their backoff, not the ARQ's give-up (minutes).
    let late = end - clean_end;
    assert!(late < Duration::from_secs(60), "B ended {late:?} late");
    assert_converged(&a2, &b2);
}

/// B's confirmations at the end of a sync never reach A (B's last
/// transmissions are all lost): A's session does not end well. The next
/// session recovers everything (issue 9 saw a station stuck for good after a
/// lost confirmation): both converge and nothing stays pending.
#[test]
fn a_lost_confirmation_is_recovered_by_the_next_session() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = stations(dir.path());
    edit(&a, 31, 6, 4, 100);
    edit(&b, 32, 6, 4, 100);
    let p = Profile::load("sim-kiss-1200").unwrap();
    let (a2, b2) = copies(dir.path(), &a, &b);
    let run = |a: &Path, b: &Path, lose: Vec<u64>| {
        let mut pair = sim_pair(&p, a, b, 0.0, 0.0, 31);
        pair.lose_tx[1] = lose;
        let now = pair.link.now();
        pair.station(Side::A)
            .unwrap()
            .start_sync(now, "B", 90)
            .unwrap();
        let (oa, _) = run_sync(&mut pair, Duration::from_secs(7200));
        (oa, pair.tx_count[1])
    };
    let (_, b_txs) = run(&a, &b, Vec::new());
    // Everything B sends from its second-to-last transmission on is lost.
    let (oa, _) = run(&a2, &b2, (b_txs - 2..b_txs + 200).collect());
    assert!(
        oa.iter()
            .all(|o| o.result.is_err() || o.link_lost.is_some())
            || {
                let sa = Store::open(&a2).unwrap();
                sa.pending_for(&Store::open(&b2).unwrap().station().id)
                    .unwrap()
                    > 0
            },
        "the lost confirmations made no difference: {oa:?}"
    );
    sync_once(&a2, &b2, 33);
    assert_converged(&a2, &b2);
    let (sa, sb) = (Store::open(&a2).unwrap(), Store::open(&b2).unwrap());
    assert_eq!(sa.pending_for(&sb.station().id).unwrap(), 0);
    assert_eq!(sb.pending_for(&sa.station().id).unwrap(), 0);
}

/// Copies of stations `a` and `b` in `dir/copy`, to run the same sync twice.
fn copies(dir: &Path, a: &Path, b: &Path) -> (PathBuf, PathBuf) {
    let copy = dir.join("copy");
    std::fs::create_dir(&copy).unwrap();
    let to = |f: &Path| {
        let t = copy.join(f.file_name().unwrap());
        crate::store::copy_station(f, &t).unwrap();
        t
    };
    (to(a), to(b))
}

fn sql(path: &Path, text: &str) {
    rusqlite::Connection::open(path)
        .unwrap()
        .execute_batch(text)
        .unwrap();
}

fn one_value(path: &Path, q: &str) -> rusqlite::types::Value {
    rusqlite::Connection::open(path)
        .unwrap()
        .query_row(q, [], |r| r.get(0))
        .unwrap()
}

/// One call from A to B over KISS 1200 on virtual time.
fn sync_once(a: &Path, b: &Path, seed: u64) {
    let p = Profile::load("sim-kiss-1200").unwrap();
    let mut pair = sim_pair(&p, a, b, 0.0, 0.05, seed);
    let rounds = sync_rounds(&mut pair, 0x4000 + seed as u16);
    assert!(rounds.iter().all(|(o, _)| o.result.is_ok()), "{rounds:?}");
}

#[test]
fn conflict_policies_decide_over_radio() {
    use crate::delta::merge::Policy;
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = stations(dir.path());
    let hq = Store::open(&a).unwrap().station().id;
    for path in [&a, &b] {
        let mut s = Store::open(path).unwrap();
        s.set_policy("hms_hospital", Policy::Station(hq)).unwrap();
        s.set_policy(
            "inv_inv_item",
            Policy::Sql("a.quantity > b.quantity".into()),
        )
        .unwrap();
    }
    let hospital = "SELECT uuid FROM hms_hospital ORDER BY uuid LIMIT 1";
    let item = "SELECT uuid FROM inv_inv_item ORDER BY uuid LIMIT 1";
    // The field station's clock is years ahead; the hub's version still wins.
    sql(&a, &format!("UPDATE hms_hospital SET status = 'hub says open', modified_on = '2025-01-01T00:00:00.000Z' WHERE uuid = ({hospital})"));
    sql(&b, &format!("UPDATE hms_hospital SET status = 'field says closed', modified_on = '2099-01-01T00:00:00.000Z' WHERE uuid = ({hospital})"));
    // The higher stock count wins, whatever the times.
    sql(&a, &format!("UPDATE inv_inv_item SET quantity = 5, modified_on = '2099-01-01T00:00:00.000Z' WHERE uuid = ({item})"));
    sql(&b, &format!("UPDATE inv_inv_item SET quantity = 50, modified_on = '2025-01-01T00:00:00.000Z' WHERE uuid = ({item})"));
    sync_once(&a, &b, 21);
    for p in [&a, &b] {
        assert_eq!(
            one_value(
                p,
                &format!("SELECT status FROM hms_hospital WHERE uuid = ({hospital})")
            ),
            rusqlite::types::Value::Text("hub says open".into())
        );
        assert_eq!(
            one_value(
                p,
                &format!("SELECT quantity FROM inv_inv_item WHERE uuid = ({item})")
            ),
            rusqlite::types::Value::Integer(50)
        );
    }
    assert_converged(&a, &b);
    let mut lost = Store::open(&b).unwrap().conflicts().unwrap();
    lost.extend(Store::open(&a).unwrap().conflicts().unwrap());
    assert!(lost
        .iter()
        .any(|c| c.table == "hms_hospital" && c.policy.starts_with("station:")));
    assert!(lost
        .iter()
        .any(|c| c.table == "inv_inv_item" && c.policy.starts_with("sql:")));
}

#[test]
fn a_station_with_a_new_column_syncs_over_radio_and_the_values_follow() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = stations(dir.path());
    let person = "SELECT uuid FROM pr_person ORDER BY uuid LIMIT 1";
    sql(&a, "ALTER TABLE pr_person ADD COLUMN blood_group TEXT");
    sql(&a, &format!("UPDATE pr_person SET blood_group = 'O+', job_title = 'medic', modified_on = '2025-06-01T00:00:00.000Z' WHERE uuid = ({person})"));
    sync_once(&a, &b, 22);
    assert_eq!(
        one_value(
            &b,
            &format!("SELECT job_title FROM pr_person WHERE uuid = ({person})")
        ),
        rusqlite::types::Value::Text("medic".into())
    );
    // B upgrades too: A's values written before arrive (the backfill may take
    // the session after the one that shows A the new layout).
    sql(&b, "ALTER TABLE pr_person ADD COLUMN blood_group TEXT");
    sync_once(&a, &b, 23);
    sync_once(&a, &b, 24);
    assert_eq!(
        one_value(
            &b,
            &format!("SELECT blood_group FROM pr_person WHERE uuid = ({person})")
        ),
        rusqlite::types::Value::Text("O+".into())
    );
    assert_converged(&a, &b);
}

#[test]
fn hf_300_bit_s_converges_with_fades() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = stations(dir.path());
    edit(&a, 31, 10, 4, 60);
    edit(&b, 32, 10, 3, 60);
    // The HF profile (callsign checks off: these stations have none), over chansim's model at
    // 300 bit/s with 10 % of frames lost to fades.
    let mut p = Profile::load("direwolf-300-hf").unwrap();
    p.amateur = false;
    let mut pair = sim_pair(&p, &a, &b, 0.0, 0.1, 33);
    let rounds = sync_rounds(&mut pair, 0x3000);
    // A few hundred bytes each way still take tens of seconds on air at 300 bit/s.
    let air = rounds[0].0.stats.airtime;
    assert!(air > Duration::from_secs(10), "{air:?}");
    drop(pair);
    assert_converged(&a, &b);
}

/// Verified sync over the radio: a sync between equal stations is recorded as
/// verified at both; a station restored from a backup loses rows it wrote, which
/// its peer holds but never sends back to their writer, so the next sync moves
/// nothing and both change logs are content. The fingerprints are not: the sync
/// ends NOT verified, the log says so as a warning and `status` keeps it.
#[test]
fn a_restored_station_syncs_but_is_not_verified() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = stations(dir.path());
    let backup = dir.path().join("b-backup.sqlite");
    crate::store::copy_station(&b, &backup).unwrap();
    edit(&b, 31, 6, 4, 60);
    let p = Profile::load("sim-transparent-9600").unwrap();
    let mut pair = sim_pair(&p, &a, &b, 0.0, 0.0, 31);
    let rounds = sync_rounds(&mut pair, 0x5100);
    let first = rounds.last().unwrap().0.result.clone().unwrap();
    assert_eq!(first.verified(), Some(true));
    // B's laptop is restored from the copy taken before its edits.
    drop(pair.take(Side::B));
    crate::store::copy_station(&backup, &b).unwrap();
    pair.put(Side::B, station(&b, &p, true));
    let rounds = sync_rounds(&mut pair, 0x5200);
    let (oa, ob) = rounds.last().unwrap();
    let sa = oa.result.clone().unwrap();
    assert_eq!(sa.bundle_bytes_sent + sa.bundle_bytes_received, 0);
    assert_eq!(sa.verified(), Some(false));
    let sb = ob.last().unwrap().result.clone().unwrap();
    assert_eq!(sb.verified(), Some(false));
    drop(pair);
    let sa = Store::open(&a).unwrap();
    let peer_b = sa.peer_by_name("B").unwrap().unwrap();
    assert!(peer_b.verified_at.is_some(), "the first sync verified");
    assert!(peer_b.differs_since.is_some(), "the second did not");
    assert!(sa
        .log()
        .unwrap()
        .iter()
        .any(|l| l.result == "warning" && l.message.contains("NOT verified")));
    let sb = Store::open(&b).unwrap();
    assert!(sb
        .peer_by_name("A")
        .unwrap()
        .unwrap()
        .differs_since
        .is_some());
    drop((sa, sb));
    // The next sync reconciles: A sends back the rows B lost, and both verify.
    let mut pair = sim_pair(&p, &a, &b, 0.0, 0.0, 32);
    let rounds = sync_rounds(&mut pair, 0x5300);
    let s = rounds[0].0.result.clone().unwrap();
    // B lost 4 inserts and 6 updates: each update is two versions, one per side.
    assert_eq!(s.differences, Some(16));
    assert_eq!(s.verified(), Some(true));
    drop(pair);
    assert_converged(&a, &b);
}

/// First contact between stations set up apart from copies of the same data:
/// reconciliation finds the rows that differ, only those travel, the rows
/// equal on both sides are never conflicts, and the sync verifies.
#[test]
fn first_contact_sends_only_the_differences() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = crate::testkit::separate_pair(dir.path());
    edit(&a, 41, 12, 5, 60);
    edit(&b, 42, 8, 3, 60);
    let rows = snapshot(&a).len();
    let p = Profile::load("sim-transparent-9600").unwrap();
    let mut pair = sim_pair(&p, &a, &b, 0.0, 0.0, 41);
    let rounds = sync_rounds(&mut pair, 0x5400);
    assert_eq!(rounds.len(), 1, "one session");
    let s = rounds[0].0.result.clone().unwrap();
    assert_eq!(s.verified(), Some(true));
    let found = s.differences.unwrap();
    // Each updated row is two items (one version per side), each insert one.
    assert!((8..=2 * 20 + 8).contains(&found), "{found}");
    let bytes = s.bundle_bytes_sent + s.bundle_bytes_received;
    assert!(bytes < 40 * 200, "{bytes} bundle bytes for {rows} rows");
    drop(pair);
    assert_converged(&a, &b);
    let conflicts = Store::open(&a).unwrap().conflicts().unwrap().len();
    assert!(
        conflicts <= 20,
        "{conflicts} conflicts: only rows both sides hold apart"
    );
}

/// Divergence made behind radiosync's back between stations that synced and
/// verified: the next syncs find it (the first ends unverified, or capture's
/// own check catches it) and repair it, and the pair verifies again.
fn diverge_and_repair(tamper: impl FnOnce(&Path, &Path), seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = stations(dir.path());
    edit(&a, seed, 5, 2, 40);
    let p = Profile::load("sim-transparent-9600").unwrap();
    let mut pair = sim_pair(&p, &a, &b, 0.0, 0.0, seed);
    sync_rounds(&mut pair, 0x5500);
    drop(pair);
    tamper(&a, &b);
    let mut verified = None;
    for round in 0..3u16 {
        let mut pair = sim_pair(&p, &a, &b, 0.0, 0.0, seed + 1 + round as u64);
        let rounds = sync_rounds(&mut pair, 0x5600 + 0x10 * round);
        verified = rounds.last().unwrap().0.result.clone().unwrap().verified();
        if verified == Some(true) {
            break;
        }
    }
    assert_eq!(verified, Some(true));
    assert_converged(&a, &b);
}

#[test]
fn drift_from_writes_capture_missed_is_repaired() {
    diverge_and_repair(
        |a, _| {
            let conn = rusqlite::Connection::open(a).unwrap();
            for name in crate::store::schema::trigger_names("pr_person") {
                conn.execute(&format!("DROP TRIGGER IF EXISTS \"{name}\""), [])
                    .unwrap();
            }
            conn.execute(
                "UPDATE pr_person SET job_title = 'unseen', modified_on = '2025-07-01T00:00:00.000Z'
                 WHERE uuid = (SELECT uuid FROM pr_person ORDER BY uuid LIMIT 1 OFFSET 3)",
                [],
            )
            .unwrap();
        },
        61,
    );
}

#[test]
fn drift_from_a_lost_change_log_entry_is_repaired() {
    diverge_and_repair(
        |a, _| {
            let conn = rusqlite::Connection::open(a).unwrap();
            conn.execute(
                "UPDATE pr_person SET job_title = 'logged', modified_on = '2025-07-02T00:00:00.000Z'
                 WHERE uuid = (SELECT uuid FROM pr_person ORDER BY uuid LIMIT 1 OFFSET 4)",
                [],
            )
            .unwrap();
            drop(conn);
            // Capture records it; then its change-log entry is lost.
            Store::open(a).unwrap().check_capture().unwrap();
            let conn = rusqlite::Connection::open(a).unwrap();
            conn.execute(
                "DELETE FROM rs_row WHERE tbl = 'pr_person'
                 AND uuid = (SELECT uuid FROM pr_person ORDER BY uuid LIMIT 1 OFFSET 4)",
                [],
            )
            .unwrap();
        },
        62,
    );
}

#[test]
fn drift_from_a_raised_vector_is_repaired() {
    diverge_and_repair(
        |a, b| {
            edit(a, 64, 4, 1, 40);
            Store::open(a).unwrap().check_capture().unwrap();
            // B claims A's changes it never got.
            let a_id = Store::open(a).unwrap().station().id;
            let conn = rusqlite::Connection::open(b).unwrap();
            conn.execute(
                "UPDATE rs_vector SET seq = seq + 100 WHERE origin = ?1",
                [a_id.0.to_vec()],
            )
            .unwrap();
        },
        63,
    );
}
