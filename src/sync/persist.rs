//! Byte forms of what the shell keeps on disk between sessions, pure: the
//! bundle in flight to a peer (`KeepOutgoing`) and the stored prefix of a
//! bundle from a peer (`BeginPartial` + `SaveChunk`). The shell does the file
//! work: write a kept bundle to a temporary file and rename it; create a
//! partial file with its header and append one chunk record per `SaveChunk`.
//! A crash mid-append leaves a torn last record, which loading drops (truncate
//! the file to `valid_len` before appending again).
//!
//! Kept file:    "RSko" | version 1 | peer 16 | id u64 LE | bundle bytes
//! Partial file: "RSpi" | version 1 | peer 16 | id u64 LE | total varint | CRC-32
//!               then records: length varint | bytes | CRC-32 (of length and bytes)

use super::message::{get_varint, put_varint, BundleId};
use super::session::{KeptOutgoing, PartialIncoming};
use crate::delta::StationId;

const KEPT_MAGIC: &[u8; 4] = b"RSko";
const PARTIAL_MAGIC: &[u8; 4] = b"RSpi";
const VERSION: u8 = 1;
const CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PersistError {
    #[error("not a radiosync {0} file")]
    BadMagic(&'static str),
    #[error("{0} file version {1} is not readable by this build")]
    Version(&'static str, u8),
    #[error(
        "{0} file is cut short or damaged: delete it, the next session starts the bundle afresh"
    )]
    Damaged(&'static str),
}

/// The whole kept-bundle file.
pub fn kept_to_bytes(peer: StationId, kept: &KeptOutgoing) -> Vec<u8> {
    let mut out = Vec::with_capacity(29 + kept.bytes.len());
    out.extend_from_slice(KEPT_MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&peer.0);
    out.extend_from_slice(&kept.id.0.to_le_bytes());
    out.extend_from_slice(&kept.bytes);
    out
}

/// Reads a kept-bundle file; the bytes must still match their id.
pub fn kept_from_bytes(file: &[u8]) -> Result<(StationId, KeptOutgoing), PersistError> {
    const WHAT: &str = "kept bundle";
    let (peer, rest) = file_head(file, KEPT_MAGIC, WHAT)?;
    if rest.len() < 8 {
        return Err(PersistError::Damaged(WHAT));
    }
    let id = BundleId(u64::from_le_bytes(rest[..8].try_into().expect("8 bytes")));
    let bytes = rest[8..].to_vec();
    if bytes.is_empty() || BundleId::of(&bytes) != id {
        return Err(PersistError::Damaged(WHAT));
    }
    Ok((peer, KeptOutgoing { id, bytes }))
}

/// The start of a partial file (`BeginPartial`).
pub fn partial_header(peer: StationId, id: BundleId, total_len: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(40);
    out.extend_from_slice(PARTIAL_MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&peer.0);
    out.extend_from_slice(&id.0.to_le_bytes());
    put_varint(&mut out, total_len);
    let crc = CRC32.checksum(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// One record to append to a partial file (`SaveChunk`).
pub fn partial_chunk(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 8);
    put_varint(&mut out, bytes.len() as u64);
    out.extend_from_slice(bytes);
    let crc = CRC32.checksum(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

#[derive(Clone, Debug, PartialEq)]
pub struct LoadedPartial {
    pub peer: StationId,
    pub partial: PartialIncoming,
    /// Length of the file's whole records; truncate to it before appending.
    pub valid_len: usize,
}

/// Reads a partial file, keeping every whole chunk record before a torn one.
pub fn partial_from_bytes(file: &[u8]) -> Result<LoadedPartial, PersistError> {
    const WHAT: &str = "partial bundle";
    let (peer, rest) = file_head(file, PARTIAL_MAGIC, WHAT)?;
    if rest.len() < 8 {
        return Err(PersistError::Damaged(WHAT));
    }
    let id = BundleId(u64::from_le_bytes(rest[..8].try_into().expect("8 bytes")));
    let (total_len, n) = get_varint(&rest[8..])
        .ok()
        .flatten()
        .ok_or(PersistError::Damaged(WHAT))?;
    let head_len = 21 + 8 + n;
    let crc = file
        .get(head_len..head_len + 4)
        .ok_or(PersistError::Damaged(WHAT))?;
    if u32::from_le_bytes(crc.try_into().expect("4 bytes")) != CRC32.checksum(&file[..head_len]) {
        return Err(PersistError::Damaged(WHAT));
    }
    let mut pos = head_len + 4;
    let mut bytes = Vec::new();
    // Stop at the first record that is not whole and intact.
    while let Some((len, n)) = get_varint(&file[pos..]).ok().flatten() {
        let end = match usize::try_from(len)
            .ok()
            .and_then(|l| (pos + n).checked_add(l))
        {
            // checked: a hostile length near 2^64 must not wrap (found by fuzzing).
            Some(end) if end.checked_add(4).is_some_and(|e| e <= file.len()) => end,
            _ => break,
        };
        let crc = u32::from_le_bytes(file[end..end + 4].try_into().expect("4 bytes"));
        if crc != CRC32.checksum(&file[pos..end]) || bytes.len() as u64 + len > total_len {
            break;
        }
        bytes.extend_from_slice(&file[pos + n..end]);
        pos = end + 4;
    }
    Ok(LoadedPartial {
        peer,
        partial: PartialIncoming {
            id,
            total_len,
            bytes,
        },
        valid_len: pos,
    })
}

fn file_head<'a>(
    file: &'a [u8],
    magic: &[u8; 4],
    what: &'static str,
) -> Result<(StationId, &'a [u8]), PersistError> {
    if file.len() < 4 || &file[..4] != magic {
        return Err(PersistError::BadMagic(what));
    }
    let version = *file.get(4).ok_or(PersistError::Damaged(what))?;
    if version != VERSION {
        return Err(PersistError::Version(what, version));
    }
    let peer = file.get(5..21).ok_or(PersistError::Damaged(what))?;
    Ok((StationId(peer.try_into().expect("16 bytes")), &file[21..]))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_record_length_near_2_pow_64_is_a_damaged_tail_not_a_panic() {
        // Found by `tools/fuzz/run` (sync_persist); kept as a regression.
        let crash = include_bytes!(
            "../../tools/fuzz/crashes/sync_persist/crash-f568ed844c3908c6c8ebb2016b1e9203d37f30d9"
        );
        let _ = super::partial_from_bytes(crash);
    }

    use super::*;

    const PEER: StationId = StationId([7; 16]);

    #[test]
    fn kept_round_trip_and_literal_bytes() {
        let kept = KeptOutgoing {
            id: BundleId::of(b"abc"),
            bytes: b"abc".to_vec(),
        };
        let file = kept_to_bytes(PEER, &kept);
        let mut want = b"RSko\x01".to_vec();
        want.extend([7; 16]);
        want.extend(kept.id.0.to_le_bytes());
        want.extend(b"abc");
        assert_eq!(file, want);
        assert_eq!(kept_from_bytes(&file), Ok((PEER, kept)));
        // A torn write no longer matches its id.
        for cut in 0..file.len() {
            assert!(kept_from_bytes(&file[..cut]).is_err(), "cut at {cut}");
        }
        let mut v = file.clone();
        v[4] = 2;
        assert_eq!(
            kept_from_bytes(&v),
            Err(PersistError::Version("kept bundle", 2))
        );
        assert_eq!(
            kept_from_bytes(&file[1..]),
            Err(PersistError::BadMagic("kept bundle"))
        );
    }

    #[test]
    fn partial_literal_bytes() {
        let head = partial_header(PEER, BundleId(0x0102), 300);
        let mut want = b"RSpi\x01".to_vec();
        want.extend([7; 16]);
        want.extend([0x02, 0x01, 0, 0, 0, 0, 0, 0]);
        want.extend([0xac, 0x02]);
        let crc = CRC32.checksum(&want);
        want.extend(crc.to_le_bytes());
        assert_eq!(head, want);
        let chunk = partial_chunk(b"xy");
        let crc = CRC32.checksum(&[0x02, b'x', b'y']);
        let mut want = vec![0x02, b'x', b'y'];
        want.extend(crc.to_le_bytes());
        assert_eq!(chunk, want);
    }

    #[test]
    fn partial_keeps_whole_records_of_a_torn_file() {
        let id = BundleId(9);
        let mut file = partial_header(PEER, id, 10);
        let head_len = file.len();
        let mut ends = vec![file.len()];
        for c in [&b"abcd"[..], b"ef", b"ghij"] {
            file.extend(partial_chunk(c));
            ends.push(file.len());
        }
        let full = partial_from_bytes(&file).unwrap();
        assert_eq!(full.partial.bytes, b"abcdefghij");
        assert_eq!(
            (full.peer, full.partial.id, full.partial.total_len),
            (PEER, id, 10)
        );
        for cut in 0..file.len() {
            let got = partial_from_bytes(&file[..cut]);
            if cut < head_len {
                assert!(got.is_err(), "cut at {cut}");
                continue;
            }
            let got = got.unwrap();
            let whole = *ends.iter().rfind(|&&e| e <= cut).unwrap();
            assert_eq!(got.valid_len, whole, "cut at {cut}");
            let want: &[u8] = match ends.iter().position(|&e| e == whole).unwrap() {
                0 => b"",
                1 => b"abcd",
                2 => b"abcdef",
                _ => b"abcdefghij",
            };
            assert_eq!(got.partial.bytes, want);
        }
        // A zeroed tail and a damaged record are dropped, not read.
        let mut z = file[..ends[1]].to_vec();
        z.extend([0; 12]);
        assert_eq!(partial_from_bytes(&z).unwrap().valid_len, ends[1]);
        let mut d = file.clone();
        d[ends[1] + 1] ^= 1;
        let got = partial_from_bytes(&d).unwrap();
        assert_eq!((got.valid_len, got.partial.bytes.len()), (ends[1], 4));
        // More bytes than the bundle has are not taken.
        let mut over = file.clone();
        over.extend(partial_chunk(b"k"));
        assert_eq!(partial_from_bytes(&over).unwrap().valid_len, ends[3]);
        // Header damage.
        let mut h = file.clone();
        h[6] ^= 1;
        assert_eq!(
            partial_from_bytes(&h),
            Err(PersistError::Damaged("partial bundle"))
        );
    }
}
