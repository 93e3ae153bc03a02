//! Scenario tests on simulated time with exact timing.

use super::*;

/// Round numbers so the expected times can be written down by hand.
fn cfg() -> ArqConfig {
    ArqConfig {
        bitrate: 1200,
        txdelay: Duration::from_millis(300),
        turnaround: Duration::from_millis(20),
        persist: 255,
        slottime: Duration::ZERO,
        frame_overhead: 12,
        fec: None,
        link_overhead: 3,
        bit_stuffing: false,
        mtu: 256,
        max_frames: 4,
        ack_copies: 1,
        max_tries: 5,
        backoff_cap: Duration::from_secs(10),
        margin: Duration::from_millis(100),
        jitter: false,
    }
}

fn us(n: u64) -> Duration {
    Duration::from_micros(n)
}

/// A 13-byte message: 12 + 3 + 13 + 3 = 31 bytes on air = 206.667 ms at 1200 bit/s.
fn msg(n: u8) -> Vec<u8> {
    vec![n; 13]
}

/// A message that fills a frame (256-byte MTU).
fn big(n: u8) -> Vec<u8> {
    vec![n; 241]
}

/// The same data frames, sent again in a later transmission (new `tx` byte).
fn assert_same_data(again: &Transmission, first: &Transmission) {
    assert_eq!(again.frames.len(), first.frames.len());
    for (x, y) in again.frames.iter().zip(&first.frames) {
        assert_eq!((x.kind, x.seq), (y.kind, y.seq));
        assert_eq!(x.payload[3..], y.payload[3..]);
        assert_ne!(x.payload[2], y.payload[2]);
    }
}

fn events(a: &mut Arq) -> Vec<ArqEvent> {
    std::iter::from_fn(|| a.poll_event()).collect()
}

/// When the last frame of `tx`, handed to the modem at `at`, arrives.
fn after(at: Instant, tx: &Transmission) -> Instant {
    at + cfg().key_up() + tx.airtime
}

/// Hand every frame of `tx` except those in `drop` to `to`, the last one at `at`.
fn hear(to: &mut Arq, at: Instant, tx: &Transmission, drop: &[usize]) {
    for (i, f) in tx.frames.iter().enumerate() {
        if !drop.contains(&i) {
            to.handle_input(at, f.clone()).unwrap();
        }
    }
}

#[test]
fn hand_computed_timing() {
    let c = cfg();
    assert_eq!(c.max_message(), 241);
    assert_eq!(c.frame_airtime(DATA_HEADER + 13), us(206_667));
    assert_eq!(c.frame_airtime(ACK_MAX), us(186_667));
    assert_eq!(c.frame_airtime(DATA_HEADER + 241), us(1_726_667));
    // 50 slack + 320 key-up + 186.667 ack + 1726.667 data + 100 margin.
    assert_eq!(c.reply_wait(), us(2_383_334));
    assert_eq!(c.exchange_overhead(), us(826_667));
}

#[test]
fn no_resend_before_rto_and_a_resend_at_rto() {
    let t0 = Instant::now();
    let mut a = Arq::new(cfg(), Role::Initiator);
    a.send(msg(1)).unwrap();
    let tx = a.poll_transmit(t0).unwrap();
    assert_eq!(tx.frames.len(), 1);
    assert_eq!(tx.airtime, us(206_667));
    // 320 key-up + 206.667 air + 2383.334 reply wait.
    let rto = us(2_910_001);
    assert_eq!(a.poll_timeout(), Some(t0 + rto));

    a.handle_timeout(t0 + rto - us(1));
    assert!(a.poll_transmit(t0 + rto - us(1)).is_none());
    assert_eq!(a.poll_timeout(), Some(t0 + rto));

    a.handle_timeout(t0 + rto);
    let again = a.poll_transmit(t0 + rto).unwrap();
    // A short frame is cheaper to resend than to poll for.
    assert_same_data(&again, &tx);
}

/// Sends one message and lets every reply deadline pass: the waits between
/// transmissions, and how many were made.
fn retry_waits(a: &mut Arq, t0: Instant) -> (Vec<Duration>, usize) {
    a.send(msg(1)).unwrap();
    let mut now = t0;
    let mut waits = Vec::new();
    let mut sends = 0;
    loop {
        if a.poll_transmit(now).is_some() {
            sends += 1;
        }
        let Some(deadline) = a.poll_timeout() else {
            break;
        };
        waits.push(deadline - now);
        now = deadline;
        a.handle_timeout(now);
    }
    (waits, sends)
}

