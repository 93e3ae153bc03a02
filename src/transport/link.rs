//! `Link`: the byte stream the daemon talks to, opened from a `LinkSpec`, and
//! `ReconnectingLink`, which reopens it with backoff when the modem goes away.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::serial::{open_serial, SerialSettings};
use super::TransportError;

/// Anything a link can be: a serial port, a TCP stream.
pub trait LinkIo: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> LinkIo for T {}

/// An open link to the modem.
pub type Link = Box<dyn LinkIo>;

/// Where the modem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkSpec {
    /// A serial port or pseudo-terminal (the path may be a symlink).
    Serial {
        /// Path of the port.
        path: PathBuf,
        /// Line settings.
        settings: SerialSettings,
    },
    /// A KISS TNC over TCP, `host:port` (Dire Wolf: `localhost:8001`).
    KissTcp {
        /// `host:port`.
        addr: String,
    },
}

impl std::fmt::Display for LinkSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkSpec::Serial { path, settings } => {
                // The line speed to the modem, not the radio's bit rate.
                write!(f, "serial {} (line {} baud)", path.display(), settings.baud)
            }
            LinkSpec::KissTcp { addr } => write!(f, "KISS TCP {addr}"),
        }
    }
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens the link once.
pub async fn open(spec: &LinkSpec) -> Result<Link, TransportError> {
    match spec {
        LinkSpec::Serial { path, settings } => Ok(Box::new(open_serial(path, settings)?)),
        LinkSpec::KissTcp { addr } => {
            let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr.as_str()))
                .await
                .map_err(|_| TransportError::TcpTimeout { addr: addr.clone() })?
                .map_err(|source| TransportError::TcpConnect {
                    addr: addr.clone(),
                    source,
                })?;
            // KISS frames are small and latency is airtime: do not let Nagle hold them.
            let _ = stream.set_nodelay(true);
            Ok(Box::new(stream))
        }
    }
}

/// Capped exponential backoff between reopen attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the first retry; each later one doubles it.
    pub initial: Duration,
    /// Longest delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(5),
        }
    }
}

impl Backoff {
    /// Delay before attempt number `attempt` (1 = the first retry).
    pub fn delay(&self, attempt: u32) -> Duration {
        let shift = attempt.saturating_sub(1).min(20);
        self.initial.saturating_mul(1 << shift).min(self.max)
    }
}

/// Shared view of a `ReconnectingLink`'s state, readable while the link itself is in use.
#[derive(Debug, Default)]
pub struct LinkStatus {
    up: AtomicBool,
    opens: AtomicU64,
    drops: AtomicU64,
    discarded: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl LinkStatus {
    /// The link is open now.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }
    /// Successful opens so far (1 after the first, +1 per reconnection).
    pub fn opens(&self) -> u64 {
        self.opens.load(Ordering::Relaxed)
    }
    /// Times the open link failed (EOF or error).
    pub fn drops(&self) -> u64 {
        self.drops.load(Ordering::Relaxed)
    }
    /// Bytes written while the link was down, thrown away.
    pub fn discarded_bytes(&self) -> u64 {
        self.discarded.load(Ordering::Relaxed)
    }
    /// Why the link last failed or could not be opened, if it ever did.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().map(|e| e.clone()).unwrap_or(None)
    }
    fn set_error(&self, e: String) {
        if let Ok(mut g) = self.last_error.lock() {
            *g = Some(e);
        }
    }
}

type OpenFuture = Pin<Box<dyn Future<Output = Result<Link, TransportError>> + Send>>;

enum State {
    Up(Link),
    Waiting(Pin<Box<tokio::time::Sleep>>),
    Opening(OpenFuture),
}

/// A link that survives the modem going away: when reading returns EOF or an error (USB
/// unplugged, TNC restarted), it reopens the spec with backoff and carries on. Bytes in
/// flight are lost, and writes while the link is down are discarded and counted (a radio
/// that is not there transmits nothing): the ARQ above resends. Reads wait until it is back.
/// Reconnection progresses while someone reads (the daemon always does); writes never wait.
pub struct ReconnectingLink {
    spec: LinkSpec,
    backoff: Backoff,
    state: State,
    attempt: u32,
    status: Arc<LinkStatus>,
}

impl ReconnectingLink {
    /// Opens once and fails with the reason if that does not work (a wrong path should be
    /// reported at start, not retried forever); reconnects after that.
    pub async fn open_first(spec: LinkSpec, backoff: Backoff) -> Result<Self, TransportError> {
        let link = open(&spec).await?;
        let status = Arc::new(LinkStatus::default());
        status.up.store(true, Ordering::Relaxed);
        status.opens.store(1, Ordering::Relaxed);
        Ok(ReconnectingLink {
            spec,
            backoff,
            state: State::Up(link),
            attempt: 0,
            status,
        })
    }

    /// Starts without the modem present; connects as soon as it can.
    pub fn new(spec: LinkSpec, backoff: Backoff) -> Self {
        let mut l = ReconnectingLink {
            state: State::Opening(Box::pin(std::future::pending())),
            spec,
            backoff,
            attempt: 0,
            status: Arc::new(LinkStatus::default()),
        };
        l.state = State::Opening(l.open_future());
        l
    }

