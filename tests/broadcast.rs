//! One transmission for many (issue 9): the hub sends what its field stations
//! lack once, as a signed broadcast; each station keeps the pieces it heard,
//! and each one's next session sends only the pieces it missed.

use std::path::PathBuf;

use radiosync::frame::framer::LinkFramer;
use radiosync::frame::{Frame, FrameKind, Route};
use radiosync::profile::Profile;
use radiosync::store::Store;
use radiosync::sync::cast::CastPiece;
use radiosync::testkit::{hub_brings_up_to_date, hub_with_news, id_of, insert_posts, snapshot};

const FIELDS: [&str; 3] = ["A", "B", "C"];

fn all_equal(paths: &[PathBuf]) -> bool {
    let all: Vec<_> = paths.iter().map(|p| snapshot(p)).collect();
    all.windows(2).all(|w| w[0] == w[1])
}

/// The hub owes no field station anything: a station that took the
/// broadcast from the air and got no bundle in its session is confirmed by
/// the session's verification.
fn nothing_pending(paths: &[PathBuf]) {
    let hub = Store::open(&paths[0]).unwrap();
    for name in FIELDS {
        let p = hub.peer_by_name(name).unwrap().unwrap();
        assert_eq!(hub.pending_for(&p.id).unwrap(), 0, "{name}");
    }
}

fn copies(dir: &std::path::Path) -> Vec<PathBuf> {
    let (hub, fields) = hub_with_news(dir, &FIELDS, 20, 40, 80);
    std::iter::once(hub).chain(fields).collect()
}

#[test]
fn one_broadcast_serves_three_stations_and_sessions_send_only_what_was_missed() {
    let p = Profile::load("sim-kiss-1200").unwrap();
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (cast_paths, sep_paths) = (copies(d1.path()), copies(d2.path()));
    let cast = hub_brings_up_to_date(&p, &cast_paths, &FIELDS, true, 0.0, 0.05, 5);
    let separate = hub_brings_up_to_date(&p, &sep_paths, &FIELDS, false, 0.0, 0.05, 5);
    assert!(all_equal(&cast_paths) && all_equal(&sep_paths));
    nothing_pending(&cast_paths);
    nothing_pending(&sep_paths);
    eprintln!("broadcast: {cast:?}\nseparate: {separate:?}");
    // Each session after the broadcast sent only what its station missed:
    // never a whole bundle again.
    let whole = separate.outcomes[0]
        .result
        .as_ref()
        .unwrap()
        .bundle_bytes_sent;
    for o in &cast.outcomes {
        let s = o.result.as_ref().unwrap();
        assert!(s.bundle_bytes_sent < whole / 2, "{s:?}");
        assert_eq!(s.verified(), Some(true));
    }
    assert!(
        cast.airtime.as_secs_f64() < 0.7 * separate.airtime.as_secs_f64(),
        "{:?} against {:?}",
        cast.airtime,
        separate.airtime
    );
}

#[test]
fn pieces_lost_on_air_are_resumed_in_the_next_session() {
    // 30 % frame loss: no station hears every piece.
    let p = Profile::load("sim-kiss-1200").unwrap();
    let d = tempfile::tempdir().unwrap();
    let paths = copies(d.path());
    let run = hub_brings_up_to_date(&p, &paths, &FIELDS, true, 0.0, 0.3, 9);
    assert!(all_equal(&paths));
    nothing_pending(&paths);
    assert!(run.heard_whole < FIELDS.len(), "{run:?}");
    for o in &run.outcomes {
        let s = o.result.as_ref().unwrap();
        assert_eq!(s.verified(), Some(true), "{s:?}");
    }
}

#[test]
fn a_broadcast_is_checked_before_anything_is_applied() {
    let d = tempfile::tempdir().unwrap();
    let paths = copies(d.path());
    let hub = Store::open(&paths[0]).unwrap();
    let names: Vec<String> = FIELDS.iter().map(|s| s.to_string()).collect();
    let cast = hub.export_cast(&names).unwrap();
    assert_eq!(cast.peers, names);
    eprintln!("cast of {} rows: {} bytes", cast.rows, cast.bytes.len());
    assert!(cast.rows >= 55, "{}", cast.rows);
    let mut a = Store::open(&paths[1]).unwrap();
    let before = a.synced_rows().unwrap();
    // Any flipped bit: refused, nothing changed.
    for at in [30, cast.bytes.len() / 2, cast.bytes.len() - 1] {
        let mut bad = cast.bytes.clone();
        bad[at] ^= 0x10;
        assert!(a.import_cast(&bad, &id_of("H")).is_err());
    }
    // Signed by the hub but brought by another station: refused.
    assert!(a.import_cast(&cast.bytes, &id_of("B")).is_err());
    assert_eq!(a.synced_rows().unwrap(), before);
    let rep = a.import_cast(&cast.bytes, &id_of("H")).unwrap();
    assert_eq!(rep.applied, cast.rows);
    assert_eq!(a.synced_rows().unwrap(), hub.synced_rows().unwrap());
    // It held the base: it takes the claim, so the hub owes it nothing.
    assert!(a.vector().unwrap().get(&id_of("H")) >= hub.vector().unwrap().get(&id_of("H")));
}

