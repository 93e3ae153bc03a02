//! One transmission for many (issue 9): a hub sends what several stations
//! lack once, as control frames outside any session, and each station keeps
//! the pieces it heard. Pure: the piece codec and the record of what is held.
//!
//! The object sent is a signed broadcast (`store::cast`); a piece carries a
//! slice of it and enough to place the slice:
//!
//! ```text
//! CONTROL_CAST u8 | version u8 | sender key u32 LE (codec::station_key)
//! | cast id u64 LE (BundleId of the whole object) | total varint
//! | offset varint | bytes (at least one)
//! ```
//!
//! Pieces are not authenticated one by one (no session key covers them): a
//! receiver checks the whole object's id and the hub's Ed25519 signature
//! before it applies anything. A forged piece can only spoil a broadcast,
//! which the next session with the hub repairs.

use crate::bytes::{put_varint, ByteReader};

use super::message::BundleId;

/// First payload byte of a control frame carrying a broadcast piece.
pub const CONTROL_CAST: u8 = 0x04;
/// The piece layout this build writes and reads.
pub const CAST_VERSION: u8 = 1;
/// Most bytes a piece header takes (varints at their longest).
pub const CAST_HEADER_MAX: usize = 1 + 1 + 4 + 8 + 10 + 10;
/// Largest broadcast a station takes (a hostile total must not make it plan
/// for more).
pub const MAX_CAST_LEN: u64 = 16 << 20;

/// One piece of a broadcast.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CastPiece {
    /// `codec::station_key` of the sender.
    pub sender_key: u32,
    /// The whole object's id.
    pub id: BundleId,
    /// The whole object's length.
    pub total: u64,
    /// Where `bytes` go in it.
    pub offset: u64,
    /// The slice; never empty.
    pub bytes: Vec<u8>,
}

/// Why a control payload is not a broadcast piece.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CastError {
    /// Not a piece, or a version this build does not read.
    #[error("not a broadcast piece of version {CAST_VERSION}")]
    NotCast,
    /// A field ends early, the slice is empty or runs past the total.
    #[error("broadcast piece truncated or out of place")]
    Malformed,
    /// A total over `MAX_CAST_LEN`.
    #[error("broadcast of {0} bytes, more than a station takes")]
    TooLarge(u64),
}

impl CastPiece {
    /// Whether a control payload is a broadcast piece (of any version).
    pub fn is_cast(payload: &[u8]) -> bool {
        payload.first() == Some(&CONTROL_CAST)
    }

    /// The control frame payload.
    pub fn to_payload(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(CAST_HEADER_MAX + self.bytes.len());
        out.push(CONTROL_CAST);
        out.push(CAST_VERSION);
        out.extend_from_slice(&self.sender_key.to_le_bytes());
        out.extend_from_slice(&self.id.0.to_le_bytes());
        put_varint(&mut out, self.total);
        put_varint(&mut out, self.offset);
        out.extend_from_slice(&self.bytes);
        out
    }

    /// Reads a control frame payload.
    pub fn parse(payload: &[u8]) -> Result<CastPiece, CastError> {
        let mut r = ByteReader::new(payload);
        let bad = |_| CastError::Malformed;
        if r.u8().map_err(bad)? != CONTROL_CAST || r.u8().map_err(bad)? != CAST_VERSION {
            return Err(CastError::NotCast);
        }
        let sender_key = u32::from_le_bytes(r.array().map_err(bad)?);
        let id = BundleId(u64::from_le_bytes(r.array().map_err(bad)?));
        let total = r.varint().map_err(bad)?;
        let offset = r.varint().map_err(bad)?;
        let bytes = r.rest().to_vec();
        if total > MAX_CAST_LEN {
            return Err(CastError::TooLarge(total));
        }
        if bytes.is_empty() || offset.saturating_add(bytes.len() as u64) > total {
            return Err(CastError::Malformed);
        }
        Ok(CastPiece {
            sender_key,
            id,
            total,
            offset,
            bytes,
        })
    }

