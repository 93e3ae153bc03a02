//! Bundle encoding: a small header read without decompressing, then the rows
//! (postcard primitives; values row by row, identities per column), zstd-compressed with a
//! trimmed frame and an optional shared dictionary, or raw when that is
//! smaller. Pure: no I/O. Byte tables: `docs/wire-format.md`.

mod body;
mod value;
mod wire;

#[cfg(test)]
mod tests;

use crate::delta::{Bundle, BundleKind, SchemaFingerprint, StationId, VersionVector};
use body::Stations;
use wire::{Reader, Writer};

/// First two bytes of every bundle.
pub const MAGIC: [u8; 2] = *b"RS";
/// Bundle format version this build writes and reads.
pub const VERSION: u8 = 2;
/// Largest uncompressed body we accept: bounds what a hostile length makes us allocate.
pub const MAX_BODY_LEN: u64 = 64 << 20;
/// zstd level: bundles are small and CPU is cheap next to airtime.
pub const ZSTD_LEVEL: i32 = 19;

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// Offset and length of the bundle hash inside the header.
const HASH_AT: usize = 4;
const HASH_LEN: usize = 4;
/// CRC-32C (Castagnoli) over every byte of the bundle except the hash field
/// itself. 32 bits, not 64: see docs/wire-format.md for the trade.
const HASH: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);
const DICT_ID: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// The 4 bytes that name a station in a bundle header: CRC-32C of its UUID.
/// The receiver checks its own; the sender's is looked up among the peers.
pub fn station_key(id: &StationId) -> u32 {
    HASH.checksum(&id.0)
}

/// The two stations a bundle is between, as the receiver resolved them from
/// the header's station keys (`decode` checks that they match).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ends {
    /// The station that wrote the bundle.
    pub sender: StationId,
    /// The station it is for; `None` for an unaddressed slice.
    pub receiver: Option<StationId>,
}

impl Ends {
    /// The ends a bundle names.
    pub fn of(b: &Bundle) -> Self {
        Ends {
            sender: b.sender,
            receiver: b.receiver,
        }
    }
}

// Flag bits (byte 3).
const F_SLICE: u8 = 0x01;
const F_COMP_SHIFT: u8 = 1;
const F_COMP_MASK: u8 = 0x06;
const F_RECEIVER: u8 = 0x08;
const F_DICT_ID: u8 = 0x10;
const F_STATIONS: u8 = 0x20;
const F_ONE_BLOCK: u8 = 0x40;
/// The body starts with the sender's table layout (`Bundle::layout`).
const F_LAYOUT: u8 = 0x80;
/// zstd block type "compressed", and the largest block zstd writes.
const ZSTD_COMPRESSED_BLOCK: u32 = 2;
const ZSTD_MAX_BLOCK: usize = 128 * 1024;

/// A zstd dictionary both ends hold. `id` = CRC-32 of `bytes` (0 = none).
#[derive(Clone, Debug, PartialEq)]
pub struct Dictionary {
    /// CRC-32 of `bytes`; the header carries it.
    pub id: u32,
    /// The dictionary as zstd takes it.
    pub bytes: Vec<u8>,
}

impl Dictionary {
    /// Wrap dictionary bytes, naming them by their CRC-32.
    pub fn new(bytes: Vec<u8>) -> Self {
        Dictionary {
            id: DICT_ID.checksum(&bytes),
            bytes,
        }
    }
}

/// How the body travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// Raw: compressing did not make it smaller.
    None,
    /// zstd without a dictionary.
    Zstd,
    /// zstd with the sender's dictionary, which the receiver must hold.
    ZstdDict,
}

/// What can be read before decompressing: enough to refuse a bundle early.
/// `peek_header` has already checked the whole bundle's hash.
#[derive(Clone, Debug, PartialEq)]
pub struct Header {
    /// `station_key` of the sender's UUID.
    pub sender_key: u32,
    /// `station_key` of the receiver's UUID (absent in an unaddressed Slice).
    pub receiver_key: Option<u32>,
    /// The sender's schema fingerprint.
    pub schema: SchemaFingerprint,
    /// The sender's dictionary (0 = none); whether the body uses it is in `uses_dict`.
    pub dict_id: u32,
    /// The body is compressed with dictionary `dict_id`.
    pub uses_dict: bool,
    /// Delta or slice.
    pub kind: BundleKind,
    /// How the body travels.
    pub compression: Compression,
    /// The zstd body is one block whose block header was left out.
    pub one_block: bool,
    /// The body carries the sender's table layout.
    pub has_layout: bool,
    /// Uncompressed body length.
    pub body_len: u64,
}

