//! What the ARQ puts inside a frame's payload.
//!
//! Integers are big-endian like the rest of the wire formats.
//! The frame layer carries `kind`, `seq` and `payload`; the ARQ owns the
//! payload bytes. Every frame starts with `rem_ms`, the airtime left in the
//! current transmission after this frame (so a receiver that misses the last
//! frame still knows when the sender's carrier drops), and `tx`, the number
//! of the sender's transmission. An ack echoes the number of the last
//! transmission whose end it saw: every frame of that transmission or an
//! earlier one that the ack does not cover was lost. A KISS TNC may hold an
//! ack back behind other frames, so its arrival time proves nothing; the
//! echo does.
//!
//! ```text
//! Data   seq = sequence number of this message
//!        0..2  rem_ms   u16      airtime after this frame, ms (0 = last frame: your turn)
//!        2     tx       u8       transmission number (wraps)
//!        3..   message
//! Ack    seq = next_expected: every message before it has been delivered
//!        0..2  rem_ms   u16
//!        2     tx       u8
//!        3     flags    bit 0 POLL (answer even if you have nothing to send),
//!                       bit 1 END (echo is valid), others 0
//!        4     echo     u8       your last transmission whose end I saw (0 without END)
//!        5..   bitmap   0..=8 bytes, trailing zero bytes omitted; bit i of byte j
//!                       (LSB first) set = seq next_expected + 1 + 8j + i was received
//! ```

use super::seq::Seq;

/// The ARQ's two frame kinds; the frame layer maps them to its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArqKind {
    /// A message; `seq` is its sequence number.
    Data,
    /// An acknowledgement; `seq` is the next sequence number expected.
    Ack,
}

/// One frame as the ARQ sees it (CRC already checked by the frame layer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArqFrame {
    /// Data or ack.
    pub kind: ArqKind,
    /// Data: the message's sequence number; ack: the next one expected.
    pub seq: u16,
    /// The ARQ payload (layout in the module docs).
    pub payload: Vec<u8>,
}

/// Whether a data or ack payload is the last frame of its sender's transmission
/// (`rem_ms` 0: the channel is about to be free); `false` if it is too short to say.
pub fn ends_transmission(payload: &[u8]) -> bool {
    payload.get(..2) == Some(&[0, 0][..])
}

/// Bytes in front of a data frame's message.
pub const DATA_HEADER: usize = 3;
/// Fixed bytes of an ack payload (rem_ms, tx, flags, echo).
pub const ACK_HEADER: usize = 5;
/// The bitmap covers the 63 frames after `next_expected` (the window is 64).
pub const BITMAP_BYTES: usize = 8;
/// Largest ack payload.
pub const ACK_MAX: usize = ACK_HEADER + BITMAP_BYTES;

const FLAG_POLL: u8 = 0x01;
const FLAG_END: u8 = 0x02;

/// A frame payload the ARQ could not make sense of.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// A data payload shorter than `DATA_HEADER`.
    #[error("data frame payload of {0} bytes is shorter than its 3-byte header")]
    DataTooShort(usize),
    /// An ack payload outside `ACK_HEADER..=ACK_MAX` bytes.
    #[error("ack payload of {0} bytes: expected 5..=13")]
    AckLength(usize),
    /// An ack with flag bits other than POLL and END.
    #[error("ack flags {0:#04x} has unknown bits set")]
    AckFlags(u8),
    /// A nonzero echo byte without the END flag.
    #[error("ack echo {0} without the END flag")]
    AckEcho(u8),
    /// The bitmap has a trailing zero byte the sender should have left off.
    #[error("ack bitmap ends in a zero byte (not the shortest form)")]
    AckBitmapNotTrimmed,
}

/// A parsed data frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataRepr<'a> {
    /// Sequence number of the message.
    pub seq: Seq,
    /// Airtime of the sender's transmission after this frame, in ms; 0 = last frame.
    pub rem_ms: u16,
    /// Number of the sender's transmission (wraps).
    pub tx: u8,
    /// The message carried.
    pub message: &'a [u8],
}

impl<'a> DataRepr<'a> {
    /// Reads a data payload that came with frame sequence number `seq`.
    pub fn parse(seq: u16, payload: &'a [u8]) -> Result<Self, WireError> {
        if payload.len() < DATA_HEADER {
            return Err(WireError::DataTooShort(payload.len()));
        }
        Ok(DataRepr {
            seq: Seq(seq),
            rem_ms: u16::from_be_bytes([payload[0], payload[1]]),
            tx: payload[2],
            message: &payload[DATA_HEADER..],
        })
    }

    /// Payload bytes of the frame `emit` builds.
    pub fn buffer_len(&self) -> usize {
        DATA_HEADER + self.message.len()
    }

    /// The frame, with `rem_ms` and `tx` as given here.
    pub fn emit(&self) -> ArqFrame {
        let mut payload = Vec::with_capacity(self.buffer_len());
        payload.extend_from_slice(&self.rem_ms.to_be_bytes());
        payload.push(self.tx);
        payload.extend_from_slice(self.message);
        ArqFrame {
            kind: ArqKind::Data,
            seq: self.seq.0,
            payload,
        }
    }
}

