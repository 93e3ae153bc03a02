//! `capture show` and `replay`: reading frame captures back at a desk.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use radiosync::capture::decode::DecodeKeys;
use radiosync::capture::replay::{self, BundleFate, ReplayOptions, Replayer};
use radiosync::capture::show;
use radiosync::capture::{Reader, RecordKind};
use radiosync::codec::Dictionary;
use radiosync::store::Store;

#[derive(clap::Subcommand, Debug)]
pub enum CaptureCommand {
    /// List a capture file: one decoded line per recorded frame.
    Show {
        /// The capture written by `run --capture` or `sync --capture`.
        file: PathBuf,
        /// Also print each frame record's bytes in hex.
        #[arg(long)]
        hex: bool,
        /// Also put the bundles the frames carry back together and print their rows.
        #[arg(long)]
        decode: bool,
        /// The sender's zstd dictionary, as `dict export` writes it (with --decode).
        #[arg(long, requires = "decode")]
        dict: Option<PathBuf>,
        /// A station database of the same schema: table and column names, the
        /// stations it knows, and its dictionary unless --dict is given (with --decode).
        #[arg(long, requires = "decode")]
        db: Option<PathBuf>,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Received,
    Sent,
}

/// Feed a capture's frames through decode and apply, into a database.
#[derive(clap::Args, Debug)]
pub struct ReplayArgs {
    /// The database to apply to: a copy of the receiving station's database
    /// as it was before the captured sync.
    #[arg(long)]
    pub db: PathBuf,
    /// The capture file.
    pub capture: PathBuf,
    /// Leave out these records (numbers as `capture show` prints them).
    #[arg(long, value_delimiter = ',')]
    pub drop: Vec<u64>,
    /// Also drop each frame record with this probability (0..=1).
    #[arg(long, value_parser = parse_rate)]
    pub drop_rate: Option<f64>,
    /// Seed for --drop-rate.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Damage these records before decoding.
    #[arg(long, value_delimiter = ',')]
    pub corrupt: Vec<u64>,
    /// Bytes damaged in each record named by --corrupt.
    #[arg(long, default_value_t = 1)]
    pub corrupt_bytes: usize,
    /// Which recorded frames to feed: what the station received, or what it sent.
    #[arg(long, value_enum, default_value_t = Direction::Received)]
    pub direction: Direction,
    /// Print every step, not only the summary.
    #[arg(long, short)]
    pub verbose: bool,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let p: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if (0.0..=1.0).contains(&p) {
        Ok(p)
    } else {
        Err(format!("{p} is not a probability between 0 and 1"))
    }
}

fn open_capture(path: &PathBuf) -> anyhow::Result<Reader<BufReader<File>>> {
    let file =
        File::open(path).with_context(|| format!("cannot open capture {}", path.display()))?;
    Reader::new(BufReader::new(file)).with_context(|| format!("capture {}", path.display()))
}

pub fn run_capture(cmd: CaptureCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        CaptureCommand::Show {
            file,
            hex,
            decode,
            dict,
            db,
        } => {
            let reader = open_capture(&file)?;
            let header = reader.header().clone();
            let keys = if decode {
                Some(decode_keys(dict.as_ref(), db.as_ref())?)
            } else {
                None
            };
            print!("{}", show::show_with(&header, reader, hex, keys));
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// What `capture show --decode` reads bundles with: a dictionary file, and a
/// station's schema, stations and dictionary.
fn decode_keys(dict: Option<&PathBuf>, db: Option<&PathBuf>) -> anyhow::Result<DecodeKeys> {
    let mut keys = DecodeKeys::default();
    if let Some(db) = db {
        let s = Store::open(db).with_context(|| format!("cannot open {}", db.display()))?;
        keys.schema = Some((s.schema_fingerprint(), s.layout()));
        keys.stations.push(s.station().id);
        keys.stations.extend(s.peers()?.into_iter().map(|p| p.id));
        keys.dict = s.dictionary()?;
    }
    if let Some(path) = dict {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read dictionary {}", path.display()))?;
        if bytes.is_empty() {
            anyhow::bail!("{} is empty, not a dictionary", path.display());
        }
        keys.dict = Some(Dictionary::new(bytes));
    }
    Ok(keys)
}

pub fn run_replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let reader = open_capture(&args.capture)?;
    let header = reader.header().clone();
    if !args.db.exists() {
        anyhow::bail!(
            "database {} does not exist; replay into a copy of the receiving station's database",
            args.db.display()
        );
    }
    let mut store =
        Store::open(&args.db).with_context(|| format!("cannot open {}", args.db.display()))?;
    let opts = ReplayOptions {
        direction: match args.direction {
            Direction::Received => RecordKind::Received,
            Direction::Sent => RecordKind::Sent,
        },
        drop: args.drop.iter().copied().collect::<BTreeSet<_>>(),
        drop_rate: args.drop_rate.map(|p| (p, args.seed)),
        corrupt: args.corrupt.iter().copied().collect(),
        corrupt_bytes: args.corrupt_bytes,
    };
    let mut replayer = Replayer::new(&mut store, &header, opts)?;
    let mut warning = None;
    for (index, item) in reader.enumerate() {
        match item {
            Ok(record) => replayer.feed(index as u64, &record),
            Err(e) => {
                warning = Some(format!("the capture ends early: {e}"));
                break;
            }
        }
    }
    let report = replayer.finish(warning);
    if args.verbose {
        for line in &report.log {
            println!("{line}");
        }
    }
    print!("{}", replay::summary(&report));
    // The exit codes of docs/operator-guide.md: 7 refused, 8 nothing whole to apply.
    let refused = report
        .bundles
        .iter()
        .any(|b| matches!(b.fate, BundleFate::Refused(_) | BundleFate::Corrupt { .. }));
    let incomplete = report.bundles.is_empty()
        || report.bundles.iter().any(|b| {
            !matches!(
                b.fate,
                BundleFate::Applied(_) | BundleFate::Refused(_) | BundleFate::Corrupt { .. }
            )
        });
    Ok(if refused {
        ExitCode::from(crate::cli::EXIT_REFUSED)
    } else if incomplete {
        ExitCode::from(crate::cli::EXIT_INCOMPLETE)
    } else {
        ExitCode::SUCCESS
    })
}