#[test]
fn a_station_below_the_base_applies_the_rows_but_not_the_claim() {
    let d = tempfile::tempdir().unwrap();
    let paths = copies(d.path());
    // The hub believes A holds more of C's changes than it does (the
    // broadcast is made against that): A must not take the claim.
    insert_posts(&paths[3], 5, 3, 40);
    let c_vector = Store::open(&paths[3]).unwrap().vector().unwrap();
    let hub = Store::open(&paths[0]).unwrap();
    for name in FIELDS {
        let peer = hub.peer_by_name(name).unwrap().unwrap();
        let mut v = peer.confirmed.clone();
        v.merge(&c_vector);
        hub.note_peer_vector(&peer.id, &v).unwrap();
    }
    let names: Vec<String> = FIELDS.iter().map(|s| s.to_string()).collect();
    let cast = hub.export_cast(&names).unwrap();
    let mut a = Store::open(&paths[1]).unwrap();
    let rep = a.import_cast(&cast.bytes, &id_of("H")).unwrap();
    assert_eq!(rep.applied, cast.rows);
    assert_eq!(a.vector().unwrap().get(&id_of("C")), 0);
    drop(hub);
}

/// Broadcast pieces framed for `profile`, as the hub would send them.
fn framed(profile: &Profile, pieces: &[CastPiece]) -> Vec<Vec<u8>> {
    let framer = LinkFramer::new(profile).unwrap();
    pieces
        .iter()
        .map(|p| {
            let frame = Frame {
                kind: FrameKind::Control,
                session: 0,
                seq: 0,
                payload: p.to_payload(),
                auth_tag: None,
                route: Some(Route {
                    to: 0xffff,
                    from: id_of("H").short_address(),
                }),
            };
            framer.encode(&frame, None).unwrap()
        })
        .collect()
}

#[test]
fn a_forged_piece_neither_spoils_nor_blocks_a_broadcast_being_heard() {
    let d = tempfile::tempdir().unwrap();
    let paths = copies(d.path());
    let names: Vec<String> = FIELDS.iter().map(|s| s.to_string()).collect();
    let cast = Store::open(&paths[0]).unwrap().export_cast(&names).unwrap();
    let p = Profile::load("sim-transparent-9600").unwrap();
    let key = radiosync::codec::station_key(&id_of("H"));
    let pieces = CastPiece::cut(key, cast.id, &cast.bytes, 200);
    assert!(pieces.len() >= 4);
    let frames = framed(&p, &pieces);
    let mut a = radiosync::testkit::station(&paths[1], &p, true);
    let now = std::time::Instant::now();
    a.handle_bytes(now, &frames[0]);
    a.handle_bytes(now, &frames[2]);
    // Forged: the same broadcast with another length, and one with bad bytes
    // where a real piece goes (caught by the id once whole).
    let forged = [
        CastPiece {
            total: cast.bytes.len() as u64 + 7,
            ..pieces[1].clone()
        },
        CastPiece {
            bytes: vec![0x55; pieces[1].bytes.len()],
            ..pieces[1].clone()
        },
    ];
    let forged_frames = framed(&p, &forged);
    a.handle_bytes(now, &forged_frames[0]);
    for f in &frames[1..] {
        a.handle_bytes(now, f);
    }
    let mut notes = Vec::new();
    while let Some(n) = a.poll_note() {
        notes.push(n);
    }
    assert!(notes.iter().any(|n| n.contains("applied")), "{notes:?}");
    drop(a);
    assert_eq!(snapshot(&paths[1]), snapshot(&paths[0]));
    // Bad bytes in a gap: the whole fails its id, nothing is applied, and
    // the partial is gone (the next session brings the rows).
    let mut b = radiosync::testkit::station(&paths[2], &p, true);
    let before = snapshot(&paths[2]);
    b.handle_bytes(now, &forged_frames[1]);
    for (k, f) in frames.iter().enumerate() {
        if k != 1 {
            b.handle_bytes(now, f);
        }
    }
    let mut notes = Vec::new();
    while let Some(n) = b.poll_note() {
        notes.push(n);
    }
    assert!(
        notes.iter().any(|n| n.contains("do not match its id")),
        "{notes:?}"
    );
    let st = b.store().transfer_state(&id_of("H")).unwrap();
    assert!(st.incoming.is_none());
    drop(b);
    assert_eq!(snapshot(&paths[2]), before);
}

