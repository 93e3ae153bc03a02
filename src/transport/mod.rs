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
    /// The serial port did not open.
    #[error(
        "cannot open serial port {path}: {source}; check the device path, that the modem is \
         plugged in, and that you may use it (dialout group)"
    )]
    SerialOpen {
        /// Path of the port.
        path: PathBuf,
        /// The error from the serial library.
        source: tokio_serial::Error,
    },
    /// Another process holds the port (its lock).
    #[error("serial port {path} is in use by another process")]
    PortBusy {
        /// Path of the port.
        path: PathBuf,
    },
    /// The TCP connection was refused or failed.
    #[error(
        "cannot connect to the KISS TCP server at {addr}: {source}; is Dire Wolf (or the TNC) \
         running and listening there?"
    )]
    TcpConnect {
        /// `host:port` of the server.
        addr: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TCP connection did not complete within 5 s.
    #[error("timed out connecting to the KISS TCP server at {addr}")]
    TcpTimeout {
        /// `host:port` of the server.
        addr: String,
    },
}
