//! Radio link benchmark: the whole stack (store export -> codec -> session -> ARQ -> frames ->
//! simulated channel -> back up -> store import) on simulated time over a grid of channels.
//! A program printing tables, not a timing test: `cargo bench --bench radio_link`
//! (`-- --quick` runs only the headline cells; `-- --markdown` prints markdown tables).
//!
//! Workload: two stations cloned from `../shared/data/public.sqlite` (14,587 rows in 8
//! tables), then the same seeded edits on every run (inserts, updates, soft deletes and rows
//! edited on both sides) so each side holds a bundle of tens of KB for the other. Every cell
//! starts from copies of the same two files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use radiosync::daemon::station::{Outcome as StationOutcome, Station};
use radiosync::delta::StationId;
use radiosync::engine::EngineStats;
use radiosync::profile::{Framing, Profile};
use radiosync::sim::pair::{SimLink, SimPair};
use radiosync::sim::{ChannelConfig, Mode, Side};
use radiosync::store::Store;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rusqlite::types::Value as SqlValue;
use rusqlite::{params, Connection};

const DB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/public.sqlite");

/// Edits each station makes before the sync.
#[derive(Clone, Copy, Debug)]
struct EditCounts {
    inserts: usize,
    updates: usize,
    deletes: usize,
    /// Rows both stations update (each side writes some of them later than the other).
    conflicts: usize,
}

const EDITS: EditCounts = EditCounts {
    inserts: 320,
    updates: 800,
    deletes: 100,
    conflicts: 30,
};

/// Which rows the two stations' edits touch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Overlap {
    /// Each side updates its own rows; the rows both edit get the same columns changed.
    /// One session converges.
    Disjoint,
    /// Updates anywhere, each side its own columns of the shared rows. Where the later
    /// edit does not cover the columns of the earlier one, the receiver cannot apply it as
    /// a delta and asks for the row in full: a second session brings it.
    Random,
}

const WORKLOAD_SEED: u64 = 0x0005_ad10_5eed;

/// Station ids fixed so that bundle bytes (and so every figure) repeat from run to run.
const STATION_A: [u8; 16] = *b"radiobench-alpha";
const STATION_B: [u8; 16] = *b"radiobench-bravo";

struct TableShape {
    name: String,
    /// (name, declared type) of the columns other than id, uuid, modified_on, deleted.
    columns: Vec<(String, String)>,
}

fn table_shapes(conn: &Connection) -> rusqlite::Result<Vec<TableShape>> {
    let mut names: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'rs_%' ORDER BY name")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let columns = conn
                .prepare(&format!("PRAGMA table_info(\"{name}\")"))?
                .query_map([], |r| Ok((r.get::<_, String>(1)?, r.get::<_, String>(2)?)))?
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .filter(|(c, _)| !["id", "uuid", "modified_on", "deleted"].contains(&c.as_str()))
                .collect();
            Ok(TableShape { name, columns })
        })
        .collect()
}

fn quoted(c: &str) -> String {
    format!("\"{}\"", c.replace('"', "\"\""))
}

/// `2026-03-02T08:00:00.000Z` plus `ms` milliseconds: edit times later than every
/// dataset row (2023-2024), distinct per edit.
fn edit_time(ms: u64) -> String {
    let s = ms / 1000;
    format!(
        "2026-03-02T{:02}:{:02}:{:02}.{:03}Z",
        8 + s / 3600,
        (s / 60) % 60,
        s % 60,
        ms % 1000
    )
}

/// A random row of `table`; with `class = Some((k, m))` only rows whose id is k modulo m.
fn uuid_of(
    conn: &Connection,
    table: &str,
    class: Option<(i64, i64)>,
    rng: &mut ChaCha8Rng,
) -> rusqlite::Result<String> {
    let (k, m) = class.unwrap_or((0, 1));
    let n: i64 = conn.query_row(
        &format!("SELECT count(*) FROM \"{table}\" WHERE id % ?2 = ?1"),
        [k, m],
        |r| r.get(0),
    )?;
    conn.query_row(
        &format!("SELECT uuid FROM \"{table}\" WHERE id % ?3 = ?2 ORDER BY id LIMIT 1 OFFSET ?1"),
        [rng.gen_range(0..n), k, m],
        |r| r.get(0),
    )
}

