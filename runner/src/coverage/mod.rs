//! Coverage of a run: where guests write their gcov data, pulling it off
//! every machine in parallel, and turning the captures into one exact,
//! attributed report.
//!
//! With coverage on, every machine's programs run with
//! `GCOV_PREFIX=`[`GUEST_PREFIX`], so `.gcda` files land below it under
//! their full build path. Collecting a machine stops its services (those
//! covnet can flush dump their counts first, then all get SIGTERM so the
//! rest write theirs at exit; survivors are named), pulls the tree
//! through the machine's shell into `<dest>/<capture>/` and verifies every
//! file. The captures then merge by summing raw counters and solving once
//! (`covnet-merger`), and `covnet-reporter` writes the report.

pub mod blind;
pub mod differential;
pub mod flush;
pub mod identity;
pub mod inputs;
pub mod notices;
pub mod settings;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use covnet_collector::{Collector, Shell, ShellError};
use covnet_merger::capture::{CaptureDir, NotesSearch};
use covnet_merger::model::Coverage;
use covnet_merger::paths::{PathMap, SourceRewrite};
use covnet_merger::pipeline::{self, GatherError, Notice, Request};

use crate::machine::{Machine, MachineError, Output};

/// Where guests write `.gcda` files (their `GCOV_PREFIX`).
pub const GUEST_PREFIX: &str = "/covnet/gcov";

/// Where guests write clang's raw profiles (their `LLVM_PROFILE_FILE`):
/// below [`GUEST_PREFIX`], so they are pulled with the `.gcda` files, one
/// file per process (`%p`) and instrumented binary (`%m`).
pub const GUEST_LLVM_PROFILE: &str = "/covnet/gcov/llvm/%p-%m.profraw";

/// The pid files of a machine's services, written by the guest init.
pub const SERVICE_PIDFILES: &str = "/run/covnet/*.pid";

/// How long services get to exit after SIGTERM before they count as
/// survivors (whose counts are then missing).
pub const FLUSH_GRACE: Duration = Duration::from_secs(10);

/// A machine seen as a [`Shell`] for the collector. Errors keep their
/// kind: a command timeout is [`ShellError::Timeout`], any other machine
/// error is [`ShellError::Transport`] holding the [`MachineError`] itself.
pub struct MachineShell<'a>(pub &'a dyn Machine);

impl Shell for MachineShell<'_> {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn run(&self, command: &str, timeout: Duration) -> Result<Output, ShellError> {
        self.0.execute(command, timeout).map_err(|err| match err {
            MachineError::CommandTimeout {
                command, timeout, ..
            } => ShellError::Timeout {
                command,
                after: timeout,
            },
            other => ShellError::Transport(Box::new(other)),
        })
    }
}

/// What collecting one machine gave.
#[derive(Debug, Clone)]
pub struct MachineCapture {
    /// Capture name: the machine's name, or `<machine>@<phase>`.
    pub name: String,
    /// The machine.
    pub machine: String,
    /// Local directory holding the pulled `.gcda` tree.
    pub dir: PathBuf,
    /// What was pulled and flushed, or why nothing could be.
    pub outcome: Result<Collected, CollectFailure>,
}

/// A successful collection: the collector's pull and what the flush left
/// out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Collected {
    /// The files pulled (the collector's own record).
    pub pulled: covnet_collector::Pulled,
    /// Services that were not flushed and did not exit after SIGTERM:
    /// their counts are missing.
    pub survivors: Vec<String>,
    /// Services left running that could not be flushed, with why: their
    /// counts so far are only in a later capture.
    pub unflushed: Vec<(String, String)>,
}

impl Collected {
    /// How many files were pulled (`.gcda` and `.profraw`).
    pub fn files(&self) -> usize {
        self.pulled.files.len()
    }

    /// How many of each kind were pulled.
    pub fn kinds(&self) -> DataFiles {
        DataFiles::of(&self.pulled.files)
    }

    /// Their total size in bytes.
    pub fn bytes(&self) -> u64 {
        self.pulled.bytes
    }
}

/// How many coverage data files of each kind: gcc's `.gcda` and clang's
/// `.profraw` (said as such, so a clang-only machine is not "2 .gcda").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DataFiles {
    /// `.gcda` files.
    pub gcda: usize,
    /// `.profraw` files.
    pub profraw: usize,
}

