//! Radio commands: `run` (the gateway daemon) and `sync` (one session with one
//! peer). They parse, open the store, the profile and the port, and hand over
//! to `radiosync::daemon`; progress goes to a bar on a terminal, log lines
//! otherwise.

use std::fs::File;
use std::io::{BufWriter, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use radiosync::capture::{CaptureHeader, LinkFraming, Record, Writer};
use radiosync::daemon::{self, End, Mode, Observer, Options, Outcome, SessionView, Station};
use radiosync::profile::{Framing, Profile};
use radiosync::store::Store;
use radiosync::sync::{ErrorCode, ErrorKind, SessionError};
use radiosync::transport::{Backoff, LinkSpec, ReconnectingLink};

#[derive(clap::Args, Debug)]
pub struct LinkArgs {
    /// Station config file (TOML: db, profile, port or kiss_tcp, capture, every, callsign,
    /// peers); flags given here override it. Default: /etc/radiosync/station.toml if it exists.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Station database.
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Modem profile: a name from firmware-profiles/ or a path to a TOML file.
    #[arg(long)]
    pub profile: Option<String>,
    /// Serial port (or pseudo-terminal) of the modem or TNC.
    #[arg(long, conflicts_with = "kiss_tcp")]
    pub port: Option<PathBuf>,
    /// KISS TNC over TCP, HOST:PORT (Dire Wolf listens on 8001).
    #[arg(long, value_name = "HOST:PORT")]
    pub kiss_tcp: Option<String>,
    /// Record every frame sent and received, with time and direction.
    #[arg(long, value_name = "FILE")]
    pub capture: Option<PathBuf>,
}

#[derive(clap::Subcommand, Debug)]
pub enum RadioCommand {
    /// The gateway daemon: answers registered peers; with --every, syncs with each on a schedule.
    Run {
        #[command(flatten)]
        link: LinkArgs,
        /// Call every registered peer this often (e.g. 90s, 15m, 2h).
        #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
        every: Option<Duration>,
        /// Check the config and the station, print what would run, and exit.
        #[arg(long)]
        check: bool,
    },
    /// One sync with one peer whose daemon is listening; exit 0 when both sides have everything.
    Sync {
        #[command(flatten)]
        link: LinkArgs,
        /// The peer's name (see `radiosync peer list`).
        #[arg(long)]
        peer: String,
        /// Give up after this long (e.g. 10m).
        #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
        timeout: Option<Duration>,
    },
}

/// A duration as an operator writes it: `90s`, `15m`, `2h`.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 && s % 3600 == 0 {
        format!("{}h", s / 3600)
    } else if s >= 60 && s % 60 == 0 {
        format!("{}m", s / 60)
    } else if s > 0 {
        format!("{s}s")
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// `90`, `90s`, `15m`, `2h`, `500ms`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 90s, 15m or 2h"))?;
    let d = match unit.trim() {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" | "min" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{s}`: use ms, s, m or h"
            ))
        }
    };
    if d.is_zero() {
        return Err("a duration must be more than zero".into());
    }
    Ok(d)
}

pub fn run(cmd: RadioCommand) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(run_async(cmd))
}

struct Setup {
    station: Station,
    link: ReconnectingLink,
    profile: Profile,
}

/// Where `run` and `sync` look for a config when none is given.
pub const DEFAULT_CONFIG: &str = "/etc/radiosync/station.toml";

/// A station config file: what `run` needs, so a service starts it with no flags.
#[derive(serde::Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct StationConfig {
    pub db: Option<PathBuf>,
    pub profile: Option<String>,
    pub port: Option<PathBuf>,
    pub kiss_tcp: Option<String>,
    pub capture: Option<PathBuf>,
    /// How often `run` calls every peer, e.g. "30m".
    pub every: Option<String>,
    /// This station's callsign (written to the station when it differs).
    pub callsign: Option<String>,
    /// Peers to register (or update) at start.
    #[serde(default, rename = "peer")]
    pub peers: Vec<PeerConfig>,
}

#[derive(serde::Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    pub name: String,
    pub uuid: String,
    pub callsign: Option<String>,
}

/// The link settings once the config file and the flags are merged (flags win).
#[derive(Debug)]
struct Resolved {
    db: PathBuf,
    profile: String,
    port: Option<PathBuf>,
    kiss_tcp: Option<String>,
    capture: Option<PathBuf>,
    every: Option<Duration>,
    config: StationConfig,
}

