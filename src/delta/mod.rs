//! Record changes and the merge rules. Pure: no SQL, no I/O, no clock.
//!
//! A change is named by where it was made and a counter there: a [`Tag`]
//! `(origin station, origin seq)`. Each station keeps, per origin, the highest
//! sequence it holds (a [`VersionVector`]); "what does peer P lack" is every row
//! whose current tag P's vector does not cover. Only the latest version of a row
//! travels; the merge rule decides which version a store keeps.

pub mod digest;
pub mod merge;
pub mod time;

use std::collections::BTreeMap;
use std::fmt;

/// A station's identity: the 16 bytes of its UUID. Never changes once made.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct StationId(pub [u8; 16]);

impl StationId {
    /// The two bytes that name this station in frame routes on shared channels
    /// (`frame::Route`): the first two of SHA-256 of the UUID, so UUIDs that
    /// share a prefix (time-based ones, made the same day) still differ.
    pub fn short_address(&self) -> u16 {
        use sha2::{Digest, Sha256};
        let h = Sha256::digest(self.0);
        u16::from_be_bytes([h[0], h[1]])
    }

    /// A fresh random (v4) identity.
    pub fn new_random() -> Self {
        StationId(*uuid::Uuid::new_v4().as_bytes())
    }

    /// Reads a UUID in any form the `uuid` crate accepts (hyphenated, simple, ...).
    pub fn parse(text: &str) -> Result<Self, uuid::Error> {
        Ok(StationId(*uuid::Uuid::parse_str(text)?.as_bytes()))
    }
}

impl fmt::Display for StationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        uuid::Uuid::from_bytes(self.0).hyphenated().fmt(f)
    }
}

impl fmt::Debug for StationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StationId({self})")
    }
}

/// The name of one change: the station where it was made and that station's
/// local sequence number for it. A change forwarded A -> B -> C keeps its tag.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Tag {
    /// The station where the change was made.
    pub origin: StationId,
    /// That station's change counter for it.
    pub seq: u64,
}

/// Per origin station, the highest change sequence held.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct VersionVector(pub BTreeMap<StationId, u64>);

/// Why bytes are not a version vector (`VersionVector::read`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VectorReadError {
    /// The bytes end early, or a varint is malformed.
    Read(crate::bytes::ReadError),
    /// Entries out of ascending station order, or a station twice.
    Order,
}

/// The wire form shared by session messages and reconciliation files:
/// `count varint`, then `station 16 | seq varint` in strictly ascending station order.
impl VersionVector {
    /// Bytes `write` appends.
    pub fn wire_len(&self) -> usize {
        crate::bytes::varint_len(self.0.len() as u64)
            + self
                .0
                .values()
                .map(|s| 16 + crate::bytes::varint_len(*s))
                .sum::<usize>()
    }

    /// Appends the wire form.
    pub fn write(&self, buf: &mut Vec<u8>) {
        crate::bytes::put_varint(buf, self.0.len() as u64);
        for (station, seq) in &self.0 {
            buf.extend_from_slice(&station.0);
            crate::bytes::put_varint(buf, *seq);
        }
    }

    /// Reads the wire form from untrusted bytes.
    pub fn read(r: &mut crate::bytes::ByteReader<'_>) -> Result<Self, VectorReadError> {
        let count = r.varint().map_err(VectorReadError::Read)?;
        // Each entry takes at least 17 bytes: a bad count fails before allocating.
        if count > (r.remaining() / 17) as u64 {
            return Err(VectorReadError::Read(crate::bytes::ReadError::Short));
        }
        let mut v = VersionVector::default();
        let mut last: Option<StationId> = None;
        for _ in 0..count {
            let station = StationId(r.array::<16>().map_err(VectorReadError::Read)?);
            let seq = r.varint().map_err(VectorReadError::Read)?;
            if last.is_some_and(|l| l >= station) {
                return Err(VectorReadError::Order);
            }
            last = Some(station);
            v.0.insert(station, seq);
        }
        Ok(v)
    }
}

impl VersionVector {
    /// The highest sequence held from `origin`; 0 if none.
    pub fn get(&self, origin: &StationId) -> u64 {
        self.0.get(origin).copied().unwrap_or(0)
    }

    /// True when the change `tag` names is held.
    pub fn covers(&self, tag: &Tag) -> bool {
        self.get(&tag.origin) >= tag.seq
    }

    /// Raise entries to at least `seq`; never lowers one.
    pub fn raise(&mut self, origin: StationId, seq: u64) {
        let entry = self.0.entry(origin).or_insert(0);
        if seq > *entry {
            *entry = seq;
        }
    }

    /// Pointwise maximum.
    pub fn merge(&mut self, other: &VersionVector) {
        for (origin, seq) in &other.0 {
            self.raise(*origin, *seq);
        }
    }
}

