//! `radiosync demo`: two stations from the embedded sample data, edited on both sides with
//! plain SQL, synced over a simulated 1200 bit/s radio channel with errors by the real daemon
//! code (in-process links through `sim::Channel` on the wall clock), then checked
//! against the rules. `--file` carries the bundles as files instead.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use indicatif::{ProgressBar, ProgressStyle};
use radiosync::daemon::{self, End, Mode, Observer, Options, Outcome, SessionView, Station};
use radiosync::delta::Value;
use radiosync::profile::{Framing, Profile};
use radiosync::sim::pair::channel_config;
use radiosync::sim::relay::{self, RelayView};
use radiosync::sim::Channel;
use radiosync::store::{sample, Store};
use tokio::io::DuplexStream;
use tokio::sync::watch;

/// The first 100 rows of each table of the public dataset (see data/README.md).

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// The file-sync demo instead: bundles carried as files (USB stick), no radio.
    #[arg(long)]
    file: bool,
    /// The net instead: a hub and two field stations on one channel, both calling the hub
    /// at the same moment (in virtual time: it runs in seconds).
    #[arg(long, conflicts_with = "file")]
    net: bool,
    /// Keep the demo's databases (and bundles) in this directory instead of a temporary one.
    #[arg(long)]
    keep: Option<PathBuf>,
    /// Modem profile of both stations: a simulator profile (sim-kiss-1200, sim-transparent-9600).
    #[arg(long, default_value = "sim-kiss-1200")]
    profile: String,
    /// Probability that the channel loses a whole frame (KISS profiles).
    #[arg(long, default_value_t = 0.05)]
    frame_loss: f64,
    /// Bit error rate of the channel.
    #[arg(long, default_value_t = 0.0)]
    ber: f64,
    /// Seed of the channel's random errors and channel access.
    #[arg(long, default_value_t = 5)]
    seed: u64,
}

/// Plain SQL as the stations' applications would run it.
const EDITS_A: &str = "
INSERT INTO pr_person (id, uuid, modified_on, deleted, first_name, last_name, sex, organisation)
  VALUES ((SELECT max(id) + 1 FROM pr_person), 'demo-a-person-1', '2026-03-02T08:00:00.000Z', 0,
          'Ana', 'Soares', 'female', 'Timor-Leste Red Cross'),
         ((SELECT max(id) + 2 FROM pr_person), 'demo-a-person-2', '2026-03-02T08:01:00.000Z', 0,
          'Jose', 'Belo', 'male', 'Timor-Leste Red Cross');
UPDATE inv_inv_item SET quantity = quantity - 40, modified_on = '2026-03-02T09:00:00.000Z'
  WHERE id IN (1, 2, 3);
UPDATE gis_location SET lat = lat + 0.001, lon = lon - 0.002, modified_on = '2026-03-02T09:05:00.000Z'
  WHERE id = 5;
UPDATE org_office SET deleted = 1, modified_on = '2026-03-02T09:10:00.000Z' WHERE id = 7;
-- Both stations edit hospital 1: b's edit is later and wins.
UPDATE hms_hospital SET status = 'Closed (a)', modified_on = '2026-03-02T10:00:00.000Z' WHERE id = 1;
-- Both stations edit hospital 2: a's edit is later and wins.
UPDATE hms_hospital SET beds_total = 120, comments = 'extended by a',
  modified_on = '2026-03-02T12:00:00.000Z' WHERE id = 2;
";

const EDITS_B: &str = "
INSERT INTO cms_post (id, uuid, modified_on, deleted, series, body, country)
  VALUES ((SELECT max(id) + 1 FROM cms_post), 'demo-b-post-1', '2026-03-02T08:30:00.000Z', 0,
          'News', 'Road to Suai open again', 'TL');
UPDATE org_organisation SET website = 'https://example.org/b', modified_on = '2026-03-02T09:20:00.000Z'
  WHERE id IN (4, 5);
UPDATE vulnerability_data SET value = value + 1, modified_on = '2026-03-02T09:30:00.000Z' WHERE id = 10;
UPDATE cms_post SET deleted = 1, modified_on = '2026-03-02T09:40:00.000Z' WHERE id = 3;
UPDATE hms_hospital SET status = 'Open (b)', modified_on = '2026-03-02T11:00:00.000Z' WHERE id = 1;
UPDATE hms_hospital SET beds_total = 80, modified_on = '2026-03-02T11:30:00.000Z' WHERE id = 2;
";

