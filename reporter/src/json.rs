//! The JSON report (`summary.json`): totals, per-capture totals and every
//! file's counts, in serialize-only wire types kept apart from the model.
//!
//! The report reads back into the model with [`read_slice`]/[`read_path`],
//! so it doubles as a lossless interchange format. Top-level shape:
//!
//! ```json
//! { "format": "covnet-report", "version": 1, "title": "…", "date": "…Z",
//!   "timestamp": 0, "inputs": ["…"], "root": "/src",
//!   "totals": { "lines": { "hit": 1, "total": 2, "percent": 50.0 }, … },
//!   "captures": [ { "name": "web", "totals": { … }, "own": { … } } ],
//!   "files": [ { "path": "/src/a.c", "relative": "a.c", "totals": { … },
//!                "lines": [ { "line": 3, "count": 2, … } ], "functions": [ … ] } ],
//!   "blind_spots": [ { "machine": "web", "totals": { "binaries": 4, … },
//!                      "binaries": [ … ] } ] }
//! ```
//!
//! `blind_spots` (when computed: `covnet run --coverage`) is each machine's
//! code that no capture covers ([`crate::blindspots`]); no total above
//! includes it, and it does not read back into the model.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::Path;

use covnet_merger::model::{
    Branch, Coverage, FileCoverage, FunctionCoverage, LineCoverage, Summary,
};
use serde::{Deserialize, Serialize};

use crate::tree::Tree;
use crate::{Error, Percent, RunInfo};

