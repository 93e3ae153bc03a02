//! One SQLite value on the wire. A head varint carries the kind in its low 3
//! bits and a small payload (length, scale, small integer) above them, so a
//! short text costs one byte more than its UTF-8.

use super::wire::{Reader, Writer};
use super::CodecError;
use crate::delta::time::{canonical_millis, canonical_text};
use crate::delta::Value;

const NULL: u64 = 0;
const INT: u64 = 1;
const INT_RAW: u64 = 2;
const REAL_RAW: u64 = 3;
const REAL_DECIMAL: u64 = 4;
const TEXT: u64 = 5;
const BLOB: u64 = 6;
const EXT: u64 = 7;
const EXT_UUID: u64 = 0;
const EXT_TIME: u64 = 1;
const EXT_INT_TEXT: u64 = 2;

/// Largest decimal scale we send: longer fractions go as raw bits.
const MAX_SCALE: u64 = 40;

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// The 16 bytes of `text` if it is a UUID in canonical lowercase hyphenated form.
pub(crate) fn canonical_uuid(text: &str) -> Option<[u8; 16]> {
    if text.len() != 36 {
        return None;
    }
    let u = uuid::Uuid::try_parse(text).ok()?;
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    (u.hyphenated().encode_lower(&mut buf) == text).then(|| *u.as_bytes())
}

pub(crate) fn uuid_text(bytes: [u8; 16]) -> String {
    uuid::Uuid::from_bytes(bytes).hyphenated().to_string()
}

/// The integer of a text that is exactly its decimal form ("15111", "-3"; not "007").
fn canonical_int(text: &str) -> Option<i64> {
    if text.is_empty() || text.len() > 20 {
        return None;
    }
    let i: i64 = text.parse().ok()?;
    (i.to_string() == text).then_some(i)
}

/// A real written as a short decimal (`126.56328`) travels as mantissa and
/// scale when that gives back exactly the same bits.
fn decimal_of(x: f64) -> Option<(i64, u64)> {
    if !x.is_finite() || (x == 0.0 && x.is_sign_negative()) {
        return None;
    }
    let s = format!("{x}");
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s.as_str()),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let scale = frac.len() as u64;
    let all: String = format!("{int}{frac}");
    let trimmed = all.trim_start_matches('0');
    if scale > MAX_SCALE || trimmed.len() > 18 {
        return None;
    }
    let mag: i64 = if trimmed.is_empty() {
        0
    } else {
        trimmed.parse().ok()?
    };
    let m = if neg { -mag } else { mag };
    (real_of_decimal(m, scale).to_bits() == x.to_bits()).then_some((m, scale))
}

fn real_of_decimal(m: i64, scale: u64) -> f64 {
    let digits = m.unsigned_abs().to_string();
    let scale = scale as usize;
    let padded = if digits.len() <= scale {
        format!("{}{digits}", "0".repeat(scale + 1 - digits.len()))
    } else {
        digits
    };
    let (int, frac) = padded.split_at(padded.len() - scale);
    let sign = if m < 0 { "-" } else { "" };
    // Digits only: parsing cannot fail.
    format!("{sign}{int}.{frac}0").parse().unwrap_or(f64::NAN)
}

pub(crate) fn put_value(w: &mut Writer, v: &Value) {
    match v {
        Value::Null => w.varint(NULL),
        Value::Integer(i) => {
            let z = zigzag(*i);
            if z < 1 << 61 {
                w.varint(z << 3 | INT);
            } else {
                w.varint(INT_RAW);
                w.raw(&i.to_le_bytes());
            }
        }
        Value::Real(x) => match decimal_of(*x) {
            Some((m, scale)) => {
                w.varint(scale << 3 | REAL_DECIMAL);
                w.zigzag(m);
            }
            None => {
                w.varint(REAL_RAW);
                w.raw(&x.to_bits().to_le_bytes());
            }
        },
        Value::Text(t) => {
            if let Some(u) = canonical_uuid(t) {
                w.varint(EXT_UUID << 3 | EXT);
                w.raw(&u);
            } else if let Some(ms) = canonical_millis(t) {
                w.varint(EXT_TIME << 3 | EXT);
                w.zigzag(ms);
            } else if let Some(i) = canonical_int(t) {
                w.varint(EXT_INT_TEXT << 3 | EXT);
                w.zigzag(i);
            } else {
                w.varint((t.len() as u64) << 3 | TEXT);
                w.raw(t.as_bytes());
            }
        }
        Value::Blob(b) => {
            w.varint((b.len() as u64) << 3 | BLOB);
            w.raw(b);
        }
    }
}

