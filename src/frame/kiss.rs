//! KISS framing (K9NG/KA9Q): `FEND type data... FEND`, with FEND/FESC escaped.
//! The type byte is `port << 4 | command`.

use thiserror::Error;

/// Frame end: starts and ends every frame.
pub const FEND: u8 = 0xC0;
/// Frame escape: the next byte is TFEND or TFESC.
pub const FESC: u8 = 0xDB;
/// After FESC: stands for a FEND data byte.
pub const TFEND: u8 = 0xDC;
/// After FESC: stands for a FESC data byte.
pub const TFESC: u8 = 0xDD;

/// Largest unescaped KISS frame (type byte + data) the deframer accepts. Dire Wolf
/// takes data frames up to 2123 bytes; we leave room for FEC-heavy frames.
pub const DEFAULT_MAX_FRAME: usize = 8192;

/// A KISS command with its argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KissCommand {
    /// 0: a frame to send / a received frame.
    Data(Vec<u8>),
    /// 1: keying-to-data delay, units of 10 ms.
    TxDelay(u8),
    /// 2: p-persistence, p = (value + 1) / 256.
    Persist(u8),
    /// 3: slot interval, units of 10 ms.
    SlotTime(u8),
    /// 4: obsolete TX tail, units of 10 ms.
    TxTail(u8),
    /// 5: 0 = half duplex, nonzero = full duplex.
    FullDuplex(bool),
    /// 6: TNC-specific.
    SetHardware(Vec<u8>),
    /// Any other command nibble with its bytes.
    Unknown(u8, Vec<u8>),
}

/// Command byte 0xFF: leave KISS mode. It has no port nibble.
pub const RETURN: u8 = 0xFF;

impl KissCommand {
    fn code(&self) -> u8 {
        match self {
            KissCommand::Data(_) => 0,
            KissCommand::TxDelay(_) => 1,
            KissCommand::Persist(_) => 2,
            KissCommand::SlotTime(_) => 3,
            KissCommand::TxTail(_) => 4,
            KissCommand::FullDuplex(_) => 5,
            KissCommand::SetHardware(_) => 6,
            KissCommand::Unknown(c, _) => *c & 0x0F,
        }
    }

    fn body(&self) -> std::borrow::Cow<'_, [u8]> {
        use std::borrow::Cow;
        match self {
            KissCommand::Data(d) | KissCommand::SetHardware(d) | KissCommand::Unknown(_, d) => {
                Cow::Borrowed(d)
            }
            KissCommand::TxDelay(v)
            | KissCommand::Persist(v)
            | KissCommand::SlotTime(v)
            | KissCommand::TxTail(v) => Cow::Owned(vec![*v]),
            KissCommand::FullDuplex(f) => Cow::Owned(vec![u8::from(*f)]),
        }
    }

    /// TXDELAY from milliseconds (rounded up to 10 ms units).
    pub fn tx_delay_ms(ms: u32) -> Result<KissCommand, KissError> {
        Ok(KissCommand::TxDelay(ten_ms_units(ms)?))
    }

    /// SLOTTIME from milliseconds (rounded up to 10 ms units).
    pub fn slot_time_ms(ms: u32) -> Result<KissCommand, KissError> {
        Ok(KissCommand::SlotTime(ten_ms_units(ms)?))
    }
}

fn ten_ms_units(ms: u32) -> Result<u8, KissError> {
    u8::try_from(ms.div_ceil(10)).map_err(|_| KissError::ParamOutOfRange(ms))
}

/// One KISS frame: port 0..=15 and a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KissFrame {
    /// TNC port 0..=15.
    pub port: u8,
    /// The command and its argument.
    pub command: KissCommand,
}

