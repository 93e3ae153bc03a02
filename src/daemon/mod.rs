//! The shell around the pure engine: store work, the station that routes
//! sessions over one link, the virtual-time harness, and the tokio loop.
//!
//! The loop is thin (quinn's `ConnectionDriver` style): `Driver::step`, write
//! every pending transmission to the port at once, then wait for bytes from
//! the port, the driver's next deadline, or shutdown. The sessions live in
//! `Station`, the policy (rounds, calling again, time limit, budget, cancel
//! grace) in `Driver`, both pure and driven by the tests on virtual time.

pub mod driver;
pub mod station;
pub mod store_work;
pub mod tcp;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::frame::framer::kiss_setup;
use crate::profile::{self, Framing, Profile};
use crate::transport::{DataBits, FlowControl, LinkStatus, Parity, SerialSettings, StopBits};

pub use driver::{Driver, Timer, CANCEL_GRACE};
pub use station::{LinkLoss, Outcome, SessionView, Station, StationError};

/// Host-side serial settings from a profile (9600 8N1 when it names none).
pub fn serial_settings(p: &Profile) -> SerialSettings {
    let Some(s) = p.serial else {
        return SerialSettings::default();
    };
    SerialSettings {
        baud: s.baud,
        data_bits: match s.data_bits {
            5 => DataBits::Five,
            6 => DataBits::Six,
            7 => DataBits::Seven,
            _ => DataBits::Eight,
        },
        parity: match s.parity {
            profile::Parity::None => Parity::None,
            profile::Parity::Even => Parity::Even,
            profile::Parity::Odd => Parity::Odd,
        },
        stop_bits: if s.stop_bits == 2 {
            StopBits::Two
        } else {
            StopBits::One
        },
        flow_control: match s.flow_control {
            profile::FlowControl::None => FlowControl::None,
            profile::FlowControl::Software => FlowControl::Software,
            profile::FlowControl::Hardware => FlowControl::Hardware,
        },
    }
}

/// What the loop does.
#[derive(Debug, Clone)]
pub enum Mode {
    /// `radiosync sync`: call `peer` once; return its outcome.
    Sync {
        /// Name of the registered peer to call.
        peer: String,
        /// `--budget`: what this station sends must be on air within this
        /// long of the start, highest priority classes first; no further
        /// session once the budget has left rows behind.
        budget: Option<Duration>,
    },
    /// `radiosync broadcast`: one broadcast of what `peers` lack to all of
    /// them (`Station::start_cast`), then a sync with each in turn, which
    /// resumes only what that station missed of it. Returns every outcome.
    Broadcast {
        /// Names of the registered peers.
        peers: Vec<String>,
    },
    /// `radiosync run`: answer calls; with `every`, call each registered peer
    /// on that schedule. Runs until shutdown.
    Run {
        /// Time between rounds of calls; `None`: only answer.
        every: Option<Duration>,
        /// `run --broadcast`: each round, what two or more peers lack goes
        /// out once as a broadcast before the calls (`Station::start_cast`).
        broadcast: bool,
    },
}

/// How the loop ended.
#[derive(Debug)]
pub enum End {
    /// `Sync`: the outcomes of its sessions (more than one when a first
    /// session left rows to be sent in full; see `MAX_ROUNDS`), the last one
    /// deciding. `complete`: neither side lacks anything afterwards.
    Synced {
        /// One per session, in order.
        outcomes: Vec<Outcome>,
        /// Neither side lacks anything after the last session.
        complete: bool,
    },
    /// Shutdown was asked (Ctrl-C); sessions were cancelled.
    Shutdown,
    /// `Sync`: the time limit passed; the session was cancelled.
    TimedOut,
}