    /// Where the modem is.
    pub fn spec(&self) -> &LinkSpec {
        &self.spec
    }

    /// A handle on the link's state that stays readable while the link is in use.
    pub fn status(&self) -> Arc<LinkStatus> {
        self.status.clone()
    }

    fn open_future(&self) -> OpenFuture {
        let spec = self.spec.clone();
        Box::pin(async move { open(&spec).await })
    }

    fn lost(&mut self, why: String) {
        self.status.up.store(false, Ordering::Relaxed);
        self.status.drops.fetch_add(1, Ordering::Relaxed);
        self.status.set_error(why);
        self.attempt = 1;
        self.state = State::Waiting(Box::pin(tokio::time::sleep(self.backoff.delay(1))));
    }

    /// Drives reopening until the link is up.
    fn poll_up(&mut self, cx: &mut Context<'_>) -> Poll<&mut Link> {
        loop {
            match &mut self.state {
                State::Up(_) => break,
                State::Waiting(sleep) => {
                    ready!(sleep.as_mut().poll(cx));
                    self.state = State::Opening(self.open_future());
                }
                State::Opening(fut) => match ready!(fut.as_mut().poll(cx)) {
                    Ok(link) => {
                        self.attempt = 0;
                        self.status.up.store(true, Ordering::Relaxed);
                        self.status.opens.fetch_add(1, Ordering::Relaxed);
                        self.state = State::Up(link);
                    }
                    Err(e) => {
                        self.status.set_error(e.to_string());
                        self.attempt = self.attempt.saturating_add(1);
                        let d = self.backoff.delay(self.attempt);
                        self.state = State::Waiting(Box::pin(tokio::time::sleep(d)));
                    }
                },
            }
        }
        match &mut self.state {
            State::Up(link) => Poll::Ready(link),
            _ => unreachable!("loop breaks only when up"),
        }
    }
}

impl AsyncRead for ReconnectingLink {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            let before = buf.filled().len();
            let link = ready!(this.poll_up(cx));
            match ready!(Pin::new(link).poll_read(cx, buf)) {
                Ok(()) if buf.filled().len() == before && buf.remaining() > 0 => {
                    this.lost("end of stream".into())
                }
                Ok(()) => return Poll::Ready(Ok(())),
                Err(e) => this.lost(e.to_string()),
            }
        }
    }
}

