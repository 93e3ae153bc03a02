//! Session messages: the bytes one ARQ message carries. Pure.
//!
//! Byte 0 is the message type; integers are LEB128 varints except fixed-size
//! identities. The protocol version travels in `Hello` only: both ends refuse
//! a version they do not speak before anything else is exchanged.
//! `docs/sync-protocol.md` has the byte tables.

pub use crate::bytes::{get_varint, put_varint, varint_len};
use crate::bytes::{ByteReader, ReadError};
use crate::delta::{SchemaFingerprint, StationId, VersionVector};

/// The session protocol version this build speaks.
pub const PROTOCOL_VERSION: u8 = 4;
/// Longest callsign accepted in a `Hello` (AX.25 needs 6 + SSID; room to spare).
pub const MAX_CALLSIGN: usize = 16;
/// Longest error text emitted; longer texts are cut at a character boundary.
pub const MAX_ERROR_TEXT: usize = 200;

/// Message type byte of `Message::Hello`.
pub const TYPE_HELLO: u8 = 0x01;
/// Message type byte of `Message::BundleStart`.
pub const TYPE_BUNDLE_START: u8 = 0x02;
/// Message type byte of `Message::Chunk`.
pub const TYPE_CHUNK: u8 = 0x03;
/// Message type byte of `Message::NoBundle`.
pub const TYPE_NO_BUNDLE: u8 = 0x04;
/// Message type byte of `Message::Applied`.
pub const TYPE_APPLIED: u8 = 0x05;
/// Message type byte of `Message::Error`.
pub const TYPE_ERROR: u8 = 0x06;
/// Message type byte of `Message::Done`.
pub const TYPE_DONE: u8 = 0x07;
/// Message type byte of a `Message::Fragment` that more pieces follow.
pub const TYPE_FRAGMENT: u8 = 0x08;
/// Message type byte of the last piece of a `Message::Fragment`.
pub const TYPE_LAST_FRAGMENT: u8 = 0x09;
/// Message type byte of `Message::Sketch`.
pub const TYPE_SKETCH: u8 = 0x0a;
/// Message type byte of `Message::SketchMore`.
pub const TYPE_SKETCH_MORE: u8 = 0x0b;
/// Message type byte of `Message::Differences`.
pub const TYPE_DIFFERENCES: u8 = 0x0c;
/// Largest message that may be sent in fragments.
pub const MAX_REASSEMBLY: usize = 64 << 10;

/// A bundle's identity on the session: CRC-64/XZ of its exact bytes. Both ends
/// compute it, so a resumed transfer is checked end to end after reassembly.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord, Default)]
pub struct BundleId(pub u64);

impl BundleId {
    /// The id of the bundle `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        const CRC64: crc::Crc<u64> = crc::Crc::<u64>::new(&crc::CRC_64_XZ);
        BundleId(CRC64.checksum(bytes))
    }
}

impl std::fmt::Display for BundleId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Most pieces past the stored prefix a `Resume` names (a broadcast heard
/// with gaps); pieces beyond them are sent again.
pub const MAX_RESUME_PIECES: usize = 32;

/// Where an interrupted incoming bundle stands: its id, how many of its bytes
/// the receiver has stored from the start, and the pieces it holds past them.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Resume {
    /// The bundle.
    pub id: BundleId,
    /// Bytes of it the receiver holds, from the start.
    pub stored: u64,
    /// Pieces (offset, length) held past `stored`: ascending, apart, never
    /// empty, at most `MAX_RESUME_PIECES`. The sender skips them.
    pub later: Vec<(u64, u64)>,
}

impl Resume {
    fn later_len(&self) -> usize {
        if self.later.is_empty() {
            return 0;
        }
        let mut n = varint_len(self.later.len() as u64);
        let mut end = self.stored;
        for &(off, len) in &self.later {
            n += varint_len(off - end) + varint_len(len);
            end = off + len;
        }
        n
    }
}

/// The first message each way: who is talking and what it holds.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Hello {
    /// Session protocol version of the sender.
    pub version: u8,
    /// The sender opened the session.
    pub initiator: bool,
    /// The sender's identity.
    pub station: StationId,
    /// The sender's callsign; empty if it has none. At most `MAX_CALLSIGN` bytes.
    pub callsign: String,
    /// The sender's schema fingerprint.
    pub schema: SchemaFingerprint,
    /// The sender's zstd dictionary id (0 = none).
    pub dict_id: u32,
    /// What the sender holds, per origin.
    pub vector: VersionVector,
    /// The bundle from the addressee that the sender holds part of.
    pub resume: Option<Resume>,
    /// The sender's content fingerprint (`store::fingerprint`) as the session starts.
    pub fingerprint: Option<u64>,
    /// The sender takes no bundle from the addressee (it may not push here).
    pub refuses_push: bool,
    /// The sender's nonce and proof of identity (`auth`); the proof is the
    /// message's last `PROOF_LEN` bytes.
    pub auth: Option<HelloAuth>,
}

