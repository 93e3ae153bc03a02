//! Frame capture files: every frame a station sent or received, as raw on-air
//! bytes (after framing), with its time and direction, plus what `capture show`
//! and `replay` need to decode them (link framing and the modem profile).
//! Pure encode/decode, with a writer and a reader over `std::io`.
//!
//! Layout (integers little-endian, varints LEB128):
//!
//! | field          | bytes  | meaning                                          |
//! |----------------|--------|--------------------------------------------------|
//! | magic          | 8      | `89 'R' 'S' 'C' 'A' 'P' 0D 0A`                   |
//! | version        | 1      | 1                                                |
//! | start          | 8      | wall clock at capture start, ms since Unix epoch (i64) |
//! | station        | 16     | capturing station's UUID (zeros if unknown)      |
//! | framing        | 1      | 1 = kiss, 2 = transparent, 0 = unknown           |
//! | profile name   | varint + UTF-8 | profile name as given to `--profile`     |
//! | profile text   | varint + UTF-8 | the profile TOML in force (may be empty) |
//! | header CRC     | 4      | CRC-32/ISO-HDLC of every header byte before it   |
//!
//! then records until the end of the file:
//!
//! | field  | bytes  | meaning                                              |
//! |--------|--------|------------------------------------------------------|
//! | time   | varint | ms since capture start                               |
//! | kind   | 1      | 1 = sent frame, 2 = received frame, 3 = note (UTF-8) |
//! | length | varint | byte count that follows (at most [`MAX_RECORD`])     |
//! | bytes  | length | the frame as on air, or the note's text              |
//! | CRC    | 4      | CRC-32/ISO-HDLC of time..bytes                       |
//!
//! A record is written with one `write_all` and flushed, so a crash leaves at
//! most one torn record at the end: the reader returns every whole record, then
//! [`CaptureError::Truncated`]. The record CRC catches a tail that a crash
//! filled with zeros or stale bytes.

pub mod decode;
pub mod replay;
pub mod show;

use std::io::{self, Read, Write};

use crate::bytes::{put_varint, varint_len, ByteReader, ReadError};
use crate::delta::StationId;

/// First 8 bytes of every capture file (PNG-style: a high byte, name, CR LF).
pub const MAGIC: [u8; 8] = [0x89, b'R', b'S', b'C', b'A', b'P', 0x0d, 0x0a];
/// Capture format version this build writes and reads.
pub const VERSION: u8 = 1;
/// Largest record body: far above any frame, small enough to refuse garbage.
pub const MAX_RECORD: usize = 1 << 20;
/// Largest profile text kept in a header.
pub const MAX_PROFILE_TEXT: usize = 1 << 16;
const MAX_PROFILE_NAME: usize = 255;
const CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// Which link framing the captured bytes use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkFraming {
    /// KISS frames (byte 1).
    Kiss,
    /// Transparent framing (byte 2).
    Transparent,
    /// Any other byte, kept as it came (0 = unknown).
    Unknown(u8),
}

impl LinkFraming {
    /// The framing's byte in the header.
    pub fn to_byte(self) -> u8 {
        match self {
            LinkFraming::Kiss => 1,
            LinkFraming::Transparent => 2,
            LinkFraming::Unknown(b) => b,
        }
    }

    /// The framing a header byte stands for.
    pub fn from_byte(b: u8) -> Self {
        match b {
            1 => LinkFraming::Kiss,
            2 => LinkFraming::Transparent,
            other => LinkFraming::Unknown(other),
        }
    }
}

/// What a capture file starts with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureHeader {
    /// Wall clock at capture start, ms since the Unix epoch (UTC).
    pub start_unix_ms: i64,
    /// The capturing station; zeros if unknown.
    pub station: StationId,
    /// Link framing of the captured bytes.
    pub framing: LinkFraming,
    /// The profile as given to `--profile` (name or path), at most 255 bytes.
    pub profile_name: String,
    /// The profile TOML in force, so a capture decodes without the profile file.
    pub profile_text: String,
}

/// What a record holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    /// A frame this station sent.
    Sent,
    /// A frame this station received.
    Received,
    /// A line from the station (session start, link lost, ...), for context.
    Note,
}

