//! The blueprint's nicedbdump, checked: a list of tables, each
//! `[name, [attributes], [[values], ...]]`. Every malformed shape the blueprint
//! lists is an error string, found before anything is applied.

use serde_json::Value as Json;

use crate::delta::Value;
use crate::store::DumpTable;

/// Tables as JSON, as `getdata` returns them. Blobs (rare in Sahana data, and
/// not representable in JSON) go as `base64:` text.
pub fn to_json(tables: &[DumpTable]) -> Json {
    Json::Array(
        tables
            .iter()
            .map(|t| {
                Json::Array(vec![
                    Json::String(t.name.clone()),
                    Json::Array(t.columns.iter().cloned().map(Json::String).collect()),
                    Json::Array(
                        t.rows
                            .iter()
                            .map(|r| Json::Array(r.iter().map(value_json).collect()))
                            .collect(),
                    ),
                ])
            })
            .collect(),
    )
}

fn value_json(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Integer(i) => Json::from(*i),
        Value::Real(r) => serde_json::Number::from_f64(*r).map_or(Json::Null, Json::Number),
        Value::Text(t) => Json::String(t.clone()),
        Value::Blob(b) => Json::String(format!("base64:{}", data_encoding::BASE64.encode(b))),
    }
}

fn json_value(j: &Json) -> Option<Value> {
    Some(match j {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Integer(*b as i64),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Real(n.as_f64()?),
        },
        Json::String(s) => Value::Text(s.clone()),
        Json::Array(_) | Json::Object(_) => return None,
    })
}

/// Reads a nicedbdump; the error names the first thing wrong with it.
pub fn parse(dump: &Json) -> Result<Vec<DumpTable>, String> {
    let Json::Array(tables) = dump else {
        return Err("nicedbdump is not a list".into());
    };
    let mut out = Vec::with_capacity(tables.len());
    for (i, t) in tables.iter().enumerate() {
        let Json::Array(parts) = t else {
            return Err(format!(
                "nicedbdump is not a list of lists: element {i} is not a list"
            ));
        };
        if parts.len() != 3 {
            return Err(format!(
                "table {i} does not have exactly 3 elements (it has {})",
                parts.len()
            ));
        }
        let Json::String(name) = &parts[0] else {
            return Err(format!(
                "table {i}: the first element (its name) is not a string"
            ));
        };
        let Json::Array(attrs) = &parts[1] else {
            return Err(format!(
                "table {name}: the second element (its attributes) is not a list"
            ));
        };
        let mut columns = Vec::with_capacity(attrs.len());
        for (k, a) in attrs.iter().enumerate() {
            let Json::String(a) = a else {
                return Err(format!("table {name}: attribute {k} is not a string"));
            };
            columns.push(a.clone());
        }
        let missing: Vec<&str> = ["id", "uuid", "modified_on"]
            .into_iter()
            .filter(|m| !columns.iter().any(|c| c == m))
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "table {name} lacks the attribute(s) {} ('id', 'uuid' and 'modified_on' are required)",
                missing.join(", ")
            ));
        }
        let Json::Array(rows) = &parts[2] else {
            return Err(format!(
                "table {name}: the third element (its rows) is not a list"
            ));
        };
        let at = |c: &str| columns.iter().position(|x| x == c).expect("checked above");
        let (uuid_at, modified_at) = (at("uuid"), at("modified_on"));
        let mut values = Vec::with_capacity(rows.len());
        for (k, r) in rows.iter().enumerate() {
            let Json::Array(r) = r else {
                return Err(format!("table {name}: row {k} is not a list"));
            };
            if r.len() != columns.len() {
                return Err(format!(
                    "table {name}: row {k} has {} values for {} attributes",
                    r.len(),
                    columns.len()
                ));
            }
            let mut row = Vec::with_capacity(r.len());
            for (j, v) in r.iter().enumerate() {
                let Some(v) = json_value(v) else {
                    return Err(format!(
                        "table {name}: row {k}, attribute {}: a list or object is not a value",
                        columns[j]
                    ));
                };
                row.push(v);
            }
            match &row[uuid_at] {
                Value::Text(u) if !u.trim().is_empty() => {}
                other => {
                    return Err(format!(
                        "table {name}: row {k}: 'uuid' must be a non-empty string, not {other:?}"
                    ))
                }
            }
            match &row[modified_at] {
                Value::Text(t) if crate::delta::time::parse_millis(t).is_some() => {}
                other => {
                    return Err(format!(
                        "table {name}: row {k}: 'modified_on' must be a time \
                         (\"YYYY-MM-DD HH:MM:SS\", UTC), not {other:?}"
                    ))
                }
            }
            values.push(row);
        }
        out.push(DumpTable {
            name: name.clone(),
            columns,
            rows: values,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_shape_the_blueprint_lists_is_an_error() {
        let cases = [
            (json!({"a": 1}), "is not a list"),
            (json!([1]), "not a list of lists"),
            (json!([["t", ["id"]]]), "exactly 3 elements"),
            (json!([[1, [], []]]), "name) is not a string"),
            (json!([["t", "id", []]]), "attributes) is not a list"),
            (json!([["t", ["id", 2], []]]), "attribute 1 is not a string"),
            (
                json!([["t", ["id", "uuid"], []]]),
                "lacks the attribute(s) modified_on",
            ),
            (
                json!([["t", ["id", "uuid", "modified_on"], {}]]),
                "rows) is not a list",
            ),
            (
                json!([["t", ["id", "uuid", "modified_on"], [1]]]),
                "row 0 is not a list",
            ),
            (
                json!([["t", ["id", "uuid", "modified_on"], [[1, "u"]]]]),
                "has 2 values for 3",
            ),
            (
                json!([["t", ["id", "uuid", "modified_on"], [[1, "u", [2]]]]]),
                "not a value",
            ),
            (
                json!([[
                    "t",
                    ["id", "uuid", "modified_on"],
                    [[1, "", "2024-01-01 00:00:00"]]
                ]]),
                "'uuid' must be",
            ),
            (
                json!([["t", ["id", "uuid", "modified_on"], [[1, "u", "soon"]]]]),
                "'modified_on' must be a time",
            ),
        ];
        for (dump, want) in cases {
            let e = parse(&dump).unwrap_err();
            assert!(e.contains(want), "{dump}: {e}");
        }
    }

    #[test]
    fn a_dump_round_trips() {
        let t = DumpTable {
            name: "t".into(),
            columns: vec!["id".into(), "uuid".into(), "modified_on".into(), "x".into()],
            rows: vec![vec![
                Value::Integer(1),
                Value::Text("u".into()),
                Value::Text("2024-01-01 00:00:00".into()),
                Value::Real(1.5),
            ]],
        };
        assert_eq!(parse(&to_json(std::slice::from_ref(&t))).unwrap(), vec![t]);
    }

    #[test]
    fn a_blob_given_back_as_getdata_wrote_it_is_a_blob_again() {
        let sent = value_json(&Value::Blob(vec![0, 1, 255]));
        let back = json_value(&sent).unwrap();
        assert_eq!(
            crate::store::dump_value_for_column(&back, "BLOB"),
            Value::Blob(vec![0, 1, 255])
        );
        // Text columns keep such text as it is.
        assert_eq!(crate::store::dump_value_for_column(&back, "TEXT"), back);
        let not_b64 = Value::Text("base64:***".into());
        assert_eq!(
            crate::store::dump_value_for_column(&not_b64, "blob"),
            not_b64
        );
    }
}