/// A value for column `col` of `table` as a field application would write it: numbers get
/// new values, text is taken from another row of the table (so the content looks like the
/// dataset's, not like random noise or a copy of one row).
fn field_value(
    conn: &Connection,
    table: &str,
    col: &str,
    decl: &str,
    rng: &mut ChaCha8Rng,
) -> rusqlite::Result<SqlValue> {
    Ok(match decl.to_ascii_uppercase().as_str() {
        "REAL" => SqlValue::Real((rng.gen_range(-90_000_000i64..90_000_000) as f64) / 1e6),
        "INTEGER" => SqlValue::Integer(rng.gen_range(0..5000)),
        _ => {
            let n: i64 = conn.query_row(&format!("SELECT count(*) FROM \"{table}\""), [], |r| {
                r.get(0)
            })?;
            conn.query_row(
                &format!(
                    "SELECT {} FROM \"{table}\" ORDER BY id LIMIT 1 OFFSET ?1",
                    quoted(col)
                ),
                [rng.gen_range(0..n)],
                |r| r.get(0),
            )?
        }
    })
}

/// Set `cols` of the row `uuid` to new values at time `time`.
fn update_columns(
    conn: &Connection,
    t: &TableShape,
    cols: &[&(String, String)],
    uuid: &str,
    time: &str,
    rng: &mut ChaCha8Rng,
) -> rusqlite::Result<()> {
    let mut values = Vec::new();
    for (c, decl) in cols {
        values.push(field_value(conn, &t.name, c, decl, rng)?);
    }
    let sets: Vec<String> = cols
        .iter()
        .enumerate()
        .map(|(i, (c, _))| format!("{} = ?{}", quoted(c), i + 3))
        .collect();
    let sql = format!(
        "UPDATE \"{}\" SET modified_on = ?1, {} WHERE uuid = ?2",
        t.name,
        sets.join(", ")
    );
    let mut args: Vec<SqlValue> = vec![SqlValue::Text(time.into()), SqlValue::Text(uuid.into())];
    args.extend(values);
    conn.execute(&sql, rusqlite::params_from_iter(args))?;
    Ok(())
}

/// 1-3 columns of `t`, drawn from `rng`.
fn some_columns<'a>(t: &'a TableShape, rng: &mut ChaCha8Rng) -> Vec<&'a (String, String)> {
    let k = rng.gen_range(1..=3.min(t.columns.len()));
    t.columns.choose_multiple(rng, k).collect()
}

/// Plain SQL edits on one station's file, as its application would make them.
/// `side` 0 (alpha) or 1 (bravo) keeps the two stations' inserted uuids, edit times and
/// (with `Overlap::Disjoint`) the rows they update apart.
fn edit_station(
    path: &Path,
    side: u64,
    counts: EditCounts,
    overlap: Overlap,
    conflict_rows: &[(usize, String)],
) -> rusqlite::Result<()> {
    let conn = Connection::open(path)?;
    let shapes = table_shapes(&conn)?;
    let mut rng = ChaCha8Rng::seed_from_u64(WORKLOAD_SEED ^ (side + 1));
    // Two seconds per edit, one millisecond later on bravo: no two edits share a time.
    let mut clock = side;
    let mut next_time = || {
        clock += 2_000;
        edit_time(clock)
    };
    // Disjoint: each side updates and deletes rows of its own id class; the conflict rows
    // are a third class.
    let class = match overlap {
        Overlap::Disjoint => Some((side as i64, 3)),
        Overlap::Random => None,
    };
    // Weighted towards the tables field stations write most.
    let weights = |name: &str| match name {
        "pr_person" => 4,
        "gis_location" | "vulnerability_data" => 3,
        "cms_post" | "inv_inv_item" | "org_office" => 2,
        _ => 1,
    };
    let pick = |rng: &mut ChaCha8Rng| -> &TableShape {
        shapes
            .choose_weighted(rng, |t| weights(&t.name))
            .expect("tables")
    };
    let tx = conn.unchecked_transaction()?;
    for i in 0..counts.inserts {
        let t = pick(&mut rng);
        let mut cols = vec![
            "id".to_string(),
            "uuid".into(),
            "modified_on".into(),
            "deleted".into(),
        ];
        let mut args: Vec<SqlValue> = vec![
            SqlValue::Integer(tx.query_row(
                &format!("SELECT max(id) + 1 FROM \"{}\"", t.name),
                [],
                |r| r.get(0),
            )?),
            SqlValue::Text(format!(
                "{:08x}-bench-{}-{:04}-{:012x}",
                rng.gen::<u32>(),
                ["a", "b"][side as usize],
                i,
                rng.gen::<u64>() & 0xffff_ffff_ffff
            )),
            SqlValue::Text(next_time()),
            SqlValue::Integer(0),
        ];
        for (c, decl) in &t.columns {
            cols.push(c.clone());
            args.push(field_value(&tx, &t.name, c, decl, &mut rng)?);
        }
        let marks: Vec<String> = (1..=cols.len()).map(|i| format!("?{i}")).collect();
        let sql = format!(
            "INSERT INTO \"{}\" ({}) VALUES ({})",
            t.name,
            cols.iter()
                .map(|c| quoted(c))
                .collect::<Vec<_>>()
                .join(", "),
            marks.join(", ")
        );
        tx.execute(&sql, rusqlite::params_from_iter(args))?;
    }
    for _ in 0..counts.updates {
        let t = pick(&mut rng);
        let uuid = uuid_of(&tx, &t.name, class, &mut rng)?;
        let time = next_time();
        let cols = some_columns(t, &mut rng);
        update_columns(&tx, t, &cols, &uuid, &time, &mut rng)?;
    }
    for _ in 0..counts.deletes {
        let t = pick(&mut rng);
        let uuid = uuid_of(&tx, &t.name, class, &mut rng)?;
        tx.execute(
            &format!(
                "UPDATE \"{}\" SET deleted = 1, modified_on = ?1 WHERE uuid = ?2",
                t.name
            ),
            params![next_time(), uuid],
        )?;
    }
    for (j, (ti, uuid)) in conflict_rows.iter().enumerate() {
        let t = &shapes[*ti];
        // Disjoint: both sides change the same columns (the later edit wins whole);
        // Random: each side its own columns.
        let mut col_rng = match overlap {
            Overlap::Disjoint => ChaCha8Rng::seed_from_u64(WORKLOAD_SEED + j as u64),
            Overlap::Random => ChaCha8Rng::seed_from_u64(rng.gen()),
        };
        let cols = some_columns(t, &mut col_rng);
        // Alpha writes the later version of even rows, bravo of odd ones.
        let later = (j as u64 % 2 == side) as u64;
        let time = edit_time(3_600_000 * 6 + j as u64 * 2_000 + later * 1_000);
        update_columns(&tx, t, &cols, uuid, &time, &mut rng)?;
    }
    tx.commit()
}

