//! Untrusted bundle bytes: decode and peek_header must return, never panic,
//! and anything that decodes must re-encode to a bundle that decodes the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use radiosync::codec::{decode, encode, peek_header, Dictionary};

fuzz_target!(|data: &[u8]| {
    let dict = Dictionary::new(b"radiosync fuzz dictionary: not a trained one".to_vec());
    let header = peek_header(data);
    for d in [None, Some(&dict)] {
        if let Ok(bundle) = decode(data, d) {
            assert!(header.is_ok());
            let again = encode(&bundle, None, false).expect("a decoded bundle encodes");
            assert_eq!(decode(&again, None).expect("re-encoded bundle decodes"), bundle);
        }
    }
});