/// The authenticated part of a Hello.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct HelloAuth {
    /// Initiator: a counter above every nonce it used before; responder: random.
    pub nonce: u64,
    /// MAC of the Hello's bytes before it, under the session's Hello key.
    pub proof: [u8; crate::auth::PROOF_LEN],
}

/// Why a session was refused or aborted.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ErrorCode {
    /// The peer speaks another session protocol version.
    Version,
    /// The tracked tables differ (schema fingerprints do not match).
    SchemaMismatch,
    /// The peer is not registered at this station.
    UnknownStation,
    /// The peer is not the station that was called.
    WrongStation,
    /// The receiver could not apply the bundle (the text says why).
    BundleRefused,
    /// The reassembled bundle does not match its id.
    BundleCorrupt,
    /// The bundle is larger than the receiver accepts.
    BundleTooLarge,
    /// A message arrived that the protocol does not allow at that point.
    Protocol,
    /// The station failed locally (store error, disk full, ...).
    Local,
    /// The operator or daemon stopped the session.
    Cancelled,
    /// The caller did not prove it holds its registered key (or replayed a Hello).
    Unauthenticated,
    /// A code this build does not know, kept as it came.
    Unknown(u8),
}

impl ErrorCode {
    /// The code's byte on the wire.
    pub fn to_byte(self) -> u8 {
        match self {
            ErrorCode::Version => 1,
            ErrorCode::SchemaMismatch => 2,
            ErrorCode::UnknownStation => 3,
            ErrorCode::WrongStation => 4,
            ErrorCode::BundleRefused => 5,
            ErrorCode::BundleCorrupt => 6,
            ErrorCode::BundleTooLarge => 7,
            ErrorCode::Protocol => 8,
            ErrorCode::Local => 9,
            ErrorCode::Cancelled => 10,
            ErrorCode::Unauthenticated => 11,
            ErrorCode::Unknown(b) => b,
        }
    }

    /// The code a byte on the wire stands for.
    pub fn from_byte(b: u8) -> Self {
        match b {
            1 => ErrorCode::Version,
            2 => ErrorCode::SchemaMismatch,
            3 => ErrorCode::UnknownStation,
            4 => ErrorCode::WrongStation,
            5 => ErrorCode::BundleRefused,
            6 => ErrorCode::BundleCorrupt,
            7 => ErrorCode::BundleTooLarge,
            8 => ErrorCode::Protocol,
            9 => ErrorCode::Local,
            10 => ErrorCode::Cancelled,
            11 => ErrorCode::Unauthenticated,
            other => ErrorCode::Unknown(other),
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            ErrorCode::Version => "protocol version mismatch",
            ErrorCode::SchemaMismatch => "schema mismatch",
            ErrorCode::UnknownStation => "unknown station",
            ErrorCode::WrongStation => "wrong station",
            ErrorCode::BundleRefused => "bundle refused",
            ErrorCode::BundleCorrupt => "bundle corrupt",
            ErrorCode::BundleTooLarge => "bundle too large",
            ErrorCode::Protocol => "protocol violation",
            ErrorCode::Local => "local failure",
            ErrorCode::Cancelled => "cancelled",
            ErrorCode::Unauthenticated => "not authenticated",
            ErrorCode::Unknown(b) => return write!(f, "error code {b}"),
        };
        f.write_str(name)
    }
}

