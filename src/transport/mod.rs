//! Links to the radio: serial ports (real or pseudo-terminals), KISS over TCP (Dire Wolf on
//! port 8001), and a reconnecting wrapper for modems that come and go. Real links only: the
//! simulated channel is in `sim`.

mod link;
mod serial;

pub use link::{open, Backoff, Link, LinkIo, LinkSpec, LinkStatus, ReconnectingLink};
pub use serial::{DataBits, FlowControl, Parity, SerialSettings, StopBits};

use std::path::PathBuf;

/// Why a link could not be opened. Local problems: wrong path, modem unplugged, server down.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    #[error(
        "cannot open serial port {path}: {source}; check the device path, that the modem is \
         plugged in, and that you may use it (dialout group)"
    )]
    SerialOpen {
        path: PathBuf,
        source: tokio_serial::Error,
    },
    #[error("serial port {path} is in use by another process")]
    PortBusy { path: PathBuf },
    #[error(
        "cannot connect to the KISS TCP server at {addr}: {source}; is Dire Wolf (or the TNC) \
         running and listening there?"
    )]
    TcpConnect {
        addr: String,
        source: std::io::Error,
    },
    #[error("timed out connecting to the KISS TCP server at {addr}")]
    TcpTimeout { addr: String },
}