/// Bad KISS bytes from the TNC, or a frame or setting that cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum KissError {
    /// A frame longer than the deframer's limit (skipped to the next FEND).
    #[error("KISS frame longer than {max} bytes")]
    TooLong {
        /// The limit, unescaped bytes.
        max: usize,
    },
    /// FESC followed by something other than TFEND or TFESC.
    #[error("KISS escape FESC followed by {0:#04x}, not TFEND/TFESC")]
    BadEscape(u8),
    /// A command that takes one byte came with another length.
    #[error("KISS command {command} needs a 1-byte argument, got {len} bytes")]
    BadArgument {
        /// The command nibble.
        command: u8,
        /// Bytes it came with.
        len: usize,
    },
    /// A port above 15.
    #[error("KISS port {0} out of range 0..=15")]
    BadPort(u8),
    /// A TXDELAY or SLOTTIME above 2550 ms.
    #[error("KISS timing value of {0} ms does not fit in 10 ms units up to 2550 ms")]
    ParamOutOfRange(u32),
}

impl KissFrame {
    /// A data frame for `port`.
    pub fn data(port: u8, data: Vec<u8>) -> KissFrame {
        KissFrame {
            port,
            command: KissCommand::Data(data),
        }
    }

    /// Parses an unescaped frame (type byte + body). `None` for an empty frame.
    pub fn parse(raw: &[u8]) -> Result<Option<KissFrame>, KissError> {
        let Some((&ty, body)) = raw.split_first() else {
            return Ok(None);
        };
        if ty == RETURN {
            // Only sent to a TNC; seen on input it is noise: carry it as Unknown.
            return Ok(Some(KissFrame {
                port: 0x0F,
                command: KissCommand::Unknown(0x0F, body.to_vec()),
            }));
        }
        let (port, code) = (ty >> 4, ty & 0x0F);
        let one = || match body {
            [v] => Ok(*v),
            _ => Err(KissError::BadArgument {
                command: code,
                len: body.len(),
            }),
        };
        let command = match code {
            0 => KissCommand::Data(body.to_vec()),
            1 => KissCommand::TxDelay(one()?),
            2 => KissCommand::Persist(one()?),
            3 => KissCommand::SlotTime(one()?),
            4 => KissCommand::TxTail(one()?),
            5 => KissCommand::FullDuplex(one()? != 0),
            6 => KissCommand::SetHardware(body.to_vec()),
            c => KissCommand::Unknown(c, body.to_vec()),
        };
        Ok(Some(KissFrame { port, command }))
    }

    /// Escaped length on the wire including both FENDs.
    pub fn buffer_len(&self) -> usize {
        let body = self.command.body();
        3 + body.iter().filter(|&&b| b == FEND || b == FESC).count()
            + body.len()
            + usize::from(matches!(self.type_byte(), FEND | FESC))
    }

    fn type_byte(&self) -> u8 {
        (self.port << 4) | self.command.code()
    }

    /// Escapes into `out`: FEND, type, data, FEND (the leading FEND flushes line noise).
    pub fn emit(&self, out: &mut Vec<u8>) -> Result<(), KissError> {
        if self.port > 15 {
            return Err(KissError::BadPort(self.port));
        }
        out.reserve(self.buffer_len());
        out.push(FEND);
        escape_into(&[self.type_byte()], out);
        escape_into(&self.command.body(), out);
        out.push(FEND);
        Ok(())
    }

    /// The escaped bytes (see `emit`).
    pub fn to_bytes(&self) -> Result<Vec<u8>, KissError> {
        let mut v = Vec::new();
        self.emit(&mut v)?;
        Ok(v)
    }
}

/// The bytes that leave KISS mode (`FEND 0xFF FEND`).
pub fn return_command() -> [u8; 3] {
    [FEND, RETURN, FEND]
}

fn escape_into(data: &[u8], out: &mut Vec<u8>) {
    for &b in data {
        match b {
            FEND => out.extend_from_slice(&[FESC, TFEND]),
            FESC => out.extend_from_slice(&[FESC, TFESC]),
            _ => out.push(b),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the first FEND, or discarding after an error: skip to the next FEND.
    Hunt,
    InFrame,
    Escaped,
}

/// Byte-stream KISS deframer. Push bytes with `push`, then call `next` until `None`.
/// Bytes before the first FEND are dropped (we may connect mid-frame).
#[derive(Debug, Clone)]
pub struct KissDeframer {
    input: std::collections::VecDeque<u8>,
    frame: Vec<u8>,
    state: State,
    max: usize,
}

impl Default for KissDeframer {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME)
    }
}