/// Why the loop stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// Reading or writing the port failed.
    #[error("port I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The port reached end of stream (not on a reconnecting link).
    #[error("the link closed (end of stream): the modem or TNC went away")]
    Closed,
    /// The station failed (a call could not start, store work failed).
    #[error(transparent)]
    Station(#[from] StationError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// What the operator sees; the CLI prints it as a bar or as log lines.
pub trait Observer {
    /// A line for the log (session start, link lost, calling again, ...).
    fn note(&mut self, text: &str);
    /// Called at most every `tick` while sessions run.
    fn progress(&mut self, sessions: &[SessionView]);
    /// A session ended.
    fn outcome(&mut self, outcome: &Outcome);
}

/// Options of the loop.
pub struct Options {
    /// Call once or answer calls.
    pub mode: Mode,
    /// `Sync`: give up after this long.
    pub timeout: Option<Duration>,
    /// A reconnecting link's status: on a reopen, the deframer is reset and
    /// the KISS parameters are sent again.
    pub link_status: Option<Arc<LinkStatus>>,
    /// How often `Observer::progress` is called.
    pub tick: Duration,
}

/// Sessions one `sync` runs at most: a row whose delta could not apply is
/// asked for in full and travels in the next session.
pub const MAX_ROUNDS: usize = 3;

/// Times one `sync` calls again after losing a link it had heard the peer on.
pub const MAX_RESUMES: usize = 3;

async fn write_tx<L: AsyncWrite + Unpin>(link: &mut L, bytes: &[u8]) -> std::io::Result<()> {
    // One write_all per transmission: a TNC sends frames queued together in one key-up.
    link.write_all(bytes).await?;
    link.flush().await
}

async fn send_kiss_setup<L: AsyncWrite + Unpin>(
    link: &mut L,
    profile: &Profile,
) -> std::io::Result<()> {
    if profile.framing != Framing::Kiss {
        return Ok(());
    }
    let all: Vec<u8> = kiss_setup(profile).concat();
    write_tx(link, &all).await
}

/// Drives `station` over `link` until the mode's end or `shutdown` resolves.
pub async fn drive<L, S>(
    link: &mut L,
    station: &mut Station,
    opts: Options,
    shutdown: S,
    obs: &mut dyn Observer,
) -> Result<End, DaemonError>
where
    L: AsyncRead + AsyncWrite + Unpin,
    S: Future<Output = ()>,
{
    let profile = station.profile().clone();
    send_kiss_setup(link, &profile).await?;
    let mut opens = opts.link_status.as_ref().map_or(0, |s| s.opens());
    let mut driver = Driver::start(opts.mode, opts.timeout, opts.tick, Instant::now(), station)?;
    let mut buf = vec![0u8; 4096];
    tokio::pin!(shutdown);
    let mut shutdown_seen = false;
    loop {
        let now = Instant::now();
        if let Some(st) = &opts.link_status {
            if st.opens() != opens {
                opens = st.opens();
                station.link_reset(now);
                send_kiss_setup(link, &profile).await?;
            }
        }
        let end = driver.step(now, station, obs)?;
        // Sending can end a session (on TCP, the ack of the peer's Done): step
        // again at once after writing, and never leave written work behind.
        let mut wrote = false;
        while let Some(tx) = station.poll_transmit(now) {
            write_tx(link, &tx).await?;
            wrote = true;
        }
        if let Some(end) = end {
            return Ok(end);
        }
        if wrote {
            continue;
        }
        let wake = driver
            .poll_timeout(station)
            .unwrap_or(now + Duration::from_secs(3600));
        tokio::select! {
            // Bytes waiting beat a timer that came due meanwhile (a stalled
            // process must not time out on an answer it has not read yet);
            // a shutdown beats both, so a flood of bytes cannot starve it.
            biased;
            _ = &mut shutdown, if !shutdown_seen => {
                shutdown_seen = true;
                driver.shutdown(Instant::now(), station, obs);
            }
            r = link.read(&mut buf) => match r {
                Ok(0) => return Err(DaemonError::Closed),
                Ok(n) => {
                    // Bytes from a reopened link: drop what the old one left half-done first.
                    if let Some(st) = &opts.link_status {
                        if st.opens() != opens {
                            opens = st.opens();
                            station.link_reset(Instant::now());
                            send_kiss_setup(link, &profile).await?;
                        }
                    }
                    station.handle_bytes(Instant::now(), &buf[..n]);
                }
                Err(e) => return Err(e.into()),
            },
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
    }
}
