//! chansim: joins two pseudo-terminals like a half-duplex radio channel, or any
//! number of them (`--link`, repeatable) like a shared simplex net.
//!
//! The channel itself (timing, errors, loss, collisions) is `radiosync::transport::sim`; this
//! binary only moves bytes between the ptys and that model on the wall clock.
//! See docs/chansim.md.

mod kiss;
mod pty;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use radiosync::sim::net::{NetChannel, NetConfig};
use radiosync::sim::{Burst, Channel, ChannelConfig, ChannelStats, Mode, Outage, Side};
use serde::Serialize;
use tokio::signal::unix::{signal, SignalKind};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ModeArg {
    Transparent,
    Kiss,
}

#[derive(Parser, Debug)]
#[command(
    name = "chansim",
    about = "Half-duplex radio channel simulator joining two pseudo-terminals",
    after_help = "SIGUSR1 toggles the link down/up. SIGINT/SIGTERM write the stats and remove the links."
)]
struct Args {
    /// Symlink to create for station A's serial port.
    #[arg(long)]
    link_a: PathBuf,
    /// Symlink to create for station B's serial port.
    #[arg(long)]
    link_b: PathBuf,
    /// More stations on the same channel (a net): symlink for each one's serial port;
    /// repeatable. With any, chansim runs the shared-channel model (`sim::net`):
    /// every transmission reaches every other station, overlapping ones collide.
    #[arg(long = "link")]
    links: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "transparent")]
    mode: ModeArg,
    /// Air bitrate, bit/s.
    #[arg(long, default_value_t = 1200)]
    bitrate: u32,
    /// Key-up delay paid once per transmission, ms.
    #[arg(long, default_value_t = 300)]
    txdelay_ms: u64,
    /// KISS mode: flags sent after the last frame, ms.
    #[arg(long, default_value_t = 0)]
    txtail_ms: u64,
    /// Transparent mode: a transmission ends when the sender has written nothing for this
    /// long after its last byte went out, ms.
    #[arg(long, default_value_t = 10)]
    gap_ms: u64,
    /// Independent bit error rate.
    #[arg(long, default_value_t = 0.0)]
    ber: f64,
    /// Burst errors: probability per bit of entering the bad state (0 = no bursts).
    #[arg(long, default_value_t = 0.0)]
    burst_prob: f64,
    /// Burst errors: mean length of a bad spell, bits.
    #[arg(long, default_value_t = 200.0)]
    burst_len: f64,
    /// Burst errors: bit error rate in the bad state.
    #[arg(long, default_value_t = 0.5)]
    burst_ber: f64,
    /// KISS mode: probability that a frame is lost whole.
    #[arg(long, default_value_t = 0.0)]
    frame_loss: f64,
    /// KISS mode: p-persistence (transmit when a random byte <= PERSIST).
    #[arg(long, default_value_t = 63)]
    persist: u8,
    /// KISS mode: slot time, ms.
    #[arg(long, default_value_t = 100)]
    slottime_ms: u64,
    /// KISS mode: largest data frame a TNC accepts, bytes.
    #[arg(long, default_value_t = 2123)]
    max_frame: usize,
    /// KISS mode: smallest data frame a TNC accepts, bytes (Dire Wolf: 15).
    #[arg(long, default_value_t = 1)]
    min_frame: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Write statistics as JSON to this file (rewritten periodically and on exit).
    #[arg(long)]
    stats: Option<PathBuf>,
    #[arg(long, default_value_t = 1000)]
    stats_interval_ms: u64,
    /// Link cut START_S:DURATION_S seconds after start; repeatable.
    #[arg(long, value_parser = parse_outage)]
    outage: Vec<Outage>,
    /// Print no progress lines.
    #[arg(long)]
    quiet: bool,
}

fn parse_outage(s: &str) -> Result<Outage, String> {
    let (a, b) = s
        .split_once(':')
        .ok_or_else(|| format!("outage {s:?}: expected START_S:DURATION_S"))?;
    let secs = |x: &str| -> Result<Duration, String> {
        let v: f64 = x
            .parse()
            .map_err(|_| format!("outage {s:?}: {x:?} is not a number of seconds"))?;
        Duration::try_from_secs_f64(v).map_err(|_| format!("outage {s:?}: {x:?} out of range"))
    };
    Ok(Outage {
        start: secs(a)?,
        duration: secs(b)?,
    })
}

