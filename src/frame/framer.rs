//! The link framing a profile chooses, as one byte-stream codec: KISS (with AX.25 UI
//! wrapping on amateur profiles) or transparent (sync word, protected length,
//! Reed-Solomon). The live station and replay both read the air through it. Pure; time
//! comes in as `now` only to notice a quiet channel on transparent links.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use thiserror::Error;

use super::ax25::Callsign;
use super::kiss::{KissCommand, KissDeframer, KissError, KissFrame, DEFAULT_MAX_FRAME};
use super::link::{self, Ax25Addresses, LinkError};
use super::transparent::{self, TransparentDeframer, TransparentError, HEADER_LEN};
use super::{DecodeInfo, FecError, FecParams, Frame};
use crate::profile::{Framing, Profile};

/// How a link frames: the profile's framing, FEC and AX.25 choice, and its bitrate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkShape {
    /// KISS or transparent.
    pub framing: Framing,
    /// Reed-Solomon parameters; `None` without FEC.
    pub fec: Option<FecParams>,
    /// Payloads go inside AX.25 UI frames (amateur KISS profiles).
    pub ax25: bool,
    /// Modem bit rate in bit/s; sets how long a quiet gap must be.
    pub bitrate: u32,
}

impl LinkShape {
    /// The shape a profile describes, its FEC parameters checked.
    pub fn of(profile: &Profile) -> Result<LinkShape, FecError> {
        Ok(LinkShape {
            framing: profile.framing,
            fec: profile.fec_params()?,
            ax25: profile.framing == Framing::Kiss && profile.amateur,
            bitrate: profile.bitrate,
        })
    }
}

/// A frame that decoded, with what the link told about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The frame.
    pub frame: Frame,
    /// What FEC decoding learned.
    pub info: DecodeInfo,
    /// The KISS port it came in on (KISS links).
    pub kiss_port: Option<u8>,
    /// AX.25 (source, destination) on amateur KISS links.
    pub ax25: Option<(Callsign, Callsign)>,
}

/// Why bytes from the air did not make a frame.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RxError {
    /// The KISS byte stream itself is malformed.
    #[error("KISS: {0}")]
    Kiss(KissError),
    /// A KISS data frame whose contents did not decode.
    #[error("KISS p{port} data of {len} bytes: {error}")]
    KissData {
        /// KISS port it came in on.
        port: u8,
        /// Unescaped data bytes.
        len: usize,
        /// Why it did not decode.
        error: LinkError,
    },
    /// A transparent-link frame that did not decode.
    #[error(transparent)]
    Transparent(TransparentError),
}

/// Why a frame could not be put on the link (a local mistake, not the air's).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TxError {
    /// The profile uses AX.25 and no addresses were given.
    #[error("an AX.25 link needs both callsigns")]
    NoAddresses,
    /// The frame could not be built for the KISS link.
    #[error(transparent)]
    Kiss(LinkError),
    /// The frame could not be built for the transparent link.
    #[error(transparent)]
    Transparent(TransparentError),
}

/// One frame off the link: its raw on-air bytes (for captures; empty for a
/// transparent frame that failed, whose extent is unknown) and the decode result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RxFrame {
    /// Raw on-air bytes (see above).
    pub bytes: Vec<u8>,
    /// The frame, or why the bytes made none.
    pub decoded: Result<Decoded, RxError>,
}

#[derive(Debug)]
enum Deframer {
    Kiss(KissDeframer),
    Transparent {
        de: TransparentDeframer,
        /// The same bytes the deframer holds, so a decoded frame's raw bytes
        /// can be recorded (the deframer only ever removes from the front).
        mirror: VecDeque<u8>,
    },
}

/// Encoder and deframer for one link.
#[derive(Debug)]
pub struct LinkFramer {
    shape: LinkShape,
    deframer: Deframer,
    last_rx: Option<Instant>,
    /// Quiet time after which a transparent frame still waiting for bytes is given up.
    idle_gap: Duration,
    /// KISS command frames heard (a TNC echoing them): not frames, skipped.
    commands: u64,
}

impl LinkFramer {
    /// The framer a profile describes; fails on bad FEC parameters.
    pub fn new(profile: &Profile) -> Result<LinkFramer, FecError> {
        Ok(LinkFramer::with_shape(LinkShape::of(profile)?))
    }

    /// The framer for a shape already checked.
    pub fn with_shape(shape: LinkShape) -> LinkFramer {
        let deframer = match shape.framing {
            Framing::Kiss => Deframer::Kiss(KissDeframer::new(DEFAULT_MAX_FRAME)),
            Framing::Transparent => Deframer::Transparent {
                de: TransparentDeframer::new(shape.fec),
                mirror: VecDeque::new(),
            },
        };
        // Within one transmission bytes arrive back to back; a gap of 100 ms plus
        // the time of 64 bytes is OS and pty latency at worst, so the carrier is down.
        let byte_time = Duration::from_micros(8_000_000 / u64::from(shape.bitrate.max(1)));
        LinkFramer {
            shape,
            deframer,
            last_rx: None,
            idle_gap: Duration::from_millis(100) + byte_time * 64,
            commands: 0,
        }
    }

    /// How this link frames.
    pub fn shape(&self) -> &LinkShape {
        &self.shape
    }

    /// The link's FEC parameters, if it uses FEC.
    pub fn fec(&self) -> Option<&FecParams> {
        self.shape.fec.as_ref()
    }

