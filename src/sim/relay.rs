//! The channel simulator in-process: two byte streams (one per station, e.g. the relay ends
//! of `tokio::io::duplex` pairs) joined through `sim::Channel` on the wall clock,
//! as `tools/chansim` joins two pseudo-terminals. Kiss mode deframes each station's KISS
//! stream into frames for the channel and KISS-encodes what it delivers.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Channel, ChannelStats, HostPorts, Side};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

/// What the relay shares while it runs: the channel's counters and its clock.
#[derive(Clone)]
pub struct RelayView {
    stats: Arc<Mutex<ChannelStats>>,
    start: Instant,
}

impl RelayView {
    /// The channel's counters so far.
    pub fn stats(&self) -> ChannelStats {
        self.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Keyed time of both stations so far.
    pub fn airtime(&self) -> Duration {
        let s = self.stats();
        Duration::from_secs_f64(s.a_to_b.airtime_s + s.b_to_a.airtime_s)
    }

    /// Wall-clock time since the relay started.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
}

/// Starts the relay; it runs until `stop` is set to true or a station closes its stream.
pub fn spawn<S>(
    chan: Channel,
    a: S,
    b: S,
    stop: watch::Receiver<bool>,
) -> (
    RelayView,
    tokio::task::JoinHandle<std::io::Result<ChannelStats>>,
)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let view = RelayView {
        stats: Arc::new(Mutex::new(chan.stats().clone())),
        start: Instant::now(),
    };
    let task = tokio::spawn(run(chan, a, b, stop, view.clone()));
    (view, task)
}

async fn run<S>(
    mut chan: Channel,
    mut a: S,
    mut b: S,
    mut stop: watch::Receiver<bool>,
    view: RelayView,
) -> std::io::Result<ChannelStats>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut ports = HostPorts::new(chan.config().mode);
    let (mut buf_a, mut buf_b) = (vec![0u8; 4096], vec![0u8; 4096]);
    loop {
        let now = view.start.elapsed();
        chan.handle_timeout(now);
        while let Some(d) = chan.poll_delivery(now) {
            let bytes = ports.to_host(d.data);
            match d.to {
                Side::A => a.write_all(&bytes).await?,
                Side::B => b.write_all(&bytes).await?,
            }
        }
        if let Ok(mut s) = view.stats.lock() {
            *s = chan.stats().clone();
        }
        let wake = chan
            .poll_timeout()
            .map(|t| view.start + t)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        let (side, data) = tokio::select! {
            r = a.read(&mut buf_a) => match r? {
                0 => break,
                n => (Side::A, &buf_a[..n]),
            },
            r = b.read(&mut buf_b) => match r? {
                0 => break,
                n => (Side::B, &buf_b[..n]),
            },
            _ = tokio::time::sleep_until(wake.into()) => continue,
            _ = stop.changed() => break,
        };
        let now = view.start.elapsed();
        for on_air in ports.from_host(side, data) {
            chan.send(now, side, &on_air);
        }
    }
    Ok(chan.stats().clone())
}