pub(crate) fn get_value(r: &mut Reader<'_>) -> Result<Value, CodecError> {
    let head = r.varint("value head")?;
    let arg = head >> 3;
    Ok(match head & 7 {
        NULL if arg == 0 => Value::Null,
        INT => Value::Integer(unzigzag(arg)),
        INT_RAW if arg == 0 => Value::Integer(i64::from_le_bytes(r.array("integer")?)),
        REAL_RAW if arg == 0 => Value::Real(f64::from_bits(u64::from_le_bytes(r.array("real")?))),
        REAL_DECIMAL if arg <= MAX_SCALE => {
            let m = r.zigzag("decimal mantissa")?;
            Value::Real(real_of_decimal(m, arg))
        }
        TEXT => {
            let n = usize::try_from(arg).map_err(|_| CodecError::Truncated("text"))?;
            let b = r.raw(n, "text")?;
            let s = std::str::from_utf8(b).map_err(|_| CodecError::BadUtf8("text value"))?;
            Value::Text(s.to_owned())
        }
        BLOB => {
            let n = usize::try_from(arg).map_err(|_| CodecError::Truncated("blob"))?;
            Value::Blob(r.raw(n, "blob")?.to_vec())
        }
        EXT if arg == EXT_UUID => Value::Text(uuid_text(r.array("uuid value")?)),
        EXT if arg == EXT_TIME => {
            let ms = r.zigzag("time value")?;
            Value::Text(canonical_text(ms).ok_or(CodecError::Malformed("time value out of range"))?)
        }
        EXT if arg == EXT_INT_TEXT => Value::Text(r.zigzag("integer text")?.to_string()),
        _ => return Err(CodecError::Malformed("unknown value kind")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(v: Value) -> Vec<u8> {
        let mut w = Writer::default();
        put_value(&mut w, &v);
        let mut r = Reader::new(&w.buf);
        assert_eq!(get_value(&mut r).unwrap(), v);
        r.finish().unwrap();
        w.buf
    }

    #[test]
    fn compact_forms() {
        assert_eq!(round(Value::Null), [0]);
        assert_eq!(round(Value::Integer(0)), [INT as u8]);
        assert_eq!(round(Value::Integer(-1)), [1 << 3 | INT as u8]);
        assert_eq!(round(Value::Text("US".into())), [2 << 3 | 5, b'U', b'S']);
        // 126.56328 = 12656328 / 10^5: head (5<<3|4), zigzag varint mantissa.
        assert_eq!(round(Value::Real(126.56328)).len(), 1 + 4);
        assert_eq!(round(Value::Real(-8.56498)).len(), 1 + 3);
        assert_eq!(
            round(Value::Text("2024-03-05T14:22:31.123Z".into())).len(),
            1 + 6
        );
        assert_eq!(
            round(Value::Text("274bcace-1eb4-528c-90e0-68af52f38c5a".into())).len(),
            17
        );
    }

    #[test]
    fn exact_values_round_trip() {
        for x in [
            f64::NAN,
            -f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.0,
            0.0,
            1e300,
            -1e-300,
            f64::MIN_POSITIVE,
            5e-324,
            0.1 + 0.2,
            123456789012345680.0,
            2.0,
        ] {
            round(Value::Real(x));
        }
        for i in [i64::MIN, i64::MAX, 1 << 60, -(1 << 60), (1 << 60) - 1] {
            round(Value::Integer(i));
        }
        // Near-canonical texts stay texts, exactly.
        for t in [
            "274BCACE-1EB4-528C-90E0-68AF52F38C5A",
            "274bcace1eb4528c90e068af52f38c5a",
            "2024-03-05T14:22:31.123+00:00",
            "2024-03-05 14:22:31.123",
            "",
            "ﾔ X 90 ﾰ",
            "007",
            "+7",
            "-0",
            "15111",
            "-9223372036854775808",
            "9223372036854775808",
        ] {
            round(Value::Text(t.into()));
        }
        round(Value::Blob(vec![0xff, 0xfe, 0]));
        round(Value::Blob(vec![]));
    }
}
