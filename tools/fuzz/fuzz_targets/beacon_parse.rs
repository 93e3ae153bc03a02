//! Beacons heard on the air (`sync::beacon`, any station can send one) on
//! arbitrary bytes: never a panic; a beacon that parses writes back to the
//! same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use radiosync::sync::beacon::Beacon;

fuzz_target!(|data: &[u8]| {
    if let Ok(b) = Beacon::parse(data) {
        assert_eq!(b.to_payload(), data, "a parsed beacon writes back the same bytes");
    }
});