/// Why bytes are not a bundle we can read, or a bundle cannot be encoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CodecError {
    /// The first two bytes are not `MAGIC`.
    #[error("not a radiosync bundle (wrong magic bytes)")]
    BadMagic,
    /// A format version other than `VERSION`.
    #[error("bundle format version {0} is not supported (this build reads version {VERSION})")]
    UnsupportedVersion(u8),
    /// Reserved flag bits, or a compression code we do not know.
    #[error("bundle flags {0:#04x} use reserved bits or an unknown compression")]
    BadFlags(u8),
    /// The bytes end inside the part named.
    #[error("bundle is truncated: it ends inside the {0}")]
    Truncated(&'static str),
    /// The hash over the bundle does not match: bytes were damaged.
    #[error("bundle is corrupted: hash {stored:#010x} stored, {computed:#010x} computed")]
    HashMismatch {
        /// Hash in the header.
        stored: u32,
        /// Hash over the bytes received.
        computed: u32,
    },
    /// A varint that is overlong or overflows, in the part named.
    #[error("bundle is corrupted: bad varint in the {0}")]
    BadVarint(&'static str),
    /// Text that is not UTF-8, in the part named.
    #[error("bundle is corrupted: invalid UTF-8 in the {0}")]
    BadUtf8(&'static str),
    /// A length or count larger than the bytes or limits allow.
    #[error("bundle is corrupted: {what} of {len} is impossible here")]
    AbsurdLength {
        /// What was counted.
        what: &'static str,
        /// The value read.
        len: u64,
    },
    /// Bytes after the end of the body.
    #[error("bundle is corrupted: {0} bytes follow its end")]
    TrailingBytes(usize),
    /// A station index past the end of the bundle's station table.
    #[error("bundle is corrupted: station index {0} is not in its station table")]
    BadStationIndex(u64),
    /// Some other inconsistency, described.
    #[error("bundle is corrupted: {0}")]
    Malformed(&'static str),
    /// The header's station keys do not match the ends given to `decode`.
    #[error(
        "bundle names stations {sender:#010x} -> {receiver:?} in its header, not the ones given"
    )]
    WrongEnds {
        /// Station key of the sender in the header.
        sender: u32,
        /// Station key of the receiver in the header, if any.
        receiver: Option<u32>,
    },
    /// The body needs a dictionary and none was given (its id).
    #[error(
        "bundle body is compressed with dictionary {0:#010x}, which this station does not hold"
    )]
    DictionaryMissing(u32),
    /// The dictionary given is not the one the body needs.
    #[error(
        "bundle body needs dictionary {expected:#010x} but dictionary {given:#010x} was given"
    )]
    DictionaryMismatch {
        /// Id of the dictionary the header names.
        expected: u32,
        /// Id of the one given.
        given: u32,
    },
    /// zstd refused the body.
    #[error("bundle body does not decompress: {0}")]
    Decompress(String),
    /// The body's length differs from the header's.
    #[error("bundle body is {actual} bytes long but its header says {declared}")]
    BodyLength {
        /// Length in the header.
        declared: u64,
        /// Length of the body.
        actual: u64,
    },
    /// The bundle cannot be encoded (a local mistake), with the reason.
    #[error("cannot encode this bundle: {0}")]
    InvalidBundle(&'static str),
    /// zstd failed to compress.
    #[error("zstd compression failed: {0}")]
    Compress(String),
    /// zstd failed to train a dictionary.
    #[error("dictionary training failed: {0}")]
    Training(String),
}

