//! The coverage options `covnet run`, `covnet merge` and `covnet report`
//! share (build trees, path maps, filters, thresholds, lcov dialect), how
//! they sit on top of a spec's `[coverage]` table, and how the merger's
//! notices and errors are told to the user with the flag that fixes them.

use std::path::PathBuf;

use anyhow::Context as _;
use covnet_merger::capture::{NotesSearch, Unpaired};
use covnet_merger::exclude::Rules;
use covnet_merger::lcov::LcovFormat;
use covnet_merger::paths::{PathMap, SourceFilter};
use covnet_merger::pipeline::{GatherError, Notice};
use covnet_reporter::summary::Thresholds;
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
        }
    }
}

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

/// Checks and converts `s`.
pub fn resolve(s: &CoverageSettings) -> anyhow::Result<Resolved> {
    Ok(Resolved {
        build: s.build.clone(),
        map: PathMap::parse(&s.path_map).context("failed to parse a path map")?,
        filter: SourceFilter::new(&s.include, &s.exclude).context("failed to parse a glob")?,
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
        .context("failed to parse --exclude-line-regex / --exclude-branch-regex")?,
    })
}

/// Which command is talking: the fix for unpaired files differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// `covnet run`.
    Run,
    /// `covnet merge` and `covnet report`.
    Standalone,
}

impl Command {
    fn fix_unpaired(self) -> &'static str {
        match self {
            Command::Run => "add the build tree with `--build DIR` (repeatable) or `[coverage] build = [\"DIR\", ...]` in the spec; if the .gcda paths differ from the build paths, map them with `--path-map GUEST=HOST` or `[coverage] path_map`",
            Command::Standalone => "name the build tree with `--build DIR` (repeatable); if the .gcda paths differ from the build paths, map them with `--path-map GUEST=HOST`",
        }
    }
}

fn unpaired_text(unpaired: &[Unpaired], search: &NotesSearch, cmd: Command) -> String {
    let mut text = String::new();
    for u in unpaired {
        text.push_str(&format!("  {u}\n"));
    }
    text.push_str(&format!(
        "  covnet looked {search}\n  (hint: {})",
        cmd.fix_unpaired()
    ));
    text
}

/// Prints the notices of a gather that kept going: one summary per
/// capture for unpaired files, each other notice on its own line.
pub fn print_notices(notices: &[Notice], search: &NotesSearch, cmd: Command) {
    let unpaired: Vec<Unpaired> = notices
        .iter()
        .filter_map(|n| match n {
            Notice::Unpaired(u) => Some(u.clone()),
            _ => None,
        })
        .collect();
    if !unpaired.is_empty() {
        let n: usize = unpaired.iter().map(|u| u.count).sum();
        eprintln!(
            "warning: coverage incomplete: {n} .gcda file(s) left out, their notes (.gcno) not found:\n{}",
            unpaired_text(&unpaired, search, cmd)
        );
    }
    for notice in notices {
        match notice {
            Notice::Unpaired(_) => {}
            Notice::UntestedVersion(_) => eprintln!("notice: {notice}"),
            _ => eprintln!("warning: {notice}"),
        }
    }
}

/// Prints why a gather stopped, with the fix, and gives the exit code:
/// [`exit::PARTIAL`] when nothing could be paired or nothing is left (the
/// inputs were all skipped), [`exit::FAILURE`] otherwise.
pub fn print_gather_error(e: &GatherError, cmd: Command) -> u8 {
    match e {
        GatherError::NothingPaired {
            found,
            unpaired,
            search,
        } => {
            eprintln!(
                "error: none of the {found} .gcda file(s) found its .gcno, so there is no coverage to report:\n{}",
                unpaired_text(unpaired, search, cmd)
            );
            exit::PARTIAL
        }
        GatherError::Unpaired { unpaired, search } => {
            let n: usize = unpaired.iter().map(|u| u.count).sum();
            eprintln!(
                "error: {n} .gcda file(s) found no .gcno:\n{}\n  (hint: --keep-going merges the rest)",
                unpaired_text(unpaired, search, cmd)
            );
            exit::FAILURE
        }
        GatherError::Unreadable(errors) => {
            eprintln!("error: failed to read {} input(s):", errors.len());
            for e in errors {
                eprintln!("  - {}", chain(e));
            }
            eprintln!("  (hint: a stamp or checksum mismatch means the program was rebuilt after the run; re-run it or remove the stale .gcda files; --keep-going merges the rest)");
            exit::FAILURE
        }
        GatherError::Empty { why } => {
            eprintln!("error: no coverage to report: {why}\n  (hint: check that the programs were built with --coverage, ran, and that --include/--exclude keep some files)");
            exit::PARTIAL
        }
        other => {
            eprintln!("error: {}", chain(other));
            eprintln!("  (hint: --build names directories holding the .gcno files)");
            exit::FAILURE
        }
    }
}

/// An error and its causes on one line.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}
