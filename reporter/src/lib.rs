//! Coverage reports from the merger's model.
//!
//! One module per output format; every writer borrows a
//! [`covnet_merger::model::Coverage`] and streams into a writer or a
//! directory:
//!
//! - [`html`]: a static, offline HTML site (index with a directory tree,
//!   one annotated page per source file, per-machine views);
//! - [`cobertura`]: Cobertura XML (`coverage-04.dtd`);
//! - [`json`]: a JSON report that reads back into the model;
//! - [`markdown`]: a short summary for a pull-request comment;
//! - [`sonarqube`]: SonarQube's generic test coverage XML;
//! - [`coveralls`]: Coveralls' JSON job document (source digests, per-line
//!   counts, branches);
//! - [`gcovr_json`]: gcovr's JSON format, written and read;
//! - [`csv`]: per-file totals with gcovr's `--csv` columns;
//! - [`diff`]: differential coverage against a baseline across a unified
//!   diff, in lcov 2.x's twelve categories (terminal, JSON, Markdown and
//!   HTML outputs, gates);
//! - [`blindspots`]: code installed on each machine that none of its captures covers (the
//!   listing of `covnet blindspots`, and its part of the other outputs);
//! - [`summary`]: the terminal table and `--fail-under-*` thresholds;
//! - [`tree`]: paths relative to a common root and per-directory totals,
//!   shared by the outputs above;
//! - [`outputs`]: every report of one coverage at once, as `covnet run`
//!   and `covnet report` write them.
//!
//! ```
//! use covnet_merger::model::{Coverage, FileCoverage, LineCoverage};
//! use covnet_reporter::{summary, RunInfo};
//!
//! let mut cov = Coverage::default();
//! let mut file = FileCoverage::default();
//! file.lines.insert(3, LineCoverage { count: 2, ..Default::default() });
//! file.lines.insert(4, LineCoverage { count: 0, ..Default::default() });
//! cov.files.insert("/src/a.c".into(), file);
//!
//! let info = RunInfo::now("example", vec!["a.info".into()]);
//! let mut out = Vec::new();
//! summary::write_table(&cov, &info, &mut out).unwrap();
//! assert!(String::from_utf8(out).unwrap().contains("50.0%"));
//! ```
#![deny(missing_docs)]

pub mod blindspots;
pub mod cobertura;
pub mod coveralls;
pub mod csv;
pub mod diff;
mod error;
pub mod gcovr_json;
pub mod html;
mod info;
pub mod json;
pub mod markdown;
mod output;
pub mod outputs;
mod percent;
#[cfg(test)]
mod sample;
pub mod sonarqube;
pub mod summary;
pub mod tree;

pub use error::Error;
pub use info::RunInfo;
pub use percent::Percent;
