use super::*;
use crate::delta::{RowBody, RowRef, RowVersion, TableChanges, TableLayout, Tag, Value, Want};
use proptest::prelude::*;

const A: StationId = StationId([0x11; 16]);
const B: StationId = StationId([0x22; 16]);
const C: StationId = StationId([0x33; 16]);
const AB: Ends = Ends {
    sender: A,
    receiver: Some(B),
};

/// Decode a bundle from A to B.
fn dec(bytes: &[u8], dict: Option<&Dictionary>) -> Result<Bundle, CodecError> {
    decode(bytes, dict, &AB)
}

fn small_bundle() -> Bundle {
    let mut v = VersionVector::default();
    v.raise(A, 5);
    v.raise(B, 3);
    Bundle {
        kind: BundleKind::Delta,
        sender: A,
        receiver: Some(B),
        schema: SchemaFingerprint(0xaabb_ccdd),
        sender_vector: v,
        wants: vec![],
        tables: vec![TableChanges {
            table: 2,
            rows: vec![RowVersion {
                uuid: "274bcace-1eb4-528c-90e0-68af52f38c5a".into(),
                tag: Tag { origin: A, seq: 5 },
                writer: A,
                modified_on: "2024-12-06T17:19:07.139Z".into(),
                body: RowBody::Full(vec![
                    Value::Null,
                    Value::Text("Abafala".into()),
                    Value::Integer(0),
                    Value::Real(126.56328),
                ]),
            }],
        }],
        layout: None,
    }
}

#[rustfmt::skip]
const SMALL_BUNDLE: &[u8] = &[
    b'R', b'S', 0x02,             // magic, version
    0x08,                         // flags: delta, no compression, receiver present
    0xa8, 0xac, 0x46, 0xbd,       // CRC-32C of all other bytes (LE)
    0x42, 0xad, 0x5a, 0x3b,       // sender key: CRC-32C of its UUID (LE)
    0xba, 0xf5, 0x24, 0xb0,       // receiver key
    0xdd, 0xcc, 0xbb, 0xaa,       // schema fingerprint (LE)
    0x02, 0x00, 0x05, 0x01, 0x03, // vector: 2 entries, (station 0: 5), (station 1: 3)
    0x2c,                         // body length 44
    // body
    0x02,                         // one table, no wants
    0x02, 0x01, 0x04,             // table 2, 1 row, 4 columns
    0x07,                         // row flags: binary uuid, binary time, writer = origin
    0x00,                         // column 0: NULL
    0x3d, b'A', b'b', b'a', b'f', b'a', b'l', b'a', // column 1: text, 7 bytes
    0x01,                         // column 2: integer 0
    0x2c, 0x90, 0xfb, 0x88, 0x0c, // column 3: real 12656328e-5
    0x27, 0x4b, 0xca, 0xce, 0x1e, 0xb4, 0x52, 0x8c, // uuid
    0x90, 0xe0, 0x68, 0xaf, 0x52, 0xf3, 0x8c, 0x5a,
    0x00,                         // origin: station 0
    0x00,                         // seq 5: zigzag difference from the vector's 5
    0x86, 0xee, 0xdb, 0xcf, 0xf3, 0x64, // modified_on 1733505547139 ms, zigzag
];

#[test]
fn literal_bytes_emit_and_parse() {
    let bytes = encode(&small_bundle(), None, false).unwrap();
    assert_eq!(bytes, SMALL_BUNDLE, "{bytes:02x?}");
    assert_eq!(dec(SMALL_BUNDLE, None).unwrap(), small_bundle());
    let h = peek_header(SMALL_BUNDLE).unwrap();
    assert_eq!(h.sender_key, station_key(&A));
    assert_eq!(h.receiver_key, Some(station_key(&B)));
    assert_eq!(h.schema, SchemaFingerprint(0xaabb_ccdd));
    assert_eq!(h.dict_id, 0);
    assert!(!h.uses_dict);
    assert_eq!(h.compression, Compression::None);
    assert_eq!(h.body_len, 44);
    // Other ends than the header's keys name are refused.
    let wrong = Ends {
        sender: C,
        receiver: Some(B),
    };
    assert!(matches!(
        decode(SMALL_BUNDLE, None, &wrong),
        Err(CodecError::WrongEnds { .. })
    ));
    let unaddressed = Ends {
        sender: A,
        receiver: None,
    };
    assert!(matches!(
        decode(SMALL_BUNDLE, None, &unaddressed),
        Err(CodecError::WrongEnds { .. })
    ));
}

