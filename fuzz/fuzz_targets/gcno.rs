//! Fuzz target `gcno`: the body lives in `covnet_tests::fuzz_bodies::gcno`,
//! shared with the regression test that replays `fuzz/regressions/gcno/`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| covnet_tests::fuzz_bodies::gcno(data));