/// Stations that called at the same moment (and collided) must not retry in
/// lockstep for ever (issue 9): each session draws its own backoff, and the
/// same seed draws the same, so runs repeat.
#[test]
fn retries_of_different_sessions_fall_apart_and_a_seed_repeats() {
    let t0 = Instant::now();
    let schedule = |seed: u64| {
        let mut c = cfg();
        c.jitter = true;
        let mut a = Arq::new(c, Role::Initiator);
        a.seed_backoff(seed);
        retry_waits(&mut a, t0).0
    };
    let (x, y, z) = (schedule(1), schedule(2), schedule(3));
    assert_eq!(x, schedule(1));
    // Every retry starts at a different moment for each station, the first
    // too: none of them has heard its peer yet.
    for k in 0..x.len() {
        assert!(
            x[k] != y[k] && y[k] != z[k] && x[k] != z[k],
            "retry {k}: {x:?} {y:?} {z:?}"
        );
    }
}

#[test]
fn backoff_grows_then_is_capped_and_the_link_is_given_up() {
    let mut c = cfg();
    c.backoff_cap = Duration::from_millis(2000);
    c.max_tries = 6;
    let mut a = Arq::new(c, Role::Initiator);
    let t0 = Instant::now();
    let (waits, sends) = retry_waits(&mut a, t0);
    let now = t0 + waits.iter().sum::<Duration>();
    let base = us(2_910_001);
    assert_eq!(
        waits,
        vec![
            base,
            base + us(826_667),
            base + us(1_653_334),
            base + us(2_000_000),
            base + us(2_000_000),
            base + us(2_000_000),
        ]
    );
    assert_eq!(sends, 6);
    let lost = LinkLost::PeerSilent { tries: 6 };
    assert_eq!(events(&mut a), vec![ArqEvent::LinkLost(lost.clone())]);
    // The error is kept and returned again.
    assert_eq!(a.error(), Some(&lost));
    assert_eq!(a.send(msg(2)), Err(ArqError::LinkLost(lost.clone())));
    let ack = AckRepr {
        next_expected: Seq(1),
        rem_ms: 0,
        tx: 0,
        poll: false,
        echo: None,
        received: 0,
    }
    .emit();
    assert_eq!(
        a.handle_input(now, ack),
        Err(ArqError::LinkLost(lost.clone()))
    );
    assert!(a.poll_transmit(now).is_none());
    assert_eq!(a.poll_timeout(), None);
}

#[test]
fn duplicate_is_delivered_once_and_acked_again() {
    let t0 = Instant::now();
    let mut a = Arq::new(cfg(), Role::Initiator);
    let mut b = Arq::new(cfg(), Role::Responder);
    a.send(msg(1)).unwrap();
    let tx = a.poll_transmit(t0).unwrap();
    hear(&mut b, t0, &tx, &[]);
    hear(&mut b, t0, &tx, &[]);
    assert_eq!(events(&mut b), vec![ArqEvent::Delivered(msg(1))]);
    let reply = b.poll_transmit(t0).unwrap();
    assert_eq!(reply.frames.len(), 1);
    let ack = AckRepr::parse(reply.frames[0].seq, &reply.frames[0].payload).unwrap();
    assert_eq!(ack.next_expected, Seq(1));
    // An ack alone asks for nothing.
    assert!(matches!(
        b.state(),
        State::AwaitingReply {
            expect: Expect::Nothing,
            ..
        }
    ));
}

#[test]
fn lost_ack_resend_and_duplicate_suppressed() {
    let t0 = Instant::now();
    let mut a = Arq::new(cfg(), Role::Initiator);
    let mut b = Arq::new(cfg(), Role::Responder);
    a.send(msg(1)).unwrap();
    let tx = a.poll_transmit(t0).unwrap();
    let t1 = t0 + us(520_000);
    hear(&mut b, t1, &tx, &[]);
    assert_eq!(events(&mut b), vec![ArqEvent::Delivered(msg(1))]);
    let ack = b.poll_transmit(t1).unwrap();
    assert_eq!(ack.frames[0].kind, ArqKind::Ack);
    // The ack is lost. A resends at its deadline.
    let rto = a.poll_timeout().unwrap();
    a.handle_timeout(rto);
    let again = a.poll_transmit(rto).unwrap();
    assert_same_data(&again, &tx);
    let t2 = after(rto, &again);
    b.handle_timeout(t2);
    hear(&mut b, t2, &again, &[]);
    assert_eq!(events(&mut b), vec![]);
    let ack2 = b.poll_transmit(t2).unwrap();
    let t3 = after(t2, &ack2);
    hear(&mut a, t3, &ack2, &[]);
    assert_eq!(events(&mut a), vec![ArqEvent::AllAcked]);
    assert_eq!(a.unacked(), 0);
    // Nothing more to say.
    assert!(a.poll_transmit(t3).is_none());
    assert_eq!(a.state(), &State::Idle);
    assert!(a.is_quiet());
    let st = a.stats();
    assert_eq!(
        (
            st.transmissions,
            st.data_frames,
            st.retransmissions,
            st.timeouts
        ),
        (2, 2, 1, 1)
    );
    assert_eq!(st.bytes_acked, 13);
    assert_eq!(st.airtime, us(413_334));
    assert_eq!(b.stats().bytes_delivered, 13);
    assert_eq!(b.stats().ack_frames, 2);
}