#[test]
fn every_flipped_byte_is_refused() {
    for i in 0..SMALL_BUNDLE.len() {
        for bit in [0x01u8, 0x80, 0xff] {
            let mut b = SMALL_BUNDLE.to_vec();
            b[i] ^= bit;
            assert!(dec(&b, None).is_err(), "flip {bit:#x} at {i}");
            assert!(peek_header(&b).is_err(), "flip {bit:#x} at {i}");
        }
    }
}

#[test]
fn every_truncation_and_extension_is_refused() {
    for n in 0..SMALL_BUNDLE.len() {
        assert!(dec(&SMALL_BUNDLE[..n], None).is_err(), "cut at {n}");
    }
    let mut longer = SMALL_BUNDLE.to_vec();
    longer.push(0);
    assert!(dec(&longer, None).is_err());
}

#[test]
fn typed_errors() {
    let mut b = SMALL_BUNDLE.to_vec();
    b[0] = b'X';
    assert_eq!(dec(&b, None), Err(CodecError::BadMagic));
    let mut b = SMALL_BUNDLE.to_vec();
    b[2] = 9;
    assert_eq!(dec(&b, None), Err(CodecError::UnsupportedVersion(9)));
    let mut b = SMALL_BUNDLE.to_vec();
    b[3] |= 0x06;
    assert!(matches!(dec(&b, None), Err(CodecError::BadFlags(_))));
    let mut b = SMALL_BUNDLE.to_vec();
    b[45] ^= 1;
    assert!(matches!(
        dec(&b, None),
        Err(CodecError::HashMismatch { .. })
    ));
    assert_eq!(
        dec(&SMALL_BUNDLE[..3], None),
        Err(CodecError::Truncated("flags"))
    );
    assert_eq!(dec(&[], None), Err(CodecError::Truncated("magic")));
}

/// Rewrite the hash so that a deliberately malformed field gets past it.
fn rehash(mut b: Vec<u8>) -> Vec<u8> {
    let h = hash_of(&b);
    b[HASH_AT..HASH_AT + HASH_LEN].copy_from_slice(&h.to_le_bytes());
    b
}

#[test]
fn malformed_fields_behind_a_good_hash() {
    let body_at = SMALL_BUNDLE.len() - 44;
    // Trailing byte inside the body (declared length adjusted).
    let mut b = SMALL_BUNDLE.to_vec();
    b.push(0);
    b[body_at - 1] = 45;
    assert_eq!(dec(&rehash(b), None), Err(CodecError::TrailingBytes(1)));
    // Declared body length disagrees with the raw body.
    let mut b = SMALL_BUNDLE.to_vec();
    b[body_at - 1] = 43;
    assert!(matches!(
        dec(&rehash(b), None),
        Err(CodecError::BodyLength {
            declared: 43,
            actual: 44
        })
    ));
    // Absurd body length.
    let mut b = SMALL_BUNDLE[..body_at - 1].to_vec();
    b.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x7f]);
    b.extend_from_slice(&SMALL_BUNDLE[body_at..]);
    assert!(matches!(
        dec(&rehash(b), None),
        Err(CodecError::AbsurdLength {
            what: "body length",
            ..
        })
    ));
    // Overlong varint (vector seq).
    let mut b = SMALL_BUNDLE[..body_at - 4].to_vec();
    b.extend_from_slice(&[0xff; 11]);
    b.extend_from_slice(&SMALL_BUNDLE[body_at - 3..]);
    assert_eq!(
        dec(&rehash(b), None),
        Err(CodecError::BadVarint("version vector"))
    );
    // Vector naming a station index not in the table.
    let mut b = SMALL_BUNDLE.to_vec();
    b[body_at - 3] = 7;
    assert_eq!(dec(&rehash(b), None), Err(CodecError::BadStationIndex(7)));
    // "One zstd block" on a raw body.
    let mut b = SMALL_BUNDLE.to_vec();
    b[3] |= 0x40;
    assert_eq!(dec(&rehash(b), None), Err(CodecError::BadFlags(0x48)));
    // Unknown row flag.
    let mut b = SMALL_BUNDLE.to_vec();
    b[body_at + 4] |= 0x80;
    assert_eq!(
        dec(&rehash(b), None),
        Err(CodecError::Malformed("unknown row flag"))
    );
    // A huge row count is refused before allocating.
    let mut b = SMALL_BUNDLE[..body_at - 1].to_vec();
    let body = [0x02, 0x02, 0xff, 0xff, 0xff, 0xff, 0x0f];
    b.push(body.len() as u8);
    b.extend_from_slice(&body);
    assert!(matches!(
        dec(&rehash(b), None),
        Err(CodecError::AbsurdLength {
            what: "row count",
            ..
        })
    ));
}

