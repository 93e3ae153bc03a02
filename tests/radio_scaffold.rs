//! The radio tests' scaffolding checked on the file path (`export`/`import`
//! processes): the workload converges by the rules, and the checks see it when
//! it has not.

mod radio_util;

use radio_util::*;

fn exchange(st: &Stations, dir: &std::path::Path, name: &str, from_a: bool) {
    let (from, peer, to) = if from_a {
        (&st.a, "bravo", &st.b)
    } else {
        (&st.b, "alpha", &st.a)
    };
    let f = dir.join(name);
    radiosync_ok(&[
        "export",
        "--db",
        from.to_str().unwrap(),
        "--peer",
        peer,
        "--out",
        f.to_str().unwrap(),
    ]);
    radiosync_ok(&["import", "--db", to.to_str().unwrap(), f.to_str().unwrap()]);
}

#[test]
fn workload_converges_over_files_and_the_checks_notice_when_it_has_not() {
    let dir = scratch();
    let st = Stations::new(&dir.path().join("live"), 1, 7);
    let r = st.reference(&dir.path().join("ref"));
    eprintln!(
        "file exchange: bundles {:?} bytes; {r:?}",
        r.bundles,
        r = (&r.log_a, &r.log_b)
    );
    assert!(!st.pending_problems().is_empty());
    let before = st.check_converged(&r, true);
    assert!(
        before.iter().any(|e| e.contains("differs")),
        "checks passed before any sync: {before:?}"
    );
    // One pull and one push are not enough: alpha asked for a row in full.
    exchange(&st, dir.path(), "1", false);
    exchange(&st, dir.path(), "2", true);
    let one = st.check_converged(&r, true);
    assert!(!one.is_empty(), "converged after one round");
    eprintln!("after one round: {one:?}");
    exchange(&st, dir.path(), "3", false);
    exchange(&st, dir.path(), "4", true);
    // The file exchange itself sends one row twice (see check_converged).
    let mut bad = st.check_converged(&r, false);
    bad.extend(st.pending_problems());
    assert!(bad.is_empty(), "not converged:\n  {}", bad.join("\n  "));

    // Importing a bundle again changes no row but is seen by the exact log check.
    radiosync_ok(&[
        "import",
        "--db",
        st.b.to_str().unwrap(),
        dir.path().join("2").to_str().unwrap(),
    ]);
    let again = st.check_converged(&r, true);
    assert!(
        again.iter().any(|e| e.contains("bravo: imports")),
        "double import not noticed: {again:?}"
    );
}

#[test]
fn workload_sizes_grow_with_scale() {
    let dir = scratch();
    let mut last = 0;
    for scale in [0, 1, 3] {
        let st = Stations::new(&dir.path().join(format!("s{scale}")), scale, 1);
        let r = st.reference(&dir.path().join(format!("r{scale}")));
        let total: u64 = r.bundles.iter().sum();
        eprintln!("scale {scale}: bundles {:?} bytes", r.bundles);
        assert!(total > last);
        last = total;
    }
}

#[test]
fn rig_starts_the_channel_and_leaves_nothing_behind() {
    let rig = Rig::new("sim-kiss-1200", 1, 3, &["--mode", "kiss", "--seed", "3"]);
    let (a, b) = (rig.port_a.clone(), rig.port_b.clone());
    assert!(a.exists() && b.exists());
    let pid = rig.chan().proc.pid();
    assert!(rig.chan().summary().contains("a_to_b: airtime 0.0 s"));
    drop(rig);
    assert!(!a.exists() && !b.exists(), "links left behind");
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists() || {
            // A zombie is reaped by the guard; /proc may lag for an instant.
            std::thread::sleep(std::time::Duration::from_millis(200));
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
        }
    );
}

/// The capture parser the restart tests rely on, on a capture built with the
/// real encoders: a Hello offering to resume (sent), then the peer's
/// BundleStart at that offset and its chunks (received), with another bundle
/// around it.
#[test]
fn resumed_transfer_reads_capture_show() {
    use radiosync::arq::{DataRepr, Seq};
    use radiosync::capture::{CaptureHeader, LinkFraming, Record, RecordKind, Writer};
    use radiosync::delta::{SchemaFingerprint, StationId, VersionVector};
    use radiosync::frame::{link, Frame, FrameKind};
    use radiosync::sync::{BundleId, Hello, Message, Resume, PROTOCOL_VERSION};

    let header = CaptureHeader {
        start_unix_ms: 1_700_000_000_000,
        station: StationId([1; 16]),
        framing: LinkFraming::Kiss,
        profile_name: "sim-kiss-1200".into(),
        profile_text: String::new(),
    };
    let mut w = Writer::new(Vec::new(), &header).unwrap();
    let id = BundleId(0x0123_4567_89ab_cdef);
    let other = BundleId(7);
    let msgs = [
        (
            RecordKind::Sent,
            Message::Hello(Hello {
                version: PROTOCOL_VERSION,
                initiator: true,
                station: StationId([1; 16]),
                callsign: String::new(),
                schema: SchemaFingerprint(5),
                dict_id: 0,
                vector: VersionVector::default(),
                resume: Some(Resume {
                    id,
                    stored: 700,
                    later: Vec::new(),
                }),
                fingerprint: None,
                refuses_push: false,
                auth: None,
            }),
        ),
        (
            RecordKind::Received,
            Message::BundleStart {
                id,
                total_len: 1100,
                offset: 700,
                more: true,
            },
        ),
        (
            RecordKind::Received,
            Message::Chunk {
                offset: 700,
                bytes: vec![1; 200],
            },
        ),
        (
            RecordKind::Received,
            Message::Chunk {
                offset: 900,
                bytes: vec![2; 200],
            },
        ),
        (
            RecordKind::Received,
            Message::BundleStart {
                id: other,
                total_len: 50,
                offset: 0,
                more: false,
            },
        ),
        (
            RecordKind::Received,
            Message::Chunk {
                offset: 0,
                bytes: vec![3; 50],
            },
        ),
        // A chunk we send is not the peer's.
        (
            RecordKind::Sent,
            Message::Chunk {
                offset: 5,
                bytes: vec![4; 5],
            },
        ),
    ];
    for (i, (kind, m)) in msgs.into_iter().enumerate() {
        let af = DataRepr {
            seq: Seq(i as u16),
            rem_ms: 0,
            tx: 1,
            message: &m.to_bytes(),
        }
        .emit();
        let frame = Frame {
            kind: FrameKind::Data,
            session: 9,
            seq: af.seq,
            payload: af.payload,
            auth_tag: None,
            route: None,
        };
        let bytes = link::encode_kiss(&frame, None, None, 0).unwrap();
        w.write(&Record {
            at_ms: 100 * i as u64,
            kind,
            bytes,
        })
        .unwrap();
    }
    let dir = scratch();
    let cap = dir.path().join("t.cap");
    std::fs::write(&cap, w.into_inner()).unwrap();
    let r = resumed_transfer(&cap, true).expect("a resume offer");
    assert_eq!(r.id, id.to_string());
    assert_eq!(
        (r.stored, r.start, r.chunks.clone()),
        (700, 700, vec![700, 900]),
        "{r:?}"
    );
    // Seen from the other side, no Hello offered anything.
    assert!(resumed_transfer(&cap, false).is_none());
}