#[test]
fn piggyback_carries_the_ack_and_data_in_one_transmission() {
    let t0 = Instant::now();
    let mut a = Arq::new(cfg(), Role::Initiator);
    let mut b = Arq::new(cfg(), Role::Responder);
    a.send(msg(1)).unwrap();
    a.send(msg(2)).unwrap();
    b.send(msg(10)).unwrap();
    let tx = a.poll_transmit(t0).unwrap();
    assert_eq!(tx.frames.len(), 2);
    // The first frame announces the second one's airtime.
    assert_eq!(
        DataRepr::parse(0, &tx.frames[0].payload).unwrap().rem_ms,
        207
    );
    assert_eq!(DataRepr::parse(1, &tx.frames[1].payload).unwrap().rem_ms, 0);
    hear(&mut b, t0, &tx, &[]);
    let reply = b.poll_transmit(t0).unwrap();
    let kinds: Vec<_> = reply.frames.iter().map(|f| f.kind).collect();
    assert_eq!(kinds, vec![ArqKind::Ack, ArqKind::Data]);
    hear(&mut a, t0, &reply, &[]);
    assert_eq!(
        events(&mut a),
        vec![ArqEvent::AllAcked, ArqEvent::Delivered(msg(10))]
    );
    let last = a.poll_transmit(t0).unwrap();
    assert_eq!(last.frames.len(), 1);
    assert_eq!(last.frames[0].kind, ArqKind::Ack);
    hear(&mut b, t0, &last, &[]);
    assert_eq!(
        events(&mut b),
        vec![
            ArqEvent::Delivered(msg(1)),
            ArqEvent::Delivered(msg(2)),
            ArqEvent::AllAcked
        ]
    );
    assert!(b.poll_transmit(t0).is_none());
}

#[test]
fn only_the_missing_frame_is_resent() {
    let t0 = Instant::now();
    let mut a = Arq::new(cfg(), Role::Initiator);
    let mut b = Arq::new(cfg(), Role::Responder);
    for n in 0..6 {
        a.send(big(n)).unwrap();
    }
    let tx = a.poll_transmit(t0).unwrap();
    assert_eq!(tx.frames.len(), 4);
    let t1 = after(t0, &tx);
    hear(&mut b, t1, &tx, &[1]);
    assert_eq!(events(&mut b), vec![ArqEvent::Delivered(big(0))]);
    let ack = b.poll_transmit(t1).unwrap();
    let repr = AckRepr::parse(ack.frames[0].seq, &ack.frames[0].payload).unwrap();
    assert_eq!((repr.next_expected, repr.received), (Seq(1), 0b11));
    assert_eq!(ack.frames[0].payload, [0, 0, 0, 0x02, 0, 0b11]);
    let t2 = after(t1, &ack);
    hear(&mut a, t2, &ack, &[]);
    let tx2 = a.poll_transmit(t2).unwrap();
    let seqs: Vec<_> = tx2.frames.iter().map(|f| f.seq).collect();
    // Seq 1 again, then the two new ones.
    assert_eq!(seqs, vec![1, 4, 5]);
    hear(&mut b, after(t2, &tx2), &tx2, &[]);
    let got: Vec<_> = events(&mut b);
    assert_eq!(
        got,
        (1..6)
            .map(|n| ArqEvent::Delivered(big(n)))
            .collect::<Vec<_>>()
    );
}