fn flags_of(bundle: &Bundle, comp: Compression, dict: bool, extra: bool, one_block: bool) -> u8 {
    let mut f = match bundle.kind {
        BundleKind::Delta => 0,
        BundleKind::Slice => F_SLICE,
    };
    f |= match comp {
        Compression::None => 0,
        Compression::Zstd => 1,
        Compression::ZstdDict => 2,
    } << F_COMP_SHIFT;
    if bundle.receiver.is_some() {
        f |= F_RECEIVER;
    }
    if dict {
        f |= F_DICT_ID;
    }
    if extra {
        f |= F_STATIONS;
    }
    if one_block {
        f |= F_ONE_BLOCK;
    }
    if bundle.layout.is_some() {
        f |= F_LAYOUT;
    }
    f
}

/// A body that zstd wrote as one last compressed block: its 3-byte block
/// header says nothing the bundle length does not, so it is left out.
fn single_block(blocks: &[u8]) -> Option<&[u8]> {
    let (head, rest) = blocks.split_at_checked(3)?;
    let h = u32::from_le_bytes([head[0], head[1], head[2], 0]);
    let last = h & 1 == 1;
    let kind = (h >> 1) & 3;
    (last && kind == ZSTD_COMPRESSED_BLOCK && (h >> 3) as usize == rest.len()).then_some(rest)
}

fn start_seqs(v: &VersionVector) -> body::LastSeq {
    v.0.iter().map(|(s, q)| (*s, *q)).collect()
}

/// zstd at our level with every optional frame field off, then the frame
/// header (magic, descriptor, window) stripped: only the blocks travel.
fn compress(body: &[u8], dict: Option<&Dictionary>) -> Result<Vec<u8>, CodecError> {
    use zstd::zstd_safe::CParameter;
    let err = |e: std::io::Error| CodecError::Compress(e.to_string());
    let mut c = match dict {
        Some(d) => zstd::bulk::Compressor::with_dictionary(ZSTD_LEVEL, &d.bytes),
        None => zstd::bulk::Compressor::new(ZSTD_LEVEL),
    }
    .map_err(err)?;
    for p in [
        CParameter::ChecksumFlag(false),
        CParameter::ContentSizeFlag(false),
        CParameter::DictIdFlag(false),
    ] {
        c.set_parameter(p).map_err(err)?;
    }
    let frame = c.compress(body).map_err(err)?;
    // Magic, then descriptor 0x00 (no content size, no dict id, no checksum,
    // not single-segment), then one window byte.
    match frame.split_at_checked(6) {
        Some((head, blocks)) if head[..4] == ZSTD_MAGIC && head[4] == 0 => Ok(blocks.to_vec()),
        _ => Err(CodecError::Compress("unexpected zstd frame header".into())),
    }
}

/// The frame header we stripped, rebuilt from the body length we carry: a
/// single-segment frame whose window is the content itself.
fn frame_header(body_len: u64) -> Vec<u8> {
    let mut h = ZSTD_MAGIC.to_vec();
    if body_len < 256 {
        h.push(0x20);
        h.push(body_len as u8);
    } else if body_len < 65536 + 256 {
        h.push(0x60);
        h.extend_from_slice(&((body_len - 256) as u16).to_le_bytes());
    } else {
        h.push(0xa0);
        h.extend_from_slice(&(body_len as u32).to_le_bytes());
    }
    h
}

fn decompress(
    blocks: &[u8],
    dict: Option<&Dictionary>,
    body_len: u64,
) -> Result<Vec<u8>, CodecError> {
    let err = |e: std::io::Error| CodecError::Decompress(e.to_string());
    let mut frame = frame_header(body_len);
    frame.extend_from_slice(blocks);
    let mut d = match dict {
        Some(d) => zstd::bulk::Decompressor::with_dictionary(&d.bytes),
        None => zstd::bulk::Decompressor::new(),
    }
    .map_err(err)?;
    // The frame declares body_len, so zstd itself refuses a longer body.
    let out = d.decompress(&frame, body_len as usize).map_err(err)?;
    if out.len() as u64 != body_len {
        return Err(CodecError::BodyLength {
            declared: body_len,
            actual: out.len() as u64,
        });
    }
    Ok(out)
}

