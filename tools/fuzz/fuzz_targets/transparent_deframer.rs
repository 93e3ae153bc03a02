//! Transparent-link deframer, with and without FEC, on two kinds of input:
//! raw bytes (noise), and a valid encoding built from the input then damaged by it
//! (random bytes almost never contain a sync word plus a valid RS length code).
#![no_main]

use libfuzzer_sys::fuzz_target;
use radiosync::frame::transparent::{encode, TransparentDeframer, HEADER_LEN};
use radiosync::frame::{FecParams, Frame, FrameKind, Route};

fn deframe(stream: &[u8], fec: Option<FecParams>) -> Vec<Frame> {
    let mut d = TransparentDeframer::new(fec);
    let mut out = Vec::new();
    for chunk in stream.chunks(97) {
        d.push(chunk);
        while let Some(r) = d.next() {
            out.extend(r.ok().map(|(f, _)| f));
        }
    }
    if d.channel_idle() {
        while let Some(r) = d.next() {
            out.extend(r.ok().map(|(f, _)| f));
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let fec = FecParams {
        parity_bytes_per_block: 8,
        block_data_len: 40,
        interleave: true,
    };
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let params = (mode & 1 == 1).then_some(fec);
    if mode & 2 == 0 {
        for f in deframe(rest, params) {
            assert!(encode(&f, params.as_ref()).is_ok());
        }
        return;
    }
    // Payload from the first part, damage (position, xor) pairs from the second.
    let split = rest.first().map_or(0, |&b| usize::from(b)).min(rest.len());
    let (payload, damage) = rest.split_at(split);
    let frame = Frame {
        kind: FrameKind::Data,
        session: 1,
        seq: 2,
        payload: payload.to_vec(),
        auth_tag: None,
        // Odd splits build routed frames (shared channels), even ones plain.
        route: (split % 2 == 1).then_some(Route {
            to: 0xBEEF,
            from: 0x1234,
        }),
    };
    let mut wire = encode(&frame, params.as_ref()).expect("valid frame encodes");
    wire.extend(encode(&frame, params.as_ref()).expect("valid frame encodes"));
    let clean = wire.clone();
    for pair in damage.chunks_exact(2) {
        if wire.is_empty() {
            break;
        }
        let at = usize::from(pair[0]) * 7 % wire.len();
        if pair[1] == 0 {
            wire.remove(at);
        } else {
            wire[at] ^= pair[1];
        }
    }
    for f in deframe(&wire, params) {
        // The payload may hold a whole encoded frame, and damage (byte writes, removals) may
        // complete one out of payload bytes: once the outer header is broken the deframer
        // rightly resyncs on such a frame. What it must not do is yield a frame whose bytes
        // after the header (sync word and length may carry corrected errors) are in neither
        // the stream it was given nor the undamaged one (RS may have repaired an inner frame).
        if f != frame {
            let enc = encode(&f, params.as_ref()).expect("a deframed frame encodes");
            let body = &enc[HEADER_LEN..];
            let present = |s: &[u8]| s.windows(body.len()).any(|w| w == body);
            assert!(
                present(&wire) || present(&clean),
                "a damaged stream yielded a frame it does not contain: {f:?}"
            );
        }
    }
});
