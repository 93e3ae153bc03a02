//! The body: wants, then per table a block: all rows' flags, the payload
//! values row by row, then the identity columns (all uuids, all origins, all
//! sequences, ...), where like values sit together.

use super::value::{canonical_uuid, get_value, put_value, uuid_text};
use super::wire::{Reader, Writer};
use super::CodecError;
use crate::delta::time::{canonical_millis, canonical_text};
use crate::delta::{
    RowBody, RowRef, RowVersion, StationId, TableChanges, TableLayout, Tag, Value, Want,
};
use std::collections::HashMap;

/// Per origin, the last sequence seen in this body; starts at the sender's
/// vector entry so that a station's newest change costs one byte.
pub(crate) type LastSeq = HashMap<StationId, u64>;

fn last(seqs: &LastSeq, s: &StationId) -> u64 {
    seqs.get(s).copied().unwrap_or(0)
}

/// Row flag bits.
const UUID_BIN: u8 = 1;
const TIME_BIN: u8 = 2;
const WRITER_IS_ORIGIN: u8 = 4;
const DELTA: u8 = 8;
/// A full row whose value count differs from the table's usual count.
const IRREGULAR: u8 = 16;
/// A delta addressed by its base tag: no uuid travels (only with `DELTA`).
const BY_BASE: u8 = 32;
const KNOWN_FLAGS: u8 = 63;

/// The per-bundle station table: index 0 = sender, then receiver, then others.
#[derive(Default)]
pub(crate) struct Stations {
    pub list: Vec<StationId>,
    index: HashMap<StationId, u64>,
}

impl Stations {
    pub(super) fn add(&mut self, s: StationId) -> u64 {
        let next = self.list.len() as u64;
        let i = *self.index.entry(s).or_insert(next);
        if i == next {
            self.list.push(s);
        }
        i
    }

    /// Push unconditionally (sender and receiver may be the same station).
    pub(super) fn push(&mut self, s: StationId) {
        let next = self.list.len() as u64;
        self.index.entry(s).or_insert(next);
        self.list.push(s);
    }

    pub(super) fn idx(&self, s: &StationId) -> u64 {
        self.index[s]
    }

    pub(super) fn get(&self, i: u64) -> Result<StationId, CodecError> {
        usize::try_from(i)
            .ok()
            .and_then(|i| self.list.get(i))
            .copied()
            .ok_or(CodecError::BadStationIndex(i))
    }

    /// Every station the rows name, in order of first appearance.
    pub(super) fn collect_rows(&mut self, tables: &[TableChanges]) {
        for t in tables {
            for r in &t.rows {
                self.add(r.tag.origin);
                self.add(r.writer);
                if let RowBody::Delta { base, .. } = &r.body {
                    self.add(base.origin);
                }
            }
        }
    }

    /// Every station the wants name by tag.
    pub(super) fn collect_wants(&mut self, wants: &[Want]) {
        for w in wants {
            if let RowRef::Tag(t) = &w.row {
                self.add(t.origin);
            }
        }
    }
}

fn put_ident(w: &mut Writer, s: &str) {
    match canonical_uuid(s) {
        Some(u) => {
            w.varint(0);
            w.raw(&u);
        }
        None => {
            w.varint(s.len() as u64 + 1);
            w.raw(s.as_bytes());
        }
    }
}

fn get_ident(r: &mut Reader<'_>) -> Result<String, CodecError> {
    match r.varint("want uuid")? {
        0 => Ok(uuid_text(r.array("want uuid")?)),
        n => {
            let n = usize::try_from(n - 1).map_err(|_| CodecError::Truncated("want uuid"))?;
            let b = r.raw(n, "want uuid")?;
            Ok(std::str::from_utf8(b)
                .map_err(|_| CodecError::BadUtf8("want uuid"))?
                .to_owned())
        }
    }
}

fn row_values(body: &RowBody) -> &[Value] {
    match body {
        RowBody::Full(v) => v,
        RowBody::Delta { values, .. } => values,
    }
}

