//! `covnet report`: turn tracefiles into an HTML site, lcov, Cobertura,
//! JSON and Markdown, print the summary table, and enforce thresholds.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use covnet_merger::capture::{CaptureDir, NotesSearch};
use covnet_merger::model::Coverage;
use covnet_merger::paths::SourceRewrite;
use covnet_merger::pipeline::{self, Request};
use covnet_reporter::{diff, json, summary, RunInfo};
use covnet_runner::spec::CoverageSettings;

use super::coverage_opts::{self, CoverageOpts};
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

/// Differential coverage (lcov 2.x's categories) against a baseline.
#[derive(clap::Args, Debug, Default)]
pub struct DiffArgs {
    /// Baseline coverage: lcov tracefile, covnet JSON or capture directory
    /// (repeat to merge several; genhtml's `--baseline-file` spelling works).
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
    let (mut cov, skipped) = match load_inputs(&args.inputs, &args, &settings, &rewrite)? {
        Ok(loaded) => loaded,
        Err(code) => return Ok(code),
    };
    super::markers::apply(&mut cov, &settings.rules);
    let info = RunInfo::now(
        args.title.clone(),
        args.inputs
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
    );
    let thresholds = settings.thresholds;
    let delta = match differential(&args, &settings, &rewrite, &cov)? {
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
        json: args.json.clone().filter(|_| delta.is_none()),
        markdown: args.markdown.clone().filter(|_| delta.is_none()),
        lcov_format: settings.lcov_format,
        thresholds,
        ..covnet_runner::coverage::format_outputs(&formats, Path::new(""))
    };
    let written = covnet_reporter::outputs::write_all(&cov, &info, &outputs)
        .context("failed to write the reports")?;
    super::format_opts::warn(&written);
    if let Some(d) = &delta {
        diff_outputs(d, &cov, &info, &args)?;
    }
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
    summary::write_table(&cov, &info, &mut out)?;
    if let Some(d) = &delta {
        diff::output::write_terminal(d, &cov.captures, &mut out)?;
    }
    out.flush()?;

