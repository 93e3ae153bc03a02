//! The resume file loaders (kept bundle, partial bundle) on arbitrary bytes.
//! A loaded file re-emits to its valid prefix.
#![no_main]

use libfuzzer_sys::fuzz_target;
use radiosync::sync::message::BundleId;
use radiosync::sync::persist;

fuzz_target!(|data: &[u8]| {
    if let Ok((peer, kept)) = persist::kept_from_bytes(data) {
        assert_eq!(BundleId::of(&kept.bytes), kept.id);
        assert_eq!(persist::kept_to_bytes(peer, &kept), data);
    }
    if let Ok(loaded) = persist::partial_from_bytes(data) {
        assert!(loaded.valid_len <= data.len());
        let p = &loaded.partial;
        assert!(p.bytes.len() as u64 <= p.total_len);
        // The header and the whole records re-read to the same prefix.
        let again =
            persist::partial_from_bytes(&data[..loaded.valid_len]).expect("the valid prefix loads");
        assert_eq!(again.partial, loaded.partial);
        assert_eq!(again.valid_len, loaded.valid_len);
        let head = persist::partial_header(loaded.peer, p.id, p.total_len);
        assert!(data.starts_with(&head));
    }
});
