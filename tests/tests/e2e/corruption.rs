//! Truncation at every offset and a bit flip at every byte of real inputs:
//! `.gcno`/`.gcda` compiled and run with gcc 12 and gcc 11 at test time, a
//! tracefile from `lcov --capture`, and tar streams of a capture tree from
//! busybox and GNU tar. Every result is either the right answer (the
//! untouched input reads as before) or a typed error whose offsets (or,
//! for line-based tracefiles, line) lie within the input; never a panic.

use std::io::Cursor;
use std::path::Path;
use std::process::Command;

use covnet_collector::tar;
use covnet_merger::model::Coverage;
use covnet_merger::{lcov, object_coverage, Capture, Data, Notes};
use covnet_tests::fuzz_bodies::named_offsets;
use covnet_tests::gcc::{Build, Program, Toolchain, GCC11, SYSTEM_GCC};
use covnet_tests::lcov_tool;

const C_PROGRAM: Program = Program {
    name: "cprog",
    sources: &["main.c", "util.c", "oneline.c", "extra.c"],
    cxx: false,
    runs: &[&["loop", "3"]],
    silent_runs: &[],
};

/// Asserts that `message` names only offsets within `len` bytes.
fn offsets_within(message: &str, len: usize) {
    for n in named_offsets(message) {
        assert!(n <= len as u64, "offset {n} beyond {len} bytes: {message}");
    }
}

/// `object_coverage` of `notes` with one capture holding `data`; on error,
/// the offsets must lie within the file the error names.
fn object(notes: &[u8], data: &[u8]) -> Option<Coverage> {
    let (np, dp) = (Path::new("/t/main.gcno"), Path::new("/t/main.gcda"));
    let captures = [Capture {
        index: 0,
        path: dp,
        bytes: data,
    }];
    match object_coverage(np, notes, &captures, 1) {
        Ok(cov) => Some(cov),
        Err(e) => {
            let len = if e.path == np {
                notes.len()
            } else {
                data.len()
            };
            assert!(e.path == np || e.path == dp, "{e}");
            offsets_within(&e.kind.to_string(), len);
            None
        }
    }
}

fn gcno_gcda_survive_truncation_and_bit_flips(tc: Toolchain) {
    let build = Build::new(tc, &C_PROGRAM, "-O0").expect("compile the fixture");
    let capture = build.dir.path().join("capture");
    let run = C_PROGRAM.runs.first().expect("one run");
    build.run_into(run, &capture).expect("run the fixture");
    let notes = std::fs::read(build.gcno("main")).expect("main.gcno");
    let data = std::fs::read(capture.join("main.gcda")).expect("main.gcda");
    let right = object(&notes, &data).expect("the real files read");
    assert!(right
        .files
        .values()
        .any(|f| f.lines.values().any(|l| l.count > 0)));

    for n in 0..notes.len() {
        let cut = notes.get(..n).expect("prefix");
        if let Err(kind) = Notes::parse(cut) {
            offsets_within(&kind.to_string(), n);
        }
        let _ = object(cut, &data);
    }
    for n in 0..data.len() {
        let cut = data.get(..n).expect("prefix");
        if let Err(kind) = Data::parse(cut) {
            offsets_within(&kind.to_string(), n);
        }
        let _ = object(&notes, cut);
    }
    for i in 0..notes.len() {
        let mut bad = notes.clone();
        bad[i] ^= 1 << (i % 8);
        let _ = object(&bad, &data);
    }
    for i in 0..data.len() {
        let mut bad = data.clone();
        bad[i] ^= 1 << (i % 8);
        let _ = object(&notes, &bad);
    }
    // Untouched, the same answer as before.
    assert_eq!(object(&notes, &data), Some(right));
}

#[test]
fn system_gcc_gcno_gcda_truncation_and_bit_flips() {
    gcno_gcda_survive_truncation_and_bit_flips(SYSTEM_GCC);
}

#[test]
fn gcc11_gcno_gcda_truncation_and_bit_flips() {
    gcno_gcda_survive_truncation_and_bit_flips(GCC11);
}

/// Reads a tracefile; an error names a line within the input.
fn read_info(bytes: &[u8]) -> Option<Coverage> {
    match lcov::read(Cursor::new(bytes), Path::new("t.info"), "t") {
        Ok(cov) => Some(cov),
        Err(e) => {
            let lines = bytes.split(|&b| b == b'\n').count() as u64;
            assert!(e.line <= lines, "line {} of {lines}: {e}", e.line);
            None
        }
    }
}

#[test]
fn lcov_capture_truncation_and_bit_flips() {
    let p = lcov_tool::Program::build().expect("compile the lcov fixture");
    let capture = p.capture("c1", &["3", "9"]).expect("run the fixture");
    let info = p.lcov_capture(&capture, "c1").expect("lcov --capture");
    let bytes = std::fs::read(&info).expect("tracefile");
    let right = read_info(&bytes).expect("lcov's tracefile reads");
    assert!(!right.files.is_empty());
    let mut complete = 0;
    for n in 0..bytes.len() {
        let cut = bytes.get(..n).expect("prefix");
        if read_info(cut).is_some() {
            complete += 1;
            // Only a cut outside every record reads: after the last
            // end_of_record, no SF has begun.
            let text = String::from_utf8_lossy(cut);
            let after = match text.rfind("end_of_record") {
                Some(i) => text.get(i..).unwrap_or(""),
                None => &text,
            };
            assert!(
                !after.contains("SF:"),
                "a cut inside a record read as complete: {after}"
            );
        }
    }
    assert!(complete >= right.files.len());
    for i in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[i] ^= 1 << (i % 8);
        let _ = read_info(&bad);
    }
    assert_eq!(read_info(&bytes), Some(right));
}

#[test]
fn tar_bit_flips_and_truncation_of_real_archives() {
    let p = lcov_tool::Program::build().expect("compile the fixture");
    let capture = p.capture("c1", &["3"]).expect("run the fixture");
    for tool in [
        &["busybox", "tar"][..],
        &["tar", "--format=gnu"],
        &["tar", "--format=pax"],
    ] {
        let out = Command::new(tool[0])
            .args(&tool[1..])
            .arg("-cf")
            .arg("-")
            .arg("-C")
            .arg(&capture)
            .arg(".")
            .output()
            .expect("tar is installed");
        assert!(out.status.success(), "{tool:?} failed");
        let bytes = out.stdout;
        let right = tar::entries(&bytes).expect("a real archive reads");
        assert_eq!(right.len(), 2, "{tool:?}: {right:?}");
        let check = |b: &[u8]| match tar::entries(b) {
            Ok(entries) => Some(entries.len()),
            Err(e) => {
                offsets_within(&e.to_string(), b.len());
                None
            }
        };
        for n in 0..bytes.len() {
            if let Some(got) = check(bytes.get(..n).expect("prefix")) {
                assert!(got <= right.len());
            }
        }
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 1 << (i % 8);
            let _ = check(&bad);
        }
        assert_eq!(tar::entries(&bytes), Ok(right));
    }
}
