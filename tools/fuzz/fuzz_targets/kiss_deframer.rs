//! KISS deframer on an arbitrary byte stream, fed in two pieces.
//! Every accepted frame must survive emit + deframe unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use radiosync::frame::kiss::KissDeframer;

fuzz_target!(|data: &[u8]| {
    let cut = data.first().map_or(0, |&b| usize::from(b)).min(data.len());
    let mut d = KissDeframer::new(512);
    let mut frames = Vec::new();
    d.push(&data[..cut]);
    while let Some(r) = d.next() {
        frames.extend(r.ok());
    }
    d.push(&data[cut..]);
    while let Some(r) = d.next() {
        frames.extend(r.ok());
    }
    for f in frames {
        let bytes = f.to_bytes().expect("parsed frame has a valid port");
        let mut again = KissDeframer::new(1024);
        again.push(&bytes);
        assert_eq!(again.next(), Some(Ok(f)));
        assert_eq!(again.next(), None);
    }
});
