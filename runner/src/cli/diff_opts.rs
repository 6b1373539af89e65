//! The differential coverage options `covnet report` and `covnet run`
//! share, and how they sit on top of a spec's `[coverage]` table.

use std::path::PathBuf;

use covnet_runner::spec::DiffSettings;

use super::coverage_opts;

/// Differential coverage (lcov 2.x's categories) against a baseline.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct DiffArgs {
    /// Baseline coverage: lcov tracefile, covnet JSON, gcovr JSON or
    /// capture directory (repeat to merge several; genhtml's
    /// `--baseline-file` spelling works).
    #[arg(long, visible_alias = "baseline-file", value_name = "BASE")]
    pub baseline: Vec<PathBuf>,
    /// The change from the baseline's sources to the current ones, as a
    /// unified diff (genhtml's `--diff-file`).
    #[arg(
        long,
        visible_alias = "diff-file",
        value_name = "FILE",
        conflicts_with = "diff_base"
    )]
    pub diff: Option<PathBuf>,
    /// The change as a git revision (or range) of the repository in the
    /// current directory: `git diff REF`.
    #[arg(long, value_name = "REF")]
    pub diff_base: Option<String>,
    /// Directory the --diff file's paths are relative to (default: the
    /// current directory).
    #[arg(long, value_name = "DIR")]
    pub diff_root: Option<PathBuf>,
    /// Exit 3 when less than PCT% of the new lines are covered.
    #[arg(long, value_name = "PCT", value_parser = coverage_opts::parse_percent)]
    pub fail_under_new_lines: Option<f64>,
    /// Exit 3 when a line covered in the baseline is not covered now (LBC).
    #[arg(long)]
    pub fail_on_lost_coverage: bool,
}

impl DiffArgs {
    /// Whether any option was given.
    pub fn any(&self) -> bool {
        self.over(&DiffSettings::default()) != DiffSettings::default()
    }

    /// `spec` with the options given here in its place: a baseline or a
    /// change on the command line replaces the spec's baseline and change
    /// together (they describe one comparison); gates override one by one.
    pub fn over(&self, spec: &DiffSettings) -> DiffSettings {
        let own = !self.baseline.is_empty() || self.diff.is_some() || self.diff_base.is_some();
        let mut d = if own {
            DiffSettings {
                baseline: self.baseline.clone(),
                diff: self.diff.clone(),
                diff_base: self.diff_base.clone(),
                diff_root: self.diff_root.clone(),
                ..spec.clone()
            }
        } else {
            DiffSettings {
                diff_root: self.diff_root.clone().or_else(|| spec.diff_root.clone()),
                ..spec.clone()
            }
        };
        d.fail_under_new_lines = self.fail_under_new_lines.or(spec.fail_under_new_lines);
        d.fail_on_lost_coverage |= self.fail_on_lost_coverage;
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_replaces_the_comparison_and_adds_gates() {
        let spec = DiffSettings {
            baseline: vec!["/s/base.info".into()],
            diff_base: Some("main".into()),
            fail_under_new_lines: Some(80.0),
            ..Default::default()
        };
        let none = DiffArgs::default();
        assert_eq!(none.over(&spec), spec);
        assert!(!none.any());
        let cli = DiffArgs {
            baseline: vec!["b.json".into()],
            diff: Some("c.diff".into()),
            fail_on_lost_coverage: true,
            ..Default::default()
        };
        let d = cli.over(&spec);
        assert_eq!(d.baseline, [PathBuf::from("b.json")]);
        assert_eq!(
            (d.diff.as_deref(), d.diff_base.as_deref()),
            (Some("c.diff".as_ref()), None)
        );
        assert_eq!(d.fail_under_new_lines, Some(80.0));
        assert!(d.fail_on_lost_coverage && cli.any());
    }
}