/// More field work for the radio demo, so the bundles are a few KB: alpha registers
/// volunteers and counts stock, bravo files situation reports and checks locations.
const MORE_EDITS_A: &str = "
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 16)
INSERT INTO pr_person (id, uuid, modified_on, deleted, sex, first_name, last_name, type, email,
                       mobile_phone, organisation, job_title, home_country, home_l1)
  SELECT (SELECT max(id) FROM pr_person) + i, printf('demo-a-volunteer-%02d', i),
         printf('2026-03-02T13:%02d:00.000Z', i), 0,
         (SELECT sex FROM pr_person WHERE id = 1 + (i * 7) % 100),
         (SELECT first_name FROM pr_person WHERE id = 1 + (i * 13) % 100),
         (SELECT last_name FROM pr_person WHERE id = 1 + (i * 29) % 100),
         'Volunteer', printf('volunteer%02d@redcross.tl', i), printf('+670 77%06d', (i * 7919) % 1000000),
         'Timor-Leste Red Cross', 'Volunteer', 'TL',
         (SELECT l2 FROM gis_location WHERE id = 1 + (i * 17) % 100)
  FROM n;
UPDATE inv_inv_item SET quantity = (quantity * 7 + id) % 500, modified_on = printf('2026-03-02T14:%02d:00.000Z', id % 60)
  WHERE id BETWEEN 10 AND 40;
";

const MORE_EDITS_B: &str = "
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 12)
INSERT INTO cms_post (id, uuid, modified_on, deleted, series, body, country, l1, l2, author, date)
  SELECT (SELECT max(id) FROM cms_post) + i, printf('demo-b-sitrep-%02d', i),
         printf('2026-03-02T13:%02d:30.000Z', i), 0, 'Situation Report',
         printf('Sitrep %d: %s, %s: road %s, %d families in evacuation centre', i,
                (SELECT l3 FROM gis_location WHERE id = 1 + (i * 11) % 100),
                (SELECT l2 FROM gis_location WHERE id = 1 + (i * 11) % 100),
                CASE i % 3 WHEN 0 THEN 'open' WHEN 1 THEN 'blocked' ELSE 'passable with 4x4' END,
                (i * 37) % 90 + 10),
         'TL', (SELECT l2 FROM gis_location WHERE id = 1 + (i * 11) % 100),
         (SELECT l3 FROM gis_location WHERE id = 1 + (i * 11) % 100),
         'bravo.field@redcross.tl', '2026-03-02'
  FROM n;
UPDATE gis_location SET lat = round(lat + 0.0001 * id, 6), modified_on = printf('2026-03-02T14:%02d:30.000Z', id % 60)
  WHERE id BETWEEN 20 AND 50;
";

/// Hospitals 1 and 2 of the sample, which both stations edit.
const HOSPITALS: [&str; 2] = [
    "886ff128-9ef5-5dbd-89a6-e853cf255713",
    "694aa3f2-8e30-5e93-9a1a-070deb420bcb",
];

/// A sample hospital's status and beds (`n` is 1 or 2).
fn hospital(s: &Store, n: usize) -> anyhow::Result<(String, i64)> {
    let row = s
        .row("hms_hospital", HOSPITALS[n - 1])?
        .with_context(|| format!("hospital {n} is missing"))?;
    let get = |col: &str| row.iter().find(|(c, _)| c == col).map(|(_, v)| v.clone());
    let status = match get("status") {
        Some(Value::Text(t)) => t,
        other => bail!("hospital {n} status: {other:?}"),
    };
    let beds = match get("beds_total") {
        Some(Value::Integer(b)) => b,
        other => bail!("hospital {n} beds: {other:?}"),
    };
    Ok((status, beds))
}

