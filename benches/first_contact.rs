//! First contact between stations set up apart from copies of the public data
//! (issue 6): `init` + `track --all` + `peer add` on each copy, 180 and 125
//! edits (`testkit::mixed_edits`: updates of 1-3 columns, soft deletes,
//! inserts; some rows edited on both sides), then
//! - one radio sync over the channel model, transparent 9600 bit/s, TXDELAY
//!   100 ms, BER 1e-4 (simulated time), against ZMODEM (`sz -w 2048`, lrzsz)
//!   moving the gzip -9 nicedbdump JSON of the changed rows of both sites
//!   through `chansim` with the same settings (wall-clock time);
//! - the same first contact by files, against that JSON's size;
//! - what the change logs alone would send (both full exports).
//!
//! A program printing a table, not a timing test. ZMODEM is skipped (said so)
//! when `sz`/`rz` are missing (`apt-get install lrzsz`) or chansim is not built.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use radiosync::profile::Profile;
use radiosync::sim::Side;
use radiosync::store::{Store, SyncedRow};
use radiosync::testkit::{mixed_edits, run_sync, sim_pair, snapshot};

/// The public dataset (14,587 rows in 8 tables).
const DB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/public.sqlite");
const BER: f64 = 1e-4;

/// Two stations set up apart from copies of the public data.
fn separate_pair(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir)?;
    let a = dir.join("a.sqlite");
    let b = dir.join("b.sqlite");
    for path in [&a, &b] {
        radiosync::store::copy_station(DB, path)?;
        // The dataset is shipped read-only; the copies are stations.
        let mut perm = std::fs::metadata(path)?.permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perm.set_readonly(false);
        std::fs::set_permissions(path, perm)?;
    }
    let mut ids = Vec::new();
    for (path, name) in [(&a, "A"), (&b, "B")] {
        let mut s = Store::init(path, Some(name), None)?;
        s.track(&[], &["id".to_string()])?;
        // As `track --all` does: copies of one dataset train the same dictionary.
        s.retrain_dictionary()?;
        ids.push(s.station().id);
    }
    Store::open(&a)?.add_peer("B", ids[1], None)?;
    Store::open(&b)?.add_peer("A", ids[0], None)?;
    Ok((a, b))
}

/// Each site's edits, the same in every run.
fn edit_both(a: &Path, b: &Path) {
    mixed_edits(a, 41, 120, 40, 20);
    mixed_edits(b, 42, 80, 30, 15);
}

/// nicedbdump-like JSON (table -> rows as column -> value) of `rows`, gzip -9.
fn nicedbdump_gz(store: &Store, rows: &[&SyncedRow]) -> anyhow::Result<Vec<u8>> {
    let mut dump: BTreeMap<&str, Vec<serde_json::Value>> = BTreeMap::new();
    for r in rows {
        let info = store
            .tables()
            .iter()
            .find(|t| t.name == r.table)
            .ok_or_else(|| anyhow::anyhow!("no table {}", r.table))?;
        let mut obj = serde_json::Map::new();
        obj.insert("uuid".into(), r.uuid.clone().into());
        obj.insert("modified_on".into(), r.modified_on.clone().into());
        for (c, v) in info.payload.iter().zip(&r.values) {
            let j = match v {
                radiosync::delta::Value::Null => serde_json::Value::Null,
                radiosync::delta::Value::Integer(i) => (*i).into(),
                radiosync::delta::Value::Real(x) => (*x).into(),
                radiosync::delta::Value::Text(t) => t.clone().into(),
                radiosync::delta::Value::Blob(b) => format!("{b:02x?}").into(),
            };
            obj.insert(c.name.clone(), j);
        }
        dump.entry(r.table.as_str()).or_default().push(obj.into());
    }
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(&serde_json::to_vec(&dump)?)?;
    Ok(e.finish()?)
}

