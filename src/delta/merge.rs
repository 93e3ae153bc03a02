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
    /// The row's `modified_on`, exactly as written.
    pub modified_on: &'a str,
    /// The station whose write made the version; breaks ties.
    pub writer: StationId,
}

/// Which of two versions of a row wins under the time rule.
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

/// The time rule alone: newer `modified_on`, then writer, then the text.
pub fn decide(local: VersionKey<'_>, incoming: VersionKey<'_>) -> Verdict {
    match compare(incoming, local) {
        Ordering::Greater => Verdict::Incoming,
        Ordering::Less => Verdict::Local,
        Ordering::Equal => Verdict::Same,
    }
}

/// The receiving station's side of one row, as the plan needs it.
#[derive(Clone, Copy, Debug)]
pub struct LocalSide<'a> {
    /// Our version's time and writer.
    pub key: VersionKey<'a>,
    /// The sender's vector covers our version's tag: the sender saw it.
    pub seen_by_sender: bool,
    /// Our version has no tag yet (written while capture was off).
    pub untagged: bool,
    /// We saw the incoming version before (its tag is in our history).
    pub incoming_seen_here: bool,
}

/// How the incoming version travels.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum IncomingBody {
    /// Every payload column.
    Full,
    /// Changed columns against a base; `applies` when our row is that base or
    /// differs from it only in columns the delta carries.
    Delta {
        /// Our row is the delta's base, or differs from it only in columns it carries.
        applies: bool,
    },
}

/// Why a row cannot be merged yet. The row is kept aside, never dropped.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum HoldReason {
    /// The incoming version's `modified_on` is not a time we can read.
    IncomingTimeUnreadable,
    /// Our own version's `modified_on` is not a time we can read.
    LocalTimeUnreadable,
}

impl HoldReason {
    /// The reason in words, for logs and the quarantine.
    pub fn describe(self) -> &'static str {
        match self {
            HoldReason::IncomingTimeUnreadable => {
                "its modified_on is not a readable time (use ISO 8601, UTC)"
            }
            HoldReason::LocalTimeUnreadable => {
                "this station's version has an unreadable modified_on: fix it (ISO 8601, UTC)"
            }
        }
    }
}

/// What to do with one incoming row version: the whole merge decision, pure.
/// The store carries it out.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RowPlan {
    /// No local row: insert the incoming version.
    Insert,
    /// The incoming version wins. `conflict`: the sender never saw ours, so
    /// ours is kept in the conflict record.
    Overwrite {
        /// The sender never saw our version: keep it as the conflict's loser.
        conflict: bool,
    },
    /// Ours wins. `conflict`: we had not seen theirs before (record it);
    /// `reannounce`: the sender saw ours yet holds a loser, so ours travels again.
    Keep {
        /// We had not seen the incoming version: record it as the loser.
        conflict: bool,
        /// The sender saw ours (or ours has no tag): send ours again.
        reannounce: bool,
    },
    /// The same version on both sides.
    Same,
    /// A delta we cannot apply: ask the sender for the full row.
    AskFull,
    /// Neither wins nor loses: keep the row aside with the reason.
    Hold(HoldReason),
}

/// Which version a table's conflict policy prefers, before the time rule.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Preference {
    /// The incoming version wins.
    Incoming,
    /// Our version wins.
    Local,
    /// The policy does not separate them: the newer `modified_on` decides.
    Neither,
}

/// A table's conflict policy (the blueprint's conflict hooks; Sahana Eden's
/// NEWER and MASTER). Every station must hold the same one for a table, and
/// each picks the same winner whichever version is local.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Policy {
    /// The newer `modified_on` wins (the default).
    Newer,
    /// Versions written by this station win, then `newer`.
    Station(StationId),
    /// A SQL expression over two versions `a` and `b` (columns as `a.col`,
    /// `b.col`), true when `a` should win. The store evaluates it both ways;
    /// a version wins only if the expression holds for it and not for the
    /// other, else `newer` decides.
    Sql(String),
}

/// A conflict policy that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyError {
    /// A policy that favours one side ("local", "theirs", ...): stations would never agree.
    #[error("conflict policy {0:?} would let each station keep its own version, so they never converge: use `station:NAME` to make one station's versions win, or `sql:EXPR` to compare the two versions")]
    NotSymmetric(String),
    /// Not `newer`, `station:UUID` or `sql:EXPR`.
    #[error("unknown conflict policy {0:?}: use newer, station:NAME or sql:EXPR")]
    Unknown(String),
    /// `station:` not followed by a UUID.
    #[error("the station in {0:?} is not a station UUID")]
    BadStation(String),
    /// A `sql:` expression that is empty, not deterministic, or (checked by the store)
    /// does not compile against the table or names no winner.
    #[error("the expression in sql:{expr} {why}")]
    BadExpression {
        /// The expression.
        expr: String,
        /// What is wrong with it, as the end of a sentence.
        why: String,
    },
}

