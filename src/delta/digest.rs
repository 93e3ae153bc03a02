//! A row's content digest: how a station notices writes its change capture
//! missed. Pure.

use sha2::{Digest, Sha256};

use super::Value;

/// 64 bits of SHA-256 over the uuid, `modified_on` and every non-NULL synced
/// column as (name, exact value). NULL columns are left out, so a column added
/// by a schema upgrade (NULL everywhere) does not change any row's digest.
/// `columns` must come in a fixed order (the payload's, sorted by name).
pub fn row_digest<'a>(
    uuid: &str,
    modified_on: &str,
    columns: impl IntoIterator<Item = (&'a str, &'a Value)>,
) -> i64 {
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field(uuid.as_bytes());
    field(modified_on.as_bytes());
    for (name, v) in columns {
        match v {
            Value::Null => continue,
            Value::Integer(i) => {
                field(name.as_bytes());
                field(&[1]);
                field(&i.to_le_bytes());
            }
            Value::Real(f) => {
                field(name.as_bytes());
                field(&[2]);
                field(&f.to_bits().to_le_bytes());
            }
            Value::Text(t) => {
                field(name.as_bytes());
                field(&[3]);
                field(t.as_bytes());
            }
            Value::Blob(b) => {
                field(name.as_bytes());
                field(&[4]);
                field(b);
            }
        }
    }
    let out = h.finalize();
    i64::from_le_bytes(out[..8].try_into().unwrap_or([0; 8]))
}

/// The pseudo-station whose "tags" are content addresses (`base_tag`): no
/// real station has it (a v4 UUID never has every bit set).
pub const CONTENT_BASE: super::StationId = super::StationId([0xff; 16]);

/// A delta's base named by content rather than by change: 48 bits of SHA-256
/// over the table, the uuid and the base version's digest, as a tag of
/// [`CONTENT_BASE`]. Two stations that loaded the same data name the same
/// version alike, whatever their change logs. Seven bytes on the wire; a
/// delta whose base the receiver lacks lands on another row of the table
/// with odds of rows / 2^48 (3e-11 for 8,800 rows).
pub fn base_tag(table: &str, uuid: &str, digest: i64) -> super::Tag {
    let mut h = Sha256::new();
    h.update(b"radiosync base");
    for part in [table.as_bytes(), uuid.as_bytes()] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    h.update(digest.to_le_bytes());
    let out = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&out[..8]);
    super::Tag {
        origin: CONTENT_BASE,
        seq: (u64::from_le_bytes(b) & ((1 << 48) - 1)).max(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_sees_values_types_and_names_but_not_nulls() {
        let one = Value::Integer(1);
        let one_real = Value::Real(1.0);
        let base = row_digest("u", "t", [("a", &one)]);
        assert_eq!(
            base,
            row_digest("u", "t", [("a", &one), ("b", &Value::Null)])
        );
        assert_ne!(base, row_digest("u", "t", [("a", &one_real)]));
        assert_ne!(base, row_digest("u", "t", [("b", &one)]));
        assert_ne!(base, row_digest("v", "t", [("a", &one)]));
        assert_ne!(base, row_digest("u", "t2", [("a", &one)]));
    }

    #[test]
    fn base_tags_name_a_version_by_table_uuid_and_digest() {
        let t = base_tag("pr_person", "u-1", 42);
        assert_eq!(t, base_tag("pr_person", "u-1", 42));
        assert_eq!(t.origin, CONTENT_BASE);
        assert!(t.seq > 0 && t.seq < 1 << 48);
        for other in [
            base_tag("pr_person", "u-1", 43),
            base_tag("pr_person", "u-2", 42),
            base_tag("org_office", "u-1", 42),
        ] {
            assert_ne!(t, other);
        }
    }
}