impl DataFiles {
    /// Counts the files among `paths` by extension.
    pub fn of<S: AsRef<str>>(paths: &[S]) -> DataFiles {
        let mut n = DataFiles::default();
        for p in paths {
            if p.as_ref().ends_with(".profraw") {
                n.profraw += 1;
            } else if p.as_ref().ends_with(".gcda") {
                n.gcda += 1;
            }
        }
        n
    }
}

impl std::ops::Add for DataFiles {
    type Output = DataFiles;

    fn add(self, other: DataFiles) -> DataFiles {
        DataFiles {
            gcda: self.gcda + other.gcda,
            profraw: self.profraw + other.profraw,
        }
    }
}

impl std::iter::Sum for DataFiles {
    fn sum<I: Iterator<Item = DataFiles>>(iter: I) -> DataFiles {
        iter.fold(DataFiles::default(), std::ops::Add::add)
    }
}

/// `3 .gcda file(s)`, `2 .profraw file(s)`, `1 .gcda and 2 .profraw
/// file(s)`; without any `.profraw`, always the first form.
impl std::fmt::Display for DataFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.gcda, self.profraw) {
            (g, 0) => write!(f, "{g} .gcda file(s)"),
            (0, p) => write!(f, "{p} .profraw file(s)"),
            (g, p) => write!(f, "{g} .gcda and {p} .profraw file(s)"),
        }
    }
}

/// Why a machine's coverage could not be collected; typed, so a command
/// timeout stays a timeout up to whoever renders it (shared, so captures
/// can be cloned into events).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum CollectFailure {
    /// The machine had crashed or stopped.
    #[error("the machine was not running at collection time (crashed or stopped); its coverage is missing")]
    NotRunning,
    /// The collector failed (flush, listing, pull, verification, reset).
    #[error("{}", notices::chain(.0.as_ref()))]
    Collector(Arc<covnet_collector::CollectError>),
    /// The local capture directory could not be created.
    #[error("failed to create {}: {source}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: Arc<std::io::Error>,
    },
    /// The collection thread panicked (a bug).
    #[error("internal error: the collection thread panicked")]
    Panicked,
}

