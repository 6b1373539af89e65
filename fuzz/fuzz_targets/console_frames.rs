//! Fuzz target `console_frames`: the body lives in `covnet_tests::fuzz_bodies::console_frames`,
//! shared with the regression test that replays `fuzz/regressions/console_frames/`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| covnet_tests::fuzz_bodies::console_frames(data));
