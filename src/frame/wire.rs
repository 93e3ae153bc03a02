//! The radiosync frame as a checked view over bytes (smoltcp wire/ style).
//!
//! ```text
//! 0      kind        0x01 Data, 0x02 Ack, 0x03 Control, others Unknown
//! 1      flags       bit 0: auth tag present; bit 1: route present; bits 2-7
//!                    reserved (must be 0)
//! 2..4   session     u16 big-endian
//! 4..6   seq         u16 big-endian
//! 6..8   payload_len u16 big-endian
//! [8..12 route       to u16, from u16 (station short addresses), only if bit 1]
//! [..    tag_len     1..=64, only if flags bit 0]
//! [..    tag         tag_len bytes]
//! ..     payload     payload_len bytes
//! ..+4   crc         CRC-32C (Castagnoli) over every byte before it, big-endian
//! ```

use crc::{Crc, CRC_32_ISCSI};

use super::FrameError;

/// CRC-32C: Hamming distance 6 up to 5243 data bits, which covers our frames.
pub const CRC32C: Crc<u32> = Crc::<u32>::new(&CRC_32_ISCSI);

/// Header bytes before the optional tag.
pub const HEADER_LEN: usize = 8;
/// Trailing CRC-32C bytes.
pub const CRC_LEN: usize = 4;
/// Longest authentication tag: room for a truncated or full HMAC-SHA256 (16/32 bytes)
/// or an Ed25519 signature (64). What to sign with is the signing module's choice.
pub const MAX_AUTH_TAG_LEN: usize = 64;
/// Longest payload we build or accept; bounds memory on garbage input.
pub const MAX_PAYLOAD_LEN: usize = 4096;
/// Longest frame before FEC.
pub const MAX_FRAME_LEN: usize =
    HEADER_LEN + ROUTE_LEN + 1 + MAX_AUTH_TAG_LEN + MAX_PAYLOAD_LEN + CRC_LEN;

/// Flags bit 0: an auth tag follows the header (and the route, if any).
pub const FLAG_AUTH: u8 = 0x01;
/// Flags bit 1: the receiver's and sender's short addresses follow the header.
pub const FLAG_ROUTE: u8 = 0x02;
const FLAGS_KNOWN: u8 = FLAG_AUTH | FLAG_ROUTE;
/// Bytes of the route: two short addresses.
pub const ROUTE_LEN: usize = 4;

/// Who a frame is for and from, on links without other addressing (transparent
/// radios, KISS without AX.25): each a station's short address
/// (`delta::StationId::short_address`). Stations ignore frames for others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Route {
    /// The receiver.
    pub to: u16,
    /// The sender.
    pub from: u16,
}

mod field {
    use core::ops::Range;
    pub(super) const KIND: usize = 0;
    pub(super) const FLAGS: usize = 1;
    pub(super) const SESSION: Range<usize> = 2..4;
    pub(super) const SEQ: Range<usize> = 4..6;
    pub(super) const PAYLOAD_LEN: Range<usize> = 6..8;
    pub(super) const ROUTE: Range<usize> = 8..12;
}

/// Frame kind; unknown values are kept, not rejected, so newer peers can add kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// An ARQ data frame (0x01).
    Data,
    /// An ARQ acknowledgement (0x02).
    Ack,
    /// Control (0x03): outside the ARQ, e.g. "unknown session" (`engine::CONTROL_UNKNOWN_SESSION`).
    Control,
    /// Any other kind byte, kept as it came.
    Unknown(u8),
}

impl From<u8> for FrameKind {
    fn from(v: u8) -> Self {
        match v {
            0x01 => FrameKind::Data,
            0x02 => FrameKind::Ack,
            0x03 => FrameKind::Control,
            other => FrameKind::Unknown(other),
        }
    }
}