/// Keeps the driver's notes.
#[derive(Default)]
struct Notes(Vec<String>);

impl radiosync::daemon::Observer for Notes {
    fn note(&mut self, n: &str) {
        self.0.push(n.to_string());
    }
    fn progress(&mut self, _: &[radiosync::daemon::SessionView]) {}
    fn outcome(&mut self, _: &radiosync::daemon::Outcome) {}
}

/// `run --every --broadcast` at the hub: its round broadcasts what the field
/// stations lack, then calls each; all converge, and the calls carried no
/// bundle of the hub's rows again (every station heard the broadcast whole).
#[test]
fn a_hub_round_broadcasts_before_it_calls() {
    hub_round(std::time::Duration::from_secs(3600));
}

/// Rounds shorter than the broadcast: it is not queued again every round,
/// and the calls still come.
#[test]
fn rounds_shorter_than_the_broadcast_still_call() {
    hub_round(std::time::Duration::from_secs(5));
}

fn hub_round(every: std::time::Duration) {
    use radiosync::daemon::{Driver, Mode};
    use radiosync::sim::net::{NetConfig, SimNet};
    use radiosync::testkit::station;
    use std::time::Duration;
    let d = tempfile::tempdir().unwrap();
    let paths = copies(d.path());
    let p = Profile::load("sim-kiss-1200").unwrap();
    let stations = paths.iter().map(|x| station(x, &p, true)).collect();
    let mut sim = SimNet::new(NetConfig::for_profile(&p, 0.0, 0.0, 3), stations);
    let mode = Mode::Run {
        every: Some(every),
        broadcast: true,
    };
    let now = sim.now();
    let mut notes = Notes::default();
    let mut driver = Driver::start(
        mode,
        None,
        Duration::from_secs(1),
        now,
        &mut sim.stations[0],
    )
    .unwrap();
    let mut calls_done = 0;
    let end = sim.run_until(Duration::from_secs(1800), |s| {
        let now = s.now();
        assert!(driver
            .step(now, &mut s.stations[0], &mut notes)
            .unwrap()
            .is_none());
        calls_done = notes
            .0
            .iter()
            .filter(|n| n.contains("finished with"))
            .count();
        // Rounds shorter than a session keep calling: the first calls suffice.
        let quiet =
            every < Duration::from_secs(60) || s.stations.iter().all(|st| !st.has_sessions());
        calls_done >= FIELDS.len() && quiet
    });
    assert_eq!(end, radiosync::sim::pair::RunEnd::Done, "{:?}", notes.0);
    let casts = notes
        .0
        .iter()
        .filter(|n| n.starts_with("broadcast "))
        .count();
    assert_eq!(casts, 1, "{:?}", notes.0);
    drop(sim);
    assert!(all_equal(&paths));
    nothing_pending(&paths);
    let hub = Store::open(&paths[0]).unwrap();
    let log = hub.log().unwrap();
    let finished: Vec<_> = log
        .iter()
        .filter(|e| e.message.starts_with("radio sync finished"))
        .collect();
    assert!(finished.len() >= FIELDS.len());
    assert!(
        finished
            .iter()
            .all(|e| e.message.contains(" 0 bundle bytes sent")),
        "{finished:?}"
    );
}

/// A broadcast held back by a session never leaves a past deadline behind
/// (the daemon's loop would spin until the session ends).
#[test]
fn a_broadcast_held_back_by_a_session_sets_no_past_deadline() {
    let d = tempfile::tempdir().unwrap();
    let paths = copies(d.path());
    // Enough news for several transmissions.
    insert_posts(&paths[0], 9, 150, 200);
    let p = Profile::load("sim-kiss-1200").unwrap();
    let mut hub = radiosync::testkit::station(&paths[0], &p, true);
    let t0 = std::time::Instant::now();
    let names: Vec<String> = FIELDS.iter().map(|s| s.to_string()).collect();
    hub.start_cast(t0, &names).unwrap();
    assert!(hub.poll_transmit(t0).is_some());
    hub.start_sync(t0, "A", 0x77).unwrap();
    let mut now = t0;
    for k in 1..200u64 {
        now = t0 + std::time::Duration::from_millis(250 * k);
        hub.handle_timeout(now);
        while hub.poll_transmit(now).is_some() {}
        if let Some(t) = hub.poll_timeout() {
            assert!(
                t > now,
                "deadline {:?} in the past at {:?}",
                t - t0,
                now - t0
            );
        }
    }
    assert!(now > t0);
}
