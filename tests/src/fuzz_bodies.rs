//! The bodies of the fuzz targets in `fuzz/` (cargo-fuzz, libFuzzer), one
//! function per reader of outside data, shared with the stable-toolchain
//! regression test that replays `fuzz/regressions/<target>/*`.
//!
//! Each body feeds arbitrary bytes to a reader and checks invariants that
//! are cheap to check: the reader never panics, every error that names an
//! offset names one inside the input, and a successful read survives a
//! write-and-read-back round trip. A violated invariant panics (that is
//! how libFuzzer learns about it).
//!
//! ```
//! covnet_tests::fuzz_bodies::run("tar", &[0u8; 600]).unwrap();
//! ```

use std::io::Cursor;
use std::path::Path;

use covnet_collector::tar;
use covnet_merger::lcov::{self, LcovFormat, WriteOptions};
use covnet_merger::{json, object_coverage, Data, Notes};
use covnet_runner::machine::console::{parse_end_id, take_line, ReplyDecoder};
use covnet_runner::spec::Spec;

/// Names of all fuzz targets, as in `fuzz/fuzz_targets/<name>.rs`.
pub const TARGETS: &[&str] = &[
    "gcno",
    "gcda",
    "lcov",
    "json_model",
    "spec",
    "console_frames",
    "tar",
    "dwarf",
];

/// Runs the body of `target` on `data`; `Err` names an unknown target.
pub fn run(target: &str, data: &[u8]) -> Result<(), String> {
    match target {
        "gcno" => gcno(data),
        "gcda" => gcda(data),
        "lcov" => lcov(data),
        "json_model" => json_model(data),
        "spec" => spec(data),
        "console_frames" => console_frames(data),
        "tar" => tar(data),
        "dwarf" => dwarf(data),
        other => return Err(format!("unknown fuzz target `{other}`")),
    }
    Ok(())
}

/// The numbers that follow `offset ` in an error message.
pub fn named_offsets(message: &str) -> Vec<u64> {
    message
        .match_indices("offset ")
        .filter_map(|(i, _)| {
            let digits: String = message
                .get(i + "offset ".len()..)
                .unwrap_or("")
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse::<u64>().ok()
        })
        .collect()
}

/// Every `offset N` in an error message must lie within the input.
fn assert_offsets_within(message: &str, len: usize) {
    for n in named_offsets(message) {
        assert!(
            n <= len as u64,
            "error names offset {n} beyond the {len}-byte input: {message}"
        );
    }
}

/// `.gcno`: parse; the listing never panics; the whole object path with
/// no data files (graph build, a solve with zero counters, line mapping)
/// fails exactly when the parser does, and never panics.
pub fn gcno(data: &[u8]) {
    let object = object_coverage(Path::new("/fuzz/x.gcno"), data, &[], 1);
    match Notes::parse(data) {
        Ok(notes) => {
            let _ = notes.to_string();
            if let Err(e) = object {
                assert_offsets_within(&e.kind.to_string(), data.len());
            }
        }
        Err(kind) => {
            assert_offsets_within(&kind.to_string(), data.len());
            let e = object.expect_err("object_coverage accepts what Notes::parse rejects");
            assert_eq!(e.kind.to_string(), kind.to_string());
        }
    }
}

/// `.gcda`: parse; counters iterate to their declared length; the
/// listing never panics.
pub fn gcda(data: &[u8]) {
    match Data::parse(data) {
        Ok(parsed) => {
            for f in &parsed.functions {
                if let Some(c) = &f.arcs {
                    // Stored counters come from the input, so they are
                    // bounded by it; all-zero runs are checked lazily.
                    if c.len <= data.len() as u64 {
                        assert_eq!(c.iter().count() as u64, c.len);
                    }
                }
            }
            let _ = parsed.to_string();
        }
        Err(kind) => assert_offsets_within(&kind.to_string(), data.len()),
    }
}

