//! gcovr's JSON format (`gcovr --json`), written and read.
//!
//! The shape is gcovr 8.8's, format version [`FORMAT_VERSION`], as its
//! JSON writer and its `--json-add-tracefile` reader define it:
//!
//! ```json
//! { "gcovr/format_version": "0.15",
//!   "files": [
//!     { "file": "/src/a.c",
//!       "lines": [ { "line_number": 3, "count": 2,
//!                    "branches": [ { "branchno": 0, "count": 1, "fallthrough": true,
//!                                    "throw": false, "source_block_id": 0 } ] } ],
//!       "functions": [ { "name": "main", "demangled_name": "main", "lineno": 1,
//!                        "execution_count": 1, "blocks_percent": 75.0,
//!                        "pos": ["1:5", "9:1"] } ] } ] }
//! ```
//!
//! Writing: one line entry per instrumented line; a branch's
//! `source_block_id` is the model's block (lcov's block number) and its
//! `branchno` its place on the line; lines that exclusion markers dropped
//! are written with `"gcovr/excluded": true`, so gcovr leaves them out of
//! its totals as covnet does. gcovr refuses negative counts: racy negative
//! counts are written as 0. Two keys gcovr ignores keep the block counts
//! of functions (`covnet/blocks`, `covnet/blocks_executed`), so the model
//! reads back unchanged.
//!
//! Reading: every file, line, branch and function gcovr wrote, with paths
//! as written (gcovr writes them relative to its `--root`). Excluded lines
//! and branches become the model's excluded lines; excluded functions are
//! left out, as gcovr's totals leave them out. gcovr can list a line once
//! per function whose code is on it; those entries become one line, their
//! counts added and their branches joined (as gcovr's `--merge-lines`).
//! A branch whose line never ran reads as "block not run" (lcov's `-`);
//! gcovr keeps no such mark for a branch on a line that ran, nor gcov's
//! unexecuted-block mark, nor per-capture counts.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::Path;

use covnet_merger::model::{Branch, Coverage, FileCoverage, FunctionCoverage, LineCoverage};
use serde::{Deserialize, Serialize};

use crate::Error;

/// The `gcovr/format_version` written (gcovr 8.8's).
pub const FORMAT_VERSION: &str = "0.15";
/// The key that marks a document as gcovr JSON.
pub const VERSION_KEY: &str = "gcovr/format_version";

#[derive(Deserialize)]
struct Document<'a> {
    #[serde(rename = "gcovr/format_version", borrow)]
    format_version: Version<'a>,
    files: Vec<FileJson<'a>>,
}

/// gcovr writes the version as a string; accept a number too.
#[derive(Deserialize)]
#[serde(untagged)]
enum Version<'a> {
    Text(#[serde(borrow)] Cow<'a, str>),
    Number(f64),
}

#[derive(Serialize, Deserialize)]
struct FileJson<'a> {
    #[serde(borrow)]
    file: Cow<'a, str>,
    lines: Vec<LineJson>,
    #[serde(default)]
    functions: Vec<FunctionJson<'a>>,
}

#[derive(Serialize, Deserialize)]
struct LineJson {
    line_number: u32,
    count: i64,
    #[serde(default)]
    branches: Vec<BranchJson>,
    #[serde(
        rename = "gcovr/excluded",
        default,
        skip_serializing_if = "std::ops::Not::not"
    )]
    excluded: bool,
}

#[derive(Serialize, Deserialize)]
struct BranchJson {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    branchno: Option<u32>,
    count: i64,
    fallthrough: bool,
    throw: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source_block_id: Option<u32>,
    #[serde(
        rename = "gcovr/excluded",
        default,
        skip_serializing_if = "std::ops::Not::not"
    )]
    excluded: bool,
}

