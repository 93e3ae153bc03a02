//! Primitive fields of the bundle, in postcard's encoding (LEB128 varints,
//! zigzag for signed, length-prefixed bytes). The layout is ours so that no
//! length is sent twice; every primitive goes through postcard.

use super::CodecError;
use crate::bytes::{ByteReader, ReadError};
use serde::{Deserialize, Serialize};

#[derive(Default)]
pub(crate) struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    fn put<T: Serialize + ?Sized>(&mut self, v: &T) {
        let buf = std::mem::take(&mut self.buf);
        // Serializing into a growable Vec cannot run out of space.
        self.buf = postcard::to_extend(v, buf).expect("postcard into Vec never fails");
    }

    pub(super) fn varint(&mut self, v: u64) {
        self.put(&v);
    }

    pub(super) fn zigzag(&mut self, v: i64) {
        self.put(&v);
    }

    /// Varint length, then the bytes.
    pub(super) fn bytes(&mut self, b: &[u8]) {
        self.put(b);
    }

    /// Bytes without a length (fixed-size fields).
    pub(super) fn raw(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }
}

/// A cursor over untrusted bytes, on the crate's one byte reader: fixed fields
/// through it, varints, zigzags and strings through postcard; every read is checked.
pub(crate) struct Reader<'a> {
    r: ByteReader<'a>,
}

fn map_err(e: postcard::Error, what: &'static str) -> CodecError {
    match e {
        postcard::Error::DeserializeUnexpectedEnd => CodecError::Truncated(what),
        postcard::Error::DeserializeBadVarint => CodecError::BadVarint(what),
        postcard::Error::DeserializeBadUtf8 => CodecError::BadUtf8(what),
        _ => CodecError::Malformed(what),
    }
}

fn read_err(e: ReadError, what: &'static str) -> CodecError {
    match e {
        ReadError::Short => CodecError::Truncated(what),
        ReadError::BadVarint => CodecError::BadVarint(what),
    }
}

impl<'a> Reader<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Reader {
            r: ByteReader::new(bytes),
        }
    }

    pub(super) fn remaining(&self) -> usize {
        self.r.remaining()
    }

    fn take<T: Deserialize<'a>>(&mut self, what: &'static str) -> Result<T, CodecError> {
        let rest = self.r.peek();
        let (v, after) = postcard::take_from_bytes::<T>(rest).map_err(|e| map_err(e, what))?;
        self.r
            .advance(rest.len() - after.len())
            .map_err(|e| read_err(e, what))?;
        Ok(v)
    }

    pub(super) fn varint(&mut self, what: &'static str) -> Result<u64, CodecError> {
        self.take::<u64>(what)
    }

    /// A varint that must fit `usize` and not exceed `max`.
    pub(super) fn count(&mut self, max: usize, what: &'static str) -> Result<usize, CodecError> {
        let v = self.varint(what)?;
        if v > max as u64 {
            return Err(CodecError::AbsurdLength { what, len: v });
        }
        Ok(v as usize)
    }

    pub(super) fn zigzag(&mut self, what: &'static str) -> Result<i64, CodecError> {
        self.take::<i64>(what)
    }

    pub(super) fn str(&mut self, what: &'static str) -> Result<&'a str, CodecError> {
        self.take::<&str>(what)
    }

    pub(super) fn raw(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], CodecError> {
        self.r.take(n).map_err(|e| read_err(e, what))
    }

    pub(super) fn array<const N: usize>(
        &mut self,
        what: &'static str,
    ) -> Result<[u8; N], CodecError> {
        self.r.array().map_err(|e| read_err(e, what))
    }

    pub(super) fn u32_le(&mut self, what: &'static str) -> Result<u32, CodecError> {
        self.r.u32_le().map_err(|e| read_err(e, what))
    }

    pub(super) fn byte(&mut self, what: &'static str) -> Result<u8, CodecError> {
        self.r.u8().map_err(|e| read_err(e, what))
    }

    pub(super) fn finish(self) -> Result<(), CodecError> {
        if self.r.is_empty() {
            Ok(())
        } else {
            Err(CodecError::TrailingBytes(self.r.remaining()))
        }
    }
}
