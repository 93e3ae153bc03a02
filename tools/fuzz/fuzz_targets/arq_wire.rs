//! The ARQ payload parsers (DataRepr, AckRepr) on arbitrary bytes: the first
//! two bytes are the frame's seq, the rest the payload. Anything accepted must
//! emit the same payload.
#![no_main]

use libfuzzer_sys::fuzz_target;
use radiosync::arq::{AckRepr, DataRepr};

fuzz_target!(|data: &[u8]| {
    let Some((seq, payload)) = data.split_first_chunk::<2>() else {
        return;
    };
    let seq = u16::from_be_bytes(*seq);
    if let Ok(d) = DataRepr::parse(seq, payload) {
        let f = d.emit();
        assert_eq!((f.seq, f.payload.as_slice()), (seq, payload));
        assert_eq!(d.buffer_len(), payload.len());
    }
    if let Ok(a) = AckRepr::parse(seq, payload) {
        let f = a.emit();
        assert_eq!((f.seq, f.payload.as_slice()), (seq, payload));
        assert_eq!(a.buffer_len(), payload.len());
    }
});
