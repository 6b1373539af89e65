//! Fuzz target `tar`: the body lives in `covnet_tests::fuzz_bodies::tar`,
//! shared with the regression test that replays `fuzz/regressions/tar/`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| covnet_tests::fuzz_bodies::tar(data));
