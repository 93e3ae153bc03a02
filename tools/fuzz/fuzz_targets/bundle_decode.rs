//! Untrusted bundle bytes: decode and peek_header must return, never panic,
//! and anything that decodes must re-encode to a bundle that decodes the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use radiosync::codec::{decode, encode, peek_header, Dictionary, Ends};
use radiosync::delta::StationId;

fuzz_target!(|data: &[u8]| {
    let dict = Dictionary::new(b"radiosync fuzz dictionary: not a trained one".to_vec());
    let header = peek_header(data);
    // Fuzzing builds accept any ends; these two stand for the resolved peers.
    let ends = Ends {
        sender: StationId([0x11; 16]),
        receiver: Some(StationId([0x22; 16])),
    };
    for d in [None, Some(&dict)] {
        if let Ok(bundle) = decode(data, d, &ends) {
            assert!(header.is_ok());
            let again = encode(&bundle, None, false).expect("a decoded bundle encodes");
            assert_eq!(
                decode(&again, None, &Ends::of(&bundle)).expect("re-encoded bundle decodes"),
                bundle
            );
        }
    }
});
