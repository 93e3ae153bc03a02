//! The PinSketch decoder on arbitrary sums (4 bytes each, as a `Sketch`
//! message carries them): it must never panic, and whatever it returns must
//! sketch to exactly the sums given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use radiosync::recon::Sketch;

fuzz_target!(|data: &[u8]| {
    // Decoding costs the square of the capacity: 24 sums keep runs fast.
    let sums: Vec<u32> = data
        .chunks_exact(4)
        .take(24)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let sketch = Sketch::from_sums(sums);
    if let Some(items) = sketch.decode() {
        assert!(items.len() <= sketch.capacity());
        assert_eq!(Sketch::of(items.iter().copied(), sketch.capacity()), sketch);
    }
});
