//! `capture show` and `replay` on captures built here with the real encoders
//! (sync messages -> ARQ data frames -> frames -> KISS or transparent
//! framing -> capture::Writer), and on literal capture bytes.

mod store_util;

use radiosync::arq::{AckRepr, ArqConfig, DataRepr, Seq};
use radiosync::capture::replay::{self, BundleFate, ReplayOptions, ReplayReport, Replayer};
use radiosync::capture::show;
use radiosync::capture::{CaptureHeader, LinkFraming, Reader, Record, RecordKind, Writer};
use radiosync::delta::StationId;
use radiosync::frame::{link, transparent, FecParams, Frame, FrameKind};
use radiosync::profile::Profile;
use radiosync::store::Store;
use radiosync::sync::reassembly::{ReceiveError, Violation};
use radiosync::sync::{
    BundleId, Config, Hello, LocalInfo, Message, PeerState, Session, SessionError, PROTOCOL_VERSION,
};
use store_util::*;

const KISS_PROFILE: &str = "sim-kiss-1200";
const TRANSPARENT_PROFILE: &str = "sim-transparent-9600";

fn profile_text(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/firmware-profiles/{name}.toml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// Builds a capture as the receiving station's shell would write it.
struct CaptureBuilder {
    w: Writer<Vec<u8>>,
    framing: LinkFraming,
    fec: Option<FecParams>,
    max_message: usize,
    session: u16,
    /// AX.25 addresses of the peer's frames (amateur profiles).
    ax25: Option<link::Ax25Addresses>,
    at: u64,
    /// Records written so far (their index in the file).
    count: u64,
    tx: u8,
}

impl CaptureBuilder {
    fn new(station: StationId, profile: &str, embed_profile: bool) -> CaptureBuilder {
        let text = profile_text(profile);
        let p = Profile::parse(&text, profile).unwrap();
        let framing = match p.framing {
            radiosync::profile::Framing::Kiss => LinkFraming::Kiss,
            radiosync::profile::Framing::Transparent => LinkFraming::Transparent,
        };
        let header = CaptureHeader {
            start_unix_ms: 1_700_000_000_000,
            station,
            framing,
            profile_name: profile.into(),
            profile_text: if embed_profile { text } else { String::new() },
        };
        CaptureBuilder {
            w: Writer::new(Vec::new(), &header).unwrap(),
            framing,
            fec: p.fec_params().unwrap(),
            max_message: ArqConfig::from_profile(&p).max_message(),
            session: 0x0102,
            ax25: p.amateur.then(|| link::Ax25Addresses {
                local: "W1AW-2".parse().unwrap(),
                peer: "N0CALL-1".parse().unwrap(),
            }),
            at: 0,
            count: 0,
            tx: 0,
        }
    }

    fn on_air(&self, frame: &Frame) -> Vec<u8> {
        match self.framing {
            LinkFraming::Kiss => {
                link::encode_kiss(frame, self.fec.as_ref(), self.ax25.as_ref(), 0).unwrap()
            }
            _ => transparent::encode(frame, self.fec.as_ref()).unwrap(),
        }
    }

    fn record(&mut self, kind: RecordKind, bytes: Vec<u8>) -> u64 {
        self.at += 120;
        self.w
            .write(&Record {
                at_ms: self.at,
                kind,
                bytes,
            })
            .unwrap();
        self.count += 1;
        self.count - 1
    }

    /// A data frame of the peer carrying `message` as ARQ seq `seq`; returns its record index.
    fn received_data(&mut self, seq: u16, message: &[u8]) -> u64 {
        let af = DataRepr {
            seq: Seq(seq),
            rem_ms: 0,
            tx: self.tx,
            message,
        }
        .emit();
        let frame = Frame {
            kind: FrameKind::Data,
            session: self.session,
            seq: af.seq,
            payload: af.payload,
            auth_tag: None,
            route: None,
        };
        let bytes = self.on_air(&frame);
        self.record(RecordKind::Received, bytes)
    }

    /// Our ack of everything before `next`.
    fn sent_ack(&mut self, next: u16) -> u64 {
        self.tx = self.tx.wrapping_add(1);
        let af = AckRepr {
            next_expected: Seq(next),
            rem_ms: 0,
            tx: self.tx,
            poll: false,
            echo: Some(self.tx),
            received: 0,
        }
        .emit();
        let frame = Frame {
            kind: FrameKind::Ack,
            session: self.session,
            seq: af.seq,
            payload: af.payload,
            auth_tag: None,
            route: None,
        };
        let bytes = self.on_air(&frame);
        self.record(RecordKind::Sent, bytes)
    }

    fn note(&mut self, text: &str) -> u64 {
        self.record(RecordKind::Note, text.as_bytes().to_vec())
    }

    fn bytes(self) -> Vec<u8> {
        self.w.into_inner()
    }
}

/// The session messages the sender of a bundle emits: its Hello, BundleStart
/// and the chunks, each as one ARQ message.
fn bundle_messages(sender: &Store, bundle: &[u8], max_message: usize) -> Vec<Vec<u8>> {
    let hello = Message::Hello(Hello {
        version: PROTOCOL_VERSION,
        initiator: false,
        station: sender.station().id,
        callsign: String::new(),
        schema: sender.schema_fingerprint(),
        dict_id: 0,
        vector: sender.vector().unwrap(),
        resume: None,
        fingerprint: None,
        refuses_push: false,
        auth: None,
    });
    let mut out = vec![
        hello.to_bytes(),
        Message::BundleStart {
            id: BundleId::of(bundle),
            total_len: bundle.len() as u64,
            offset: 0,
            more: false,
        }
        .to_bytes(),
    ];
    let mut offset = 0;
    while offset < bundle.len() {
        let room = max_message - 1 - radiosync::sync::message::varint_len(offset as u64);
        let end = (offset + room).min(bundle.len());
        out.push(
            Message::Chunk {
                offset: offset as u64,
                bytes: bundle[offset..end].to_vec(),
            }
            .to_bytes(),
        );
        offset = end;
    }
    out
}

/// Station a (the receiver, which captures) and b (the sender) with edits on
/// b; `a_before` is a copy of a's database before the sync.
struct Scene {
    _dir: tempfile::TempDir,
    a: Store,
    b: Store,
    a_before: std::path::PathBuf,
    bundle: Vec<u8>,
}

fn scene(rows: u32) -> Scene {
    let dir = scratch();
    first_station(dir.path(), "a", 3);
    let b = Store::clone_station(
        path_of(dir.path(), "a"),
        path_of(dir.path(), "b"),
        "b",
        None,
    )
    .unwrap();
    let a = Store::open(path_of(dir.path(), "a")).unwrap();
    for i in 0..rows {
        b.connection()
            .execute(
                "INSERT INTO item (id, uuid, modified_on, name, qty, note) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                rusqlite::params![
                    100 + i,
                    format!("b-item-{i}"),
                    time(i),
                    format!("from b {i}"),
                    i,
                    noise(i)
                ],
            )
            .unwrap();
    }
    b.connection()
        .execute(
            "UPDATE item SET qty = 99, modified_on = ?1 WHERE uuid = 'item-1'",
            [time(500)],
        )
        .unwrap();
    let bundle = b.export_bundle_bytes(&a.station().id).unwrap();
    let a_before = dir.path().join("a-before.db");
    radiosync::store::copy_station(a.path(), &a_before).unwrap();
    Scene {
        _dir: dir,
        a,
        b,
        a_before,
        bundle,
    }
}