#[derive(Serialize, Deserialize)]
struct FunctionJson<'a> {
    #[serde(default, skip_serializing_if = "Option::is_none", borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none", borrow)]
    demangled_name: Option<Cow<'a, str>>,
    lineno: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    execution_count: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    blocks_percent: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none", borrow)]
    pos: Option<(Cow<'a, str>, Cow<'a, str>)>,
    #[serde(
        rename = "gcovr/excluded",
        default,
        skip_serializing_if = "std::ops::Not::not"
    )]
    excluded: bool,
    #[serde(
        rename = "covnet/blocks",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    blocks: Option<u32>,
    #[serde(
        rename = "covnet/blocks_executed",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    blocks_executed: Option<u32>,
}

/// Writes `cov` as gcovr JSON to `out`, one file at a time.
pub fn write(cov: &Coverage, out: &mut impl Write) -> io::Result<()> {
    write!(out, "{{\"{VERSION_KEY}\":\"{FORMAT_VERSION}\",\"files\":[")?;
    for (i, (path, file)) in cov.files.iter().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        serde_json::to_writer(&mut *out, &FileJson::of(path, file)).map_err(io::Error::from)?;
    }
    out.write_all(b"]}\n")
}

/// Writes `cov` as gcovr JSON to the file `path`.
pub fn write_path(cov: &Coverage, path: &Path) -> Result<(), Error> {
    crate::output::write_file(path, |w| write(cov, w))
}

impl<'a> FileJson<'a> {
    fn of(path: &'a str, file: &'a FileCoverage) -> FileJson<'a> {
        let mut lines: Vec<LineJson> = file
            .lines
            .iter()
            .map(|(&line_number, l)| LineJson {
                line_number,
                count: l.count.max(0),
                branches: l
                    .branches
                    .iter()
                    .enumerate()
                    .map(|(i, b)| BranchJson {
                        branchno: u32::try_from(i).ok(),
                        count: b.taken.unwrap_or(0).max(0),
                        fallthrough: b.fallthrough,
                        throw: b.throw,
                        source_block_id: Some(b.block),
                        excluded: false,
                    })
                    .collect(),
                excluded: false,
            })
            .collect();
        let excluded = file
            .excluded_lines
            .iter()
            .filter(|n| !file.lines.contains_key(n));
        lines.extend(excluded.map(|&line_number| LineJson {
            line_number,
            count: 0,
            branches: Vec::new(),
            excluded: true,
        }));
        lines.sort_by_key(|l| l.line_number);
        let functions = file
            .functions
            .iter()
            .map(|f| FunctionJson {
                name: Some(f.name.as_str().into()),
                demangled_name: Some(f.demangled.as_str().into()),
                lineno: f.start_line,
                execution_count: Some(f.count.max(0)),
                blocks_percent: (f.blocks > 0)
                    .then(|| f64::from(f.blocks_executed) * 100.0 / f64::from(f.blocks)),
                pos: (f.end_line > 0).then(|| {
                    (
                        format!("{}:{}", f.start_line, f.start_column).into(),
                        format!("{}:{}", f.end_line, f.end_column).into(),
                    )
                }),
                excluded: false,
                blocks: (f.blocks > 0).then_some(f.blocks),
                blocks_executed: (f.blocks > 0).then_some(f.blocks_executed),
            })
            .collect();
        FileJson {
            file: path.into(),
            lines,
            functions,
        }
    }
}

/// Whether `head` (the first bytes of a JSON document) is gcovr JSON: it
/// names [`VERSION_KEY`], which gcovr writes first.
pub fn looks_like(head: &[u8]) -> bool {
    let key = format!("\"{VERSION_KEY}\"");
    head.windows(key.len()).any(|w| w == key.as_bytes())
}