fn resolve(args: &LinkArgs, every: Option<Duration>) -> anyhow::Result<Resolved> {
    let path = args.config.clone().or_else(|| {
        let d = PathBuf::from(DEFAULT_CONFIG);
        (args.db.is_none() && d.exists()).then_some(d)
    });
    let config: StationConfig = match &path {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading config {}", p.display()))?;
            toml::from_str(&text).with_context(|| format!("config {}", p.display()))?
        }
        None => StationConfig::default(),
    };
    let from = |what: &str| match &path {
        Some(p) => format!("give --{what} or set `{what}` in {}", p.display()),
        None => format!("give --{what} (or --config FILE, see docs/operator-guide.md)"),
    };
    let every = match (every, &config.every) {
        (Some(d), _) => Some(d),
        (None, Some(text)) => {
            Some(parse_duration(text).map_err(|e| anyhow::anyhow!("config `every`: {e}"))?)
        }
        (None, None) => None,
    };
    let (port, kiss_tcp) = match (&args.port, &args.kiss_tcp) {
        (None, None) => (config.port.clone(), config.kiss_tcp.clone()),
        (p, k) => (p.clone(), k.clone()),
    };
    if port.is_some() && kiss_tcp.is_some() {
        bail!("the config gives both `port` and `kiss_tcp`: keep one");
    }
    Ok(Resolved {
        db: args
            .db
            .clone()
            .or(config.db.clone())
            .ok_or_else(|| anyhow::anyhow!(from("db")))?,
        profile: args
            .profile
            .clone()
            .or(config.profile.clone())
            .ok_or_else(|| anyhow::anyhow!(from("profile")))?,
        port,
        kiss_tcp,
        capture: args.capture.clone().or(config.capture.clone()),
        every,
        config,
    })
}

/// Bring the station's callsign and peers in line with the config.
fn apply_config(r: &Resolved) -> anyhow::Result<()> {
    let c = &r.config;
    if c.callsign.is_none() && c.peers.is_empty() {
        return Ok(());
    }
    let mut store = Store::open(&r.db).with_context(|| format!("opening {}", r.db.display()))?;
    if let Some(call) = &c.callsign {
        if store.station().callsign.as_deref() != Some(call.as_str()) {
            drop(store);
            store = Store::init(&r.db, None, Some(call))?;
        }
    }
    for p in &c.peers {
        let id = radiosync::delta::StationId::parse(&p.uuid)
            .map_err(|_| anyhow::anyhow!("config peer {}: {:?} is not a UUID", p.name, p.uuid))?;
        match store.peer_by_id(&id)? {
            None => store.add_peer(&p.name, id, p.callsign.as_deref())?,
            Some(known) => {
                let rename = (known.name != p.name).then_some(p.name.as_str());
                let call = (known.callsign != p.callsign).then_some(p.callsign.as_deref());
                if rename.is_some() || call.is_some() {
                    store.edit_peer(&known.name, rename, call)?;
                }
            }
        }
    }
    Ok(())
}

async fn setup(r: &Resolved, accept_calls: bool) -> anyhow::Result<Setup> {
    apply_config(r)?;
    let (profile, text) = Profile::load_with_text(&r.profile)?;
    let store = Store::open(&r.db).with_context(|| format!("opening {}", r.db.display()))?;
    let station_id = store.station().id;
    let mut station = Station::new(store, profile.clone(), accept_calls)?;
    if let Some(path) = &r.capture {
        let file = File::create(path)
            .with_context(|| format!("creating capture file {}", path.display()))?;
        let header = CaptureHeader {
            start_unix_ms: (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
                as i64,
            station: station_id,
            framing: match profile.framing {
                Framing::Kiss => LinkFraming::Kiss,
                Framing::Transparent => LinkFraming::Transparent,
            },
            profile_name: r.profile.clone(),
            profile_text: text,
        };
        let mut w = Writer::new(BufWriter::new(file), &header)
            .with_context(|| format!("writing capture file {}", path.display()))?;
        let start = Instant::now();
        let mut failed = false;
        station.set_recorder(Box::new(move |at, kind, bytes| {
            if failed {
                return;
            }
            let rec = Record {
                at_ms: at.saturating_duration_since(start).as_millis() as u64,
                kind,
                bytes: bytes.to_vec(),
            };
            if let Err(e) = w.write(&rec) {
                eprintln!("radiosync: capture stopped: {e}");
                failed = true;
            }
        }));
    }
    let spec = match (&r.port, &r.kiss_tcp) {
        (Some(path), _) => LinkSpec::Serial {
            path: path.clone(),
            settings: daemon::serial_settings(&profile),
        },
        (None, Some(addr)) => LinkSpec::KissTcp { addr: addr.clone() },
        (None, None) => {
            bail!("give --port DEVICE or --kiss-tcp HOST:PORT (or `port`/`kiss_tcp` in the config)")
        }
    };
    if r.kiss_tcp.is_some() && profile.framing != Framing::Kiss {
        bail!(
            "profile {} uses transparent framing; --kiss-tcp needs a KISS profile",
            profile.name
        );
    }
    let link = ReconnectingLink::open_first(spec, Backoff::default()).await?;
    Ok(Setup {
        station,
        link,
        profile,
    })
}

async fn ctrl_c() {
    // If the handler cannot be installed, never resolve: the process still dies on SIGINT.
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await
    }
}

