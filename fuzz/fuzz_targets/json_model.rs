//! Fuzz target `json_model`: the body lives in `covnet_tests::fuzz_bodies::json_model`,
//! shared with the regression test that replays `fuzz/regressions/json_model/`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| covnet_tests::fuzz_bodies::json_model(data));
