//! Writes the seed corpora of the fuzz targets in `tools/fuzz` (`corpus/TARGET/`, one file
//! per seed) and their libFuzzer dictionaries (`dict/TARGET.dict`: magic bytes, delimiters,
//! header prefixes) from bytes this library produces, so they follow the formats as they change:
//!
//! ```sh
//! cargo run --release --example fuzz_corpus -- tools/fuzz
//! ```
//!
//! Two stations are built from the embedded sample data with fixed ids and edited with
//! plain SQL (one-column updates, inserts, a soft delete, a row edited on both sides). Their
//! bundles come from the store's own export; frames, KISS and transparent streams, AX.25 UI
//! frames, ARQ payloads, session messages and capture files come from real syncs between the
//! two (the daemon's `Station`s over the in-process channel simulator, recording as
//! `--capture` does) with three profiles: `sim-kiss-1200` with lost frames,
//! `sim-transparent-9600` with bit errors, `direwolf-1200` (AX.25 UI, callsigns). A few
//! inputs the syncs never produce (every error code, fragments, KISS commands, a frame with an
//! auth tag) are built with the same emitters. Each input is shaped as its target reads it
//! (a leading selector byte where the target has one). The output is deterministic:
//! regenerating after a format change shows up as a diff of the seeds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rusqlite::{params, Connection};

use radiosync::arq::{AckRepr, DataRepr, Seq};
use radiosync::capture::show::CaptureLink;
use radiosync::capture::{CaptureHeader, LinkFraming, Reader, Record, RecordKind, Writer};
use radiosync::codec::{self, Dictionary};
use radiosync::daemon::station::Station;
use radiosync::delta::{Bundle, RowBody, RowRef, StationId, Want};
use radiosync::frame::ax25::{Callsign, UiFrame};
use radiosync::frame::kiss::{self, KissCommand, KissDeframer, KissFrame};
use radiosync::frame::transparent;
use radiosync::frame::{FecParams, Frame, FrameKind};
use radiosync::profile::Profile;
use radiosync::sim::pair::{channel_config, RunEnd, SimLink, SimPair};
use radiosync::sim::Side;
use radiosync::store::Store;
use radiosync::sync::{BundleId, ErrorCode, Hello, Message, Resume};
use radiosync::testkit::{capturing_station, SharedCapture};

const SAMPLE: &str = include_str!("../data/sample.sql");
const A_ID: StationId = StationId([0xa1; 16]);
const B_ID: StationId = StationId([0xb2; 16]);
/// A third origin, so that a bundle carries a station table.
const C_ID: StationId = StationId([0xc3; 16]);
/// The dictionary `fuzz_targets/bundle_decode.rs` decodes with.
const BUNDLE_TARGET_DICT: &[u8] = b"radiosync fuzz dictionary: not a trained one";
/// The FEC `fuzz_targets/transparent_deframer.rs` uses when its mode byte is odd.
const TRANSPARENT_TARGET_FEC: FecParams = FecParams {
    parity_bytes_per_block: 8,
    block_data_len: 40,
    interleave: true,
};
/// Seeds larger than this are left out (libFuzzer's default max_len is 4096).
const MAX_SEED: usize = 4000;

/// The seeds of every target, by name, without duplicates.
#[derive(Default)]
struct Corpus {
    targets: BTreeMap<&'static str, Vec<(String, Vec<u8>)>>,
    seen: BTreeSet<(&'static str, Vec<u8>)>,
    dicts: BTreeMap<&'static str, BTreeMap<Vec<u8>, String>>,
}

impl Corpus {
    fn add(&mut self, target: &'static str, name: impl Into<String>, bytes: Vec<u8>) {
        if bytes.len() > MAX_SEED || !self.seen.insert((target, bytes.clone())) {
            return;
        }
        self.targets
            .entry(target)
            .or_default()
            .push((name.into(), bytes));
    }

    /// A dictionary entry (libFuzzer's `-dict=`): bytes the format gives meaning to.
    fn token(&mut self, target: &'static str, name: &str, bytes: &[u8]) {
        if !bytes.is_empty() {
            let d = self.dicts.entry(target).or_default();
            d.entry(bytes.to_vec()).or_insert_with(|| name.to_string());
        }
    }