/// What the host side did that never reached the air, per station.
#[derive(Debug, Default, Serialize)]
struct HostStats {
    /// KISS frames refused (too short, too long, bad escape).
    frames_rejected: u64,
    /// KISS non-data commands (TXDELAY, PERSIST, ...): accepted and ignored.
    kiss_commands_ignored: u64,
    /// Bytes for this station dropped because it was not reading its port.
    bytes_dropped_host_busy: u64,
}

#[derive(Serialize)]
struct Totals {
    airtime_s: f64,
    transmissions: u64,
    bytes_sent: u64,
    bytes_delivered: u64,
    bits_flipped: u64,
    frames_sent: u64,
    frames_delivered: u64,
    frames_dropped: u64,
    collisions: u64,
}

#[derive(Serialize)]
struct StatsFile<'a> {
    elapsed_s: f64,
    link_up: bool,
    config: &'a ChannelConfig,
    a_to_b: &'a radiosync::sim::DirStats,
    b_to_a: &'a radiosync::sim::DirStats,
    totals: Totals,
    host_a: &'a HostStats,
    host_b: &'a HostStats,
}

fn totals(s: &ChannelStats) -> Totals {
    let d = [&s.a_to_b, &s.b_to_a];
    let sum = |f: fn(&radiosync::sim::DirStats) -> u64| d.iter().map(|x| f(x)).sum();
    Totals {
        airtime_s: d.iter().map(|x| x.airtime_s).sum(),
        transmissions: sum(|x| x.transmissions),
        bytes_sent: sum(|x| x.bytes_sent),
        bytes_delivered: sum(|x| x.bytes_delivered),
        bits_flipped: sum(|x| x.bits_flipped),
        frames_sent: sum(|x| x.frames_sent),
        frames_delivered: sum(|x| x.frames_delivered),
        frames_dropped: sum(|x| {
            x.frames_lost_random
                + x.frames_lost_bit_errors
                + x.frames_lost_collision
                + x.frames_lost_outage
        }),
        collisions: sum(|x| x.collisions),
    }
}

struct Sim {
    chan: Channel,
    start: Instant,
    link_up: bool,
    host: [HostStats; 2],
    stats_path: Option<PathBuf>,
}

impl Sim {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    fn write_stats(&self) -> anyhow::Result<()> {
        let Some(path) = &self.stats_path else {
            return Ok(());
        };
        let s = self.chan.stats();
        let file = StatsFile {
            elapsed_s: self.now().as_secs_f64(),
            link_up: self.link_up && self.chan.link_up_at(self.now()),
            config: self.chan.config(),
            a_to_b: &s.a_to_b,
            b_to_a: &s.b_to_a,
            totals: totals(s),
            host_a: &self.host[0],
            host_b: &self.host[1],
        };
        let json = serde_json::to_vec_pretty(&file)?;
        // Write then rename, so a reader never sees half a file.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, json).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.min_frame > args.max_frame {
        bail!(
            "--min-frame {} is above --max-frame {}",
            args.min_frame,
            args.max_frame
        );
    }
    let cfg = ChannelConfig {
        mode: match args.mode {
            ModeArg::Transparent => Mode::Transparent,
            ModeArg::Kiss => Mode::Kiss,
        },
        bitrate: args.bitrate,
        txdelay: Duration::from_millis(args.txdelay_ms),
        txtail: Duration::from_millis(args.txtail_ms),
        hang: Duration::from_millis(args.gap_ms),
        ber: args.ber,
        burst: (args.burst_prob > 0.0).then_some(Burst {
            enter_prob: args.burst_prob,
            mean_len_bits: args.burst_len,
            ber: args.burst_ber,
        }),
        frame_loss: args.frame_loss,
        persist: args.persist,
        slottime: Duration::from_millis(args.slottime_ms),
        seed: args.seed,
        outages: args.outage.clone(),
        ..Default::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    if !args.links.is_empty() {
        if args.burst_prob > 0.0 || !args.outage.is_empty() || args.txtail_ms > 0 {
            bail!(
                "--burst-prob, --outage and --txtail-ms are not modelled with more than two links"
            );
        }
        let net = NetConfig {
            mode: cfg.mode,
            bitrate: cfg.bitrate,
            txdelay: cfg.txdelay,
            ber: cfg.ber,
            frame_loss: cfg.frame_loss,
            persist: cfg.persist,
            slottime: cfg.slottime,
            seed: cfg.seed,
        };
        return rt.block_on(run_net(args, net));
    }
    let chan = Channel::new(cfg).context("channel settings")?;
    rt.block_on(run(args, chan))
}

#[derive(Serialize)]
struct NetStatsFile<'a> {
    elapsed_s: f64,
    links: Vec<String>,
    transmissions: &'a [u64],
    airtime_s: Vec<f64>,
    collisions: u64,
    lost: u64,
    host: &'a [HostStats],
}