/// Text that zstd cannot shrink much, so a bundle spans several frames.
fn noise(i: u32) -> String {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(i.into());
    (0..40).map(|_| rng.gen_range('a'..='z')).collect()
}

/// A fresh copy of a's database before the sync.
fn fresh_copy(s: &Scene, name: &str) -> Store {
    let p = s.a_before.with_file_name(format!("{name}.db"));
    radiosync::store::copy_station(&s.a_before, &p).unwrap();
    Store::open(&p).unwrap()
}

fn run_replay(store: &mut Store, capture: &[u8], opts: ReplayOptions) -> ReplayReport {
    let reader = Reader::new(capture).unwrap();
    let header = reader.header().clone();
    let mut r = Replayer::new(store, &header, opts).unwrap();
    let mut warning = None;
    for (i, item) in reader.enumerate() {
        match item {
            Ok(rec) => r.feed(i as u64, &rec),
            Err(e) => warning = Some(e.to_string()),
        }
    }
    r.finish(warning)
}

/// The capture of a clean transfer: the peer's messages as data frames, one
/// transmission per `per_tx` frames, each answered by our ack. Returns the
/// capture and the record index of each data frame.
fn clean_capture(s: &Scene, profile: &str, per_tx: usize) -> (Vec<u8>, Vec<u64>) {
    let mut c = CaptureBuilder::new(s.a.station().id, profile, true);
    c.note("session start: responder b");
    let msgs = bundle_messages(&s.b, &s.bundle, c.max_message);
    let mut idx = Vec::new();
    for (seq, m) in msgs.iter().enumerate() {
        idx.push(c.received_data(seq as u16, m));
        if (seq + 1) % per_tx == 0 || seq + 1 == msgs.len() {
            c.sent_ack(seq as u16 + 1);
        }
    }
    (c.bytes(), idx)
}

