//! First contact between stations set up apart from copies of the same data
//! (issue 6): each applies its own edits, then one sync over the simulated
//! transparent 9600 bit/s channel (no loss, simulated time). Reports what
//! set reconciliation sends beside what the change logs alone would send (a
//! full export to a peer that holds nothing of ours) and the gzip -9 JSON of
//! the rows that differ. Sizes are deterministic; decode time is not printed.

use std::io::Write;
use std::time::Duration;

use radiosync::profile::Profile;
use radiosync::sim::Side;
use radiosync::store::{Store, SyncedRow};
use radiosync::testkit::{edit, run_sync, sim_pair, snapshot};

/// The public dataset (14,587 rows in 8 tables).
const DB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/public.sqlite");

/// Two stations set up apart from copies of the public data: `init`, `track`
/// every table (`id` site-local), `peer add` on each.
fn separate_pair(
    dir: &std::path::Path,
) -> anyhow::Result<(std::path::PathBuf, std::path::PathBuf)> {
    let a = dir.join("a.sqlite");
    let b = dir.join("b.sqlite");
    for path in [&a, &b] {
        std::fs::copy(DB, path)?;
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
        ids.push(s.station().id);
    }
    Store::open(&a)?.add_peer("B", ids[1], None)?;
    Store::open(&b)?.add_peer("A", ids[0], None)?;
    Ok((a, b))
}

fn json_of(rows: &[&SyncedRow]) -> Vec<u8> {
    let v: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "table": r.table,
                "uuid": r.uuid,
                "modified_on": r.modified_on,
                "values": r.values.iter().map(|v| format!("{v:?}")).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::to_vec(&v).expect("json")
}

fn gzip9(bytes: &[u8]) -> usize {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(bytes).expect("gzip");
    e.finish().expect("gzip").len()
}

/// The same first contact by files; returns each file's size.
fn by_file(dir: &std::path::Path) -> anyhow::Result<Vec<usize>> {
    let dir = dir.join("files");
    std::fs::create_dir(&dir)?;
    let (a, b) = separate_pair(&dir)?;
    edit(&a, 41, 120, 40, 60);
    edit(&b, 42, 80, 30, 60);
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
    let by_file = by_file(dir.path())?;
    let (a, b) = separate_pair(dir.path())?;
    edit(&a, 41, 120, 40, 60);
    edit(&b, 42, 80, 30, 60);
    let (sa, sb) = (snapshot(&a), snapshot(&b));
    let differ: Vec<&SyncedRow> = sa
        .iter()
        .filter(|r| !sb.contains(r))
        .chain(sb.iter().filter(|r| !sa.contains(r)))
        .collect();
    let json_gz = gzip9(&json_of(&differ));
    let logs_only: usize = {
        let (ia, ib) = (Store::open(&a)?, Store::open(&b)?);
        let (ida, idb) = (ia.station().id, ib.station().id);
        ia.export_bundle_bytes(&idb)?.len() + ib.export_bundle_bytes(&ida)?.len()
    };
    let p = Profile::load("sim-transparent-9600")?;
    let mut pair = sim_pair(&p, &a, &b, 0.0, 0.0, 41);
    let now = pair.link.now();
    pair.station(Side::A)
        .ok_or_else(|| anyhow::anyhow!("no station A"))?
        .start_sync(now, "B", 0x6100)?;
    let (oa, ob) = run_sync(&mut pair, Duration::from_secs(3600));
    let s = oa[0].result.clone().map_err(|e| anyhow::anyhow!("{e}"))?;
    let air = oa[0].stats.airtime + ob[0].stats.airtime;
    let bundles = s.bundle_bytes_sent + s.bundle_bytes_received;
    let messages = s.message_bytes_sent + s.message_bytes_received;
    println!(
        "# first contact, {} rows each side, {} rows differ",
        sa.len(),
        differ.len()
    );
    println!();
    println!("| measure | value |");
    println!("|---|---:|");
    println!(
        "| differences found (items) | {} |",
        s.differences.unwrap_or(0)
    );
    println!("| sketch sums (4 bytes each) | {} |", s.sketch_sums);
    println!("| bundle bytes, both ways | {bundles} |");
    println!("| session message bytes, both ways | {messages} |");
    println!("| airtime, both stations | {:.1} s |", air.as_secs_f64());
    println!("| verified | {:?} |", s.verified());
    println!("| gzip -9 JSON of the differing rows | {json_gz} |");
    println!("| change logs alone: both full exports | {logs_only} |");
    println!(
        "| by file: offer, counter-offer, reply, rows | {by_file:?} = {} |",
        by_file.iter().sum::<usize>()
    );
    println!(
        "| ratio: files / gzip'd JSON | {:.2} |",
        by_file.iter().sum::<usize>() as f64 / json_gz as f64
    );
    println!(
        "| ratio: message bytes / gzip'd JSON | {:.2} |",
        messages as f64 / json_gz as f64
    );
    println!(
        "| ratio: message bytes / logs alone | {:.3} |",
        messages as f64 / logs_only as f64
    );
    Ok(())
}
