//! The coverage options `covnet run`, `covnet merge` and `covnet report`
//! share (build trees, path maps, filters, thresholds, lcov dialect), how
//! they sit on top of a spec's `[coverage]` table, and how the merger's
//! notices and errors are told to the user with the flag that fixes them.

use std::path::PathBuf;

use covnet_merger::capture::NotesSearch;
use covnet_merger::pipeline::{GatherError, Notice};
use covnet_runner::coverage::notices::{self, GatherEnd};
use covnet_runner::coverage::settings::{self, Resolved};
use covnet_runner::spec::{CoverageSettings, FailUnder};

use super::exit;

/// Coverage options of `run`, `merge` and `report`; each overrides the
/// spec's `[coverage]` field of the same name.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct CoverageOpts {
    /// A build tree holding `.gcno` files (repeatable), searched after each
    /// `.gcda`'s own build path on this host (and, for `run`, the spec's
    /// directory).
    #[arg(long = "build", value_name = "DIR")]
    pub build: Vec<PathBuf>,
    /// Rewrite a path prefix in source paths and in capture build paths
    /// (repeatable).
    #[arg(long = "path-map", value_name = "FROM=TO")]
    pub path_map: Vec<String>,
    /// Keep only source files matching this glob (repeatable).
    #[arg(long, value_name = "GLOB")]
    pub include: Vec<String>,
    /// Drop source files matching this glob (repeatable).
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Exit with code 3 when line coverage is below PCT percent.
    #[arg(long, value_name = "PCT", value_parser = parse_percent)]
    pub fail_under_lines: Option<f64>,
    /// Exit with code 3 when function coverage is below PCT percent.
    #[arg(long, value_name = "PCT", value_parser = parse_percent)]
    pub fail_under_functions: Option<f64>,
    /// Exit with code 3 when branch coverage is below PCT percent.
    #[arg(long, value_name = "PCT", value_parser = parse_percent)]
    pub fail_under_branches: Option<f64>,
    /// lcov dialect of written tracefiles: 1 (readable by lcov 1.x and
    /// 2.x, the default) or 2 (lcov 2.2+).
    #[arg(long, value_name = "1|2", value_parser = clap::value_parser!(u8).range(1..=2))]
    pub lcov_format: Option<u8>,
    /// Exclusion markers and regexes (applied to the merged coverage).
    #[command(flatten)]
    pub markers: super::markers::MarkerArgs,
}

/// Parses `80` or `72.5%` into a percentage from 0 to 100.
pub fn parse_percent(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("{s:?} is not a number"))?;
    if !(0.0..=100.0).contains(&v) {
        return Err(format!("{v} is not a percentage between 0 and 100"));
    }
    Ok(v)
}

impl CoverageOpts {
    /// Whether any option was given (`run` takes them only with
    /// `--coverage`).
    pub fn any(&self) -> bool {
        !(self.build.is_empty()
            && self.path_map.is_empty()
            && self.include.is_empty()
            && self.exclude.is_empty()
            && self.fail_under_lines.is_none()
            && self.fail_under_functions.is_none()
            && self.fail_under_branches.is_none()
            && self.lcov_format.is_none()
            && !self.markers.no_markers
            && self.markers.exclude_line_regex.is_none()
            && self.markers.exclude_branch_regex.is_none())
    }

    /// `spec` with every option given here in place of its field (lists
    /// replace lists).
    pub fn over(&self, spec: &CoverageSettings) -> CoverageSettings {
        let list = |cli: &Vec<String>, spec: &Vec<String>| {
            if cli.is_empty() {
                spec.clone()
            } else {
                cli.clone()
            }
        };
        CoverageSettings {
            build: if self.build.is_empty() {
                spec.build.clone()
            } else {
                self.build.clone()
            },
            objects: spec.objects.clone(),
            include: list(&self.include, &spec.include),
            exclude: list(&self.exclude, &spec.exclude),
            path_map: list(&self.path_map, &spec.path_map),
            fail_under: FailUnder {
                lines: self.fail_under_lines.or(spec.fail_under.lines),
                functions: self.fail_under_functions.or(spec.fail_under.functions),
                branches: self.fail_under_branches.or(spec.fail_under.branches),
            },
            per_subtest: spec.per_subtest,
            lcov_format: self.lcov_format.unwrap_or(spec.lcov_format),
            markers: spec.markers && !self.markers.no_markers,
            exclude_line_regex: self
                .markers
                .exclude_line_regex
                .clone()
                .or_else(|| spec.exclude_line_regex.clone()),
            exclude_branch_regex: self
                .markers
                .exclude_branch_regex
                .clone()
                .or_else(|| spec.exclude_branch_regex.clone()),
            formats: spec.formats.clone(),
            differential: spec.differential.clone(),
        }
    }
}

/// Checks and converts `s` (see [`settings::resolve`]).
pub fn resolve(s: &CoverageSettings) -> anyhow::Result<Resolved> {
    Ok(settings::resolve(s)?)
}

/// Which command is talking: the fix for unpaired files differs.
pub use covnet_runner::coverage::notices::Flavor as Command;

/// Prints the notices of a gather that kept going: one summary per
/// capture for unpaired files, each other notice on its own line.
pub fn print_notices(notices: &[Notice], search: &NotesSearch, cmd: Command) {
    for d in notices::notice_diagnostics(notices, search, cmd) {
        eprintln!("{d}");
    }
}

/// Prints why a gather stopped, with the fix, and gives the exit code:
/// [`exit::PARTIAL`] when nothing could be paired or nothing is left (the
/// inputs were all skipped), [`exit::FAILURE`] otherwise.
pub fn print_gather_error(e: &GatherError, cmd: Command) -> u8 {
    let (d, end) = notices::gather_error_diagnostic(e, cmd);
    eprintln!("{d}");
    gather_exit(end)
}

/// The exit code of a command whose gather stopped.
pub fn gather_exit(end: GatherEnd) -> u8 {
    match end {
        GatherEnd::NothingToReport => exit::PARTIAL,
        GatherEnd::Failed => exit::FAILURE,
    }
}
