//! Exclusion markers in source files (`LCOV_EXCL_*`, `GCOVR_EXCL_*`) and
//! exclusion regexes, applied to a coverage.
//!
//! [`scan`] reads a source file's text into the sets of excluded lines and
//! of lines whose branches are excluded; [`apply`] drops their data from a
//! [`FileCoverage`], remembering which instrumented lines it dropped
//! ([`FileCoverage::excluded_lines`]) so that reports can show them as
//! excluded. Both are pure; [`apply_markers`] runs them over a whole
//! coverage with a caller-supplied reader ([`read_source`] reads the disk).
//!
//! `LCOV_EXCL_*` markers behave exactly as in lcov 1.16's geninfo:
//!
//! * a line containing `LCOV_EXCL_LINE` (or matching the line regex) loses
//!   its line count and its branches;
//! * `LCOV_EXCL_START` excludes its own line and every following line up to
//!   the next `LCOV_EXCL_STOP`, whose line is *not* excluded. Sections do
//!   not nest (a second START changes nothing, the first STOP ends the
//!   section); a STOP without START is ignored; a line holding both STOP and
//!   START ends the section. An unterminated section runs to the end of the
//!   file (with a warning);
//! * `LCOV_EXCL_BR_LINE`, `LCOV_EXCL_BR_START`/`STOP` (and the branch regex)
//!   work the same way on branches only: the line keeps its count;
//! * a function whose first line is excluded is dropped (lcov's `FN`/`FNDA`
//!   test only the start line; its other lines keep their counts unless
//!   excluded themselves).
//!
//! `GCOVR_EXCL_*` (and gcovr's alternative prefix `GCOV_EXCL_*`) follow
//! gcovr: the same line, START (inclusive) and STOP (exclusive) rules, but
//! sections nest (each STOP closes the innermost START), several markers on
//! one line act in order, a LINE marker inside a section is ignored, and
//! an unterminated START or an unmatched STOP only warns: it excludes
//! nothing.

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::path::Path;

use rayon::prelude::*;
use regex::Regex;

use crate::model::{Coverage, FileCoverage};

/// A bad exclusion regex.
#[derive(Debug, thiserror::Error)]
#[error("invalid exclusion regex {regex:?}")]
pub struct RegexError {
    /// The regex as given.
    pub regex: String,
    /// Why the regex crate rejects it.
    #[source]
    pub source: regex::Error,
}

/// What to look for in source lines.
#[derive(Clone, Debug, Default)]
pub struct Rules {
    /// Honour the `LCOV_EXCL_*` and `GCOVR_EXCL_*` markers.
    pub markers: bool,
    /// Lines matching this regex (anywhere in the line, as lcov's
    /// `lcov_excl_line`) are excluded.
    pub line_regex: Option<Regex>,
    /// Lines matching this regex lose their branches (lcov's
    /// `lcov_excl_br_line`).
    pub branch_regex: Option<Regex>,
}

impl Rules {
    /// The markers (on or off) plus optional regexes.
    pub fn new(
        markers: bool,
        line_regex: Option<&str>,
        branch_regex: Option<&str>,
    ) -> Result<Rules, RegexError> {
        let compile = |r: Option<&str>| {
            r.map(|r| {
                Regex::new(r).map_err(|source| RegexError {
                    regex: r.to_owned(),
                    source,
                })
            })
            .transpose()
        };
        Ok(Rules {
            markers,
            line_regex: compile(line_regex)?,
            branch_regex: compile(branch_regex)?,
        })
    }

    /// True when nothing can be excluded (no need to read any source).
    pub fn is_off(&self) -> bool {
        !self.markers && self.line_regex.is_none() && self.branch_regex.is_none()
    }
}

/// A marker problem in a source file (the exclusion still applies as
/// described in the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MarkerWarning {
    /// A START marker without a STOP: lcov's section runs to the end of the
    /// file, gcovr's excludes nothing.
    Unterminated {
        /// The START marker.
        marker: String,
        /// Its line.
        line: u32,
    },
    /// A gcovr STOP marker with no open section (ignored).
    StopWithoutStart {
        /// The STOP marker.
        marker: String,
        /// Its line.
        line: u32,
    },
}

impl fmt::Display for MarkerWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MarkerWarning::Unterminated { marker, line } if marker.starts_with("LCOV") => write!(
                f,
                "line {line}: {marker} has no matching STOP; excluded to the end of the file (as lcov does)"
            ),
            MarkerWarning::Unterminated { marker, line } => write!(
                f,
                "line {line}: {marker} has no matching STOP; ignored (as gcovr does)"
            ),
            MarkerWarning::StopWithoutStart { marker, line } => {
                write!(f, "line {line}: {marker} without a START; ignored")
            }
        }
    }
}

/// Lines a source file excludes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Exclusions {
    /// Lines whose count, branches and functions starting there go.
    pub lines: BTreeSet<u32>,
    /// Lines whose branches go (the count stays).
    pub branch_lines: BTreeSet<u32>,
    /// Marker problems, in line order.
    pub warnings: Vec<MarkerWarning>,
}

