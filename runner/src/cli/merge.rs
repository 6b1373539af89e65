//! `covnet merge` and `covnet summary`.
//!
//! `covnet merge` accepts capture directories (trees of `.gcda`, paired with
//! the `.gcno` of `--build`) and lcov tracefiles (or covnet JSON) alike.
//! Captures of the same object are merged like gcov on `gcov-tool merge`
//! output (arc counters summed, then solved once); tracefiles and distinct
//! objects are merged like `lcov -a` (counts added). Each input keeps its
//! name for attribution (`--per-capture`, `--json`).
//!
//! Arguments are parsed in two stages: clap fills [`MergeArgs`], then
//! [`MergeArgs::resolve`] validates them and looks at the inputs on disk.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use covnet_merger::capture::{self, CaptureDir};
use covnet_merger::json;
use covnet_merger::lcov::{self, LcovFormat, WriteOptions};
use covnet_merger::merge::{self, merge as merge_coverage};
use covnet_merger::model::{Coverage, Summary};
use covnet_merger::paths::{PathMap, SourceFilter, SourceRewrite};

use super::exit;

/// Arguments of `covnet merge`.
#[derive(clap::Args, Debug)]
pub struct MergeArgs {
    /// Capture directories (trees of .gcda files) and lcov tracefiles (or
    /// covnet JSON files) to merge. Relative source paths in tracefiles are
    /// resolved against the current directory.
    #[arg(required = true, value_name = "CAPTURE_DIR|TRACEFILE")]
    pub inputs: Vec<PathBuf>,
    /// Build directory holding the .gcno files (needed for capture directories).
    #[arg(long, value_name = "BUILD_DIR")]
    pub build: Option<PathBuf>,
    /// Output lcov tracefile ("-" for standard output).
    #[arg(short, long, value_name = "OUT.info")]
    pub output: PathBuf,
    /// Write one TN section per capture (for `genhtml --show-details`).
    #[arg(long)]
    pub per_capture: bool,
    /// Also write the merged coverage, with per-capture counts, as JSON.
    #[arg(long, value_name = "OUT.json")]
    pub json: Option<PathBuf>,
    /// lcov dialect: 1 (readable by lcov 1.x and 2.x) or 2 (lcov 2.2+).
    #[arg(long, value_name = "1|2", default_value = "1", value_parser = ["1", "2"])]
    pub lcov_format: String,
    /// Rewrite a path prefix in source paths and in capture build paths.
    #[arg(long = "path-map", value_name = "FROM=TO")]
    pub path_map: Vec<String>,
    /// Keep only source files matching this glob (repeatable).
    #[arg(long, value_name = "GLOB")]
    pub include: Vec<String>,
    /// Drop source files matching this glob (repeatable).
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Skip bad inputs, merge the rest, and exit with status 2.
    #[arg(long)]
    pub keep_going: bool,
    /// Capture name of the input at the same position (default: its file name).
    #[arg(long = "name", value_name = "NAME")]
    pub names: Vec<String>,
}

/// Arguments of `covnet summary`.
#[derive(clap::Args, Debug)]
pub struct SummaryArgs {
    /// lcov tracefiles (or covnet JSON files); several are merged first.
    #[arg(required = true, value_name = "FILE.info")]
    pub files: Vec<PathBuf>,
}

/// One input, classified.
#[derive(Debug)]
enum Input {
    Captures(CaptureDir),
    Tracefile { path: PathBuf, name: Name },
    Json { path: PathBuf, name: Name },
}

/// The capture name of a tracefile input: given with `--name` (replaces
/// the file's test names) or derived from the file name (used only for
/// sections without a test name).
#[derive(Debug, Clone)]
struct Name {
    name: String,
    explicit: bool,
}

/// Validated `covnet merge` settings.
#[derive(Debug)]
struct MergePlan {
    inputs: Vec<Input>,
    build: Option<PathBuf>,
    output: PathBuf,
    json: Option<PathBuf>,
    write: WriteOptions,
    map: PathMap,
    rewrite: SourceRewrite,
    keep_going: bool,
}