/// One bundle through a file: export at `from`, import at `to`. Returns (rows, bytes).
fn carry(from: &Store, to: &mut Store, dir: &Path, step: usize) -> anyhow::Result<(u64, usize)> {
    let peer = to.station().id;
    let rows = from.pending_for(&peer)?;
    let bytes = from.export_bundle_bytes(&peer)?;
    let file = dir.join(format!(
        "{step}-{}-to-{}.bundle",
        from.station().name,
        to.station().name
    ));
    std::fs::write(&file, &bytes)?;
    let read = std::fs::read(&file)?;
    let report = to
        .import_bundle_bytes(&read)
        .with_context(|| format!("importing {}", file.display()))?;
    println!(
        "  {:>2}. {} -> {}: {:>4} rows in {:>6} bytes; {} applied, {} kept local, {} conflicts, {} asked in full",
        step,
        from.station().name,
        to.station().name,
        rows,
        bytes.len(),
        report.applied,
        report.kept_local,
        report.conflicts,
        report.wanted
    );
    Ok((rows, bytes.len()))
}

pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let (dir, temporary) = match &args.keep {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            (d.clone(), false)
        }
        None => {
            let d = std::env::temp_dir().join(format!("radiosync-demo-{}", std::process::id()));
            std::fs::create_dir_all(&d)?;
            (d, true)
        }
    };
    let result = if args.file {
        file_demo(&dir)
    } else if args.net {
        net_demo(&dir, &args)
    } else {
        radio_demo(&dir, &args)
    };
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result?;
    Ok(ExitCode::SUCCESS)
}

/// Two stations from the sample, cloned, then edited on both sides with plain SQL.
fn set_up(dir: &Path, more: bool) -> anyhow::Result<(PathBuf, PathBuf)> {
    let a_path = dir.join("station-a.sqlite");
    let b_path = dir.join("station-b.sqlite");
    for p in [&a_path, &b_path] {
        if p.exists() {
            bail!("{} exists: give --keep an empty directory", p.display());
        }
    }
    sample::write_sample(&a_path)?;
    let mut a = Store::init(&a_path, Some("alpha"), None)?;
    let tables = a.syncable_tables()?;
    let tagged = a.track(&tables, &["id".to_string()])?;
    println!(
        "station alpha: {} tables, {tagged} rows from the embedded Sahana Eden sample",
        tables.len()
    );
    match a.retrain_dictionary() {
        Ok(d) => println!("  trained a {}-byte zstd dictionary", d.bytes.len()),
        Err(e) => println!("  no dictionary: {e}"),
    }
    drop(a);
    drop(Store::clone_station(&a_path, &b_path, "bravo", None)?);
    println!("station bravo: cloned from alpha; they share every row and send none of it");

    // The applications write with plain SQL on their own files.
    sample::app_write(&a_path, EDITS_A)?;
    sample::app_write(&b_path, EDITS_B)?;
    if more {
        sample::app_write(&a_path, MORE_EDITS_A)?;
        sample::app_write(&b_path, MORE_EDITS_B)?;
        println!("alpha: 18 inserts, 35 updates, 1 soft-delete, 2 hospital edits");
        println!(
            "bravo: 13 inserts, 34 updates, 1 soft-delete, 2 hospital edits (the same two hospitals)"
        );
    } else {
        println!("alpha: 2 inserts, 4 updates, 1 soft-delete, 2 hospital edits");
        println!(
            "bravo: 1 insert, 3 updates, 1 soft-delete, 2 hospital edits (the same two hospitals)"
        );
    }
    Ok((a_path, b_path))
}

