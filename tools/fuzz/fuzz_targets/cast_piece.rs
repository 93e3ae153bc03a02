//! Broadcast pieces heard on the air (`sync::cast`, anyone can send one) on
//! arbitrary bytes: never a panic; a piece that parses lies within its
//! broadcast and writes back to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use radiosync::sync::cast::CastPiece;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = CastPiece::parse(data) {
        assert!(!p.bytes.is_empty() && p.offset + p.bytes.len() as u64 <= p.total);
        assert_eq!(p.to_payload(), data, "a parsed piece writes back the same bytes");
    }
});
