//! cargo-fuzz target `templates`: the logic and invariants are `fuzzing::templates`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzzing::templates(data));