fn assert_applied_like_direct_import(s: &Scene, report: &ReplayReport, replayed: &Store) {
    assert_eq!(report.applied(), 1, "{}", replay::summary(report));
    let mut direct = fresh_copy(s, "direct");
    direct.import_bundle_bytes(&s.bundle).unwrap();
    assert_eq!(content(replayed), content(&direct));
    assert_ne!(content(replayed), content(&fresh_copy(s, "untouched")));
}

#[test]
fn replay_over_kiss_applies_the_bundle_like_a_direct_import() {
    let s = scene(40);
    let (cap, idx) = clean_capture(&s, KISS_PROFILE, 6);
    assert!(idx.len() > 4, "the bundle spans several frames");
    let mut store = fresh_copy(&s, "replayed");
    let report = run_replay(&mut store, &cap, ReplayOptions::default());
    assert_applied_like_direct_import(&s, &report, &store);
    assert_eq!(
        report.frames as usize,
        idx.len(),
        "acks we sent are not fed"
    );
    assert_eq!(report.duplicates, 0);
    assert!(report.bad.is_empty() && report.refused.is_empty());
    let BundleFate::Applied(r) = &report.bundles[0].fate else {
        unreachable!()
    };
    assert_eq!(r.applied, 41);
    assert!(report.log.iter().any(|l| l.contains("note: session start")));
    // The live receiver would have applied the same: replaying again changes nothing.
    let again = run_replay(&mut store, &cap, ReplayOptions::default());
    let BundleFate::Applied(r) = &again.bundles[0].fate else {
        panic!("{}", replay::summary(&again))
    };
    assert_eq!((r.applied, r.skipped), (0, 41));
}

#[test]
fn replay_over_transparent_with_fec_repairs_corrupted_frames() {
    let s = scene(30);
    let (cap, idx) = clean_capture(&s, TRANSPARENT_PROFILE, 4);
    let mut store = fresh_copy(&s, "replayed");
    let opts = ReplayOptions {
        corrupt: [idx[1], idx[2]].into(),
        corrupt_bytes: 4,
        ..Default::default()
    };
    let report = run_replay(&mut store, &cap, opts);
    assert_applied_like_direct_import(&s, &report, &store);
    assert_eq!(report.corrupted, vec![idx[1], idx[2]]);
    assert_eq!(report.frames_corrected, 2);
    // 4 bytes each; one may land in the sync word or the RS(6,2) length,
    // which the deframer repairs without counting it.
    assert!((6..=8).contains(&report.symbols_corrected), "{report:?}");
    let text = replay::summary(&report);
    assert!(
        text.contains(&format!(
            "2 repaired by FEC ({} byte errors)",
            report.symbols_corrected
        )),
        "{text}"
    );
}

#[test]
fn a_dropped_frame_that_was_resent_still_completes() {
    let s = scene(40);
    let mut c = CaptureBuilder::new(s.a.station().id, KISS_PROFILE, true);
    let msgs = bundle_messages(&s.b, &s.bundle, c.max_message);
    assert!(msgs.len() >= 5);
    // First transmission: seq 0..4, of which we did not get seq 2 in the
    // field: the ack says so and the peer resends it with the rest.
    let mut first = Vec::new();
    for (seq, m) in msgs.iter().enumerate().take(4) {
        first.push(c.received_data(seq as u16, m));
    }
    c.sent_ack(4);
    let resent = c.received_data(2, &msgs[2]);
    for (seq, m) in msgs.iter().enumerate().skip(4) {
        c.received_data(seq as u16, m);
    }
    c.sent_ack(msgs.len() as u16);
    let cap = c.bytes();

    // As captured: the resend is a duplicate, suppressed.
    let mut store = fresh_copy(&s, "as-captured");
    let report = run_replay(&mut store, &cap, ReplayOptions::default());
    assert_applied_like_direct_import(&s, &report, &store);
    assert_eq!(report.duplicates, 1);
    assert!(report
        .log
        .iter()
        .any(|l| l.starts_with(&format!("#{resent}:")) && l.contains("duplicate, suppressed")));

    // Reproducing the field loss: drop the first copy; the resend fills the gap.
    let mut store = fresh_copy(&s, "dropped");
    let opts = ReplayOptions {
        drop: [first[2]].into(),
        ..Default::default()
    };
    let report = run_replay(&mut store, &cap, opts);
    assert_applied_like_direct_import(&s, &report, &store);
    assert_eq!(report.dropped, vec![first[2]]);
    assert_eq!(report.duplicates, 0);

    // Corrupting it instead (no FEC over KISS): the CRC refuses it, same outcome.
    let mut store = fresh_copy(&s, "corrupted");
    let opts = ReplayOptions {
        corrupt: [first[2]].into(),
        ..Default::default()
    };
    let report = run_replay(&mut store, &cap, opts);
    assert_applied_like_direct_import(&s, &report, &store);
    assert_eq!(report.bad.len(), 1, "{:?}", report.bad);
    assert_eq!(report.bad[0].0, first[2]);
}

