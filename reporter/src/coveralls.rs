//! Coveralls JSON: the job document of Coveralls' API
//! (<https://docs.coveralls.io/api-reference>), minus the job's identity
//! (`repo_token`, `service_name`, …), which the uploader adds:
//!
//! ```json
//! { "run_at": "2026-11-25 13:59:08 UTC",
//!   "source_files": [
//!     { "name": "src/a.c", "source_digest": "<MD5 of the source text>",
//!       "coverage": [null, 2, 0, null],
//!       "branches": [3, 0, 0, 2, 3, 0, 1, 0] } ] }
//! ```
//!
//! `coverage` has one entry per line of the source file: the line's count,
//! or `null` where nothing is instrumented. `branches` is flat, four
//! numbers per branch: line, block, branch, times taken (0 when its block
//! never ran). Both need the source text, so a file whose source is not on
//! disk (or has fewer lines than the coverage names) is left out and
//! listed in [`Written::missing`]. Names are relative to the root given
//! (Coveralls expects paths relative to the repository), absolute where a
//! file lies outside it. Negative (racy) counts are written as 0.

use std::io::{self, Write};
use std::path::Path;

use covnet_merger::model::{Coverage, FileCoverage};
use md5::{Digest, Md5};
use serde::Serialize;

use crate::{Error, RunInfo};

/// What [`write()`] left out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Written {
    /// Files whose source could not be read or does not match the
    /// coverage, with the reason.
    pub missing: Vec<(String, String)>,
}

#[derive(Serialize)]
struct Job<'a> {
    run_at: String,
    source_files: Vec<SourceFile<'a>>,
}

#[derive(Serialize)]
struct SourceFile<'a> {
    name: &'a str,
    source_digest: String,
    coverage: Vec<Option<i64>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    branches: Vec<i64>,
}

/// Writes the Coveralls job document of `cov` to `out`, reading each
/// source file with `read` (given the path as the model holds it) and
/// naming files relative to `root`.
pub fn write<R>(
    cov: &Coverage,
    info: &RunInfo,
    root: &Path,
    mut read: R,
    out: &mut impl Write,
) -> io::Result<Written>
where
    R: FnMut(&str) -> io::Result<Vec<u8>>,
{
    let mut written = Written::default();
    let mut source_files = Vec::with_capacity(cov.files.len());
    for (path, file) in &cov.files {
        let text = match read(path) {
            Ok(t) => t,
            Err(e) => {
                written.missing.push((path.clone(), e.to_string()));
                continue;
            }
        };
        match source_file(path, file, &text, root) {
            Ok(sf) => source_files.push(sf),
            Err(why) => written.missing.push((path.clone(), why)),
        }
    }
    let job = Job {
        run_at: info.date(),
        source_files,
    };
    serde_json::to_writer(&mut *out, &job).map_err(io::Error::from)?;
    out.write_all(b"\n")?;
    Ok(written)
}

/// Writes the Coveralls job document of `cov` to the file `path`, reading
/// sources from disk (see [`write()`]).
pub fn write_path(
    cov: &Coverage,
    info: &RunInfo,
    root: &Path,
    path: &Path,
) -> Result<Written, Error> {
    let mut written = Written::default();
    crate::output::write_file(path, |w| {
        written = write(cov, info, root, |p| std::fs::read(p), w)?;
        Ok(())
    })?;
    Ok(written)
}

/// Number of lines in `text`, as editors count them: a last line without
/// a newline still counts.
pub fn line_count(text: &[u8]) -> usize {
    let newlines = text.iter().filter(|&&b| b == b'\n').count();
    newlines + usize::from(text.last().is_some_and(|&b| b != b'\n'))
}

fn source_file<'a>(
    path: &'a str,
    file: &FileCoverage,
    text: &[u8],
    root: &Path,
) -> Result<SourceFile<'a>, String> {
    let lines = line_count(text);
    if let Some((&last, _)) = file.lines.last_key_value() {
        if last as usize > lines {
            return Err(format!(
                "the source has {lines} lines but line {last} is instrumented (a different version of the file?)"
            ));
        }
    }
    let mut coverage = vec![None; lines];
    let mut branches = Vec::new();
    for (&no, line) in &file.lines {
        let Some(slot) = (no as usize)
            .checked_sub(1)
            .and_then(|i| coverage.get_mut(i))
        else {
            continue;
        };
        *slot = Some(line.count.max(0));
        for b in &line.branches {
            branches.extend([
                i64::from(no),
                i64::from(b.block),
                i64::from(b.branch),
                b.taken.unwrap_or(0).max(0),
            ]);
        }
    }
    let name = Path::new(path)
        .strip_prefix(root)
        .ok()
        .and_then(|p| p.to_str())
        .filter(|p| !p.is_empty())
        .unwrap_or(path);
    Ok(SourceFile {
        name,
        source_digest: hex(&Md5::digest(text)),
        coverage,
        branches,
    })
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample;

    #[test]
    fn digests_lines_and_branches() {
        let cov = sample::coverage();
        let info = RunInfo {
            title: "t".into(),
            timestamp: 1_795_615_148,
            inputs: vec![],
            notes: vec![],
            blind_spots: vec![],
        };
        let server: String = (1..=10).map(|i| format!("line {i}\n")).collect();
        let mut out = Vec::new();
        let written = write(
            &cov,
            &info,
            Path::new("/proj"),
            |p| match p {
                "/proj/src/server.c" => Ok(server.clone().into_bytes()),
                "/proj/include/util.h" => Ok(b"a\nb".to_vec()),
                _ => Err(io::Error::new(io::ErrorKind::NotFound, "gone")),
            },
            &mut out,
        )
        .unwrap();
        assert_eq!(written.missing.len(), 1);
        assert!(written.missing[0].0.contains("odd"));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["run_at"], "2026-11-25 13:59:08 UTC");
        let files = v["source_files"].as_array().unwrap();
        assert_eq!(files[0]["name"], "include/util.h");
        assert_eq!(files[0]["coverage"], serde_json::json!([0, 0]));
        assert!(files[0].get("branches").is_none());
        let s = &files[1];
        assert_eq!(s["name"], "src/server.c");
        // MD5 of the ten lines, as `md5sum` prints it.
        assert_eq!(s["source_digest"].as_str().unwrap().len(), 32);
        assert_eq!(s["source_digest"], hex(&Md5::digest(server.as_bytes())));
        assert_eq!(
            s["coverage"],
            serde_json::json!([null, 3, 2, 2, 0, 4, null, 1, null, null])
        );
        assert_eq!(s["branches"], serde_json::json!([4, 0, 0, 2, 4, 0, 1, 0]));
    }

    #[test]
    fn stale_sources_are_left_out() {
        let cov = sample::coverage();
        let info = RunInfo::now("t", vec![]);
        let mut out = Vec::new();
        let written = write(
            &cov,
            &info,
            Path::new("/"),
            |_| Ok(b"x\n".to_vec()),
            &mut out,
        )
        .unwrap();
        assert_eq!(written.missing.len(), 3);
        assert!(
            written.missing[0].1.contains("has 1 lines"),
            "{:?}",
            written.missing
        );
        assert_eq!(line_count(b""), 0);
        assert_eq!(line_count(b"a"), 1);
        assert_eq!(line_count(b"a\n\nb\n"), 3);
    }

    #[test]
    fn md5_matches_the_rfc_1321_examples() {
        assert_eq!(hex(&Md5::digest(b"")), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(
            hex(&Md5::digest(b"abc")),
            "900150983cd24fb0d6963f7d28e17f72"
        );
    }
}