/// ZMODEM (`sz -w 2048`) sending `file` through chansim: wall-clock seconds.
fn zmodem(dir: &Path, file: &Path, profile: &Profile, ber: f64) -> anyhow::Result<Option<f64>> {
    let chansim = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/chansim");
    let have = |c: &str| {
        Command::new("which")
            .arg(c)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !chansim.exists() || !have("sz") || !have("rz") {
        println!("(ZMODEM skipped: needs `apt-get install lrzsz` and `cargo build --release`)");
        return Ok(None);
    }
    let tag = format!("{ber:e}");
    let (pa, pb) = (
        dir.join(format!("zm-a-{tag}")),
        dir.join(format!("zm-b-{tag}")),
    );
    let out = dir.join(format!("zm-out-{tag}"));
    std::fs::create_dir_all(&out)?;
    let txdelay = profile.txdelay_ms;
    let mut sim = Command::new(&chansim)
        .args(["--mode", "transparent", "--seed", "1"])
        .args(["--bitrate", &profile.bitrate.to_string()])
        .args([
            "--txdelay-ms",
            &txdelay.to_string(),
            "--ber",
            &ber.to_string(),
        ])
        .arg("--link-a")
        .arg(&pa)
        .arg("--link-b")
        .arg(&pb)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !(pa.exists() && pb.exists()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let on = |port: &Path, cmd: &str| {
        format!(
            "stty -F {p} raw -echo && exec {cmd} < {p} > {p}",
            p = port.display()
        )
    };
    let mut rz = Command::new("sh")
        .arg("-c")
        .arg(on(&pb, "rz -y"))
        .current_dir(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    std::thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    let sz = Command::new("timeout")
        .arg("900")
        .arg("sh")
        .arg("-c")
        .arg(on(&pa, &format!("sz -w 2048 {}", file.display())))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    let secs = start.elapsed().as_secs_f64();
    let _ = rz.wait();
    let _ = sim.kill();
    let _ = sim.wait();
    let name = file.file_name().ok_or_else(|| anyhow::anyhow!("no name"))?;
    let got = std::fs::read(out.join(name)).unwrap_or_default();
    anyhow::ensure!(
        sz.success() && got == std::fs::read(file)?,
        "ZMODEM did not deliver the file"
    );
    Ok(Some(secs))
}

/// The first contact by files: each file's size.
fn by_file(dir: &Path) -> anyhow::Result<Vec<usize>> {
    let dir = dir.join("files");
    std::fs::create_dir(&dir)?;
    let (a, b) = separate_pair(&dir)?;
    edit_both(&a, &b);
    let (mut sa, mut sb) = (Store::open(&a)?, Store::open(&b)?);
    let mut sizes = Vec::new();
    for i in 0..4 {
        let (from, to) = if i % 2 == 0 {
            (&mut sa, &mut sb)
        } else {
            (&mut sb, &mut sa)
        };
        let Some(f) = from.export_file_for(&to.station().id)? else {
            break;
        };
        to.import_file(&f.bytes)?;
        sizes.push(f.bytes.len());
    }
    anyhow::ensure!(
        sa.content_fingerprint()? == sb.content_fingerprint()?,
        "the file exchange did not converge"
    );
    Ok(sizes)
}

fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let files = by_file(dir.path())?;
    // `-- --files`: only the exchange by files (seconds, not the ZMODEM minutes).
    let files_only = std::env::args().any(|a| a == "--files");
    let (a, b) = separate_pair(dir.path())?;
    let original = snapshot(&a);
    edit_both(&a, &b);
    let (sa, sb) = (snapshot(&a), snapshot(&b));
    // The changed rows of both sites, as each site holds them.
    let changed: Vec<&SyncedRow> = sa
        .iter()
        .chain(&sb)
        .filter(|r| !original.contains(r))
        .collect();
    let store_a = Store::open(&a)?;
    let json = nicedbdump_gz(&store_a, &changed)?;
    let json_file = dir.path().join("changes.json.gz");
    std::fs::write(&json_file, &json)?;
    let logs_only: usize = {
        let sb = Store::open(&b)?;
        let (ida, idb) = (store_a.station().id, sb.station().id);
        store_a.export_bundle_bytes(&idb)?.len() + sb.export_bundle_bytes(&ida)?.len()
    };
    drop(store_a);
    let p = Profile::load("sim-transparent-9600")?;
    let mut pair = sim_pair(&p, &a, &b, BER, 0.0, 41);
    let t0 = pair.link.elapsed();
    let now = pair.link.now();
    pair.station(Side::A)
        .ok_or_else(|| anyhow::anyhow!("no station A"))?
        .start_sync(now, "B", 0x6100)?;
    let (oa, ob) = run_sync(&mut pair, Duration::from_secs(3600));
    let took = (pair.link.elapsed() - t0).as_secs_f64();
    let s = oa[0].result.clone().map_err(|e| anyhow::anyhow!("{e}"))?;
    let air = oa[0].stats.airtime + ob[0].stats.airtime;
    drop(pair);
    let (zm, zm_clean) = if files_only {
        (None, None)
    } else {
        (
            zmodem(dir.path(), &json_file, &p, BER)?,
            zmodem(dir.path(), &json_file, &p, 0.0)?,
        )
    };

    let messages = s.message_bytes_sent + s.message_bytes_received;
    let file_total: usize = files.iter().sum();
    println!(
        "# first contact: {} rows each side, {} rows changed (both sites)\n",
        original.len(),
        changed.len()
    );
    println!("| measure | value |");
    println!("|---|---:|");
    println!(
        "| gzip -9 nicedbdump JSON of the changed rows | {} B |",
        json.len()
    );
    println!("| change logs alone: both full exports | {logs_only} B |");
    println!(
        "| radio: differences found (row versions) | {} |",
        s.differences.unwrap_or(0)
    );
    println!("| radio: sketch sums (4 B each) | {} |", s.sketch_sums);
    println!("| radio: session message bytes, both ways | {messages} B |");
    println!(
        "| radio: time to verified sync (BER {BER:e}) | {took:.1} s (airtime {:.1} s) |",
        air.as_secs_f64()
    );
    println!("| radio: verified | {:?} |", s.verified());
    if let Some(z) = zm {
        println!("| ZMODEM `sz -w 2048` of the JSON, same channel | {z:.1} s |");
        println!(
            "| ratio: radio time / ZMODEM time (goal <= 0.25) | {:.2} |",
            took / z
        );
    }
    if let Some(z) = zm_clean {
        println!("| for reference: the same ZMODEM transfer at BER 0 | {z:.1} s |");
    }
    println!("| by file: offer, [counter-offer,] reply, rows | {files:?} = {file_total} B |");
    println!(
        "| ratio: files / gzip'd JSON (goal <= 0.5) | {:.2} |",
        file_total as f64 / json.len() as f64
    );
    println!(
        "| ratio: radio message bytes / logs alone | {:.3} |",
        messages as f64 / logs_only as f64
    );
    Ok(())
}
