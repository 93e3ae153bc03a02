//! Radio commands: `run` (the gateway daemon) and `sync` (one session with one
//! peer). They parse, open the store, the profile and the port, and hand over
//! to `radiosync::daemon`; progress goes to a bar on a terminal, log lines
//! otherwise.

use std::fs::File;
use std::io::{BufWriter, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use radiosync::api::{http, Service};
use radiosync::capture::{CaptureHeader, LinkFraming, Record, Writer};
use radiosync::daemon::{
    self, tcp, DaemonError, End, Mode, Observer, Options, Outcome, SessionView, Station,
};
use radiosync::discovery;
use radiosync::profile::{Framing, Profile};
use radiosync::store::Store;
use radiosync::sync::{ErrorCode, ErrorKind, SessionError};
use radiosync::transport::{Backoff, LinkSpec, ReconnectingLink};
use tokio::net::TcpListener;
use tokio::sync::watch;

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
        /// Also answer peers over TCP here, HOST:PORT (sync over IP: a LAN, a satellite
        /// terminal); with no radio link given, only over TCP.
        #[arg(long, value_name = "HOST:PORT")]
        tcp_listen: Option<String>,
        /// Also serve the web services (getdata, putdata) here, HOST:PORT.
        #[arg(long, value_name = "HOST:PORT")]
        http: Option<String>,
        /// With --tcp-listen: do not announce the station on the LAN by mDNS.
        #[arg(long)]
        no_announce: bool,
        /// Announce this station on the radio channel this often (e.g. 10m): a short
        /// beacon with its name, callsign, key digest and what it holds, which other
        /// stations list with `radiosync heard`. Waits while sessions run.
        #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
        beacon: Option<Duration>,
        /// With --every, on the radio: each round, what two or more peers lack goes on
        /// air once, as a broadcast they all keep, before the calls (see `broadcast`).
        #[arg(long)]
        broadcast: bool,
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
        /// Airtime budget (e.g. 5m): what this station sends goes on air within it,
        /// highest priority classes first (`track --priority`); the rest waits for
        /// the next sync. Estimated as `radiosync plan` does.
        #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
        budget: Option<Duration>,
        /// Sync over IP with the peer's `run --tcp-listen` at HOST:PORT (no radio, no --profile).
        #[arg(long, value_name = "HOST:PORT", conflicts_with_all = ["port", "kiss_tcp", "profile"])]
        tcp: Option<String>,
    },
    /// Bring several peers up to date with one transmission: what all of them lack
    /// goes on air once, as a signed broadcast they all keep; then a sync with each
    /// in turn sends only what that station missed (and what it has for us).
    Broadcast {
        #[command(flatten)]
        link: LinkArgs,
        /// A peer to serve (repeat for each); default: every peer registered with a key.
        #[arg(long)]
        peer: Vec<String>,
        /// Give up after this long (e.g. 30m).
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
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
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
    rt.block_on(tokio::task::LocalSet::new().run_until(run_async(cmd)))
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
    /// `run --tcp-listen`.
    pub tcp_listen: Option<String>,
    /// `run --http`.
    pub http: Option<String>,
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
    /// Given only with a radio link.
    profile: Option<String>,
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
        profile: match args.profile.clone().or(config.profile.clone()) {
            Some(p) => Some(p),
            None if port.is_some() || kiss_tcp.is_some() => bail!(from("profile")),
            None => None,
        },
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

/// The station with profile `profile_name`, recording to the capture file if one is set.
fn make_station(
    r: &Resolved,
    profile_name: &str,
    accept_calls: bool,
) -> anyhow::Result<(Station, Profile)> {
    apply_config(r)?;
    let (profile, text) = Profile::load_with_text(profile_name)?;
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
            profile_name: profile_name.to_string(),
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
    Ok((station, profile))
}

async fn setup(r: &Resolved, accept_calls: bool) -> anyhow::Result<Setup> {
    let Some(profile_name) = &r.profile else {
        bail!("give --profile NAME for the radio (or `profile` in the config)");
    };
    let (station, profile) = make_station(r, profile_name, accept_calls)?;
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

/// Resolves once `stop` says so (or its sender is gone).
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Log lines of one TCP caller, prefixed with its address.
struct LineLog {
    prefix: String,
}

impl Observer for LineLog {
    fn note(&mut self, text: &str) {
        eprintln!("{} {}: {text}", radiosync::store::now_text(), self.prefix);
    }

    fn progress(&mut self, _: &[SessionView]) {}

    fn outcome(&mut self, _: &Outcome) {}
}

async fn run_async(cmd: RadioCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        RadioCommand::Run {
            link,
            every,
            check,
            tcp_listen,
            http,
            no_announce,
            beacon,
            broadcast,
        } => {
            let r = resolve(&link, every)?;
            let every = r.every;
            if broadcast && every.is_none() {
                bail!("--broadcast goes with --every: it sends before each round's calls");
            }
            let tcp_listen = tcp_listen.or(r.config.tcp_listen.clone());
            let http = http.or(r.config.http.clone());
            let radio = r.port.is_some() || r.kiss_tcp.is_some();
            if !radio && tcp_listen.is_none() && http.is_none() {
                bail!(
                    "no link: give --port DEVICE or --kiss-tcp HOST:PORT for a radio (with \
                     --profile), --tcp-listen HOST:PORT for IP, or both"
                );
            }
            if !radio && beacon.is_some() {
                bail!("--beacon announces on the radio: give --port or --kiss-tcp");
            }
            if !radio && broadcast {
                bail!("--broadcast sends on the radio: give --port or --kiss-tcp");
            }
            if beacon.is_some_and(|b| b < Duration::from_secs(10)) {
                eprintln!("radiosync: beacons go at most every 10 s: --beacon raised to 10s");
            }
            if !radio && every.is_some() && tcp_listen.is_none() {
                bail!(
                    "--every calls peers over the radio (give --port or --kiss-tcp), or over \
                     IP with --tcp-listen (peers found by mDNS)"
                );
            }
            if check {
                return check_run(&r, every, tcp_listen.as_deref(), http.as_deref());
            }
            // The config's callsign and peers, before any link answers.
            apply_config(&r)?;
            let (stop_tx, stop_rx) = watch::channel(false);
            let stop_tx = Rc::new(stop_tx);
            {
                let stop_tx = stop_tx.clone();
                tokio::task::spawn_local(async move {
                    ctrl_c().await;
                    let _ = stop_tx.send(true);
                });
            }
            let mut web = None;
            if let Some(addr) = &http {
                let service = Arc::new(
                    Service::open(&r.db).with_context(|| format!("opening {}", r.db.display()))?,
                );
                let listener = TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} for --http"))?;
                LineLog {
                    prefix: "http".into(),
                }
                .note(&format!(
                    "web services on http://{}{}",
                    listener.local_addr()?,
                    http::JSONRPC_PATH
                ));
                web = Some(tokio::spawn(http::serve(
                    listener,
                    service,
                    stopped(stop_rx.clone()),
                )));
            }
            let mut ip = None;
            let mut announcer = None;
            if let Some(addr) = &tcp_listen {
                let listener = TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} for --tcp-listen"))?;
                let card = Store::open(&r.db)
                    .with_context(|| format!("opening {}", r.db.display()))?
                    .card()?;
                let at = listener.local_addr()?;
                let mut log = LineLog {
                    prefix: "tcp".into(),
                };
                log.note(&format!(
                    "station {} answering peers over TCP on {at}",
                    card.name
                ));
                if !no_announce {
                    match discovery::announce(&card, at) {
                        Ok(a) => {
                            log.note(&format!(
                                "announced by mDNS as {} {}",
                                discovery::SERVICE_TYPE,
                                if at.ip().is_loopback() {
                                    "on this machine only (a loopback address)"
                                } else {
                                    "on the LAN"
                                }
                            ));
                            announcer = Some(a);
                        }
                        // Peers can still connect by address.
                        Err(e) => log.note(&format!("not announced on the LAN: {e}")),
                    }
                }
                ip = Some(tokio::task::spawn_local(tcp::listen(
                    listener,
                    r.db.clone(),
                    stop_rx.clone(),
                    |from| LineLog {
                        prefix: format!("tcp {from}"),
                    },
                )));
            }
            let radio_result = match (radio, every) {
                (true, _) => {
                    run_radio(&r, every, broadcast, beacon, stopped(stop_rx.clone())).await
                }
                (false, Some(every)) => {
                    tokio::select! {
                        _ = call_peers_over_ip(&r.db, every) => {}
                        _ = stopped(stop_rx.clone()) => {}
                    }
                    Ok(())
                }
                (false, None) => {
                    stopped(stop_rx.clone()).await;
                    Ok(())
                }
            };
            // The radio ended (Ctrl-C, or its link failed): stop the rest too.
            let _ = stop_tx.send(true);
            drop(announcer);
            if let Some(t) = ip {
                let _ = t.await;
            }
            if let Some(t) = web {
                t.await.context("the web services stopped")??;
            }
            radio_result?;
            Ok(ExitCode::SUCCESS)
        }
        RadioCommand::Broadcast {
            link,
            peer,
            timeout,
        } => {
            let r = resolve(&link, None)?;
            let mut s = setup(&r, false).await?;
            let peers = if peer.is_empty() {
                s.station
                    .store()
                    .peers()?
                    .into_iter()
                    .filter(|p| p.key.is_some())
                    .map(|p| p.name)
                    .collect()
            } else {
                for name in &peer {
                    require_peer(&s.station, name, &r.db)?;
                }
                peer
            };
            if peers.is_empty() {
                bail!("no peer registered with a key to broadcast to: see `radiosync peer list`");
            }
            let mut obs = Progress::new(&s.profile, false);
            obs.note(&format!(
                "broadcasting to {} over {}",
                peers.join(", "),
                on_air(&s)
            ));
            let opts = Options {
                mode: Mode::Broadcast {
                    peers: peers.clone(),
                },
                timeout,
                link_status: Some(s.link.status()),
                tick: obs.tick(),
            };
            let end = daemon::drive(&mut s.link, &mut s.station, opts, ctrl_c(), &mut obs).await?;
            obs.finish();
            report_broadcast(end, &peers, timeout)
        }
        RadioCommand::Sync {
            link,
            peer,
            timeout,
            budget,
            tcp,
        } => {
            let r = resolve(&link, None)?;
            let check_peer = |station: &Station| require_peer(station, &peer, &r.db);
            let radio = r.port.is_some() || r.kiss_tcp.is_some();
            let tcp = match tcp {
                Some(addr) => Some(addr),
                None if !radio => Some(find_by_mdns(&r, &peer)?),
                None => None,
            };
            let end = if let Some(addr) = tcp {
                let (mut station, profile) = make_station(&r, tcp::TCP_PROFILE, false)?;
                check_peer(&station)?;
                let mut obs = Progress::new(&profile, false);
                obs.note(&format!("syncing with {peer} over TCP {addr}"));
                let mut stream = tcp::connect(&addr).await.with_context(|| {
                    format!(
                        "cannot connect to {addr}: is `radiosync run --tcp-listen` running there?"
                    )
                })?;
                let opts = Options {
                    mode: Mode::Sync {
                        peer: peer.clone(),
                        budget,
                    },
                    timeout,
                    link_status: None,
                    tick: obs.tick(),
                };
                let end = daemon::drive(&mut stream, &mut station, opts, ctrl_c(), &mut obs).await;
                tcp::close(stream).await;
                obs.finish();
                match end {
                    Err(DaemonError::Closed) => bail!(
                        "{addr} closed the connection before the sync ended (see the log there)"
                    ),
                    other => other?,
                }
            } else {
                let mut s = setup(&r, false).await?;
                check_peer(&s.station)?;
                let mut obs = Progress::new(&s.profile, false);
                obs.note(&format!("syncing with {peer} over {}", on_air(&s)));
                let opts = Options {
                    mode: Mode::Sync {
                        peer: peer.clone(),
                        budget,
                    },
                    timeout,
                    link_status: Some(s.link.status()),
                    tick: obs.tick(),
                };
                let end =
                    daemon::drive(&mut s.link, &mut s.station, opts, ctrl_c(), &mut obs).await?;
                obs.finish();
                end
            };
            report_sync(end, &peer, timeout, budget)
        }
    }
}

