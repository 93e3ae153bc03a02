//! `modified_on` as the merge rule reads it. Pure.

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

/// Milliseconds since the Unix epoch, UTC, of a timestamp text as applications
/// write it: RFC 3339 (`2024-03-05T14:22:31.123Z`, any offset) or web2py's
/// `2024-03-05 14:22:31[.fff]` (UTC by convention). `None` if unreadable.
pub fn parse_millis(text: &str) -> Option<i64> {
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return Some(millis(t));
    }
    let with_fraction =
        format_description!("[year]-[month]-[day] [hour]:[minute]:[second].[subsecond]");
    let plain = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let t = PrimitiveDateTime::parse(text, &with_fraction)
        .or_else(|_| PrimitiveDateTime::parse(text, &plain))
        .ok()?;
    Some(millis(t.assume_utc()))
}

fn millis(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// The canonical text `YYYY-MM-DDTHH:MM:SS.mmmZ` of a millisecond instant, the
/// form the codec sends as 8 binary bytes. `None` outside years 0000-9999.
pub fn canonical_text(ms: i64) -> Option<String> {
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()?;
    if !(0..=9999).contains(&t.year()) {
        return None;
    }
    let fmt =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    t.format(&fmt).ok()
}

/// The instant of `text` if `text` is exactly in canonical form.
pub fn canonical_millis(text: &str) -> Option<i64> {
    if text.len() != 24 {
        return None;
    }
    let ms = parse_millis(text)?;
    (canonical_text(ms).as_deref() == Some(text)).then_some(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rfc3339_and_web2py_forms() {
        let a = parse_millis("2024-03-05T14:22:31.123Z").unwrap();
        assert_eq!(parse_millis("2024-03-05 14:22:31.123"), Some(a));
        assert_eq!(parse_millis("2024-03-05T15:22:31.123+01:00"), Some(a));
        assert_eq!(parse_millis("2024-03-05 14:22:31"), Some(a - 123));
        assert_eq!(parse_millis("yesterday"), None);
        assert_eq!(parse_millis(""), None);
    }

    #[test]
    fn canonical_round_trip_is_exact() {
        let text = "2024-03-05T14:22:31.123Z";
        let ms = canonical_millis(text).unwrap();
        assert_eq!(canonical_text(ms).unwrap(), text);
        assert_eq!(canonical_millis("2024-03-05T14:22:31Z"), None);
        assert_eq!(canonical_millis("2024-03-05T14:22:31.1230Z"), None);
        assert_eq!(canonical_millis("2024-03-05 14:22:31.123"), None);
    }
}