#[test]
fn missing_last_frame_receiver_answers_when_the_carrier_is_down() {
    let t0 = Instant::now();
    let mut a = Arq::new(cfg(), Role::Initiator);
    let mut b = Arq::new(cfg(), Role::Responder);
    for n in 0..3 {
        a.send(msg(n)).unwrap();
    }
    let tx = a.poll_transmit(t0).unwrap();
    // Frame 1 arrives at t1; 206.667 ms (207 announced) of frame 2 are still to come.
    let t1 = t0 + us(733_334);
    b.handle_input(t1, tx.frames[0].clone()).unwrap();
    b.handle_input(t1, tx.frames[1].clone()).unwrap();
    let ends_by = t1 + us(207_000) + cfg().rx_slack();
    assert_eq!(b.poll_timeout(), Some(ends_by));
    assert!(b.poll_transmit(t1).is_none());
    b.handle_timeout(ends_by - us(1));
    assert!(b.poll_transmit(ends_by - us(1)).is_none());
    b.handle_timeout(ends_by);
    let ack = b.poll_transmit(ends_by).unwrap();
    // The answer arrives before A's deadline.
    assert!(ends_by + cfg().key_up() + ack.airtime < a.poll_timeout().unwrap());
    hear(&mut a, ends_by, &ack, &[]);
    let tx2 = a.poll_transmit(ends_by).unwrap();
    assert_eq!(tx2.frames.len(), 1);
    assert_eq!(tx2.frames[0].seq, 2);
}

#[test]
fn a_lost_ack_for_a_long_batch_is_polled_for_not_resent() {
    let t0 = Instant::now();
    let mut a = Arq::new(cfg(), Role::Initiator);
    for _ in 0..4 {
        a.send(vec![7; 241]).unwrap();
    }
    let tx = a.poll_transmit(t0).unwrap();
    assert_eq!(tx.frames.len(), 4);
    let rto = a.poll_timeout().unwrap();
    a.handle_timeout(rto);
    let probe = a.poll_transmit(rto).unwrap();
    assert_eq!(probe.frames.len(), 1);
    let ack = AckRepr::parse(probe.frames[0].seq, &probe.frames[0].payload).unwrap();
    assert!(ack.poll);
    // The peer that got everything answers the poll; nothing is resent.
    let mut b = Arq::new(cfg(), Role::Responder);
    hear(&mut b, rto, &tx, &[]);
    hear(&mut b, rto, &probe, &[]);
    let answer = b.poll_transmit(rto).unwrap();
    hear(&mut a, rto, &answer, &[]);
    assert_eq!(events(&mut a), vec![ArqEvent::AllAcked]);
    assert!(a.poll_transmit(rto).is_none());
}

#[test]
fn responder_waits_longer_when_it_spoke_first() {
    let t0 = Instant::now();
    let mut a = Arq::new(cfg(), Role::Initiator);
    let mut b = Arq::new(cfg(), Role::Responder);
    a.send(msg(1)).unwrap();
    b.send(msg(1)).unwrap();
    a.poll_transmit(t0).unwrap();
    b.poll_transmit(t0).unwrap();
    let extra = cfg().exchange_overhead() + cfg().reply_wait();
    assert_eq!(b.poll_timeout().unwrap() - a.poll_timeout().unwrap(), extra);
}

#[test]
fn misbehaving_peer_frames_are_refused() {
    let t0 = Instant::now();
    let mut a = Arq::new(cfg(), Role::Initiator);
    let bad_ack = AckRepr {
        next_expected: Seq(5),
        rem_ms: 0,
        tx: 0,
        poll: false,
        echo: None,
        received: 0,
    }
    .emit();
    assert_eq!(
        a.handle_input(t0, bad_ack),
        Err(ArqError::AckOfUnsent { ack: 5, next: 0 })
    );
    let far = DataRepr {
        seq: Seq(64),
        rem_ms: 0,
        tx: 0,
        message: b"x",
    }
    .emit();
    assert_eq!(
        a.handle_input(t0, far),
        Err(ArqError::OutOfWindow {
            seq: 64,
            expected: 0
        })
    );
    let short = ArqFrame {
        kind: ArqKind::Data,
        seq: 0,
        payload: vec![1],
    };
    assert_eq!(
        a.handle_input(t0, short),
        Err(ArqError::Wire(WireError::DataTooShort(1)))
    );
    assert_eq!(
        a.send(vec![0; 242]),
        Err(ArqError::MessageTooLarge { len: 242, max: 241 })
    );
    assert!(events(&mut a).is_empty());
}

