//! `covnet report`: turn tracefiles into an HTML site, lcov, Cobertura,
//! JSON and Markdown, print the summary table, and enforce thresholds.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use covnet_merger::model::Coverage;
use covnet_merger::paths::SourceRewrite;
use covnet_reporter::{diff, summary, RunInfo};
use covnet_runner::coverage::differential::{self, DiffError};
use covnet_runner::coverage::inputs::{self, InputError};
use covnet_runner::coverage::settings::Resolved;
use covnet_runner::spec::{CoverageSettings, DiffSettings};

use super::coverage_opts::{self, CoverageOpts};
use super::diff_opts::DiffArgs;
use super::exit;

/// Arguments of `covnet report`.
#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// Inputs: lcov tracefiles (each `TN` section is kept as a capture,
    /// named after the file when empty), covnet JSON reports (`--json`
    /// output), covnet coverage JSON, gcovr JSON (`gcovr --json`), or
    /// capture directories of `.gcda`
    /// files (one per machine, named after the directory; each `.gcda`
    /// pairs with the `.gcno` at its build path, else in the --build trees).
    /// Several inputs are merged.
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,
    /// Build trees, path maps, filters, thresholds, lcov dialect.
    #[command(flatten)]
    pub coverage: CoverageOpts,
    /// Leave out capture files that cannot be paired or read, report the
    /// rest, and exit with status 2.
    #[arg(long)]
    pub keep_going: bool,
    /// Write the HTML site into this directory (index.html, files/…).
    #[arg(long, value_name = "DIR")]
    pub html: Option<PathBuf>,
    /// Write the combined coverage as an lcov tracefile.
    #[arg(long, value_name = "FILE")]
    pub lcov: Option<PathBuf>,
    /// Write Cobertura XML (coverage-04.dtd).
    #[arg(long, value_name = "FILE")]
    pub cobertura: Option<PathBuf>,
    /// Write the JSON report (totals, per-machine totals, every count).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write a Markdown summary for a pull-request comment.
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
    /// SonarQube, Coveralls, gcovr JSON and CSV outputs.
    #[command(flatten)]
    pub formats: super::format_opts::FormatOpts,
    /// Title shown on every output.
    #[arg(long, default_value = "covnet coverage report")]
    pub title: String,
    /// Differential coverage against the baseline and the change.
    #[command(flatten)]
    pub differential: DiffArgs,
}

/// Runs `covnet report`.
pub fn report(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let settings = coverage_opts::resolve(&args.coverage.over(&CoverageSettings::default()))?;
    let base = match settings.build.first() {
        Some(b) => b.clone(),
        None => std::env::current_dir().context("failed to get the current directory")?,
    };
    let rewrite = SourceRewrite {
        map: settings.map.clone(),
        filter: settings.filter.clone(),
        base: Some(base),
    };
    let inputs::Loaded {
        coverage: mut cov,
        skipped,
        notes,
        ..
    } = match load_inputs(&args.inputs, args.keep_going, &settings, &rewrite)? {
        Ok(loaded) => loaded,
        Err(code) => return Ok(code),
    };
    super::markers::apply(&mut cov, &settings.rules);
    // The model is read to the end of the command: leave its memory to the
    // exit instead of freeing it allocation by allocation.
    let cov = std::mem::ManuallyDrop::new(cov);
    let mut info = RunInfo::now(
        args.title.clone(),
        args.inputs
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
    );
    info.notes = notes.clone();
    let thresholds = settings.thresholds;
    let diff_settings = args.differential.over(&Default::default());
    let delta = match differential(&diff_settings, &cov, &settings, &rewrite)? {
        Ok(d) => d,
        Err(code) => return Ok(code),
    };

    // The formats' paths as given (relative to the current directory).
    let formats = args.formats.over(&Default::default());
    let outputs = covnet_reporter::outputs::Outputs {
        html: args.html.clone(),
        lcov: args.lcov.clone(),
        lcov_per_capture: None,
        cobertura: args.cobertura.clone(),
        json: args.json.clone(),
        markdown: args.markdown.clone(),
        lcov_format: settings.lcov_format,
        thresholds,
        ..covnet_runner::coverage::format_outputs(&formats, Path::new(""))
    };
    let written = covnet_reporter::outputs::write_all_with(&cov, &info, &outputs, delta.as_ref())
        .context("failed to write the reports")?;
    super::format_opts::warn(&written);
    if let (Some(dir), Some(site)) = (&args.html, &written.html) {
        eprintln!(
            "covnet: wrote {} ({} source pages)",
            dir.join("index.html").display(),
            site.pages
        );
        if let Some(first) = site.missing_sources.first() {
            eprintln!(
                "warning: {} of {} source files were not found on disk (first: {first}); their pages list only the counts\n  (hint: run covnet report where the SF: paths of the tracefile resolve, or rewrite them with --path-map)",
                site.missing_sources.len(),
                site.pages
            );
        }
    }

    let stdout = io::stdout();
    let mut out = stdout.lock();
    // The site summed the totals for its index already.
    match written.html.as_ref().map(|site| &site.totals) {
        Some(totals) => summary::write_table_with(&cov, &info, totals, &mut out)?,
        None => summary::write_table(&cov, &info, &mut out)?,
    }
    if let Some(d) = &delta {
        diff::output::write_terminal(d, &cov.captures, &mut out)?;
    }
    out.flush()?;

    for n in &notes {
        eprintln!("warning: {n}");
    }
    if skipped || !notes.is_empty() {
        if skipped {
            eprintln!(
                "warning: some capture files were left out (--keep-going): the report is incomplete"
            );
        } else {
            eprintln!(
                "warning: the report is incomplete (see above; the HTML report names the gaps too)"
            );
        }
        return Ok(ExitCode::from(exit::PARTIAL));
    }
    // The totals cost a pass over the model: only with thresholds.
    let mut shortfalls: Vec<String> = if thresholds.is_empty() {
        Vec::new()
    } else {
        thresholds
            .check(&cov.summary())
            .iter()
            .map(ToString::to_string)
            .collect()
    };
    if let Some(d) = &delta {
        let gates = diff::output::check(
            d,
            diff_settings.fail_under_new_lines,
            diff_settings.fail_on_lost_coverage,
        );
        shortfalls.extend(gates.iter().map(ToString::to_string));
    }
    if shortfalls.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    for s in &shortfalls {
        eprintln!("error: {s}");
    }
    Ok(ExitCode::from(exit::BELOW_THRESHOLD))
}