pub(crate) fn check_bundle_rows(tables: &[TableChanges]) -> Result<(), CodecError> {
    for t in tables {
        for r in &t.rows {
            if let RowBody::Delta { mask, values, .. } = &r.body {
                if mask.count_ones() as usize != values.len() {
                    return Err(CodecError::InvalidBundle(
                        "a delta row's values do not match its mask",
                    ));
                }
            }
        }
    }
    Ok(())
}

pub(crate) fn put_table(w: &mut Writer, t: &TableChanges, st: &Stations, seqs: &mut LastSeq) {
    let start = seqs.clone();
    let rows = &t.rows;
    w.varint(u64::from(t.table));
    w.varint(rows.len() as u64);
    let ncols = rows
        .iter()
        .find_map(|r| match &r.body {
            RowBody::Full(v) => Some(v.len()),
            _ => None,
        })
        .unwrap_or(0);
    w.varint(ncols as u64);

    let mut flags = Vec::with_capacity(rows.len());
    for r in rows {
        let mut f = 0;
        if canonical_uuid(&r.uuid).is_some() {
            f |= UUID_BIN;
        }
        if canonical_millis(&r.modified_on).is_some() {
            f |= TIME_BIN;
        }
        if r.writer == r.tag.origin {
            f |= WRITER_IS_ORIGIN;
        }
        if r.by_base() {
            f |= BY_BASE;
        }
        match &r.body {
            RowBody::Delta { .. } => f |= DELTA,
            RowBody::Full(v) if v.len() != ncols => f |= IRREGULAR,
            RowBody::Full(_) => {}
        }
        flags.push(f);
    }
    w.raw(&flags);

    for (r, f) in rows.iter().zip(&flags) {
        if f & IRREGULAR != 0 {
            w.varint(row_values(&r.body).len() as u64);
        }
    }
    for r in rows {
        if let RowBody::Delta { base, mask, .. } = &r.body {
            w.varint(st.idx(&base.origin));
            w.zigzag(last(&start, &base.origin).wrapping_sub(base.seq) as i64);
            w.varint(*mask);
        }
    }
    // Values row by row: a row's values then match a dictionary trained on
    // single rows (measured better than column by column for small bundles).
    for r in rows {
        for v in row_values(&r.body) {
            put_value(w, v);
        }
    }
    // Identity and version last: random bytes that would break the
    // dictionary matches running from the table head into the values.
    for r in rows.iter().filter(|r| !r.by_base()) {
        match canonical_uuid(&r.uuid) {
            Some(u) => w.raw(&u),
            None => w.bytes(r.uuid.as_bytes()),
        }
    }
    for r in rows {
        w.varint(st.idx(&r.tag.origin));
    }
    // Sequences of one origin usually climb: send differences.
    for r in rows {
        let prev = last(seqs, &r.tag.origin);
        w.zigzag(r.tag.seq.wrapping_sub(prev) as i64);
        seqs.insert(r.tag.origin, r.tag.seq);
    }
    for r in rows.iter().filter(|r| r.writer != r.tag.origin) {
        w.varint(st.idx(&r.writer));
    }
    let mut prev_ms = 0i64;
    for r in rows {
        match canonical_millis(&r.modified_on) {
            Some(ms) => {
                w.zigzag(ms.wrapping_sub(prev_ms));
                prev_ms = ms;
            }
            None => w.bytes(r.modified_on.as_bytes()),
        }
    }
}

enum Shape {
    Full(usize),
    Delta { base: Tag, mask: u64 },
}