/// One session message.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Message {
    /// The first message each way.
    Hello(Hello),
    /// A bundle follows: `total_len` bytes, sent from `offset` on (the
    /// receiver's stored count on a resume, else 0). `more`: this is a bundle
    /// kept from an earlier session; after its `Applied` the sender sends a
    /// fresh `BundleStart` or `NoBundle` for what is new since.
    BundleStart {
        /// CRC-64 of the whole bundle.
        id: BundleId,
        /// Length of the whole bundle, in bytes.
        total_len: u64,
        /// Where the chunks start in the bundle.
        offset: u64,
        /// A bundle kept from an earlier session (see above).
        more: bool,
    },
    /// Bytes of the bundle of the last `BundleStart`. The ARQ delivers in
    /// order exactly once, so the id is not repeated; `offset` is a check.
    Chunk {
        /// Position of `bytes` in the bundle; must follow on from the last chunk.
        offset: u64,
        /// The bundle's bytes from `offset` on; never empty.
        bytes: Vec<u8>,
    },
    /// The sender has nothing the receiver lacks.
    NoBundle,
    /// The receiver committed bundle `id`; `vector` is what it now holds and
    /// `fingerprint` its content fingerprint after the commit.
    Applied {
        /// The bundle committed.
        id: BundleId,
        /// What the receiver holds after the commit, per origin.
        vector: VersionVector,
        /// The receiver's content fingerprint after the commit.
        fingerprint: Option<u64>,
    },
    /// The sender refuses or aborts the session; no more messages follow.
    Error {
        /// Why, for the program.
        code: ErrorCode,
        /// Why, for the operator; at most `MAX_ERROR_TEXT` bytes on the wire.
        text: String,
    },
    /// The responder's last word: both directions are complete; `fingerprint`
    /// is its content fingerprint at the end, for the initiator to compare.
    Done {
        /// The responder's content fingerprint (8 bytes when present).
        fingerprint: Option<u64>,
    },
    /// A piece of a message larger than the ARQ's message size (a Hello or
    /// Applied with a long vector): the pieces, concatenated up to the one
    /// with `last`, are the bytes of that message.
    Fragment {
        /// This is the last piece.
        last: bool,
        /// The piece; never empty.
        bytes: Vec<u8>,
    },
    /// Set reconciliation, responder to initiator: a PinSketch of the
    /// responder's row items (`recon`), sums `offset..offset + sums.len()` of it.
    Sketch {
        /// The salt the items are hashed under.
        salt: u64,
        /// How many items the sender holds.
        items: u64,
        /// Index of the first sum carried (0, or the capacity sent so far).
        offset: u64,
        /// The sums; 4 bytes each on the wire.
        sums: Vec<u32>,
    },
    /// The initiator could not decode the difference: send sums up to
    /// `capacity` in all, or (0) give up and sync by the change logs.
    SketchMore {
        /// The capacity wanted in all; 0 gives up.
        capacity: u64,
    },
    /// The difference decoded: these are the sender-of-the-sketch's items the
    /// initiator lacks (4 bytes each); its bundle carries the rows behind them.
    Differences {
        /// The items.
        items: Vec<u32>,
    },
    /// A type this build does not know.
    Unknown(u8),
}

/// Why bytes are not a valid message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// No bytes at all.
    #[error("empty message")]
    Empty,
    /// A message that ends before its last field.
    #[error("message type {kind:#04x} ends early")]
    Truncated {
        /// The message type byte.
        kind: u8,
    },
    /// Bytes after the message's last field.
    #[error("message type {kind:#04x} has {extra} bytes past its end")]
    TrailingBytes {
        /// The message type byte.
        kind: u8,
        /// How many bytes follow.
        extra: usize,
    },
    /// A varint that is overlong or overflows.
    #[error("malformed varint")]
    BadVarint,
    /// A callsign longer than `MAX_CALLSIGN` bytes.
    #[error("callsign is {0} bytes, at most {MAX_CALLSIGN} allowed")]
    CallsignTooLong(usize),
    /// A callsign or error text that is not UTF-8.
    #[error("text is not UTF-8")]
    BadText,
    /// Version vector entries out of order, or a station twice.
    #[error("version vector entries not in ascending station order")]
    VectorOrder,
    /// Flag bits this version does not define.
    #[error("unknown flags {0:#04x}")]
    BadFlags(u8),
    /// A chunk or fragment with no bytes.
    #[error("chunk or fragment carries no bytes")]
    EmptyChunk,
    /// Resume pieces that overlap, touch, are empty, or are too many.
    #[error("resume pieces not apart, ascending and at most {MAX_RESUME_PIECES}")]
    BadPieces,
    /// A list of 4-byte items whose length is not a multiple of 4.
    #[error("{0} bytes of 4-byte items")]
    RaggedItems(usize),
}

impl Message {
    /// The message type byte.
    pub fn kind(&self) -> u8 {
        match self {
            Message::Hello(_) => TYPE_HELLO,
            Message::BundleStart { .. } => TYPE_BUNDLE_START,
            Message::Chunk { .. } => TYPE_CHUNK,
            Message::NoBundle => TYPE_NO_BUNDLE,
            Message::Applied { .. } => TYPE_APPLIED,
            Message::Error { .. } => TYPE_ERROR,
            Message::Done { .. } => TYPE_DONE,
            Message::Fragment { last: false, .. } => TYPE_FRAGMENT,
            Message::Fragment { last: true, .. } => TYPE_LAST_FRAGMENT,
            Message::Sketch { .. } => TYPE_SKETCH,
            Message::SketchMore { .. } => TYPE_SKETCH_MORE,
            Message::Differences { .. } => TYPE_DIFFERENCES,
            Message::Unknown(k) => *k,
        }
    }