async fn run_async(cmd: RadioCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        RadioCommand::Run { link, every, check } => {
            let r = resolve(&link, every)?;
            let every = r.every;
            if check {
                apply_config(&r)?;
                let store =
                    Store::open(&r.db).with_context(|| format!("opening {}", r.db.display()))?;
                let profile = Profile::load(&r.profile)?;
                let st = store.station();
                if profile.amateur && st.callsign.is_none() {
                    bail!("profile {} is for amateur bands: set `callsign` in the config or run `radiosync init --callsign`", profile.name);
                }
                println!(
                    "would run station {} ({}) on {} with profile {} ({} bit/s){}; {} peer(s)",
                    st.name,
                    st.id,
                    match (&r.port, &r.kiss_tcp) {
                        (Some(p), _) => p.display().to_string(),
                        (None, Some(a)) => format!("KISS TCP {a}"),
                        (None, None) => bail!("no link: set `port` or `kiss_tcp`"),
                    },
                    profile.name,
                    profile.bitrate,
                    every.map_or(String::new(), |d| format!(
                        ", calling peers every {}",
                        human(d)
                    )),
                    store.peers()?.len()
                );
                return Ok(ExitCode::SUCCESS);
            }
            let mut s = setup(&r, true).await?;
            let mut obs = Progress::new(&s.profile, true);
            obs.note(&format!(
                "station {} listening on {} with profile {} ({} bit/s on air){}",
                s.station.store().station().name,
                s.link.spec(),
                s.profile.name,
                s.profile.bitrate,
                every.map_or(String::new(), |d| format!(
                    ", calling peers every {}",
                    human(d)
                ))
            ));
            let opts = Options {
                mode: Mode::Run { every },
                timeout: None,
                link_status: Some(s.link.status()),
                tick: obs.tick(),
            };
            daemon::drive(&mut s.link, &mut s.station, opts, ctrl_c(), &mut obs).await?;
            obs.finish();
            Ok(ExitCode::SUCCESS)
        }
        RadioCommand::Sync {
            link,
            peer,
            timeout,
        } => {
            let r = resolve(&link, None)?;
            let mut s = setup(&r, false).await?;
            if s.station.store().peer_by_name(&peer)?.is_none() {
                bail!(
                    "no peer named {peer:?} in {}: see `radiosync peer list`",
                    r.db.display()
                );
            }
            let mut obs = Progress::new(&s.profile, false);
            obs.note(&format!(
                "syncing with {peer} over {} ({}, {} bit/s on air)",
                s.link.spec(),
                s.profile.name,
                s.profile.bitrate
            ));
            let opts = Options {
                mode: Mode::Sync { peer: peer.clone() },
                timeout,
                link_status: Some(s.link.status()),
                tick: obs.tick(),
            };
            let end = daemon::drive(&mut s.link, &mut s.station, opts, ctrl_c(), &mut obs).await?;
            obs.finish();
            match end {
                End::Synced { outcomes, complete } => {
                    let Some(last) = outcomes.last() else {
                        bail!("sync with {peer} ended without a session outcome");
                    };
                    if let Err(e) = &last.result {
                        eprintln!("radiosync: sync with {peer} failed: {}", explain(e, last));
                        return Ok(ExitCode::from(exit_code(e)));
                    }
                    let (mut applied, mut confirmed, mut sent, mut got) = (0, 0, 0, 0);
                    let mut air = Duration::ZERO;
                    for o in &outcomes {
                        if let Ok(s) = &o.result {
                            applied += s.bundles_applied;
                            confirmed += s.bundles_confirmed;
                            sent += s.bundle_bytes_sent;
                            got += s.bundle_bytes_received;
                        }
                        air += o.stats.airtime;
                    }
                    let verified = last.result.as_ref().ok().and_then(|s| s.verified());
                    println!(
                        "synced with {peer} in {} session(s): {applied} bundle(s) applied here, \
                         {confirmed} confirmed by {peer}; {sent} bundle bytes sent, {got} \
                         received; airtime {:.1} s; {}",
                        outcomes.len(),
                        air.as_secs_f64(),
                        match verified {
                            Some(true) => "verified: both stations hold the same content",
                            Some(false) => "NOT verified: the contents differ",
                            None => "not verified: the peer sent no fingerprint",
                        }
                    );
                    if verified == Some(false) && complete {
                        eprintln!(
                            "radiosync: {peer} and this station hold different content that \
                             neither change log explains (stations set up separately, a \
                             restored backup, or writes capture missed); see `radiosync log`"
                        );
                    }
                    if complete {
                        Ok(ExitCode::SUCCESS)
                    } else {
                        eprintln!(
                            "radiosync: rows are still to be sent in full after {} sessions: \
                             run sync again",
                            outcomes.len()
                        );
                        Ok(ExitCode::from(crate::cli::EXIT_UNFINISHED))
                    }
                }
                End::TimedOut => {
                    eprintln!(
                        "radiosync: sync with {peer} failed: no result within {:?}",
                        timeout.unwrap_or_default()
                    );
                    Ok(ExitCode::from(crate::cli::EXIT_TIMEOUT))
                }
                End::Shutdown => {
                    eprintln!("radiosync: sync with {peer} stopped by the operator");
                    Ok(ExitCode::from(crate::cli::EXIT_STOPPED))
                }
            }
        }
    }
}