pub(crate) fn get_table(
    r: &mut Reader<'_>,
    st: &Stations,
    last_seq: &mut LastSeq,
) -> Result<TableChanges, CodecError> {
    let start = last_seq.clone();
    let table = u16::try_from(r.varint("table index")?)
        .map_err(|_| CodecError::Malformed("table index above 65535"))?;
    // Every row takes at least one byte of flags.
    let n = r.count(r.remaining(), "row count")?;
    let ncols = r.count(r.remaining(), "column count")?;
    let flags = r.raw(n, "row flags")?.to_vec();
    if flags.iter().any(|f| {
        f & !KNOWN_FLAGS != 0
            || (f & DELTA != 0 && f & IRREGULAR != 0)
            || (f & BY_BASE != 0 && (f & DELTA == 0 || f & UUID_BIN != 0))
    }) {
        return Err(CodecError::Malformed("unknown row flag"));
    }
    let mut shapes = Vec::with_capacity(n);
    let mut counts = Vec::with_capacity(n);
    for f in &flags {
        counts.push(if f & IRREGULAR != 0 {
            Some(r.count(r.remaining(), "value count")?)
        } else {
            None
        });
    }
    // Each value takes at least one byte: bound the total before allocating.
    let mut total = 0usize;
    for (f, c) in flags.iter().zip(counts) {
        let shape = if f & DELTA != 0 {
            let origin = st.get(r.varint("delta base origin")?)?;
            let seq = last(&start, &origin).wrapping_sub(r.zigzag("delta base seq")? as u64);
            let mask = r.varint("delta mask")?;
            Shape::Delta {
                base: Tag { origin, seq },
                mask,
            }
        } else {
            Shape::Full(c.unwrap_or(ncols))
        };
        total = total.saturating_add(match &shape {
            Shape::Full(k) => *k,
            Shape::Delta { mask, .. } => mask.count_ones() as usize,
        });
        if total > r.remaining() {
            return Err(CodecError::Truncated("row values"));
        }
        shapes.push(shape);
    }
    let mut values: Vec<Vec<Value>> = Vec::with_capacity(n);
    for shape in &shapes {
        let k = match shape {
            Shape::Full(k) => *k,
            Shape::Delta { mask, .. } => mask.count_ones() as usize,
        };
        let mut row = Vec::with_capacity(k);
        for _ in 0..k {
            row.push(get_value(r)?);
        }
        values.push(row);
    }
    let mut uuids = Vec::with_capacity(n);
    for f in &flags {
        uuids.push(if f & BY_BASE != 0 {
            String::new()
        } else if f & UUID_BIN != 0 {
            uuid_text(r.array("row uuid")?)
        } else {
            r.str("row uuid")?.to_owned()
        });
    }
    let mut origins = Vec::with_capacity(n);
    for _ in 0..n {
        origins.push(st.get(r.varint("tag origin")?)?);
    }
    let mut seqs = Vec::with_capacity(n);
    for o in &origins {
        let seq = last(last_seq, o).wrapping_add(r.zigzag("tag seq")? as u64);
        last_seq.insert(*o, seq);
        seqs.push(seq);
    }
    let mut writers = Vec::with_capacity(n);
    for (f, o) in flags.iter().zip(&origins) {
        writers.push(if f & WRITER_IS_ORIGIN != 0 {
            *o
        } else {
            st.get(r.varint("writer")?)?
        });
    }
    let mut times = Vec::with_capacity(n);
    let mut prev_ms = 0i64;
    for f in &flags {
        times.push(if f & TIME_BIN != 0 {
            prev_ms = prev_ms.wrapping_add(r.zigzag("modified_on")?);
            canonical_text(prev_ms).ok_or(CodecError::Malformed("modified_on out of range"))?
        } else {
            r.str("modified_on")?.to_owned()
        });
    }
    let rows = (0..n)
        .zip(shapes)
        .zip(values)
        .map(|((i, shape), vals)| RowVersion {
            uuid: std::mem::take(&mut uuids[i]),
            tag: Tag {
                origin: origins[i],
                seq: seqs[i],
            },
            writer: writers[i],
            modified_on: std::mem::take(&mut times[i]),
            body: match shape {
                Shape::Full(_) => RowBody::Full(vals),
                Shape::Delta { base, mask } => RowBody::Delta {
                    base,
                    mask,
                    values: vals,
                },
            },
        })
        .collect();
    Ok(TableChanges { table, rows })
}

/// Most tables and columns a layout may name (bounds what hostile counts allocate).
const MAX_LAYOUT_TABLES: usize = 4096;
const MAX_LAYOUT_COLUMNS: usize = 4096;