/// Two stations ready to sync, kept as files that every cell copies.
struct Workload {
    a: PathBuf,
    b: PathBuf,
    a_id: StationId,
    b_id: StationId,
    /// Bundle sizes A -> B and B -> A exported right after the edits (file-sync figures).
    bundle_ab: usize,
    bundle_ba: usize,
    rows_ab: u64,
    rows_ba: u64,
    rows_total: usize,
}

fn build_workload(dir: &Path, overlap: Overlap) -> anyhow::Result<Workload> {
    std::fs::create_dir_all(dir)?;
    let a = dir.join("alpha.sqlite");
    let b = dir.join("bravo.sqlite");
    radiosync::store::copy_station(DB, &a).map_err(|e| anyhow::anyhow!("cannot copy {DB}: {e}"))?;
    let mut perms = std::fs::metadata(&a)?.permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&a, perms)?;
    drop(Store::init(&a, Some("alpha"), None)?);
    Connection::open(&a)?.execute("UPDATE rs_station SET uuid = ?1", [STATION_A.to_vec()])?;
    let mut sa = Store::open(&a)?;
    let tables = sa.syncable_tables()?;
    let rows_total = sa.track(&tables, &["id".to_string()])?;
    sa.retrain_dictionary()?;
    drop(sa);
    let old_b = Store::clone_station(&a, &b, "bravo", None)?.station().id;
    // Fix bravo's random id in both files (nothing else refers to it yet).
    Connection::open(&b)?.execute("UPDATE rs_station SET uuid = ?1", [STATION_B.to_vec()])?;
    {
        let c = Connection::open(&a)?;
        c.execute(
            "UPDATE rs_peer SET uuid = ?1 WHERE uuid = ?2",
            params![STATION_B.to_vec(), old_b.0.to_vec()],
        )?;
        c.execute(
            "UPDATE rs_peer_vector SET peer = ?1 WHERE peer = ?2",
            params![STATION_B.to_vec(), old_b.0.to_vec()],
        )?;
    }

    // Rows both sides will edit: chosen from the shared data.
    let conflict_rows = {
        let conn = Connection::open(&a)?;
        let shapes = table_shapes(&conn)?;
        let mut rng = ChaCha8Rng::seed_from_u64(WORKLOAD_SEED);
        (0..EDITS.conflicts)
            .map(|_| {
                let ti = rng.gen_range(0..shapes.len());
                let class = match overlap {
                    Overlap::Disjoint => Some((2, 3)),
                    Overlap::Random => None,
                };
                Ok((ti, uuid_of(&conn, &shapes[ti].name, class, &mut rng)?))
            })
            .collect::<rusqlite::Result<Vec<_>>>()?
    };
    edit_station(&a, 0, EDITS, overlap, &conflict_rows)?;
    edit_station(&b, 1, EDITS, overlap, &conflict_rows)?;

    let (sa, sb) = (Store::open(&a)?, Store::open(&b)?);
    let (a_id, b_id) = (sa.station().id, sb.station().id);
    let ab = sa.export_encoded(&b_id)?;
    let ba = sb.export_encoded(&a_id)?;
    Ok(Workload {
        a,
        b,
        a_id,
        b_id,
        bundle_ab: ab.bytes.len(),
        bundle_ba: ba.bytes.len(),
        rows_ab: ab.rows,
        rows_ba: ba.rows,
        rows_total,
    })
}