    /// Replaces the files of each target's corpus directory with its seeds, and writes
    /// its dictionary.
    fn write(&self, fuzz_dir: &Path) -> Result<()> {
        let dict_dir = fuzz_dir.join("dict");
        std::fs::create_dir_all(&dict_dir)?;
        for (target, tokens) in &self.dicts {
            let mut text = format!(
                "# libFuzzer dictionary for {target}, written by examples/fuzz_corpus.rs\n"
            );
            for (i, (bytes, name)) in tokens.iter().enumerate() {
                let quoted: String = bytes
                    .iter()
                    .map(|&b| match b {
                        b'"' | b'\\' => format!("\\{}", b as char),
                        0x20..=0x7e => (b as char).to_string(),
                        _ => format!("\\x{b:02X}"),
                    })
                    .collect();
                text.push_str(&format!("{name}_{i}=\"{quoted}\"\n"));
            }
            std::fs::write(dict_dir.join(format!("{target}.dict")), text)?;
        }
        let out = fuzz_dir.join("corpus");
        for (target, seeds) in &self.targets {
            let dir = out.join(target);
            if dir.exists() {
                for e in std::fs::read_dir(&dir)? {
                    let p = e?.path();
                    if p.is_file() {
                        std::fs::remove_file(&p)?;
                    }
                }
            }
            std::fs::create_dir_all(&dir)?;
            let bytes: usize = seeds.iter().map(|(_, b)| b.len()).sum();
            for (i, (name, b)) in seeds.iter().enumerate() {
                std::fs::write(dir.join(format!("{i:02}-{name}")), b)?;
            }
            println!("{target:>22}: {:3} seeds, {bytes:6} bytes", seeds.len());
        }
        Ok(())
    }
}

/// Up to `per_key` items per key: the smallest ones and the largest.
fn pick<K: Ord>(items: Vec<(K, String, Vec<u8>)>, per_key: usize) -> Vec<(String, Vec<u8>)> {
    let mut groups: BTreeMap<K, Vec<(String, Vec<u8>)>> = BTreeMap::new();
    for (k, name, b) in items {
        let g = groups.entry(k).or_default();
        if !g.iter().any(|(_, x)| *x == b) {
            g.push((name, b));
        }
    }
    let mut out = Vec::new();
    for (_, mut g) in groups {
        g.sort_by(|x, y| (x.1.len(), &x.1).cmp(&(y.1.len(), &y.1)));
        if g.len() > per_key {
            let last = g.pop().expect("not empty");
            g.truncate(per_key - 1);
            g.push(last);
        }
        out.extend(g);
    }
    out
}

/// Station A from the sample data, B cloned from it; callsigns for amateur profiles.
fn stations(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let a = dir.join("a.sqlite");
    let b = dir.join("b.sqlite");
    Connection::open(&a)?.execute_batch(SAMPLE)?;
    let mut s = Store::init_as(&a, A_ID, Some("A"), Some("N0CALL-1"))?;
    s.track(&[], &["id".to_string()])?;
    drop(s);
    Store::clone_station_as(&a, &b, B_ID, "B", Some("N0CALL-2"))?;
    edit(&a, 0)?;
    edit(&b, 1)?;
    Ok((a, b))
}

/// A few application writes on one side: one-column updates (travel as deltas), a row
/// both sides edit, inserts with text and a soft delete.
fn edit(path: &Path, side: usize) -> Result<()> {
    let conn = Connection::open(path)?;
    let uuids = |table: &str| -> Result<Vec<String>> {
        Ok(conn
            .prepare(&format!("SELECT uuid FROM {table} ORDER BY uuid LIMIT 20"))?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?)
    };
    let people = uuids("pr_person")?;
    for i in 0..5 {
        conn.execute(
            "UPDATE pr_person SET job_title = ?1, modified_on = ?2 WHERE uuid = ?3",
            params![
                format!("radio operator {side}-{i}"),
                format!("2025-03-0{}T10:{:02}:00.000Z", 1 + side, i),
                people[side * 5 + i]
            ],
        )?;
    }
    conn.execute(
        "UPDATE pr_person SET job_title = ?1, modified_on = ?2 WHERE uuid = ?3",
        params![
            format!("edited on both sides, by {side}"),
            format!("2025-03-05T08:00:0{side}.000Z"),
            people[12]
        ],
    )?;
    let max_id: i64 = conn.query_row("SELECT max(id) FROM cms_post", [], |r| r.get(0))?;
    for i in 0..8 {
        conn.execute(
            "INSERT INTO cms_post (id, uuid, modified_on, deleted, series, body) VALUES (?1, ?2, ?3, 0, 'Report', ?4)",
            params![
                max_id + 1 + (side * 10 + i) as i64,
                format!("{side:04}{i:04}-fuzz-0000-0000-000000000000"),
                "2025-03-01T12:00:00.000Z",
                format!(
                    "Report {i} from station {side}: the road to the clinic at km {} is passable \
                     again, {} trucks with water and tarpaulins are waiting at the bridge.",
                    12 + side * 7 + i,
                    i * 3 + 1
                )
            ],
        )?;
    }
    let posts = uuids("cms_post")?;
    conn.execute(
        "UPDATE cms_post SET deleted = 1, modified_on = ?1 WHERE uuid = ?2",
        params!["2025-03-02T09:30:00.000Z", posts[side]],
    )?;
    Ok(())
}

/// Bundles from the stores' exports, and variants of them the targets can decode.
fn bundles(a: &Path, b: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let sa = Store::open(a)?;
    let sb = Store::open(b)?;
    let target_dict = Dictionary::new(BUNDLE_TARGET_DICT.to_vec());
    let mut out = Vec::new();
    let mut real: Vec<(&str, Bundle)> = vec![
        ("a-to-b", sa.export_for(&B_ID)?),
        ("b-to-a", sb.export_for(&A_ID)?),
        ("slice-a", sa.export_since("2025-01-01T00:00:00.000Z")?),
    ];
    // As the store sends them (with its own dictionary, if it has one).
    out.push(("export-a-to-b".into(), sa.export_bundle_bytes(&B_ID)?));
    out.push(("export-b-to-a".into(), sb.export_bundle_bytes(&A_ID)?));
    // Rows forwarded from a third station, and wants by uuid and by tag.
    let mut forwarded = real[0].1.clone();
    forwarded.sender_vector.raise(C_ID, 7);
    if let Some(row) = forwarded.tables.iter_mut().flat_map(|t| &mut t.rows).next() {
        row.tag.origin = C_ID;
        row.tag.seq = 7;
        row.writer = C_ID;
    }
    let first = forwarded
        .tables
        .first()
        .and_then(|t| t.rows.first().map(|r| (t.table, r)));
    if let Some((table, row)) = first {
        forwarded.wants = vec![
            Want {
                table,
                row: RowRef::Uuid(row.uuid.clone()),
            },
            Want {
                table,
                row: RowRef::Tag(row.tag),
            },
        ];
    }
    real.push(("forwarded-with-wants", forwarded));
    for (name, bundle) in &real {
        out.push((name.to_string(), codec::encode(bundle, None, false)?));
        out.push((
            format!("{name}-dict"),
            codec::encode(bundle, Some(&target_dict), true)?,
        ));
        // Each table alone, and each kind of row alone: small, often uncompressed.
        for t in &bundle.tables {
            let mut one = bundle.clone();
            one.tables = vec![t.clone()];
            out.push((
                format!("{name}-table{}", t.table),
                codec::encode(&one, None, false)?,
            ));
            for (kind, is) in [
                (
                    "full",
                    (|r: &RowBody| matches!(r, RowBody::Full(_))) as fn(&RowBody) -> bool,
                ),
                ("delta", |r: &RowBody| matches!(r, RowBody::Delta { .. })),
            ] {
                if let Some(r) = t.rows.iter().find(|r| is(&r.body)) {
                    let mut one = bundle.clone();
                    let mut t1 = t.clone();
                    t1.rows = vec![r.clone()];
                    one.tables = vec![t1];
                    out.push((
                        format!("{name}-table{}-{kind}-row", t.table),
                        codec::encode(&one, None, false)?,
                    ));
                }
            }
        }
        let mut empty = bundle.clone();
        empty.tables.clear();
        out.push((format!("{name}-empty"), codec::encode(&empty, None, false)?));
    }
    Ok(out)
}

/// One sync between copies of the two stations; the two captures (A's, B's).
fn capture_sync(
    dir: &Path,
    (a, b): (&Path, &Path),
    profile: &str,
    ber: f64,
    loss: f64,
    seed: u64,
) -> Result<[Vec<u8>; 2]> {
    let run = dir.join(profile);
    std::fs::create_dir_all(&run)?;
    let (ra, rb) = (run.join("a.sqlite"), run.join("b.sqlite"));
    radiosync::store::copy_station(a, &ra)?;
    radiosync::store::copy_station(b, &rb)?;
    let (p, text) = Profile::load_with_text(profile)?;
    let link = SimLink::new(channel_config(&p, ber, None, loss, seed))?;
    let epoch = link.instant(Duration::ZERO);
    let (sa, wa) = capturing_station(&ra, &p, &text, false, epoch);
    let (sb, wb) = capturing_station(&rb, &p, &text, true, epoch);
    let mut pair = SimPair::new(link, sa, sb);
    let now = pair.link.now();
    pair.station(Side::A)
        .context("station A")?
        .start_sync(now, "B", 0x2345)?;
    let mut outcomes = 0;
    let end = pair.run_until(Duration::from_secs(3600), |p| {
        if let Some(s) = p.station(Side::A) {
            while s.poll_outcome().is_some() {
                outcomes += 1;
            }
        }
        let idle = |s: Option<&mut Station>| s.is_none_or(|s| !s.has_sessions());
        outcomes > 0 && idle(p.station(Side::A)) && idle(p.station(Side::B))
    });
    if end != RunEnd::Done {
        bail!("the {profile} sync did not finish: {end:?}");
    }
    drop(pair);
    let take = |w: SharedCapture| -> Result<Vec<u8>> {
        let w = Arc::try_unwrap(w).ok().context("recorder still shared")?;
        Ok(w.into_inner().expect("recorder lock").into_inner())
    };
    Ok([take(wa)?, take(wb)?])
}

/// What a capture holds, decoded.
struct Capture {
    name: String,
    header: CaptureHeader,
    records: Vec<Record>,
    /// Every frame whose CRC checked, in order.
    frames: Vec<Frame>,
    /// The KISS data payloads (AX.25 UI frames on amateur profiles).
    kiss_payloads: Vec<Vec<u8>>,
}

fn read_capture(name: &str, bytes: &[u8]) -> Result<Capture> {
    let reader = Reader::new(bytes)?;
    let header = reader.header().clone();
    let records: Vec<Record> = reader.collect::<Result<_, _>>()?;
    let link = CaptureLink::from_header(&header);
    let mut frames = Vec::new();
    let mut kiss_payloads = Vec::new();
    for dir in [RecordKind::Sent, RecordKind::Received] {
        let mut framer = link.framer().context("capture framing")?;
        let start = std::time::Instant::now();
        let mut kd = KissDeframer::new(kiss::DEFAULT_MAX_FRAME);
        for r in records.iter().filter(|r| r.kind == dir) {
            framer.push(start, &r.bytes);
            while let Some(rx) = framer.next() {
                if let Ok(d) = rx.decoded {
                    frames.push(d.frame);
                }
            }
            if header.framing == LinkFraming::Kiss {
                kd.push(&r.bytes);
                while let Some(f) = kd.next() {
                    if let Ok(KissFrame {
                        command: KissCommand::Data(d),
                        ..
                    }) = f
                    {
                        kiss_payloads.push(d);
                    }
                }
            }
        }
    }
    Ok(Capture {
        name: name.into(),
        header,
        records,
        frames,
        kiss_payloads,
    })
}

/// A name for what a frame carries: kind and session message type.
fn frame_key(f: &Frame) -> String {
    match f.kind {
        FrameKind::Data => match DataRepr::parse(f.seq, &f.payload) {
            Ok(d) => match Message::parse(d.message) {
                Ok(m) => format!("data-{}", m.name().to_lowercase()),
                Err(_) => "data-unparsed".into(),
            },
            Err(_) => "data-short".into(),
        },
        FrameKind::Ack => match AckRepr::parse(f.seq, &f.payload) {
            Ok(a) if a.received != 0 => "ack-bitmap".into(),
            Ok(a) if a.echo.is_some() => "ack-end".into(),
            Ok(_) => "ack".into(),
            Err(_) => "ack-bad".into(),
        },
        FrameKind::Control => "control".into(),
        FrameKind::Unknown(k) => format!("kind{k:02x}"),
    }
}

/// Selector bytes of `fuzz_targets/frame_decode.rs` whose FEC parameters are valid:
/// one without interleaving, one with.
fn frame_fec_selectors() -> Vec<(u8, FecParams)> {
    let params = |sel: u8| FecParams {
        parity_bytes_per_block: usize::from(sel & 0x0F) * 2,
        block_data_len: usize::from(sel) * 3 % 260,
        interleave: sel & 0x80 != 0,
    };
    let mut out = Vec::new();
    for want_interleave in [false, true] {
        if let Some(sel) = (1..=255u8).find(|&s| {
            let p = params(s);
            p.interleave == want_interleave
                && p.parity_bytes_per_block >= 8
                && p.block_data_len >= 32
                && p.validate().is_ok()
        }) {
            out.push((sel, params(sel)));
        }
    }
    out
}

fn with_prefix(prefix: &[u8], rest: &[u8]) -> Vec<u8> {
    let mut v = prefix.to_vec();
    v.extend_from_slice(rest);
    v
}

fn main() -> Result<()> {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "tools/fuzz".into()),
    );
    let tmp = tempfile::tempdir()?;
    let (a, b) = stations(tmp.path())?;
    let mut c = Corpus::default();

    // bundle_decode.
    let bundles = bundles(&a, &b)?;
    for (name, bytes) in &bundles {
        c.add("bundle_decode", name.clone(), bytes.clone());
    }

    // Real syncs, recorded by both stations.
    let mut captures = Vec::new();
    for (profile, ber, loss, seed) in [
        ("sim-kiss-1200", 0.0, 0.2, 12),
        ("sim-transparent-9600", 1e-4, 0.0, 13),
        ("direwolf-1200", 0.0, 0.0, 14),
    ] {
        let [ca, cb] = capture_sync(tmp.path(), (&a, &b), profile, ber, loss, seed)?;
        captures.push(read_capture(&format!("{profile}-a"), &ca)?);
        captures.push(read_capture(&format!("{profile}-b"), &cb)?);
    }

    // capture_reader: the start of each capture (whole records, under MAX_SEED), and
    // one without its profile text (decoded with the profile named).
    for cap in &captures {
        let mut w = Writer::new(Vec::new(), &cap.header)?;
        for (n, r) in cap.records.iter().enumerate() {
            if n >= 2 && w.get_ref().len() + r.buffer_len() > MAX_SEED {
                break;
            }
            w.write(r)?;
        }
        c.add(
            "capture_reader",
            format!("{}-start", cap.name),
            w.into_inner(),
        );
    }
    if let Some(cap) = captures.first() {
        let mut header = cap.header.clone();
        header.profile_text.clear();
        let mut w = Writer::new(Vec::new(), &header)?;
        w.write(&Record {
            at_ms: 0,
            kind: RecordKind::Note,
            bytes: b"session 2345 with B: calling".to_vec(),
        })?;
        for r in cap.records.iter().take(3) {
            w.write(r)?;
        }
        c.add("capture_reader", "no-profile-text", w.into_inner());
    }

    // Frames, ARQ payloads and session messages, a few of each kind.
    let mut frames = Vec::new();
    let mut arq = Vec::new();
    let mut messages = Vec::new();
    for cap in &captures {
        for (i, f) in cap.frames.iter().enumerate() {
            let key = frame_key(f);
            let name = format!("{}-{i:04}-{key}", cap.name);
            frames.push((key.clone(), name.clone(), f.clone()));
            arq.push((
                key.clone(),
                name.clone(),
                with_prefix(&f.seq.to_be_bytes(), &f.payload),
            ));
            if let Ok(d) = DataRepr::parse(f.seq, &f.payload) {
                messages.push((key, name, d.message.to_vec()));
            }
        }
    }
    let fec = frame_fec_selectors();
    let framed: Vec<_> = frames
        .iter()
        .map(|(k, n, f)| (k.clone(), n.clone(), f.to_bytes().expect("frame encodes")))
        .collect();
    for (name, bytes) in pick(framed, 2) {
        c.add(
            "frame_decode",
            format!("{name}-plain"),
            with_prefix(&[0], &bytes),
        );
    }
    let mut by_key = BTreeMap::new();
    for (k, n, f) in &frames {
        by_key.entry(k.clone()).or_insert((n.clone(), f.clone()));
    }
    for (k, (n, f)) in &by_key {
        for (sel, p) in &fec {
            if let Ok(bytes) = f.encode(Some(p)) {
                c.add(
                    "frame_decode",
                    format!("{n}-fec{sel:02x}"),
                    with_prefix(&[*sel], &bytes),
                );
            }
        }
        if k == "data-hello" {
            let mut tagged = f.clone();
            tagged.auth_tag = Some(vec![0x5a; 16]);
            let bytes = tagged.to_bytes().expect("frame with a tag encodes");
            c.add(
                "frame_decode",
                format!("{n}-auth-tag"),
                with_prefix(&[0], &bytes),
            );
        }
    }
    for (name, bytes) in pick(arq, 2) {
        c.add("arq_wire", name, bytes);
    }
    // An ack naming frames received beyond a gap, with a poll.
    let ack = AckRepr {
        next_expected: Seq(5),
        rem_ms: 1200,
        tx: 3,
        poll: true,
        echo: None,
        received: 0b1011 | 1 << 40,
    }
    .emit();
    c.add(
        "arq_wire",
        "ack-gap-poll",
        with_prefix(&ack.seq.to_be_bytes(), &ack.payload),
    );
    for (name, bytes) in pick(messages, 3) {
        c.add("sync_message", name, bytes);
    }
    // Messages the syncs above do not send.
    let hello = Hello {
        version: 1,
        initiator: true,
        station: A_ID,
        callsign: "N0CALL-1".into(),
        schema: Default::default(),
        dict_id: 0x1234_5678,
        vector: Default::default(),
        resume: Some(Resume {
            id: BundleId(0x0123_4567_89ab_cdef),
            stored: 300,
            later: vec![(500, 200), (900, 100)],
        }),
        fingerprint: Some(0x0fed_cba9_8765_4321),
        refuses_push: true,
        auth: Some(radiosync::sync::message::HelloAuth {
            nonce: 0x0001_8a2b_3c4d_5e6f,
            proof: [0xa5; radiosync::auth::PROOF_LEN],
        }),
    };
    let hello_bytes = Message::Hello(hello.clone()).to_bytes();
    let (h1, h2) = hello_bytes.split_at(hello_bytes.len() / 2);
    let mut built = vec![
        ("hello-resume".to_string(), Message::Hello(hello)),
        (
            "bundle-start-more".into(),
            Message::BundleStart {
                id: BundleId(42),
                total_len: 70_000,
                offset: 300,
                more: true,
            },
        ),
        ("no-bundle".into(), Message::NoBundle),
        ("done".into(), Message::Done { fingerprint: None }),
        (
            "done-fingerprint".into(),
            Message::Done {
                fingerprint: Some(7),
            },
        ),
        (
            "fragment".into(),
            Message::Fragment {
                last: false,
                bytes: h1.to_vec(),
            },
        ),
        (
            "fragment-last".into(),
            Message::Fragment {
                last: true,
                bytes: h2.to_vec(),
            },
        ),
    ];
    for (i, code) in [
        ErrorCode::Version,
        ErrorCode::SchemaMismatch,
        ErrorCode::UnknownStation,
        ErrorCode::WrongStation,
        ErrorCode::BundleRefused,
        ErrorCode::BundleCorrupt,
        ErrorCode::BundleTooLarge,
        ErrorCode::Protocol,
        ErrorCode::Local,
        ErrorCode::Cancelled,
    ]
    .into_iter()
    .enumerate()
    {
        built.push((
            format!("error-{i}"),
            Message::Error {
                code,
                text: format!("{code}"),
            },
        ));
    }
    // Set reconciliation: a sketch of a few items, its extension, the request
    // and the answer; the sketch's sums also seed the sketch decoder.
    let items = [0x1234_5678u32, 0x9abc_def0, 7, 0xffff_fff1, 0x0bad_cafe];
    let sketch = radiosync::recon::Sketch::of(items, 8);
    built.push((
        "sketch".into(),
        Message::Sketch {
            salt: 0x5a17,
            items: 5,
            offset: 0,
            sums: sketch.sums()[..6].to_vec(),
        },
    ));
    built.push((
        "sketch-more".into(),
        Message::Sketch {
            salt: 0x5a17,
            items: 5,
            offset: 6,
            sums: sketch.sums()[6..].to_vec(),
        },
    ));
    built.push(("sketch-ask".into(), Message::SketchMore { capacity: 8 }));
    built.push(("sketch-give-up".into(), Message::SketchMore { capacity: 0 }));
    built.push((
        "differences".into(),
        Message::Differences {
            items: items[..3].to_vec(),
        },
    ));
    for (name, m) in built {
        c.add("sync_message", name, m.to_bytes());
    }
    for n in [1usize, 3, 5] {
        let sums: Vec<u8> = radiosync::recon::Sketch::of(items[..n].iter().copied(), n + 2)
            .sums()
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect();
        c.add("sketch_decode", format!("items-{n}"), sums);
    }

    // recon_file: an offer and a reply carrying a real bundle, a declining reply, rows.
    {
        use radiosync::recon::file::{FileKind, ReconFile, MAGIC};
        let mut vector = radiosync::delta::VersionVector::default();
        vector.0.insert(A_ID, 12);
        let bundle = bundles.first().map(|(_, b)| b.clone()).unwrap_or_default();
        let base = ReconFile {
            kind: FileKind::Offer,
            sender: A_ID,
            receiver: StationId([0xb2; 16]),
            salt: 0x5a17,
            items: 5,
            dict: 0xe12d_4c83,
            vector,
            sums: sketch.sums().to_vec(),
            differences: None,
            // An offer carries the sender's edits.
            bundle: bundle.clone(),
        };
        let files = [
            ("offer", base.clone()),
            (
                "reply",
                ReconFile {
                    kind: FileKind::Reply,
                    sums: Vec::new(),
                    differences: Some(items[..2].to_vec()),
                    bundle: bundle.clone(),
                    ..base.clone()
                },
            ),
            (
                "reply-declined",
                ReconFile {
                    kind: FileKind::Reply,
                    sums: Vec::new(),
                    bundle: bundle.clone(),
                    ..base.clone()
                },
            ),
            (
                "rows",
                ReconFile {
                    kind: FileKind::Rows,
                    sums: Vec::new(),
                    bundle,
                    ..base
                },
            ),
        ];
        for (name, f) in files {
            c.add("recon_file", name, f.to_bytes());
        }
        c.token("recon_file", "magic", MAGIC);
    }

    // kiss_deframer: the target's first byte says where to cut the stream in two.
    let mut kiss_records = Vec::new();
    for cap in captures
        .iter()
        .filter(|c| c.header.framing == LinkFraming::Kiss)
    {
        for (i, r) in cap.records.iter().enumerate() {
            if r.kind == RecordKind::Note {
                continue;
            }
            let fends = r.bytes.iter().filter(|&&x| x == kiss::FEND).count();
            let escaped = r.bytes.contains(&kiss::FESC);
            let key = (cap.header.profile_name.clone(), fends.min(6), escaped);
            let cut = (r.bytes.len() / 2).min(255) as u8;
            kiss_records.push((
                key,
                format!("{}-{i:04}", cap.name),
                with_prefix(&[cut], &r.bytes),
            ));
        }
        // Three records back to back, cut inside the second.
        let stream: Vec<u8> = cap
            .records
            .iter()
            .filter(|r| r.kind != RecordKind::Note)
            .take(3)
            .flat_map(|r| r.bytes.clone())
            .collect();
        c.add(
            "kiss_deframer",
            format!("{}-stream", cap.name),
            with_prefix(&[100], &stream),
        );
    }
    for (name, bytes) in pick(kiss_records, 2) {
        c.add("kiss_deframer", name, bytes);
    }
    let mut commands = Vec::new();
    for cmd in [
        KissCommand::tx_delay_ms(300)?,
        KissCommand::slot_time_ms(100)?,
        KissCommand::Persist(63),
        KissCommand::FullDuplex(false),
        KissCommand::SetHardware(vec![1, 2]),
    ] {
        commands.extend(
            KissFrame {
                port: 0,
                command: cmd,
            }
            .to_bytes()?,
        );
    }
    commands.extend(kiss::return_command());
    c.add("kiss_deframer", "commands", with_prefix(&[7], &commands));
    let mut noisy = vec![0x00, 0x41, kiss::FESC, 0x42];
    noisy.extend(KissFrame::data(3, vec![kiss::FEND, kiss::FESC, 0x11]).to_bytes()?);
    c.add(
        "kiss_deframer",
        "noise-then-escaped-port3",
        with_prefix(&[2], &noisy),
    );

    // ax25_parse: the UI frames Dire Wolf's profile sends, and one with digipeaters.
    let ui: Vec<_> = captures
        .iter()
        .filter(|c| c.header.profile_name == "direwolf-1200")
        .flat_map(|c| c.kiss_payloads.iter().map(move |p| (c, p)))
        .map(|(c, p)| {
            let key = UiFrame::parse(p).map(|u| u.info.len().min(64)).unwrap_or(0);
            (key, format!("{}-ui", c.name), p.clone())
        })
        .collect();
    let mut ui = pick(ui, 1);
    ui.truncate(10);
    if let Some((_, p)) = ui.first() {
        if let Ok(mut u) = UiFrame::parse(p) {
            u.digipeaters = vec![Callsign::new("WIDE1", 1)?, Callsign::new("RELAY", 0)?];
            c.add("ax25_parse", "digipeaters", u.to_bytes());
        }
    }
    for (name, bytes) in ui {
        c.add("ax25_parse", name, bytes);
    }

    // transparent_deframer: mode byte bit 0 = FEC, bit 1 = build-and-damage.
    let small: Vec<&Frame> = by_key
        .values()
        .map(|(_, f)| f)
        .filter(|f| f.payload.len() <= 200)
        .collect();
    for (mode, fec) in [(0u8, None), (1, Some(&TRANSPARENT_TARGET_FEC))] {
        for pair in small.chunks(2).take(4) {
            let mut stream = vec![0x55, 0x00, 0xff];
            for f in pair {
                stream.extend(transparent::encode(f, fec)?);
                stream.extend([0x00; 3]);
            }
            let key = pair
                .iter()
                .map(|f| frame_key(f))
                .collect::<Vec<_>>()
                .join("+");
            c.add(
                "transparent_deframer",
                format!("mode{mode}-{key}"),
                with_prefix(&[mode], &stream),
            );
        }
    }
    for (i, f) in small.iter().take(6).enumerate() {
        let payload = &f.payload[..f.payload.len().min(255)];
        for (mode, damage) in [
            (2u8, vec![]),
            (3, vec![5, 0x01, 40, 0x80]),
            (3, vec![9, 0x00]),
        ] {
            let mut v = vec![mode, payload.len() as u8];
            v.extend_from_slice(payload);
            v.extend(damage);
            c.add(
                "transparent_deframer",
                format!("built-{i}-{}", frame_key(f)),
                v,
            );
        }
    }

    tokens(&mut c, &captures);
    c.write(&out)?;
    Ok(())
}

