//! `covnet merge` and `covnet summary`.
//!
//! `covnet merge` accepts capture directories (trees of `.gcda`, each paired
//! with the `.gcno` at its own build path on this host, else in the
//! `--build` trees) and lcov tracefiles (or covnet JSON) alike.
//! Captures of the same object are merged like gcov on `gcov-tool merge`
//! output (arc counters summed, then solved once); tracefiles and distinct
//! objects are merged like `lcov -a` (counts added). Each input keeps its
//! name for attribution (`--per-capture`, `--json`).
//!
//! With `--object BINARY` (programs and shared libraries built with clang
//! `-fprofile-instr-generate -fcoverage-mapping`), the `.profraw` files in
//! the capture directories, and those given as inputs, are read against
//! the binaries' coverage mappings as `llvm-cov export --instr-profile`
//! reads the `llvm-profdata merge` of them; a source file that gcc's and
//! clang's instrumentation both cover keeps gcc's counts, with a warning,
//! instead of adding counts of two different kinds.
//!
//! Arguments are parsed in two stages: clap fills [`MergeArgs`], then
//! [`MergeArgs::resolve`] validates them and looks at the inputs on disk.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use covnet_merger::capture::{CaptureDir, NotesSearch};
use covnet_merger::json;
use covnet_merger::lcov::{self, WriteOptions};
use covnet_merger::llvm;
use covnet_merger::merge::{self, merge as merge_coverage};
use covnet_merger::model::{Coverage, Summary};
use covnet_merger::paths::{PathMap, SourceRewrite};
use covnet_merger::pipeline::{self, GatherError, Gathered, Request};
use covnet_reporter::summary::Thresholds;
use covnet_runner::spec::CoverageSettings;

use super::coverage_opts::{self, CoverageOpts};
use super::exit;

/// Arguments of `covnet merge`.
#[derive(clap::Args, Debug)]
pub struct MergeArgs {
    /// Capture directories (trees of .gcda files) and lcov tracefiles (or
    /// `.json` files: covnet coverage JSON, or gcovr JSON, told apart by
    /// gcovr's `gcovr/format_version` key) to merge. Relative source paths
    /// in tracefiles are resolved against the current directory.
    /// A capture directory may also hold `.profraw` files, and a
    /// `.profraw` file is an input of its own; both need `--object`.
    #[arg(required = true, value_name = "CAPTURE_DIR|TRACEFILE|FILE.profraw")]
    pub inputs: Vec<PathBuf>,
    /// A program or shared library built with clang
    /// -fprofile-instr-generate -fcoverage-mapping whose coverage mapping
    /// the `.profraw` files are read against (repeatable).
    #[arg(long = "object", value_name = "BINARY")]
    pub objects: Vec<PathBuf>,
    /// Build trees, path maps, filters, thresholds, lcov dialect.
    #[command(flatten)]
    pub coverage: CoverageOpts,
    /// Output lcov tracefile ("-" for standard output).
    #[arg(short, long, value_name = "OUT.info")]
    pub output: PathBuf,
    /// Write one TN section per capture (for `genhtml --show-details`).
    #[arg(long)]
    pub per_capture: bool,
    /// Also write the merged coverage, with per-capture counts, as JSON.
    #[arg(long, value_name = "OUT.json")]
    pub json: Option<PathBuf>,
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
    /// lcov tracefiles (or covnet or gcovr JSON files); several are merged
    /// first.
    #[arg(required = true, value_name = "FILE.info")]
    pub files: Vec<PathBuf>,
}

/// One input, classified.
#[derive(Debug)]
enum Input {
    Captures(CaptureDir),
    Profraw { path: PathBuf, name: String },
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
    objects: Vec<PathBuf>,
    search: NotesSearch,
    output: PathBuf,
    json: Option<PathBuf>,
    write: WriteOptions,
    map: PathMap,
    rewrite: SourceRewrite,
    thresholds: Thresholds,
    rules: covnet_merger::exclude::Rules,
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
            } else if path.extension().is_some_and(|e| e == "profraw") {
                if self.objects.is_empty() {
                    bail!(
                        "raw profile {} given without --object\n(hint: pass the instrumented programs and shared libraries with --object BINARY)",
                        path.display()
                    );
                }
                Input::Profraw {
                    path: path.clone(),
                    name,
                }
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
        let settings = coverage_opts::resolve(&self.coverage.over(&CoverageSettings::default()))?;
        let base = std::env::current_dir().context("failed to get the current directory")?;
        Ok(MergePlan {
            inputs,
            objects: self.objects,
            search: NotesSearch::host_then(settings.build),
            output: self.output,
            json: self.json,
            write: WriteOptions {
                format: settings.lcov_format,
                per_capture: self.per_capture,
            },
            rewrite: SourceRewrite {
                map: settings.map.clone(),
                filter: settings.filter,
                base: Some(base),
            },
            map: settings.map,
            thresholds: settings.thresholds,
            rules: settings.rules,
            keep_going: self.keep_going,
        })
    }
}

