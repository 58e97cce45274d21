//! The engine's decoder of `actions` record values (`engine::handle::decode`),
//! the bytes any producer with access to the topic can write.
//!
//! Oracle: never a panic; what decodes re-encodes to an equal envelope.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(envelope) = engine::handle::decode(Some(data)) {
        let again = serde_json::to_vec(&envelope).expect("an envelope encodes");
        let back = engine::handle::decode(Some(&again)).expect("its own encoding decodes");
        assert_eq!(back, envelope);
    }
});
