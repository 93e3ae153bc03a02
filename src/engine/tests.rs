//! Engine unit tests on simulated time: construction rules, session ids,
//! AX.25 addressing, and two engines talking over a lossless wire.

use std::time::{Duration, Instant};

use super::*;
use crate::delta::{SchemaFingerprint, StationId, VersionVector};
use crate::frame::kiss::KissDeframer;
use crate::sync::{LocalInfo, PeerState};

fn local(b: u8, call: &str) -> LocalInfo {
    LocalInfo {
        station: StationId([b; 16]),
        callsign: call.into(),
        schema: SchemaFingerprint(42),
        dict_id: 0,
        vector: VersionVector::default(),
        fingerprint: 0,
    }
}

fn cfg(profile: &str, me: Option<&str>, peer: Option<&str>, session: Option<u16>) -> EngineConfig {
    EngineConfig {
        profile: Profile::load(profile).unwrap(),
        local_callsign: me.map(|c| c.parse().unwrap()),
        peer_callsign: peer.map(|c| c.parse().unwrap()),
        session_id: session,
        local_address: None,
        peer_address: None,
    }
}

#[test]
fn amateur_profile_refuses_without_callsigns() {
    let e = Engine::initiate(
        cfg("direwolf-1200", None, Some("N0CALL"), Some(1)),
        local(1, ""),
        StationId([2; 16]),
        PeerState::default(),
    );
    assert!(matches!(e, Err(EngineError::NoCallsign { .. })));
    let e = Engine::initiate(
        cfg("direwolf-1200", Some("N0CALL"), None, Some(1)),
        local(1, "N0CALL"),
        StationId([2; 16]),
        PeerState::default(),
    );
    assert!(matches!(e, Err(EngineError::NoPeerCallsign { .. })));
    let e = Engine::respond(cfg("direwolf-1200", None, None, None), local(1, ""));
    assert!(matches!(e, Err(EngineError::NoCallsign { .. })));
    let e = Engine::initiate(
        cfg("sim-kiss-1200", None, None, None),
        local(1, ""),
        StationId([2; 16]),
        PeerState::default(),
    );
    assert!(matches!(e, Err(EngineError::NoSessionId)));
}