/// `own_dict`: the sender's dictionary (its id is advertised); `use_dict`: compress with it
/// (only when the receiver is known to hold the same one).
pub fn encode(
    bundle: &Bundle,
    own_dict: Option<&Dictionary>,
    use_dict: bool,
) -> Result<Vec<u8>, CodecError> {
    if use_dict && own_dict.is_none() {
        return Err(CodecError::InvalidBundle("use_dict without a dictionary"));
    }
    body::check_bundle_rows(&bundle.tables)?;

    let mut st = Stations::default();
    st.push(bundle.sender);
    if let Some(r) = bundle.receiver {
        st.push(r);
    }
    let fixed = st.list.len();
    for origin in bundle.sender_vector.0.keys() {
        st.add(*origin);
    }
    st.collect_rows(&bundle.tables);
    st.collect_wants(&bundle.wants);

    let mut b = Writer::default();
    if let Some(layout) = &bundle.layout {
        body::put_layout(&mut b, layout);
    }
    body::put_body(
        &mut b,
        &bundle.wants,
        &bundle.tables,
        &st,
        start_seqs(&bundle.sender_vector),
    );
    let raw_body = b.buf;
    let (comp, one_block, payload) = {
        let dict = own_dict.filter(|_| use_dict);
        let z = compress(&raw_body, dict)?;
        let (one, z) = match single_block(&z) {
            Some(rest) => (true, rest.to_vec()),
            None => (false, z),
        };
        if z.len() < raw_body.len() {
            let c = if dict.is_some() {
                Compression::ZstdDict
            } else {
                Compression::Zstd
            };
            (c, one, z)
        } else {
            (Compression::None, false, raw_body.clone())
        }
    };
    if raw_body.len() as u64 > MAX_BODY_LEN {
        return Err(CodecError::InvalidBundle("body larger than MAX_BODY_LEN"));
    }

    let mut w = Writer::default();
    w.raw(&MAGIC);
    let extra = &st.list[fixed..];
    w.raw(&[
        VERSION,
        flags_of(
            bundle,
            comp,
            own_dict.is_some(),
            !extra.is_empty(),
            one_block,
        ),
    ]);
    w.raw(&[0; HASH_LEN]);
    w.raw(&station_key(&bundle.sender).to_le_bytes());
    if let Some(r) = bundle.receiver {
        w.raw(&station_key(&r).to_le_bytes());
    }
    w.raw(&bundle.schema.0.to_le_bytes());
    if let Some(d) = own_dict {
        w.raw(&d.id.to_le_bytes());
    }
    if !extra.is_empty() {
        w.varint(extra.len() as u64);
        for s in extra {
            w.raw(&s.0);
        }
    }
    w.varint(bundle.sender_vector.0.len() as u64);
    for (origin, seq) in &bundle.sender_vector.0 {
        w.varint(st.idx(origin));
        w.varint(*seq);
    }
    w.varint(raw_body.len() as u64);
    w.raw(&payload);

    let mut out = w.buf;
    let h = hash_of(&out);
    out[HASH_AT..HASH_AT + HASH_LEN].copy_from_slice(&h.to_le_bytes());
    Ok(out)
}

fn hash_of(bytes: &[u8]) -> u32 {
    let mut d = HASH.digest();
    d.update(&bytes[..HASH_AT]);
    d.update(&bytes[HASH_AT + HASH_LEN..]);
    d.finalize()
}

/// The header plus the station table and where the body starts.
struct Parsed<'a> {
    header: Header,
    /// The "other stations" of the header, in order.
    extra: Vec<StationId>,
    /// Sender vector entries: (station index, seq), resolved once the ends are known.
    vector: Vec<(u64, u64)>,
    body: &'a [u8],
}

