//! The web services' nicedbdump check (`api::nicedbdump::parse`) on arbitrary JSON
//! from the network: it must never panic, and a dump it accepts must come back
//! through `to_json` as a dump it accepts again, with the same shape.
#![no_main]

use libfuzzer_sys::fuzz_target;
use radiosync::api::nicedbdump::{parse, to_json};

fuzz_target!(|data: &[u8]| {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if let Ok(tables) = parse(&json) {
        let again = parse(&to_json(&tables)).expect("a written dump parses");
        assert_eq!(again.len(), tables.len());
        for (a, b) in again.iter().zip(&tables) {
            assert_eq!((&a.name, &a.columns, a.rows.len()), (&b.name, &b.columns, b.rows.len()));
        }
    }
});
