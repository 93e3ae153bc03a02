//! Serial ports through tokio-serial, with the settings a modem profile asks for.

use std::os::fd::AsRawFd;
use std::path::Path;

use serde::{Deserialize, Serialize};
use tokio_serial::{SerialPortBuilderExt, SerialStream};

use super::TransportError;

/// Data bits per character.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataBits {
    /// 5 bits.
    Five,
    /// 6 bits.
    Six,
    /// 7 bits.
    Seven,
    /// 8 bits: the only choice for binary frames.
    Eight,
}

/// Parity bit per character.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Parity {
    /// No parity bit.
    None,
    /// Odd parity.
    Odd,
    /// Even parity.
    Even,
}

/// Stop bits per character.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StopBits {
    /// One stop bit.
    One,
    /// Two stop bits.
    Two,
}

/// Flow control on the serial line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlowControl {
    /// No flow control.
    None,
    /// XON/XOFF: unusable with binary KISS or frames, kept for completeness.
    Software,
    /// RTS/CTS.
    Hardware,
}

/// Host-side serial settings (the air bitrate is the profile's business, not this).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SerialSettings {
    /// Line speed to the modem, in baud.
    pub baud: u32,
    /// Data bits per character.
    pub data_bits: DataBits,
    /// Parity bit.
    pub parity: Parity,
    /// Stop bits.
    pub stop_bits: StopBits,
    /// Flow control.
    pub flow_control: FlowControl,
}

impl Default for SerialSettings {
    /// 9600 8N1 without flow control: the usual default of KISS TNCs and serial radios.
    fn default() -> Self {
        SerialSettings {
            baud: 9600,
            data_bits: DataBits::Eight,
            parity: Parity::None,
            stop_bits: StopBits::One,
            flow_control: FlowControl::None,
        }
    }
}

/// Opens a serial port (or pseudo-terminal) in raw mode with `settings`.
///
/// Exclusivity is an advisory `flock`, not TIOCEXCL: the lock dies with the process, while
/// TIOCEXCL would stay on a pty that the simulator keeps open and lock out a restarted station.
pub(super) fn open_serial(path: &Path, s: &SerialSettings) -> Result<SerialStream, TransportError> {
    let err = |source| TransportError::SerialOpen {
        path: path.to_path_buf(),
        source,
    };
    let port = tokio_serial::new(path.to_string_lossy(), s.baud)
        .data_bits(match s.data_bits {
            DataBits::Five => tokio_serial::DataBits::Five,
            DataBits::Six => tokio_serial::DataBits::Six,
            DataBits::Seven => tokio_serial::DataBits::Seven,
            DataBits::Eight => tokio_serial::DataBits::Eight,
        })
        .parity(match s.parity {
            Parity::None => tokio_serial::Parity::None,
            Parity::Odd => tokio_serial::Parity::Odd,
            Parity::Even => tokio_serial::Parity::Even,
        })
        .stop_bits(match s.stop_bits {
            StopBits::One => tokio_serial::StopBits::One,
            StopBits::Two => tokio_serial::StopBits::Two,
        })
        .flow_control(match s.flow_control {
            FlowControl::None => tokio_serial::FlowControl::None,
            FlowControl::Software => tokio_serial::FlowControl::Software,
            FlowControl::Hardware => tokio_serial::FlowControl::Hardware,
        })
        .exclusive(false)
        .open_native_async()
        .map_err(|e| {
            // serialport reports a lock held by another process as NoDevice.
            if e.kind == tokio_serial::ErrorKind::NoDevice && e.description.contains("lock") {
                TransportError::PortBusy {
                    path: path.to_path_buf(),
                }
            } else {
                err(e)
            }
        })?;
    #[allow(deprecated)] // nix's replacement wants to own the descriptor.
    let locked = nix::fcntl::flock(
        port.as_raw_fd(),
        nix::fcntl::FlockArg::LockExclusiveNonblock,
    );
    match locked {
        Ok(()) => Ok(port),
        Err(nix::errno::Errno::EWOULDBLOCK) => Err(TransportError::PortBusy {
            path: path.to_path_buf(),
        }),
        Err(e) => Err(err(tokio_serial::Error::new(
            tokio_serial::ErrorKind::Io(std::io::ErrorKind::Other),
            format!("flock: {e}"),
        ))),
    }
}
