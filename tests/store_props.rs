//! Property: three stations and a reference model converge after any mix of
//! inserts, updates, soft-deletes, conflicting edits (wrong clocks included),
//! and lost, repeated and late bundles, under each conflict policy (the same
//! at every station).

mod store_util;

use std::collections::BTreeMap;

use proptest::prelude::*;
use std::cmp::Ordering;

use radiosync::delta::merge::{compare, Policy, VersionKey};
use radiosync::delta::{Bundle, StationId, Value};
use radiosync::store::Store;
use store_util::*;

#[derive(Clone, Debug)]
enum Op {
    /// Station `st` writes row `row`: inserts it if absent, else sets one column.
    Write {
        st: usize,
        row: u8,
        col: u8,
        val: u8,
        time: u32,
    },
    Sync {
        from: usize,
        to: usize,
        fate: Fate,
    },
    /// Deliver the oldest bundle held back.
    Late,
}

#[derive(Clone, Copy, Debug)]
enum Fate {
    Deliver,
    Lose,
    Twice,
    HoldBack,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0..3usize, 0..6u8, 0..4u8, 0..4u8, 0..12u32)
            .prop_map(|(st, row, col, val, time)| Op::Write { st, row, col, val, time }),
        4 => (0..3usize, 0..3usize, prop_oneof![
                4 => Just(Fate::Deliver), 1 => Just(Fate::Lose), 1 => Just(Fate::Twice), 1 => Just(Fate::HoldBack)])
            .prop_filter("distinct", |(f, t, _)| f != t)
            .prop_map(|(from, to, fate)| Op::Sync { from, to, fate }),
        1 => Just(Op::Late),
    ]
}

type Version = (String, StationId, Vec<Value>);

fn row_content(s: &Store, uuid: &str) -> Option<(String, Vec<Value>)> {
    content(s)
        .get(&("item".to_string(), uuid.to_string()))
        .cloned()
}

fn write(s: &Store, uuid: &str, col: u8, val: u8, when: &str) {
    let c = s.connection();
    if row_content(s, uuid).is_none() {
        c.execute(
            "INSERT INTO item (id, uuid, modified_on, name, qty) VALUES
               ((SELECT coalesce(max(id), 0) + 1 FROM item), ?1, ?2, ?3, ?4)",
            rusqlite::params![uuid, when, format!("n{val}"), val as i64],
        )
        .unwrap();
        return;
    }
    let (sql, v): (&str, rusqlite::types::Value) = match col {
        0 => (
            "UPDATE item SET name = ?1, modified_on = ?2 WHERE uuid = ?3",
            format!("n{val}").into(),
        ),
        1 => (
            "UPDATE item SET qty = ?1, modified_on = ?2 WHERE uuid = ?3",
            (val as i64).into(),
        ),
        2 => (
            "UPDATE item SET price = ?1, modified_on = ?2 WHERE uuid = ?3",
            (val as f64 / 4.0).into(),
        ),
        _ => (
            "UPDATE item SET deleted = ?1, modified_on = ?2 WHERE uuid = ?3",
            ((val % 2) as i64).into(),
        ),
    };
    c.execute(sql, rusqlite::params![v, when, uuid]).unwrap();
}

/// The conflict policy of `item` in a run.
#[derive(Clone, Copy, Debug)]
enum Pol {
    Newer,
    /// Station b's versions win.
    StationB,
    /// The higher qty wins.
    HigherQty,
}

/// Payload index of `qty` in `item` (deleted, name, note, photo, price, qty).
const QTY: usize = 5;

