//! Fuzz target `gcda`: the body lives in `covnet_tests::fuzz_bodies::gcda`,
//! shared with the regression test that replays `fuzz/regressions/gcda/`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| covnet_tests::fuzz_bodies::gcda(data));