/// The layout section (only with the header's layout flag): table count, then
/// per table its name, its payload column names and its conflict policy, as
/// postcard strings.
pub(crate) fn put_layout(w: &mut Writer, layout: &[TableLayout]) {
    w.varint(layout.len() as u64);
    for t in layout {
        w.bytes(t.name.as_bytes());
        w.varint(t.columns.len() as u64);
        for c in &t.columns {
            w.bytes(c.as_bytes());
        }
        w.bytes(t.policy.as_bytes());
    }
}

/// Reads the layout section; returns it and the number of bytes it took.
pub(crate) fn get_layout(bytes: &[u8]) -> Result<(Vec<TableLayout>, usize), CodecError> {
    let mut r = Reader::new(bytes);
    let nt = r.count(MAX_LAYOUT_TABLES.min(r.remaining()), "layout table count")?;
    let mut out = Vec::with_capacity(nt);
    for _ in 0..nt {
        let name = r.str("layout table name")?.to_owned();
        if out.iter().any(|t: &TableLayout| t.name == name) {
            return Err(CodecError::Malformed("layout names a table twice"));
        }
        let nc = r.count(MAX_LAYOUT_COLUMNS.min(r.remaining()), "layout column count")?;
        let mut columns = Vec::with_capacity(nc);
        for _ in 0..nc {
            let c = r.str("layout column name")?.to_owned();
            if columns.contains(&c) {
                return Err(CodecError::Malformed("layout names a column twice"));
            }
            columns.push(c);
        }
        let policy = r.str("layout policy")?.to_owned();
        out.push(TableLayout {
            name,
            columns,
            policy,
        });
    }
    Ok((out, bytes.len() - r.remaining()))
}

/// Body head: table count << 1, low bit set when a want list follows.
pub(crate) fn put_body(
    w: &mut Writer,
    wants: &[Want],
    tables: &[TableChanges],
    st: &Stations,
    mut seqs: LastSeq,
) {
    w.varint((tables.len() as u64) << 1 | u64::from(!wants.is_empty()));
    if !wants.is_empty() {
        w.varint(wants.len() as u64);
    }
    // Per want: table << 1 | by tag, then the uuid (ident) or the tag.
    for want in wants {
        let by_tag = matches!(want.row, RowRef::Tag(_));
        w.varint(u64::from(want.table) << 1 | u64::from(by_tag));
        match &want.row {
            RowRef::Uuid(u) => put_ident(w, u),
            RowRef::Tag(t) => {
                w.varint(st.idx(&t.origin));
                w.varint(t.seq);
            }
        }
    }
    for t in tables {
        put_table(w, t, st, &mut seqs);
    }
}

pub(crate) fn get_body(
    bytes: &[u8],
    st: &Stations,
    mut seqs: LastSeq,
) -> Result<(Vec<Want>, Vec<TableChanges>), CodecError> {
    let mut r = Reader::new(bytes);
    let head = r.varint("body head")?;
    let nt = usize::try_from(head >> 1)
        .ok()
        .filter(|n| *n <= r.remaining())
        .ok_or(CodecError::AbsurdLength {
            what: "table count",
            len: head >> 1,
        })?;
    let nw = if head & 1 != 0 {
        let n = r.count(r.remaining(), "want count")?;
        if n == 0 {
            return Err(CodecError::Malformed("empty want list flagged"));
        }
        n
    } else {
        0
    };
    let mut wants = Vec::with_capacity(nw);
    for _ in 0..nw {
        let head = r.varint("want table")?;
        let table = u16::try_from(head >> 1)
            .map_err(|_| CodecError::Malformed("table index above 65535"))?;
        let row = if head & 1 != 0 {
            let origin = st.get(r.varint("want tag")?)?;
            RowRef::Tag(Tag {
                origin,
                seq: r.varint("want tag")?,
            })
        } else {
            RowRef::Uuid(get_ident(&mut r)?)
        };
        wants.push(Want { table, row });
    }
    let mut tables = Vec::with_capacity(nt);
    for _ in 0..nt {
        tables.push(get_table(&mut r, st, &mut seqs)?);
    }
    r.finish()?;
    Ok((wants, tables))
}