/// `run --every` without a radio: each round, every registered peer with a key
/// that answers by mDNS is synced over TCP. Runs until dropped.
async fn call_peers_over_ip(db: &std::path::Path, every: Duration) {
    let mut log = LineLog {
        prefix: "ip round".into(),
    };
    loop {
        let next = Instant::now() + every;
        match ip_round(db).await {
            Ok(()) => {}
            Err(e) => log.note(&format!("round failed: {e:#}")),
        }
        tokio::time::sleep_until(next.into()).await;
    }
}

async fn ip_round(db: &std::path::Path) -> anyhow::Result<()> {
    let peers = Store::open(db)?.peers()?;
    for p in peers {
        let Some(key) = p.key.as_ref().map(|k| k.short()) else {
            continue;
        };
        let id = p.id;
        let found = tokio::task::spawn_blocking(move || {
            discovery::find(id, Some(&key), Duration::from_secs(2))
        })
        .await??;
        let Some(addr) =
            found.and_then(|f| f.addrs.into_iter().find(|a| discovery::usable(a.ip())))
        else {
            continue;
        };
        let mut obs = LineLog {
            prefix: format!("sync {} {addr}", p.name),
        };
        let mut station = Station::new(Store::open(db)?, tcp::profile(), false)?;
        let mut stream = match tcp::connect(&addr.to_string()).await {
            Ok(s) => s,
            Err(e) => {
                obs.note(&format!("cannot connect: {e}"));
                continue;
            }
        };
        let opts = Options {
            mode: Mode::Sync {
                peer: p.name.clone(),
                budget: None,
            },
            timeout: Some(Duration::from_secs(600)),
            link_status: None,
            tick: Duration::from_secs(30),
        };
        let end = daemon::drive(
            &mut stream,
            &mut station,
            opts,
            std::future::pending::<()>(),
            &mut obs,
        )
        .await;
        tcp::close(stream).await;
        match end {
            Ok(End::Synced { complete, .. }) => obs.note(if complete {
                "round done: both sides have everything"
            } else {
                "round done: rows remain for the next round"
            }),
            Ok(_) => obs.note("round stopped"),
            Err(e) => obs.note(&format!("failed: {e}")),
        }
    }
    Ok(())
}

