//! Differential coverage of a report: its baseline read back
//! ([`super::inputs`]), the change from a diff file or from git, and the
//! reporter's categorisation ([`covnet_reporter::diff::compare`]).
//! `covnet report` and `covnet run` both go through [`compute`], with the
//! settings of the command line over the spec's `[coverage]` table.

use std::path::{Path, PathBuf};

use covnet_merger::model::Coverage;
use covnet_merger::paths::SourceRewrite;
use covnet_merger::pipeline::Notice;
use covnet_reporter::diff::{self, git::GitError, udiff::ParseError, Differential};

use super::inputs::{self, InputError};
use super::settings::Resolved;
use crate::spec::DiffSettings;

/// Why the differential coverage could not be computed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiffError {
    /// The gates were asked for without a change to judge.
    #[error("--fail-under-new-lines and --fail-on-lost-coverage need a change to judge")]
    GatesWithoutChange,
    /// The baseline could not be read.
    #[error("failed to read the baseline")]
    Baseline(#[source] InputError),
    /// The diff file could not be read.
    #[error("failed to read diff {}", path.display())]
    ReadDiff {
        /// The diff file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// git could not give the change.
    #[error(transparent)]
    Git(#[from] GitError),
    /// The diff is not a unified diff.
    #[error("failed to parse the unified diff {what}")]
    Parse {
        /// The diff file, or "from git".
        what: String,
        /// Where and why.
        #[source]
        source: ParseError,
    },
}

/// The differential coverage of a report, with what reading its baseline
/// had to say.
#[derive(Debug)]
pub struct Computed {
    /// Every line, function and branch in its category.
    pub delta: Differential,
    /// Notices of the baseline's capture directories.
    pub baseline_notices: Vec<Notice>,
    /// Where the baseline's notes were searched.
    pub baseline_search: covnet_merger::capture::NotesSearch,
}

/// Categorises `current` against the baseline and the change `d` names
/// (`None` when `d` names neither). Relative diff paths are taken from
/// `d.diff_root`, else `cwd` (for a git change: the repository's top).
/// Following genhtml, a baseline without a change means no source
/// changed, and a change without a baseline means nothing was covered
/// before.
pub fn compute(
    d: &DiffSettings,
    current: &Coverage,
    settings: &Resolved,
    rewrite: &SourceRewrite,
    cwd: &Path,
) -> Result<Option<Computed>, DiffError> {
    if !d.is_on() {
        if d.has_gates() {
            return Err(DiffError::GatesWithoutChange);
        }
        return Ok(None);
    }
    let (baseline, baseline_notices, baseline_search) = if d.baseline.is_empty() {
        (Coverage::default(), Vec::new(), Default::default())
    } else {
        let l = inputs::load(&d.baseline, settings, rewrite, false).map_err(DiffError::Baseline)?;
        (l.coverage, l.notices, l.search)
    };
    let (text, root) = match (&d.diff, &d.diff_base) {
        (Some(file), _) => (
            std::fs::read_to_string(file).map_err(|source| DiffError::ReadDiff {
                path: file.clone(),
                source,
            })?,
            d.diff_root.clone().unwrap_or_else(|| cwd.to_path_buf()),
        ),
        (None, Some(base)) => diff::git::diff(d.diff_root.as_deref().unwrap_or(cwd), base)?,
        (None, None) => (String::new(), cwd.to_path_buf()),
    };
    let parsed = diff::udiff::UnifiedDiff::parse(&text).map_err(|source| DiffError::Parse {
        what: d
            .diff
            .as_ref()
            .map_or_else(|| "from git".to_owned(), |p| p.display().to_string()),
        source,
    })?;
    Ok(Some(Computed {
        delta: diff::compare(current, &baseline, &parsed, &root),
        baseline_notices,
        baseline_search,
    }))
}

/// The warning for diff paths that match no file of either coverage, if
/// any.
pub fn unmatched_warning(delta: &Differential) -> Option<String> {
    let first = delta.unmatched_diff_paths.first()?;
    Some(format!(
        "{} path(s) of the diff match no file of the current or baseline coverage (first: {first})\n  (hint: run from the directory the diff's paths are relative to, or set the diff root: --diff-root / [coverage] diff_root)",
        delta.unmatched_diff_paths.len()
    ))
}
