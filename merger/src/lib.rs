//! Exact native reader of GCC's coverage files and a parallel merger.
//!
//! `covnet-merger` reads `.gcno` (notes) and `.gcda` (data) files in the
//! layouts of GCC 8 through 15 (both byte orders), solves each function's flow graph the way `gcov` does, and
//! yields per-line, per-branch and per-function counts that agree exactly
//! with `gcov --json-format`. Captures (directory trees of `.gcda` files from
//! one machine or run) merge by summing raw arc counters and solving once,
//! as `gcov` on `gcov-tool merge` output would; lcov tracefiles merge by
//! adding counts, as `lcov -a` does.
//!
//! [`llvm`] reads clang's source-based coverage natively: raw profiles
//! (`.profraw`) and the coverage mapping of the instrumented binaries,
//! evaluated into the same model as `llvm-cov export` computes it.
//!
//! Tested with real compilers: the GCC majors in
//! [`bytes::TESTED_GCC_MAJORS`] (compiled, run and compared with their own
//! `gcov` at test time). The other versions are read by the same layout
//! rules and tested only on files written by covnet's own test writer
//! (GCC 8's layout, big-endian files); [`capture::Outcome::untested_versions`]
//! names them when met, so the CLI can say so once per run.
//!
//! ```
//! use covnet_merger::model::{Coverage, FileCoverage, LineCoverage};
//! let mut cov = Coverage::default();
//! let mut file = FileCoverage::default();
//! file.lines.insert(3, LineCoverage { count: 2, ..Default::default() });
//! cov.files.insert("/src/a.c".into(), file);
//! assert_eq!(cov.summary().lines_hit, 1);
//! ```
#![deny(missing_docs)]

pub mod blindspots;
pub mod bytes;
pub mod capture;
pub mod demangle;
pub mod dwarf;
pub mod error;
pub mod exclude;
pub mod gcda;
pub mod gcno;
pub mod graph;
pub mod json;
pub mod lcov;
pub mod lines;
pub mod llvm;
pub mod merge;
pub mod model;
pub mod object;
pub mod paths;
pub mod pipeline;
#[cfg(test)]
mod testutil;

pub use bytes::Version;
pub use error::{Error, ErrorKind};
pub use gcda::Data;
pub use gcno::Notes;
pub use object::{object_coverage, Capture};
