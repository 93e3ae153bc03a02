//! One end of the simulated channel: a pseudo-terminal whose slave a radiosync process opens
//! as a serial port through a symlink.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
use tokio::io::unix::AsyncFd;

pub struct PtyEnd {
    pub master: AsyncFd<OwnedFd>,
    /// Kept open so the master never sees EIO/hang-up while no process has the port open
    /// (a restarted station then finds the port as it left it).
    _slave: OwnedFd,
    pub slave_path: PathBuf,
    link: PathBuf,
}

impl PtyEnd {
    pub fn create(link: &Path) -> anyhow::Result<PtyEnd> {
        let pty = nix::pty::openpty(None, None).context("openpty")?;
        let mut t = tcgetattr(&pty.slave).context("tcgetattr")?;
        cfmakeraw(&mut t);
        tcsetattr(&pty.slave, SetArg::TCSANOW, &t).context("tcsetattr")?;
        let slave_path = nix::unistd::ttyname(&pty.slave).context("ttyname")?;
        fcntl(pty.master.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK))
            .context("set master non-blocking")?;
        match std::fs::symlink_metadata(link) {
            Ok(m) if m.file_type().is_symlink() => std::fs::remove_file(link)
                .with_context(|| format!("removing stale link {}", link.display()))?,
            Ok(_) => bail!(
                "{} exists and is not a symlink; choose another --link path",
                link.display()
            ),
            Err(_) => {}
        }
        std::os::unix::fs::symlink(&slave_path, link)
            .with_context(|| format!("creating link {}", link.display()))?;
        // SAFETY: `OwnedFd` owns a valid descriptor that nothing else closes or replaces while
        // the `AsyncFd` holds it.
        let master = unsafe { AsyncFd::register(pty.master) }.context("register pty with tokio")?;
        Ok(PtyEnd {
            master,
            _slave: pty.slave,
            slave_path,
            link: link.to_path_buf(),
        })
    }

    /// Writes what arrived over the air to the host. Never blocks: bytes the host is too slow
    /// to take are dropped, as a radio's serial buffer overflows. Returns the bytes dropped.
    pub fn write_to_host(&self, data: &[u8]) -> usize {
        let mut off = 0;
        while off < data.len() {
            match nix::unistd::write(self.master.get_ref(), &data[off..]) {
                Ok(0) => break,
                Ok(n) => off += n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break,
            }
        }
        data.len() - off
    }
}

/// One non-blocking read from a master that tokio reported readable.
pub fn read_master(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    nix::unistd::read(fd.as_raw_fd(), buf).map_err(io::Error::from)
}

impl Drop for PtyEnd {
    fn drop(&mut self) {
        // Only remove the link if it still points at our pty.
        if std::fs::read_link(&self.link).is_ok_and(|t| t == self.slave_path) {
            let _ = std::fs::remove_file(&self.link);
        }
    }
}
