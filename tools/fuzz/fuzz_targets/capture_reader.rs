//! capture::Reader over arbitrary bytes: the header, then records until the
//! first error, after which the iterator ends. Whole records re-emit to the
//! bytes they were read from, and `capture show`'s decoder lists them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use radiosync::capture::{Reader, Writer};
use radiosync::capture::show;

fuzz_target!(|data: &[u8]| {
    let Ok(reader) = Reader::new(data) else {
        return;
    };
    let header = reader.header().clone();
    let mut records = Vec::new();
    let mut reader = reader;
    let mut failed = false;
    for item in reader.by_ref() {
        match item {
            Ok(r) => {
                assert!(!failed, "a record after an error");
                records.push(r);
            }
            Err(_) => failed = true,
        }
    }
    assert!(reader.next().is_none(), "the reader stays ended");
    // Re-writing what was read gives a prefix of the input when nothing failed.
    let mut out = Vec::new();
    let mut w = Writer::new(&mut out, &header).expect("header re-emits");
    for r in &records {
        w.write(r).expect("record re-emits");
    }
    if !failed {
        assert_eq!(out, data);
    }
    // The listing decodes every record through the frame, ARQ and session
    // parsers with the profile the header carries: it must not panic.
    let listing = show::show(&header, records.into_iter().map(Ok));
    assert!(listing.ends_with(" records\n"));
});
