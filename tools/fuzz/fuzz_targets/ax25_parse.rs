//! AX.25 UI parse on arbitrary bytes; accepted frames round-trip through emit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use radiosync::frame::ax25::UiFrame;

fuzz_target!(|data: &[u8]| {
    if let Ok(ui) = UiFrame::parse(data) {
        let bytes = ui.to_bytes();
        assert_eq!(bytes.len(), ui.buffer_len());
        assert_eq!(UiFrame::parse(&bytes).as_ref(), Ok(&ui));
    }
    let _ = radiosync::frame::ax25::parse_radiosync(data);
});