    if skipped {
        eprintln!(
            "warning: some capture files were left out (--keep-going): the report is incomplete"
        );
        return Ok(ExitCode::from(exit::PARTIAL));
    }
    let mut shortfalls: Vec<String> = thresholds
        .check(&cov.summary())
        .iter()
        .map(ToString::to_string)
        .collect();
    if let Some(d) = &delta {
        let opts = &args.differential;
        let gates = diff::output::check(d, opts.fail_under_new_lines, opts.fail_on_lost_coverage);
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

/// The differential coverage `args` ask for (`None` without --baseline,
/// --diff or --diff-base); `Err(code)` when the baseline could not be
/// gathered.
fn differential(
    args: &ReportArgs,
    settings: &covnet_runner::coverage::settings::Resolved,
    rewrite: &SourceRewrite,
    cov: &Coverage,
) -> anyhow::Result<Result<Option<diff::Differential>, ExitCode>> {
    let d = &args.differential;
    if d.baseline.is_empty() && d.diff.is_none() && d.diff_base.is_none() {
        if d.fail_under_new_lines.is_some() || d.fail_on_lost_coverage {
            bail!("--fail-under-new-lines and --fail-on-lost-coverage need a change to judge\n  (hint: add --baseline BASE with --diff FILE or --diff-base REF)");
        }
        return Ok(Ok(None));
    }
    // genhtml: a baseline without a diff means no source changed; a diff
    // without a baseline means nothing was covered before.
    let baseline = if d.baseline.is_empty() {
        Coverage::default()
    } else {
        match load_inputs(&d.baseline, args, settings, rewrite)? {
            Ok((b, _)) => b,
            Err(code) => return Ok(Err(code)),
        }
    };
    let cwd = std::env::current_dir().context("failed to get the current directory")?;
    let (text, root) = match (&d.diff, &d.diff_base) {
        (Some(file), _) => (
            std::fs::read_to_string(file)
                .with_context(|| format!("failed to read diff {}", file.display()))?,
            d.diff_root.clone().unwrap_or(cwd),
        ),
        (None, Some(base)) => diff::git::diff(d.diff_root.as_deref().unwrap_or(&cwd), base)?,
        (None, None) => (String::new(), cwd),
    };
    let parsed = diff::udiff::UnifiedDiff::parse(&text).with_context(|| {
        format!(
            "failed to parse the unified diff {}",
            d.diff
                .as_ref()
                .map_or_else(|| "from git".to_owned(), |p| p.display().to_string())
        )
    })?;
    let delta = diff::compare(cov, &baseline, &parsed, &root);
    if let Some(first) = delta.unmatched_diff_paths.first() {
        eprintln!(
            "warning: {} path(s) of the diff match no file of the current or baseline coverage (first: {first})\n  (hint: run from the directory the diff's paths are relative to, or pass --diff-root)",
            delta.unmatched_diff_paths.len()
        );
    }
    Ok(Ok(Some(delta)))
}

/// The JSON and Markdown reports with the differential sections, and the
/// differential page of the HTML site.
fn diff_outputs(
    d: &diff::Differential,
    cov: &Coverage,
    info: &RunInfo,
    args: &ReportArgs,
) -> anyhow::Result<()> {
    if let Some(path) = &args.json {
        let root = covnet_reporter::tree::common_root(d.files.keys().map(String::as_str));
        let dirs = diff::output::directories(d, &root);
        let section = diff::output::to_json(d, &cov.captures, &dirs);
        let mut out = std::io::BufWriter::new(
            File::create(path).with_context(|| format!("failed to create {}", path.display()))?,
        );
        json::write_with(cov, info, Some(&section), &mut out)
            .and_then(|()| out.flush())
            .with_context(|| format!("failed to write {}", path.display()))?;
    }
    if let Some(path) = &args.markdown {
        let mut out = Vec::new();
        diff::output::write_markdown(d, cov, &info.title, &mut out)?;
        std::fs::write(path, out).with_context(|| format!("failed to write {}", path.display()))?;
    }
    if let Some(dir) = &args.html {
        diff::html::write_page(d, cov, &info.title, dir).with_context(|| {
            format!("failed to write the differential page in {}", dir.display())
        })?;
    }
    Ok(())
}

/// Reads and merges `inputs` (capture directories, tracefiles, JSON);
/// `Err(code)` when a capture directory could not be gathered (the error
/// is printed).
fn load_inputs(
    inputs: &[PathBuf],
    args: &ReportArgs,
    settings: &covnet_runner::coverage::settings::Resolved,
    rewrite: &SourceRewrite,
) -> anyhow::Result<Result<(Coverage, bool), ExitCode>> {
    let (dirs, files): (Vec<&PathBuf>, Vec<&PathBuf>) = inputs.iter().partition(|p| p.is_dir());
    let search = NotesSearch::host_then(settings.build.clone());
    let request = Request {
        captures: capture_dirs(&dirs),
        search: search.clone(),
        map: settings.map.clone(),
        rewrite: rewrite.clone(),
        keep_going: args.keep_going,
        attribute: true,
    };
    let mut skipped = false;
    let mut cov: Option<Coverage> = None;
    if !request.captures.is_empty() {
        match pipeline::gather(&request) {
            Ok(g) => {
                coverage_opts::print_notices(
                    &g.notices,
                    &search,
                    coverage_opts::Command::Standalone,
                );
                skipped = g.skipped_inputs();
                cov = Some(g.coverage);
            }
            Err(e) => {
                return Ok(Err(ExitCode::from(coverage_opts::print_gather_error(
                    &e,
                    coverage_opts::Command::Standalone,
                ))))
            }
        }
    }
    // Parse the files side by side (a few at a time), then merge in input
    // order.
    let width = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut loaded: Vec<anyhow::Result<Coverage>> = Vec::with_capacity(files.len());
    for chunk in files.chunks(width) {
        std::thread::scope(|scope| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|input| scope.spawn(move || load(input)))
                .collect();
            for h in handles {
                loaded.push(h.join().unwrap_or_else(|_| {
                    Err(anyhow::anyhow!("internal error: input reader panicked"))
                }));
            }
        });
    }
    // Tracefiles keep their source paths as written (no base), mapped and
    // filtered like the captures.
    let retrace = SourceRewrite {
        base: None,
        ..rewrite.clone()
    };
    for (input, one) in files.iter().zip(loaded) {
        let one = retrace
            .apply(one?)
            .with_context(|| format!("failed to rewrite the paths of {}", input.display()))?;
        cov = Some(match cov {
            None => one,
            Some(acc) => covnet_merger::merge::merge(acc, one)
                .with_context(|| format!("failed to merge {}", input.display()))?,
        });
    }
    Ok(Ok((cov.unwrap_or_default(), skipped)))
}