/// One cell of the grid.
#[derive(Clone, Copy, Debug)]
struct Cell {
    framing: Framing,
    bitrate: u32,
    txdelay_ms: u32,
    ber: f64,
    frame_loss: f64,
    seed: u64,
}

/// What one cell measured.
#[derive(Clone, Debug, Default)]
struct Outcome {
    converged: bool,
    /// Why not, when not.
    failure: String,
    /// From the initiator's first transmission until both sessions finished.
    time: Duration,
    /// Keyed time of both stations.
    airtime: Duration,
    /// What `radiosync plan` estimates for the first session (both stations' plans).
    plan: Duration,
    /// Bundle bytes delivered, both ways.
    payload: u64,
    sessions: u32,
    /// Frames that failed to decode at the receivers (CRC, uncorrectable RS, bad framing).
    bad_frames: u64,
    /// Byte errors Reed-Solomon repaired.
    fec_corrections: u64,
    /// Frames the channel lost whole (KISS: random loss, bit errors, collisions).
    frames_lost: u64,
    /// Rows each store would still send the other (`pending_for`) after the last session.
    pending: (u64, u64),
    transmissions: u64,
    retransmissions: u64,
    timeouts: u64,
}

impl Outcome {
    fn efficiency(&self, bitrate: u32) -> f64 {
        self.payload as f64 * 8.0 / (bitrate as f64 * self.time.as_secs_f64())
    }
    fn bytes_per_s(&self) -> f64 {
        self.payload as f64 / self.time.as_secs_f64()
    }
}

/// The profile of a cell: the simulator profile of its framing with the cell's bitrate and
/// TXDELAY. Frames per transmission scale with the bitrate so that one transmission keeps
/// the profile's airtime (the choice docs/arq.md explains), within the ARQ's 64-frame window.
fn cell_profile(c: &Cell) -> anyhow::Result<Profile> {
    if c.bitrate == HF_BITRATE && c.framing == Framing::Kiss {
        // HF packet keeps its own frame shape (128-byte frames, 4 per key-up).
        let mut p = Profile::load("direwolf-300-hf")?;
        p.amateur = false;
        p.txdelay_ms = c.txdelay_ms;
        return Ok(p);
    }
    let mut p = Profile::load(match c.framing {
        Framing::Kiss => "sim-kiss-1200",
        Framing::Transparent => "sim-transparent-9600",
    })?;
    let frames = (p.max_frames_per_transmission as f64 * c.bitrate as f64 / p.bitrate as f64)
        .round()
        .clamp(1.0, 64.0) as u32;
    p.bitrate = c.bitrate;
    p.txdelay_ms = c.txdelay_ms;
    p.max_frames_per_transmission = frames;
    // Experiments with other shapes: RADIO_BENCH_MTU, RADIO_BENCH_FRAMES (frames per
    // transmission at this cell's bit/s).
    if let Some(v) = std::env::var("RADIO_BENCH_MTU")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        p.mtu = v;
    }
    if let Some(v) = std::env::var("RADIO_BENCH_FRAMES")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        p.max_frames_per_transmission = v;
    }
    Ok(p)
}

fn channel_config(c: &Cell, p: &Profile) -> ChannelConfig {
    ChannelConfig {
        mode: match c.framing {
            Framing::Kiss => Mode::Kiss,
            Framing::Transparent => Mode::Transparent,
        },
        bitrate: c.bitrate,
        txdelay: Duration::from_millis(c.txdelay_ms.into()),
        // chansim's defaults: a transparent radio stays keyed 10 ms after its last byte.
        hang: Duration::from_millis(10),
        ber: c.ber,
        frame_loss: c.frame_loss,
        persist: p.persist.min(255) as u8,
        slottime: Duration::from_millis(p.slottime_ms.into()),
        seed: c.seed,
        ..Default::default()
    }
}