    /// Short name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Hello(_) => "Hello",
            Message::BundleStart { .. } => "BundleStart",
            Message::Chunk { .. } => "Chunk",
            Message::NoBundle => "NoBundle",
            Message::Applied { .. } => "Applied",
            Message::Error { .. } => "Error",
            Message::Done { .. } => "Done",
            Message::Fragment { .. } => "Fragment",
            Message::Sketch { .. } => "Sketch",
            Message::SketchMore { .. } => "SketchMore",
            Message::Differences { .. } => "Differences",
            Message::Unknown(_) => "Unknown",
        }
    }

    /// Exactly the length `emit` appends.
    pub fn buffer_len(&self) -> usize {
        1 + match self {
            Message::Hello(h) => {
                1 + 1
                    + 16
                    + 1
                    + h.callsign.len()
                    + 4
                    + 4
                    + vector_len(&h.vector)
                    + h.resume
                        .as_ref()
                        .map_or(0, |r| 8 + varint_len(r.stored) + r.later_len())
                    + h.fingerprint.map_or(0, |_| 8)
                    + h.auth.map_or(0, |_| 8 + crate::auth::PROOF_LEN)
            }
            Message::BundleStart {
                total_len, offset, ..
            } => 1 + 8 + varint_len(*total_len) + varint_len(*offset),
            Message::Chunk { offset, bytes } => varint_len(*offset) + bytes.len(),
            Message::Fragment { bytes, .. } => bytes.len(),
            Message::NoBundle | Message::Unknown(_) => 0,
            Message::Done { fingerprint } => fingerprint.map_or(0, |_| 8),
            Message::Applied {
                vector,
                fingerprint,
                ..
            } => 8 + vector_len(vector) + fingerprint.map_or(0, |_| 8),
            Message::Error { text, .. } => {
                let t = clip_text(text);
                1 + varint_len(t.len() as u64) + t.len()
            }
            Message::Sketch {
                items,
                offset,
                sums,
                ..
            } => 8 + varint_len(*items) + varint_len(*offset) + 4 * sums.len(),
            Message::SketchMore { capacity } => varint_len(*capacity),
            Message::Differences { items } => 4 * items.len(),
        }
    }

    /// Appends the message's bytes to `buf`. Callsigns longer than
    /// [`MAX_CALLSIGN`] are cut (the session checks them up front).
    pub fn emit(&self, buf: &mut Vec<u8>) {
        buf.push(self.kind());
        match self {
            Message::Hello(h) => {
                buf.push(h.version);
                let flags = u8::from(h.initiator)
                    | (u8::from(h.resume.is_some()) << 1)
                    | (u8::from(h.fingerprint.is_some()) << 2)
                    | (u8::from(h.auth.is_some()) << 3)
                    | (u8::from(h.refuses_push) << 4)
                    | (u8::from(h.resume.as_ref().is_some_and(|r| !r.later.is_empty())) << 5);
                buf.push(flags);
                buf.extend_from_slice(&h.station.0);
                let call = &h.callsign.as_bytes()[..h.callsign.len().min(MAX_CALLSIGN)];
                buf.push(call.len() as u8);
                buf.extend_from_slice(call);
                buf.extend_from_slice(&h.schema.0.to_le_bytes());
                buf.extend_from_slice(&h.dict_id.to_le_bytes());
                put_vector(buf, &h.vector);
                if let Some(r) = &h.resume {
                    buf.extend_from_slice(&r.id.0.to_le_bytes());
                    put_varint(buf, r.stored);
                    if !r.later.is_empty() {
                        // Each piece as its gap from the last one's end, then its length.
                        put_varint(buf, r.later.len() as u64);
                        let mut end = r.stored;
                        for &(off, len) in &r.later {
                            put_varint(buf, off - end);
                            put_varint(buf, len);
                            end = off + len;
                        }
                    }
                }
                if let Some(f) = h.fingerprint {
                    buf.extend_from_slice(&f.to_le_bytes());
                }
                if let Some(a) = h.auth {
                    buf.extend_from_slice(&a.nonce.to_le_bytes());
                    buf.extend_from_slice(&a.proof);
                }
            }
            Message::BundleStart {
                id,
                total_len,
                offset,
                more,
            } => {
                buf.push(u8::from(*more));
                buf.extend_from_slice(&id.0.to_le_bytes());
                put_varint(buf, *total_len);
                put_varint(buf, *offset);
            }
            Message::Chunk { offset, bytes } => {
                put_varint(buf, *offset);
                buf.extend_from_slice(bytes);
            }
            Message::Fragment { bytes, .. } => buf.extend_from_slice(bytes),
            Message::NoBundle | Message::Unknown(_) => {}
            Message::Done { fingerprint } => {
                if let Some(f) = fingerprint {
                    buf.extend_from_slice(&f.to_le_bytes());
                }
            }
            Message::Applied {
                id,
                vector,
                fingerprint,
            } => {
                buf.extend_from_slice(&id.0.to_le_bytes());
                put_vector(buf, vector);
                if let Some(f) = fingerprint {
                    buf.extend_from_slice(&f.to_le_bytes());
                }
            }
            Message::Error { code, text } => {
                buf.push(code.to_byte());
                let t = clip_text(text);
                put_varint(buf, t.len() as u64);
                buf.extend_from_slice(t.as_bytes());
            }
            Message::Sketch {
                salt,
                items,
                offset,
                sums,
            } => {
                buf.extend_from_slice(&salt.to_le_bytes());
                put_varint(buf, *items);
                put_varint(buf, *offset);
                put_items(buf, sums);
            }
            Message::SketchMore { capacity } => put_varint(buf, *capacity),
            Message::Differences { items } => put_items(buf, items),
        }
    }

    /// The message's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(self.buffer_len());
        self.emit(&mut buf);
        buf
    }

    /// Parses one whole message from untrusted bytes. Never panics.
    pub fn parse(bytes: &[u8]) -> Result<Message, MessageError> {
        let (&kind, body) = bytes.split_first().ok_or(MessageError::Empty)?;
        let mut r = Cursor {
            r: ByteReader::new(body),
            kind,
        };
        let msg = match kind {
            TYPE_HELLO => {
                let version = r.u8()?;
                let flags = r.u8()?;
                if flags & !0b11_1111 != 0 || (flags & 0b10_0000 != 0 && flags & 0b10 == 0) {
                    return Err(MessageError::BadFlags(flags));
                }
                let station = StationId(r.array::<16>()?);
                let call_len = r.u8()? as usize;
                if call_len > MAX_CALLSIGN {
                    return Err(MessageError::CallsignTooLong(call_len));
                }
                let callsign = String::from_utf8(r.take(call_len)?.to_vec())
                    .map_err(|_| MessageError::BadText)?;
                let schema = SchemaFingerprint(u32::from_le_bytes(r.array::<4>()?));
                let dict_id = u32::from_le_bytes(r.array::<4>()?);
                let vector = r.vector()?;
                let resume = if flags & 0b10 != 0 {
                    let id = BundleId(u64::from_le_bytes(r.array::<8>()?));
                    let stored = r.varint()?;
                    let mut later = Vec::new();
                    if flags & 0b10_0000 != 0 {
                        let n = r.varint()?;
                        if n == 0 || n > MAX_RESUME_PIECES as u64 {
                            return Err(MessageError::BadPieces);
                        }
                        let mut end = stored;
                        for _ in 0..n {
                            let (gap, len) = (r.varint()?, r.varint()?);
                            let off = end.checked_add(gap).ok_or(MessageError::BadPieces)?;
                            end = off.checked_add(len).ok_or(MessageError::BadPieces)?;
                            if gap == 0 || len == 0 {
                                return Err(MessageError::BadPieces);
                            }
                            later.push((off, len));
                        }
                    }
                    Some(Resume { id, stored, later })
                } else {
                    None
                };
                let fingerprint = if flags & 0b100 != 0 {
                    Some(u64::from_le_bytes(r.array::<8>()?))
                } else {
                    None
                };
                let auth = if flags & 0b1000 != 0 {
                    Some(HelloAuth {
                        nonce: u64::from_le_bytes(r.array::<8>()?),
                        proof: r.array::<{ crate::auth::PROOF_LEN }>()?,
                    })
                } else {
                    None
                };
                Message::Hello(Hello {
                    version,
                    initiator: flags & 1 != 0,
                    station,
                    callsign,
                    schema,
                    dict_id,
                    vector,
                    resume,
                    fingerprint,
                    refuses_push: flags & 0b1_0000 != 0,
                    auth,
                })
            }
            TYPE_BUNDLE_START => {
                let flags = r.u8()?;
                if flags & !1 != 0 {
                    return Err(MessageError::BadFlags(flags));
                }
                let id = BundleId(u64::from_le_bytes(r.array::<8>()?));
                let total_len = r.varint()?;
                let offset = r.varint()?;
                Message::BundleStart {
                    id,
                    total_len,
                    offset,
                    more: flags & 1 != 0,
                }
            }
            TYPE_CHUNK => {
                let offset = r.varint()?;
                let bytes = r.rest().to_vec();
                if bytes.is_empty() {
                    return Err(MessageError::EmptyChunk);
                }
                Message::Chunk { offset, bytes }
            }
            TYPE_FRAGMENT | TYPE_LAST_FRAGMENT => {
                let bytes = r.rest().to_vec();
                if bytes.is_empty() {
                    return Err(MessageError::EmptyChunk);
                }
                Message::Fragment {
                    last: kind == TYPE_LAST_FRAGMENT,
                    bytes,
                }
            }
            TYPE_NO_BUNDLE => Message::NoBundle,
            TYPE_APPLIED => {
                let id = BundleId(u64::from_le_bytes(r.array::<8>()?));
                let vector = r.vector()?;
                let fingerprint = r.optional_fingerprint()?;
                Message::Applied {
                    id,
                    vector,
                    fingerprint,
                }
            }
            TYPE_ERROR => {
                let code = ErrorCode::from_byte(r.u8()?);
                let len = r.varint()?;
                let len = usize::try_from(len).map_err(|_| MessageError::Truncated { kind })?;
                let text =
                    String::from_utf8(r.take(len)?.to_vec()).map_err(|_| MessageError::BadText)?;
                Message::Error { code, text }
            }
            TYPE_DONE => Message::Done {
                fingerprint: r.optional_fingerprint()?,
            },
            TYPE_SKETCH => Message::Sketch {
                salt: u64::from_le_bytes(r.array::<8>()?),
                items: r.varint()?,
                offset: r.varint()?,
                sums: r.items()?,
            },
            TYPE_SKETCH_MORE => Message::SketchMore {
                capacity: r.varint()?,
            },
            TYPE_DIFFERENCES => Message::Differences { items: r.items()? },
            other => return Ok(Message::Unknown(other)),
        };
        if !r.r.is_empty() {
            return Err(MessageError::TrailingBytes {
                kind,
                extra: r.r.remaining(),
            });
        }
        Ok(msg)
    }
}