/// Reads gcovr JSON into the model (no captures: gcovr keeps none).
/// `path` only names the input in errors.
pub fn read_slice(bytes: &[u8], path: &Path) -> Result<Coverage, Error> {
    let doc: Document<'_> = serde_json::from_slice(bytes).map_err(|source| Error::Json {
        path: path.to_owned(),
        source,
    })?;
    let invalid = |problem: String| Error::InvalidJson {
        path: path.to_owned(),
        problem,
    };
    let version = match &doc.format_version {
        Version::Text(t) => t.to_string(),
        Version::Number(n) => n.to_string(),
    };
    if !version.starts_with("0.") {
        return Err(invalid(format!(
            "gcovr JSON format version {version} is not one covnet reads (0.x; written: {FORMAT_VERSION})"
        )));
    }
    let mut cov = Coverage::default();
    for f in doc.files {
        let file = read_file(f.lines, f.functions);
        let name = f.file.into_owned();
        // gcovr may list a file twice (several tracefiles merged in one
        // document are not); refuse rather than guess.
        if cov.files.insert(name.clone(), file).is_some() {
            return Err(invalid(format!("{name}: file appears twice")));
        }
    }
    Ok(cov)
}

fn read_file(lines: Vec<LineJson>, functions: Vec<FunctionJson<'_>>) -> FileCoverage {
    let mut file = FileCoverage::default();
    let mut merged: BTreeMap<u32, LineCoverage> = BTreeMap::new();
    for l in lines {
        if l.excluded {
            file.excluded_lines.insert(l.line_number);
            continue;
        }
        if l.branches.iter().any(|b| b.excluded) {
            file.excluded_branch_lines.insert(l.line_number);
        }
        let line = merged.entry(l.line_number).or_default();
        line.count = line.count.saturating_add(l.count);
        line.branches.extend(
            l.branches
                .into_iter()
                .filter(|b| !b.excluded)
                .map(|b| Branch {
                    block: b.source_block_id.unwrap_or(0),
                    branch: 0,
                    taken: Some(b.count),
                    throw: b.throw,
                    fallthrough: b.fallthrough,
                    by_capture: Vec::new(),
                }),
        );
    }
    for (no, line) in &mut merged {
        // An excluded entry and a kept one for the same line: kept wins.
        file.excluded_lines.remove(no);
        let mut next: BTreeMap<u32, u32> = BTreeMap::new();
        for b in &mut line.branches {
            let n = next.entry(b.block).or_insert(0);
            b.branch = *n;
            *n += 1;
            if line.count == 0 && b.taken == Some(0) {
                b.taken = None;
            }
        }
    }
    file.lines = merged;
    file.functions = functions
        .into_iter()
        .filter(|f| !f.excluded)
        .map(|f| {
            let name = f
                .name
                .clone()
                .or_else(|| f.demangled_name.clone())
                .unwrap_or_default()
                .into_owned();
            let demangled = f
                .demangled_name
                .map(Cow::into_owned)
                .unwrap_or_else(|| name.clone());
            let (start_column, end_line, end_column) = match &f.pos {
                Some((start, end)) => {
                    let col = |s: &str, i: usize| {
                        s.split(':')
                            .nth(i)
                            .and_then(|v| v.parse::<u64>().ok())
                            .map_or(0, |v| u32::try_from(v).unwrap_or(u32::MAX))
                    };
                    (col(start, 1), col(end, 0), col(end, 1))
                }
                None => (0, 0, 0),
            };
            FunctionCoverage {
                name,
                demangled,
                start_line: f.lineno,
                start_column,
                end_line,
                end_column,
                count: f.execution_count.unwrap_or(0),
                blocks: f.blocks.unwrap_or(0),
                blocks_executed: f.blocks_executed.unwrap_or(0),
                by_capture: Vec::new(),
            }
        })
        .collect();
    file.functions.sort_by(|a, b| {
        (a.start_line, a.start_column, &a.name).cmp(&(b.start_line, b.start_column, &b.name))
    });
    file
}