/// A cell that has not converged after this much simulated time fails.
const GIVE_UP: Duration = Duration::from_secs(4 * 3600);
/// Sessions run back to back until the stores agree, at most this many.
const MAX_SESSIONS: u32 = 3;

/// Sessions between copies of the workload's stations over the cell's channel, on simulated
/// time, until the stores agree: alpha calls (`radiosync sync`), bravo answers
/// (`radiosync run`); both are the daemon's `Station` (store work, framing, engines).
fn run_cell(w: &Workload, c: &Cell, dir: &Path, follow_answerer: bool) -> anyhow::Result<Outcome> {
    let profile = cell_profile(c)?;
    let (a_path, b_path) = (dir.join("a.sqlite"), dir.join("b.sqlite"));
    for p in [&a_path, &b_path] {
        let _ = std::fs::remove_file(p);
    }
    radiosync::store::copy_station(&w.a, &a_path)?;
    radiosync::store::copy_station(&w.b, &b_path)?;
    let mut bundles = Vec::new();
    for (from, to) in [(&a_path, &w.b_id), (&b_path, &w.a_id)] {
        let classes = Store::open(from)?.plan_for(to)?;
        bundles.extend(classes.iter().map(|c| c.bytes as usize));
        if classes.is_empty() {
            bundles.push(0);
        }
    }
    // The estimate knows the channel as an operator would (`plan --ber --loss`).
    let plan = radiosync::arq::ArqConfig::from_profile(&profile).session_airtime_on(
        &bundles,
        c.ber,
        c.frame_loss,
    );
    let mut a = Station::new(Store::open(&a_path)?, profile.clone(), false)?;
    let mut b = Station::new(Store::open(&b_path)?, profile.clone(), true)?;
    let link = SimLink::new(channel_config(c, &profile))?;
    if std::env::var_os("RADIO_BENCH_TRACE").is_some() {
        // Every frame sent and received, on simulated time (stderr).
        let epoch = link.now();
        for (st, name) in [(&mut a, "alpha"), (&mut b, "bravo")] {
            st.set_recorder(Box::new(move |t, kind, bytes| {
                let what = match kind {
                    radiosync::capture::RecordKind::Note => String::from_utf8_lossy(bytes).into(),
                    k => format!("{k:?} {} bytes", bytes.len()),
                };
                eprintln!("{:9.3} {name} {what}", (t - epoch).as_secs_f64());
            }));
        }
    }
    let mut pair = SimPair::new(link, a, b);
    let mut out = Outcome {
        plan,
        ..Default::default()
    };
    // Bravo's sessions by id: counters, and the result once the session has closed.
    let mut bravo: BTreeMap<u16, (EngineStats, Option<String>)> = BTreeMap::new();
    while out.sessions < MAX_SESSIONS {
        out.sessions += 1;
        let now = pair.link.now();
        let id =
            station(&mut pair, Side::A)?.start_sync(now, "bravo", 0x5eed + out.sessions as u16)?;
        // The sync is over when alpha's session ends: alpha has bravo's Done, so bravo has
        // committed alpha's bundle. Bravo's session may still be waiting for the ack of its
        // Done; its counters are read then.
        let mut alpha_end: Option<StationOutcome> = None;
        let end = pair.run_until(GIVE_UP, |p| {
            if let Some(s) = p.station(Side::B) {
                while let Some(o) = s.poll_outcome() {
                    let err = o.result.as_ref().err().map(|e| e.to_string());
                    bravo.insert(o.session, (o.stats, err));
                }
            }
            if let Some(o) = p.station(Side::A).and_then(|s| s.poll_outcome()) {
                if o.session == id {
                    alpha_end = Some(o);
                }
            }
            alpha_end.is_some()
        });
        let Some(a_end) = alpha_end else {
            out.failure = format!("alpha: no outcome ({end:?})");
            break;
        };
        for v in station(&mut pair, Side::B)?.sessions() {
            bravo.entry(v.session).or_insert((v.stats, None));
        }
        let b_stats = bravo.get(&id).map(|(s, _)| *s).unwrap_or_default();
        for st in [&a_end.stats, &b_stats] {
            out.payload += st.bundle_bytes_received;
            out.retransmissions += st.retransmissions;
            out.timeouts += st.timeouts;
            out.bad_frames += st.crc_failures;
            out.fec_corrections += st.fec_corrections;
        }
        let mut failures = Vec::new();
        if let Err(e) = &a_end.result {
            failures.push(format!("alpha: {e}"));
        }
        if let Some((_, Some(e))) = bravo.get(&id) {
            failures.push(format!("bravo: {e}"));
        }
        if !failures.is_empty() {
            out.failure = failures.join("; ");
            break;
        }
        let sa = station(&mut pair, Side::A)?.store();
        let ca = sa.synced_rows()?;
        let pa = sa.pending_for(&w.b_id)?;
        let sb = station(&mut pair, Side::B)?.store();
        let same = ca == sb.synced_rows()?;
        out.pending = (pa, sb.pending_for(&w.a_id)?);
        if std::env::var_os("RADIO_BENCH_DEBUG").is_some() {
            eprintln!(
                "  session {} ended at {:.2} s, databases equal: {same}, pending {:?}; \
                 alpha {:?}, bravo {:?}",
                out.sessions,
                pair.link.elapsed().as_secs_f64(),
                out.pending,
                a_end.stats,
                b_stats
            );
        }
        if same {
            out.converged = true;
            break;
        }
        out.failure = format!(
            "{} session(s) finished, databases differ, pending {} / {} rows",
            out.sessions, out.pending.0, out.pending.1
        );
    }
    out.time = pair.link.elapsed();
    if follow_answerer {
        // How long bravo's side stays open after the sync is over (it may still wait for the
        // ack of its last message); not part of the figures.
        pair.run_until(GIVE_UP, |p| {
            p.station(Side::B).is_some_and(|s| !s.has_sessions())
        });
        let linger = pair.link.elapsed() - out.time;
        println!(
            "bravo's sessions all closed {:.1} s after alpha's end",
            linger.as_secs_f64()
        );
    }
    let stats = &pair.link.channel.stats();
    out.airtime = Duration::from_secs_f64(stats.a_to_b.airtime_s + stats.b_to_a.airtime_s);
    out.transmissions = stats.a_to_b.transmissions + stats.b_to_a.transmissions;
    out.frames_lost = [&stats.a_to_b, &stats.b_to_a]
        .iter()
        .map(|d| {
            d.frames_lost_random
                + d.frames_lost_bit_errors
                + d.frames_lost_collision
                + d.frames_lost_outage
        })
        .sum();
    Ok(out)
}