fn clip_text(text: &str) -> &str {
    if text.len() <= MAX_ERROR_TEXT {
        return text;
    }
    let mut end = MAX_ERROR_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn vector_len(v: &VersionVector) -> usize {
    v.wire_len()
}

fn put_vector(buf: &mut Vec<u8>, v: &VersionVector) {
    v.write(buf)
}

fn put_items(buf: &mut Vec<u8>, items: &[u32]) {
    for i in items {
        buf.extend_from_slice(&i.to_le_bytes());
    }
}

/// The message body's reader: the crate's one byte reader, its errors naming the message.
struct Cursor<'a> {
    r: ByteReader<'a>,
    kind: u8,
}

impl<'a> Cursor<'a> {
    fn err(&self, e: ReadError) -> MessageError {
        match e {
            ReadError::Short => MessageError::Truncated { kind: self.kind },
            ReadError::BadVarint => MessageError::BadVarint,
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], MessageError> {
        self.r.take(n).map_err(|e| self.err(e))
    }

    fn u8(&mut self) -> Result<u8, MessageError> {
        self.r.u8().map_err(|e| self.err(e))
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], MessageError> {
        self.r.array().map_err(|e| self.err(e))
    }

    fn varint(&mut self) -> Result<u64, MessageError> {
        self.r.varint().map_err(|e| self.err(e))
    }

    /// A content fingerprint closing the message: 8 bytes, or none.
    fn optional_fingerprint(&mut self) -> Result<Option<u64>, MessageError> {
        if self.r.is_empty() {
            return Ok(None);
        }
        Ok(Some(u64::from_le_bytes(self.array::<8>()?)))
    }

    fn rest(&mut self) -> &'a [u8] {
        self.r.rest()
    }