fn sample_rows(n: usize) -> Vec<TableChanges> {
    let rows = (0..n)
        .map(|i| RowVersion {
            uuid: uuid::Uuid::from_u128(0x1234_5678_9abc_def0_u128.wrapping_mul(i as u128 + 7))
                .hyphenated()
                .to_string(),
            tag: Tag {
                origin: A,
                seq: i as u64 + 1,
            },
            writer: A,
            modified_on: format!("2024-03-{:02}T10:{:02}:00.000Z", i % 28 + 1, i % 60),
            body: RowBody::Full(vec![
                Value::Text(format!("Village {}", i % 17)),
                Value::Text(["Aileu", "Baucau", "Dili", "Ermera"][i % 4].into()),
                Value::Real(125.0 + (i % 100) as f64 / 100.0),
                Value::Integer(0),
            ]),
        })
        .collect();
    vec![TableChanges { table: 0, rows }]
}

#[test]
fn dictionary_round_trip_and_errors() {
    let samples = training_samples(&sample_rows(400));
    assert_eq!(samples.len(), 400);
    let dict = train_dictionary(&samples, 4096).unwrap();
    assert_eq!(dict, Dictionary::new(dict.bytes.clone()));
    let mut bundle = small_bundle();
    bundle.tables = sample_rows(3);
    bundle.tables[0]
        .rows
        .iter_mut()
        .for_each(|r| r.tag.seq += 1000);
    let with = encode(&bundle, Some(&dict), true).unwrap();
    let h = peek_header(&with).unwrap();
    assert_eq!(h.dict_id, dict.id);
    assert!(h.uses_dict);
    assert!(
        h.one_block,
        "a small body is one zstd block, sent without its header"
    );
    assert_eq!(dec(&with, Some(&dict)).unwrap(), bundle);
    assert_eq!(
        dec(&with, None),
        Err(CodecError::DictionaryMissing(dict.id))
    );
    let other = Dictionary::new(b"not the same dictionary".to_vec());
    assert_eq!(
        dec(&with, Some(&other)),
        Err(CodecError::DictionaryMismatch {
            expected: dict.id,
            given: other.id
        })
    );
    // Advertised but not used: decodes without it.
    let advertised = encode(&bundle, Some(&dict), false).unwrap();
    let h = peek_header(&advertised).unwrap();
    assert_eq!((h.dict_id, h.uses_dict), (dict.id, false));
    assert_eq!(dec(&advertised, None).unwrap(), bundle);
    assert!(matches!(
        encode(&bundle, None, true),
        Err(CodecError::InvalidBundle(_))
    ));
}

#[test]
fn compressed_bundles_round_trip_and_refuse_damage() {
    let mut bundle = small_bundle();
    bundle.tables = sample_rows(200);
    let bytes = encode(&bundle, None, false).unwrap();
    assert_eq!(peek_header(&bytes).unwrap().compression, Compression::Zstd);
    assert_eq!(dec(&bytes, None).unwrap(), bundle);
    // The trimmed frame carries no zstd magic.
    assert!(!bytes.windows(4).any(|w| w == ZSTD_MAGIC));
    for n in (0..bytes.len()).step_by(7) {
        assert!(dec(&bytes[..n], None).is_err());
    }
    // Damage behind a recomputed hash reaches zstd or the body parser: still an error.
    let body_at = bytes.len() - 20;
    for i in body_at..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0x55;
        let _ = dec(&rehash(b), None);
    }
}