/// Value of the `format` field.
pub const FORMAT: &str = "covnet-report";
/// Value of the `version` field.
pub const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Report<'a, D = serde_json::Value> {
    format: Cow<'a, str>,
    version: u32,
    title: Cow<'a, str>,
    date: Cow<'a, str>,
    timestamp: u64,
    inputs: Vec<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    notes: Vec<Cow<'a, str>>,
    root: Cow<'a, str>,
    totals: Totals,
    captures: Vec<CaptureJson<'a>>,
    files: Vec<FileJson<'a>>,
    /// Per machine, the code it ran that no capture covers
    /// ([`crate::blindspots`]); not part of any total above.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    blind_spots: Vec<crate::blindspots::MachineJson<'a>>,
    /// Differential coverage against a baseline ([`crate::diff::output::to_json`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    differential: Option<D>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Totals {
    lines: Ratio,
    functions: Ratio,
    branches: Ratio,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Ratio {
    hit: u64,
    total: u64,
    /// Percent rounded down to one decimal; `null` when `total` is 0.
    percent: Option<f64>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaptureJson<'a> {
    name: Cow<'a, str>,
    /// Over every file: the capture's share of the whole.
    totals: Totals,
    /// Over the capture's own code only (the files it had).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    own: Option<Totals>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileJson<'a> {
    path: Cow<'a, str>,
    relative: Cow<'a, str>,
    totals: Totals,
    lines: Vec<LineJson<'a>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    functions: Vec<FunctionJson<'a>>,
    /// Which captures had this file (empty: all).
    #[serde(default, skip_serializing_if = "<[bool]>::is_empty")]
    owned_by: Cow<'a, [bool]>,
    /// Instrumented lines dropped by exclusion markers or regexes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    excluded_lines: Vec<u32>,
    /// Lines whose branches exclusion markers or regexes dropped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    excluded_branch_lines: Vec<u32>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LineJson<'a> {
    line: u32,
    count: i64,
    #[serde(default, skip_serializing_if = "<[i64]>::is_empty")]
    by_capture: Cow<'a, [i64]>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    unexecuted_block: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    branches: Vec<BranchJson<'a>>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BranchJson<'a> {
    block: u32,
    branch: u32,
    taken: Option<i64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    throw: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    fallthrough: bool,
    #[serde(default, skip_serializing_if = "<[Option<i64>]>::is_empty")]
    by_capture: Cow<'a, [Option<i64>]>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FunctionJson<'a> {
    name: Cow<'a, str>,
    demangled: Cow<'a, str>,
    start_line: u32,
    start_column: u32,
    end_line: u32,
    end_column: u32,
    count: i64,
    blocks: u32,
    blocks_executed: u32,
    #[serde(default, skip_serializing_if = "<[i64]>::is_empty")]
    by_capture: Cow<'a, [i64]>,
}

impl Totals {
    fn of(s: &Summary) -> Totals {
        let ratio = |hit, total| Ratio {
            hit,
            total,
            percent: Percent::new(hit, total).tenths().map(|t| t as f64 / 10.0),
        };
        Totals {
            lines: ratio(s.lines_hit, s.lines_found),
            functions: ratio(s.functions_hit, s.functions_found),
            branches: ratio(s.branches_hit, s.branches_found),
        }
    }
}

/// Writes the JSON report of `cov` to `out`.
pub fn write(cov: &Coverage, info: &RunInfo, out: &mut impl Write) -> io::Result<()> {
    write_with::<serde_json::Value>(cov, info, None, out)
}

/// Writes the JSON report of `cov` to `out` with a `differential` section.
pub fn write_with<D: Serialize>(
    cov: &Coverage,
    info: &RunInfo,
    differential: Option<&D>,
    out: &mut impl Write,
) -> io::Result<()> {
    let tree = Tree::new(cov);
    let report = Report {
        format: FORMAT.into(),
        version: VERSION,
        title: info.title.as_str().into(),
        date: info.date_rfc3339().into(),
        timestamp: info.timestamp,
        inputs: info.inputs.iter().map(|s| s.as_str().into()).collect(),
        notes: info.notes.iter().map(|s| s.as_str().into()).collect(),
        root: tree.root.as_str().into(),
        totals: Totals::of(&tree.totals.total),
        captures: cov
            .captures
            .iter()
            .zip(tree.totals.per_capture.iter().zip(&tree.totals.own))
            .map(|(name, (s, own))| CaptureJson {
                name: name.as_str().into(),
                totals: Totals::of(s),
                own: Some(Totals::of(own)),
            })
            .collect(),
        files: tree.files.iter().map(FileJson::of).collect(),
        blind_spots: crate::blindspots::to_json(&info.blind_spots),
        differential,
    };
    serde_json::to_writer(&mut *out, &report).map_err(io::Error::from)?;
    out.write_all(b"\n")
}

/// Writes the JSON report of `cov` to the file `path`.
pub fn write_path(cov: &Coverage, info: &RunInfo, path: &Path) -> Result<(), Error> {
    crate::output::write_file(path, |w| write(cov, info, w))
}

impl<'a> FileJson<'a> {
    fn of(f: &crate::tree::FileEntry<'a>) -> FileJson<'a> {
        FileJson {
            path: f.path.into(),
            relative: f.rel.as_str().to_owned().into(),
            totals: Totals::of(&f.summary),
            lines: f
                .coverage
                .lines
                .iter()
                .map(|(&line, l)| LineJson {
                    line,
                    count: l.count,
                    by_capture: Cow::Borrowed(&l.by_capture),
                    unexecuted_block: l.unexecuted_block,
                    branches: l
                        .branches
                        .iter()
                        .map(|b| BranchJson {
                            block: b.block,
                            branch: b.branch,
                            taken: b.taken,
                            throw: b.throw,
                            fallthrough: b.fallthrough,
                            by_capture: Cow::Borrowed(&b.by_capture),
                        })
                        .collect(),
                })
                .collect(),
            functions: f
                .coverage
                .functions
                .iter()
                .map(|fun| FunctionJson {
                    name: fun.name.as_str().into(),
                    demangled: fun.demangled.as_str().into(),
                    start_line: fun.start_line,
                    start_column: fun.start_column,
                    end_line: fun.end_line,
                    end_column: fun.end_column,
                    count: fun.count,
                    blocks: fun.blocks,
                    blocks_executed: fun.blocks_executed,
                    by_capture: Cow::Borrowed(&fun.by_capture),
                })
                .collect(),
            owned_by: Cow::Borrowed(&f.coverage.owned_by),
            excluded_lines: f.coverage.excluded_lines.iter().copied().collect(),
            excluded_branch_lines: f.coverage.excluded_branch_lines.iter().copied().collect(),
        }
    }
}

/// Reads a JSON report back into the model and the run it describes.
/// `path` only names the input in errors.
pub fn read_slice(bytes: &[u8], path: &Path) -> Result<(Coverage, RunInfo), Error> {
    let report: Report<'_> = serde_json::from_slice(bytes).map_err(|source| Error::Json {
        path: path.to_owned(),
        source,
    })?;
    let invalid = |problem: String| Error::InvalidJson {
        path: path.to_owned(),
        problem,
    };
    if report.format != FORMAT || report.version != VERSION {
        return Err(invalid(format!(
            "format {:?} version {} is not {FORMAT:?} version {VERSION}",
            report.format, report.version
        )));
    }
    let mut files = BTreeMap::new();
    for f in report.files {
        let mut lines = BTreeMap::new();
        for l in f.lines {
            let line = LineCoverage {
                count: l.count,
                by_capture: l.by_capture.into_owned(),
                unexecuted_block: l.unexecuted_block,
                branches: l
                    .branches
                    .into_iter()
                    .map(|b| Branch {
                        block: b.block,
                        branch: b.branch,
                        taken: b.taken,
                        throw: b.throw,
                        fallthrough: b.fallthrough,
                        by_capture: b.by_capture.into_owned(),
                    })
                    .collect(),
            };
            if lines.insert(l.line, line).is_some() {
                return Err(invalid(format!(
                    "{}: line {} appears twice",
                    f.path, l.line
                )));
            }
        }
        let functions = f
            .functions
            .into_iter()
            .map(|fun| FunctionCoverage {
                name: fun.name.into_owned(),
                demangled: fun.demangled.into_owned(),
                start_line: fun.start_line,
                start_column: fun.start_column,
                end_line: fun.end_line,
                end_column: fun.end_column,
                count: fun.count,
                blocks: fun.blocks,
                blocks_executed: fun.blocks_executed,
                by_capture: fun.by_capture.into_owned(),
            })
            .collect();
        let path_s = f.path.into_owned();
        if files.contains_key(&path_s) {
            return Err(invalid(format!("{path_s}: file appears twice")));
        }
        files.insert(
            path_s,
            FileCoverage {
                lines,
                functions,
                owned_by: f.owned_by.into_owned(),
                excluded_lines: f.excluded_lines.into_iter().collect(),
                excluded_branch_lines: f.excluded_branch_lines.into_iter().collect(),
            },
        );
    }
    let cov = Coverage {
        captures: report
            .captures
            .into_iter()
            .map(|c| c.name.into_owned())
            .collect(),
        files,
    };
    let info = RunInfo {
        title: report.title.into_owned(),
        timestamp: report.timestamp,
        inputs: report.inputs.into_iter().map(Cow::into_owned).collect(),
        notes: report.notes.into_iter().map(Cow::into_owned).collect(),
        // Only the counts are in the JSON: blind spots do not read back.
        blind_spots: Vec::new(),
    };
    Ok((cov, info))
}

