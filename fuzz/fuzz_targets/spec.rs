//! Fuzz target `spec`: the body lives in `covnet_tests::fuzz_bodies::spec`,
//! shared with the regression test that replays `fuzz/regressions/spec/`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| covnet_tests::fuzz_bodies::spec(data));
