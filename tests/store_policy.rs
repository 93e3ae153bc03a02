//! Per-table conflict policies (issue 15): the same winner at every station,
//! mismatches refused by table, one-sided rules refused, per-table export.

mod store_util;

use radiosync::delta::merge::{Policy, PolicyError};
use radiosync::delta::Value;
use radiosync::store::{Store, StoreError};
use store_util::*;

fn exec(s: &Store, sql: &str) {
    s.connection().execute_batch(sql).unwrap();
}

fn cell(s: &Store, sql: &str) -> Value {
    s.connection()
        .query_row(sql, [], |r| Ok(value_of(r.get_ref(0)?)))
        .unwrap()
}

#[test]
fn a_station_policy_makes_the_hub_win_over_a_field_clock_ahead_by_file() {
    let d = scratch();
    let mut hq = first_station(d.path(), "hq", 3);
    let mut field = clone_of(d.path(), "hq", "field");
    let p = Policy::Station(hq.station().id);
    hq.set_policy("place", p.clone()).unwrap();
    field.set_policy("place", p).unwrap();
    exec(
        &hq,
        "UPDATE place SET l1 = 'hub', modified_on = '2024-06-01T00:00:00.000Z' WHERE uuid = 'place-1'",
    );
    exec(
        &field,
        "UPDATE place SET l1 = 'field', modified_on = '2099-01-01T00:00:00.000Z' WHERE uuid = 'place-1'",
    );
    send(&hq, &mut field);
    send(&field, &mut hq);
    send(&hq, &mut field);
    for s in [&hq, &field] {
        assert_eq!(
            cell(s, "SELECT l1 FROM place WHERE uuid = 'place-1'"),
            Value::Text("hub".into())
        );
    }
    assert_eq!(content(&hq), content(&field));
    let c = field.conflicts().unwrap();
    assert!(c
        .iter()
        .any(|c| c.uuid == "place-1" && c.policy.starts_with("station:")));
    // Other tables keep the newer rule.
    exec(
        &field,
        "UPDATE item SET name = 'field later', modified_on = '2099-01-01T00:00:00.000Z' WHERE uuid = 'item-1'",
    );
    send(&field, &mut hq);
    assert_eq!(
        cell(&hq, "SELECT name FROM item WHERE uuid = 'item-1'"),
        Value::Text("field later".into())
    );
}

#[test]
fn an_sql_rule_picks_the_higher_stock_count_by_file() {
    let d = scratch();
    let mut a = first_station(d.path(), "a", 3);
    let mut b = clone_of(d.path(), "a", "b");
    for s in [&mut a, &mut b] {
        s.set_policy("item", Policy::Sql("a.qty > b.qty".into()))
            .unwrap();
    }
    exec(
        &a,
        "UPDATE item SET qty = 500, modified_on = '2024-06-01T00:00:00.000Z' WHERE uuid = 'item-2'",
    );
    exec(
        &b,
        "UPDATE item SET qty = 7, modified_on = '2024-07-01T00:00:00.000Z' WHERE uuid = 'item-2'",
    );
    send(&b, &mut a);
    send(&a, &mut b);
    for s in [&a, &b] {
        assert_eq!(
            cell(s, "SELECT qty FROM item WHERE uuid = 'item-2'"),
            Value::Integer(500)
        );
    }
    assert_eq!(content(&a), content(&b));
}

#[test]
fn mismatched_policies_are_refused_by_table_until_they_agree() {
    let d = scratch();
    let mut a = first_station(d.path(), "a", 3);
    let mut b = clone_of(d.path(), "a", "b");
    a.set_policy("item", Policy::Sql("a.qty > b.qty".into()))
        .unwrap();
    exec(
        &a,
        "UPDATE item SET qty = 9, modified_on = '2024-06-01T00:00:00.000Z' WHERE uuid = 'item-1';
         UPDATE place SET l1 = 'moved', modified_on = '2024-06-01T00:00:00.000Z' WHERE uuid = 'place-1';",
    );
    let r = {
        let bundle = a.export_for(&b.station().id).unwrap();
        b.import_bundle(&bundle).unwrap()
    };
    assert_eq!(r.quarantined, 1);
    // The other table syncs.
    assert_eq!(
        cell(&b, "SELECT l1 FROM place WHERE uuid = 'place-1'"),
        Value::Text("moved".into())
    );
    let q = b.quarantined_rows().unwrap();
    assert!(
        q[0].reason.contains("conflict policies for item differ")
            && q[0].reason.contains("sql:a.qty > b.qty"),
        "{}",
        q[0].reason
    );
    assert_eq!(
        cell(&b, "SELECT qty FROM item WHERE uuid = 'item-1'"),
        Value::Integer(3)
    );
    // b's operator sets the same policy: the row goes in at the next import.
    b.set_policy("item", Policy::Sql("a.qty > b.qty".into()))
        .unwrap();
    send(&a, &mut b);
    assert!(b.quarantined_rows().unwrap().is_empty());
    assert_eq!(content(&a), content(&b));
}

#[test]
fn one_sided_and_non_deterministic_policies_are_refused() {
    let d = scratch();
    let mut a = first_station(d.path(), "a", 4);
    for text in ["local", "theirs"] {
        assert!(matches!(
            Policy::parse(text),
            Err(PolicyError::NotSymmetric(_))
        ));
    }
    assert!(Policy::parse("sql:a.modified_on > datetime('now')").is_err());
    // True both ways: it names no winner.
    let e = a
        .set_policy("item", Policy::Sql("a.qty >= 0".into()))
        .unwrap_err();
    assert!(
        matches!(e, StoreError::Policy(PolicyError::BadExpression { .. })),
        "{e}"
    );
    assert!(e.to_string().contains("both ways"), "{e}");
    // Not an expression over the table.
    let e = a
        .set_policy("item", Policy::Sql("a.no_such_column > b.qty".into()))
        .unwrap_err();
    assert!(e.to_string().contains("does not compile"), "{e}");
    assert_eq!(a.tables()[0].policy, Policy::Newer);
}

#[test]
fn a_per_table_export_carries_only_those_tables_and_claims_nothing() {
    let d = scratch();
    let a = first_station(d.path(), "a", 3);
    let mut b = clone_of(d.path(), "a", "b");
    exec(
        &a,
        "UPDATE item SET name = 'x', modified_on = '2024-06-01T00:00:00.000Z' WHERE uuid = 'item-0';
         UPDATE place SET l1 = 'y', modified_on = '2024-06-01T00:00:00.000Z' WHERE uuid = 'place-0';",
    );
    let only = a
        .export_tables_for(&b.station().id, &["place".to_string()])
        .unwrap();
    assert_eq!(rows_in(&only), 1);
    b.import_bundle(&only).unwrap();
    assert_eq!(
        cell(&b, "SELECT l1 FROM place WHERE uuid = 'place-0'"),
        Value::Text("y".into())
    );
    // The item change still travels with the next full export.
    assert_eq!(a.pending_for(&b.station().id).unwrap(), 2);
    send(&a, &mut b);
    assert_eq!(content(&a), content(&b));
}