/// `sync --peer NAME` with no link: where the registered peer listens, by mDNS.
fn find_by_mdns(r: &Resolved, peer: &str) -> anyhow::Result<String> {
    let store = Store::open(&r.db).with_context(|| format!("opening {}", r.db.display()))?;
    let Some(info) = store.peer_by_name(peer)? else {
        bail!(
            "no peer named {peer:?} in {}: see `radiosync peer list`",
            r.db.display()
        );
    };
    let wait = Duration::from_secs(5);
    eprintln!(
        "{} no link given: looking for {peer} ({}) on the LAN by mDNS",
        radiosync::store::now_text(),
        info.id
    );
    let Some(key) = info.key.as_ref().map(|k| k.short()) else {
        bail!(
            "{peer} is registered without a key (--no-auth): anyone on the LAN could answer \
             an mDNS lookup for it; give --tcp HOST:PORT"
        );
    };
    let key = Some(key);
    let Some(found) = discovery::find(info.id, key.as_deref(), wait)? else {
        bail!(
            "{peer} did not answer on the LAN within {} s (is `radiosync run --tcp-listen` \
             running there, on this network?); give --tcp HOST:PORT, or --port/--kiss-tcp \
             and --profile for the radio",
            wait.as_secs()
        );
    };
    let Some(addr) = found.addrs.iter().find(|a| discovery::usable(a.ip())) else {
        bail!("{peer} announced no address this station can use");
    };
    Ok(addr.to_string())
}

