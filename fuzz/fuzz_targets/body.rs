//! cargo-fuzz target `body`: the logic and invariants are `fuzzing::body`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzzing::body(data));