#[test]
fn sequence_numbers_wrap() {
    let t0 = Instant::now();
    let mut a = Arq::new(cfg(), Role::Initiator);
    let mut b = Arq::new(cfg(), Role::Responder);
    let mut delivered = 0u32;
    let mut now = t0;
    for round in 0..(70_000 / 4) {
        for n in 0..4u8 {
            a.send(vec![n, (round % 251) as u8]).unwrap();
        }
        let tx = a.poll_transmit(now).unwrap();
        now = after(now, &tx);
        hear(&mut b, now, &tx, &[]);
        let ack = b.poll_transmit(now).unwrap();
        now = after(now, &ack);
        hear(&mut a, now, &ack, &[]);
        assert!(a.poll_transmit(now).is_none());
        for e in events(&mut b) {
            let ArqEvent::Delivered(m) = e else {
                panic!("{e:?}")
            };
            assert_eq!(m, vec![(delivered % 4) as u8, (round % 251) as u8]);
            delivered += 1;
        }
        events(&mut a);
    }
    assert_eq!(delivered, 70_000 / 4 * 4);
}

#[test]
fn a_second_ack_copy_closes_the_transmission() {
    let c = ArqConfig {
        ack_copies: 2,
        ..cfg()
    };
    let t0 = Instant::now();
    let mut a = Arq::new(c.clone(), Role::Initiator);
    let mut b = Arq::new(c, Role::Responder);
    a.send(msg(1)).unwrap();
    b.send(msg(2)).unwrap();
    let tx = a.poll_transmit(t0).unwrap();
    hear(&mut b, t0, &tx, &[]);
    let reply = b.poll_transmit(t0).unwrap();
    let kinds: Vec<_> = reply.frames.iter().map(|f| f.kind).collect();
    assert_eq!(kinds, vec![ArqKind::Ack, ArqKind::Data, ArqKind::Ack]);
    assert_eq!(reply.frames[0].seq, reply.frames[2].seq);
    // The first copy is lost: the last one still acks and passes the turn.
    hear(&mut a, t0, &reply, &[0]);
    assert_eq!(
        events(&mut a),
        vec![ArqEvent::Delivered(msg(2)), ArqEvent::AllAcked]
    );
    let last = a.poll_transmit(t0).unwrap();
    assert_eq!(last.frames.len(), 2);
    assert!(last.frames.iter().all(|f| f.kind == ArqKind::Ack));
}

#[test]
fn small_frames_share_the_airtime_budget() {
    let t0 = Instant::now();
    let mut a = Arq::new(cfg(), Role::Initiator);
    // Budget: 4 full frames of 1726.667 ms; a 13-byte message takes 206.667 ms.
    for n in 0..40 {
        a.send(msg(n)).unwrap();
    }
    let tx = a.poll_transmit(t0).unwrap();
    assert_eq!(tx.frames.len(), 33);
    assert!(tx.airtime <= cfg().transmission_budget());
}

mod props {
    use super::*;
    use proptest::prelude::*;

    fn any_frame() -> impl Strategy<Value = ArqFrame> {
        (
            any::<bool>(),
            any::<u16>(),
            proptest::collection::vec(any::<u8>(), 0..16),
        )
            .prop_map(|(data, seq, payload)| ArqFrame {
                kind: if data { ArqKind::Data } else { ArqKind::Ack },
                seq: seq % 80,
                payload,
            })
    }

    proptest! {
        /// Garbage from a peer (wrong seqs, bad payloads, at any time) never
        /// panics and never delivers a message twice or out of order.
        #[test]
        fn arbitrary_frames_and_timeouts_never_panic(
            steps in proptest::collection::vec((any_frame(), 0u64..5_000_000, any::<bool>()), 1..60)
        ) {
            let t0 = Instant::now();
            let mut a = Arq::new(cfg(), Role::Responder);
            for n in 0..5 {
                a.send(msg(n)).unwrap();
            }
            let mut now = t0;
            let mut delivered = 0usize;
            let mut distinct = std::collections::HashSet::new();
            for (frame, dt, timeout) in steps {
                if !timeout && frame.kind == ArqKind::Data && frame.payload.len() >= 2 {
                    distinct.insert(frame.seq);
                }
                now += Duration::from_micros(dt);
                if timeout {
                    a.handle_timeout(now);
                } else {
                    let _ = a.handle_input(now, frame);
                }
                while let Some(tx) = a.poll_transmit(now) {
                    prop_assert!(!tx.frames.is_empty());
                    if a.poll_timeout().is_some() { break; }
                }
                while let Some(e) = a.poll_event() {
                    if let ArqEvent::Delivered(_) = e {
                        delivered += 1;
                    }
                }
            }
            // Each sequence number is delivered at most once.
            prop_assert!(delivered <= distinct.len());
        }
    }
}