#[test]
fn a_dropped_frame_never_resent_leaves_the_bundle_incomplete_and_the_db_untouched() {
    let s = scene(40);
    let (cap, idx) = clean_capture(&s, KISS_PROFILE, 6);
    let path = s.a_before.with_file_name("replayed.db");
    let mut store = fresh_copy(&s, "replayed");
    let before = dump(&path);
    let opts = ReplayOptions {
        drop: [idx[3]].into(),
        ..Default::default()
    };
    let report = run_replay(&mut store, &cap, opts);
    assert_eq!(report.applied(), 0);
    let total = s.bundle.len() as u64;
    assert_eq!(report.bundles.len(), 1);
    let BundleFate::Incomplete { received } = report.bundles[0].fate else {
        panic!("{:?}", report.bundles)
    };
    assert!(received < total);
    assert_eq!(report.stalled, vec![(0x0102, 3, idx.len() - 4)]);
    let text = replay::summary(&report);
    assert!(
        text.contains(&format!(
            "incomplete: {received} of {total} bytes arrived; not applied"
        )),
        "{text}"
    );
    assert!(text.contains("data seq 3 never arrived"), "{text}");
    drop(store);
    assert_eq!(dump(&path), before);
}

#[test]
fn a_bundle_for_another_station_is_refused_and_changes_nothing() {
    let s = scene(5);
    let (cap, _) = clean_capture(&s, KISS_PROFILE, 6);
    // Replaying into the sender's own database: the bundle is not addressed to it.
    let path = s.b.path().to_path_buf();
    // Opening checks capture (and records digests): compare from after the open.
    let mut b = Store::open(&path).unwrap();
    let before = dump(&path);
    let report = run_replay(&mut b, &cap, ReplayOptions::default());
    assert!(
        matches!(report.bundles[0].fate, BundleFate::Refused(_)),
        "{:?}",
        report.bundles
    );
    drop(b);
    assert_eq!(dump(&path), before);
}

#[test]
fn random_drops_are_seeded() {
    let s = scene(20);
    let (cap, _) = clean_capture(&s, KISS_PROFILE, 6);
    let opts = |seed| ReplayOptions {
        drop_rate: Some((0.3, seed)),
        ..Default::default()
    };
    let r1 = run_replay(&mut fresh_copy(&s, "r1"), &cap, opts(7));
    let r2 = run_replay(&mut fresh_copy(&s, "r2"), &cap, opts(7));
    assert_eq!(r1.dropped, r2.dropped);
    assert!(!r1.dropped.is_empty());
    assert_eq!(r1.applied(), 0);
    let none = run_replay(
        &mut fresh_copy(&s, "r3"),
        &cap,
        ReplayOptions {
            drop_rate: Some((0.0, 7)),
            ..Default::default()
        },
    );
    assert_eq!(none.applied(), 1);
}

#[test]
fn a_truncated_capture_replays_what_it_has() {
    let s = scene(40);
    let (cap, _) = clean_capture(&s, KISS_PROFILE, 6);
    let cut = &cap[..cap.len() - 7];
    let mut store = fresh_copy(&s, "cut");
    let report = run_replay(&mut store, cut, ReplayOptions::default());
    // The last record is our own ack: the bundle is whole before it.
    assert_eq!(report.applied(), 1);
    let text = replay::summary(&report);
    assert!(
        text.contains("warning: capture ends inside record"),
        "{text}"
    );
}