/// Reads a gcovr JSON file into the model (see [`read_slice`]).
pub fn read_path(path: &Path) -> Result<Coverage, Error> {
    read_slice(&crate::output::read_file(path)?, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample;

    /// The sample without what gcovr JSON does not keep (captures).
    fn single(mut cov: Coverage) -> Coverage {
        cov.captures.clear();
        for f in cov.files.values_mut() {
            f.owned_by.clear();
            for l in f.lines.values_mut() {
                l.by_capture.clear();
                l.unexecuted_block = false;
                for b in &mut l.branches {
                    b.by_capture.clear();
                    // gcovr has no "block not run" on a line that ran.
                    if l.count > 0 && b.taken.is_none() {
                        b.taken = Some(0);
                    }
                }
            }
            for fun in &mut f.functions {
                fun.by_capture.clear();
            }
        }
        cov
    }

    #[test]
    fn round_trips_through_the_model() {
        let mut cov = single(sample::coverage());
        let f = cov.files.get_mut("/proj/src/server.c").unwrap();
        f.excluded_lines.insert(7);
        f.functions[0].start_column = 5;
        f.functions[0].blocks = 4;
        f.functions[0].blocks_executed = 3;
        f.lines.get_mut(&4).unwrap().branches[1].throw = true;
        let mut out = Vec::new();
        write(&cov, &mut out).unwrap();
        assert!(looks_like(&out[..40]));
        let back = read_slice(&out, Path::new("g.json")).unwrap();
        assert_eq!(back, cov);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v[VERSION_KEY], FORMAT_VERSION);
        let server = &v["files"][2];
        assert_eq!(server["file"], "/proj/src/server.c");
        assert_eq!(server["lines"][5]["line_number"], 7);
        assert_eq!(server["lines"][5]["gcovr/excluded"], true);
        assert_eq!(server["functions"][0]["blocks_percent"], 75.0);
        assert_eq!(
            server["functions"][0]["pos"],
            serde_json::json!(["1:5", "9:0"])
        );
    }

    #[test]
    fn gcovr_entries_merge_per_line_and_exclusions_drop_out() {
        let doc = br#"{"gcovr/format_version": "0.15", "files": [{"file": "a.c",
          "lines": [
            {"line_number": 2, "function_name": "f", "count": 1, "branches": [
               {"branchno": 0, "count": 1, "fallthrough": true, "throw": false, "source_block_id": 4},
               {"branchno": 1, "count": 0, "fallthrough": false, "throw": false, "source_block_id": 4}]},
            {"line_number": 2, "function_name": "g", "count": 2, "branches": [
               {"branchno": 0, "count": 0, "fallthrough": true, "throw": false, "source_block_id": 7, "gcovr/excluded": true}]},
            {"line_number": 3, "count": 0, "branches": [
               {"count": 0, "fallthrough": true, "throw": false}]},
            {"line_number": 5, "count": 0, "branches": [], "gcovr/excluded": true}],
          "functions": [
            {"name": "f", "demangled_name": "f", "lineno": 1, "execution_count": 3, "pos": ["1:5", "4:1"]},
            {"demangled_name": "g()", "lineno": 2, "execution_count": 0, "gcovr/excluded": true}]}]}"#;
        let cov = read_slice(doc, Path::new("g.json")).unwrap();
        let f = &cov.files["a.c"];
        assert_eq!(f.lines[&2].count, 3);
        assert_eq!(f.lines[&2].branches.len(), 2);
        assert_eq!(f.lines[&2].branches[1].branch, 1);
        assert_eq!(f.lines[&3].branches[0].taken, None);
        assert!(f.excluded_lines.contains(&5) && f.excluded_branch_lines.contains(&2));
        assert_eq!(f.functions.len(), 1);
        assert_eq!((f.functions[0].end_line, f.functions[0].end_column), (4, 1));
        let s = cov.summary();
        assert_eq!((s.lines_found, s.lines_hit), (2, 1));
        assert_eq!((s.branches_found, s.branches_hit), (3, 1));
        assert_eq!((s.functions_found, s.functions_hit), (1, 1));
    }

    #[test]
    fn errors_name_the_file() {
        let err = read_slice(b"{\"files\": []}", Path::new("x.json")).unwrap_err();
        assert!(err.to_string().contains("x.json"), "{err}");
        let err = read_slice(
            br#"{"gcovr/format_version": "1.0", "files": []}"#,
            Path::new("y.json"),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("y.json") && err.to_string().contains("1.0"),
            "{err}"
        );
    }
}