/// Reads and merges `inputs` (the library's [`inputs::load`]), printing
/// the notices of capture directories; `Err(code)` when a capture
/// directory could not be gathered (the error is printed).
fn load_inputs(
    inputs: &[PathBuf],
    keep_going: bool,
    settings: &Resolved,
    rewrite: &SourceRewrite,
) -> anyhow::Result<Result<inputs::Loaded, ExitCode>> {
    match inputs::load(inputs, settings, rewrite, keep_going) {
        Ok(l) => {
            coverage_opts::print_notices(&l.notices, &l.search, coverage_opts::Command::Standalone);
            Ok(Ok(l))
        }
        Err(InputError::Gather(e)) => Ok(Err(ExitCode::from(coverage_opts::print_gather_error(
            &e,
            coverage_opts::Command::Standalone,
        )))),
        Err(e) => Err(input_error(e)),
    }
}

/// An input error with the hint that fixes it.
pub fn input_error(e: InputError) -> anyhow::Error {
    let hint = match &e {
        InputError::Directory { path } => Some(format!(
            "turn capture directories into a tracefile first: covnet merge {} --build <build dir> -o all.info",
            path.display()
        )),
        InputError::Lcov { .. } => Some(
            "covnet report takes lcov tracefiles (.info), covnet JSON or gcovr JSON".to_owned(),
        ),
        _ => None,
    };
    let e = anyhow::Error::new(e);
    match hint {
        Some(h) => e.context(format!("(hint: {h})")),
        None => e,
    }
}

/// The differential coverage the options ask for, printing the
/// baseline's notices and the unmatched diff paths; `None` without one,
/// `Err(code)` when the baseline could not be gathered (printed).
pub fn differential(
    d: &DiffSettings,
    cov: &Coverage,
    settings: &Resolved,
    rewrite: &SourceRewrite,
) -> anyhow::Result<Result<Option<diff::Differential>, ExitCode>> {
    let cwd = std::env::current_dir().context("failed to get the current directory")?;
    let computed = match differential::compute(d, cov, settings, rewrite, &cwd) {
        Ok(c) => c,
        Err(DiffError::GatesWithoutChange) => bail!("--fail-under-new-lines and --fail-on-lost-coverage need a change to judge\n  (hint: add --baseline BASE with --diff FILE or --diff-base REF)"),
        Err(DiffError::Baseline(InputError::Gather(e))) => {
            eprintln!("error: failed to read the baseline");
            return Ok(Err(ExitCode::from(coverage_opts::print_gather_error(
                &e,
                coverage_opts::Command::Standalone,
            ))));
        }
        Err(DiffError::Baseline(e)) => {
            return Err(input_error(e).context("failed to read the baseline"))
        }
        Err(e) => return Err(e.into()),
    };
    let Some(c) = computed else {
        return Ok(Ok(None));
    };
    coverage_opts::print_notices(
        &c.baseline_notices,
        &c.baseline_search,
        coverage_opts::Command::Standalone,
    );
    if let Some(w) = differential::unmatched_warning(&c.delta) {
        eprintln!("warning: {w}");
    }
    Ok(Ok(Some(c.delta)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_are_validated() {
        use coverage_opts::parse_percent;
        assert_eq!(parse_percent("80"), Ok(80.0));
        assert_eq!(parse_percent("72.5%"), Ok(72.5));
        assert!(parse_percent("101").is_err());
        assert!(parse_percent("-1").is_err());
        assert!(parse_percent("x").is_err());
    }
}