#[test]
fn delta_rows_wants_and_odd_stations() {
    let mut bundle = small_bundle();
    bundle.kind = BundleKind::Slice;
    bundle.receiver = None;
    bundle.wants = vec![
        Want {
            table: 3,
            row: RowRef::Uuid("274bcace-1eb4-528c-90e0-68af52f38c5a".into()),
        },
        Want {
            table: 65535,
            row: RowRef::Uuid("NOT-A-UUID".into()),
        },
        Want {
            table: 65535,
            row: RowRef::Tag(Tag {
                origin: C,
                seq: u64::MAX,
            }),
        },
    ];
    // A delta addressed by its base tag: no uuid travels.
    bundle.tables[0].rows.push(RowVersion {
        uuid: String::new(),
        tag: Tag { origin: A, seq: 9 },
        writer: A,
        modified_on: "2024-12-06T17:19:08.000Z".into(),
        body: RowBody::Delta {
            base: Tag { origin: C, seq: 3 },
            mask: 0b10,
            values: vec![Value::Text("x".into())],
        },
    });
    bundle.tables[0].rows.push(RowVersion {
        uuid: "plain text id".into(),
        tag: Tag { origin: C, seq: 2 },
        writer: B,
        modified_on: "yesterday".into(),
        body: RowBody::Delta {
            base: Tag { origin: A, seq: 1 },
            mask: 1 << 63 | 0b101,
            values: vec![
                Value::Integer(i64::MIN),
                Value::Null,
                Value::Blob(vec![0xff]),
            ],
        },
    });
    bundle.tables[0].rows.push(RowVersion {
        uuid: String::new(),
        tag: Tag {
            origin: C,
            seq: u64::MAX,
        },
        writer: C,
        modified_on: String::new(),
        body: RowBody::Full(vec![]),
    });
    let bytes = encode(&bundle, None, false).unwrap();
    assert_eq!(decode(&bytes, None, &Ends::of(&bundle)).unwrap(), bundle);
    let mut bad = bundle.clone();
    bad.tables[0].rows[1].body = RowBody::Delta {
        base: Tag { origin: A, seq: 1 },
        mask: 0b11,
        values: vec![],
    };
    assert!(matches!(
        encode(&bad, None, false),
        Err(CodecError::InvalidBundle(_))
    ));
}

fn station() -> impl Strategy<Value = StationId> {
    prop_oneof![
        Just(A),
        Just(B),
        Just(C),
        any::<[u8; 16]>().prop_map(StationId)
    ]
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<i64>().prop_map(Value::Integer),
        (-1000i64..1000).prop_map(Value::Integer),
        any::<u64>().prop_map(|b| Value::Real(f64::from_bits(b))),
        (-1_000_000_000i64..1_000_000_000, 0u32..8)
            .prop_map(|(m, s)| Value::Real(m as f64 / 10f64.powi(s as i32))),
        any::<String>().prop_map(Value::Text),
        any::<u128>().prop_map(|u| Value::Text(uuid::Uuid::from_u128(u).to_string())),
        (0i64..253_402_300_799_999)
            .prop_map(|ms| Value::Text(crate::delta::time::canonical_text(ms).unwrap())),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Value::Blob),
    ]
}

fn ident() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<u128>().prop_map(|u| uuid::Uuid::from_u128(u).to_string()),
        any::<String>(),
    ]
}

fn time_text() -> impl Strategy<Value = String> {
    prop_oneof![
        (0i64..253_402_300_799_999).prop_map(|ms| crate::delta::time::canonical_text(ms).unwrap()),
        any::<String>(),
    ]
}