/// Any number of stations on one channel (`--link`): each pty's bytes are one
/// transmission once its writer pauses for `--gap-ms` (a TNC keys up for the
/// frames queued together; a transparent radio for a burst of bytes).
async fn run_net(args: Args, cfg: NetConfig) -> anyhow::Result<()> {
    let paths: Vec<PathBuf> = [args.link_a.clone(), args.link_b.clone()]
        .into_iter()
        .chain(args.links.iter().cloned())
        .collect();
    let mut ends = Vec::new();
    for p in &paths {
        ends.push(std::sync::Arc::new(pty::PtyEnd::create(p)?));
    }
    if !args.quiet {
        for (p, e) in paths.iter().zip(&ends) {
            eprintln!("chansim: {} -> {}", p.display(), e.slave_path.display());
        }
    }
    let n = ends.len();
    let mut chan = NetChannel::new(cfg, n);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(usize, Vec<u8>)>(256);
    for (i, end) in ends.iter().enumerate() {
        let (end, tx) = (end.clone(), tx.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 8192];
            loop {
                let Ok(mut g) = end.master.readable().await else {
                    return;
                };
                match g.try_io(|fd| pty::read_master(fd.get_ref(), &mut buf)) {
                    Ok(Ok(n)) if n > 0 => {
                        if tx.send((i, buf[..n].to_vec())).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                    Err(_would_block) => {}
                }
            }
        });
    }
    drop(tx);
    let start = Instant::now();
    let gap = Duration::from_millis(args.gap_ms.max(1));
    let mut pending: Vec<(Vec<u8>, Option<Duration>)> = vec![(Vec::new(), None); n];
    let mut host: Vec<HostStats> = (0..n).map(|_| HostStats::default()).collect();
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut tick = tokio::time::interval(Duration::from_millis(args.stats_interval_ms.max(10)));
    let write_stats = |chan: &NetChannel, host: &[HostStats]| -> anyhow::Result<()> {
        let Some(path) = &args.stats else {
            return Ok(());
        };
        let file = NetStatsFile {
            elapsed_s: start.elapsed().as_secs_f64(),
            links: paths.iter().map(|p| p.display().to_string()).collect(),
            transmissions: &chan.stats.transmissions,
            airtime_s: chan.stats.airtime.iter().map(|d| d.as_secs_f64()).collect(),
            collisions: chan.stats.collisions,
            lost: chan.stats.lost,
            host,
        };
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&file)?)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    };
    write_stats(&chan, &host)?;
    loop {
        let now = start.elapsed();
        // A writer that paused: what it wrote is one transmission.
        for (i, (buf, last)) in pending.iter_mut().enumerate() {
            if last.is_some_and(|t| now >= t + gap) && !buf.is_empty() {
                chan.write(now, i, buf);
                buf.clear();
                *last = None;
            }
        }
        chan.start(now);
        for (j, bytes) in chan.deliver(now) {
            host[j].bytes_dropped_host_busy += ends[j].write_to_host(&bytes) as u64;
        }
        chan.start(now);
        let flush = pending.iter().filter_map(|(_, t)| t.map(|t| t + gap));
        let wake = chan
            .next_event()
            .into_iter()
            .chain(flush)
            .map(|t| start + t.max(now))
            .min()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            got = rx.recv() => match got {
                Some((i, bytes)) => {
                    pending[i].0.extend_from_slice(&bytes);
                    pending[i].1 = Some(start.elapsed());
                }
                None => break,
            },
            _ = tokio::time::sleep_until(wake.into()) => {}
            _ = tick.tick() => write_stats(&chan, &host)?,
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    write_stats(&chan, &host)?;
    if !args.quiet {
        let air: f64 = chan.stats.airtime.iter().map(|d| d.as_secs_f64()).sum();
        eprintln!(
            "chansim: {n} stations, {air:.1} s airtime in {} transmissions, {} collisions, {} frames lost",
            chan.stats.transmissions.iter().sum::<u64>(),
            chan.stats.collisions,
            chan.stats.lost
        );
    }
    Ok(())
}