/// Default capture names: the inputs' file names, with parent directories
/// added where that leaves two equal.
fn default_names(paths: &[PathBuf]) -> Vec<String> {
    let abs: Vec<PathBuf> = paths
        .iter()
        .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone()))
        .collect();
    let name_with = |p: &Path, depth: usize| -> String {
        let parts: Vec<String> = p
            .components()
            .filter_map(|c| match c {
                std::path::Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
                _ => None,
            })
            .collect();
        let start = parts.len().saturating_sub(depth);
        let mut name = parts.get(start..).unwrap_or_default().join("/");
        if depth == 1 && p.is_file() {
            // a.info → a
            if let Some(stem) = p.file_stem() {
                name = stem.to_string_lossy().into_owned();
            }
        }
        if name.is_empty() {
            "root".to_owned()
        } else {
            name
        }
    };
    let mut depth = vec![1usize; paths.len()];
    for _ in 0..8 {
        let names: Vec<String> = abs
            .iter()
            .zip(&depth)
            .map(|(p, &d)| name_with(p, d))
            .collect();
        let mut changed = false;
        for i in 0..names.len() {
            let dup = names
                .iter()
                .enumerate()
                .any(|(j, n)| j != i && *n == names[i] && abs[j] != abs[i]);
            if dup {
                depth[i] += 1;
                changed = true;
            }
        }
        if !changed {
            return names;
        }
    }
    abs.iter()
        .zip(&depth)
        .enumerate()
        .map(|(i, (p, &d))| format!("{}_{i}", name_with(p, d)))
        .collect()
}

impl MergeArgs {
    /// Validates the flags and classifies the inputs.
    fn resolve(self) -> Result<MergePlan> {
        if self.names.len() > self.inputs.len() {
            bail!(
                "{} --name values for {} inputs\n(hint: give at most one --name per input, in input order)",
                self.names.len(),
                self.inputs.len()
            );
        }
        let defaults = default_names(&self.inputs);
        let mut inputs = Vec::with_capacity(self.inputs.len());
        for (i, path) in self.inputs.iter().enumerate() {
            let explicit = i < self.names.len();
            let name = self
                .names
                .get(i)
                .cloned()
                .or_else(|| defaults.get(i).cloned())
                .unwrap_or_else(|| format!("input{i}"));
            let meta = std::fs::metadata(path).with_context(|| {
                format!(
                    "failed to open input {}\n(hint: inputs are capture directories of .gcda files or lcov tracefiles)",
                    path.display()
                )
            })?;
            let input = if meta.is_dir() {
                Input::Captures(CaptureDir {
                    name,
                    root: path.clone(),
                })
            } else if path.extension().is_some_and(|e| e == "json") {
                Input::Json {
                    path: path.clone(),
                    name: Name { name, explicit },
                }
            } else {
                Input::Tracefile {
                    path: path.clone(),
                    name: Name { name, explicit },
                }
            };
            inputs.push(input);
        }
        let has_captures = inputs.iter().any(|i| matches!(i, Input::Captures(_)));
        if has_captures && self.build.is_none() {
            bail!(
                "capture directories need the build directory with the .gcno files\n(hint: add --build BUILD_DIR)"
            );
        }
        let map = PathMap::parse(&self.path_map).context("failed to parse --path-map")?;
        let filter =
            SourceFilter::new(&self.include, &self.exclude).context("failed to parse a glob")?;
        let base = std::env::current_dir().context("failed to get the current directory")?;
        let format = if self.lcov_format == "2" {
            LcovFormat::V2
        } else {
            LcovFormat::V1
        };
        Ok(MergePlan {
            inputs,
            build: self.build,
            output: self.output,
            json: self.json,
            write: WriteOptions {
                format,
                per_capture: self.per_capture,
            },
            rewrite: SourceRewrite {
                map: map.clone(),
                filter,
                base: Some(base),
            },
            map,
            keep_going: self.keep_going,
        })
    }
}

/// Reads one tracefile or JSON input and gives it the capture name(s).
fn read_input(path: &Path, name: &Name, is_json: bool) -> Result<Coverage> {
    let file = File::open(path).with_context(|| format!("failed to open {}", path.display()))?;
    let mut cov = if is_json {
        json::read(BufReader::new(file))
            .with_context(|| format!("failed to read covnet JSON {}", path.display()))?
    } else {
        lcov::read(BufReader::new(file), path, &name.name).with_context(|| {
            format!(
                "failed to read tracefile {}\n(hint: inputs are lcov tracefiles or capture directories; --keep-going skips bad ones)",
                path.display()
            )
        })?
    };
    if cov.captures.is_empty() {
        cov.captures.push(name.name.clone());
        covnet_merger::merge::attribute_single(&mut cov);
    } else if name.explicit {
        // --name replaces a single test name and prefixes several.
        if let [only] = cov.captures.as_mut_slice() {
            *only = name.name.clone();
        } else {
            for c in &mut cov.captures {
                *c = format!("{}/{c}", name.name);
            }
        }
    }
    Ok(cov)
}