impl From<FrameKind> for u8 {
    fn from(k: FrameKind) -> u8 {
        match k {
            FrameKind::Data => 0x01,
            FrameKind::Ack => 0x02,
            FrameKind::Control => 0x03,
            FrameKind::Unknown(v) => v,
        }
    }
}

/// A view over the bytes of one frame (after FEC is removed).
#[derive(Debug, Clone)]
pub struct FramePacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> FramePacket<T> {
    /// Wraps bytes without checking them; getters may panic until `check_len` passes.
    pub fn new_unchecked(buffer: T) -> Self {
        FramePacket { buffer }
    }

    /// Wraps untrusted bytes; every getter is safe afterwards.
    pub fn new_checked(buffer: T) -> Result<Self, FrameError> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks that the buffer is exactly as long as the header says, and that the
    /// header's own fields are in range.
    pub fn check_len(&self) -> Result<(), FrameError> {
        let data = self.buffer.as_ref();
        let have = data.len();
        if have < HEADER_LEN + CRC_LEN {
            return Err(FrameError::Truncated {
                need: HEADER_LEN + CRC_LEN,
                have,
            });
        }
        let flags = self.flags();
        if flags & !FLAGS_KNOWN != 0 {
            return Err(FrameError::ReservedFlags(flags));
        }
        let route = self.route_len();
        if have < HEADER_LEN + route + CRC_LEN {
            return Err(FrameError::Truncated {
                need: HEADER_LEN + route + CRC_LEN,
                have,
            });
        }
        if flags & FLAG_AUTH != 0 {
            if have < HEADER_LEN + route + 1 + CRC_LEN {
                return Err(FrameError::Truncated {
                    need: HEADER_LEN + route + 1 + CRC_LEN,
                    have,
                });
            }
            let t = data[HEADER_LEN + route] as usize;
            if t == 0 || t > MAX_AUTH_TAG_LEN {
                return Err(FrameError::AuthTagLength(t));
            }
        }
        let pl = self.payload_len();
        if pl > MAX_PAYLOAD_LEN {
            return Err(FrameError::PayloadTooLong(pl));
        }
        let need = self.total_len();
        if have != need {
            return Err(FrameError::LengthMismatch { header: need, have });
        }
        Ok(())
    }

    /// The bytes wrapped.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Byte 0.
    pub fn kind(&self) -> FrameKind {
        self.buffer.as_ref()[field::KIND].into()
    }

