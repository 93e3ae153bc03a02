//! The one checked reader over untrusted bytes. Session messages, bundles and captures
//! all read through it (each maps `ReadError` to its own error with context); frame and
//! ARQ headers are fixed-layout views checked once for length (`frame::wire`).

/// Why a read failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// The bytes end before the field does.
    #[error("truncated")]
    Short,
    /// A varint that is overlong (not minimal) or overflows 64 bits.
    #[error("malformed varint")]
    BadVarint,
}

/// A cursor over untrusted bytes; every read is checked and nothing panics.
#[derive(Debug, Clone)]
pub struct ByteReader<'a> {
    rest: &'a [u8],
    pos: usize,
}

impl<'a> ByteReader<'a> {
    /// A reader at the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        ByteReader {
            rest: bytes,
            pos: 0,
        }
    }

    /// Bytes read so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// True when every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The unread bytes, without consuming them.
    pub fn peek(&self) -> &'a [u8] {
        self.rest
    }

    /// The next `n` bytes; `ReadError::Short` (consuming nothing) if fewer are left.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], ReadError> {
        if self.rest.len() < n {
            return Err(ReadError::Short);
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        self.pos += n;
        Ok(head)
    }

    /// Skips `n` bytes that a caller decoded from `peek()`.
    pub fn advance(&mut self, n: usize) -> Result<(), ReadError> {
        self.take(n).map(|_| ())
    }

    /// The next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], ReadError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8, ReadError> {
        Ok(self.array::<1>()?[0])
    }

    /// A little-endian `u32`.
    pub fn u32_le(&mut self) -> Result<u32, ReadError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    /// A little-endian `u64`.
    pub fn u64_le(&mut self) -> Result<u64, ReadError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A little-endian `i64`.
    pub fn i64_le(&mut self) -> Result<i64, ReadError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    /// A minimal LEB128 varint.
    pub fn varint(&mut self) -> Result<u64, ReadError> {
        let (v, n) = get_varint(self.rest)?.ok_or(ReadError::Short)?;
        self.advance(n)?;
        Ok(v)
    }

    /// All the unread bytes.
    pub fn rest(&mut self) -> &'a [u8] {
        self.pos += self.rest.len();
        std::mem::take(&mut self.rest)
    }
}

/// Reads a minimal LEB128 varint from the front of `buf`: `Ok(None)` if `buf`
/// ends inside it, `Err` if it is overlong or overflows 64 bits.
pub fn get_varint(buf: &[u8]) -> Result<Option<(u64, usize)>, ReadError> {
    let mut v: u64 = 0;
    for (i, &b) in buf.iter().enumerate() {
        if i == 9 && b > 1 {
            return Err(ReadError::BadVarint);
        }
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            // A zero last byte after the first is a non-minimal encoding.
            if i > 0 && b == 0 {
                return Err(ReadError::BadVarint);
            }
            return Ok(Some((v, i + 1)));
        }
    }
    Ok(None)
}

/// Bytes a LEB128 varint of `v` takes.
pub fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

/// Appends `v` to `buf` as a minimal LEB128 varint.
pub fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_checked_and_positions_counted() {
        let mut r = ByteReader::new(&[1, 2, 3, 4, 5, 0x96, 0x01, 9]);
        assert_eq!(r.u8(), Ok(1));
        assert_eq!(r.array::<2>(), Ok([2, 3]));
        assert_eq!(r.u64_le(), Err(ReadError::Short));
        assert_eq!(r.position(), 3, "a failed read consumes nothing");
        assert_eq!(r.take(2), Ok(&[4, 5][..]));
        assert_eq!(r.varint(), Ok(150));
        assert_eq!(r.rest(), &[9]);
        assert!(r.is_empty());
        assert_eq!(r.position(), 8);
    }

    #[test]
    fn varints_must_be_minimal_and_fit() {
        assert_eq!(get_varint(&[0x00]), Ok(Some((0, 1))));
        assert_eq!(get_varint(&[0x80]), Ok(None));
        assert_eq!(get_varint(&[0x80, 0x00]), Err(ReadError::BadVarint));
        let max = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(get_varint(&max), Ok(Some((u64::MAX, 10))));
        let over = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert_eq!(get_varint(&over), Err(ReadError::BadVarint));
    }
}
