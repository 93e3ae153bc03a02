//! What the ARQ puts inside a frame's payload.
//!
//! Integers are big-endian like the rest of the wire formats.
//! The frame layer carries `kind`, `seq` and `payload`; the ARQ owns the
//! payload bytes. Both kinds start with `rem_ms`, the airtime left in the
//! current transmission after this frame, so a receiver that misses the last
//! frame still knows when the sender's carrier drops and it may answer.
//!
//! ```text
//! Data   seq = sequence number of this message
//!        0..2  rem_ms   u16 BE   airtime after this frame, ms (0 = last frame: your turn)
//!        2..   message
//! Ack    seq = next_expected: every message before it has been delivered
//!        0..2  rem_ms   u16 BE
//!        2     flags    bit 0 POLL (answer even if you have nothing to send), others 0
//!        3..   bitmap   0..=8 bytes, trailing zero bytes omitted; bit i of byte j
//!                       (LSB first) set = seq next_expected + 1 + 8j + i was received
//! ```

use super::seq::Seq;

/// The ARQ's two frame kinds; the frame layer maps them to its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArqKind {
    Data,
    Ack,
}

/// One frame as the ARQ sees it (CRC already checked by the frame layer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArqFrame {
    pub kind: ArqKind,
    pub seq: u16,
    pub payload: Vec<u8>,
}

/// Bytes in front of a data frame's message.
pub const DATA_HEADER: usize = 2;
/// Fixed bytes of an ack payload (rem_ms, flags).
pub const ACK_HEADER: usize = 3;
/// The bitmap covers the 63 frames after `next_expected` (the window is 64).
pub const BITMAP_BYTES: usize = 8;
/// Largest ack payload.
pub const ACK_MAX: usize = ACK_HEADER + BITMAP_BYTES;

const FLAG_POLL: u8 = 0x01;

/// A frame payload the ARQ could not make sense of.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("data frame payload of {0} bytes is shorter than its 2-byte header")]
    DataTooShort(usize),
    #[error("ack payload of {0} bytes: expected 3..=11")]
    AckLength(usize),
    #[error("ack flags {0:#04x} has unknown bits set")]
    AckFlags(u8),
    #[error("ack bitmap ends in a zero byte (not the shortest form)")]
    AckBitmapNotTrimmed,
}

/// A parsed data frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataRepr<'a> {
    pub seq: Seq,
    pub rem_ms: u16,
    pub message: &'a [u8],
}

impl<'a> DataRepr<'a> {
    pub fn parse(seq: u16, payload: &'a [u8]) -> Result<Self, WireError> {
        if payload.len() < DATA_HEADER {
            return Err(WireError::DataTooShort(payload.len()));
        }
        Ok(DataRepr {
            seq: Seq(seq),
            rem_ms: u16::from_be_bytes([payload[0], payload[1]]),
            message: &payload[DATA_HEADER..],
        })
    }

    pub fn buffer_len(&self) -> usize {
        DATA_HEADER + self.message.len()
    }

    pub fn emit(&self) -> ArqFrame {
        let mut payload = Vec::with_capacity(self.buffer_len());
        payload.extend_from_slice(&self.rem_ms.to_be_bytes());
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
    pub next_expected: Seq,
    pub rem_ms: u16,
    pub poll: bool,
    /// Bit i set = `next_expected + 1 + i` received (i < 63).
    pub received: u64,
}

impl AckRepr {
    pub fn parse(seq: u16, payload: &[u8]) -> Result<Self, WireError> {
        if !(ACK_HEADER..=ACK_MAX).contains(&payload.len()) {
            return Err(WireError::AckLength(payload.len()));
        }
        let flags = payload[2];
        if flags & !FLAG_POLL != 0 {
            return Err(WireError::AckFlags(flags));
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
            poll: flags & FLAG_POLL != 0,
            // Bit 63 would name a frame outside the window: ignore it.
            received: received & (u64::MAX >> 1),
        })
    }

    fn bitmap_len(&self) -> usize {
        let received = self.received & (u64::MAX >> 1);
        (64 - received.leading_zeros() as usize).div_ceil(8)
    }

    pub fn buffer_len(&self) -> usize {
        ACK_HEADER + self.bitmap_len()
    }

    pub fn emit(&self) -> ArqFrame {
        let mut payload = Vec::with_capacity(self.buffer_len());
        payload.extend_from_slice(&self.rem_ms.to_be_bytes());
        payload.push(if self.poll { FLAG_POLL } else { 0 });
        let received = self.received & (u64::MAX >> 1);
        payload.extend_from_slice(&received.to_le_bytes()[..self.bitmap_len()]);
        ArqFrame {
            kind: ArqKind::Ack,
            seq: self.next_expected.0,
            payload,
        }
    }
}