/// A hub (`district`) and two field stations cloned from it (`clinic`, `shelter`, each
/// registered with the hub only) on one simulated channel, in virtual time. Both call
/// the hub at the same instant, round after round, until all three hold the same rows;
/// the field stations' edits (the same two hospitals included) reach each other through
/// the hub.
fn net_demo(dir: &Path, args: &DemoArgs) -> anyhow::Result<()> {
    use radiosync::sim::net::{NetConfig, SimNet};
    let profile = demo_profile(args)?;
    let hub = dir.join("district.sqlite");
    let fields = [dir.join("clinic.sqlite"), dir.join("shelter.sqlite")];
    for p in std::iter::once(&hub).chain(&fields) {
        if p.exists() {
            bail!("{} exists: give --keep an empty directory", p.display());
        }
    }
    sample::write_sample(&hub)?;
    let mut h = Store::init(&hub, Some("district"), None)?;
    let tables = h.syncable_tables()?;
    h.track(&tables, &["id".to_string()])?;
    drop(h);
    for (p, name) in fields.iter().zip(["clinic", "shelter"]) {
        drop(Store::clone_station(&hub, p, name, None)?);
    }
    sample::app_write(&fields[0], EDITS_A)?;
    sample::app_write(&fields[0], MORE_EDITS_A)?;
    sample::app_write(&fields[1], EDITS_B)?;
    sample::app_write(&fields[1], MORE_EDITS_B)?;
    println!(
        "hub district and field stations clinic and shelter (cloned from it, each registered \
         with the hub only); both field stations edited, the same two hospitals included"
    );
    let mut stations = vec![Station::new(Store::open(&hub)?, profile.clone(), true)?];
    for p in &fields {
        stations.push(Station::new(Store::open(p)?, profile.clone(), false)?);
    }
    let mut errors = Vec::new();
    if args.frame_loss > 0.0 && profile.framing == Framing::Kiss {
        errors.push(format!("{:.0} % of frames lost", args.frame_loss * 100.0));
    }
    if args.ber > 0.0 {
        errors.push(format!("bit error rate {:e}", args.ber));
    }
    println!(
        "one channel: {}, {} bit/s, TXDELAY {} ms, {}; seed {}",
        profile.name,
        profile.bitrate,
        profile.txdelay_ms,
        if errors.is_empty() {
            "no errors".to_string()
        } else {
            errors.join(", ")
        },
        args.seed
    );
    let mut sim = SimNet::new(
        NetConfig::for_profile(&profile, args.ber, args.frame_loss, args.seed),
        stations,
    );
    let names = ["district", "clinic", "shelter"];
    for round in 1..=4u16 {
        let now = sim.now();
        for i in 1..=2 {
            let id = (args.seed as u16)
                .wrapping_mul(131)
                .wrapping_add(round * 0x1000 + i as u16);
            sim.stations[i].start_sync(now, "district", id)?;
        }
        println!(
            "round {round} at {:.0} s: clinic and shelter call district at the same moment",
            sim.elapsed().as_secs_f64()
        );
        let mut done = [false; 3];
        let mut lines = Vec::new();
        sim.run_until(sim.elapsed() + Duration::from_secs(3600), |s| {
            for (i, st) in s.stations.iter_mut().enumerate() {
                while let Some(o) = st.poll_outcome() {
                    if i > 0 {
                        done[i] = true;
                        lines.push(format!(
                            "  {}: {}",
                            names[i],
                            match &o.result {
                                Ok(sum) => format!(
                                    "synced: {} bundle(s) applied here, {} confirmed; {}",
                                    sum.bundles_applied,
                                    sum.bundles_confirmed,
                                    match sum.verified() {
                                        Some(true) => "verified",
                                        _ => "not yet equal",
                                    }
                                ),
                                Err(e) => format!("failed ({e}); it calls again next round"),
                            }
                        ));
                    }
                }
            }
            done[1] && done[2] && s.stations.iter().all(|st| !st.has_sessions())
        });
        for l in lines {
            println!("{l}");
        }
        let rows: Vec<_> = std::iter::once(&hub)
            .chain(&fields)
            .map(|p| Store::open(p).and_then(|s| s.synced_rows()))
            .collect::<Result<_, _>>()?;
        if rows.windows(2).all(|w| w[0] == w[1]) {
            for p in std::iter::once(&hub).chain(&fields) {
                let s = Store::open(p)?;
                ensure!(
                    hospital(&s, 1)?.0 == "Open (b)" && hospital(&s, 2)?.1 == 120,
                    "{}: the later hospital edits should win",
                    s.station().name
                );
            }
            let st = &sim.channel.stats;
            println!(
                "all three stations hold the same {} rows after {round} round(s) and {:.0} s of \
                 channel time; the later edit of each hospital won everywhere",
                rows[0].len(),
                sim.elapsed().as_secs_f64()
            );
            println!(
                "airtime: district {:.1} s, clinic {:.1} s, shelter {:.1} s; {} frame pieces \
                 garbled by collisions, {} lost to the channel",
                st.airtime[0].as_secs_f64(),
                st.airtime[1].as_secs_f64(),
                st.airtime[2].as_secs_f64(),
                st.collisions,
                st.lost
            );
            return net_broadcast(&hub, &fields, &profile, args);
        }
    }
    bail!("the net did not converge in 4 rounds")
}

