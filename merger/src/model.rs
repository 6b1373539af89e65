//! The coverage model: what each source line, branch and function counted.
//!
//! One [`Coverage`] holds any number of source files, each with its
//! instrumented lines (never-run lines are present with count 0), the
//! branches gcov lists for them (`gcov -b` semantics) and its functions.
//! Counts are `i64` because gcov's are: racy updates can make them negative,
//! and the model keeps the exact value. Where the coverage comes from several
//! captures (machines, runs, test names), every count also carries a
//! per-capture breakdown in `by_capture`, indexed like
//! [`Coverage::captures`]. Per-capture *line* counts need not add up to the
//! combined count: gcov's line counts are not additive (see
//! `shared/docs/gcov-format.md` §9.2); branch and function counts are.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// Coverage of a set of source files, possibly from several captures.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Coverage {
    /// Names of the captures the counts came from, in input order. Empty
    /// when no attribution is kept.
    #[serde(default)]
    pub captures: Vec<String>,
    /// Source files by path (absolute where the input allowed it).
    pub files: BTreeMap<String, FileCoverage>,
}

/// Everything counted for one source file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCoverage {
    /// Instrumented lines by line number (1-based).
    pub lines: BTreeMap<u32, LineCoverage>,
    /// Functions declared in this file, sorted by start line, start column
    /// and name.
    #[serde(default)]
    pub functions: Vec<FunctionCoverage>,
    /// Which captures had this file's code: indexed like
    /// [`Coverage::captures`], true where the capture holds data (a `.gcda`)
    /// of an object this file is compiled into, so that each machine is
    /// measured against its own code. Empty means every capture (unknown,
    /// or a single capture).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owned_by: Vec<bool>,
    /// Instrumented lines whose data an exclusion marker or regex dropped
    /// (see [`crate::exclude`]); reports show them as excluded. Not part of
    /// lcov output, as in lcov.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub excluded_lines: BTreeSet<u32>,
    /// Lines whose branches an exclusion marker or regex dropped (the line
    /// count stays in `lines`).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub excluded_branch_lines: BTreeSet<u32>,
}

/// One instrumented source line.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineCoverage {
    /// Execution count, exactly as `gcov` computes it for the combined data.
    pub count: i64,
    /// Count per capture, indexed like [`Coverage::captures`]; empty when no
    /// attribution is kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub by_capture: Vec<i64>,
    /// Some block on this line never ran (gcov's `*` marker).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unexecuted_block: bool,
    /// Branches attributed to this line, in gcov's order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub branches: Vec<Branch>,
}

/// One branch (a non-call arc out of a block with two or more successors).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Branch {
    /// Group of branches on the line this one belongs to (lcov's block
    /// number): one group per gcov line entry / branching block.
    pub block: u32,
    /// Index of the branch within its group.
    pub branch: u32,
    /// Times the branch was taken; `None` when the block holding it never
    /// ran (lcov's `-`).
    pub taken: Option<i64>,
    /// The arc leads to an exception handler.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub throw: bool,
    /// The arc falls through to the next block.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fallthrough: bool,
    /// Taken count per capture (`None`: block not run in that capture).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub by_capture: Vec<Option<i64>>,
}

/// One function, attributed to the file of its declaration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionCoverage {
    /// Assembler (mangled) name, as in the notes file.
    pub name: String,
    /// Demangled name for display (equal to `name` for C).
    pub demangled: String,
    /// Line of the declaration.
    pub start_line: u32,
    /// Column of the declaration (0 when unknown).
    #[serde(default)]
    pub start_column: u32,
    /// Line of the closing brace (0 when unknown).
    #[serde(default)]
    pub end_line: u32,
    /// Column of the closing brace (0 when unknown).
    #[serde(default)]
    pub end_column: u32,
    /// Times the function was entered.
    pub count: i64,
    /// Number of real blocks (gcov's `blocks`); 0 when unknown.
    #[serde(default)]
    pub blocks: u32,
    /// Number of real blocks that ran at least once.
    #[serde(default)]
    pub blocks_executed: u32,
    /// Entry count per capture, indexed like [`Coverage::captures`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub by_capture: Vec<i64>,
}

/// Found/hit totals of lines, functions and branches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Instrumented lines.
    pub lines_found: u64,
    /// Lines with a count > 0.
    pub lines_hit: u64,
    /// Functions.
    pub functions_found: u64,
    /// Functions entered at least once.
    pub functions_hit: u64,
    /// Branches.
    pub branches_found: u64,
    /// Branches taken at least once.
    pub branches_hit: u64,
}

impl Summary {
    /// Adds another summary's totals to this one.
    pub fn add(&mut self, other: &Summary) {
        self.lines_found += other.lines_found;
        self.lines_hit += other.lines_hit;
        self.functions_found += other.functions_found;
        self.functions_hit += other.functions_hit;
        self.branches_found += other.branches_found;
        self.branches_hit += other.branches_hit;
    }
}

impl FileCoverage {
    /// Whether capture `capture` had this file's code (see
    /// [`FileCoverage::owned_by`]).
    pub fn owned_by_capture(&self, capture: usize) -> bool {
        self.owned_by.is_empty() || self.owned_by.get(capture).copied().unwrap_or(false)
    }

    /// Totals of this file, as `lcov --summary` counts them.
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for line in self.lines.values() {
            s.lines_found += 1;
            s.lines_hit += u64::from(line.count > 0);
            for b in &line.branches {
                s.branches_found += 1;
                s.branches_hit += u64::from(b.taken.is_some_and(|t| t > 0));
            }
        }
        for f in &self.functions {
            s.functions_found += 1;
            s.functions_hit += u64::from(f.count > 0);
        }
        s
    }
}

/// `owned_by` in its canonical form: empty when every capture has the file.
pub fn normalize_owned(v: Vec<bool>) -> Vec<bool> {
    if v.iter().all(|&o| o) {
        Vec::new()
    } else {
        v
    }
}

impl Coverage {
    /// Totals over all files.
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for f in self.files.values() {
            s.add(&f.summary());
        }
        s
    }
}
