//! `radiosync demo`: two stations from the embedded sample data, edited on both sides with
//! plain SQL, synced over a simulated 1200 bit/s radio channel with errors by the real daemon
//! code (in-process links through `transport::sim::Channel` on the wall clock), then checked
//! against the rules. `--file` carries the bundles as files instead.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, ensure, Context};
use radiosync::store::Store;
use rusqlite::types::Value;

/// The first 100 rows of each table of the public dataset (see data/README.md).
pub const SAMPLE_SQL: &str = include_str!("../../data/sample.sql");

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// The file-sync demo instead: bundles carried as files (USB stick), no radio.
    #[arg(long)]
    file: bool,
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
    #[arg(long, default_value_t = 1)]
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
         (SELECT l1 FROM gis_location WHERE id = 1 + (i * 17) % 100)
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

fn synced_content(s: &Store) -> anyhow::Result<Vec<Vec<Value>>> {
    let mut out = Vec::new();
    for t in s.tables() {
        let cols: Vec<String> = t
            .payload
            .iter()
            .map(|c| format!("\"{}\"", c.name.replace('"', "\"\"")))
            .collect();
        let sql = format!(
            "SELECT uuid, modified_on, {} FROM \"{}\" ORDER BY uuid",
            cols.join(", "),
            t.name
        );
        let mut stmt = s.connection().prepare(&sql)?;
        let n = cols.len() + 2;
        let rows = stmt.query_map([], |r| {
            (0..n)
                .map(|i| r.get::<_, Value>(i))
                .collect::<Result<Vec<_>, _>>()
        })?;
        for r in rows {
            let mut r = r?;
            r.insert(0, Value::Text(t.name.clone()));
            out.push(r);
        }
    }
    Ok(out)
}

fn hospital(s: &Store, id: i64) -> anyhow::Result<(String, i64)> {
    Ok(s.connection().query_row(
        "SELECT status, beds_total FROM hms_hospital WHERE id = ?1",
        [id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?)
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
    rusqlite::Connection::open(&a_path)?.execute_batch(SAMPLE_SQL)?;
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
    rusqlite::Connection::open(&a_path)?.execute_batch(EDITS_A)?;
    rusqlite::Connection::open(&b_path)?.execute_batch(EDITS_B)?;
    if more {
        rusqlite::Connection::open(&a_path)?.execute_batch(MORE_EDITS_A)?;
        rusqlite::Connection::open(&b_path)?.execute_batch(MORE_EDITS_B)?;
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

/// Both databases hold the same rows and the conflicting edits were decided by the rules.
/// Returns the number of synced rows and of losing versions kept.
fn verify(a: &Store, b: &Store) -> anyhow::Result<(usize, usize)> {
    ensure!(
        a.pending_for(&b.station().id)? == 0 && b.pending_for(&a.station().id)? == 0,
        "stations still have changes for each other"
    );
    let (ca, cb) = (synced_content(a)?, synced_content(b)?);
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
    let _ = (&args.profile, args.frame_loss, args.ber, args.seed);
    file_demo(dir)
}