/// Dictionary entries: the formats' constants, and prefixes taken from real bytes.
fn tokens(c: &mut Corpus, captures: &[Capture]) {
    use radiosync::capture;
    use radiosync::frame::ax25;
    let prefixes = |c: &Corpus, target: &str, n: usize| -> Vec<Vec<u8>> {
        let set: BTreeSet<Vec<u8>> = c.targets[target]
            .iter()
            .filter(|(_, b)| b.len() >= n)
            .map(|(_, b)| b[..n].to_vec())
            .collect();
        set.into_iter().collect()
    };
    // Bundles: magic, version, and each magic+version+flags byte the seeds use.
    c.token("bundle_decode", "magic", &codec::MAGIC);
    c.token(
        "bundle_decode",
        "magic_version",
        &[codec::MAGIC[0], codec::MAGIC[1], codec::VERSION],
    );
    for p in prefixes(c, "bundle_decode", 4) {
        c.token("bundle_decode", "header", &p);
    }
    // KISS: delimiters and escapes, for the deframer and inside captures.
    for t in ["kiss_deframer", "capture_reader"] {
        c.token(t, "fend", &[kiss::FEND]);
        c.token(t, "fend_data_port0", &[kiss::FEND, 0x00]);
        c.token(t, "fesc_tfend", &[kiss::FESC, kiss::TFEND]);
        c.token(t, "fesc_tfesc", &[kiss::FESC, kiss::TFESC]);
    }
    c.token("kiss_deframer", "return", &kiss::return_command());
    // Transparent: the sync word, and whole frame headers (sync word, length, its parity).
    for t in ["transparent_deframer", "capture_reader"] {
        c.token(t, "sync_word", &transparent::SYNC_WORD);
    }
    let frame = Frame {
        kind: FrameKind::Data,
        session: 1,
        seq: 2,
        payload: vec![0; 40],
        auth_tag: None,
        route: None,
    };
    for fec in [None, Some(&TRANSPARENT_TARGET_FEC)] {
        if let Ok(w) = transparent::encode(&frame, fec) {
            c.token(
                "transparent_deframer",
                "header",
                &w[..transparent::HEADER_LEN],
            );
        }
    }
    // AX.25: control + PID, and the address fields (shifted callsigns) the seeds carry.
    c.token(
        "ax25_parse",
        "ui_pid",
        &[ax25::CONTROL_UI, ax25::RADIOSYNC_PID],
    );
    for p in prefixes(c, "ax25_parse", 2 * ax25::ADDR_LEN) {
        c.token("ax25_parse", "destination", &p[..ax25::ADDR_LEN]);
        c.token("ax25_parse", "source", &p[ax25::ADDR_LEN..]);
    }
    // Captures: magic + version, and the profile keys of the embedded TOML.
    c.token("capture_reader", "magic", &capture::MAGIC);
    let mut mv = capture::MAGIC.to_vec();
    mv.push(capture::VERSION);
    c.token("capture_reader", "magic_version", &mv);
    for cap in captures {
        for line in cap.header.profile_text.lines() {
            if let Some((key, _)) = line.split_once(" = ") {
                if !key.contains(' ') && !key.is_empty() {
                    c.token(
                        "capture_reader",
                        "profile_key",
                        format!("{key} = ").as_bytes(),
                    );
                }
            }
        }
    }
}