/// A parsed acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckRepr {
    /// Every message before this one has been delivered.
    pub next_expected: Seq,
    /// Airtime of the sender's transmission after this frame, in ms; 0 = last frame.
    pub rem_ms: u16,
    /// Number of the sender's transmission (wraps).
    pub tx: u8,
    /// Answer even with nothing to send.
    pub poll: bool,
    /// The receiver's last transmission whose end the sender of the ack saw.
    pub echo: Option<u8>,
    /// Bit i set = `next_expected + 1 + i` received (i < 63).
    pub received: u64,
}

impl AckRepr {
    /// Reads an ack payload that came with frame sequence number `seq`.
    pub fn parse(seq: u16, payload: &[u8]) -> Result<Self, WireError> {
        if !(ACK_HEADER..=ACK_MAX).contains(&payload.len()) {
            return Err(WireError::AckLength(payload.len()));
        }
        let flags = payload[3];
        if flags & !(FLAG_POLL | FLAG_END) != 0 {
            return Err(WireError::AckFlags(flags));
        }
        let echo = payload[4];
        if flags & FLAG_END == 0 && echo != 0 {
            return Err(WireError::AckEcho(echo));
        }
        let bitmap = &payload[ACK_HEADER..];
        if bitmap.last() == Some(&0) {
            return Err(WireError::AckBitmapNotTrimmed);
        }
        let mut bytes = [0u8; 8];
        bytes[..bitmap.len()].copy_from_slice(bitmap);
        let received = u64::from_le_bytes(bytes);
        Ok(AckRepr {
            next_expected: Seq(seq),
            rem_ms: u16::from_be_bytes([payload[0], payload[1]]),
            tx: payload[2],
            poll: flags & FLAG_POLL != 0,
            echo: (flags & FLAG_END != 0).then_some(echo),
            // Bit 63 would name a frame outside the window: ignore it.
            received: received & (u64::MAX >> 1),
        })
    }

    fn bitmap_len(&self) -> usize {
        let received = self.received & (u64::MAX >> 1);
        (64 - received.leading_zeros() as usize).div_ceil(8)
    }

    /// Payload bytes of the frame `emit` builds (the bitmap trimmed of zero bytes).
    pub fn buffer_len(&self) -> usize {
        ACK_HEADER + self.bitmap_len()
    }

    /// The frame, with `rem_ms` and `tx` as given here.
    pub fn emit(&self) -> ArqFrame {
        let mut payload = Vec::with_capacity(self.buffer_len());
        payload.extend_from_slice(&self.rem_ms.to_be_bytes());
        payload.push(self.tx);
        let mut flags = 0;
        if self.poll {
            flags |= FLAG_POLL;
        }
        if self.echo.is_some() {
            flags |= FLAG_END;
        }
        payload.push(flags);
        payload.push(self.echo.unwrap_or(0));
        // The bitmap is a little-endian u64 cut short: byte j holds seqs 8j+1..8j+8.
        let received = self.received & (u64::MAX >> 1);
        payload.extend_from_slice(&received.to_le_bytes()[..self.bitmap_len()]);
        ArqFrame {
            kind: ArqKind::Ack,
            seq: self.next_expected.0,
            payload,
        }
    }
}

