//! Signed-file envelopes (`auth::SignedFile`, from a USB stick) and station
//! cards (`auth::Card`, typed by an operator) on arbitrary bytes: never a
//! panic; a card that parses writes back to a line naming the same station and key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use radiosync::auth::{Card, SignedFile, StationKey};

fuzz_target!(|data: &[u8]| {
    if let Some(f) = SignedFile::parse(data) {
        let key = StationKey::from_bytes(&[7; 32]).public();
        let _ = f.verify(&key);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(card) = Card::parse(text) {
            let back = Card::parse(&card.to_line()).expect("a written card parses");
            assert_eq!((back.station, back.key), (card.station, card.key));
        }
    }
});