fn station(pair: &mut SimPair, side: Side) -> anyhow::Result<&mut Station> {
    pair.station(side)
        .ok_or_else(|| anyhow::anyhow!("station {side:?} is off the link"))
}

fn fmt_ber(b: f64) -> String {
    if b == 0.0 {
        "0".into()
    } else {
        format!("{b:.0e}")
    }
}

fn framing_name(f: Framing) -> &'static str {
    match f {
        Framing::Kiss => "kiss",
        Framing::Transparent => "transparent",
    }
}

fn print_header() {
    println!(
        "| framing | bit/s | TXDELAY ms | BER | frame loss | time s | airtime s | plan s | plan/airtime | efficiency | payload B/s | tx | lost/bad frames | RS fixes | retx | timeouts | result |"
    );
    println!(
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    );
}

fn print_row(c: &Cell, o: &Outcome) {
    let loss = if c.framing == Framing::Kiss {
        format!("{:.0} %", c.frame_loss * 100.0)
    } else {
        "-".into()
    };
    println!(
        "| {} | {} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.2} | {:.3} | {:.1} | {} | {} | {} | {} | {} | {} |",
        framing_name(c.framing),
        c.bitrate,
        c.txdelay_ms,
        fmt_ber(c.ber),
        loss,
        o.time.as_secs_f64(),
        o.airtime.as_secs_f64(),
        o.plan.as_secs_f64(),
        o.plan.as_secs_f64() / o.airtime.as_secs_f64(),
        o.efficiency(c.bitrate),
        o.bytes_per_s(),
        o.transmissions,
        o.frames_lost + o.bad_frames,
        o.fec_corrections,
        o.retransmissions,
        o.timeouts,
        if o.converged && o.sessions == 1 {
            "ok".to_string()
        } else if o.converged {
            format!("ok in {} sessions", o.sessions)
        } else {
            format!("FAIL ({})", o.failure)
        }
    );
}

fn grid(seed: u64) -> Vec<Cell> {
    let mut cells = Vec::new();
    for framing in [Framing::Transparent, Framing::Kiss] {
        for bitrate in [1200, 9600] {
            for txdelay_ms in [100, 300] {
                for ber in [0.0, 1e-5, 1e-4, 1e-3] {
                    let losses: &[f64] = match framing {
                        Framing::Kiss => &[0.0, 0.1, 0.2, 0.3],
                        Framing::Transparent => &[0.0],
                    };
                    for &frame_loss in losses {
                        cells.push(Cell {
                            framing,
                            bitrate,
                            txdelay_ms,
                            ber,
                            frame_loss,
                            seed,
                        });
                    }
                }
            }
        }
    }
    cells
}