#[test]
fn a_transmission_held_back_by_the_tnc_is_not_resent_and_delays_the_deadline() {
    // Both start at once; A's TNC keys first, B's holds B's frames (CSMA).
    let t0 = Instant::now();
    let c = cfg();
    let mut a = Arq::new(c.clone(), Role::Initiator);
    let mut b = Arq::new(c.clone(), Role::Responder);
    for n in 0..4 {
        a.send(big(n)).unwrap();
        b.send(big(10 + n)).unwrap();
    }
    let ta = a.poll_transmit(t0).unwrap();
    let tb = b.poll_transmit(t0).unwrap();
    assert_eq!((ta.frames.len(), tb.frames.len()), (4, 4));
    // B hears A's frames while its own should be on air: they are held back.
    let mut at = t0 + c.key_up();
    for f in &ta.frames {
        at += c.frame_airtime_of(&f.payload);
        b.handle_input(at, f.clone()).unwrap();
    }
    assert_eq!(events(&mut b).len(), 4);
    // A's carrier is down: B's held frames go out now, with an ack joined
    // to them; nothing of B's is resent.
    let reply = b.poll_transmit(at).unwrap();
    assert!(reply.frames.iter().all(|f| f.kind == ArqKind::Ack));
    let deadline = b.poll_timeout().unwrap();
    assert!(deadline >= at + c.key_up() + tb.airtime + reply.airtime + c.reply_wait());
    // A hears B's held frames, then the joined acks (which echo A's
    // transmission): everything of A's is acked, nothing is resent.
    let mut at2 = at + c.key_up();
    for f in tb.frames.iter().chain(&reply.frames) {
        at2 += c.frame_airtime_of(&f.payload);
        a.handle_input(at2, f.clone()).unwrap();
        if f.kind == ArqKind::Data && DataRepr::parse(f.seq, &f.payload).unwrap().rem_ms == 0 {
            // A answers at B's first "last frame" and its TNC holds that too.
            let early = a.poll_transmit(at2).unwrap();
            assert!(early.frames.iter().all(|f| f.kind == ArqKind::Ack));
        }
    }
    let got = events(&mut a);
    assert!(got.contains(&ArqEvent::AllAcked));
    assert_eq!(
        got.iter()
            .filter(|e| matches!(e, ArqEvent::Delivered(_)))
            .count(),
        4
    );
    assert!(a
        .poll_transmit(at2)
        .is_none_or(|t| t.frames.iter().all(|f| f.kind == ArqKind::Ack)));
    assert_eq!(a.stats().retransmissions, 0);
    assert_eq!(b.stats().retransmissions, 0);
}

#[test]
fn a_prompt_answer_to_a_long_batch_is_not_taken_for_a_held_back_transmission() {
    // As the engine sends frames unauthenticated over KISS: the overhead keeps
    // room for a tag they do not carry, and HDLC stuffing is estimated high.
    let c = ArqConfig {
        bitrate: 9600,
        txdelay: Duration::from_millis(100),
        frame_overhead: FRAME_OVERHEAD_ESTIMATE,
        bit_stuffing: true,
        mtu: 512,
        max_frames: 48,
        ..cfg()
    };
    let t0 = Instant::now();
    let mut a = Arq::new(c.clone(), Role::Initiator);
    let mut b = Arq::new(c.clone(), Role::Responder);
    for i in 0..48 {
        a.send(vec![i; 480]).unwrap();
    }
    let tx = a.poll_transmit(t0).unwrap();
    assert_eq!(tx.frames.len(), 48);
    // On air it took the least it can: the peer heard it all and answered at once.
    let floor: Duration = tx
        .frames
        .iter()
        .map(|f| c.frame_airtime_floor(f.payload.len()))
        .sum();
    assert!(floor < tx.airtime);
    let end = t0 + c.min_key_up() + floor;
    hear(&mut b, end, &tx, &[]);
    let ack = b.poll_transmit(end).unwrap();
    let heard = end + c.min_key_up() + ack.airtime;
    hear(&mut a, heard, &ack, &[]);
    assert_eq!(events(&mut a), vec![ArqEvent::AllAcked]);
    // Nothing was held back: nothing more to send, and nothing to wait for.
    assert!(a.poll_transmit(heard).is_none());
    assert!(a.is_quiet(), "{:?}", a.state());
}
