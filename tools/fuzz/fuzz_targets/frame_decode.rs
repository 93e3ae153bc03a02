//! Frame::decode on arbitrary bytes, with the FEC profile picked by the first byte.
//! Anything accepted must re-encode to bytes that decode to the same frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use radiosync::frame::{FecParams, Frame};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, bytes)) = data.split_first() else {
        return;
    };
    // sel 0 = no FEC; otherwise parity 2..=32 and block size from the byte, valid or not.
    let fec = (sel != 0).then(|| FecParams {
        parity_bytes_per_block: usize::from(sel & 0x0F) * 2,
        block_data_len: usize::from(sel) * 3 % 260,
        interleave: sel & 0x80 != 0,
    });
    if let Ok((frame, _)) = Frame::decode(bytes, fec.as_ref()) {
        let again = frame
            .encode(fec.as_ref())
            .expect("decoded frame re-encodes");
        let (back, info) = Frame::decode(&again, fec.as_ref()).expect("re-encoded frame decodes");
        assert_eq!(back, frame);
        assert_eq!(info.corrected_symbols, 0);
    }
});
