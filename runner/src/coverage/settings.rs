//! A `[coverage]` table (with the command line's options on top) in the
//! types the merger and reporter take, checked before anything boots.

use std::path::PathBuf;

use covnet_merger::exclude::{RegexError, Rules};
use covnet_merger::lcov::LcovFormat;
use covnet_merger::paths::{PathError, PathMap, SourceFilter};
use covnet_reporter::summary::Thresholds;

use crate::spec::CoverageSettings;

/// [`CoverageSettings`] in the types the merger and reporter take.
#[derive(Debug)]
pub struct Resolved {
    /// Build trees, in order.
    pub build: Vec<PathBuf>,
    /// Path rewriting.
    pub map: PathMap,
    /// Source filter.
    pub filter: SourceFilter,
    /// Thresholds.
    pub thresholds: Thresholds,
    /// lcov dialect.
    pub lcov_format: LcovFormat,
    /// Exclusion markers and regexes.
    pub rules: Rules,
}

/// Why coverage settings are unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// A `FROM=TO` path map is malformed.
    #[error("failed to parse a path map")]
    PathMap(#[source] PathError),
    /// An include or exclude glob is malformed.
    #[error("failed to parse a glob")]
    Glob(#[source] PathError),
    /// An exclusion regex is malformed.
    #[error("failed to parse --exclude-line-regex / --exclude-branch-regex")]
    Regex(#[source] RegexError),
    /// A new-code gate is set without a baseline or a change to judge.
    #[error("--fail-under-new-lines / --fail-on-lost-coverage need a change to judge\n  (hint: add a baseline with --baseline and the change with --diff FILE or --diff-base REF, or the same in [coverage])")]
    GatesWithoutChange,
    /// A differential input does not exist.
    #[error("the differential coverage's {what} {} does not exist", path.display())]
    Missing {
        /// `baseline` or `diff`.
        what: &'static str,
        /// The path.
        path: PathBuf,
    },
}

/// Checks and converts `s`; the differential inputs must exist (a run
/// fails before anything boots rather than after the test).
pub fn resolve(s: &CoverageSettings) -> Result<Resolved, SettingsError> {
    let d = &s.differential;
    if d.has_gates() && !d.is_on() {
        return Err(SettingsError::GatesWithoutChange);
    }
    let named = d.baseline.iter().map(|p| ("baseline", p));
    for (what, path) in named.chain(d.diff.iter().map(|p| ("diff", p))) {
        if !path.exists() {
            return Err(SettingsError::Missing {
                what,
                path: path.clone(),
            });
        }
    }
    Ok(Resolved {
        build: s.build.clone(),
        map: PathMap::parse(&s.path_map).map_err(SettingsError::PathMap)?,
        filter: SourceFilter::new(&s.include, &s.exclude).map_err(SettingsError::Glob)?,
        thresholds: Thresholds {
            lines: s.fail_under.lines,
            functions: s.fail_under.functions,
            branches: s.fail_under.branches,
        },
        lcov_format: if s.lcov_format == 2 {
            LcovFormat::V2
        } else {
            LcovFormat::V1
        },
        rules: Rules::new(
            s.markers,
            s.exclude_line_regex.as_deref(),
            s.exclude_branch_regex.as_deref(),
        )
        .map_err(SettingsError::Regex)?,
    })
}
