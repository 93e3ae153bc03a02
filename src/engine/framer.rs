//! The link framing chosen by the profile, as one byte-stream codec: KISS (with
//! AX.25 UI wrapping on amateur profiles) or transparent (sync word, protected
//! length, Reed-Solomon). Pure; time comes in as `now` only to notice a quiet
//! channel on transparent links.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::frame::ax25::Callsign;
use crate::frame::kiss::{KissCommand, KissDeframer, KissFrame, DEFAULT_MAX_FRAME};
use crate::frame::link::{self, Ax25Addresses};
use crate::frame::transparent::{self, TransparentDeframer, HEADER_LEN};
use crate::frame::{DecodeInfo, FecParams, Frame};
use crate::profile::{Framing, Profile};

/// A frame that decoded, with what the link told about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub frame: Frame,
    pub info: DecodeInfo,
    /// AX.25 (source, destination) on amateur KISS links.
    pub ax25: Option<(Callsign, Callsign)>,
}

/// One frame off the link: its raw on-air bytes (for captures; empty for a
/// transparent frame that failed, whose extent is unknown) and the decode result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RxFrame {
    pub bytes: Vec<u8>,
    pub decoded: Result<Decoded, String>,
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
    deframer: Deframer,
    fec: Option<FecParams>,
    ax25: bool,
    last_rx: Option<Instant>,
    /// Quiet time after which a transparent frame still waiting for bytes is given up.
    idle_gap: Duration,
}

/// Reed-Solomon parameters of a profile, checked.
pub fn fec_params(p: &Profile) -> Result<Option<FecParams>, crate::frame::FecError> {
    let Some(f) = p.fec else { return Ok(None) };
    let params = FecParams {
        parity_bytes_per_block: f.parity as usize,
        block_data_len: f.block as usize,
        interleave: f.interleave,
    };
    params.validate()?;
    Ok(Some(params))
}

impl LinkFramer {
    pub fn new(profile: &Profile) -> Result<LinkFramer, crate::frame::FecError> {
        let fec = fec_params(profile)?;
        let deframer = match profile.framing {
            Framing::Kiss => Deframer::Kiss(KissDeframer::new(DEFAULT_MAX_FRAME)),
            Framing::Transparent => Deframer::Transparent {
                de: TransparentDeframer::new(fec),
                mirror: VecDeque::new(),
            },
        };
        // Within one transmission bytes arrive back to back; a gap of 100 ms plus
        // the time of 64 bytes is OS and pty latency at worst, so the carrier is down.
        let byte_time = Duration::from_micros(8_000_000 / u64::from(profile.bitrate.max(1)));
        Ok(LinkFramer {
            deframer,
            fec,
            ax25: profile.framing == Framing::Kiss && profile.amateur,
            last_rx: None,
            idle_gap: Duration::from_millis(100) + byte_time * 64,
        })
    }

    /// Whether payloads go inside AX.25 UI frames.
    pub fn uses_ax25(&self) -> bool {
        self.ax25
    }

    pub fn fec(&self) -> Option<&FecParams> {
        self.fec.as_ref()
    }

    /// Bytes for one frame on this link.
    pub fn encode(&self, frame: &Frame, addrs: Option<&Ax25Addresses>) -> Result<Vec<u8>, String> {
        match &self.deframer {
            Deframer::Kiss(_) => {
                let addrs = if self.ax25 { addrs } else { None };
                if self.ax25 && addrs.is_none() {
                    return Err("an AX.25 link needs both callsigns".into());
                }
                link::encode_kiss(frame, self.fec.as_ref(), addrs, 0).map_err(|e| e.to_string())
            }
            Deframer::Transparent { .. } => {
                transparent::encode(frame, self.fec.as_ref()).map_err(|e| e.to_string())
            }
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
        let fec = self.fec;
        let ax25 = self.ax25;
        match &mut self.deframer {
            Deframer::Kiss(d) => loop {
                let kf = match d.next()? {
                    Ok(kf) => kf,
                    Err(e) => {
                        return Some(RxFrame {
                            bytes: Vec::new(),
                            decoded: Err(format!("KISS: {e}")),
                        })
                    }
                };
                // TNC commands echoed back are not frames.
                if !matches!(kf.command, KissCommand::Data(_)) {
                    continue;
                }
                let bytes = kf.to_bytes().unwrap_or_default();
                let decoded = link::decode_kiss(&kf, fec.as_ref(), ax25)
                    .map(|r| Decoded {
                        frame: r.frame,
                        info: r.info,
                        ax25: r.ax25,
                    })
                    .map_err(|e| e.to_string());
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
                                ax25: None,
                            }),
                        })
                    }
                    Some(Err(e)) => Some(RxFrame {
                        bytes: Vec::new(),
                        decoded: Err(e.to_string()),
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
        let due = self.poll_timeout().is_some_and(|t| now >= t);
        if let Deframer::Transparent { de, mirror } = &mut self.deframer {
            if due {
                let before = de.buffered();
                de.channel_idle();
                let consumed = before.saturating_sub(de.buffered()).min(mirror.len());
                mirror.drain(..consumed);
                // Do not fire again until more bytes arrive.
                self.last_rx = None;
            }
        }
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
