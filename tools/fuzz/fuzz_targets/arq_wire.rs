//! The ARQ payload parsers (DataRepr, AckRepr) on arbitrary bytes: the first
//! two bytes are the frame's seq, the rest the payload. Anything accepted must
//! emit the same payload (an ack drops bit 63 of its bitmap, outside the window).
#![no_main]

use libfuzzer_sys::fuzz_target;
use radiosync::arq::{AckRepr, DataRepr, ACK_MAX};

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
        assert_eq!(a.buffer_len(), f.payload.len());
        assert_eq!(AckRepr::parse(f.seq, &f.payload), Ok(a));
        // Bit 63 names a frame outside the window: parsed, ignored, not re-sent.
        let bit63 = payload.len() == ACK_MAX && payload[ACK_MAX - 1] & 0x80 != 0;
        if !bit63 {
            assert_eq!((f.seq, f.payload.as_slice()), (seq, payload));
        }
    }
});