/// The net demo's last act: district passes an update on to both field
/// stations in one transmission, then syncs with each, which sends only what
/// that station missed.
fn net_broadcast(
    hub: &Path,
    fields: &[PathBuf],
    profile: &Profile,
    args: &DemoArgs,
) -> anyhow::Result<()> {
    use radiosync::sim::net::{NetConfig, SimNet};
    sample::app_write(hub, HUB_UPDATE)?;
    let mut stations = vec![Station::new(Store::open(hub)?, profile.clone(), true)?];
    for p in fields {
        stations.push(Station::new(Store::open(p)?, profile.clone(), true)?);
    }
    let mut sim = SimNet::new(
        NetConfig::for_profile(profile, args.ber, args.frame_loss, args.seed ^ 0xca57),
        stations,
    );
    let names = ["clinic".to_string(), "shelter".to_string()];
    let start = sim.now();
    let cast = sim.stations[0].start_cast(start, &names)?;
    println!(
        "district updates every hospital's status and sends it to both at once: one broadcast of \
         {} rows, {} bytes",
        cast.rows,
        cast.bytes.len()
    );
    sim.run_until(sim.elapsed() + Duration::from_secs(3600), |s| {
        let now = s.now();
        !s.stations[0].casting(now) && s.channel.next_event().is_none()
    });
    for (i, name) in names.iter().enumerate() {
        let mut whole = false;
        while let Some(n) = sim.stations[i + 1].poll_note() {
            whole |= n.contains("applied");
        }
        println!(
            "  {name}: {}",
            if whole {
                "heard all of it and applied it"
            } else {
                "missed pieces: its sync gets only those"
            }
        );
    }
    for (k, name) in names.iter().enumerate() {
        let now = sim.now();
        let id = (args.seed as u16)
            .wrapping_mul(71)
            .wrapping_add(0x5000 + k as u16);
        sim.stations[0].start_sync(now, name, id)?;
        let mut got = None;
        sim.run_until(sim.elapsed() + Duration::from_secs(3600), |s| {
            if let Some(o) = s.stations[0].poll_outcome() {
                got = Some(o);
            }
            got.is_some() && s.stations.iter().all(|st| !st.has_sessions())
        });
        let o = got.context("no outcome from the sync after the broadcast")?;
        match &o.result {
            Ok(sum) => println!(
                "  district syncs with {name}: {} bundle bytes still to send; {}",
                sum.bundle_bytes_sent,
                if sum.verified() == Some(true) {
                    "verified"
                } else {
                    "not verified"
                }
            ),
            Err(e) => bail!("the sync with {name} after the broadcast failed: {e}"),
        }
    }
    let rows: Vec<_> = std::iter::once(hub)
        .chain(fields.iter().map(|p| p.as_path()))
        .map(|p| Store::open(p).and_then(|s| s.synced_rows()))
        .collect::<Result<_, _>>()?;
    ensure!(
        rows.windows(2).all(|w| w[0] == w[1]),
        "the stations differ after the broadcast"
    );
    let air: Duration = sim.channel.stats.airtime.iter().sum();
    println!(
        "all three equal again; {:.1} s of airtime in all (the broadcast and both syncs)",
        air.as_secs_f64()
    );
    Ok(())
}

/// The hub's update the net demo broadcasts.
const HUB_UPDATE: &str = "
UPDATE hms_hospital SET status = 'Status checked by district',
  modified_on = '2026-03-03T10:00:00.000Z';
";

/// The demo's profile: its stations have no callsigns, so not an amateur one.
fn demo_profile(args: &DemoArgs) -> anyhow::Result<Profile> {
    let profile = Profile::load(&args.profile)?;
    ensure!(
        !profile.amateur,
        "the demo stations have no callsigns: use a non-amateur profile such as sim-kiss-1200"
    );
    Ok(profile)
}

/// Both databases hold the same rows and the conflicting edits were decided by the rules.
/// Returns the number of synced rows and of losing versions kept.
fn verify(a: &Store, b: &Store) -> anyhow::Result<(usize, usize)> {
    ensure!(
        a.pending_for(&b.station().id)? == 0 && b.pending_for(&a.station().id)? == 0,
        "stations still have changes for each other"
    );
    let (ca, cb) = (a.synced_rows()?, b.synced_rows()?);
    ensure!(ca == cb, "the two databases differ after sync");
    for s in [a, b] {
        ensure!(
            hospital(s, 1)?.0 == "Open (b)",
            "hospital 1 at {}: bravo's later edit should win",
            s.station().name
        );
        ensure!(
            hospital(s, 2)?.1 == 120,
            "hospital 2 at {}: alpha's later edit should win",
            s.station().name
        );
    }
    Ok((ca.len(), a.conflicts()?.len() + b.conflicts()?.len()))
}