impl KissDeframer {
    /// A deframer that refuses frames over `max_frame` unescaped bytes.
    pub fn new(max_frame: usize) -> Self {
        KissDeframer {
            input: Default::default(),
            frame: Vec::new(),
            state: State::Hunt,
            max: max_frame,
        }
    }

    /// Bytes from the TNC.
    pub fn push(&mut self, bytes: &[u8]) {
        self.input.extend(bytes);
    }

    /// Next complete frame, an error (the deframer then skips to the next FEND), or
    /// `None` when more bytes are needed.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<Result<KissFrame, KissError>> {
        while let Some(b) = self.input.pop_front() {
            match (self.state, b) {
                (State::Hunt, FEND) => {
                    self.frame.clear();
                    self.state = State::InFrame;
                }
                (State::Hunt, _) => {}
                (State::InFrame, FEND) => {
                    if self.frame.is_empty() {
                        continue;
                    }
                    let raw = std::mem::take(&mut self.frame);
                    match KissFrame::parse(&raw) {
                        Ok(Some(f)) => return Some(Ok(f)),
                        Ok(None) => {}
                        Err(e) => return Some(Err(e)),
                    }
                }
                (State::InFrame, FESC) => self.state = State::Escaped,
                (State::Escaped, TFEND | TFESC) => {
                    let v = if b == TFEND { FEND } else { FESC };
                    self.state = State::InFrame;
                    if let Some(e) = self.add(v) {
                        return Some(Err(e));
                    }
                }
                (State::Escaped, _) => {
                    self.frame.clear();
                    // A FEND right after FESC still ends the broken frame.
                    self.state = if b == FEND {
                        State::InFrame
                    } else {
                        State::Hunt
                    };
                    return Some(Err(KissError::BadEscape(b)));
                }
                (State::InFrame, _) => {
                    if let Some(e) = self.add(b) {
                        return Some(Err(e));
                    }
                }
            }
        }
        None
    }

    fn add(&mut self, b: u8) -> Option<KissError> {
        if self.frame.len() >= self.max {
            self.frame.clear();
            self.state = State::Hunt;
            return Some(KissError::TooLong { max: self.max });
        }
        self.frame.push(b);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn drain(d: &mut KissDeframer) -> Vec<Result<KissFrame, KissError>> {
        std::iter::from_fn(|| d.next()).collect()
    }

    #[test]
    fn emit_literal() {
        let f = KissFrame::data(0, vec![0x01, FEND, 0x02, FESC, 0x03]);
        let bytes = f.to_bytes().unwrap();
        assert_eq!(
            bytes,
            [FEND, 0x00, 0x01, FESC, TFEND, 0x02, FESC, TFESC, 0x03, FEND]
        );
        assert_eq!(bytes.len(), f.buffer_len());
        let port1 = KissFrame::data(1, vec![0xAA]);
        assert_eq!(port1.to_bytes().unwrap(), [FEND, 0x10, 0xAA, FEND]);
    }

    #[test]
    fn tnc_parameter_commands() {
        let cmd = |c| {
            KissFrame {
                port: 0,
                command: c,
            }
            .to_bytes()
            .unwrap()
        };
        assert_eq!(
            cmd(KissCommand::tx_delay_ms(300).unwrap()),
            [FEND, 0x01, 30, FEND]
        );
        assert_eq!(cmd(KissCommand::Persist(63)), [FEND, 0x02, 63, FEND]);
        assert_eq!(
            cmd(KissCommand::slot_time_ms(100).unwrap()),
            [FEND, 0x03, 10, FEND]
        );
        assert_eq!(cmd(KissCommand::FullDuplex(false)), [FEND, 0x05, 0, FEND]);
        assert_eq!(return_command(), [FEND, 0xFF, FEND]);
        assert_eq!(
            KissCommand::tx_delay_ms(2551),
            Err(KissError::ParamOutOfRange(2551))
        );
        assert_eq!(
            KissCommand::tx_delay_ms(2550),
            Ok(KissCommand::TxDelay(255))
        );
        // A type byte that needs escaping: port 12, command 0 = 0xC0.
        let f = KissFrame::data(12, vec![1]);
        let b = f.to_bytes().unwrap();
        assert_eq!(b, [FEND, FESC, TFEND, 1, FEND]);
        assert_eq!(b.len(), f.buffer_len());
        assert_eq!(
            KissFrame::data(16, vec![]).to_bytes(),
            Err(KissError::BadPort(16))
        );
    }

    #[test]
    fn parse_literal_stream() {
        let mut d = KissDeframer::default();
        // Noise before the first FEND, two frames sharing a FEND, empty frames.
        d.push(&[
            0x55, 0x66, FEND, FEND, 0x00, b'a', FESC, TFEND, FEND, 0x01, 50,
        ]);
        let got = drain(&mut d);
        assert_eq!(got, vec![Ok(KissFrame::data(0, vec![b'a', FEND]))]);
        d.push(&[FEND]);
        assert_eq!(
            drain(&mut d),
            vec![Ok(KissFrame {
                port: 0,
                command: KissCommand::TxDelay(50)
            })]
        );
    }

    #[test]
    fn bytes_split_anywhere() {
        let bytes = KissFrame::data(3, vec![FEND, FESC, 7, 8])
            .to_bytes()
            .unwrap();
        for cut in 0..bytes.len() {
            let mut d = KissDeframer::default();
            d.push(&bytes[..cut]);
            let first = drain(&mut d);
            d.push(&bytes[cut..]);
            let mut all = first;
            all.extend(drain(&mut d));
            assert_eq!(all, vec![Ok(KissFrame::data(3, vec![FEND, FESC, 7, 8]))]);
        }
    }

    #[test]
    fn errors_resync_at_next_fend() {
        let mut d = KissDeframer::default();
        d.push(&[FEND, 0x00, 1, FESC, 0x42, 2, 3, FEND, 0x00, 9, FEND]);
        assert_eq!(
            drain(&mut d),
            vec![
                Err(KissError::BadEscape(0x42)),
                Ok(KissFrame::data(0, vec![9]))
            ]
        );
        d.push(&[FEND, 0x01, 1, 2, FEND]);
        assert_eq!(
            drain(&mut d),
            vec![Err(KissError::BadArgument { command: 1, len: 2 })]
        );
    }

    #[test]
    fn oversize_frame_capped() {
        let mut d = KissDeframer::new(4);
        d.push(&[FEND, 0, 1, 2, 3, 4, 5, 6, FEND, 0, 1, FEND]);
        assert_eq!(
            drain(&mut d),
            vec![
                Err(KissError::TooLong { max: 4 }),
                Ok(KissFrame::data(0, vec![1]))
            ]
        );
    }

    proptest! {
        #![proptest_config(crate::frame::proptest_config(256))]

        #[test]
        fn round_trip(frames in proptest::collection::vec((0u8..16, proptest::collection::vec(any::<u8>(), 0..300)), 0..8)) {
            let mut d = KissDeframer::default();
            let mut wire = Vec::new();
            for (port, data) in &frames {
                KissFrame::data(*port, data.clone()).emit(&mut wire).unwrap();
            }
            d.push(&wire);
            let got: Vec<_> = drain(&mut d).into_iter().map(|r| r.unwrap()).collect();
            let want: Vec<_> = frames.into_iter().map(|(p, data)| KissFrame::data(p, data)).collect();
            prop_assert_eq!(got, want);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let mut d = KissDeframer::new(64);
            d.push(&bytes);
            for f in std::iter::from_fn(|| d.next()).flatten() {
                prop_assert!(f.port < 16);
            }
        }
    }
}