impl AsyncWrite for ReconnectingLink {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // Only the read side drives reopening: a timer keeps one waker, and a writer polling
        // it would steal the wake-up from a reader in another task.
        if let State::Up(link) = &mut this.state {
            match ready!(Pin::new(link).poll_write(cx, data)) {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) => this.lost(e.to_string()),
            }
        }
        this.status
            .discarded
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let State::Up(link) = &mut this.state {
            if let Err(e) = ready!(Pin::new(link).poll_flush(cx)) {
                this.lost(e.to_string());
            }
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let State::Up(link) = &mut this.state {
            return Pin::new(link).poll_shutdown(cx);
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsRawFd, OwnedFd};
    use std::time::Instant;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A pty pair: the master plays the modem, the slave path is the serial port.
    struct Pty {
        master: OwnedFd,
        _slave: OwnedFd,
        path: PathBuf,
    }

    fn pty() -> Pty {
        let p = nix::pty::openpty(None, None).unwrap();
        let path = nix::unistd::ttyname(&p.slave).unwrap();
        nix::fcntl::fcntl(
            p.master.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )
        .unwrap();
        Pty {
            master: p.master,
            _slave: p.slave,
            path,
        }
    }

    impl Pty {
        fn write(&self, data: &[u8]) {
            assert_eq!(nix::unistd::write(&self.master, data).unwrap(), data.len());
        }

        async fn read_exact(&self, n: usize) -> Vec<u8> {
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut out = Vec::new();
            let mut buf = [0u8; 256];
            while out.len() < n {
                assert!(Instant::now() < deadline, "timed out, got {out:?}");
                match nix::unistd::read(self.master.as_raw_fd(), &mut buf) {
                    Ok(k) => out.extend_from_slice(&buf[..k]),
                    Err(nix::errno::Errno::EAGAIN) => {
                        tokio::time::sleep(Duration::from_millis(5)).await
                    }
                    Err(e) => panic!("read master: {e}"),
                }
            }
            out
        }
    }

    fn serial(path: PathBuf) -> LinkSpec {
        LinkSpec::Serial {
            path,
            settings: SerialSettings {
                baud: 115_200,
                ..Default::default()
            },
        }
    }

    async fn read_n(r: &mut (impl AsyncRead + Unpin), n: usize) -> Vec<u8> {
        let mut buf = vec![0u8; n];
        tokio::time::timeout(Duration::from_secs(10), r.read_exact(&mut buf))
            .await
            .expect("timed out")
            .unwrap();
        buf
    }

    async fn wait_for(what: &str, status: &LinkStatus, f: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; last error {:?}",
                status.last_error()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        assert_eq!(b.delay(1), Duration::from_millis(100));
        assert_eq!(b.delay(2), Duration::from_millis(200));
        assert_eq!(b.delay(4), Duration::from_millis(800));
        assert_eq!(b.delay(5), Duration::from_secs(1));
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(1));
    }

    #[tokio::test]
    async fn serial_link_exchanges_bytes_over_a_pty() {
        let p = pty();
        let mut link = open(&serial(p.path.clone())).await.unwrap();
        link.write_all(b"\xc0\x00hello\xc0").await.unwrap();
        link.flush().await.unwrap();
        assert_eq!(p.read_exact(8).await, b"\xc0\x00hello\xc0");
        // Raw mode: CR, ^C, ^D and 0xFF pass untouched.
        let raw = [b'\r', b'\n', 3, 4, 0x11, 0x13, 0xff, 0];
        p.write(&raw);
        assert_eq!(read_n(&mut link, raw.len()).await, raw);
    }

    #[tokio::test]
    async fn serial_port_is_locked_against_a_second_opener() {
        let p = pty();
        let _first = open(&serial(p.path.clone())).await.unwrap();
        match open(&serial(p.path.clone())).await {
            Err(TransportError::PortBusy { path }) => assert_eq!(path, p.path),
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("second open succeeded"),
        }
    }

    #[tokio::test]
    async fn missing_device_is_a_clear_error() {
        let err = open(&serial("/nonexistent/ttyUSB9".into()))
            .await
            .err()
            .unwrap();
        let msg = err.to_string();
        assert!(matches!(err, TransportError::SerialOpen { .. }));
        assert!(msg.contains("/nonexistent/ttyUSB9"), "{msg}");
    }

    #[tokio::test]
    async fn serial_link_reopens_after_the_device_disappears() {
        let dir = tempfile::tempdir().unwrap();
        let link_path = dir.path().join("modem");
        let p1 = pty();
        std::os::unix::fs::symlink(&p1.path, &link_path).unwrap();
        let backoff = Backoff {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(100),
        };
        let link = ReconnectingLink::open_first(serial(link_path.clone()), backoff)
            .await
            .unwrap();
        let status = link.status();
        let (mut rd, mut wr) = tokio::io::split(link);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut buf = [0u8; 64];
            while let Ok(n) = rd.read(&mut buf).await {
                if tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        p1.write(b"one");
        assert_eq!(rx.recv().await.unwrap(), b"one");

        // Unplug: the device goes away and so does its name.
        drop(p1);
        std::fs::remove_file(&link_path).unwrap();
        wait_for("the drop to be noticed", &status, || !status.is_up()).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(status.opens(), 1);
        wr.write_all(b"lost").await.unwrap();
        assert!(status.discarded_bytes() >= 4);

        // Plug back in: a new device under the same name.
        let p2 = pty();
        std::os::unix::fs::symlink(&p2.path, &link_path).unwrap();
        wait_for("the reopen", &status, || status.opens() == 2).await;
        assert!(status.drops() >= 1);
        p2.write(b"two");
        assert_eq!(rx.recv().await.unwrap(), b"two");
        wr.write_all(b"back").await.unwrap();
        assert_eq!(p2.read_exact(4).await, b"back");
    }

    #[tokio::test]
    async fn kiss_tcp_link_reconnects_after_the_server_restarts() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let backoff = Backoff {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(100),
        };
        let spec = LinkSpec::KissTcp {
            addr: addr.to_string(),
        };
        let link = ReconnectingLink::open_first(spec, backoff).await.unwrap();
        let status = link.status();
        let (mut server, _) = listener.accept().await.unwrap();
        let (mut rd, mut wr) = tokio::io::split(link);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut buf = [0u8; 64];
            while let Ok(n) = rd.read(&mut buf).await {
                if tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        wr.write_all(b"\xc0\x00up\xc0").await.unwrap();
        assert_eq!(read_n(&mut server, 5).await, b"\xc0\x00up\xc0");
        server.write_all(b"down").await.unwrap();
        assert_eq!(rx.recv().await.unwrap(), b"down");

        // The TNC restarts: connection and listener go away, then come back on the same port.
        drop(server);
        drop(listener);
        wait_for("the drop to be noticed", &status, || !status.is_up()).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
        let listener = TcpListener::bind(addr).await.unwrap();
        let (mut server, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept())
            .await
            .expect("no reconnect")
            .unwrap();
        wait_for("the reopen", &status, || status.opens() == 2).await;
        server.write_all(b"again").await.unwrap();
        assert_eq!(rx.recv().await.unwrap(), b"again");
        wr.write_all(b"ok").await.unwrap();
        assert_eq!(read_n(&mut server, 2).await, b"ok");
    }

    #[tokio::test]
    async fn refused_tcp_connection_is_a_clear_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let err = open(&LinkSpec::KissTcp { addr: addr.clone() })
            .await
            .err()
            .unwrap();
        assert!(matches!(err, TransportError::TcpConnect { .. }), "{err}");
        assert!(err.to_string().contains(&addr));
    }
}