/// `run --check`: what would run, without opening any link.
fn check_run(
    r: &Resolved,
    every: Option<Duration>,
    tcp_listen: Option<&str>,
    http: Option<&str>,
) -> anyhow::Result<ExitCode> {
    apply_config(r)?;
    let store = Store::open(&r.db).with_context(|| format!("opening {}", r.db.display()))?;
    let st = store.station();
    let mut links = Vec::new();
    if let Some(name) = &r.profile {
        let profile = Profile::load(name)?;
        if profile.amateur && st.callsign.is_none() {
            bail!("profile {} is for amateur bands: set `callsign` in the config or run `radiosync init --callsign`", profile.name);
        }
        links.push(format!(
            "{} with profile {} ({} bit/s)",
            match (&r.port, &r.kiss_tcp) {
                (Some(p), _) => p.display().to_string(),
                (None, Some(a)) => format!("KISS TCP {a}"),
                (None, None) => bail!("no link: set `port` or `kiss_tcp`"),
            },
            profile.name,
            profile.bitrate,
        ));
    }
    if let Some(a) = tcp_listen {
        links.push(format!("TCP {a}"));
    }
    if let Some(a) = http {
        links.push(format!("web services on {a}"));
    }
    println!(
        "would run station {} ({}) on {}{}; {} peer(s)",
        st.name,
        st.id,
        links.join(" and "),
        every.map_or(String::new(), |d| format!(
            ", calling peers every {}",
            human(d)
        )),
        store.peers()?.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// The radio half of `run`, until `stop`.
async fn run_radio(
    r: &Resolved,
    every: Option<Duration>,
    broadcast: bool,
    beacon: Option<Duration>,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let mut s = setup(r, true).await?;
    // The first beacon a few seconds in: the link is up, the TNC set.
    s.station
        .set_beacon(beacon, Instant::now() + Duration::from_secs(2));
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
        mode: Mode::Run { every, broadcast },
        timeout: None,
        link_status: Some(s.link.status()),
        tick: obs.tick(),
    };
    daemon::drive(&mut s.link, &mut s.station, opts, stop, &mut obs).await?;
    obs.finish();
    Ok(())
}

/// What `sync` prints and its exit code.
fn report_sync(
    end: End,
    peer: &str,
    timeout: Option<Duration>,
    budget: Option<Duration>,
) -> anyhow::Result<ExitCode> {
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
            let left: u64 = outcomes.iter().map(|o| o.left_for_budget).sum();
            if complete {
                Ok(ExitCode::SUCCESS)
            } else if left > 0 {
                eprintln!(
                    "radiosync: the budget of {} is spent: the highest priority classes went \
                     first; {left} row(s) of the class it reached, and any lower classes, wait \
                     for the next sync",
                    human(budget.unwrap_or_default())
                );
                Ok(ExitCode::from(crate::cli::EXIT_UNFINISHED))
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

/// `name` is a registered peer of the station, or the operator is told how to see them.
fn require_peer(station: &Station, name: &str, db: &std::path::Path) -> anyhow::Result<()> {
    if station.store().peer_by_name(name)?.is_none() {
        bail!(
            "no peer named {name:?} in {}: see `radiosync peer list`",
            db.display()
        );
    }
    Ok(())
}

/// The link and its profile, for the first line of a radio command.
fn on_air(s: &Setup) -> String {
    format!(
        "{} ({}, {} bit/s on air)",
        s.link.spec(),
        s.profile.name,
        s.profile.bitrate
    )
}

/// What `broadcast` prints and its exit code: a line per peer; 0 when every
/// peer ended up to date and verified.
fn report_broadcast(
    end: End,
    peers: &[String],
    timeout: Option<Duration>,
) -> anyhow::Result<ExitCode> {
    let (outcomes, complete) = match end {
        End::Synced { outcomes, complete } => (outcomes, complete),
        End::TimedOut => {
            eprintln!(
                "radiosync: broadcast to {} failed: not done within {:?}",
                peers.join(", "),
                timeout.unwrap_or_default()
            );
            return Ok(ExitCode::from(crate::cli::EXIT_TIMEOUT));
        }
        End::Shutdown => {
            eprintln!("radiosync: broadcast stopped by the operator");
            return Ok(ExitCode::from(crate::cli::EXIT_STOPPED));
        }
    };
    let mut worst = None;
    for name in peers {
        let last = outcomes
            .iter()
            .rev()
            .find(|o| o.peer.as_deref() == Some(name.as_str()));
        let Some(o) = last else {
            println!("{name}: no session");
            continue;
        };
        match &o.result {
            Ok(s) => println!(
                "{name}: {} bundle bytes sent after the broadcast, {} received; {}",
                s.bundle_bytes_sent,
                s.bundle_bytes_received,
                match s.verified() {
                    Some(true) => "verified",
                    Some(false) => "NOT verified: the contents differ",
                    None => "not verified",
                }
            ),
            Err(e) => {
                println!("{name}: failed: {}", explain(e, o));
                worst.get_or_insert(exit_code(e));
            }
        }
    }
    let air: Duration = outcomes.iter().map(|o| o.stats.airtime).sum();
    println!(
        "airtime of the sessions after the broadcast: {:.1} s",
        air.as_secs_f64()
    );
    match worst {
        Some(code) => Ok(ExitCode::from(code)),
        None if complete => Ok(ExitCode::SUCCESS),
        None => Ok(ExitCode::from(crate::cli::EXIT_UNFINISHED)),
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