/// A KISS capture written out byte by byte: header (profile by name, no
/// text), a note, a sent data frame carrying NoBundle, a received ack, a
/// received frame with a bad CRC, a received Hello, then a torn record.
fn literal_kiss_capture() -> Vec<u8> {
    let mut c = vec![
        0x89, b'R', b'S', b'C', b'A', b'P', 0x0d, 0x0a, // magic
        1,    // version
        0x00, 0x68, 0xe5, 0xcf, 0x8b, 0x01, 0x00, 0x00, // start 1_700_000_000_000 ms
    ];
    c.extend_from_slice(&[0x11; 16]); // station
    c.push(1); // kiss
    c.push(13);
    c.extend_from_slice(b"sim-kiss-1200");
    c.push(0); // no profile text
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(&c);
    c.extend_from_slice(&crc.to_le_bytes());
    let mut rec = |at: u8, kind: u8, body: &[u8]| {
        let mut r = vec![at, kind, body.len() as u8];
        r.extend_from_slice(body);
        let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(&r);
        r.extend_from_slice(&crc.to_le_bytes());
        c.extend_from_slice(&r);
    };
    rec(0, 3, b"session start");
    // Data, session 7, seq 0: rem_ms 0, tx 1, message NoBundle (04).
    let mut data = vec![
        0xc0, 0x00, 0x01, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x01, 0x04,
    ];
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI).checksum(&data[2..]);
    data.extend_from_slice(&crc.to_be_bytes());
    data.push(0xc0);
    rec(10, 1, &data);
    // Ack, session 7, next 1, received seq 3: rem 0, tx 2, END, echo 1, bitmap 02.
    let mut ack = vec![
        0xc0, 0x00, 0x02, 0x00, 0x00, 0x07, 0x00, 0x01, 0x00, 0x06, 0x00, 0x00, 0x02, 0x02, 0x01,
        0x02,
    ];
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI).checksum(&ack[2..]);
    ack.extend_from_slice(&crc.to_be_bytes());
    ack.push(0xc0);
    rec(90, 2, &ack);
    // The frame from docs/wire-format-frames.md with its last CRC byte wrong.
    rec(
        100,
        2,
        &[
            0xc0, 0x00, 0x01, 0x00, 0x12, 0x34, 0x00, 0x05, 0x00, 0x02, 0x68, 0x69, 0xa9, 0xa2,
            0xe9, 0x00, 0xc0,
        ],
    );
    // A torn record: time, kind, length 40, then only 3 bytes.
    c.extend_from_slice(&[120, 2, 40, 0xc0, 0x00, 0x01]);
    c
}

fn show_cli(bytes: &[u8]) -> String {
    let dir = scratch();
    let p = dir.path().join("cap.rscap");
    std::fs::write(&p, bytes).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_radiosync"))
        .args(["capture", "show"])
        .arg(&p)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn capture_show_lists_literal_records() {
    let text = show_cli(&literal_kiss_capture());
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("capture by station 11111111-1111-1111-1111-111111111111"),
        "{text}"
    );
    assert!(
        lines[0].contains("framing kiss, profile \"sim-kiss-1200\""),
        "{text}"
    );
    assert_eq!(lines[1], "no FEC");
    assert_eq!(lines[2], "#0            0 ms note    13 B  session start");
    assert_eq!(
        lines[3],
        "#1           10 ms sent    19 B  KISS p0 | Data session 0007 seq 0 payload 4 | data seq 0 tx 1 rem 0 ms | NoBundle | CRC ok"
    );
    assert_eq!(
        lines[4],
        "#2           90 ms recv    21 B  KISS p0 | Ack session 0007 seq 1 payload 6 | ack next 1 +[3] tx 2 rem 0 ms echo 1 | CRC ok"
    );
    assert!(
        lines[5].starts_with(
            "#3          100 ms recv    17 B  BAD KISS p0 data of 14 bytes: frame CRC-32C mismatch"
        ),
        "{text}"
    );
    assert!(
        lines[6].starts_with("4 records; the capture ends early: capture ends inside record 4"),
        "{text}"
    );
    assert_eq!(lines.len(), 7, "{text}");
    // With --hex the bytes follow each frame record.
    let dir = scratch();
    let p = dir.path().join("cap.rscap");
    std::fs::write(&p, literal_kiss_capture()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_radiosync"))
        .args(["capture", "show", "--hex"])
        .arg(&p)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("\n                                 c0 00 01 00 12 34 00 05 00 02 68 69 a9 a2 e9 00 c0\n"),
        "{text}"
    );
}

#[test]
fn capture_show_decodes_a_built_transfer() {
    let s = scene(10);
    let (cap, _) = clean_capture(&s, TRANSPARENT_PROFILE, 4);
    let text = show_cli(&cap);
    assert!(
        text.contains("RS 16 parity per 239 bytes, interleaved"),
        "{text}"
    );
    let b = s.b.station().id;
    assert!(
        text.contains("sync | Data session 0102 seq 0 payload"),
        "{text}"
    );
    assert!(
        text.contains(&format!("Hello v{PROTOCOL_VERSION} from station {b}")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "BundleStart id {} len {} offset 0",
            BundleId::of(&s.bundle),
            s.bundle.len()
        )),
        "{text}"
    );
    assert!(text.contains("Chunk offset 0 len "), "{text}");
    assert!(
        text.contains("sent") && text.contains("| ack next "),
        "{text}"
    );
    assert!(text.trim_end().ends_with("records"), "{text}");
}