impl Exclusions {
    /// True when nothing is excluded.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty() && self.branch_lines.is_empty()
    }
}

/// lcov 1.16's START/STOP state for one family (lines or branches).
struct LcovSection {
    start: &'static str,
    stop: &'static str,
    single: &'static str,
    open: Option<u32>,
}

impl LcovSection {
    /// Whether line `no` is excluded, updating the section state first
    /// (geninfo's `get_source_data`).
    fn step(&mut self, no: u32, text: &str, extra: Option<&Regex>) -> bool {
        if text.contains(self.stop) {
            self.open = None;
        } else if text.contains(self.start) && self.open.is_none() {
            self.open = Some(no);
        }
        self.open.is_some() || text.contains(self.single) || extra.is_some_and(|r| r.is_match(text))
    }

    fn finish(&self, warnings: &mut Vec<MarkerWarning>) {
        if let Some(line) = self.open {
            warnings.push(MarkerWarning::Unterminated {
                marker: self.start.to_owned(),
                line,
            });
        }
    }
}

/// gcovr's nesting sections for one family.
#[derive(Default)]
struct GcovrSections {
    /// Open STARTs: (prefix, line).
    stack: Vec<(&'static str, u32)>,
}

/// A gcovr marker found in a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Line,
    Start,
    Stop,
}

/// gcovr markers of one family in `text`, in order: (prefix, kind).
/// `family` is `""` for lines and `"BR_"` for branches.
fn gcovr_markers(text: &str, family: &str) -> Vec<(&'static str, Kind)> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices("_EXCL_") {
        let head = text.get(..i).unwrap_or_default();
        let prefix = if head.ends_with("GCOVR") {
            "GCOVR"
        } else if head.ends_with("GCOV") {
            "GCOV"
        } else {
            continue;
        };
        let Some(tail) = text
            .get(i + "_EXCL_".len()..)
            .and_then(|t| t.strip_prefix(family))
        else {
            continue;
        };
        let kind = [
            ("LINE", Kind::Line),
            ("START", Kind::Start),
            ("STOP", Kind::Stop),
        ]
        .into_iter()
        .find_map(|(word, k)| tail.starts_with(word).then_some(k));
        if let Some(kind) = kind {
            out.push((prefix, kind));
        }
    }
    out
}

impl GcovrSections {
    fn step(
        &mut self,
        no: u32,
        text: &str,
        family: &'static str,
        out: &mut BTreeSet<u32>,
        warnings: &mut Vec<MarkerWarning>,
    ) {
        for (prefix, kind) in gcovr_markers(text, family) {
            match kind {
                // Inside an open section gcovr ignores LINE (it only
                // warns), so an unterminated section leaves it unexcluded.
                Kind::Line if self.stack.is_empty() => {
                    out.insert(no);
                }
                Kind::Line => {}
                Kind::Start => self.stack.push((prefix, no)),
                Kind::Stop => match self.stack.pop() {
                    Some((_, start)) => out.extend(start..no),
                    None => warnings.push(MarkerWarning::StopWithoutStart {
                        marker: format!("{prefix}_EXCL_{family}STOP"),
                        line: no,
                    }),
                },
            }
        }
    }

    fn finish(&self, family: &str, warnings: &mut Vec<MarkerWarning>) {
        for (prefix, line) in &self.stack {
            warnings.push(MarkerWarning::Unterminated {
                marker: format!("{prefix}_EXCL_{family}START"),
                line: *line,
            });
        }
    }
}

/// The lines `text` (a whole source file) excludes under `rules`. Lines are
/// numbered from 1 and end at `\n`, as geninfo reads them.
pub fn scan(text: &str, rules: &Rules) -> Exclusions {
    let mut ex = Exclusions::default();
    if rules.is_off() {
        return ex;
    }
    // Every lcov and gcovr marker holds `_EXCL_`: without one in the file
    // and without regexes, nothing is excluded (one search, not seven a
    // line).
    if rules.line_regex.is_none() && rules.branch_regex.is_none() && !text.contains("_EXCL_") {
        return ex;
    }
    let mut lcov_lines = LcovSection {
        start: "LCOV_EXCL_START",
        stop: "LCOV_EXCL_STOP",
        single: "LCOV_EXCL_LINE",
        open: None,
    };
    let mut lcov_branches = LcovSection {
        start: "LCOV_EXCL_BR_START",
        stop: "LCOV_EXCL_BR_STOP",
        single: "LCOV_EXCL_BR_LINE",
        open: None,
    };
    let mut gcovr_lines = GcovrSections::default();
    let mut gcovr_branches = GcovrSections::default();
    let body = text.strip_suffix('\n').unwrap_or(text);
    for (i, line) in body.split('\n').enumerate() {
        let Ok(no) = u32::try_from(i + 1) else { break };
        if rules.markers {
            if lcov_lines.step(no, line, rules.line_regex.as_ref()) {
                ex.lines.insert(no);
            }
            if lcov_branches.step(no, line, rules.branch_regex.as_ref()) {
                ex.branch_lines.insert(no);
            }
            if line.contains("_EXCL_") {
                gcovr_lines.step(no, line, "", &mut ex.lines, &mut ex.warnings);
                gcovr_branches.step(no, line, "BR_", &mut ex.branch_lines, &mut ex.warnings);
            }
        } else {
            if rules.line_regex.as_ref().is_some_and(|r| r.is_match(line)) {
                ex.lines.insert(no);
            }
            if rules
                .branch_regex
                .as_ref()
                .is_some_and(|r| r.is_match(line))
            {
                ex.branch_lines.insert(no);
            }
        }
    }
    if rules.markers {
        // An open lcov section has already excluded every line to the end:
        // only warn.
        lcov_lines.finish(&mut ex.warnings);
        lcov_branches.finish(&mut ex.warnings);
        gcovr_lines.finish("", &mut ex.warnings);
        gcovr_branches.finish("BR_", &mut ex.warnings);
        ex.warnings.sort_by_key(|w| match w {
            MarkerWarning::Unterminated { line, .. }
            | MarkerWarning::StopWithoutStart { line, .. } => *line,
        });
    }
    ex
}