fn file_demo(dir: &Path) -> anyhow::Result<()> {
    let (a_path, b_path) = set_up(dir, false)?;
    let (mut a, mut b) = (Store::open(&a_path)?, Store::open(&b_path)?);
    println!("bundles, as files on a USB stick:");
    let (mut total_rows, mut total_bytes, mut step) = (0, 0, 0);
    for _ in 0..3 {
        step += 1;
        let (r1, b1) = carry(&a, &mut b, dir, step)?;
        step += 1;
        let (r2, b2) = carry(&b, &mut a, dir, step)?;
        total_rows += r1 + r2;
        total_bytes += b1 + b2;
        if a.pending_for(&b.station().id)? == 0 && b.pending_for(&a.station().id)? == 0 {
            break;
        }
    }
    let (rows, conflicts) = verify(&a, &b)?;
    println!(
        "result: {rows} synced rows identical on both stations; {total_rows} rows moved in {total_bytes} bytes; \
         {conflicts} losing versions kept for review (`radiosync conflicts`)"
    );
    println!("hospital 1: bravo's later status wins; hospital 2: alpha's later bed count wins");
    Ok(())
}

fn radio_demo(dir: &Path, args: &DemoArgs) -> anyhow::Result<()> {
    let profile = demo_profile(args)?;
    let chan_cfg = channel_config(&profile, args.ber, None, args.frame_loss, args.seed);
    let (a_path, b_path) = set_up(dir, true)?;
    let (a, b) = (Store::open(&a_path)?, Store::open(&b_path)?);
    println!(
        "pending: alpha has {} rows for bravo, bravo {} for alpha",
        a.pending_for(&b.station().id)?,
        b.pending_for(&a.station().id)?
    );
    let mut a = Station::new(a, profile.clone(), false)?;
    let mut b = Station::new(b, profile.clone(), true)?;
    let mut errors = Vec::new();
    if chan_cfg.frame_loss > 0.0 {
        errors.push(format!(
            "{:.0} % of frames lost",
            chan_cfg.frame_loss * 100.0
        ));
    }
    if chan_cfg.ber > 0.0 {
        errors.push(format!("bit error rate {:e}", chan_cfg.ber));
    }
    println!(
        "radio: {} ({} framing), {} bit/s, TXDELAY {} ms, {}; channel simulator seed {}",
        profile.name,
        match profile.framing {
            Framing::Kiss => "KISS",
            Framing::Transparent => "transparent",
        },
        profile.bitrate,
        profile.txdelay_ms,
        if errors.is_empty() {
            "no errors".to_string()
        } else {
            errors.join(", ")
        },
        args.seed
    );
    println!("bravo runs `radiosync run`, alpha `radiosync sync --peer bravo` (in-process links)");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let started = Instant::now();
    let (stats, rounds) = rt.block_on(async {
        let (mut a_port, a_air) = tokio::io::duplex(1 << 16);
        let (mut b_port, b_air) = tokio::io::duplex(1 << 16);
        let (stop_relay, stop_rx) = watch::channel(false);
        let (view, relay) = relay::spawn(Channel::new(chan_cfg)?, a_air, b_air, stop_rx);
        let rounds = radio_sync(&mut a, &mut a_port, &mut b, &mut b_port, &view).await?;
        let _ = stop_relay.send(true);
        let stats = relay.await??;
        anyhow::Ok((stats, rounds))
    })?;
    let wall = started.elapsed();
    let (rows, conflicts) = verify(a.store(), b.store())?;
    let air = stats.a_to_b.airtime_s + stats.b_to_a.airtime_s;
    let dirs = [&stats.a_to_b, &stats.b_to_a];
    let damage = match profile.framing {
        Framing::Kiss => format!(
            "{} of {} frames lost on the way and sent again",
            dirs.iter()
                .map(|d| d.frames_lost_random + d.frames_lost_bit_errors + d.frames_lost_collision)
                .sum::<u64>(),
            dirs.iter().map(|d| d.frames_sent).sum::<u64>()
        ),
        Framing::Transparent => format!(
            "{} bytes on air, {} bits flipped by the channel",
            dirs.iter().map(|d| d.bytes_sent).sum::<u64>(),
            dirs.iter().map(|d| d.bits_flipped).sum::<u64>()
        ),
    };
    println!(
        "result: {rows} synced rows identical on both stations after {rounds} session{}; \
         {conflicts} losing versions kept for review (`radiosync conflicts`)",
        if rounds == 1 { "" } else { "s" }
    );
    println!("hospital 1: bravo's later status wins; hospital 2: alpha's later bed count wins");
    println!(
        "airtime: {air:.1} s in {} transmissions (alpha {:.1} s, bravo {:.1} s); {damage}; \
         {:.1} s wall time",
        stats.a_to_b.transmissions + stats.b_to_a.transmissions,
        stats.a_to_b.airtime_s,
        stats.b_to_a.airtime_s,
        wall.as_secs_f64()
    );
    Ok(())
}