fn parse(bytes: &[u8]) -> Result<Parsed<'_>, CodecError> {
    let mut r = Reader::new(bytes);
    if r.raw(2, "magic")? != MAGIC {
        return Err(CodecError::BadMagic);
    }
    let version = r.byte("version")?;
    if version != VERSION {
        return Err(CodecError::UnsupportedVersion(version));
    }
    let flags = r.byte("flags")?;
    let comp = match (flags & F_COMP_MASK) >> F_COMP_SHIFT {
        0 => Compression::None,
        1 => Compression::Zstd,
        2 => Compression::ZstdDict,
        _ => return Err(CodecError::BadFlags(flags)),
    };
    if (comp == Compression::ZstdDict && flags & F_DICT_ID == 0)
        || (comp == Compression::None && flags & F_ONE_BLOCK != 0)
    {
        return Err(CodecError::BadFlags(flags));
    }
    let stored = u32::from_le_bytes(r.array::<HASH_LEN>("hash")?);
    // Check the hash before believing any other field.
    let computed = hash_of(bytes);
    // Fuzzing builds skip the check so the fuzzer reaches the fields behind it.
    if stored != computed && !cfg!(fuzzing) {
        return Err(CodecError::HashMismatch { stored, computed });
    }

    let sender_key = r.u32_le("sender key")?;
    let receiver_key = if flags & F_RECEIVER != 0 {
        Some(r.u32_le("receiver key")?)
    } else {
        None
    };
    let fixed = 1 + usize::from(receiver_key.is_some());
    let schema = SchemaFingerprint(r.u32_le("schema fingerprint")?);
    let dict_id = if flags & F_DICT_ID != 0 {
        r.u32_le("dictionary id")?
    } else {
        0
    };
    let extra = if flags & F_STATIONS != 0 {
        let n = r.count(r.remaining() / 16, "station count")?;
        if n == 0 {
            return Err(CodecError::Malformed("empty station table flagged"));
        }
        n
    } else {
        0
    };
    let mut others = Vec::with_capacity(extra);
    for _ in 0..extra {
        let s = StationId(r.array("station table")?);
        if others.contains(&s) {
            return Err(CodecError::Malformed("a station is listed twice"));
        }
        others.push(s);
    }
    let nv = r.count(r.remaining() / 2, "version vector length")?;
    let mut vector = Vec::with_capacity(nv);
    for _ in 0..nv {
        let i = r.varint("version vector")?;
        if i >= (fixed + others.len()) as u64 {
            return Err(CodecError::BadStationIndex(i));
        }
        if vector.iter().any(|(j, _)| *j == i) {
            return Err(CodecError::Malformed(
                "version vector names a station twice",
            ));
        }
        vector.push((i, r.varint("version vector")?));
    }
    let body_len = r.varint("body length")?;
    if body_len > MAX_BODY_LEN {
        return Err(CodecError::AbsurdLength {
            what: "body length",
            len: body_len,
        });
    }
    let body = r.raw(r.remaining(), "body")?;
    if comp == Compression::None && body.len() as u64 != body_len {
        return Err(CodecError::BodyLength {
            declared: body_len,
            actual: body.len() as u64,
        });
    }
    let header = Header {
        sender_key,
        receiver_key,
        schema,
        dict_id,
        uses_dict: comp == Compression::ZstdDict,
        kind: if flags & F_SLICE != 0 {
            BundleKind::Slice
        } else {
            BundleKind::Delta
        },
        compression: comp,
        one_block: flags & F_ONE_BLOCK != 0,
        has_layout: flags & F_LAYOUT != 0,
        body_len,
    };
    Ok(Parsed {
        header,
        extra: others,
        vector,
        body,
    })
}

/// Read and check the header (magic, version, flags, hash over the whole bundle)
/// without decompressing the body.
pub fn peek_header(bytes: &[u8]) -> Result<Header, CodecError> {
    parse(bytes).map(|p| p.header)
}

/// The zstd blocks of a body, with the single block's header put back.
fn blocks(payload: &[u8], one_block: bool) -> Result<Vec<u8>, CodecError> {
    if !one_block {
        return Ok(payload.to_vec());
    }
    if payload.len() > ZSTD_MAX_BLOCK {
        return Err(CodecError::AbsurdLength {
            what: "single zstd block",
            len: payload.len() as u64,
        });
    }
    let h = (payload.len() as u32) << 3 | ZSTD_COMPRESSED_BLOCK << 1 | 1;
    let mut out = h.to_le_bytes()[..3].to_vec();
    out.extend_from_slice(payload);
    Ok(out)
}