async fn run(args: Args, chan: Channel) -> anyhow::Result<()> {
    let ends = [
        pty::PtyEnd::create(&args.link_a)?,
        pty::PtyEnd::create(&args.link_b)?,
    ];
    if !args.quiet {
        eprintln!(
            "chansim: A {} -> {}, B {} -> {}",
            args.link_a.display(),
            ends[0].slave_path.display(),
            args.link_b.display(),
            ends[1].slave_path.display()
        );
    }
    let mode = chan.config().mode;
    let mut sim = Sim {
        chan,
        start: Instant::now(),
        link_up: true,
        host: Default::default(),
        stats_path: args.stats.clone(),
    };
    sim.write_stats()?;
    let mut deframers = [
        kiss::Deframer::new(args.max_frame),
        kiss::Deframer::new(args.max_frame),
    ];
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut tick = tokio::time::interval(Duration::from_millis(args.stats_interval_ms.max(10)));
    let mut buf = vec![0u8; 8192];
    let mut items = Vec::new();

    loop {
        // Hand the hosts whatever has arrived by now.
        let now = sim.now();
        while let Some(d) = sim.chan.poll_delivery(now) {
            let bytes = match mode {
                Mode::Transparent => d.data,
                Mode::Kiss => kiss::encode(&d.data),
            };
            let i = if d.to == Side::A { 0 } else { 1 };
            sim.host[i].bytes_dropped_host_busy += ends[i].write_to_host(&bytes) as u64;
        }
        let wake = sim
            .chan
            .poll_timeout()
            .map(|t| sim.start + t)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));

        let (side, n) = tokio::select! {
            r = ends[0].master.readable() => {
                let mut g = r?;
                match g.try_io(|fd| pty::read_master(fd.get_ref(), &mut buf)) {
                    Ok(n) => (Side::A, n?),
                    Err(_would_block) => continue,
                }
            }
            r = ends[1].master.readable() => {
                let mut g = r?;
                match g.try_io(|fd| pty::read_master(fd.get_ref(), &mut buf)) {
                    Ok(n) => (Side::B, n?),
                    Err(_would_block) => continue,
                }
            }
            _ = tokio::time::sleep_until(wake.into()) => continue,
            _ = usr1.recv() => {
                sim.link_up = !sim.link_up;
                let now = sim.now();
                sim.chan.set_link_up(now, sim.link_up);
                if !args.quiet {
                    eprintln!("chansim: link {} at {:.3} s", if sim.link_up { "up" } else { "down" }, now.as_secs_f64());
                }
                sim.write_stats()?;
                continue;
            }
            _ = tick.tick() => { sim.write_stats()?; continue; }
            _ = term.recv() => break,
            _ = int.recv() => break,
        };
        let now = sim.now();
        let data = &buf[..n];
        match mode {
            Mode::Transparent => sim.chan.send(now, side, data),
            Mode::Kiss => {
                let i = if side == Side::A { 0 } else { 1 };
                deframers[i].push(data, &mut items);
                for item in items.drain(..) {
                    match item {
                        kiss::Item::Frame { command, data } if command & 0x0F == 0 => {
                            if data.len() < args.min_frame || data.len() > args.max_frame {
                                sim.host[i].frames_rejected += 1;
                            } else {
                                sim.chan.send(now, side, &data);
                            }
                        }
                        kiss::Item::Frame { .. } => sim.host[i].kiss_commands_ignored += 1,
                        kiss::Item::Rejected => sim.host[i].frames_rejected += 1,
                    }
                }
            }
        }
    }
    sim.write_stats()?;
    if !args.quiet {
        let t = totals(sim.chan.stats());
        eprintln!(
            "chansim: {:.1} s airtime in {} transmissions, {} bits flipped, {} frames dropped, {} collisions",
            t.airtime_s, t.transmissions, t.bits_flipped, t.frames_dropped, t.collisions
        );
    }
    drop(ends);
    Ok(())
}