/// SQL that would make the verdict depend on the station or the moment.
const NOT_DETERMINISTIC: &[&str] = &[
    "random",
    "randomblob",
    "now",
    "changes",
    "total_changes",
    "last_insert_rowid",
    "select",
    "current_date",
    "current_time",
    "current_timestamp",
];

impl Policy {
    /// Parse the stored or typed form; `station:` must carry a UUID here (the
    /// CLI turns a station name into one).
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        let t = text.trim();
        if t.is_empty() || t.eq_ignore_ascii_case("newer") {
            return Ok(Policy::Newer);
        }
        if let Some(id) = t.strip_prefix("station:") {
            return StationId::parse(id.trim())
                .map(Policy::Station)
                .map_err(|_| PolicyError::BadStation(t.to_string()));
        }
        if let Some(expr) = t.strip_prefix("sql:") {
            let expr = expr.trim();
            let lower = expr.to_ascii_lowercase();
            let words: Vec<&str> = lower
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .collect();
            if expr.is_empty() {
                return Err(PolicyError::BadExpression {
                    expr: expr.into(),
                    why: "is empty".into(),
                });
            }
            if let Some(bad) = NOT_DETERMINISTIC.iter().find(|w| words.contains(w)) {
                return Err(PolicyError::BadExpression {
                    expr: expr.into(),
                    why: format!(
                        "uses {bad:?}: the verdict must depend only on the two versions, the same at every station"
                    ),
                });
            }
            return Ok(Policy::Sql(expr.to_string()));
        }
        let lower = t.to_ascii_lowercase();
        if [
            "local", "this", "mine", "ours", "remote", "other", "theirs", "incoming",
        ]
        .contains(&lower.as_str())
        {
            return Err(PolicyError::NotSymmetric(t.to_string()));
        }
        Err(PolicyError::Unknown(t.to_string()))
    }

    /// The stored form (what travels and what the fingerprint covers).
    pub fn text(&self) -> String {
        match self {
            Policy::Newer => "newer".into(),
            Policy::Station(id) => format!("station:{id}"),
            Policy::Sql(e) => format!("sql:{e}"),
        }
    }

    /// The preference of a policy the merge can decide without the store
    /// (`None` for `sql:`, which SQLite evaluates).
    pub fn prefers(&self, local: VersionKey<'_>, incoming: VersionKey<'_>) -> Option<Preference> {
        match self {
            Policy::Newer => Some(Preference::Neither),
            Policy::Station(s) => Some(match (local.writer == *s, incoming.writer == *s) {
                (true, false) => Preference::Local,
                (false, true) => Preference::Incoming,
                _ => Preference::Neither,
            }),
            Policy::Sql(_) => None,
        }
    }
}

/// The merge rule for one row: newer `modified_on` wins, ties by writer, a
/// delete is a version like any other; an unreadable time never decides.
pub fn plan(local: Option<LocalSide<'_>>, incoming: VersionKey<'_>, body: IncomingBody) -> RowPlan {
    plan_with(local, incoming, body, Preference::Neither)
}

