//! Fuzz target `dwarf`: the body lives in `covnet_tests::fuzz_bodies::dwarf`,
//! shared with the regression test that replays `fuzz/regressions/dwarf/`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| covnet_tests::fuzz_bodies::dwarf(data));
