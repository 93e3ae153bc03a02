//! sync Message::parse on arbitrary bytes. Anything accepted must emit the
//! same bytes (the format has one encoding per message: minimal varints, no
//! trailing bytes) and parse back to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use radiosync::sync::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = Message::parse(data) {
        let bytes = msg.to_bytes();
        assert_eq!(bytes.len(), msg.buffer_len());
        if !matches!(msg, Message::Unknown(_)) {
            assert_eq!(bytes, data, "one encoding per message");
        }
        assert_eq!(Message::parse(&bytes).expect("emitted message parses"), msg);
    }
});