#[test]
fn capture_show_survives_garbage_records() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    for profile in [KISS_PROFILE, TRANSPARENT_PROFILE] {
        let mut c = CaptureBuilder::new(StationId([0; 16]), profile, rng.gen());
        for _ in 0..200 {
            let len = rng.gen_range(0..300);
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            if rng.gen_bool(0.3) && !bytes.is_empty() {
                bytes[0] = 0xc0;
            }
            let kind =
                [RecordKind::Sent, RecordKind::Received, RecordKind::Note][rng.gen_range(0..3)];
            c.record(kind, bytes);
        }
        let cap = c.bytes();
        let reader = Reader::new(cap.as_slice()).unwrap();
        let header = reader.header().clone();
        let text = show::show(&header, reader);
        assert!(text.trim_end().ends_with("200 records"), "{text}");
        // And replay the same garbage: nothing applied, nothing panics.
        let s = scene(0);
        let r = run_replay(&mut fresh_copy(&s, "g"), &cap, ReplayOptions::default());
        assert_eq!(r.applied(), 0);
    }
}

#[test]
fn replay_cli_reports_and_exits_by_outcome() {
    let s = scene(40);
    let (cap, idx) = clean_capture(&s, KISS_PROFILE, 6);
    let dir = scratch();
    let cap_path = dir.path().join("field.rscap");
    std::fs::write(&cap_path, &cap).unwrap();
    let run = |name: &str, extra: &[String]| {
        let db = dir.path().join(format!("{name}.db"));
        radiosync::store::copy_station(&s.a_before, &db).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_radiosync"))
            .arg("replay")
            .arg("--db")
            .arg(&db)
            .arg(&cap_path)
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = run("clean", &["-v".into()]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains(&format!(
            "bundle {} (session 0102, {} bytes, from record #{}): applied: 41 row(s) applied",
            BundleId::of(&s.bundle),
            s.bundle.len(),
            idx[1]
        )),
        "{out}"
    );
    let hello = format!("session 0102: Hello v{PROTOCOL_VERSION} from station");
    assert!(out.contains(&hello), "{out}");
    let (code, out, _) = run(
        "lossy",
        &["--drop".into(), format!("{},{}", idx[2], idx[4])],
    );
    assert_eq!(code, Some(8), "{out}");
    assert!(
        out.contains("2 dropped") && out.contains("incomplete: "),
        "{out}"
    );
    assert!(out.contains("data seq 2 never arrived"), "{out}");
    let (code, _, err) = run("bad", &["--drop-rate".into(), "1.5".into()]);
    assert_eq!(code, Some(2), "clap usage error");
    assert!(err.contains("not a probability"), "{err}");
    // Nothing whole to apply, like an incomplete bundle: 8 (docs/operator-guide.md).
    let (code, out, _) = run("sent", &["--direction".into(), "sent".into()]);
    assert_eq!(code, Some(8), "{out}");
    assert!(out.contains("no bundle in these frames"), "{out}");
}

#[test]
fn a_resumed_bundle_continues_the_partial_the_database_holds() {
    let s = scene(40);
    let id = BundleId::of(&s.bundle);
    let total = s.bundle.len() as u64;
    let stored = 700usize;
    assert!(s.bundle.len() > stored + 100);
    let mut c = CaptureBuilder::new(s.a.station().id, KISS_PROFILE, true);
    let mut msgs = bundle_messages(&s.b, &s.bundle, c.max_message);
    msgs.truncate(1); // the Hello
    msgs.push(
        Message::BundleStart {
            id,
            total_len: total,
            offset: stored as u64,
            more: true,
        }
        .to_bytes(),
    );
    let mut offset = stored;
    while offset < s.bundle.len() {
        let room = c.max_message - 1 - radiosync::sync::message::varint_len(offset as u64);
        let end = (offset + room).min(s.bundle.len());
        msgs.push(
            Message::Chunk {
                offset: offset as u64,
                bytes: s.bundle[offset..end].to_vec(),
            }
            .to_bytes(),
        );
        offset = end;
    }
    for (seq, m) in msgs.iter().enumerate() {
        c.received_data(seq as u16, m);
    }
    c.sent_ack(msgs.len() as u16);
    let cap = c.bytes();

    // The database before this session holds the first 700 bytes from b.
    let b_id = s.b.station().id;
    let store = fresh_copy(&s, "with-partial");
    store.transfer_begin_partial(&b_id, id, total).unwrap();
    store
        .transfer_save_chunk(&b_id, id, 0, &s.bundle[..stored])
        .unwrap();
    let mut store = Store::open(store.path()).unwrap();
    let report = run_replay(&mut store, &cap, ReplayOptions::default());
    assert_applied_like_direct_import(&s, &report, &store);
    assert!(report
        .log
        .iter()
        .any(|l| l.contains("resumes the 700 bytes of bundle")));
    // Applied as the live station does: the partial went with the commit.
    assert_eq!(store.transfer_state(&b_id).unwrap().incoming, None);

    // Without the partial the capture alone cannot rebuild it.
    let mut bare = fresh_copy(&s, "bare");
    let report = run_replay(&mut bare, &cap, ReplayOptions::default());
    assert_eq!(report.applied(), 0);
    let received = total - stored as u64;
    assert_eq!(
        report.bundles[0].fate,
        BundleFate::Resumed {
            offset: stored as u64,
            received
        }
    );
    assert!(replay::summary(&report).contains("resumed at offset 700 from an earlier session"));
}

#[test]
fn an_amateur_capture_shows_callsigns_and_replays() {
    let s = scene(20);
    let (cap, _) = clean_capture(&s, "direwolf-1200", 6);
    let text = show_cli(&cap);
    assert!(text.contains("AX.25 UI"), "{text}");
    assert!(
        text.contains(" recv ")
            && text.contains("KISS p0 AX.25 W1AW-2>N0CALL-1 | Data session 0102 seq 0"),
        "{text}"
    );
    let mut store = fresh_copy(&s, "replayed");
    let report = run_replay(&mut store, &cap, ReplayOptions::default());
    assert_applied_like_direct_import(&s, &report, &store);

    // With the station's callsign known, frames for it are fed, frames for
    // another station are ignored as the live station ignores them.
    let here = fresh_copy(&s, "here");
    let mut here = Store::init(here.path(), None, Some("N0CALL-1")).unwrap();
    let report = run_replay(&mut here, &cap, ReplayOptions::default());
    assert_eq!((report.applied(), report.ignored), (1, 0));
    let other = fresh_copy(&s, "other");
    let path = other.path().to_path_buf();
    let mut other = Store::init(&path, None, Some("K1ABC")).unwrap();
    let before = dump(&path);
    let report = run_replay(&mut other, &cap, ReplayOptions::default());
    assert_eq!(report.applied(), 0);
    assert!(report.ignored > 3 && report.frames == 0, "{report:?}");
    assert!(replay::summary(&report).contains(&format!("{} for other stations", report.ignored)));
    assert!(report
        .log
        .iter()
        .any(|l| l.contains("frame for N0CALL-1, not this station: ignored")));
    drop(other);
    assert_eq!(dump(&path), before);
}

#[test]
fn a_fragmented_hello_is_reassembled() {
    let s = scene(10);
    let mut c = CaptureBuilder::new(s.a.station().id, KISS_PROFILE, true);
    let mut msgs = bundle_messages(&s.b, &s.bundle, c.max_message);
    let hello = msgs.remove(0);
    let pieces: Vec<&[u8]> = hello.chunks(20).collect();
    let mut frags: Vec<Vec<u8>> = pieces
        .iter()
        .enumerate()
        .map(|(i, p)| {
            Message::Fragment {
                last: i + 1 == pieces.len(),
                bytes: p.to_vec(),
            }
            .to_bytes()
        })
        .collect();
    assert!(frags.len() >= 3);
    frags.extend(msgs);
    for (seq, m) in frags.iter().enumerate() {
        c.received_data(seq as u16, m);
    }
    let cap = c.bytes();
    let mut store = fresh_copy(&s, "replayed");
    let report = run_replay(&mut store, &cap, ReplayOptions::default());
    assert_applied_like_direct_import(&s, &report, &store);
    let b = s.b.station().id;
    assert!(report
        .log
        .iter()
        .any(|l| l.contains(&format!("Hello v{PROTOCOL_VERSION} from station {b}"))));
    let text = show_cli(&cap);
    assert!(text.contains("| Fragment of 20 bytes |"), "{text}");
    assert!(text.contains("| LastFragment of "), "{text}");
}

/// A peer that breaks the session protocol (here: it sends a bundle's chunks
/// out of order) is caught the same way by a live session and by replay,
/// because both run the same reassembly code: the same typed error, at the
/// same message.
#[test]
fn replay_reproduces_a_session_layer_fault_as_the_live_session_sees_it() {
    let s = scene(40);
    let mut c = CaptureBuilder::new(s.a.station().id, KISS_PROFILE, true);
    let mut msgs = bundle_messages(&s.b, &s.bundle, c.max_message);
    assert!(msgs.len() > 4, "the bundle spans several chunks");
    msgs.swap(3, 4);
    for (seq, m) in msgs.iter().enumerate() {
        c.received_data(seq as u16, m);
    }
    let max_message = c.max_message;
    let cap = c.bytes();

    // The live receiver: an initiating session fed the same messages in order.
    let local = LocalInfo {
        station: s.a.station().id,
        callsign: String::new(),
        schema: s.a.schema_fingerprint(),
        dict_id: 0,
        vector: s.a.vector().unwrap(),
        fingerprint: 0,
    };
    let mut live = Session::initiate(
        Config::new(max_message),
        local,
        s.b.station().id,
        PeerState::default(),
    )
    .unwrap();
    let mut failed_at = None;
    for (i, m) in msgs.iter().enumerate() {
        live.handle_message(m);
        if live.error().is_some() {
            failed_at = Some(i);
            break;
        }
    }
    let Some(SessionError::Protocol(live_violation)) = live.error().cloned() else {
        panic!("the live session should fail: {:?}", live.error());
    };
    assert!(matches!(live_violation, Violation::ChunkOutOfPlace { .. }));

    let mut store = fresh_copy(&s, "replayed");
    let report = run_replay(&mut store, &cap, ReplayOptions::default());
    let (record, _, replayed) = report.violations.first().expect("replay sees the fault");
    assert_eq!(replayed, &ReceiveError::Protocol(live_violation));
    // The same message: records are numbered from 0 and hold one frame each.
    assert_eq!(Some(*record as usize), failed_at);
    assert_eq!(report.applied(), 0);
    assert_eq!(content(&store), content(&fresh_copy(&s, "untouched")));
    assert!(replay::summary(&report).contains("a live session stops here"));
}

/// A monitoring station reads every row of a dictionary-compressed transfer with
/// the published dictionary (`dict export`), and says what it lacks without it.
#[test]
fn capture_show_decodes_bundles_with_the_published_dictionary() {
    use radiosync::capture::decode::DecodeKeys;
    use radiosync::codec::Dictionary;
    let mut s = scene(120);
    let dict = s.b.retrain_dictionary().unwrap();
    s.b.set_peer_dict(&s.a.station().id, dict.id).unwrap();
    s.bundle = s.b.export_bundle_bytes(&s.a.station().id).unwrap();
    assert!(radiosync::codec::peek_header(&s.bundle).unwrap().uses_dict);
    let (cap, _) = clean_capture(&s, KISS_PROFILE, 6);
    let show = |keys: Option<DecodeKeys>| {
        let reader = Reader::new(cap.as_slice()).unwrap();
        let header = reader.header().clone();
        show::show_with(&header, reader, false, keys)
    };
    let plain = show(None);
    assert!(!plain.contains("from b 7"), "{plain}");

    let without = show(Some(DecodeKeys::default()));
    assert!(
        without.contains("which this station does not hold"),
        "{without}"
    );
    assert!(!without.contains("from b 7"), "{without}");

    // The dictionary as `dict export` writes it, and the schema of a station copy.
    let dir = scratch();
    let dict_path = dir.path().join("b.dict");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_radiosync"))
        .args(["dict", "export", "--db"])
        .arg(s.b.path())
        .arg("--out")
        .arg(&dict_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let published = Dictionary::new(std::fs::read(&dict_path).unwrap());
    assert_eq!(published, dict);
    let keys = DecodeKeys {
        dict: Some(published),
        schema: Some((s.a.schema_fingerprint(), s.a.layout())),
        stations: Vec::new(),
    };
    let text = show(Some(keys));
    assert!(text.contains("bundle "), "{text}");
    assert!(text.contains(" row version(s)"), "{text}");
    // Every row b sent, with its values by column name.
    for i in [0, 7, 119] {
        assert!(
            text.contains(&format!("item b-item-{i} ")),
            "row b-item-{i} missing: {text}"
        );
        assert!(text.contains(&format!("name=\"from b {i}\"")), "{text}");
    }
    // The update of item-1 travels as a one-column delta named by its base version.
    assert!(text.contains("item (by base) "), "{text}");
    assert!(text.contains(" qty=99"), "{text}");

    // The same through the command line, from a station copy's database.
    let cap_path = dir.path().join("c.rscap");
    std::fs::write(&cap_path, &cap).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_radiosync"))
        .args(["capture", "show", "--decode", "--dict"])
        .arg(&dict_path)
        .arg("--db")
        .arg(&s.a_before)
        .arg(&cap_path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("name=\"from b 119\""), "{stdout}");
}
