//! cargo-fuzz target `config`: the logic and invariants are `fuzzing::config`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzzing::config(data));