/// One SQLite value, exactly: its storage class and its bits.
#[derive(Clone, Debug)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A 64-bit integer.
    Integer(i64),
    /// A 64-bit float, compared bitwise.
    Real(f64),
    /// UTF-8 text.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

impl PartialEq for Value {
    /// Bitwise for reals, so that a value that travelled compares equal to itself
    /// (NaN included) and -0.0 differs from 0.0.
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Value::Null, Value::Null) => true,
            (Value::Integer(a), Value::Integer(b)) => a == b,
            (Value::Real(a), Value::Real(b)) => a.to_bits() == b.to_bits(),
            (Value::Text(a), Value::Text(b)) => a == b,
            (Value::Blob(a), Value::Blob(b)) => a == b,
            _ => false,
        }
    }
}

/// The body of a row version as it travels.
#[derive(Clone, PartialEq, Debug)]
pub enum RowBody {
    /// Every payload column, in the table's payload order.
    Full(Vec<Value>),
    /// Only the payload columns that changed since `base`, a version the receiver
    /// was known to have seen. Bit `i` of `mask` set = payload column `i` is in
    /// `values` (ascending column order). The receiver applies it only if its
    /// current version of the row is exactly `base`; otherwise it asks for the
    /// full row.
    Delta {
        /// The version this delta applies to.
        base: Tag,
        /// The payload columns present (see above).
        mask: u64,
        /// New values of the columns in `mask`, in column order.
        values: Vec<Value>,
    },
}

/// One version of one row, as it travels between stations.
#[derive(Clone, PartialEq, Debug)]
pub struct RowVersion {
    /// The row's identity, exactly as the application wrote it. Empty in a
    /// `Delta` addressed by its base tag ([`RowVersion::by_base`]): the receiver
    /// holds the base version and finds the row by it.
    pub uuid: String,
    /// The name of the change that produced this version.
    pub tag: Tag,
    /// The station whose write produced this content: breaks ties of equal
    /// `modified_on` deterministically.
    pub writer: StationId,
    /// Exactly as the application wrote it.
    pub modified_on: String,
    /// The content: every payload column, or the changed ones.
    pub body: RowBody,
}

impl RowVersion {
    /// A delta that names its row only by its base tag (no uuid travels).
    pub fn by_base(&self) -> bool {
        self.uuid.is_empty() && matches!(self.body, RowBody::Delta { .. })
    }
}

/// The changes of one table inside a bundle. `table` indexes the sorted list of
/// tracked tables that the schema fingerprint covers.
#[derive(Clone, PartialEq, Debug)]
pub struct TableChanges {
    /// Index in the sorted list of tracked tables (or in the bundle's `layout`).
    pub table: u16,
    /// The latest version of each row the receiver lacks.
    pub rows: Vec<RowVersion>,
}

/// A row the sender of a bundle needs in full (a delta it got could not apply).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub struct Want {
    /// Index of the table, as in `TableChanges::table`.
    pub table: u16,
    /// The row.
    pub row: RowRef,
}

/// How a want names its row.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum RowRef {
    /// By its uuid, exactly as the application wrote it.
    Uuid(String),
    /// By the tag of the version we were sent as a base-addressed delta and
    /// could not place: the peer maps it to the row through its history.
    Tag(Tag),
}

/// What a bundle is for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BundleKind {
    /// Everything the receiver lacks; `sender_vector` confirms what the sender holds.
    Delta,
    /// A manual export of rows by age (`export --since`): applied by the merge
    /// rules, but it claims nothing about what the sender holds.
    Slice,
}

/// The decoded content of a bundle. Its byte layout lives in `codec`.
#[derive(Clone, PartialEq, Debug)]
pub struct Bundle {
    /// Delta or slice.
    pub kind: BundleKind,
    /// The station that wrote the bundle.
    pub sender: StationId,
    /// `None` only for a `Slice`, which any station may import.
    pub receiver: Option<StationId>,
    /// The sender's schema fingerprint; a receiver with another one needs `layout`.
    pub schema: SchemaFingerprint,
    /// What the sender holds, per origin: its confirmation to the receiver.
    pub sender_vector: VersionVector,
    /// Rows the sender asks the receiver for in full.
    pub wants: Vec<Want>,
    /// Row versions, per table.
    pub tables: Vec<TableChanges>,
    /// The sender's tracked tables and their payload columns, carried when the
    /// sender does not know the receiver to share its schema: `table` indexes
    /// and row values then follow this layout, and the receiver maps them by name.
    pub layout: Option<Vec<TableLayout>>,
}

/// One tracked table as a bundle's layout names it: payload columns in order.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct TableLayout {
    /// Table name.
    pub name: String,
    /// Payload column names, in payload order.
    pub columns: Vec<String>,
    /// The table's conflict policy, as `merge::Policy::text` writes it.
    pub policy: String,
}

/// A hash over the tracked tables and their synced columns (names and declared
/// types), so two stations with different shapes refuse each other's bundles.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct SchemaFingerprint(pub u32);
