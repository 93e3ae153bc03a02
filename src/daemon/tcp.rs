//! Sync over IP: the same stations, sessions and authentication as on the
//! radio, on TCP connections with the built-in `tcp` profile (no FEC, no
//! pacing). One connection carries one caller; the listener gives each its
//! own `Station` on its own store connection, so a radio and several TCP
//! peers can be served at once (SQLite serialises their writes).

use std::cell::Cell;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use super::{drive, DaemonError, Mode, Observer, Options, Station};
use crate::profile::Profile;
use crate::store::Store;

/// The built-in profile of IP links.
pub const TCP_PROFILE: &str = "tcp";

/// A connection that carries nothing for this long is closed: a caller that
/// went away without closing must not hold a store connection for ever.
pub const IDLE_LIMIT: Duration = Duration::from_secs(120);

/// Connections served at once; more are closed on accept.
pub const MAX_CONNECTIONS: usize = 8;

/// Connections from one address at once: a station needs one; a few idle
/// connections from one host cannot lock every peer out.
pub const MAX_PER_ADDRESS: usize = 2;

/// How long `sync --tcp` waits for the connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// The `tcp` profile.
pub fn profile() -> Profile {
    Profile::load(TCP_PROFILE).expect("the embedded tcp profile is valid")
}

/// A stream that remembers when it last moved a byte.
struct Watched<S> {
    inner: S,
    last: Rc<Cell<Instant>>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.last.set(Instant::now());
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.last.set(Instant::now());
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Resolves once `last` is `limit` in the past.
async fn idle(last: Rc<Cell<Instant>>, limit: Duration) {
    loop {
        let due = last.get() + limit;
        if Instant::now() >= due {
            return;
        }
        tokio::time::sleep_until(due.into()).await;
    }
}

/// Answers one caller on `stream` until it hangs up, falls silent for
/// `IDLE_LIMIT`, or `stop` resolves.
pub async fn answer(
    stream: TcpStream,
    db: &Path,
    stop: impl Future<Output = ()>,
    obs: &mut dyn Observer,
) -> Result<(), DaemonError> {
    let _ = stream.set_nodelay(true);
    let store = Store::open(db)?;
    let mut station = Station::new(store, profile(), true)?;
    let last = Rc::new(Cell::new(Instant::now()));
    let mut link = Watched {
        inner: stream,
        last: last.clone(),
    };
    let stop = async {
        tokio::select! {
            _ = stop => {}
            _ = idle(last, IDLE_LIMIT) => {}
        }
    };
    let opts = Options {
        mode: Mode::Run {
            every: None,
            broadcast: false,
        },
        timeout: None,
        link_status: None,
        tick: Duration::from_secs(5),
    };
    match drive(&mut link, &mut station, opts, stop, obs).await {
        Ok(_) | Err(DaemonError::Closed) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Accepts callers on `listener` until `stop` says so; each is answered on
/// its own task (of the current `LocalSet`) with the observer `obs_for` makes.
pub async fn listen<F, O>(
    listener: TcpListener,
    db: PathBuf,
    stop: tokio::sync::watch::Receiver<bool>,
    obs_for: F,
) where
    F: Fn(SocketAddr) -> O,
    O: Observer + 'static,
{
    let open: Rc<std::cell::RefCell<Vec<IpAddr>>> = Rc::default();
    let mut tasks = Vec::new();
    loop {
        let mut stopped = stop.clone();
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stopped.wait_for(|s| *s) => break,
        };
        let (stream, from) = match accepted {
            Ok(x) => x,
            Err(e) => {
                obs_for(listener.local_addr().unwrap_or(([0, 0, 0, 0], 0).into()))
                    .note(&format!("TCP accept failed: {e}"));
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut obs = obs_for(from);
        let ip = from.ip().to_canonical();
        {
            let live = open.borrow();
            let same = live.iter().filter(|a| **a == ip).count();
            if live.len() >= MAX_CONNECTIONS || same >= MAX_PER_ADDRESS {
                obs.note(&format!(
                    "refused: {} TCP connection(s) open ({} from this address; at most \
                     {MAX_CONNECTIONS}, {MAX_PER_ADDRESS} per address)",
                    live.len(),
                    same
                ));
                continue;
            }
        }
        open.borrow_mut().push(ip);
        // Frees the slot however the task ends.
        let slot = Slot {
            open: open.clone(),
            ip,
        };
        obs.note("connected");
        let (db, mut stop) = (db.clone(), stop.clone());
        tasks.push(tokio::task::spawn_local(async move {
            let _slot = slot;
            let stopped = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            match answer(stream, &db, stopped, &mut obs).await {
                Ok(()) => obs.note("disconnected"),
                Err(e) => obs.note(&format!("ended: {e}")),
            }
        }));
        tasks.retain(|t| !t.is_finished());
    }
    // Let live sessions hear the stop (each cancels within its grace).
    for t in tasks {
        let _ = t.await;
    }
}

/// One open connection's place in the listener's count.
struct Slot {
    open: Rc<std::cell::RefCell<Vec<IpAddr>>>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut live = self.open.borrow_mut();
        if let Some(i) = live.iter().position(|a| *a == self.ip) {
            live.swap_remove(i);
        }
    }
}

/// Ends a connection politely: our side closed, then what the peer still
/// sends read and dropped (briefly), so the kernel does not reset the
/// connection and lose our last frames on the way.
pub async fn close(mut stream: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 1024];
    let drain = async {
        while let Ok(n) = stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
}

/// Connects to a station listening at `addr` (`sync --tcp`).
pub async fn connect(addr: &str) -> Result<TcpStream, std::io::Error> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
            )
        })??;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}