/// lcov tracefile: read; what was read writes out (both dialects) as a
/// tracefile that reads back and writes out identically.
pub fn lcov(data: &[u8]) {
    let path = Path::new("/fuzz/x.info");
    let Ok(cov) = lcov::read(Cursor::new(data), path, "default") else {
        return;
    };
    for format in [LcovFormat::V1, LcovFormat::V2] {
        for per_capture in [false, true] {
            let opts = WriteOptions {
                format,
                per_capture,
            };
            let mut first = Vec::new();
            lcov::write(&cov, &mut first, opts).expect("write to a Vec");
            let again = lcov::read(Cursor::new(&first), path, "default").unwrap_or_else(|e| {
                panic!(
                    "covnet cannot read its own tracefile ({opts:?}): {e}\n{}",
                    String::from_utf8_lossy(&first)
                )
            });
            if !per_capture {
                let mut second = Vec::new();
                lcov::write(&again, &mut second, opts).expect("write to a Vec");
                assert!(
                    first == second,
                    "write/read/write differs ({opts:?}):\n{}\n---\n{}",
                    String::from_utf8_lossy(&first),
                    String::from_utf8_lossy(&second)
                );
            }
        }
    }
}

/// covnet's JSON model: read; what was read writes and reads back equal.
pub fn json_model(data: &[u8]) {
    let Ok(cov) = json::from_slice(data) else {
        return;
    };
    let text = json::to_string(&cov).expect("serialize a model that was read");
    let back = json::from_slice(text.as_bytes()).expect("read back covnet's own JSON");
    assert_eq!(back, cov);
}

/// The spec: parse and validate (files it names do not exist, so the
/// validation of paths runs and fails); an error's location lies within
/// the text.
pub fn spec(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = Spec::from_str(text, Path::new("/nonexistent/covnet-fuzz/spec.toml")) {
        let _ = e.to_string();
        if let Some(loc) = e.location {
            let lines = text.split('\n').count();
            assert!(
                loc.line >= 1 && loc.line <= lines && loc.column >= 1,
                "location {loc} outside a {lines}-line text: {e}"
            );
        }
    }
}

/// The control channel's framing: lines the guest sends are split and
/// decoded for request 1; a decoded reply, framed again as the guest
/// would, decodes to the same reply.
pub fn console_frames(data: &[u8]) {
    use base64::engine::general_purpose::STANDARD as B64;
    use base64::Engine as _;

    let mut lines = data.to_vec();
    while let Some(line) = take_line(&mut lines) {
        assert!(!line.contains(&b'\n'));
        let _ = parse_end_id(&line);
    }
    let mut pending = data.to_vec();
    let mut decoder = ReplyDecoder::new(1);
    match decoder.feed(&mut pending) {
        Ok(None) => {}
        Ok(Some(reply)) => {
            let mut again = format!("=covnet 7 raw {}\n", reply.out.len()).into_bytes();
            again.extend_from_slice(&reply.out);
            again.extend_from_slice(
                format!(
                    "=covnet 7 err\n{}\n=covnet 7 end {}\n",
                    B64.encode(&reply.err),
                    reply.status
                )
                .as_bytes(),
            );
            let mut d = ReplyDecoder::new(7);
            let back = d.feed(&mut again).expect("own framing decodes");
            assert_eq!(back.as_ref(), Some(&reply));
            assert!(again.is_empty());
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// Tar streams from guests: every entry's data is a part of the input.
pub fn tar(data: &[u8]) {
    match tar::entries(data) {
        Ok(entries) => {
            let start = data.as_ptr() as usize;
            let end = start + data.len();
            for e in entries {
                let p = e.data.as_ptr() as usize;
                assert!(p >= start && p + e.data.len() <= end);
            }
        }
        Err(e) => assert_offsets_within(&e.to_string(), data.len()),
    }
}

/// ELF files' debug information: the links and the DWARF read without
/// panicking; what reads has no line 0 and no empty path, and reads the
/// same twice.
pub fn dwarf(data: &[u8]) {
    use covnet_merger::dwarf;
    let _ = dwarf::links(data).map_err(|e| e.to_string());
    match dwarf::read_slice(data) {
        Ok(Some(info)) => {
            for (path, file) in &info.files {
                assert!(!path.is_empty(), "a source file without a path");
                assert!(!file.lines.contains(&0), "{path}: line 0 counted");
            }
            assert_eq!(dwarf::read_slice(data).ok().flatten().as_ref(), Some(&info));
        }
        Ok(None) => {}
        Err(e) => {
            let _ = (e.to_string(), e.hint());
        }
    }
}