/// `plan` under a conflict policy's preference: the policy decides first,
/// the time rule when it does not separate the versions.
pub fn plan_with(
    local: Option<LocalSide<'_>>,
    incoming: VersionKey<'_>,
    body: IncomingBody,
    preferred: Preference,
) -> RowPlan {
    if parse_millis(incoming.modified_on).is_none() {
        return RowPlan::Hold(HoldReason::IncomingTimeUnreadable);
    }
    let Some(l) = local else {
        return match body {
            IncomingBody::Full => RowPlan::Insert,
            IncomingBody::Delta { .. } => RowPlan::AskFull,
        };
    };
    if parse_millis(l.key.modified_on).is_none() {
        return RowPlan::Hold(HoldReason::LocalTimeUnreadable);
    }
    let verdict = match preferred {
        Preference::Incoming => Verdict::Incoming,
        Preference::Local => Verdict::Local,
        Preference::Neither => decide(l.key, incoming),
    };
    match verdict {
        Verdict::Incoming => match body {
            IncomingBody::Delta { applies: false } => RowPlan::AskFull,
            _ => RowPlan::Overwrite {
                conflict: !l.seen_by_sender,
            },
        },
        Verdict::Local => RowPlan::Keep {
            conflict: !l.incoming_seen_here,
            reannounce: l.seen_by_sender || l.untagged,
        },
        Verdict::Same => RowPlan::Same,
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

    fn side(k: VersionKey<'_>) -> LocalSide<'_> {
        LocalSide {
            key: k,
            seen_by_sender: false,
            untagged: false,
            incoming_seen_here: false,
        }
    }

    #[test]
    fn plan_inserts_new_rows_and_asks_for_unplaceable_deltas() {
        let k = key("2024-01-01T00:00:00.000Z", 1);
        assert_eq!(plan(None, k, IncomingBody::Full), RowPlan::Insert);
        assert_eq!(
            plan(None, k, IncomingBody::Delta { applies: true }),
            RowPlan::AskFull
        );
        let older = key("2023-01-01T00:00:00.000Z", 1);
        assert_eq!(
            plan(Some(side(older)), k, IncomingBody::Delta { applies: false }),
            RowPlan::AskFull
        );
    }

    #[test]
    fn plan_holds_unreadable_times_whichever_side() {
        let good = key("2024-01-01T00:00:00.000Z", 1);
        let bad = key("last tuesday", 2);
        assert_eq!(
            plan(Some(side(good)), bad, IncomingBody::Full),
            RowPlan::Hold(HoldReason::IncomingTimeUnreadable)
        );
        assert_eq!(
            plan(None, bad, IncomingBody::Full),
            RowPlan::Hold(HoldReason::IncomingTimeUnreadable)
        );
        assert_eq!(
            plan(Some(side(bad)), good, IncomingBody::Full),
            RowPlan::Hold(HoldReason::LocalTimeUnreadable)
        );
    }

    fn time_text() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        (0i64..4_000, prop::bool::ANY).prop_map(|(s, web2py)| {
            let ms = 1_700_000_000_000 + s * 500;
            let t = crate::delta::time::canonical_text(ms).unwrap();
            if web2py {
                t.replace('T', " ").trim_end_matches('Z').to_string()
            } else {
                t
            }
        })
    }

    proptest::proptest! {
        /// Every station picks the same winner whichever version is local.
        #[test]
        fn plan_is_symmetric(
            ta in time_text(), tb in time_text(), wa in 0u8..3, wb in 0u8..3,
            seen_a in proptest::bool::ANY, seen_b in proptest::bool::ANY, pref in 0u8..3,
        ) {
            let (a, b) = (key(&ta, wa), key(&tb, wb));
            let la = LocalSide { seen_by_sender: seen_b, ..side(a) };
            let lb = LocalSide { seen_by_sender: seen_a, ..side(b) };
            // A policy's preference, seen from each side.
            let (pa, pb) = match pref {
                0 => (Preference::Neither, Preference::Neither),
                1 => (Preference::Incoming, Preference::Local),
                _ => (Preference::Local, Preference::Incoming),
            };
            let at_a = plan_with(Some(la), b, IncomingBody::Full, pa);
            let at_b = plan_with(Some(lb), a, IncomingBody::Full, pb);
            match at_a {
                RowPlan::Overwrite { .. } => {
                    let keeps = matches!(at_b, RowPlan::Keep { .. });
                    proptest::prop_assert!(keeps, "{:?}", at_b);
                }
                RowPlan::Keep { .. } => {
                    let overwrites = matches!(at_b, RowPlan::Overwrite { .. });
                    proptest::prop_assert!(overwrites, "{:?}", at_b);
                }
                RowPlan::Same => proptest::prop_assert_eq!(at_b, RowPlan::Same),
                other => proptest::prop_assert!(false, "unexpected {:?}", other),
            }
            // The winner is the later time whenever the times differ.
            let (ma, mb) = (parse_millis(&ta).unwrap(), parse_millis(&tb).unwrap());
            if ma < mb && pref == 0 {
                let overwrites = matches!(at_a, RowPlan::Overwrite { .. });
                proptest::prop_assert!(overwrites, "{:?}", at_a);
            }
        }
    }

    #[test]
    fn policies_parse_and_refuse_one_sided_rules() {
        assert_eq!(Policy::parse("newer"), Ok(Policy::Newer));
        let id = StationId([7; 16]);
        let p = Policy::parse(&format!("station:{id}")).unwrap();
        assert_eq!(p, Policy::Station(id));
        assert_eq!(Policy::parse(&p.text()), Ok(p.clone()));
        let hq = key("2024-01-01T00:00:00.000Z", 7);
        let field = key("2030-01-01T00:00:00.000Z", 1);
        assert_eq!(p.prefers(field, hq), Some(Preference::Incoming));
        assert_eq!(p.prefers(hq, field), Some(Preference::Local));
        assert!(matches!(
            Policy::parse("local"),
            Err(PolicyError::NotSymmetric(_))
        ));
        assert!(matches!(
            Policy::parse("sql:a.qty > b.qty OR random() > 0"),
            Err(PolicyError::BadExpression { .. })
        ));
        assert_eq!(
            Policy::parse("sql: a.known > b.known"),
            Ok(Policy::Sql("a.known > b.known".into()))
        );
        assert!(matches!(
            Policy::parse("master"),
            Err(PolicyError::Unknown(_))
        ));
    }

    #[test]
    fn unreadable_time_loses_to_any_readable_one() {
        let bad = key("not a time", 255);
        let good = key("1970-01-01T00:00:00.000Z", 0);
        assert_eq!(decide(bad, good), Verdict::Incoming);
    }
}