impl RecordKind {
    fn to_byte(self) -> u8 {
        match self {
            RecordKind::Sent => 1,
            RecordKind::Received => 2,
            RecordKind::Note => 3,
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(RecordKind::Sent),
            2 => Some(RecordKind::Received),
            3 => Some(RecordKind::Note),
            _ => None,
        }
    }
}

/// One timed entry of a capture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// ms since capture start.
    pub at_ms: u64,
    /// Sent, received or note.
    pub kind: RecordKind,
    /// The frame as on air, or the note's UTF-8 text; at most `MAX_RECORD` bytes.
    pub bytes: Vec<u8>,
}

/// Why a capture could not be written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureError {
    /// Reading or writing the file failed.
    #[error("capture I/O: {0}")]
    Io(#[from] io::Error),
    /// The file does not start with `MAGIC`.
    #[error("not a radiosync capture file (bad magic)")]
    BadMagic,
    /// A format version other than `VERSION`.
    #[error("capture format version {0} is not readable by this build (it reads {VERSION})")]
    Version(u8),
    /// The file ends before its header does.
    #[error("capture file ends inside its header")]
    TruncatedHeader,
    /// The header fails its checks (CRC, length, UTF-8).
    #[error("capture header is damaged: {0}")]
    BadHeader(&'static str),
    /// The file ends inside a record; the records before it are whole.
    #[error("capture ends inside record {index} at byte {offset} (cut short by a crash?); the {index} records before it are whole")]
    Truncated {
        /// Number of the record, from 0 (= whole records before it).
        index: u64,
        /// Byte offset of the record in the file.
        offset: u64,
    },
    /// A record fails its checks (CRC, kind, length).
    #[error("capture record {index} at byte {offset} is damaged: {reason}")]
    Corrupt {
        /// Number of the record, from 0.
        index: u64,
        /// Byte offset of the record in the file.
        offset: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// A field too large to write.
    #[error("{what} of {len} bytes is larger than a capture holds ({max})")]
    TooLarge {
        /// Which field.
        what: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// Why a record could not be read, before its position is known.
enum RecordFault {
    NeedMore,
    Corrupt(&'static str),
}

impl CaptureHeader {
    /// Bytes `emit` appends.
    pub fn buffer_len(&self) -> usize {
        8 + 1
            + 8
            + 16
            + 1
            + varint_len(self.profile_name.len() as u64)
            + self.profile_name.len()
            + varint_len(self.profile_text.len() as u64)
            + self.profile_text.len()
            + 4
    }

    /// Appends the header's bytes, CRC included; fails on an oversize profile name or text.
    pub fn emit(&self, buf: &mut Vec<u8>) -> Result<(), CaptureError> {
        check_len("profile name", self.profile_name.len(), MAX_PROFILE_NAME)?;
        check_len("profile text", self.profile_text.len(), MAX_PROFILE_TEXT)?;
        let start = buf.len();
        buf.extend_from_slice(&MAGIC);
        buf.push(VERSION);
        buf.extend_from_slice(&self.start_unix_ms.to_le_bytes());
        buf.extend_from_slice(&self.station.0);
        buf.push(self.framing.to_byte());
        put_str(buf, &self.profile_name);
        put_str(buf, &self.profile_text);
        let crc = CRC32.checksum(&buf[start..]);
        buf.extend_from_slice(&crc.to_le_bytes());
        Ok(())
    }

    /// Parses a header from the front of `bytes`; returns it and its length.
    pub fn parse(bytes: &[u8]) -> Result<(CaptureHeader, usize), CaptureError> {
        let mut r = ByteReader::new(bytes);
        let short = |_| CaptureError::TruncatedHeader;
        if r.take(MAGIC.len()).map_err(|_| magic_or_truncated(bytes))? != MAGIC {
            return Err(CaptureError::BadMagic);
        }
        let version = r.u8().map_err(short)?;
        if version != VERSION {
            return Err(CaptureError::Version(version));
        }
        let start_unix_ms = r.i64_le().map_err(short)?;
        let station = StationId(r.array().map_err(short)?);
        let framing = LinkFraming::from_byte(r.u8().map_err(short)?);
        let profile_name = header_str(&mut r, MAX_PROFILE_NAME)?;
        let profile_text = header_str(&mut r, MAX_PROFILE_TEXT)?;
        let want = CRC32.checksum(&bytes[..r.position()]);
        if r.u32_le().map_err(short)? != want {
            return Err(CaptureError::BadHeader("checksum mismatch"));
        }
        Ok((
            CaptureHeader {
                start_unix_ms,
                station,
                framing,
                profile_name,
                profile_text,
            },
            r.position(),
        ))
    }
}

/// A file too short for the magic is still "not a capture" if what is there
/// already differs from it.
fn magic_or_truncated(bytes: &[u8]) -> CaptureError {
    if MAGIC.starts_with(bytes) {
        CaptureError::TruncatedHeader
    } else {
        CaptureError::BadMagic
    }
}

fn check_len(what: &'static str, len: usize, max: usize) -> Result<(), CaptureError> {
    if len > max {
        return Err(CaptureError::TooLarge { what, len, max });
    }
    Ok(())
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    put_varint(buf, s.len() as u64);
    buf.extend_from_slice(s.as_bytes());
}

fn header_str(r: &mut ByteReader<'_>, max: usize) -> Result<String, CaptureError> {
    let len = r.varint().map_err(|e| match e {
        ReadError::Short => CaptureError::TruncatedHeader,
        ReadError::BadVarint => CaptureError::BadHeader("malformed length"),
    })?;
    if len > max as u64 {
        return Err(CaptureError::BadHeader("text field too long"));
    }
    let text = r
        .take(len as usize)
        .map_err(|_| CaptureError::TruncatedHeader)?;
    let text = std::str::from_utf8(text).map_err(|_| CaptureError::BadHeader("text not UTF-8"))?;
    Ok(text.to_owned())
}

impl Record {
    /// Bytes `emit` appends.
    pub fn buffer_len(&self) -> usize {
        varint_len(self.at_ms) + 1 + varint_len(self.bytes.len() as u64) + self.bytes.len() + 4
    }

    /// Appends the record's bytes, CRC included; fails over `MAX_RECORD`.
    pub fn emit(&self, buf: &mut Vec<u8>) -> Result<(), CaptureError> {
        check_len("record", self.bytes.len(), MAX_RECORD)?;
        let start = buf.len();
        put_varint(buf, self.at_ms);
        buf.push(self.kind.to_byte());
        put_varint(buf, self.bytes.len() as u64);
        buf.extend_from_slice(&self.bytes);
        let crc = CRC32.checksum(&buf[start..]);
        buf.extend_from_slice(&crc.to_le_bytes());
        Ok(())
    }

    /// One record from the front of `bytes` and its length.
    fn parse(bytes: &[u8]) -> Result<(Record, usize), RecordFault> {
        let mut r = ByteReader::new(bytes);
        let fault = |e| match e {
            ReadError::Short => RecordFault::NeedMore,
            ReadError::BadVarint => RecordFault::Corrupt("malformed varint"),
        };
        let at_ms = r.varint().map_err(fault)?;
        let kind = RecordKind::from_byte(r.u8().map_err(fault)?)
            .ok_or(RecordFault::Corrupt("unknown record kind"))?;
        let len = r.varint().map_err(fault)?;
        if len > MAX_RECORD as u64 {
            return Err(RecordFault::Corrupt("impossible length"));
        }
        let body = r.take(len as usize).map_err(fault)?;
        let end = r.position();
        if r.u32_le().map_err(fault)? != CRC32.checksum(&bytes[..end]) {
            return Err(RecordFault::Corrupt("checksum mismatch"));
        }
        Ok((
            Record {
                at_ms,
                kind,
                bytes: body.to_vec(),
            },
            r.position(),
        ))
    }
}

/// Writes a capture: the header at once, then one flushed write per record.
pub struct Writer<W: Write> {
    out: W,
    buf: Vec<u8>,
}

impl<W: Write> Writer<W> {
    /// Writes and flushes the header.
    pub fn new(mut out: W, header: &CaptureHeader) -> Result<Self, CaptureError> {
        let mut buf = Vec::with_capacity(header.buffer_len());
        header.emit(&mut buf)?;
        out.write_all(&buf)?;
        out.flush()?;
        buf.clear();
        Ok(Writer { out, buf })
    }

    /// Writes one record and flushes it.
    pub fn write(&mut self, record: &Record) -> Result<(), CaptureError> {
        self.buf.clear();
        record.emit(&mut self.buf)?;
        self.out.write_all(&self.buf)?;
        self.out.flush()?;
        Ok(())
    }

    /// The underlying writer.
    pub fn into_inner(self) -> W {
        self.out
    }

    /// The underlying writer, borrowed.
    pub fn get_ref(&self) -> &W {
        &self.out
    }
}

/// Reads a capture: the header up front, then an iterator of records that
/// ends after the last whole record, with an error item if the file ends
/// inside one or a record is damaged.
pub struct Reader<R: Read> {
    input: R,
    header: CaptureHeader,
    buf: Vec<u8>,
    /// Start of unread bytes in `buf`.
    pos: usize,
    /// File offset of `buf[0]`.
    base: u64,
    index: u64,
    eof: bool,
    done: bool,
}

impl<R: Read> Reader<R> {
    /// Reads and checks the header; records follow through the iterator.
    pub fn new(mut input: R) -> Result<Self, CaptureError> {
        let mut buf = Vec::new();
        let mut eof = false;
        loop {
            match CaptureHeader::parse(&buf) {
                Ok((header, len)) => {
                    return Ok(Reader {
                        input,
                        header,
                        buf,
                        pos: len,
                        base: 0,
                        index: 0,
                        eof,
                        done: false,
                    })
                }
                Err(CaptureError::TruncatedHeader) if !eof => {
                    eof = fill(&mut input, &mut buf)?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The file's header.
    pub fn header(&self) -> &CaptureHeader {
        &self.header
    }

    fn next_record(&mut self) -> Result<Option<Record>, CaptureError> {
        loop {
            let offset = self.base + self.pos as u64;
            if self.pos == self.buf.len() && self.eof {
                return Ok(None);
            }
            match Record::parse(&self.buf[self.pos..]) {
                Ok((record, len)) => {
                    self.pos += len;
                    self.index += 1;
                    return Ok(Some(record));
                }
                Err(RecordFault::Corrupt(reason)) => {
                    return Err(CaptureError::Corrupt {
                        index: self.index,
                        offset,
                        reason,
                    })
                }
                Err(RecordFault::NeedMore) if self.eof => {
                    return Err(CaptureError::Truncated {
                        index: self.index,
                        offset,
                    })
                }
                Err(RecordFault::NeedMore) => {
                    // Keep only the unread tail before reading on.
                    self.buf.drain(..self.pos);
                    self.base += self.pos as u64;
                    self.pos = 0;
                    self.eof = fill(&mut self.input, &mut self.buf)?;
                }
            }
        }
    }
}

impl<R: Read> Iterator for Reader<R> {
    type Item = Result<Record, CaptureError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = self.next_record().transpose();
        if !matches!(item, Some(Ok(_))) {
            self.done = true;
        }
        item
    }
}

/// Appends up to 16 KiB from `input`; true at end of input.
fn fill<R: Read>(input: &mut R, buf: &mut Vec<u8>) -> io::Result<bool> {
    let start = buf.len();
    buf.resize(start + (16 << 10), 0);
    loop {
        match input.read(&mut buf[start..]) {
            Ok(n) => {
                buf.truncate(start + n);
                return Ok(n == 0);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                buf.truncate(start);
                return Err(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> CaptureHeader {
        CaptureHeader {
            start_unix_ms: 0x0102_0304_0506_0708,
            station: StationId([0x5a; 16]),
            framing: LinkFraming::Kiss,
            profile_name: "sim".into(),
            profile_text: "b=1".into(),
        }
    }

    fn records() -> Vec<Record> {
        vec![
            Record {
                at_ms: 0,
                kind: RecordKind::Note,
                bytes: b"session start".to_vec(),
            },
            Record {
                at_ms: 300,
                kind: RecordKind::Sent,
                bytes: vec![0xc0, 0x00, 0x01, 0x02, 0xc0],
            },
            Record {
                at_ms: 1_234_567,
                kind: RecordKind::Received,
                bytes: (0..=255).collect(),
            },
        ]
    }

    fn file(records: &[Record]) -> Vec<u8> {
        let mut w = Writer::new(Vec::new(), &header()).unwrap();
        for r in records {
            w.write(r).unwrap();
        }
        w.into_inner()
    }

    fn read_all(bytes: &[u8]) -> (Vec<Record>, Option<CaptureError>) {
        let reader = Reader::new(bytes).unwrap();
        let mut ok = Vec::new();
        let mut err = None;
        for item in reader {
            match item {
                Ok(r) => ok.push(r),
                Err(e) => {
                    assert!(err.is_none(), "reader goes on after an error");
                    err = Some(e);
                }
            }
        }
        (ok, err)
    }

    #[test]
    fn header_literal_bytes() {
        let mut buf = Vec::new();
        header().emit(&mut buf).unwrap();
        let mut want = vec![0x89, b'R', b'S', b'C', b'A', b'P', 0x0d, 0x0a, 0x01];
        want.extend([0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01]);
        want.extend([0x5a; 16]);
        want.push(0x01);
        want.extend([0x03, b's', b'i', b'm', 0x03, b'b', b'=', b'1']);
        let crc = CRC32.checksum(&want);
        want.extend(crc.to_le_bytes());
        assert_eq!(buf, want);
        assert_eq!(buf.len(), header().buffer_len());
        assert_eq!(CaptureHeader::parse(&buf).unwrap(), (header(), buf.len()));
    }

    #[test]
    fn record_literal_bytes() {
        let r = Record {
            at_ms: 300,
            kind: RecordKind::Sent,
            bytes: vec![0xc0, 0x00, 0xc0],
        };
        let mut buf = Vec::new();
        r.emit(&mut buf).unwrap();
        let body = [0xac, 0x02, 0x01, 0x03, 0xc0, 0x00, 0xc0];
        let mut want = body.to_vec();
        want.extend(CRC32.checksum(&body).to_le_bytes());
        assert_eq!(buf, want);
        assert_eq!(buf.len(), r.buffer_len());
        assert!(matches!(Record::parse(&buf), Ok((ref got, 11)) if *got == r));
    }

    #[test]
    fn round_trip() {
        let bytes = file(&records());
        let reader = Reader::new(&bytes[..]).unwrap();
        assert_eq!(reader.header(), &header());
        let (got, err) = read_all(&bytes);
        assert_eq!(got, records());
        assert!(err.is_none());
        // An empty capture is a header and no records.
        let (got, err) = read_all(&file(&[]));
        assert!(got.is_empty() && err.is_none());
    }

    #[test]
    fn every_truncation_reads_up_to_the_last_whole_record() {
        let recs = records();
        let bytes = file(&recs);
        let header_len = header().buffer_len();
        let mut ends = vec![header_len];
        for r in &recs {
            ends.push(ends.last().unwrap() + r.buffer_len());
        }
        for cut in 0..bytes.len() {
            let cut_bytes = &bytes[..cut];
            if cut < header_len {
                assert!(matches!(
                    Reader::new(cut_bytes),
                    Err(CaptureError::TruncatedHeader)
                ));
                continue;
            }
            let whole = ends.iter().filter(|&&e| e <= cut).count() - 1;
            let (got, err) = read_all(cut_bytes);
            assert_eq!(got, recs[..whole], "cut at {cut}");
            if ends.contains(&cut) {
                assert!(err.is_none(), "cut at {cut}");
            } else {
                match err {
                    Some(CaptureError::Truncated { index, offset }) => {
                        assert_eq!(index, whole as u64);
                        assert_eq!(offset, ends[whole] as u64);
                    }
                    other => panic!("cut at {cut}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn zero_filled_tail_after_a_crash_is_reported_not_misread() {
        let mut bytes = file(&records());
        bytes.extend([0u8; 40]);
        let (got, err) = read_all(&bytes);
        assert_eq!(got, records());
        assert!(matches!(
            err,
            Some(CaptureError::Corrupt {
                index: 3,
                reason: "unknown record kind",
                ..
            })
        ));
    }

    #[test]
    fn damaged_records_and_headers_are_refused() {
        let bytes = file(&records());
        let header_len = header().buffer_len();
        // A flipped bit inside the second record's frame bytes.
        let mut bad = bytes.clone();
        bad[header_len + records()[0].buffer_len() + 5] ^= 0x10;
        let (got, err) = read_all(&bad);
        assert_eq!(got.len(), 1);
        assert!(matches!(
            err,
            Some(CaptureError::Corrupt {
                index: 1,
                reason: "checksum mismatch",
                ..
            })
        ));
        // An impossible length fails without allocating it.
        let mut huge = bytes[..header_len].to_vec();
        huge.extend([0x00, 0x02, 0xff, 0xff, 0xff, 0x7f]);
        let (_, err) = read_all(&huge);
        assert!(matches!(
            err,
            Some(CaptureError::Corrupt {
                reason: "impossible length",
                ..
            })
        ));
        // Header damage.
        let mut h = bytes.clone();
        h[12] ^= 1;
        assert!(matches!(
            Reader::new(&h[..]),
            Err(CaptureError::BadHeader("checksum mismatch"))
        ));
        let mut v = bytes.clone();
        v[8] = 2;
        assert!(matches!(Reader::new(&v[..]), Err(CaptureError::Version(2))));
        assert!(matches!(
            Reader::new(&b"SQLite format 3\0"[..]),
            Err(CaptureError::BadMagic)
        ));
        assert!(matches!(
            Reader::new(&b"x"[..]),
            Err(CaptureError::BadMagic)
        ));
        assert!(matches!(
            Reader::new(&MAGIC[..3]),
            Err(CaptureError::TruncatedHeader)
        ));
    }

    #[test]
    fn oversized_fields_are_refused_on_write() {
        let mut h = header();
        h.profile_name = "x".repeat(256);
        assert!(matches!(
            Writer::new(Vec::new(), &h),
            Err(CaptureError::TooLarge { .. })
        ));
        let mut w = Writer::new(Vec::new(), &header()).unwrap();
        let big = Record {
            at_ms: 0,
            kind: RecordKind::Sent,
            bytes: vec![0; MAX_RECORD + 1],
        };
        assert!(matches!(w.write(&big), Err(CaptureError::TooLarge { .. })));
        // Nothing of the refused record reached the file.
        assert_eq!(w.into_inner().len(), header().buffer_len());
    }

    /// A reader handing out one byte per read: records spanning refills.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() || buf.is_empty() {
                return Ok(0);
            }
            buf[0] = self.0[0];
            self.0 = &self.0[1..];
            Ok(1)
        }
    }

    #[test]
    fn reads_across_short_reads_and_large_files() {
        let recs = records();
        let bytes = file(&recs);
        let got: Vec<Record> = Reader::new(Trickle(&bytes))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(got, recs);
        // Many refills, a truncated tail included.
        let many: Vec<Record> = (0..3000)
            .map(|i| Record {
                at_ms: i * 7,
                kind: if i % 2 == 0 {
                    RecordKind::Sent
                } else {
                    RecordKind::Received
                },
                bytes: vec![i as u8; 40 + (i as usize % 50)],
            })
            .collect();
        let bytes = file(&many);
        let (got, err) = read_all(&bytes[..bytes.len() - 3]);
        assert_eq!(got, many[..2999]);
        assert!(matches!(
            err,
            Some(CaptureError::Truncated { index: 2999, .. })
        ));
    }

    #[test]
    fn garbage_after_the_header_never_panics() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let head = file(&[]);
        for _ in 0..3000 {
            let mut bytes = head.clone();
            let n = rng.gen_range(0..60);
            bytes.extend((0..n).map(|_| rng.gen::<u8>()));
            let (_, _err) = read_all(&bytes);
        }
    }
}