/// Capture directories named after their last component (the whole path
/// where two would share a name).
fn capture_dirs(dirs: &[&PathBuf]) -> Vec<CaptureDir> {
    let mut captures: Vec<CaptureDir> = Vec::with_capacity(dirs.len());
    for dir in dirs {
        let base = dir
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| dir.display().to_string());
        let name = if captures.iter().any(|c| c.name == base) {
            dir.display().to_string()
        } else {
            base
        };
        captures.push(CaptureDir {
            name,
            root: dir.to_path_buf(),
        });
    }
    captures
}

/// Reads one input (also `covnet blindspots --coverage`), choosing the reader by content: `{` starts a JSON
/// document (a covnet report or covnet coverage), anything else is lcov.
pub fn load(path: &Path) -> anyhow::Result<Coverage> {
    if path.is_dir() {
        bail!(
            "failed to read {}: it is a directory, not a tracefile\n  (hint: turn capture directories into a tracefile first: covnet merge {} --build <build dir> -o all.info)",
            path.display(),
            path.display()
        );
    }
    let file = File::open(path).with_context(|| format!("failed to open {}", path.display()))?;
    let mut reader = BufReader::new(file);
    let mut head = [0u8; 1];
    let first = loop {
        let n = reader
            .read(&mut head)
            .with_context(|| format!("failed to read {}", path.display()))?;
        if n == 0 {
            break None;
        }
        if !head[0].is_ascii_whitespace() {
            break Some(head[0]);
        }
    };
    if first == Some(b'{') {
        let mut bytes = vec![b'{'];
        reader
            .read_to_end(&mut bytes)
            .with_context(|| format!("failed to read {}", path.display()))?;
        let marker = format!("\"{}\"", json::FORMAT);
        let head = bytes.get(..256).unwrap_or(&bytes);
        if covnet_reporter::gcovr_json::looks_like(head) {
            let mut cov = covnet_reporter::gcovr_json::read_slice(&bytes, path)?;
            cov.captures.push(stem(path));
            covnet_merger::merge::attribute_single(&mut cov);
            return Ok(cov);
        }
        if head.windows(marker.len()).any(|w| w == marker.as_bytes()) {
            return Ok(json::read_slice(&bytes, path)?.0);
        }
        return covnet_merger::json::from_slice(&bytes)
            .with_context(|| format!("failed to read covnet coverage JSON {}", path.display()));
    }
    let name = stem(path);
    // Re-open: the peeked bytes are gone from the buffered reader.
    let file = File::open(path).with_context(|| format!("failed to open {}", path.display()))?;
    covnet_merger::lcov::read(BufReader::new(file), path, &name)
        .with_context(|| format!("failed to read tracefile {}\n  (hint: covnet report takes lcov tracefiles (.info) , covnet JSON or gcovr JSON)", path.display()))
}

/// An input's capture name: its file name without the extension.
fn stem(path: &Path) -> String {
    path.file_stem()
        .map_or_else(|| "input".to_owned(), |s| s.to_string_lossy().into_owned())
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

    #[test]
    fn loads_lcov_and_json_and_refuses_directories() {
        let dir = tempfile::tempdir().unwrap();
        let info = dir.path().join("web.info");
        std::fs::write(
            &info,
            "TN:\nSF:/s/a.c\nFN:1,main\nFNDA:2,main\nDA:1,2\nDA:2,0\nend_of_record\n",
        )
        .unwrap();
        let cov = load(&info).unwrap();
        assert_eq!(cov.captures, ["web"]);
        assert_eq!(cov.summary().lines_hit, 1);
        let report = dir.path().join("r.json");
        json::write_path(&cov, &RunInfo::now("t", vec![]), &report).unwrap();
        assert_eq!(load(&report).unwrap(), cov);
        // gcovr JSON is told apart by its version key, named after the file.
        let gcovr = dir.path().join("web.gcovr");
        covnet_reporter::gcovr_json::write_path(&cov, &gcovr).unwrap();
        assert_eq!(load(&gcovr).unwrap(), cov);
        let err = load(dir.path()).unwrap_err();
        assert!(format!("{err:#}").contains("hint: turn capture directories"));
        let bad = dir.path().join("bad.info");
        std::fs::write(&bad, "SF:/x.c\nDA:zz\n").unwrap();
        let err = format!("{:#}", load(&bad).unwrap_err());
        assert!(err.contains("bad.info"), "{err}");
    }
}