/// Reads a JSON report file back into the model (see [`read_slice`]).
pub fn read_path(path: &Path) -> Result<(Coverage, RunInfo), Error> {
    read_slice(&crate::output::read_file(path)?, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample;

    fn info() -> RunInfo {
        RunInfo {
            title: "t \"q\"".into(),
            timestamp: 1_795_615_148,
            inputs: vec!["a.info".into()],
            notes: vec!["machine `b` crashed".into()],
            blind_spots: vec![],
        }
    }

    #[test]
    fn round_trips_through_the_model() {
        let mut cov = sample::coverage();
        // Every field of the model must survive.
        let f = cov.files.get_mut("/proj/src/server.c").unwrap();
        let l = f.lines.values_mut().next().unwrap();
        l.count = -3;
        l.branches = vec![Branch {
            block: 2,
            branch: 5,
            taken: Some(9),
            throw: true,
            fallthrough: true,
            by_capture: vec![Some(9), None, Some(0)],
        }];
        f.functions[0].start_column = 4;
        f.functions[0].end_column = 1;
        f.functions[0].blocks = 7;
        f.functions[0].blocks_executed = 3;
        let mut out = Vec::new();
        write(&cov, &info(), &mut out).unwrap();
        let (back, back_info) = read_slice(&out, Path::new("x.json")).unwrap();
        assert_eq!(back, cov);
        assert_eq!(back_info, info());
    }

    #[test]
    fn totals_are_in_the_document() {
        let cov = sample::coverage();
        let mut out = Vec::new();
        write(&cov, &info(), &mut out).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let s = cov.summary();
        assert_eq!(v["format"], FORMAT);
        assert_eq!(v["date"], "2026-11-25T13:59:08Z");
        assert_eq!(v["root"], "/proj");
        assert_eq!(v["totals"]["lines"]["hit"], s.lines_hit);
        assert_eq!(v["totals"]["lines"]["total"], s.lines_found);
        assert_eq!(v["totals"]["lines"]["percent"], 63.6);
        assert_eq!(v["totals"]["branches"]["total"], s.branches_found);
        assert_eq!(v["captures"][1]["name"], "client");
        assert_eq!(v["captures"][0]["totals"]["lines"]["hit"], 6);
        assert_eq!(v["files"][0]["relative"], "include/util.h");
        assert!(v["files"][0]["totals"]["functions"]["percent"].is_null());
    }

    #[test]
    fn bad_reports_name_file_and_problem() {
        let p = Path::new("r.json");
        let err = read_slice(b"{", p).unwrap_err();
        assert!(matches!(err, Error::Json { .. }));
        assert!(err.to_string().contains("r.json"));
        let cov = sample::coverage();
        let mut out = Vec::new();
        write(&cov, &info(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let wrong = text.replacen("\"version\":1", "\"version\":7", 1);
        let err = read_slice(wrong.as_bytes(), p).unwrap_err();
        assert!(err.to_string().contains("version 7"), "{err}");
        let dup = text.replacen("{\"line\":2,", "{\"line\":1,", 1);
        let err = read_slice(dup.as_bytes(), p).unwrap_err();
        assert!(
            err.to_string()
                .contains("/proj/include/util.h: line 1 appears twice"),
            "{err}"
        );
    }
}

#[cfg(test)]
mod blind_tests {
    use super::*;
    use crate::sample;

    #[test]
    fn blind_spots_are_their_own_field_and_the_report_still_reads_back() {
        let cov = sample::coverage();
        let mut info = RunInfo::now("t", vec![]);
        info.blind_spots = crate::blindspots::tests::sample();
        let mut out = Vec::new();
        write(&cov, &info, &mut out).expect("in memory");
        let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(v["blind_spots"][0]["machine"], "server");
        assert_eq!(v["blind_spots"][0]["totals"]["lines"], 3);
        assert_eq!(v["blind_spots"][0]["totals"]["binaries_without_debug"], 1);
        // The covered totals are the coverage's alone.
        assert_eq!(v["totals"]["lines"]["total"], cov.summary().lines_found);
        let (back, _) = read_slice(&out, Path::new("r.json")).expect("reads back");
        assert_eq!(back.files.len(), cov.files.len());
    }
}
