//! Reconciliation by file: the three kinds of file two stations at first
//! contact swap on a USB stick instead of full exports. Pure; the store's
//! side is `Store::export_file_for` and `Store::import_file`.
//!
//! ```text
//! magic "RSRECON3" | kind u8 | sender 16 | receiver 16 | salt u64 | items varint | dict u32 LE
//! | vector (count varint, then station 16 + seq varint each)
//! | sums: count varint, u32 LE each | differences: flag u8 (0 none, 1 list), count varint, u32 LE each
//! | bundle: len varint, bytes | CRC-32 (ISO-HDLC, LE) of everything before
//! ```

use crate::bytes::{put_varint, ByteReader, ReadError};
use crate::delta::{StationId, VersionVector};

/// The first bytes of every reconciliation file.
pub const MAGIC: &[u8; 8] = b"RSRECON3";
const CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// What a reconciliation file asks of its receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// A sketch of the sender's rows' bases, and its edits since (`bundle`):
    /// apply the edits, decode, and answer with a `Reply` (or, when it does not
    /// decode, a larger `Offer` of your own).
    Offer = 1,
    /// The sender's edits and the rows behind its items the receiver lacks
    /// (`bundle`), and the receiver's items it lacks (`differences`; None: the
    /// sets are too different, and `bundle` is the sender's full export).
    Reply = 2,
    /// The last leg: the rows the `Reply` asked for.
    Rows = 3,
}

/// One reconciliation file.
#[derive(Clone, Debug, PartialEq)]
pub struct ReconFile {
    /// What it asks.
    pub kind: FileKind,
    /// The station that wrote it.
    pub sender: StationId,
    /// The station it is for.
    pub receiver: StationId,
    /// The salt the items are hashed under.
    pub salt: u64,
    /// How many items the sender holds.
    pub items: u64,
    /// The sender's dictionary id (0: none). Stations set up apart from the same
    /// data train the same dictionary; the answer uses it when the ids match.
    pub dict: u32,
    /// What the sender held when it listed its items.
    pub vector: VersionVector,
    /// An `Offer`'s sketch sums.
    pub sums: Vec<u32>,
    /// A `Reply`'s list of the receiver's items the sender lacks.
    pub differences: Option<Vec<u32>>,
    /// An encoded bundle: an `Offer`'s edits, a `Reply`'s or `Rows`' rows.
    pub bundle: Vec<u8>,
}

/// Why bytes are not a reconciliation file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// The magic is missing.
    #[error("not a reconciliation file")]
    NotRecon,
    /// The CRC does not match: damaged in transit.
    #[error("reconciliation file damaged (CRC mismatch)")]
    Crc,
    /// A field ends early, a varint is malformed, or a count is impossible.
    #[error("reconciliation file truncated or malformed")]
    Malformed,
    /// A kind this build does not know.
    #[error("unknown reconciliation file kind {0}")]
    Kind(u8),
}

impl From<ReadError> for FileError {
    fn from(_: ReadError) -> Self {
        FileError::Malformed
    }
}

fn put_items(buf: &mut Vec<u8>, items: &[u32]) {
    put_varint(buf, items.len() as u64);
    for i in items {
        buf.extend_from_slice(&i.to_le_bytes());
    }
}

fn read_items(r: &mut ByteReader<'_>) -> Result<Vec<u32>, FileError> {
    let n = r.varint()?;
    if n > (r.remaining() / 4) as u64 {
        return Err(FileError::Malformed);
    }
    (0..n)
        .map(|_| Ok(u32::from_le_bytes(r.array::<4>()?)))
        .collect()
}

impl ReconFile {
    /// The file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(64 + 4 * self.sums.len() + self.bundle.len());
        buf.extend_from_slice(MAGIC);
        buf.push(self.kind as u8);
        buf.extend_from_slice(&self.sender.0);
        buf.extend_from_slice(&self.receiver.0);
        buf.extend_from_slice(&self.salt.to_le_bytes());
        put_varint(&mut buf, self.items);
        buf.extend_from_slice(&self.dict.to_le_bytes());
        self.vector.write(&mut buf);
        put_items(&mut buf, &self.sums);
        match &self.differences {
            None => buf.push(0),
            Some(d) => {
                buf.push(1);
                put_items(&mut buf, d);
            }
        }
        put_varint(&mut buf, self.bundle.len() as u64);
        buf.extend_from_slice(&self.bundle);
        let crc = CRC32.checksum(&buf);
        buf.extend_from_slice(&crc.to_le_bytes());
        buf
    }

    /// Whether `bytes` start like a reconciliation file.
    pub fn is_recon(bytes: &[u8]) -> bool {
        bytes.starts_with(MAGIC)
    }

    /// Parses untrusted bytes. Never panics.
    pub fn parse(bytes: &[u8]) -> Result<ReconFile, FileError> {
        if !Self::is_recon(bytes) {
            return Err(FileError::NotRecon);
        }
        if bytes.len() < MAGIC.len() + 4 {
            return Err(FileError::Malformed);
        }
        let (body, crc) = bytes.split_last_chunk::<4>().ok_or(FileError::Malformed)?;
        if CRC32.checksum(body) != u32::from_le_bytes(*crc) {
            return Err(FileError::Crc);
        }
        let mut r = ByteReader::new(&body[MAGIC.len()..]);
        let kind = match r.u8()? {
            1 => FileKind::Offer,
            2 => FileKind::Reply,
            3 => FileKind::Rows,
            k => return Err(FileError::Kind(k)),
        };
        let sender = StationId(r.array::<16>()?);
        let receiver = StationId(r.array::<16>()?);
        let salt = u64::from_le_bytes(r.array::<8>()?);
        let items = r.varint()?;
        let dict = u32::from_le_bytes(r.array::<4>()?);
        let vector = VersionVector::read(&mut r).map_err(|_| FileError::Malformed)?;
        let sums = read_items(&mut r)?;
        let differences = match r.u8()? {
            0 => None,
            1 => Some(read_items(&mut r)?),
            _ => return Err(FileError::Malformed),
        };
        let len = usize::try_from(r.varint()?).map_err(|_| FileError::Malformed)?;
        let bundle = r.take(len)?.to_vec();
        if !r.is_empty() {
            return Err(FileError::Malformed);
        }
        Ok(ReconFile {
            kind,
            sender,
            receiver,
            salt,
            items,
            dict,
            vector,
            sums,
            differences,
            bundle,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ReconFile {
        let mut v = VersionVector::default();
        v.0.insert(StationId([3; 16]), 300);
        ReconFile {
            kind: FileKind::Reply,
            sender: StationId([1; 16]),
            receiver: StationId([2; 16]),
            salt: 0x5a17,
            items: 17_600,
            dict: 0xe12d_4c83,
            vector: v,
            sums: vec![],
            differences: Some(vec![1, 0xffff_ffff]),
            bundle: b"a bundle".to_vec(),
        }
    }

    #[test]
    fn a_file_round_trips_and_every_damage_is_refused() {
        let f = sample();
        let bytes = f.to_bytes();
        assert_eq!(ReconFile::parse(&bytes), Ok(f));
        for cut in 0..bytes.len() {
            assert!(ReconFile::parse(&bytes[..cut]).is_err());
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            assert!(ReconFile::parse(&b).is_err(), "byte {i}");
        }
    }
}