/// The model's order of two versions under the policy: policy first, then the rules.
fn model_order(pol: Pol, b: StationId, x: &Version, y: &Version) -> Ordering {
    let by_policy = match pol {
        Pol::Newer => Ordering::Equal,
        Pol::StationB => (x.1 == b).cmp(&(y.1 == b)),
        Pol::HigherQty => {
            let q = |v: &Version| match v.2.get(QTY) {
                Some(Value::Integer(i)) => Some(*i),
                _ => None,
            };
            match (q(x), q(y)) {
                (Some(a), Some(b)) => a.cmp(&b),
                _ => Ordering::Equal,
            }
        }
    };
    by_policy.then_with(|| {
        compare(
            VersionKey {
                modified_on: &x.0,
                writer: x.1,
            },
            VersionKey {
                modified_on: &y.0,
                writer: y.1,
            },
        )
    })
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    run_with(ops, Pol::Newer)
}

fn run_with(ops: Vec<Op>, pol: Pol) -> Result<(), TestCaseError> {
    let dir = scratch();
    let d = dir.path();
    let a = first_station(d, "a", 2);
    let b = clone_of(d, "a", "b");
    let c = clone_of(d, "a", "c");
    let a = Store::open(a.path()).unwrap();
    let mut st = vec![a, b, c];
    let station_b = st[1].station().id;
    let policy = match pol {
        Pol::Newer => Policy::Newer,
        Pol::StationB => Policy::Station(station_b),
        Pol::HigherQty => Policy::Sql("a.qty > b.qty".into()),
    };
    for s in st.iter_mut() {
        s.set_policy("item", policy.clone()).unwrap();
    }
    for s in &st {
        // Test files need no durability; fsyncs would dominate the run time.
        s.connection()
            .execute_batch("PRAGMA synchronous = OFF; PRAGMA journal_mode = MEMORY;")
            .unwrap();
    }
    // b and c start from the same copy of a.
    let shared = st[0].vector().unwrap();
    let (idb, idc) = (st[1].station().id, st[2].station().id);
    st[1].add_peer("c", idc, None).unwrap();
    st[2].add_peer("b", idb, None).unwrap();
    st[1].note_peer_vector(&idc, &shared).unwrap();
    st[2].note_peer_vector(&idb, &shared).unwrap();

    // Every version ever written of each row: the model's winner is the newest.
    let mut versions: BTreeMap<String, Vec<Version>> = BTreeMap::new();
    for i in 0..2 {
        let u = format!("item-{i}");
        let (m, v) = row_content(&st[0], &u).unwrap();
        versions
            .entry(u)
            .or_default()
            .push((m, st[0].station().id, v));
    }
    let mut late: Vec<(usize, Bundle)> = Vec::new();
    for op in ops {
        match op {
            Op::Write {
                st: i,
                row,
                col,
                val,
                time: t,
            } => {
                let uuid = format!("item-{row}");
                let when = time(t * 7);
                let me = st[i].station().id;
                let known = versions
                    .get(&uuid)
                    .is_some_and(|vs| vs.iter().any(|(m, w, _)| *m == when && *w == me));
                if known {
                    continue; // same row, same writer, same time: the rules cannot tell them apart
                }
                // A station's clock may be wrong against the others', but it does not run
                // backwards over its own current version of a row (see docs/architecture.md,
                // "Known limits"); likewise a write the policy ranks below the version it
                // replaces is the same limit.
                let before = row_content(&st[i], &uuid).map(|(m, v)| {
                    let w = st[i].row_tag("item", &uuid).unwrap().unwrap().1;
                    (m, w, v)
                });
                if let Some((m, _, _)) = &before {
                    if *m > when {
                        continue;
                    }
                }
                let undo = st[i].connection().execute_batch("SAVEPOINT w").is_ok();
                write(&st[i], &uuid, col, val, &when);
                let (m, v) = row_content(&st[i], &uuid).unwrap();
                let new = (m, me, v);
                if let Some(old) = &before {
                    if model_order(pol, station_b, &new, old) == Ordering::Less {
                        st[i]
                            .connection()
                            .execute_batch("ROLLBACK TO w; RELEASE w")
                            .unwrap();
                        continue;
                    }
                }
                if undo {
                    st[i].connection().execute_batch("RELEASE w").unwrap();
                }
                versions.entry(uuid).or_default().push(new);
            }
            Op::Sync { from, to, fate } => {
                let bundle = st[from].export_for(&st[to].station().id).unwrap();
                match fate {
                    Fate::Deliver => {
                        st[to].import_bundle(&bundle).unwrap();
                    }
                    Fate::Lose => {}
                    Fate::Twice => {
                        st[to].import_bundle(&bundle).unwrap();
                        let before = dump(st[to].path());
                        st[to].import_bundle(&bundle).unwrap();
                        let after = dump(st[to].path());
                        let diff: Vec<_> = after
                            .iter()
                            .filter(|l| !before.contains(l))
                            .chain(before.iter().filter(|l| !after.contains(l)))
                            .collect();
                        prop_assert!(
                            diff.is_empty(),
                            "second import changed the database: {:?}",
                            diff
                        );
                    }
                    Fate::HoldBack => late.push((to, bundle)),
                }
            }
            Op::Late => {
                if !late.is_empty() {
                    let (to, bundle) = late.remove(0);
                    st[to].import_bundle(&bundle).unwrap();
                }
            }
        }
    }
    // What each station holds now; a version overwritten by its own station's
    // application before anyone got it is gone, as the rules intend.
    let mut held: BTreeMap<String, Vec<Version>> = BTreeMap::new();
    for s in &st {
        for ((_, uuid), (m, v)) in content(s).into_iter().filter(|((t, _), _)| t == "item") {
            let writer = s.row_tag("item", &uuid).unwrap().unwrap().1;
            held.entry(uuid).or_default().push((m, writer, v));
        }
    }
    // Then every link works until nothing is left to send.
    let mut quiet = false;
    for _ in 0..8 {
        let mut moved = 0;
        for from in 0..3 {
            for to in 0..3 {
                if from != to {
                    let bundle = st[from].export_for(&st[to].station().id).unwrap();
                    moved += rows_in(&bundle) + bundle.wants.len();
                    st[to].import_bundle(&bundle).unwrap();
                }
            }
        }
        if moved == 0 {
            quiet = true;
            break;
        }
    }
    prop_assert!(quiet, "stations kept sending after 8 rounds");
    let first = content(&st[0]);
    for s in &st[1..] {
        prop_assert_eq!(&content(s), &first);
    }
    for (uuid, vs) in &held {
        let win = vs
            .iter()
            .max_by(|x, y| model_order(pol, station_b, x, y))
            .unwrap();
        let got = first.get(&("item".to_string(), uuid.clone())).unwrap();
        prop_assert_eq!(&got.0, &win.0, "row {} modified_on", uuid);
        prop_assert_eq!(&got.1, &win.2, "row {} values", uuid);
    }
    Ok(())
}

/// Fixed for reproducible runs; STORE_PROP_SEED explores others.
fn prop_seed() -> u64 {
    std::env::var("STORE_PROP_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20261122)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 32,
        rng_seed: proptest::test_runner::RngSeed::Fixed(prop_seed()),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]
    #[test]
    fn stations_converge_to_the_rules(ops in proptest::collection::vec(op(), 1..40)) {
        run(ops)?;
    }

    #[test]
    fn stations_converge_under_each_conflict_policy(
        ops in proptest::collection::vec(op(), 1..40),
        pol in prop_oneof![Just(Pol::Newer), Just(Pol::StationB), Just(Pol::HigherQty)],
    ) {
        run_with(ops, pol)?;
    }
}

#[test]
fn regression_wrong_clock_three_stations() {
    let w = |st, row, time| Op::Write {
        st,
        row,
        col: 0,
        val: 0,
        time,
    };
    let s = |from, to| Op::Sync {
        from,
        to,
        fate: Fate::Deliver,
    };
    run(vec![
        w(0, 2, 0),
        w(0, 2, 0),
        w(0, 1, 0),
        s(1, 0),
        s(0, 2),
        s(2, 1),
    ])
    .unwrap();
}