    /// `object` (of id `id`) cut into pieces of at most `room` bytes each.
    pub fn cut(sender_key: u32, id: BundleId, object: &[u8], room: usize) -> Vec<CastPiece> {
        object
            .chunks(room.max(1))
            .enumerate()
            .map(|(i, c)| CastPiece {
                sender_key,
                id,
                total: object.len() as u64,
                offset: (i * room.max(1)) as u64,
                bytes: c.to_vec(),
            })
            .collect()
    }
}

/// The byte ranges of a broadcast a station holds: ascending, apart.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Held(Vec<(u64, u64)>);

impl Held {
    /// The ranges of a stored partial: its prefix and the pieces past it.
    pub fn of(prefix: u64, later: impl IntoIterator<Item = (u64, u64)>) -> Held {
        let mut h = Held::default();
        if prefix > 0 {
            h.add(0, prefix);
        }
        for (off, len) in later {
            h.add(off, len);
        }
        h
    }

    /// Whether any of `off..off + len` is held already.
    pub fn overlaps(&self, off: u64, len: u64) -> bool {
        self.0.iter().any(|&(o, l)| off < o + l && o < off + len)
    }

    /// Marks `off..off + len` held (it must not overlap what is).
    pub fn add(&mut self, off: u64, len: u64) {
        let at = self.0.partition_point(|&(o, _)| o < off);
        self.0.insert(at, (off, len));
        // Join touching ranges.
        let mut joined: Vec<(u64, u64)> = Vec::with_capacity(self.0.len());
        for &(o, l) in &self.0 {
            match joined.last_mut() {
                Some((po, pl)) if *po + *pl == o => *pl += l,
                _ => joined.push((o, l)),
            }
        }
        self.0 = joined;
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.0.iter().map(|r| r.1).sum()
    }

    /// Every byte of `0..total` is held.
    pub fn complete(&self, total: u64) -> bool {
        self.0 == [(0, total)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_round_trip_and_cover_the_object() {
        let object: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let id = BundleId::of(&object);
        let pieces = CastPiece::cut(0xdead_beef, id, &object, 300);
        assert_eq!(pieces.len(), 4);
        let mut held = Held::default();
        let mut back = vec![0u8; object.len()];
        for p in pieces.iter().rev() {
            let q = CastPiece::parse(&p.to_payload()).unwrap();
            assert_eq!(&q, p);
            assert!(!held.overlaps(q.offset, q.bytes.len() as u64));
            held.add(q.offset, q.bytes.len() as u64);
            back[q.offset as usize..][..q.bytes.len()].copy_from_slice(&q.bytes);
        }
        assert!(held.complete(1000));
        assert_eq!(back, object);
        assert!(held.overlaps(999, 5));
    }

    #[test]
    fn bad_pieces_are_refused() {
        let p = CastPiece {
            sender_key: 1,
            id: BundleId(2),
            total: 10,
            offset: 8,
            bytes: vec![1, 2],
        };
        let good = p.to_payload();
        assert!(CastPiece::parse(&good).is_ok());
        for cut in 0..good.len() - 2 {
            assert!(CastPiece::parse(&good[..cut]).is_err(), "cut at {cut}");
        }
        let past = CastPiece {
            bytes: vec![1, 2, 3],
            ..p.clone()
        };
        assert_eq!(
            CastPiece::parse(&past.to_payload()),
            Err(CastError::Malformed)
        );
        let huge = CastPiece {
            total: MAX_CAST_LEN + 1,
            ..p.clone()
        };
        assert_eq!(
            CastPiece::parse(&huge.to_payload()),
            Err(CastError::TooLarge(MAX_CAST_LEN + 1))
        );
        let mut other = good.clone();
        other[1] = 9;
        assert_eq!(CastPiece::parse(&other), Err(CastError::NotCast));
    }

    #[test]
    fn held_ranges_join() {
        let mut h = Held::of(100, [(300, 50)]);
        h.add(100, 200);
        assert_eq!(h, Held(vec![(0, 350)]));
        assert!(h.complete(350));
        assert!(!h.complete(351));
        assert_eq!(h.bytes(), 350);
    }
}
