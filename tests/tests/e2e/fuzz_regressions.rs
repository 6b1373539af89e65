//! Replays the regression corpus of the fuzz targets on the stable
//! toolchain: every file in `fuzz/regressions/<target>/` (an input that
//! once crashed a reader, kept after the fix) goes through the same body
//! the fuzz target runs (`covnet_tests::fuzz_bodies`), so CI catches a
//! reintroduced bug without running the fuzzer.

use std::path::{Path, PathBuf};

use covnet_tests::fuzz_bodies::{self, TARGETS};

fn regressions_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("fuzz")
        .join("regressions")
}

#[test]
fn every_regression_input_passes_its_target() {
    let dir = regressions_dir();
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir).expect("fuzz/regressions exists") {
        let entry = entry.expect("readable directory entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "README.md" {
            continue;
        }
        assert!(
            TARGETS.contains(&name.as_str()),
            "fuzz/regressions/{name} does not name a fuzz target ({TARGETS:?})"
        );
        for file in std::fs::read_dir(entry.path()).expect("target directory") {
            let path = file.expect("entry").path();
            let bytes = std::fs::read(&path).expect("regression input");
            fuzz_bodies::run(&name, &bytes).expect("known target");
            replayed += 1;
        }
    }
    assert!(replayed > 0, "no regression inputs under {}", dir.display());
}

/// Degenerate inputs every target must take: empty, one byte, zeros,
/// 0xff, and a long run of newlines.
#[test]
fn degenerate_inputs_pass_every_target() {
    let inputs: [Vec<u8>; 5] = [
        Vec::new(),
        vec![0],
        vec![0; 4096],
        vec![0xff; 4096],
        vec![b'\n'; 4096],
    ];
    for target in TARGETS {
        for input in &inputs {
            fuzz_bodies::run(target, input).expect("known target");
        }
    }
    assert!(fuzz_bodies::run("nope", b"").is_err());
}