/// Set the `rem_ms` and `tx` fields of an already built frame (both kinds
/// keep them first).
pub(crate) fn set_header(frame: &mut ArqFrame, rem_ms: u16, tx: u8) {
    frame.payload[..2].copy_from_slice(&rem_ms.to_be_bytes());
    frame.payload[2] = tx;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_frame_of_a_transmission_is_known_from_its_payload() {
        let data = |rem_ms| DataRepr {
            seq: Seq(1),
            rem_ms,
            tx: 3,
            message: b"m",
        };
        assert!(ends_transmission(&data(0).emit().payload));
        assert!(!ends_transmission(&data(0x0100).emit().payload));
        assert!(!ends_transmission(&data(1).emit().payload));
        let ack = |rem_ms| AckRepr {
            next_expected: Seq(2),
            rem_ms,
            tx: 4,
            poll: false,
            echo: None,
            received: 0,
        };
        assert!(ends_transmission(&ack(0).emit().payload));
        assert!(!ends_transmission(&ack(40).emit().payload));
        assert!(!ends_transmission(&[0]));
    }

    #[test]
    fn data_bytes() {
        let f = DataRepr {
            seq: Seq(0x1234),
            rem_ms: 0x0102,
            tx: 9,
            message: b"hi",
        }
        .emit();
        assert_eq!(f.kind, ArqKind::Data);
        assert_eq!(f.seq, 0x1234);
        assert_eq!(f.payload, [0x01, 0x02, 0x09, b'h', b'i']);
        let d = DataRepr::parse(0x1234, &f.payload).unwrap();
        assert_eq!((d.rem_ms, d.tx, d.message), (0x0102, 9, &b"hi"[..]));
        assert_eq!(d.buffer_len(), 5);
        // An empty message is fine, a missing header is not.
        assert_eq!(DataRepr::parse(1, &[0, 0, 0]).unwrap().message, b"");
        assert_eq!(DataRepr::parse(1, &[7, 0]), Err(WireError::DataTooShort(2)));
        assert_eq!(DataRepr::parse(1, &[]), Err(WireError::DataTooShort(0)));
    }

    #[test]
    fn ack_bytes() {
        // Nothing beyond next_expected, no echo: 5 bytes.
        let a = AckRepr {
            next_expected: Seq(7),
            rem_ms: 0,
            tx: 1,
            poll: false,
            echo: None,
            received: 0,
        };
        let f = a.emit();
        assert_eq!((f.kind, f.seq), (ArqKind::Ack, 7));
        assert_eq!(f.payload, [0, 0, 1, 0, 0]);
        assert_eq!(AckRepr::parse(7, &f.payload).unwrap(), a);

        // next_expected 7, received 9 (bit 1) and 16 (bit 8), poll, echo 200.
        let a = AckRepr {
            next_expected: Seq(7),
            rem_ms: 300,
            tx: 3,
            poll: true,
            echo: Some(200),
            received: (1 << 1) | (1 << 8),
        };
        let f = a.emit();
        assert_eq!(
            f.payload,
            [0x01, 0x2c, 0x03, 0x03, 200, 0b0000_0010, 0b0000_0001]
        );
        assert_eq!(AckRepr::parse(7, &f.payload).unwrap(), a);
        assert_eq!(a.buffer_len(), 7);

        // Full bitmap: 13 bytes; echo 0 is a valid echo with END.
        let a = AckRepr {
            next_expected: Seq(65535),
            rem_ms: 1,
            tx: 255,
            poll: false,
            echo: Some(0),
            received: u64::MAX >> 1,
        };
        let f = a.emit();
        assert_eq!(f.payload.len(), ACK_MAX);
        assert_eq!(f.payload[3], 0x02);
        assert_eq!(f.payload[ACK_MAX - 1], 0x7f);
        assert_eq!(AckRepr::parse(65535, &f.payload).unwrap(), a);
    }

    #[test]
    fn bad_ack_payloads_are_refused() {
        assert_eq!(AckRepr::parse(0, &[0; 4]), Err(WireError::AckLength(4)));
        assert_eq!(AckRepr::parse(0, &[0; 14]), Err(WireError::AckLength(14)));
        assert_eq!(
            AckRepr::parse(0, &[0, 0, 0, 4, 0]),
            Err(WireError::AckFlags(4))
        );
        assert_eq!(
            AckRepr::parse(0, &[0, 0, 0, 0, 5]),
            Err(WireError::AckEcho(5))
        );
        assert_eq!(
            AckRepr::parse(0, &[0, 0, 0, 0, 0, 1, 0]),
            Err(WireError::AckBitmapNotTrimmed)
        );
        // Bit 63 is outside the window and dropped.
        let mut p = vec![0, 0, 0, 0, 0];
        p.extend_from_slice(&(1u64 << 63 | 1).to_le_bytes());
        assert_eq!(AckRepr::parse(0, &p).unwrap().received, 1);
    }

    #[test]
    fn header_can_be_patched() {
        let mut f = DataRepr {
            seq: Seq(1),
            rem_ms: 0,
            tx: 0,
            message: b"x",
        }
        .emit();
        set_header(&mut f, 513, 42);
        assert_eq!(f.payload, [0x02, 0x01, 42, b'x']);
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn parsing_arbitrary_bytes_never_panics(seq: u16, bytes in proptest::collection::vec(any::<u8>(), 0..32)) {
            let _ = DataRepr::parse(seq, &bytes);
            if let Ok(a) = AckRepr::parse(seq, &bytes) {
                // Whatever parses re-emits to the same bytes (one encoding per value),
                // unless it named frame 63 outside the window.
                if bytes.len() < ACK_MAX || bytes[ACK_MAX - 1] & 0x80 == 0 {
                    prop_assert_eq!(a.emit().payload, bytes);
                }
            }
        }

        #[test]
        fn ack_roundtrip(seq: u16, rem_ms: u16, tx: u8, poll: bool, echo: Option<u8>, received: u64) {
            let a = AckRepr { next_expected: Seq(seq), rem_ms, tx, poll, echo, received: received >> 1 };
            let f = a.emit();
            prop_assert_eq!(f.payload.len(), a.buffer_len());
            prop_assert_eq!(AckRepr::parse(f.seq, &f.payload).unwrap(), a);
        }

        #[test]
        fn data_roundtrip(seq: u16, rem_ms: u16, tx: u8, message in proptest::collection::vec(any::<u8>(), 0..64)) {
            let d = DataRepr { seq: Seq(seq), rem_ms, tx, message: &message };
            let f = d.emit();
            prop_assert_eq!(DataRepr::parse(f.seq, &f.payload).unwrap(), d);
        }
    }
}