/// One `sync` from alpha to bravo's `run`, both through the daemon's loop. Returns the
/// number of sessions the sync took (a row whose later edit arrived as a delta that could
/// not apply goes in full in another session).
async fn radio_sync(
    a: &mut Station,
    a_port: &mut DuplexStream,
    b: &mut Station,
    b_port: &mut DuplexStream,
    view: &RelayView,
) -> anyhow::Result<usize> {
    let bitrate = a.profile().bitrate;
    let mut bar = Bar::new("alpha", bitrate, Some(view.clone()));
    let mut quiet = Bar::new("bravo", bitrate, None);
    let mut bravo_closed = quiet.closed.subscribe();
    let (alpha_done, mut alpha_sessions) = watch::channel(None::<usize>);
    let tick = bar.tick();
    let opts = |mode| Options {
        mode,
        timeout: Some(Duration::from_secs(600)),
        link_status: None,
        tick,
    };
    let alpha = async {
        let end = daemon::drive(
            a_port,
            a,
            opts(Mode::Sync {
                peer: "bravo".into(),
                budget: None,
            }),
            std::future::pending(),
            &mut bar,
        )
        .await;
        let n = match &end {
            Ok(End::Synced { outcomes, .. }) => outcomes.len(),
            _ => 0,
        };
        let _ = alpha_done.send(Some(n));
        bar.finish();
        end
    };
    // Bravo stops once its side of every session has closed too (it still has to hear
    // alpha's ack of its last message), or a little later if that ack was lost.
    let bravo_stop = async {
        let Ok(n) = alpha_sessions
            .wait_for(Option::is_some)
            .await
            .map(|n| n.unwrap_or(0))
        else {
            return;
        };
        let _ = tokio::time::timeout(
            Duration::from_secs(10),
            bravo_closed.wait_for(|&closed| closed >= n),
        )
        .await;
    };
    let bravo = daemon::drive(
        b_port,
        b,
        opts(Mode::Run {
            every: None,
            broadcast: false,
        }),
        bravo_stop,
        &mut quiet,
    );
    let (ea, eb) = tokio::join!(alpha, bravo);
    eb.context("bravo's daemon")?;
    match ea.context("alpha's sync")? {
        End::Synced { outcomes, complete } => {
            let (mut sent, mut got, mut resent, mut timeouts) = (0, 0, 0, 0);
            for o in &outcomes {
                if let Err(e) = &o.result {
                    bail!("alpha's sync failed: {e}");
                }
                if let Ok(sum) = &o.result {
                    sent += sum.bundle_bytes_sent;
                    got += sum.bundle_bytes_received;
                }
                resent += o.stats.retransmissions;
                timeouts += o.stats.timeouts;
            }
            ensure!(complete, "rows are still to be sent in full after the sync");
            let verified = outcomes
                .last()
                .and_then(|o| o.result.as_ref().ok())
                .and_then(|s| s.verified());
            ensure!(
                verified == Some(true),
                "the stations' content fingerprints differ after the sync"
            );
            println!(
                "alpha: synced with bravo in {} session(s): {sent} bundle bytes sent, {got} \
                 received; {resent} frames resent, {timeouts} timeouts; verified: both \
                 stations' content fingerprints match",
                outcomes.len()
            );
            Ok(outcomes.len())
        }
        End::TimedOut => bail!("alpha's sync timed out"),
        End::Shutdown => bail!("alpha's sync was stopped"),
    }
}