/// Dire Wolf's HF packet rate (issue 12): its own section, with the HF profile.
const HF_BITRATE: u32 = 300;

/// The targets: (label, cell, what is compared, threshold).
struct Target {
    label: &'static str,
    cell: Cell,
    bytes_per_s: bool,
    threshold: f64,
}

fn targets() -> Vec<Target> {
    let t = |ber| Cell {
        framing: Framing::Transparent,
        bitrate: 9600,
        txdelay_ms: 100,
        ber,
        frame_loss: 0.0,
        seed: 0,
    };
    let k = |frame_loss| Cell {
        framing: Framing::Kiss,
        bitrate: 1200,
        txdelay_ms: 300,
        ber: 0.0,
        frame_loss,
        seed: 0,
    };
    vec![
        Target {
            label: "transparent 9600 bit/s, TXDELAY 100 ms, BER 0: efficiency",
            cell: t(0.0),
            bytes_per_s: false,
            threshold: 0.80,
        },
        Target {
            label: "transparent 9600 bit/s, TXDELAY 100 ms, BER 1e-4: efficiency",
            cell: t(1e-4),
            bytes_per_s: false,
            threshold: 0.75,
        },
        Target {
            label: "transparent 9600 bit/s, TXDELAY 100 ms, BER 1e-3: efficiency",
            cell: t(1e-3),
            bytes_per_s: false,
            threshold: 0.60,
        },
        Target {
            label: "KISS 1200 bit/s, TXDELAY 300 ms, clean: payload bytes/s",
            cell: k(0.0),
            bytes_per_s: true,
            threshold: 110.0,
        },
        Target {
            label: "KISS 1200 bit/s, TXDELAY 300 ms, 10 % frame loss: payload bytes/s",
            cell: k(0.1),
            bytes_per_s: true,
            threshold: 85.0,
        },
    ]
}

fn parse_cell(v: &str) -> anyhow::Result<Cell> {
    let f: Vec<&str> = v.split(',').collect();
    anyhow::ensure!(
        f.len() == 6,
        "--cell wants framing,bitrate,txdelay_ms,ber,frame_loss,seed"
    );
    Ok(Cell {
        framing: match f[0] {
            "kiss" => Framing::Kiss,
            "transparent" => Framing::Transparent,
            other => anyhow::bail!("framing {other:?}: kiss or transparent"),
        },
        bitrate: f[1].parse()?,
        txdelay_ms: f[2].parse()?,
        ber: f[3].parse()?,
        frame_loss: f[4].parse()?,
        seed: f[5].parse()?,
    })
}

/// The work directory, kept (not deleted) with RADIO_BENCH_KEEP for a look at the stores.
enum WorkDir {
    Temp(tempfile::TempDir),
    Kept(PathBuf),
}

impl WorkDir {
    fn path(&self) -> &Path {
        match self {
            WorkDir::Temp(d) => d.path(),
            WorkDir::Kept(p) => p,
        }
    }
}

fn scopeguard(d: tempfile::TempDir) -> WorkDir {
    if std::env::var_os("RADIO_BENCH_KEEP").is_some() {
        WorkDir::Kept(d.keep())
    } else {
        WorkDir::Temp(d)
    }
}

