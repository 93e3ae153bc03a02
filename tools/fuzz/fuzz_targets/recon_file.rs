//! Reconciliation files (`recon::file`, from a USB stick) on arbitrary bytes:
//! never a panic, and whatever parses writes back to exactly the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use radiosync::recon::file::ReconFile;

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = ReconFile::parse(data) {
        assert_eq!(f.to_bytes(), data);
    }
});