fn row() -> impl Strategy<Value = RowVersion> {
    let body = prop_oneof![
        proptest::collection::vec(value(), 0..6).prop_map(RowBody::Full),
        (
            station(),
            any::<u64>(),
            proptest::collection::vec(value(), 0..6),
            any::<u64>()
        )
            .prop_map(|(o, seq, vals, salt)| {
                // A mask with exactly vals.len() bits set, spread by salt.
                let mut mask = 0u64;
                let mut c = salt % 64;
                for _ in 0..vals.len() {
                    while mask & (1 << c) != 0 {
                        c = (c + 7) % 64;
                    }
                    mask |= 1 << c;
                }
                RowBody::Delta {
                    base: Tag { origin: o, seq },
                    mask,
                    values: vals,
                }
            }),
    ];
    (
        ident(),
        station(),
        any::<u64>(),
        station(),
        time_text(),
        body,
    )
        .prop_map(
            |(uuid, origin, seq, writer, modified_on, body)| RowVersion {
                uuid,
                tag: Tag { origin, seq },
                writer,
                modified_on,
                body,
            },
        )
}

fn bundle() -> impl Strategy<Value = Bundle> {
    (
        any::<bool>(),
        station(),
        proptest::option::of(station()),
        any::<u32>(),
        proptest::collection::btree_map(station(), any::<u64>(), 0..4),
        proptest::collection::vec(
            (
                any::<u16>(),
                ident(),
                proptest::option::of((station(), any::<u64>())),
            ),
            0..3,
        ),
        proptest::collection::vec((any::<u16>(), proptest::collection::vec(row(), 0..5)), 0..3),
    )
        .prop_map(
            |(slice, sender, receiver, schema, vv, wants, tables)| Bundle {
                kind: if slice {
                    BundleKind::Slice
                } else {
                    BundleKind::Delta
                },
                sender,
                receiver,
                schema: SchemaFingerprint(schema),
                sender_vector: VersionVector(vv),
                wants: wants
                    .into_iter()
                    .map(|(table, uuid, tag)| Want {
                        table,
                        row: match tag {
                            Some((origin, seq)) => RowRef::Tag(Tag { origin, seq }),
                            None => RowRef::Uuid(uuid),
                        },
                    })
                    .collect(),
                tables: tables
                    .into_iter()
                    .map(|(table, rows)| TableChanges { table, rows })
                    .collect(),
                layout: None,
            },
        )
}

#[test]
fn layout_travels_and_bounds_table_indexes() {
    let mut b = small_bundle();
    let three = |n: &str| TableLayout {
        name: n.into(),
        columns: vec!["a".into(), "b".into(), "c".into(), "d".into()],
        policy: "newer".into(),
    };
    b.layout = Some(vec![three("t0"), three("t1"), three("t2")]);
    let bytes = encode(&b, None, false).unwrap();
    assert!(peek_header(&bytes).unwrap().has_layout);
    assert_eq!(dec(&bytes, None).unwrap(), b);
    // Table 2 needs a layout of three tables at least.
    b.layout = Some(vec![three("t0"), three("t1")]);
    let bytes = encode(&b, None, false).unwrap();
    assert!(matches!(dec(&bytes, None), Err(CodecError::Malformed(_))));
    b.layout = Some(vec![three("t0"), three("t0"), three("t2")]);
    let bytes = encode(&b, None, false).unwrap();
    assert!(matches!(dec(&bytes, None), Err(CodecError::Malformed(_))));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn decode_inverts_encode(b in bundle()) {
        let bytes = encode(&b, None, false).unwrap();
        prop_assert_eq!(decode(&bytes, None, &Ends::of(&b)).unwrap(), b.clone());
        let h = peek_header(&bytes).unwrap();
        prop_assert_eq!(h.sender_key, station_key(&b.sender));
        prop_assert_eq!(h.receiver_key, b.receiver.as_ref().map(station_key));
    }

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = dec(&bytes, None);
    }

    #[test]
    fn damaged_bundles_are_refused(b in bundle(), at in any::<prop::sample::Index>(), bit in 0u8..8) {
        let mut bytes = encode(&b, None, false).unwrap();
        let i = at.index(bytes.len());
        bytes[i] ^= 1 << bit;
        prop_assert!(decode(&bytes, None, &Ends::of(&b)).is_err());
    }
}