/// Runs two engines over a lossless wire (each transmission arrives 500 ms
/// after it is handed over) until both are done; the shell answers store
/// work with a fixed 3000-byte bundle each way and no real store.
fn talk(a: &mut Engine, b: &mut Engine) {
    let mut now = Instant::now();
    for _ in 0..10_000 {
        let mut sent = Vec::new();
        for (i, e) in [&mut *a, &mut *b].into_iter().enumerate() {
            if e.poll_timeout().is_some_and(|t| t <= now) {
                e.handle_timeout(now);
            }
            while let Some(ev) = e.poll_event() {
                let EngineEvent::Session(s) = ev else {
                    continue;
                };
                let sess = e.session_mut();
                match s {
                    SessionEvent::PeerHello { .. } if i == 1 => {
                        sess.accept_peer(PeerState::default()).unwrap()
                    }
                    SessionEvent::NeedBundleFor { .. } => {
                        sess.bundle_ready(vec![i as u8; 3000]).unwrap()
                    }
                    SessionEvent::BundleArrived { .. } => {
                        sess.bundle_committed(VersionVector::default()).unwrap()
                    }
                    _ => {}
                }
            }
            if let Some(tx) = e.poll_transmit(now) {
                sent.push((i, tx));
            }
        }
        if a.is_done() && b.is_done() {
            return;
        }
        let arrive = now + Duration::from_millis(500);
        for (i, tx) in &sent {
            let to: &mut Engine = if *i == 0 { &mut *b } else { &mut *a };
            to.handle_bytes(arrive, tx);
        }
        let next = [a.poll_timeout(), b.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        now = match (sent.is_empty(), next) {
            (false, _) | (true, None) => arrive,
            (true, Some(t)) => t.max(now),
        };
    }
    panic!("engines did not finish");
}

#[test]
fn two_engines_sync_over_ax25_kiss() {
    let mut a = Engine::initiate(
        cfg(
            "direwolf-1200",
            Some("AA1AA"),
            Some("BB2BB-3"),
            Some(0x5151),
        ),
        local(1, "AA1AA"),
        StationId([2; 16]),
        PeerState::default(),
    )
    .unwrap();
    let mut b = Engine::respond(
        cfg("direwolf-1200", Some("BB2BB-3"), None, None),
        local(2, "BB2BB-3"),
    )
    .unwrap();
    // A's first transmission is a KISS frame with an AX.25 UI header to BB2BB-3.
    let tx = a.poll_transmit(Instant::now()).unwrap();
    let mut d = KissDeframer::default();
    d.push(&tx);
    let kf = d.next().unwrap().unwrap();
    let r = crate::frame::link::decode_kiss(&kf, None, true).unwrap();
    let (src, dst) = r.ax25.unwrap();
    assert_eq!(
        (src.to_string(), dst.to_string()),
        ("AA1AA".into(), "BB2BB-3".into())
    );
    assert_eq!(r.frame.session, 0x5151);
    b.handle_bytes(Instant::now(), &tx);
    assert_eq!(b.session_id(), Some(0x5151));
    assert_eq!(
        b.peer_callsign().map(|c| c.to_string()).as_deref(),
        Some("AA1AA")
    );
    talk(&mut a, &mut b);
    assert!(a.session().is_finished() && b.session().is_finished());
    assert_eq!(a.stats().bundle_bytes_received, 3000);
    assert_eq!(b.stats().bundle_bytes_received, 3000);
    assert!(a.stats().airtime > Duration::from_secs(1));
}

#[test]
fn frames_of_other_sessions_and_stations_are_ignored() {
    let mut a = Engine::initiate(
        cfg("sim-transparent-9600", None, None, Some(1)),
        local(1, ""),
        StationId([2; 16]),
        PeerState::default(),
    )
    .unwrap();
    let mut other = Engine::initiate(
        cfg("sim-transparent-9600", None, None, Some(2)),
        local(3, ""),
        StationId([1; 16]),
        PeerState::default(),
    )
    .unwrap();
    let now = Instant::now();
    let tx = other.poll_transmit(now).unwrap();
    a.handle_bytes(now, &tx);
    assert_eq!(a.stats().foreign_frames, 1);
    assert_eq!(a.stats().frames_received, 1);
    // Garbage and a damaged frame: counted, nothing delivered.
    let mut bad = tx.clone();
    bad[20] ^= 0xff;
    bad[21] ^= 0xff;
    bad[40..60].fill(0);
    a.handle_bytes(now, &bad);
    a.handle_timeout(now + Duration::from_secs(2));
    assert!(a.stats().crc_failures + a.stats().fec_corrections > 0);
    while let Some(ev) = a.poll_event() {
        assert!(!matches!(
            ev,
            EngineEvent::Session(SessionEvent::PeerHello { .. })
        ));
    }
    // Amateur KISS: a frame to another callsign is not ours.
    let mut x = Engine::initiate(
        cfg("direwolf-1200", Some("AA1AA"), Some("CC3CC"), Some(9)),
        local(1, "AA1AA"),
        StationId([2; 16]),
        PeerState::default(),
    )
    .unwrap();
    let mut y = Engine::respond(
        cfg("direwolf-1200", Some("BB2BB"), None, None),
        local(2, "BB2BB"),
    )
    .unwrap();
    let tx = x.poll_transmit(now).unwrap();
    y.handle_bytes(now, &tx);
    assert_eq!(y.stats().foreign_frames, 1);
    assert_eq!(y.session_id(), None);
}

/// "Unknown session" from a peer that answered before ends the session as a
/// lost link; before the peer was heard (our call may not have reached it) it
/// changes nothing, and a responder's frames of another session do not count.
#[test]
fn unknown_session_ends_a_session_the_peer_had_answered() {
    let p = "sim-transparent-9600";
    let mut a = Engine::initiate(
        cfg(p, None, None, Some(7)),
        local(1, ""),
        StationId([2; 16]),
        PeerState::default(),
    )
    .unwrap();
    let mut b = Engine::respond(cfg(p, None, None, None), local(2, "")).unwrap();
    let framer = LinkFramer::new(&Profile::load(p).unwrap()).unwrap();
    let unknown = |id| {
        framer
            .encode(&unknown_session_frame(id, None), None)
            .unwrap()
    };
    let mut now = Instant::now();
    let call = a.poll_transmit(now).unwrap();
    a.handle_bytes(now, &unknown(7));
    assert!(!a.peer_forgot() && !a.session().is_closed());
    // B answers the call: A has heard its peer.
    now += Duration::from_millis(500);
    b.handle_bytes(now, &call);
    while b.poll_event().is_some() {}
    let answer = b.poll_transmit(now).unwrap();
    now += Duration::from_millis(500);
    a.handle_bytes(now, &answer);
    // Another session's "unknown" is not ours.
    a.handle_bytes(now, &unknown(8));
    assert!(!a.peer_forgot() && !a.session().is_closed());
    a.handle_bytes(now, &unknown(7));
    assert!(a.peer_forgot());
    assert_eq!(a.session().error(), Some(&SessionError::LinkLost));
    while a.poll_event().is_some() {}
    assert!(a.is_done());
}