/// Reads one tracefile or JSON input and gives it the capture name(s).
fn read_input(path: &Path, name: &Name, is_json: bool) -> Result<Coverage> {
    let file = File::open(path).with_context(|| format!("failed to open {}", path.display()))?;
    let mut cov = if is_json {
        let bytes =
            std::fs::read(path).with_context(|| format!("failed to read {}", path.display()))?;
        if covnet_reporter::gcovr_json::looks_like(bytes.get(..256).unwrap_or(&bytes)) {
            covnet_reporter::gcovr_json::read_slice(&bytes, path)?
        } else {
            json::from_slice(&bytes)
                .with_context(|| format!("failed to read covnet JSON {}", path.display()))?
        }
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
/// across captures is solved from summed counters); `None` without any.
fn merge_captures(plan: &MergePlan, attribute: bool) -> Result<Option<Gathered>, GatherError> {
    let dirs: Vec<CaptureDir> = plan
        .inputs
        .iter()
        .filter_map(|i| match i {
            Input::Captures(c) => Some(c.clone()),
            _ => None,
        })
        .collect();
    if dirs.is_empty() {
        return Ok(None);
    }
    pipeline::gather(&Request {
        captures: dirs,
        search: plan.search.clone(),
        map: plan.map.clone(),
        rewrite: plan.rewrite.clone(),
        keep_going: plan.keep_going,
        attribute,
    })
    .map(Some)
}

/// Reads the LLVM profiles of `plan` (in its capture directories and
/// given as files) against its `--object` binaries; `None` without
/// `--object`. The flag is true when profiles were skipped
/// (`--keep-going`). Files that `gcov` (the capture directories' gcc
/// coverage) covers too are left out with a warning.
fn merge_llvm(
    plan: &MergePlan,
    attribute: bool,
    gcov: Option<&Coverage>,
) -> Result<Option<(Coverage, bool)>> {
    if plan.objects.is_empty() {
        return Ok(None);
    }
    let mut sets = Vec::new();
    let mut skipped = false;
    for input in &plan.inputs {
        match input {
            Input::Captures(c) => {
                let (profiles, errors) = llvm::find_profiles(&c.root);
                for e in errors {
                    if !plan.keep_going {
                        return Err(e.into());
                    }
                    eprintln!("warning: skipped: {}", chain(&e));
                    skipped = true;
                }
                sets.push(llvm::ProfileSet {
                    name: c.name.clone(),
                    profiles,
                });
            }
            Input::Profraw { path, name } => sets.push(llvm::ProfileSet {
                name: name.clone(),
                profiles: vec![path.clone()],
            }),
            _ => {}
        }
    }
    let gathered = match llvm::gather(&plan.objects, &sets, plan.keep_going, attribute) {
        Ok(g) => g,
        Err(e) => {
            let hint = match &e {
                llvm::InputError::Invalid(i) => i.kind.hint(),
                _ => None,
            };
            let hint = hint.map(|h| format!("\n(hint: {h})")).unwrap_or_default();
            let err = anyhow::Error::new(e).context(format!("failed to read LLVM coverage{hint}"));
            return Err(err);
        }
    };
    for e in &gathered.skipped {
        eprintln!("warning: skipped: {}", chain(e));
        skipped = true;
    }
    if gathered.profiles_read == 0 {
        eprintln!("warning: no .profraw file was read: the --object binaries count as never run");
    }
    let dropped = &gathered.dropped;
    if !dropped.hash_mismatch.is_empty() {
        eprintln!(
            "warning: {} function(s) left out, as llvm-cov leaves them out: the profiles hold them with another structural hash (another build): {}",
            dropped.hash_mismatch.len(),
            dropped.hash_mismatch.iter().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    if !dropped.unevaluable.is_empty() {
        eprintln!(
            "warning: {} function(s) left out, as llvm-cov leaves them out: their mapping refers to counters the profiles lack: {}",
            dropped.unevaluable.len(),
            dropped.unevaluable.iter().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    let mut cov = plan
        .rewrite
        .apply(gathered.coverage)
        .context("failed to merge LLVM coverage")?;
    if let Some(g) = gcov {
        for file in llvm::set_aside_mixed(g, &mut cov) {
            eprintln!(
                "warning: {file} is instrumented both by gcc --coverage and by clang -fprofile-instr-generate: gcc's counts are reported, clang's left out rather than added to them"
            );
        }
    }
    Ok(Some((cov, skipped)))
}

/// An error and its causes on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(c) = source {
        s.push_str(&format!(": {c}"));
        source = c.source();
    }
    s
}

/// Runs `covnet merge`.
pub fn merge(args: MergeArgs) -> Result<ExitCode> {
    let bundles = args
        .inputs
        .iter()
        .filter(|p| covnet_runner::suite::bundle::is_bundle(p))
        .count();
    if bundles > 0 && bundles < args.inputs.len() {
        bail!("shard bundles (directories with a manifest.json) merge only with each other\n  (hint: give only the bundles; merge other inputs into the result afterwards)");
    }
    let inputs = args.inputs.clone();
    let plan = args.resolve()?;
    if bundles > 0 {
        return merge_bundles(&inputs, &plan);
    }
    let mut problems: Vec<String> = Vec::new();
    // Capture names in input order, so the output lists inputs as given.
    let mut parts: Vec<(usize, Coverage)> = Vec::new();
    // Tracefiles first: they are quick to read, so a bad one fails fast.
    for (pos, input) in plan.inputs.iter().enumerate() {
        let (path, name, is_json) = match input {
            Input::Captures(_) | Input::Profraw { .. } => continue,
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
    let captures = match merge_captures(&plan, attribute) {
        Ok(c) => c,
        // Capture directories of .profraw files only: nothing for gcov.
        Err(GatherError::Empty { .. }) if !plan.objects.is_empty() => None,
        Err(e) => {
            return Ok(ExitCode::from(coverage_opts::print_gather_error(
                &e,
                coverage_opts::Command::Standalone,
            )))
        }
    };
    if let Some(g) = &captures {
        coverage_opts::print_notices(&g.notices, &plan.search, coverage_opts::Command::Standalone);
    }
    let captures_skipped = captures.as_ref().is_some_and(Gathered::skipped_inputs);
    let captures = captures.map(|g| g.coverage);
    let llvm = merge_llvm(&plan, attribute, captures.as_ref())?;
    let llvm_skipped = llvm.as_ref().is_some_and(|(_, skipped)| *skipped);
    let mut names: Vec<String> = Vec::new();
    let mut push_name = |n: &String| {
        if !names.contains(n) {
            names.push(n.clone());
        }
    };
    for (pos, input) in plan.inputs.iter().enumerate() {
        match input {
            Input::Captures(c) => push_name(&c.name),
            Input::Profraw { name, .. } => push_name(name),
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
    if let Some((c, _)) = llvm {
        total = merge_coverage(total, strip(c)).context("failed to merge LLVM coverage")?;
    }
    if !plan.objects.is_empty() && total.files.is_empty() {
        bail!("no source file has coverage: every input was empty or filtered out");
    }
    for (_, cov) in parts {
        total = merge_coverage(total, strip(cov)).context("failed to merge tracefiles")?;
    }
    let incomplete = !problems.is_empty() || captures_skipped || llvm_skipped;
    finish(total, &plan, |err| {
        if !problems.is_empty() {
            writeln!(err, "warning: some inputs were skipped (--keep-going):")?;
            for p in &problems {
                write!(err, "{p}")?;
                if !p.ends_with('\n') {
                    writeln!(err)?;
                }
            }
        }
        Ok(incomplete)
    })
}

/// Applies the markers, writes the tracefile (and JSON), prints the
/// summary, then what `notes` prints (returning whether the result is
/// incomplete: exit 2), then checks the thresholds (exit 3).
fn finish(
    mut total: Coverage,
    plan: &MergePlan,
    notes: impl FnOnce(&mut dyn Write) -> io::Result<bool>,
) -> Result<ExitCode> {
    super::markers::apply(&mut total, &plan.rules);
    write_output(&plan.output, "tracefile", |out| {
        lcov::write(&total, out, plan.write).map_err(Into::into)
    })?;
    if let Some(path) = &plan.json {
        write_output(path, "JSON file", |out| {
            json::write(&total, out).map_err(Into::into)
        })?;
    }
    let summary = total.summary();
    let mut err = io::stderr().lock();
    print_summary(&mut err, &summary)?;
    if notes(&mut err)? {
        return Ok(ExitCode::from(exit::PARTIAL));
    }
    let shortfalls = plan.thresholds.check(&summary);
    if !shortfalls.is_empty() {
        for s in &shortfalls {
            writeln!(err, "error: {s}")?;
        }
        return Ok(ExitCode::from(exit::BELOW_THRESHOLD));
    }
    Ok(ExitCode::SUCCESS)
}

/// `covnet merge BUNDLE...`: the suite's coverage from its shards' bundles,
/// exactly as one host's run of the whole suite gives it; missing or
/// failed shards and specs are named and make the exit status 2.
fn merge_bundles(bundles: &[PathBuf], plan: &MergePlan) -> Result<ExitCode> {
    // Attribution only where an output shows it: otherwise memory grows
    // with the lines, not with lines times captures.
    let attribute = plan.write.per_capture || plan.json.is_some();
    let merged = covnet_runner::suite::bundle::merge(bundles, attribute)?;
    let captures: usize = merged
        .manifests
        .iter()
        .flat_map(|m| &m.specs)
        .map(|s| s.captures.len())
        .sum();
    let specs: usize = merged.manifests.iter().map(|m| m.specs.len()).sum();
    let total = plan
        .rewrite
        .apply(merged.coverage)
        .context("failed to rewrite the merged bundles' paths")?;
    finish(total, plan, |err| {
        writeln!(
            err,
            "merged {} bundle(s): {specs} spec(s), {captures} capture(s), {} .gcno file(s) of one build",
            merged.manifests.len(),
            merged.build.notes.len()
        )?;
        for n in &merged.notes {
            writeln!(err, "warning: {n}")?;
        }
        Ok(!merged.notes.is_empty())
    })
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