/// The exit code of a failed session (see `cli::EXIT_*`).
fn exit_code(e: &SessionError) -> u8 {
    use crate::cli::*;
    match e {
        SessionError::LinkLost => EXIT_LINK,
        SessionError::Local(_) => EXIT_LOCAL,
        SessionError::Cancelled => EXIT_STOPPED,
        // The peer refused, misbehaved or sent bytes that are no message.
        other => match other.kind() {
            ErrorKind::Air | ErrorKind::Peer => EXIT_REFUSED,
            ErrorKind::Local => 1,
        },
    }
}

fn explain(e: &SessionError, o: &Outcome) -> String {
    match e {
        SessionError::LinkLost => match &o.link_lost {
            Some(why) => format!("link lost: {why}"),
            None => "link lost: the peer went silent".into(),
        },
        SessionError::PeerError {
            code: ErrorCode::UnknownStation,
            text,
        } => format!(
            "the peer refused this station ({text}): register it there with `radiosync peer add`"
        ),
        SessionError::PeerError {
            code: ErrorCode::SchemaMismatch,
            text,
        } => format!("schema mismatch ({text}): track the same tables on both stations"),
        other => other.to_string(),
    }
}

/// A bar with bytes, airtime and ETA on a terminal; log lines otherwise.
struct Progress {
    bar: Option<ProgressBar>,
    bitrate: u32,
    last_line: Option<Instant>,
    daemon: bool,
}

impl Progress {
    fn new(profile: &Profile, daemon: bool) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::new(0);
            b.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:30} {bytes}/{total_bytes} {msg} ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            b.enable_steady_tick(Duration::from_millis(250));
            b
        });
        Progress {
            bar,
            bitrate: profile.bitrate,
            last_line: None,
            daemon,
        }
    }

    fn tick(&self) -> Duration {
        if self.bar.is_some() {
            Duration::from_millis(500)
        } else {
            Duration::from_secs(5)
        }
    }

    fn line(&self, text: &str) {
        let stamp = radiosync::store::now_text();
        match &self.bar {
            Some(b) => b.println(format!("{stamp} {text}")),
            None => eprintln!("{stamp} {text}"),
        }
    }

    fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

impl Observer for Progress {
    fn note(&mut self, text: &str) {
        self.line(text);
    }

    fn progress(&mut self, sessions: &[SessionView]) {
        let (mut done, mut total, mut air) = (0u64, 0u64, Duration::ZERO);
        for s in sessions {
            for (d, t) in [s.progress.sending, s.progress.receiving]
                .into_iter()
                .flatten()
            {
                done += d;
                total += t;
            }
            air += s.stats.airtime;
        }
        let peers: Vec<&str> = sessions.iter().filter_map(|s| s.peer.as_deref()).collect();
        let msg = format!(
            "{} airtime {:.0} s at {} bit/s",
            peers.join(","),
            air.as_secs_f64(),
            self.bitrate
        );
        match &self.bar {
            Some(b) => {
                // Nothing known yet (hellos): an empty bar, not a full one.
                b.set_length(total.max(done).max(1));
                b.set_position(done);
                b.set_message(msg);
            }
            None => {
                let due = self.last_line.is_none_or(|t| {
                    t.elapsed() >= Duration::from_secs(if self.daemon { 30 } else { 10 })
                });
                if due {
                    self.last_line = Some(Instant::now());
                    self.line(&format!("progress: {done}/{total} bundle bytes, {msg}"));
                }
            }
        }
    }

    fn outcome(&mut self, _: &Outcome) {
        // The station's note already says how it ended; the next session starts a fresh bar.
        if let Some(b) = &self.bar {
            b.set_length(0);
            b.set_position(0);
        }
    }
}