/// The operator's view: a progress bar (bundle bytes, airtime, ETA) on a terminal, log lines
/// otherwise. `view` is the channel, for the airtime both stations spent.
struct Bar {
    name: &'static str,
    bar: Option<ProgressBar>,
    bitrate: u32,
    view: Option<RelayView>,
    /// Per session: highest (done, total) seen receiving and sending.
    seen: BTreeMap<u16, [(u64, u64); 2]>,
    last_line: Option<Instant>,
    /// Sessions closed so far.
    closed: watch::Sender<usize>,
}

impl Bar {
    fn new(name: &'static str, bitrate: u32, view: Option<RelayView>) -> Bar {
        let bar = (view.is_some() && std::io::stderr().is_terminal()).then(|| {
            // A spinner until the first bundle's size is known, then the bar.
            let b = ProgressBar::new(0);
            b.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b.enable_steady_tick(Duration::from_millis(250));
            b
        });
        Bar {
            name,
            bar,
            bitrate,
            view,
            seen: BTreeMap::new(),
            last_line: None,
            closed: watch::channel(0).0,
        }
    }

    fn tick(&self) -> Duration {
        Duration::from_millis(if self.bar.is_some() { 500 } else { 1000 })
    }

    fn line(&self, text: &str) {
        match &self.bar {
            Some(b) => b.println(text),
            None => eprintln!("{text}"),
        }
    }

    fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }

    /// Bundle bytes moved so far (both ways) and the airtime spent.
    fn show(&mut self, now: bool) {
        let Some(view) = &self.view else { return };
        let (done, total) = self
            .seen
            .values()
            .flatten()
            .fold((0, 0), |(d, t), (dd, tt)| (d + dd, t + tt));
        // The channel counts a transmission's airtime when it keys up; on a half-duplex
        // channel the keyed time never runs ahead of the clock.
        let air = view.airtime().min(view.elapsed());
        let msg = format!(
            "airtime {:.0} s at {} bit/s",
            air.as_secs_f64(),
            self.bitrate
        );
        match &self.bar {
            Some(b) => {
                if total > 0 && b.length() == Some(0) {
                    b.set_style(
                        ProgressStyle::with_template(
                            "{spinner} [{elapsed_precise}] {bar:30} {bytes}/{total_bytes} {msg} ETA {eta}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                    );
                }
                b.set_length(total.max(done));
                b.set_position(done);
                b.set_message(msg);
            }
            None => {
                if now
                    || self
                        .last_line
                        .is_none_or(|t| t.elapsed() >= Duration::from_secs(5))
                {
                    self.last_line = Some(Instant::now());
                    self.line(&format!(
                        "  progress: {done}/{total} bundle bytes, {msg}, {:.0} s",
                        view.elapsed().as_secs_f64()
                    ));
                }
            }
        }
    }
}

impl Observer for Bar {
    fn note(&mut self, text: &str) {
        // The demo stops bravo's daemon itself once the sync is over.
        if !text.starts_with("stopping") {
            self.line(&format!("  {}: {text}", self.name));
        }
    }

    fn progress(&mut self, sessions: &[SessionView]) {
        for s in sessions {
            let e = self.seen.entry(s.session).or_default();
            // A phase may start and end between two ticks: the counters keep what moved.
            // Sending counts what the peer acknowledged (a Hello's few bytes included), not
            // what was queued for the radio.
            let moved = [s.stats.bundle_bytes_received, s.stats.payload_bytes_acked];
            for (i, p) in [s.progress.receiving, s.progress.sending]
                .iter()
                .enumerate()
            {
                let mut t = e[i].1.max(p.map_or(0, |p| p.1));
                if i == 0 {
                    // What arrived is known even if its phase was never seen running.
                    t = t.max(moved[0]);
                }
                e[i] = (e[i].0.max(moved[i]).min(t), t);
            }
        }
        self.show(false);
    }

    fn outcome(&mut self, o: &Outcome) {
        if o.result.is_ok() {
            if let Some(e) = self.seen.get_mut(&o.session) {
                for (d, t) in e.iter_mut() {
                    *d = *t;
                }
            }
            self.show(true);
        }
        self.closed.send_modify(|n| *n += 1);
    }
}