/// Decode untrusted bytes. `dict` must be the dictionary the header names when the
/// body uses one; `ends` the sender and receiver whose station keys the header
/// carries (the receiver resolves them: itself, and the peer with that key).
pub fn decode(bytes: &[u8], dict: Option<&Dictionary>, ends: &Ends) -> Result<Bundle, CodecError> {
    let Parsed {
        header: h,
        extra,
        vector,
        body: payload,
    } = parse(bytes)?;
    let matches = station_key(&ends.sender) == h.sender_key
        && ends.receiver.map(|r| station_key(&r)) == h.receiver_key;
    // Fuzzing builds take any ends, as they skip the hash.
    if !matches && !cfg!(fuzzing) {
        return Err(CodecError::WrongEnds {
            sender: h.sender_key,
            receiver: h.receiver_key,
        });
    }
    let mut stations = Stations::default();
    stations.push(ends.sender);
    if h.receiver_key.is_some() {
        stations.push(ends.receiver.unwrap_or(ends.sender));
    }
    for s in extra {
        if stations.list.contains(&s) {
            return Err(CodecError::Malformed("a station is listed twice"));
        }
        stations.push(s);
    }
    let mut sender_vector = VersionVector::default();
    for (i, seq) in vector {
        if sender_vector.0.insert(stations.get(i)?, seq).is_some() {
            return Err(CodecError::Malformed(
                "version vector names a station twice",
            ));
        }
    }
    let body_bytes;
    let body = match h.compression {
        Compression::None => payload,
        Compression::Zstd => {
            body_bytes = decompress(&blocks(payload, h.one_block)?, None, h.body_len)?;
            &body_bytes[..]
        }
        Compression::ZstdDict => {
            let d = dict.ok_or(CodecError::DictionaryMissing(h.dict_id))?;
            if d.id != h.dict_id {
                return Err(CodecError::DictionaryMismatch {
                    expected: h.dict_id,
                    given: d.id,
                });
            }
            body_bytes = decompress(&blocks(payload, h.one_block)?, Some(d), h.body_len)?;
            &body_bytes[..]
        }
    };
    let (layout, body) = if h.has_layout {
        let (layout, used) = body::get_layout(body)?;
        (Some(layout), &body[used..])
    } else {
        (None, body)
    };
    let (wants, tables) = body::get_body(body, &stations, start_seqs(&sender_vector))?;
    if let Some(l) = &layout {
        let beyond = tables.iter().any(|t| usize::from(t.table) >= l.len())
            || wants.iter().any(|w| usize::from(w.table) >= l.len());
        if beyond {
            return Err(CodecError::Malformed("a table index beyond the layout"));
        }
    }
    Ok(Bundle {
        layout,
        kind: h.kind,
        sender: ends.sender,
        receiver: h.receiver_key.and(ends.receiver),
        schema: h.schema,
        sender_vector,
        wants,
        tables,
    })
}

/// Samples for dictionary training, in exactly the byte form rows take inside bundles:
/// each is the body of a bundle carrying that one row, as its origin would send it.
/// A small table's samples are repeated (up to 16 times) towards the mean
/// table's count, so the trainer keeps segments of narrow and wide small
/// tables too instead of only those of the biggest one.
pub fn training_samples(tables: &[crate::delta::TableChanges]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let filled: Vec<usize> = tables
        .iter()
        .map(|t| t.rows.len())
        .filter(|n| *n > 0)
        .collect();
    let mean = filled.iter().sum::<usize>() / filled.len().max(1);
    for t in tables {
        let repeat = (mean / t.rows.len().max(1)).clamp(1, MAX_REPEAT);
        for row in t.rows.iter().flat_map(|r| std::iter::repeat_n(r, repeat)) {
            let one = crate::delta::TableChanges {
                table: t.table,
                rows: vec![row.clone()],
            };
            let mut st = Stations::default();
            st.push(row.tag.origin);
            st.collect_rows(std::slice::from_ref(&one));
            if body::check_bundle_rows(std::slice::from_ref(&one)).is_err() {
                continue;
            }
            let mut w = Writer::default();
            // As in a bundle whose sender vector ends at this row's change.
            let seqs = [(row.tag.origin, row.tag.seq)].into_iter().collect();
            body::put_body(&mut w, &[], std::slice::from_ref(&one), &st, seqs);
            out.push(w.buf);
        }
    }
    out
}

/// Most times a small table's training samples are repeated.
const MAX_REPEAT: usize = 16;

/// Train a zstd dictionary of at most `max_size` bytes on `samples`.
pub fn train_dictionary(samples: &[Vec<u8>], max_size: usize) -> Result<Dictionary, CodecError> {
    let bytes = zstd::dict::from_samples(samples, max_size)
        .map_err(|e| CodecError::Training(e.to_string()))?;
    Ok(Dictionary::new(bytes))
}
