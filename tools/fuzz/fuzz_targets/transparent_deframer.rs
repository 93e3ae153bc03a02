//! Transparent-link deframer on an arbitrary byte stream, with and without FEC.
//! Every accepted frame must be one the encoder could have produced.
#![no_main]

use libfuzzer_sys::fuzz_target;
use radiosync::frame::transparent::{encode, TransparentDeframer};
use radiosync::frame::FecParams;

fuzz_target!(|data: &[u8]| {
    let fec = FecParams {
        parity_bytes_per_block: 16,
        block_data_len: 64,
        interleave: true,
    };
    for params in [None, Some(fec)] {
        let mut d = TransparentDeframer::new(params);
        for chunk in data.chunks(97) {
            d.push(chunk);
            while let Some(r) = d.next() {
                if let Ok((frame, _)) = r {
                    assert!(encode(&frame, params.as_ref()).is_ok());
                }
            }
        }
    }
});