/// Equal when they say the same (the errors inside are not comparable).
impl PartialEq for CollectFailure {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

impl Eq for CollectFailure {}

impl From<covnet_collector::CollectError> for CollectFailure {
    fn from(e: covnet_collector::CollectError) -> Self {
        CollectFailure::Collector(Arc::new(e))
    }
}

/// How to collect.
#[derive(Debug, Clone)]
pub struct CollectOptions {
    /// Stop services first: flush those covnet can flush, then SIGTERM
    /// all, so they write their data.
    pub stop_services: bool,
    /// Delete the machines' `.gcda` files after pulling (phases).
    pub reset: bool,
    /// Longest time one command on a machine may take.
    pub command_timeout: Duration,
    /// Phase name appended to capture names (`server@phase`).
    pub phase: Option<String>,
}

/// Collects every machine in parallel into `dest/<capture name>/`. A
/// machine that is not running or fails is reported in its
/// [`MachineCapture::outcome`]; the others are unaffected.
pub fn collect_all(
    machines: &[Arc<dyn Machine>],
    dest: &Path,
    opts: &CollectOptions,
) -> Vec<MachineCapture> {
    std::thread::scope(|s| {
        let handles: Vec<_> = machines
            .iter()
            .map(|m| s.spawn(move || collect_one(m.as_ref(), dest, opts)))
            .collect();
        handles
            .into_iter()
            .zip(machines)
            .map(|(h, m)| {
                h.join().unwrap_or_else(|_| MachineCapture {
                    name: capture_name(m.name(), opts.phase.as_deref()),
                    machine: m.name().to_string(),
                    dir: dest.join(m.name()),
                    outcome: Err(CollectFailure::Panicked),
                })
            })
            .collect()
    })
}

/// The name of the capture of `machine` in `phase` (`<machine>@<phase>`).
pub fn capture_name(machine: &str, phase: Option<&str>) -> String {
    match phase {
        Some(p) => format!("{machine}@{p}"),
        None => machine.to_string(),
    }
}

/// Collects one machine.
pub fn collect_one(machine: &dyn Machine, dest: &Path, opts: &CollectOptions) -> MachineCapture {
    let name = capture_name(machine.name(), opts.phase.as_deref());
    let dir = dest.join(&name);
    let outcome = if machine.is_running() {
        pull(machine, &dir, opts)
    } else {
        Err(CollectFailure::NotRunning)
    };
    MachineCapture {
        name,
        machine: machine.name().to_string(),
        dir,
        outcome,
    }
}

fn pull(
    machine: &dyn Machine,
    dir: &Path,
    opts: &CollectOptions,
) -> Result<Collected, CollectFailure> {
    // No gzip on covnet's own machines: their channel is local, and
    // busybox's `gzip -1` in a TCG guest (about 11 MiB/s on mostly-zero
    // .gcda) is far slower than sending the files raw (about 130 MiB/s),
    // see bench/RESULTS.md "collect". `covnet collect --ssh` compresses.
    let collector = Collector::new(MachineShell(machine), GUEST_PREFIX, opts.command_timeout)
        .with_compression(false);
    let mut got = Collected::default();
    if opts.stop_services {
        // Flushable services dump first: SIGTERM kills a program without a
        // handler that calls `exit` before libgcov writes anything. One
        // that does exit then adds what ran since to the same files.
        let flushed = collector.signal_flush(
            SERVICE_PIDFILES,
            crate::coverage::flush::FLUSH_SIGNAL,
            FLUSH_GRACE,
        )?;
        let report = collector.flush(SERVICE_PIDFILES, FLUSH_GRACE)?;
        // A flushed service that ignores SIGTERM has written its counts.
        got.survivors = report
            .survivors
            .into_iter()
            .filter(|s| !flushed.stopped.contains(s))
            .collect();
    } else {
        // Services keep running: those with a flush thread (covnet's
        // preloaded shim, or covnet_flush.c) write their counts so far.
        let report = collector.signal_flush(
            SERVICE_PIDFILES,
            crate::coverage::flush::FLUSH_SIGNAL,
            FLUSH_GRACE,
        )?;
        got.unflushed = crate::coverage::flush::unflushed(&report);
    }
    std::fs::create_dir_all(dir).map_err(|e| CollectFailure::CreateDir {
        path: dir.to_owned(),
        source: Arc::new(e),
    })?;
    got.pulled = collector.pull(dir)?;
    if opts.reset {
        collector.reset()?;
    }
    Ok(got)
}

/// Deletes every machine's `.gcda` files (`m.reset_coverage()`).
pub fn reset(machine: &dyn Machine, timeout: Duration) -> Result<(), CollectFailure> {
    Collector::new(MachineShell(machine), GUEST_PREFIX, timeout)
        .reset()
        .map_err(CollectFailure::from)
}

/// The merged coverage of a run and what went wrong on the way.
#[derive(Debug, Default)]
pub struct Merged {
    /// Exact combined counts with per-capture attribution.
    pub coverage: Coverage,
    /// Problems that cost some coverage (a machine down, a service that
    /// survived, a bad or unpaired file), rendered for the report and the
    /// terminal.
    pub notes: Vec<String>,
    /// The merger's notices, typed (unpaired files, skipped inputs,
    /// untested GCC versions).
    pub notices: Vec<Notice>,
    /// Whether some pulled `.gcda` file was left out (unpaired or
    /// unreadable): the run's coverage is incomplete.
    pub skipped_inputs: bool,
    /// The `.gcno` files the captures paired with: the build measured
    /// ([`identity::BuildIdentity`]).
    pub objects: Vec<PathBuf>,
}

/// How a run's captures become coverage: where the notes are, and the
/// path rewriting and filters of the spec's `[coverage]` table or the
/// command line.
#[derive(Debug, Clone)]
pub struct MergeSettings {
    /// Where each `.gcda`'s `.gcno` is looked for.
    pub search: NotesSearch,
    /// Build-path rewriting before pairing.
    pub map: PathMap,
    /// Source-path rewriting and filters.
    pub rewrite: SourceRewrite,
    /// clang-instrumented binaries whose coverage mappings the captures'
    /// `.profraw` files are read against (none: `.profraw` files are not
    /// read).
    pub objects: Vec<PathBuf>,
}

/// Merges the successful captures as `settings` says, keeping going past
/// bad or unpaired files (a failed machine never loses the others'
/// coverage). Failed captures become notes. Fails when nothing at all
/// could be paired or the result is empty: never an empty success.
pub fn merge(captures: &[MachineCapture], settings: &MergeSettings) -> Result<Merged, GatherError> {
    let mut notes = Vec::new();
    let mut dirs = Vec::new();
    for c in captures {
        match &c.outcome {
            Ok(p) => {
                for s in &p.survivors {
                    notes.push(format!(
                        "{}: service `{s}` did not exit after SIGTERM; its coverage is missing",
                        c.name
                    ));
                }
                for (s, why) in &p.unflushed {
                    notes.push(format!(
                        "{}: service `{s}` could not be flushed: {why}; its counts appear only in the final capture `{}`",
                        c.name, c.machine
                    ));
                }
                dirs.push(CaptureDir {
                    name: c.name.clone(),
                    root: c.dir.clone(),
                });
            }
            Err(why) => notes.push(format!("{}: {why}", c.name)),
        }
    }
    let gcov = pipeline::gather(&Request {
        captures: dirs.clone(),
        search: settings.search.clone(),
        map: settings.map.clone(),
        rewrite: settings.rewrite.clone(),
        keep_going: true,
        attribute: true,
    });
    let gathered = match gcov {
        Ok(g) => g,
        // Machines with clang-built programs only: nothing for gcov.
        Err(GatherError::Empty { .. }) if !settings.objects.is_empty() => Default::default(),
        Err(e) => return Err(e),
    };
    notes.extend(gathered.notices.iter().map(ToString::to_string));
    let mut skipped_inputs = gathered.skipped_inputs();
    let mut coverage = gathered.coverage;
    if !settings.objects.is_empty() {
        let llvm = merge_llvm(&dirs, settings, &coverage, &mut notes)?;
        skipped_inputs |= llvm.1;
        coverage = covnet_merger::merge::merge(coverage, llvm.0).map_err(|e| {
            GatherError::Unreadable(vec![covnet_merger::capture::CaptureError::Merge(e)])
        })?;
        if coverage.files.is_empty() {
            return Err(GatherError::Empty {
                why: "neither the .gcda nor the .profraw files cover any source file".to_owned(),
            });
        }
    }
    Ok(Merged {
        skipped_inputs,
        coverage,
        notes,
        notices: gathered.notices,
        objects: gathered.notes,
    })
}

/// Reads the captures' `.profraw` files against `settings.objects` (as
/// `llvm-cov export` over `llvm-profdata merge` does), keeping going past
/// bad profiles; files that `gcov` covers too keep gcc's counts. Problems
/// become notes; the flag says whether profiles were left out.
fn merge_llvm(
    dirs: &[CaptureDir],
    settings: &MergeSettings,
    gcov: &Coverage,
    notes: &mut Vec<String>,
) -> Result<(Coverage, bool), GatherError> {
    use covnet_merger::llvm;
    let mut sets = Vec::new();
    let mut skipped = false;
    for d in dirs {
        let (profiles, errors) = llvm::find_profiles(&d.root);
        for e in errors {
            notes.push(format!("{}: skipped: {}", d.name, notices::chain(&e)));
            skipped = true;
        }
        sets.push(llvm::ProfileSet {
            name: d.name.clone(),
            profiles,
        });
    }
    let g = llvm::gather(&settings.objects, &sets, true, true).map_err(GatherError::Llvm)?;
    for e in &g.skipped {
        notes.push(format!("skipped: {}", notices::chain(e)));
        skipped = true;
    }
    for (why, names) in [
        (
            "another structural hash (another build)",
            &g.dropped.hash_mismatch,
        ),
        ("counters the profiles lack", &g.dropped.unevaluable),
    ] {
        if !names.is_empty() {
            notes.push(format!(
                "{} function(s) left out, as llvm-cov leaves them out, for {why}: {}",
                names.len(),
                names.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    let mut cov = settings.rewrite.apply(g.coverage).map_err(|e| {
        GatherError::Unreadable(vec![covnet_merger::capture::CaptureError::Merge(e)])
    })?;
    for file in llvm::set_aside_mixed(gcov, &mut cov) {
        notes.push(format!(
            "{file} is instrumented both by gcc --coverage and by clang -fprofile-instr-generate: gcc's counts are reported, clang's left out rather than added to them"
        ));
    }
    Ok((cov, skipped))
}

/// Where [`write_reports`] put a run's coverage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportPaths {
    /// The HTML site's index page.
    pub html: PathBuf,
    /// Combined lcov tracefile.
    pub lcov: PathBuf,
    /// lcov tracefile with one `TN` section per capture.
    pub lcov_per_capture: PathBuf,
    /// Cobertura XML.
    pub cobertura: PathBuf,
    /// JSON report (totals, files, captures).
    pub json: PathBuf,
}

/// Writes a run's coverage into `out`: `report/index.html`, `coverage.info`
/// (combined), `coverage-per-machine.info` (a `TN` section per capture),
/// `cobertura.xml` and `coverage.json` (the reporter's
/// [`covnet_reporter::outputs::write_all_with`], as `covnet report` uses
/// it), with the differential coverage `delta` in the JSON and the HTML
/// when there is one.
pub fn write_reports(
    merged: &Merged,
    info: &covnet_reporter::RunInfo,
    out: &Path,
    format: covnet_merger::lcov::LcovFormat,
    delta: Option<&covnet_reporter::diff::Differential>,
) -> Result<ReportPaths, covnet_reporter::Error> {
    let outputs = covnet_reporter::outputs::Outputs::run_layout(out, format);
    covnet_reporter::outputs::write_all_with(&merged.coverage, info, &outputs, delta)?;
    Ok(ReportPaths {
        html: out.join("report").join("index.html"),
        lcov: out.join("coverage.info"),
        lcov_per_capture: out.join("coverage-per-machine.info"),
        cobertura: out.join("cobertura.xml"),
        json: out.join("coverage.json"),
    })
}

/// The guest environment that makes instrumented programs write their
/// `.gcda` files below [`GUEST_PREFIX`], under their full build path, and
/// clang-instrumented ones their raw profiles at [`GUEST_LLVM_PROFILE`].
pub fn guest_env() -> Vec<(String, String)> {
    vec![
        ("GCOV_PREFIX".to_owned(), GUEST_PREFIX.to_owned()),
        ("GCOV_PREFIX_STRIP".to_owned(), "0".to_owned()),
        (
            "LLVM_PROFILE_FILE".to_owned(),
            GUEST_LLVM_PROFILE.to_owned(),
        ),
    ]
}

/// The report formats a run writes on request (SonarQube, Coveralls, gcovr
/// JSON, CSV) as reporter outputs: relative paths inside `dir`, absolute
/// ones as given; Coveralls' source names relative to the current
/// directory.
pub fn format_outputs(
    formats: &crate::spec::ReportFormats,
    dir: &Path,
) -> covnet_reporter::outputs::Outputs {
    let at = |p: &Option<PathBuf>| p.as_ref().map(|p| dir.join(p));
    covnet_reporter::outputs::Outputs {
        sonarqube: at(&formats.sonarqube),
        coveralls: at(&formats.coveralls),
        gcovr_json: at(&formats.gcovr_json),
        csv: at(&formats.csv),
        source_root: std::env::current_dir().ok(),
        ..Default::default()
    }
}

/// The warning for source files the Coveralls JSON had to leave out, if
/// any.
pub fn coveralls_warning(written: &covnet_reporter::outputs::Written) -> Option<String> {
    let (first, why) = written.coveralls_missing.first()?;
    Some(format!(
        "the Coveralls JSON leaves out {} source file(s) it could not read or match (first: {first}: {why})\n  (hint: run covnet where the source paths resolve, or rewrite them with --path-map)",
        written.coveralls_missing.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::DataFiles;

    #[test]
    fn data_files_say_their_kinds() {
        let n = DataFiles::of(&[
            "a/x.gcda",
            "llvm/1-2_0.profraw",
            "b/y.gcda",
            ".covnet-flush-7",
        ]);
        assert_eq!(
            n,
            DataFiles {
                gcda: 2,
                profraw: 1
            }
        );
        assert_eq!(n.to_string(), "2 .gcda and 1 .profraw file(s)");
        let none: [&str; 0] = [];
        assert_eq!(DataFiles::of(&none).to_string(), "0 .gcda file(s)");
        assert_eq!(
            DataFiles {
                gcda: 0,
                profraw: 3
            }
            .to_string(),
            "3 .profraw file(s)"
        );
        assert_eq!(
            [n, n].into_iter().sum::<DataFiles>(),
            DataFiles {
                gcda: 4,
                profraw: 2
            }
        );
    }
}