    /// The rest of the message as 4-byte items.
    fn items(&mut self) -> Result<Vec<u32>, MessageError> {
        let rest = self.rest();
        if rest.len() % 4 != 0 {
            return Err(MessageError::RaggedItems(rest.len()));
        }
        Ok(rest
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    fn vector(&mut self) -> Result<VersionVector, MessageError> {
        VersionVector::read(&mut self.r).map_err(|e| match e {
            crate::delta::VectorReadError::Read(e) => self.err(e),
            crate::delta::VectorReadError::Order => MessageError::VectorOrder,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sid(b: u8) -> StationId {
        StationId([b; 16])
    }

    fn vv(entries: &[(u8, u64)]) -> VersionVector {
        let mut v = VersionVector::default();
        for (s, q) in entries {
            v.0.insert(sid(*s), *q);
        }
        v
    }

    fn round_trip(m: &Message) -> Vec<u8> {
        let bytes = m.to_bytes();
        assert_eq!(bytes.len(), m.buffer_len(), "{m:?}");
        assert_eq!(&Message::parse(&bytes).unwrap(), m);
        bytes
    }

    #[test]
    fn varints_are_minimal_leb128() {
        for (v, bytes) in [
            (0u64, vec![0x00]),
            (127, vec![0x7f]),
            (128, vec![0x80, 0x01]),
            (300, vec![0xac, 0x02]),
            (
                u64::MAX,
                vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
        ] {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            assert_eq!(buf, bytes);
            assert_eq!(varint_len(v), bytes.len());
            assert_eq!(get_varint(&bytes).unwrap(), Some((v, bytes.len())));
        }
    }

    #[test]
    fn hello_literal_bytes() {
        let hello = Message::Hello(Hello {
            version: 1,
            initiator: true,
            station: sid(0xaa),
            callsign: "N0CALL".into(),
            schema: SchemaFingerprint(0x0403_0201),
            dict_id: 0x0807_0605,
            vector: vv(&[(0x11, 5), (0x22, 300)]),
            resume: Some(Resume {
                id: BundleId(0x0102_0304_0506_0708),
                stored: 129,
                later: Vec::new(),
            }),
            fingerprint: Some(0x1122_3344_5566_7788),
            refuses_push: false,
            auth: None,
        });
        let mut want = vec![0x01, 0x01, 0x07];
        want.extend([0xaa; 16]);
        want.push(6);
        want.extend(b"N0CALL");
        want.extend([0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08]);
        want.push(2);
        want.extend([0x11; 16]);
        want.push(5);
        want.extend([0x22; 16]);
        want.extend([0xac, 0x02]);
        want.extend([0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01]);
        want.extend([0x81, 0x01]);
        want.extend([0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11]);
        assert_eq!(round_trip(&hello), want);

        // Responder, no vector entries, no resume: 29 bytes.
        let plain = Message::Hello(Hello {
            version: 1,
            initiator: false,
            station: sid(0x01),
            callsign: String::new(),
            schema: SchemaFingerprint(0),
            dict_id: 0,
            vector: VersionVector::default(),
            resume: None,
            fingerprint: None,
            refuses_push: false,
            auth: None,
        });
        let mut want = vec![0x01, 0x01, 0x00];
        want.extend([0x01; 16]);
        want.extend([0; 10]);
        assert_eq!(round_trip(&plain), want);
        assert_eq!(want.len(), 29);
    }

    #[test]
    fn transfer_messages_literal_bytes() {
        let start = Message::BundleStart {
            id: BundleId(0x1122_3344_5566_7788),
            total_len: 1000,
            offset: 0,
            more: false,
        };
        assert_eq!(
            round_trip(&start),
            [0x02, 0x00, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0xe8, 0x07, 0x00]
        );
        let resumed = Message::BundleStart {
            id: BundleId(2),
            total_len: 5,
            offset: 3,
            more: true,
        };
        assert_eq!(
            round_trip(&resumed),
            [0x02, 0x01, 0x02, 0, 0, 0, 0, 0, 0, 0, 0x05, 0x03]
        );
        assert_eq!(
            Message::parse(&[0x02, 0x02, 2, 0, 0, 0, 0, 0, 0, 0, 5, 3]),
            Err(MessageError::BadFlags(2))
        );
        let chunk = Message::Chunk {
            offset: 200,
            bytes: vec![0xde, 0xad],
        };
        assert_eq!(round_trip(&chunk), [0x03, 0xc8, 0x01, 0xde, 0xad]);
        assert_eq!(round_trip(&Message::NoBundle), [0x04]);
        let frag = Message::Fragment {
            last: false,
            bytes: vec![0x01, 0x01],
        };
        assert_eq!(round_trip(&frag), [0x08, 0x01, 0x01]);
        let last = Message::Fragment {
            last: true,
            bytes: vec![0xff],
        };
        assert_eq!(round_trip(&last), [0x09, 0xff]);
        assert_eq!(Message::parse(&[0x09]), Err(MessageError::EmptyChunk));
        assert_eq!(round_trip(&Message::Done { fingerprint: None }), [0x07]);
        assert_eq!(
            round_trip(&Message::Done {
                fingerprint: Some(0x0102)
            }),
            [0x07, 0x02, 0x01, 0, 0, 0, 0, 0, 0]
        );
        assert!(Message::parse(&[0x07, 1, 2, 3]).is_err());
        let applied = Message::Applied {
            id: BundleId(1),
            vector: vv(&[(0x33, 1)]),
            fingerprint: None,
        };
        let mut want = vec![0x05, 1, 0, 0, 0, 0, 0, 0, 0, 1];
        want.extend([0x33; 16]);
        want.push(1);
        assert_eq!(round_trip(&applied), want);
        let with_fp = Message::Applied {
            id: BundleId(1),
            vector: vv(&[(0x33, 1)]),
            fingerprint: Some(5),
        };
        want.extend([5, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(round_trip(&with_fp), want);
        let err = Message::Error {
            code: ErrorCode::SchemaMismatch,
            text: "no".into(),
        };
        assert_eq!(round_trip(&err), [0x06, 0x02, 0x02, b'n', b'o']);
    }

    #[test]
    fn unknown_type_and_error_code_are_kept() {
        assert_eq!(Message::parse(&[0x7e]).unwrap(), Message::Unknown(0x7e));
        let m = Message::parse(&[0x06, 0xf0, 0x00]).unwrap();
        assert_eq!(
            m,
            Message::Error {
                code: ErrorCode::Unknown(0xf0),
                text: String::new()
            }
        );
    }

    #[test]
    fn bad_bytes_are_refused() {
        assert_eq!(Message::parse(&[]), Err(MessageError::Empty));
        assert_eq!(
            Message::parse(&[0x02, 1, 2, 3]),
            Err(MessageError::Truncated { kind: 0x02 })
        );
        assert_eq!(
            Message::parse(&[0x04, 0x00]),
            Err(MessageError::TrailingBytes { kind: 4, extra: 1 })
        );
        assert_eq!(Message::parse(&[0x03, 0x05]), Err(MessageError::EmptyChunk));
        // Error text longer than the message.
        assert_eq!(
            Message::parse(&[0x06, 0x01, 0x05, b'a']),
            Err(MessageError::Truncated { kind: 6 })
        );
        assert_eq!(
            Message::parse(&[0x06, 0x01, 0x01, 0xff]),
            Err(MessageError::BadText)
        );
        // A vector count far beyond the bytes present fails without allocating.
        let mut huge = vec![0x05, 0, 0, 0, 0, 0, 0, 0, 0];
        huge.extend([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        assert_eq!(
            Message::parse(&huge),
            Err(MessageError::Truncated { kind: 5 })
        );
        // Vector entries out of order.
        let mut bad = vec![0x05, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        bad.extend([0x22; 16]);
        bad.push(1);
        bad.extend([0x11; 16]);
        bad.push(1);
        assert_eq!(Message::parse(&bad), Err(MessageError::VectorOrder));
        // Callsign length over the limit, and unknown flags.
        let mut hello = vec![0x01, 0x01, 0x00];
        hello.extend([0; 16]);
        hello.push(17);
        assert_eq!(
            Message::parse(&hello),
            Err(MessageError::CallsignTooLong(17))
        );
        assert_eq!(
            Message::parse(&[0x01, 0x01, 0x20]),
            Err(MessageError::BadFlags(0x20))
        );
    }

    #[test]
    fn every_prefix_of_a_message_is_refused_without_panic() {
        let msgs = [
            Message::Hello(Hello {
                version: 1,
                initiator: false,
                station: sid(3),
                callsign: "DL1ABC-7".into(),
                schema: SchemaFingerprint(9),
                dict_id: 77,
                vector: vv(&[(1, 1), (2, 1 << 40)]),
                resume: Some(Resume {
                    id: BundleId(5),
                    stored: 1 << 20,
                    later: vec![(1 << 21, 300), (1 << 22, 1)],
                }),
                fingerprint: Some(u64::MAX),
                refuses_push: false,
                auth: None,
            }),
            // Without its optional fingerprint: a cut before one would be valid.
            Message::Applied {
                id: BundleId(9),
                vector: vv(&[(4, 4)]),
                fingerprint: None,
            },
            Message::Error {
                code: ErrorCode::Local,
                text: "disk full".into(),
            },
        ];
        for m in &msgs {
            let bytes = round_trip(m);
            for cut in 0..bytes.len() {
                assert!(Message::parse(&bytes[..cut]).is_err(), "{m:?} cut at {cut}");
            }
        }
    }

    #[test]
    fn long_error_text_is_clipped_at_a_char_boundary() {
        let text = "é".repeat(150); // 300 bytes
        let m = Message::Error {
            code: ErrorCode::BundleRefused,
            text,
        };
        let bytes = m.to_bytes();
        assert_eq!(bytes.len(), m.buffer_len());
        match Message::parse(&bytes).unwrap() {
            Message::Error { text, .. } => assert_eq!(text, "é".repeat(100)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn garbage_never_panics() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for _ in 0..20_000 {
            let len = rng.gen_range(0..80);
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            if let Some(b) = bytes.first_mut() {
                *b = rng.gen_range(0..11);
            }
            if let Ok(m) = Message::parse(&bytes) {
                if !matches!(m, Message::Unknown(_)) {
                    assert_eq!(m.to_bytes(), bytes);
                }
            }
        }
    }

    #[test]
    fn bundle_id_is_crc64_xz() {
        // The CRC-64/XZ check value.
        assert_eq!(BundleId::of(b"123456789"), BundleId(0x995d_c9bb_df19_39fa));
    }
}