/// What [`apply`] dropped from one file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Instrumented lines.
    pub lines: u64,
    /// Branches (of excluded lines and of branch-excluded lines).
    pub branches: u64,
    /// Functions whose first line is excluded.
    pub functions: u64,
}

impl Dropped {
    /// Adds another file's numbers.
    pub fn add(&mut self, other: Dropped) {
        self.lines += other.lines;
        self.branches += other.branches;
        self.functions += other.functions;
    }
}

/// Drops the excluded data from `file`, as geninfo leaves it out: excluded
/// lines (with their branches), the branches of branch-excluded lines, and
/// functions starting on an excluded line. The dropped line numbers are
/// added to `file.excluded_lines` / `file.excluded_branch_lines`.
pub fn apply(file: &mut FileCoverage, ex: &Exclusions) -> Dropped {
    let mut dropped = Dropped::default();
    for no in &ex.lines {
        if let Some(line) = file.lines.remove(no) {
            dropped.lines += 1;
            dropped.branches += line.branches.len() as u64;
            file.excluded_lines.insert(*no);
        }
    }
    for no in &ex.branch_lines {
        if let Some(line) = file.lines.get_mut(no) {
            if !line.branches.is_empty() {
                dropped.branches += line.branches.len() as u64;
                line.branches.clear();
                file.excluded_branch_lines.insert(*no);
            }
        }
    }
    let before = file.functions.len();
    file.functions.retain(|f| !ex.lines.contains(&f.start_line));
    dropped.functions = (before - file.functions.len()) as u64;
    dropped
}

/// Something [`apply_markers`] met in one source file.
#[derive(Debug)]
#[non_exhaustive]
pub enum MarkerEvent {
    /// The source could not be read: its markers were not applied (lcov
    /// warns and goes on, too).
    Unreadable {
        /// The source path.
        file: String,
        /// Why.
        error: io::Error,
    },
    /// A marker problem.
    Warning {
        /// The source path.
        file: String,
        /// What.
        warning: MarkerWarning,
    },
}

impl fmt::Display for MarkerEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MarkerEvent::Unreadable { file, error } => write!(
                f,
                "{file}: cannot read the source ({error}); its exclusion markers are not applied"
            ),
            MarkerEvent::Warning { file, warning } => write!(f, "{file}: {warning}"),
        }
    }
}

/// What [`apply_markers`] did.
#[derive(Debug, Default)]
pub struct MarkerReport {
    /// Totals dropped over all files.
    pub dropped: Dropped,
    /// Unreadable sources and marker problems, by file.
    pub events: Vec<MarkerEvent>,
}

/// Applies `rules` to every file of `cov`, reading each source with `read`
/// (in parallel). Does nothing when the rules are off.
pub fn apply_markers<R>(cov: &mut Coverage, rules: &Rules, read: R) -> MarkerReport
where
    R: Fn(&str) -> io::Result<String> + Sync,
{
    if rules.is_off() {
        return MarkerReport::default();
    }
    let per_file: Vec<(Dropped, Vec<MarkerEvent>)> = cov
        .files
        .par_iter_mut()
        .map(|(path, file)| match read(path) {
            Err(error) => (
                Dropped::default(),
                vec![MarkerEvent::Unreadable {
                    file: path.clone(),
                    error,
                }],
            ),
            Ok(text) => {
                let ex = scan(&text, rules);
                let dropped = apply(file, &ex);
                let events = ex
                    .warnings
                    .into_iter()
                    .map(|warning| MarkerEvent::Warning {
                        file: path.clone(),
                        warning,
                    })
                    .collect();
                (dropped, events)
            }
        })
        .collect();
    let mut report = MarkerReport::default();
    for (dropped, events) in per_file {
        report.dropped.add(dropped);
        report.events.extend(events);
    }
    report
}

/// Reads a source file for [`apply_markers`] (invalid UTF-8 is replaced;
/// the markers are ASCII).
pub fn read_source(path: &str) -> io::Result<String> {
    let bytes = std::fs::read(Path::new(path))?;
    Ok(match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

#[cfg(test)]
mod tests;