    /// Byte 1: bit 0 = auth tag present.
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// Session number.
    pub fn session(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::SESSION])
    }

    /// Sequence number.
    pub fn seq(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::SEQ])
    }

    /// Payload length from the header, in bytes.
    pub fn payload_len(&self) -> usize {
        be16(&self.buffer.as_ref()[field::PAYLOAD_LEN]) as usize
    }

    fn route_len(&self) -> usize {
        if self.flags() & FLAG_ROUTE != 0 {
            ROUTE_LEN
        } else {
            0
        }
    }

    fn tag_field_len(&self) -> usize {
        if self.flags() & FLAG_AUTH != 0 {
            1 + self.buffer.as_ref()[HEADER_LEN + self.route_len()] as usize
        } else {
            0
        }
    }

    /// Where the payload starts: after the header, the route and the tag.
    fn payload_start(&self) -> usize {
        HEADER_LEN + self.route_len() + self.tag_field_len()
    }

    /// Length of the whole frame as the header describes it.
    pub fn total_len(&self) -> usize {
        self.payload_start() + self.payload_len() + CRC_LEN
    }

    /// The route, if the flags say there is one.
    pub fn route(&self) -> Option<Route> {
        (self.route_len() > 0).then(|| {
            let b = &self.buffer.as_ref()[field::ROUTE];
            Route {
                to: be16(&b[0..2]),
                from: be16(&b[2..4]),
            }
        })
    }

    /// The auth tag, if the flags say there is one.
    pub fn auth_tag(&self) -> Option<&[u8]> {
        let t = self.tag_field_len();
        let at = HEADER_LEN + self.route_len();
        (t > 0).then(|| &self.buffer.as_ref()[at + 1..at + t])
    }

    /// The payload bytes.
    pub fn payload(&self) -> &[u8] {
        let start = self.payload_start();
        &self.buffer.as_ref()[start..start + self.payload_len()]
    }

    /// The CRC-32C stored at the end.
    pub fn crc(&self) -> u32 {
        let end = self.total_len();
        let b = &self.buffer.as_ref()[end - CRC_LEN..end];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// The CRC-32C over every byte before the stored one.
    pub fn compute_crc(&self) -> u32 {
        CRC32C.checksum(&self.buffer.as_ref()[..self.total_len() - CRC_LEN])
    }

    /// `BadCrc` unless the stored CRC matches the computed one.
    pub fn verify_crc(&self) -> Result<(), FrameError> {
        let (stored, computed) = (self.crc(), self.compute_crc());
        if stored == computed {
            Ok(())
        } else {
            Err(FrameError::BadCrc { stored, computed })
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> FramePacket<T> {
    /// Sets byte 0.
    pub fn set_kind(&mut self, kind: FrameKind) {
        self.buffer.as_mut()[field::KIND] = kind.into();
    }
    /// Sets byte 1.
    pub fn set_flags(&mut self, flags: u8) {
        self.buffer.as_mut()[field::FLAGS] = flags;
    }
    /// Sets the session number.
    pub fn set_session(&mut self, v: u16) {
        self.buffer.as_mut()[field::SESSION].copy_from_slice(&v.to_be_bytes());
    }
    /// Sets the sequence number.
    pub fn set_seq(&mut self, v: u16) {
        self.buffer.as_mut()[field::SEQ].copy_from_slice(&v.to_be_bytes());
    }
    /// Sets the payload length; set the flags and tag first when there is one.
    pub fn set_payload_len(&mut self, v: u16) {
        self.buffer.as_mut()[field::PAYLOAD_LEN].copy_from_slice(&v.to_be_bytes());
    }
    /// Call after set_flags(.. | FLAG_ROUTE).
    pub fn set_route(&mut self, route: Route) {
        let b = &mut self.buffer.as_mut()[field::ROUTE];
        b[0..2].copy_from_slice(&route.to.to_be_bytes());
        b[2..4].copy_from_slice(&route.from.to_be_bytes());
    }
    /// Call after set_flags(FLAG_AUTH ..) and set_route.
    pub fn set_auth_tag(&mut self, tag: &[u8]) {
        let at = HEADER_LEN + self.route_len();
        let b = self.buffer.as_mut();
        b[at] = tag.len() as u8;
        b[at + 1..at + 1 + tag.len()].copy_from_slice(tag);
    }
    /// The payload bytes, to write into.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.payload_start();
        let end = start + self.payload_len();
        &mut self.buffer.as_mut()[start..end]
    }
    /// Computes the CRC-32C and stores it at the end.
    pub fn fill_crc(&mut self) {
        let end = self.total_len();
        let crc = self.compute_crc();
        self.buffer.as_mut()[end - CRC_LEN..end].copy_from_slice(&crc.to_be_bytes());
    }
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

/// High-level, borrowed representation of a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameRepr<'a> {
    /// Data, ack or control.
    pub kind: FrameKind,
    /// Session number.
    pub session: u16,
    /// Sequence number.
    pub seq: u16,
    /// Receiver and sender, if the frame names them.
    pub route: Option<Route>,
    /// Auth tag of 1..=`MAX_AUTH_TAG_LEN` bytes, if any.
    pub auth_tag: Option<&'a [u8]>,
    /// At most `MAX_PAYLOAD_LEN` bytes.
    pub payload: &'a [u8],
}

impl<'a> FrameRepr<'a> {
    /// Parses a checked packet and verifies its CRC.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &FramePacket<&'a T>,
    ) -> Result<FrameRepr<'a>, FrameError> {
        packet.check_len()?;
        packet.verify_crc()?;
        let data: &'a [u8] = packet.buffer.as_ref();
        let tag_at = HEADER_LEN + packet.route_len();
        let start = packet.payload_start();
        Ok(FrameRepr {
            kind: packet.kind(),
            session: packet.session(),
            seq: packet.seq(),
            route: packet.route(),
            auth_tag: (start > tag_at).then(|| &data[tag_at + 1..start]),
            payload: &data[start..start + packet.payload_len()],
        })
    }

    /// Checks the lengths that emit() relies on.
    pub fn check(&self) -> Result<(), FrameError> {
        if self.payload.len() > MAX_PAYLOAD_LEN {
            return Err(FrameError::PayloadTooLong(self.payload.len()));
        }
        if let Some(t) = self.auth_tag {
            if t.is_empty() || t.len() > MAX_AUTH_TAG_LEN {
                return Err(FrameError::AuthTagLength(t.len()));
            }
        }
        Ok(())
    }

    /// Frame bytes: header, route, tag with its length byte, payload, CRC.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN
            + self.route.map_or(0, |_| ROUTE_LEN)
            + self.auth_tag.map_or(0, |t| 1 + t.len())
            + self.payload.len()
            + CRC_LEN
    }

    /// Writes the frame into a buffer of exactly `buffer_len()` bytes; call check() first.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut FramePacket<T>) {
        packet.set_kind(self.kind);
        packet.set_session(self.session);
        packet.set_seq(self.seq);
        packet.set_payload_len(self.payload.len() as u16);
        let flags = self.auth_tag.map_or(0, |_| FLAG_AUTH) | self.route.map_or(0, |_| FLAG_ROUTE);
        packet.set_flags(flags);
        if let Some(route) = self.route {
            packet.set_route(route);
        }
        if let Some(tag) = self.auth_tag {
            packet.set_auth_tag(tag);
        }
        packet.payload_mut().copy_from_slice(self.payload);
        packet.fill_crc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Data frame, session 0x1234, seq 5, payload "hi", no tag; CRC-32C checked
    /// against an independent bitwise implementation (poly 0x82F63B78 reflected).
    const PLAIN: [u8; 14] = [
        0x01, 0x00, 0x12, 0x34, 0x00, 0x05, 0x00, 0x02, b'h', b'i', 0xA9, 0xA2, 0xE9, 0xFF,
    ];

    #[test]
    fn crc32c_check_value() {
        // The catalogue check value of CRC-32C.
        assert_eq!(CRC32C.checksum(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn parse_literal() {
        let p = FramePacket::new_checked(&PLAIN[..]).unwrap();
        let r = FrameRepr::parse(&p).unwrap();
        assert_eq!(
            r,
            FrameRepr {
                kind: FrameKind::Data,
                session: 0x1234,
                seq: 5,
                route: None,
                auth_tag: None,
                payload: b"hi",
            }
        );
    }

    #[test]
    fn emit_literal() {
        let r = FrameRepr {
            kind: FrameKind::Data,
            session: 0x1234,
            seq: 5,
            route: None,
            auth_tag: None,
            payload: b"hi",
        };
        // Not zeros: a field emit forgets would pass unseen in a zeroed buffer.
        let mut buf = vec![0xa5; r.buffer_len()];
        r.emit(&mut FramePacket::new_unchecked(&mut buf));
        assert_eq!(buf, PLAIN);
    }

    #[test]
    fn tagged_literal() {
        let r = FrameRepr {
            kind: FrameKind::Unknown(0x7F),
            session: 1,
            seq: 0xFFFF,
            route: None,
            auth_tag: Some(&[0xAA, 0xBB]),
            payload: &[],
        };
        // Not zeros: a field emit forgets would pass unseen in a zeroed buffer.
        let mut buf = vec![0xa5; r.buffer_len()];
        r.emit(&mut FramePacket::new_unchecked(&mut buf));
        assert_eq!(
            &buf[..11],
            &[0x7F, 0x01, 0x00, 0x01, 0xFF, 0xFF, 0x00, 0x00, 0x02, 0xAA, 0xBB]
        );
        let crc = CRC32C.checksum(&buf[..11]).to_be_bytes();
        assert_eq!(&buf[11..], &crc);
        let p = FramePacket::new_checked(&buf[..]).unwrap();
        assert_eq!(FrameRepr::parse(&p).unwrap(), r);
    }

    /// A routed, tagged frame: the route sits between the header and the tag.
    #[test]
    fn routed_literal() {
        let r = FrameRepr {
            kind: FrameKind::Ack,
            session: 0x0102,
            seq: 3,
            route: Some(Route {
                to: 0xBEEF,
                from: 0x1234,
            }),
            auth_tag: Some(&[0xAA]),
            payload: b"x",
        };
        let mut buf = vec![0xa5; r.buffer_len()];
        r.emit(&mut FramePacket::new_unchecked(&mut buf));
        assert_eq!(
            &buf[..15],
            &[
                0x02, 0x03, 0x01, 0x02, 0x00, 0x03, 0x00, 0x01, 0xBE, 0xEF, 0x12, 0x34, 0x01, 0xAA,
                b'x'
            ]
        );
        let p = FramePacket::new_checked(&buf[..]).unwrap();
        assert_eq!(FrameRepr::parse(&p).unwrap(), r);
        // A route flag with no room for the route is refused, never read past the end.
        let short = [0x02, 0x02, 0, 1, 0, 3, 0, 0, 0xBE, 0xEF, 0, 0];
        assert!(FramePacket::new_checked(&short[..]).is_err());
    }

    #[test]
    fn impossible_lengths_rejected() {
        for n in 0..12 {
            assert!(matches!(
                FramePacket::new_checked(&PLAIN[..n]),
                Err(FrameError::Truncated { .. })
            ));
        }
        assert!(matches!(
            FramePacket::new_checked(&PLAIN[..13]),
            Err(FrameError::LengthMismatch {
                header: 14,
                have: 13
            })
        ));
        let mut long = PLAIN.to_vec();
        long.push(0);
        assert!(matches!(
            FramePacket::new_checked(&long[..]),
            Err(FrameError::LengthMismatch {
                header: 14,
                have: 15
            })
        ));
        let mut huge = PLAIN.to_vec();
        huge[6..8].copy_from_slice(&0xFFFFu16.to_be_bytes());
        assert_eq!(
            FramePacket::new_checked(&huge[..]).unwrap_err(),
            FrameError::PayloadTooLong(0xFFFF)
        );
        let mut tag0 = PLAIN.to_vec();
        tag0[1] = FLAG_AUTH;
        tag0[8] = 0;
        assert_eq!(
            FramePacket::new_checked(&tag0[..]).unwrap_err(),
            FrameError::AuthTagLength(0)
        );
        let mut reserved = PLAIN.to_vec();
        reserved[1] = 0x80;
        assert_eq!(
            FramePacket::new_checked(&reserved[..]).unwrap_err(),
            FrameError::ReservedFlags(0x80)
        );
    }

    #[test]
    fn bad_crc_rejected() {
        let mut b = PLAIN;
        b[9] ^= 1;
        let p = FramePacket::new_checked(&b[..]).unwrap();
        assert!(matches!(
            FrameRepr::parse(&p),
            Err(FrameError::BadCrc { .. })
        ));
    }

    #[test]
    fn kind_codes() {
        for v in 0..=255u8 {
            assert_eq!(u8::from(FrameKind::from(v)), v);
        }
        assert_eq!(FrameKind::from(0), FrameKind::Unknown(0));
    }
}