/// Writes `cov` to `path` ("-" = stdout) with `write`.
fn write_output(
    path: &Path,
    what: &str,
    write: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<()> {
    if path == Path::new("-") {
        let stdout = io::stdout();
        let mut out = BufWriter::new(stdout.lock());
        write(&mut out)?;
        out.flush()?;
        return Ok(());
    }
    let file = File::create(path)
        .with_context(|| format!("failed to create {what} {}", path.display()))?;
    let mut out = BufWriter::new(file);
    write(&mut out).with_context(|| format!("failed to write {what} {}", path.display()))?;
    out.flush()
        .with_context(|| format!("failed to write {what} {}", path.display()))?;
    Ok(())
}

/// Solves the capture directories of `plan` (all at once, so the same object
/// across captures is solved from summed counters).
fn merge_captures(
    plan: &MergePlan,
    attribute: bool,
    problems: &mut Vec<String>,
) -> Result<Option<Coverage>> {
    let dirs: Vec<CaptureDir> = plan
        .inputs
        .iter()
        .filter_map(|i| match i {
            Input::Captures(c) => Some(c.clone()),
            _ => None,
        })
        .collect();
    let Some(build) = plan.build.as_deref() else {
        return Ok(None);
    };
    if dirs.is_empty() {
        return Ok(None);
    }
    let cplan = capture::plan(build, &dirs, &plan.map).with_context(|| {
        format!(
            "failed to read build directory {}\n(hint: --build names the directory holding the .gcno files)",
            build.display()
        )
    })?;
    for path in &cplan.empty {
        eprintln!(
            "warning: {} is empty (its program was killed while writing it?): counted as not executed",
            path.display()
        );
    }
    let hint_no_notes = "(hint: --build must be the tree the program was compiled in; if the \
                         .gcda paths differ from it, add --path-map GUEST_PREFIX=BUILD_PREFIX)";
    if !cplan.problems.is_empty() {
        let list = render_errors(&cplan.problems);
        if !plan.keep_going {
            bail!(
                "failed to pair {} capture file(s):\n{list}{hint_no_notes}\n(hint: --keep-going merges the rest)",
                cplan.problems.len()
            );
        }
        problems.push(format!("{list}{hint_no_notes}"));
    }
    // Without per-capture output, pool the captures: same combined counts,
    // one solve per object instead of one per capture.
    let cplan = if attribute {
        cplan
    } else {
        cplan.pooled("merged")
    };
    let outcome = capture::run_gcov(&cplan, &plan.rewrite, plan.keep_going);
    if !outcome.errors.is_empty() {
        let list = render_errors(&outcome.errors);
        let hint = "(hint: a stamp or checksum mismatch means the program was rebuilt after \
                    the run; re-run it or remove the stale .gcda files)";
        if !plan.keep_going {
            bail!(
                "failed to read {} object(s):\n{list}{hint}\n(hint: --keep-going merges the rest)",
                outcome.errors.len()
            );
        }
        problems.push(format!("{list}{hint}"));
    }
    Ok(Some(outcome.coverage))
}

/// Error lines with their causes, one block per error.
fn render_errors<E: std::error::Error>(errors: &[E]) -> String {
    let mut out = String::new();
    for e in errors {
        out.push_str("  - ");
        out.push_str(&e.to_string());
        let mut src = e.source();
        while let Some(s) = src {
            out.push_str(": ");
            out.push_str(&s.to_string());
            src = s.source();
        }
        out.push('\n');
    }
    out
}

/// Runs `covnet merge`.
pub fn merge(args: MergeArgs) -> Result<ExitCode> {
    let plan = args.resolve()?;
    let mut problems: Vec<String> = Vec::new();
    // Capture names in input order, so the output lists inputs as given.
    let mut parts: Vec<(usize, Coverage)> = Vec::new();
    // Tracefiles first: they are quick to read, so a bad one fails fast.
    for (pos, input) in plan.inputs.iter().enumerate() {
        let (path, name, is_json) = match input {
            Input::Captures(_) => continue,
            Input::Tracefile { path, name } => (path, name, false),
            Input::Json { path, name } => (path, name, true),
        };
        match read_input(path, name, is_json) {
            Ok(cov) => {
                let cov = plan
                    .rewrite
                    .apply(cov)
                    .with_context(|| format!("failed to merge {}", path.display()))?;
                parts.push((pos, cov));
            }
            Err(e) if plan.keep_going => problems.push(format!("  - {e:#}")),
            Err(e) => return Err(e),
        }
    }
    let attribute = plan.write.per_capture || plan.json.is_some();
    let captures = merge_captures(&plan, attribute, &mut problems)?;
    let mut names: Vec<String> = Vec::new();
    let mut push_name = |n: &String| {
        if !names.contains(n) {
            names.push(n.clone());
        }
    };
    for (pos, input) in plan.inputs.iter().enumerate() {
        match input {
            Input::Captures(c) => push_name(&c.name),
            _ => {
                for (_, cov) in parts.iter().filter(|(p, _)| *p == pos) {
                    cov.captures.iter().for_each(&mut push_name);
                }
            }
        }
    }
    // Without attribution in the outputs, keep only combined counts: memory
    // then grows with the lines, not with lines times inputs.
    let strip = |cov: Coverage| {
        if attribute {
            cov
        } else {
            merge::without_attribution(cov)
        }
    };
    let mut total = Coverage {
        captures: if attribute { names } else { Vec::new() },
        files: Default::default(),
    };
    if let Some(c) = captures {
        total = merge_coverage(total, strip(c)).context("failed to merge captures")?;
    }
    for (_, cov) in parts {
        total = merge_coverage(total, strip(cov)).context("failed to merge tracefiles")?;
    }
    write_output(&plan.output, "tracefile", |out| {
        lcov::write(&total, out, plan.write).map_err(Into::into)
    })?;
    if let Some(path) = &plan.json {
        write_output(path, "JSON file", |out| {
            json::write(&total, out).map_err(Into::into)
        })?;
    }
    let mut err = io::stderr().lock();
    print_summary(&mut err, &total.summary())?;
    if problems.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(err, "warning: some inputs were skipped (--keep-going):")?;
    for p in &problems {
        write!(err, "{p}")?;
        if !p.ends_with('\n') {
            writeln!(err)?;
        }
    }
    Ok(ExitCode::from(exit::PARTIAL))
}

/// Formats a rate the way `lcov --summary` does (never 0.0% for some hits,
/// never 100.0% for some misses).
fn rate(hit: u64, found: u64) -> String {
    if found == 0 {
        return "-".to_owned();
    }
    let r = 100.0 * hit as f64 / found as f64;
    let mut s = format!("{r:.1}");
    if hit > 0 && s == "0.0" {
        s = "0.1".to_owned();
    } else if hit < found && s == "100.0" {
        s = "99.9".to_owned();
    }
    format!("{s}%")
}

fn print_summary(out: &mut dyn Write, s: &Summary) -> io::Result<()> {
    writeln!(out, "Summary coverage rate:")?;
    for (label, hit, found, unit) in [
        ("lines......", s.lines_hit, s.lines_found, "lines"),
        (
            "functions..",
            s.functions_hit,
            s.functions_found,
            "functions",
        ),
        ("branches...", s.branches_hit, s.branches_found, "branches"),
    ] {
        if found == 0 {
            writeln!(out, "  {label}: no data found")?;
        } else {
            writeln!(
                out,
                "  {label}: {} ({hit} of {found} {unit})",
                rate(hit, found)
            )?;
        }
    }
    Ok(())
}

/// Runs `covnet summary`.
pub fn summary(args: SummaryArgs) -> Result<ExitCode> {
    let mut total = Coverage::default();
    for path in &args.files {
        let is_json = path.extension().is_some_and(|e| e == "json");
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let cov = read_input(
            path,
            &Name {
                name,
                explicit: false,
            },
            is_json,
        )?;
        total = merge_coverage(total, cov)
            .with_context(|| format!("failed to merge {}", path.display()))?;
    }
    print_summary(&mut io::stdout().lock(), &total.summary())?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_like_lcov() {
        assert_eq!(rate(0, 0), "-");
        assert_eq!(rate(1, 3), "33.3%");
        assert_eq!(rate(1, 10000), "0.1%");
        assert_eq!(rate(9999, 10000), "99.9%");
        assert_eq!(rate(5, 5), "100.0%");
    }

    #[test]
    fn default_names_disambiguate() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let a = tmp.path().join("a/coverage");
        let b = tmp.path().join("b/coverage");
        std::fs::create_dir_all(&a).expect("mkdir");
        std::fs::create_dir_all(&b).expect("mkdir");
        let f = tmp.path().join("x.info");
        std::fs::write(&f, "").expect("write");
        let names = default_names(&[a, b, f]);
        assert_eq!(names, vec!["a/coverage", "b/coverage", "x"]);
    }
}
