//! Fuzz target `lcov`: the body lives in `covnet_tests::fuzz_bodies::lcov`,
//! shared with the regression test that replays `fuzz/regressions/lcov/`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| covnet_tests::fuzz_bodies::lcov(data));