/// Set the `rem_ms` field of an already built frame (both kinds keep it first).
pub(crate) fn set_rem_ms(frame: &mut ArqFrame, rem_ms: u16) {
    frame.payload[..2].copy_from_slice(&rem_ms.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_bytes() {
        let f = DataRepr {
            seq: Seq(0x1234),
            rem_ms: 0x0102,
            message: b"hi",
        }
        .emit();
        assert_eq!(f.kind, ArqKind::Data);
        assert_eq!(f.seq, 0x1234);
        assert_eq!(f.payload, [0x01, 0x02, b'h', b'i']);
        let d = DataRepr::parse(0x1234, &f.payload).unwrap();
        assert_eq!((d.rem_ms, d.message), (0x0102, &b"hi"[..]));
        assert_eq!(d.buffer_len(), 4);
        // An empty message is fine, a missing header is not.
        assert_eq!(DataRepr::parse(1, &[0, 0]).unwrap().message, b"");
        assert_eq!(DataRepr::parse(1, &[7]), Err(WireError::DataTooShort(1)));
        assert_eq!(DataRepr::parse(1, &[]), Err(WireError::DataTooShort(0)));
    }

    #[test]
    fn ack_bytes() {
        // Nothing beyond next_expected: 3 bytes.
        let a = AckRepr {
            next_expected: Seq(7),
            rem_ms: 0,
            poll: false,
            received: 0,
        };
        let f = a.emit();
        assert_eq!((f.kind, f.seq), (ArqKind::Ack, 7));
        assert_eq!(f.payload, [0, 0, 0]);
        assert_eq!(AckRepr::parse(7, &f.payload).unwrap(), a);

        // 8 and 10 missing... i.e. next_expected 7, received 9 (bit 1) and 16 (bit 8), poll.
        let a = AckRepr {
            next_expected: Seq(7),
            rem_ms: 300,
            poll: true,
            received: (1 << 1) | (1 << 8),
        };
        let f = a.emit();
        assert_eq!(f.payload, [0x01, 0x2c, 0x01, 0b0000_0010, 0b0000_0001]);
        assert_eq!(AckRepr::parse(7, &f.payload).unwrap(), a);
        assert_eq!(a.buffer_len(), 5);

        // Full bitmap: 11 bytes.
        let a = AckRepr {
            next_expected: Seq(65535),
            rem_ms: 1,
            poll: false,
            received: u64::MAX >> 1,
        };
        let f = a.emit();
        assert_eq!(f.payload.len(), ACK_MAX);
        assert_eq!(f.payload[ACK_MAX - 1], 0x7f);
        assert_eq!(AckRepr::parse(65535, &f.payload).unwrap(), a);
    }

    #[test]
    fn bad_ack_payloads_are_refused() {
        assert_eq!(AckRepr::parse(0, &[0, 0]), Err(WireError::AckLength(2)));
        assert_eq!(AckRepr::parse(0, &[0; 12]), Err(WireError::AckLength(12)));
        assert_eq!(AckRepr::parse(0, &[0, 0, 2]), Err(WireError::AckFlags(2)));
        assert_eq!(
            AckRepr::parse(0, &[0, 0, 0, 1, 0]),
            Err(WireError::AckBitmapNotTrimmed)
        );
        // Bit 63 is outside the window and dropped.
        let mut p = vec![0, 0, 0];
        p.extend_from_slice(&(1u64 << 63 | 1).to_le_bytes());
        assert_eq!(AckRepr::parse(0, &p).unwrap().received, 1);
    }

    #[test]
    fn rem_ms_can_be_patched() {
        let mut f = DataRepr {
            seq: Seq(1),
            rem_ms: 0,
            message: b"x",
        }
        .emit();
        set_rem_ms(&mut f, 513);
        assert_eq!(f.payload, [0x02, 0x01, b'x']);
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
        fn ack_roundtrip(seq: u16, rem_ms: u16, poll: bool, received: u64) {
            let a = AckRepr { next_expected: Seq(seq), rem_ms, poll, received: received >> 1 };
            let f = a.emit();
            prop_assert_eq!(f.payload.len(), a.buffer_len());
            prop_assert_eq!(AckRepr::parse(f.seq, &f.payload).unwrap(), a);
        }

        #[test]
        fn data_roundtrip(seq: u16, rem_ms: u16, message in proptest::collection::vec(any::<u8>(), 0..64)) {
            let d = DataRepr { seq: Seq(seq), rem_ms, message: &message };
            let f = d.emit();
            prop_assert_eq!(DataRepr::parse(f.seq, &f.payload).unwrap(), d);
        }
    }
}
