//! Exclusion marker flags of `covnet run`, `merge` and `report` (part of
//! [`super::coverage_opts::CoverageOpts`]): lcov's and gcovr's `*_EXCL_*`
//! source markers (on by default, as in both tools) and user regexes,
//! applied once the coverage is merged.

use covnet_merger::exclude::Rules;
use covnet_merger::model::Coverage;

/// Flags that choose what the sources exclude.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct MarkerArgs {
    /// Ignore the LCOV_EXCL_* / GCOVR_EXCL_* markers in the source files
    /// (the regexes below still apply).
    #[arg(long)]
    pub no_markers: bool,
    /// Exclude every source line matching REGEX (anywhere in the line), as
    /// an LCOV_EXCL_LINE marker would.
    #[arg(long, value_name = "REGEX")]
    pub exclude_line_regex: Option<String>,
    /// Drop the branches of every source line matching REGEX, as an
    /// LCOV_EXCL_BR_LINE marker would.
    #[arg(long, value_name = "REGEX")]
    pub exclude_branch_regex: Option<String>,
}

/// Applies `rules` to `cov`, reading the sources from disk, and prints the
/// marker warnings (and one line for sources that could not be read).
pub fn apply(cov: &mut Coverage, rules: &Rules) {
    for d in covnet_runner::coverage::notices::apply_markers(cov, rules) {
        eprintln!("{d}");
    }
}