/// Seeds of the headline cells (mean and worst are reported); the grid uses the first.
const SEEDS: [u64; 4] = [1, 2, 3, 4];

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    // `--cell kiss,1200,300,1e-5,0.2,1`: one cell (framing, bit/s, TXDELAY ms, BER, loss, seed).
    let one = args
        .iter()
        .position(|a| a == "--cell")
        .and_then(|i| args.get(i + 1))
        .map(|v| parse_cell(v))
        .transpose()?;
    // tmpfs when there is one: the stores' fsyncs are not what this measures.
    let dir = match tempfile::tempdir_in("/dev/shm") {
        Ok(d) => d,
        Err(_) => tempfile::tempdir()?,
    };
    if std::env::var_os("RADIO_BENCH_KEEP").is_some() {
        eprintln!("keeping {}", dir.path().display());
    }
    let dir = scopeguard(dir);
    let started = std::time::Instant::now();
    let w = build_workload(&dir.path().join("disjoint"), Overlap::Disjoint)?;
    println!(
        "workload: {} rows in 8 tables (../shared/data/public.sqlite) cloned to two stations; \
         each side then makes {} inserts, {} updates and {} soft deletes of its own rows, and both \
         change the same columns of {} shared rows (half won by each side)",
        w.rows_total, EDITS.inserts, EDITS.updates, EDITS.deletes, EDITS.conflicts
    );
    println!(
        "bundles as exported for a file: alpha -> bravo {} rows in {} bytes, bravo -> alpha {} rows in {} bytes",
        w.rows_ab, w.bundle_ab, w.rows_ba, w.bundle_ba
    );
    println!(
        "payload = bundle bytes delivered both ways; efficiency = payload bits / (bit/s x time to sync); \
         time runs from alpha's first transmission until alpha's session has ended (bravo has \
         committed by then) with both databases equal, sessions back to back; airtime = keyed time of both stations; tx = transmissions; \
         retx = frames resent; profiles: sim-kiss-1200 (512-byte frames) and sim-transparent-9600 \
         (1020-byte frames, RS(255,239)) with the cell's bit/s and TXDELAY, frames per transmission \
         scaled with the bit/s so a transmission keeps the profile's airtime\n"
    );
    let cell_dir = dir.path().join("cell");
    std::fs::create_dir_all(&cell_dir)?;
    if let Some(c) = one {
        print_header();
        print_row(&c, &run_cell(&w, &c, &cell_dir, true)?);
        return Ok(());
    }

    if !quick {
        println!("## Grid (seed {})\n", SEEDS[0]);
        print_header();
        // `radiosync plan` against the measured airtime, over the cells that converged.
        let (mut lo, mut hi, mut cells) = (f64::INFINITY, 0.0f64, 0);
        for c in grid(SEEDS[0]) {
            let o = run_cell(&w, &c, &cell_dir, false)?;
            print_row(&c, &o);
            if o.converged {
                let r = o.plan.as_secs_f64() / o.airtime.as_secs_f64();
                (lo, hi, cells) = (lo.min(r), hi.max(r), cells + 1);
            }
        }
        println!(
            "\nplan / measured airtime over the {cells} converged cells: {lo:.2} to {hi:.2} \
             (required: within 0.80 to 1.20: {})\n",
            if lo >= 0.8 && hi <= 1.2 { "yes" } else { "NO" }
        );
    }

    println!("## Targets (mean and worst of seeds {SEEDS:?})\n");
    println!("| target | measured mean | worst seed | required | met |");
    println!("|---|---:|---:|---:|---|");
    for t in targets() {
        let mut values = Vec::new();
        let mut failed = None;
        for seed in SEEDS {
            let c = Cell { seed, ..t.cell };
            let o = run_cell(&w, &c, &cell_dir, false)?;
            if !o.converged {
                failed = Some(o.failure.clone());
            }
            values.push(if t.bytes_per_s {
                o.bytes_per_s()
            } else {
                o.efficiency(c.bitrate)
            });
        }
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        let worst = values.iter().cloned().fold(f64::INFINITY, f64::min);
        let (m, wv, th) = if t.bytes_per_s {
            (
                format!("{mean:.1}"),
                format!("{worst:.1}"),
                format!(">= {:.0}", t.threshold),
            )
        } else {
            (
                format!("{mean:.3}"),
                format!("{worst:.3}"),
                format!(">= {:.2}", t.threshold),
            )
        };
        let met = match &failed {
            Some(f) => format!("FAIL ({f})"),
            None if mean >= t.threshold => "yes".into(),
            None => "NO".into(),
        };
        println!("| {} | {m} | {wv} | {th} | {met} |", t.label);
    }

    println!(
        "\n## HF: KISS 300 bit/s, profile direwolf-300-hf (seed {})\n",
        SEEDS[0]
    );
    print_header();
    for frame_loss in [0.0, 0.1] {
        let c = Cell {
            framing: Framing::Kiss,
            bitrate: HF_BITRATE,
            txdelay_ms: 300,
            ber: 0.0,
            frame_loss,
            seed: SEEDS[0],
        };
        print_row(&c, &run_cell(&w, &c, &cell_dir, false)?);
    }

    // Conflicting edits of different columns: the receiver of the later version asks for it
    // in full, which the next session brings.
    let wr = build_workload(&dir.path().join("random"), Overlap::Random)?;
    println!(
        "\n## Overlapping edits (updates anywhere, shared rows changed in different columns)\n"
    );
    println!(
        "bundles as exported for a file: alpha -> bravo {} rows in {} bytes, bravo -> alpha {} rows in {} bytes\n",
        wr.rows_ab, wr.bundle_ab, wr.rows_ba, wr.bundle_ba
    );
    print_header();
    for t in targets().iter().filter(|t| t.cell.framing == Framing::Kiss) {
        let c = Cell {
            seed: SEEDS[0],
            ..t.cell
        };
        print_row(&c, &run_cell(&wr, &c, &cell_dir, false)?);
    }
    println!(
        "\n(ran in {:.1} s of wall time)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