    /// Bytes for one frame on this link.
    pub fn encode(&self, frame: &Frame, addrs: Option<&Ax25Addresses>) -> Result<Vec<u8>, TxError> {
        let fec = self.shape.fec.as_ref();
        match self.shape.framing {
            Framing::Kiss => {
                let addrs = if self.shape.ax25 { addrs } else { None };
                if self.shape.ax25 && addrs.is_none() {
                    return Err(TxError::NoAddresses);
                }
                link::encode_kiss(frame, fec, addrs, 0).map_err(TxError::Kiss)
            }
            Framing::Transparent => transparent::encode(frame, fec).map_err(TxError::Transparent),
        }
    }

    /// Bytes from the port.
    pub fn push(&mut self, now: Instant, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.last_rx = Some(now);
        match &mut self.deframer {
            Deframer::Kiss(d) => d.push(bytes),
            Deframer::Transparent { de, mirror } => {
                de.push(bytes);
                mirror.extend(bytes);
            }
        }
    }

    /// The next frame (or failed frame), `None` when more bytes are needed.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<RxFrame> {
        let fec = self.shape.fec;
        let ax25 = self.shape.ax25;
        match &mut self.deframer {
            Deframer::Kiss(d) => loop {
                let kf = match d.next()? {
                    Ok(kf) => kf,
                    Err(e) => {
                        return Some(RxFrame {
                            bytes: Vec::new(),
                            decoded: Err(RxError::Kiss(e)),
                        })
                    }
                };
                let KissCommand::Data(data) = &kf.command else {
                    // TNC commands echoed back are not frames.
                    self.commands += 1;
                    continue;
                };
                let len = data.len();
                let bytes = kf.to_bytes().unwrap_or_default();
                let decoded = link::decode_kiss(&kf, fec.as_ref(), ax25)
                    .map(|r| Decoded {
                        frame: r.frame,
                        info: r.info,
                        kiss_port: Some(r.port),
                        ax25: r.ax25,
                    })
                    .map_err(|error| RxError::KissData {
                        port: kf.port,
                        len,
                        error,
                    });
                return Some(RxFrame { bytes, decoded });
            },
            Deframer::Transparent { de, mirror } => {
                let before = de.buffered();
                let r = de.next();
                let consumed = before.saturating_sub(de.buffered()).min(mirror.len());
                let out = match r {
                    None => None,
                    Some(Ok((frame, info))) => {
                        let framed = HEADER_LEN + info.encoded_len;
                        let start = consumed.saturating_sub(framed);
                        let bytes = mirror.range(start..consumed).copied().collect();
                        Some(RxFrame {
                            bytes,
                            decoded: Ok(Decoded {
                                frame,
                                info,
                                kiss_port: None,
                                ax25: None,
                            }),
                        })
                    }
                    Some(Err(e)) => Some(RxFrame {
                        bytes: Vec::new(),
                        decoded: Err(RxError::Transparent(e)),
                    }),
                };
                mirror.drain(..consumed);
                out
            }
        }
    }

    /// When the channel counts as quiet (transparent links holding a partial frame).
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.deframer {
            Deframer::Transparent { de, .. } if de.buffered() > 0 => {
                self.last_rx.map(|t| t + self.idle_gap)
            }
            _ => None,
        }
    }

    /// Gives up a transparent frame that stopped arriving; call `next` afterwards.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.poll_timeout().is_some_and(|t| now >= t) {
            self.give_up_partial();
            // Do not fire again until more bytes arrive.
            self.last_rx = None;
        }
    }

    /// The stream ended (a capture's last record): gives up a transparent frame still
    /// waiting for its body; returns whether there was one.
    pub fn end_of_stream(&mut self) -> bool {
        self.give_up_partial()
    }

    fn give_up_partial(&mut self) -> bool {
        let Deframer::Transparent { de, mirror } = &mut self.deframer else {
            return false;
        };
        let before = de.buffered();
        let dropped = de.channel_idle();
        let consumed = before.saturating_sub(de.buffered()).min(mirror.len());
        mirror.drain(..consumed);
        dropped
    }

    /// Bytes skipped as noise between frames so far (transparent links).
    pub fn skipped_bytes(&self) -> u64 {
        match &self.deframer {
            Deframer::Transparent { de, .. } => de.stats().skipped_bytes,
            Deframer::Kiss(_) => 0,
        }
    }

    /// KISS command frames skipped so far.
    pub fn commands_skipped(&self) -> u64 {
        self.commands
    }

    /// Forgets buffered bytes (the port was reopened).
    pub fn reset(&mut self) {
        match &mut self.deframer {
            Deframer::Kiss(d) => *d = KissDeframer::new(DEFAULT_MAX_FRAME),
            Deframer::Transparent { de, mirror } => {
                de.reset();
                mirror.clear();
            }
        }
        self.last_rx = None;
    }
}

/// KISS commands that set the TNC's channel access from the profile:
/// TXDELAY, PERSIST, SLOTTIME (each one escaped KISS frame).
pub fn kiss_setup(profile: &Profile) -> Vec<Vec<u8>> {
    let mut cmds = Vec::new();
    if let Ok(c) = KissCommand::tx_delay_ms(profile.txdelay_ms) {
        cmds.push(c);
    }
    cmds.push(KissCommand::Persist(profile.persist.min(255) as u8));
    if let Ok(c) = KissCommand::slot_time_ms(profile.slottime_ms) {
        cmds.push(c);
    }
    cmds.into_iter()
        .filter_map(|command| KissFrame { port: 0, command }.to_bytes().ok())
        .collect()
}
