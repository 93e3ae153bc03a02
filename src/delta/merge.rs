//! The blueprints' conflict rules. Pure.
//!
//! The newer `modified_on` wins per row. A delete is a version with the deleted
//! flag set and the time of deletion as its `modified_on`, so "a remote delete
//! applies only if the local row was not updated after it" is the same rule.
//! Equal times are broken by the writing station's id, then by the text, so every
//! station picks the same winner from the same two versions.

use std::cmp::Ordering;

use super::time::parse_millis;
use super::StationId;

/// The part of a version the rule looks at.
#[derive(Clone, Copy, Debug)]
pub struct VersionKey<'a> {
    pub modified_on: &'a str,
    pub writer: StationId,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Verdict {
    /// The incoming version wins: apply it.
    Incoming,
    /// The local version wins: keep it.
    Local,
    /// The same version on both sides: nothing to do.
    Same,
}

/// Total order of versions: unreadable times sort before every readable one.
pub fn compare(a: VersionKey<'_>, b: VersionKey<'_>) -> Ordering {
    parse_millis(a.modified_on)
        .cmp(&parse_millis(b.modified_on))
        .then_with(|| a.writer.cmp(&b.writer))
        .then_with(|| a.modified_on.cmp(b.modified_on))
}

pub fn decide(local: VersionKey<'_>, incoming: VersionKey<'_>) -> Verdict {
    match compare(incoming, local) {
        Ordering::Greater => Verdict::Incoming,
        Ordering::Less => Verdict::Local,
        Ordering::Equal => Verdict::Same,
    }
}

/// Whether a `deleted` column value means "deleted": SQLite integers, and the
/// 'T'/'F' text web2py writes for booleans.
pub fn is_deleted(value: &super::Value) -> bool {
    use super::Value;
    match value {
        Value::Integer(i) => *i != 0,
        Value::Real(r) => *r != 0.0,
        Value::Text(t) => matches!(t.trim(), "1" | "T" | "t" | "true" | "TRUE" | "True"),
        Value::Null | Value::Blob(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(t: &str, w: u8) -> VersionKey<'_> {
        VersionKey {
            modified_on: t,
            writer: StationId([w; 16]),
        }
    }

    #[test]
    fn newer_wins_either_way() {
        let old = key("2024-01-01T00:00:00.000Z", 9);
        let new = key("2024-01-01T00:00:00.001Z", 1);
        assert_eq!(decide(old, new), Verdict::Incoming);
        assert_eq!(decide(new, old), Verdict::Local);
    }

    #[test]
    fn equal_times_break_by_writer_on_both_sides() {
        let a = key("2024-01-01T00:00:00.000Z", 1);
        let b = key("2024-01-01 00:00:00", 2);
        assert_eq!(decide(a, b), Verdict::Incoming);
        assert_eq!(decide(b, a), Verdict::Local);
        assert_eq!(decide(a, a), Verdict::Same);
    }

    #[test]
    fn unreadable_time_loses_to_any_readable_one() {
        let bad = key("not a time", 255);
        let good = key("1970-01-01T00:00:00.000Z", 0);
        assert_eq!(decide(bad, good), Verdict::Incoming);
    }
}
