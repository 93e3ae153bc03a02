//! The KISS link end to end: Frame -> (FEC) -> (AX.25 UI) -> KISS data frame, and back.
//! The transparent link has its own module (`transparent`).

use thiserror::Error;

use super::ax25::{self, Ax25Error, Callsign, UiFrame};
use super::kiss::{KissCommand, KissError, KissFrame};
use super::{DecodeInfo, FecParams, Frame, FrameError};

/// Dire Wolf 1.6 accepts KISS data frames of 15..=2123 bytes (unescaped, AX.25 without FCS).
pub const DIREWOLF_MAX_KISS_DATA: usize = 2123;

/// AX.25 addressing for amateur profiles: who we are and whom we send to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ax25Addresses {
    /// This station (the AX.25 source).
    pub local: Callsign,
    /// The station we send to (the AX.25 destination).
    pub peer: Callsign,
}

/// Why a frame could not be put in, or taken out of, a KISS data frame.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum LinkError {
    /// The radiosync frame itself.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The AX.25 UI wrapping.
    #[error(transparent)]
    Ax25(#[from] Ax25Error),
    /// The KISS framing.
    #[error(transparent)]
    Kiss(#[from] KissError),
    /// A KISS command frame where a data frame was expected.
    #[error("KISS frame is a command, not data")]
    NotData,
}

/// A frame received over KISS, with the AX.25 addresses when the profile uses them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The frame.
    pub frame: Frame,
    /// What FEC decoding learned.
    pub info: DecodeInfo,
    /// KISS port it came in on.
    pub port: u8,
    /// (source, destination) from the AX.25 header.
    pub ax25: Option<(Callsign, Callsign)>,
}

/// Bytes inside the KISS data frame (before KISS escaping).
pub fn kiss_payload(
    frame: &Frame,
    fec: Option<&FecParams>,
    ax25: Option<&Ax25Addresses>,
) -> Result<Vec<u8>, FrameError> {
    let body = frame.encode(fec)?;
    Ok(match ax25 {
        None => body,
        Some(a) => UiFrame::new(a.peer.clone(), a.local.clone(), &body).to_bytes(),
    })
}

/// Unescaped KISS payload length, to check against the TNC's limit
/// ([`DIREWOLF_MAX_KISS_DATA`]) and for airtime estimates.
pub fn kiss_payload_len(frame: &Frame, fec: Option<&FecParams>, ax25: bool) -> usize {
    frame.encoded_len(fec) + if ax25 { ax25::MIN_HEADER_LEN } else { 0 }
}

/// The escaped KISS bytes to write to the TNC.
pub fn encode_kiss(
    frame: &Frame,
    fec: Option<&FecParams>,
    ax25: Option<&Ax25Addresses>,
    port: u8,
) -> Result<Vec<u8>, LinkError> {
    let data = kiss_payload(frame, fec, ax25)?;
    Ok(KissFrame::data(port, data).to_bytes()?)
}

/// Decodes a KISS frame from the deframer. With `ax25`, the payload must be a UI frame
/// with radiosync's PID; filtering on the destination is the caller's choice.
pub fn decode_kiss(
    kiss: &KissFrame,
    fec: Option<&FecParams>,
    ax25: bool,
) -> Result<Received, LinkError> {
    let KissCommand::Data(data) = &kiss.command else {
        return Err(LinkError::NotData);
    };
    let (body, addrs) = if ax25 {
        let ui = ax25::parse_radiosync(data)?;
        (ui.info, Some((ui.source, ui.destination)))
    } else {
        (&data[..], None)
    };
    let (frame, info) = Frame::decode(body, fec)?;
    Ok(Received {
        frame,
        info,
        port: kiss.port,
        ax25: addrs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::kiss::{KissDeframer, FEND};
    use crate::frame::FrameKind;

    fn frame() -> Frame {
        Frame {
            kind: FrameKind::Data,
            session: 1,
            seq: 2,
            payload: vec![FEND, 0xDB, 1, 2, 3],
            auth_tag: Some(vec![7; 16]),
            route: None,
        }
    }

    fn addrs() -> Ax25Addresses {
        Ax25Addresses {
            local: "N0CALL-1".parse().unwrap(),
            peer: "W1AW-2".parse().unwrap(),
        }
    }

    #[test]
    fn amateur_round_trip_through_deframer() {
        let fec = FecParams {
            parity_bytes_per_block: 4,
            block_data_len: 100,
            interleave: false,
        };
        let bytes = encode_kiss(&frame(), Some(&fec), Some(&addrs()), 0).unwrap();
        assert_eq!(bytes[0], FEND);
        let mut d = KissDeframer::default();
        d.push(&bytes);
        let kf = d.next().unwrap().unwrap();
        let KissCommand::Data(data) = &kf.command else {
            panic!("not data")
        };
        assert_eq!(data.len(), kiss_payload_len(&frame(), Some(&fec), true));
        let got = decode_kiss(&kf, Some(&fec), true).unwrap();
        assert_eq!(got.frame, frame());
        assert_eq!(got.ax25, Some((addrs().local, addrs().peer)));
        // The AX.25 header starts with the destination (peer) callsign.
        assert_eq!(&data[..2], &[b'W' << 1, b'1' << 1]);
    }

    #[test]
    fn plain_kiss_and_errors() {
        let bytes = encode_kiss(&frame(), None, None, 3).unwrap();
        let mut d = KissDeframer::default();
        d.push(&bytes);
        let kf = d.next().unwrap().unwrap();
        assert_eq!(kf.port, 3);
        let got = decode_kiss(&kf, None, false).unwrap();
        assert_eq!((got.frame, got.ax25), (frame(), None));
        // Expecting AX.25 but getting a bare frame: refused, not misread.
        assert!(matches!(
            decode_kiss(&kf, None, true),
            Err(LinkError::Ax25(_))
        ));
        let cmd = KissFrame {
            port: 0,
            command: KissCommand::TxDelay(30),
        };
        assert_eq!(decode_kiss(&cmd, None, false), Err(LinkError::NotData));
    }
}
