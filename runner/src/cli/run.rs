//! `covnet run`: boot a spec's network headless, run its test script,
//! report, and tear everything down.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use covnet_runner::diag;
use covnet_runner::events::{self, RunEvent};
use covnet_runner::machine::vm::accel::AccelRequest;
use covnet_runner::run::network::{watch_signals, Received};
use covnet_runner::run::{CoverageOutcome, Interruption, RunPlan, RunRequest, TestResult, Verdict};
use covnet_runner::script::junit::TestSuite;
use covnet_runner::spec::Backend;

use super::coverage_opts::{self, CoverageOpts};
use super::exit;
use super::progress;

/// Arguments of `covnet run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// The spec file (TOML) with machines and a [test] table; or several
    /// specs, directories (every spec below them) and glob patterns: a
    /// suite, run as one (one JUnit file, one combined report, captures
    /// named `<spec>/<machine>`).
    #[arg(required = true, value_name = "SPEC")]
    pub specs: Vec<PathBuf>,
    /// Output directory: failure bundle, copied files (default:
    /// `covnet-out/<spec name>`); for a suite, the shard bundle (default:
    /// `covnet-out/suite`).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Suites: specs run at once on this host (default: one per core for
    /// namespace machines; for VMs, as many as the cores and the available
    /// memory hold for the largest spec).
    #[arg(short = 'j', long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: Option<u16>,
    /// Suites: run only shard K of N: `count:K/N` deals the sorted specs
    /// round robin, `hash:K/N` by a stable hash of each spec's name (a spec
    /// keeps its shard when the suite grows); `K/N` is `count:K/N`. Without
    /// it, Slurm job arrays, Kubernetes Indexed Jobs, Bazel test sharding
    /// and GitLab parallel jobs are followed from their own variables.
    #[arg(long, value_name = "[count:|hash:]K/N")]
    pub partition: Option<covnet_runner::suite::partition::Partition>,
    /// Suites: the number of shards, for engines that do not publish it
    /// (Kubernetes Indexed Jobs: the Job's completions; also COVNET_SHARDS).
    #[arg(long, value_name = "N")]
    pub shards: Option<u32>,
    /// Also write the results as JUnit XML to FILE.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Go on with the next statement after a failed subtest (the run still
    /// fails).
    #[arg(long)]
    pub keep_going: bool,
    /// Run every machine as a VM or as a namespace machine, overriding the
    /// spec (machines that need their own kernel cannot be namespace
    /// machines).
    #[arg(long, value_name = "BACKEND", value_parser = parse_backend)]
    pub backend: Option<Backend>,
    /// Accelerator for every machine, overriding the spec: auto, kvm or tcg.
    #[arg(long, value_name = "ACCEL")]
    pub accel: Option<AccelRequest>,
    /// Don't echo the guests' serial consoles.
    #[arg(long)]
    pub no_console: bool,
    /// Don't draw live progress (steps in progress with their elapsed
    /// time) on a terminal; print only the timestamped lines, as when
    /// stderr is not a terminal or `TERM=dumb`.
    #[arg(long)]
    pub no_progress: bool,
    /// Keep the run directory (sockets, console logs) for inspection.
    #[arg(long)]
    pub keep_run_dir: bool,
    /// Capture every VLAN's traffic into `<out>/pcap/` (a failed run: into
    /// its failure bundle, `<out>/failure/pcap/`).
    #[arg(long)]
    pub pcap: bool,
    /// Boot every VM from scratch: do not restore booted guests from the
    /// snapshot cache, nor save them there (by default a VM image's first
    /// boot saves the booted guest, later boots restore it).
    #[arg(long)]
    pub cold_boot: bool,
    /// Collect gcov data from every machine after the script and write a
    /// combined report (HTML, lcov, Cobertura, JSON) into the output
    /// directory.
    #[arg(long)]
    pub coverage: bool,
    /// Also keep what each subtest covered as a capture of its own
    /// (`<machine>@<subtest>`); also `[coverage] per_subtest = true`.
    #[arg(long, requires = "coverage")]
    pub coverage_per_subtest: bool,
    /// With --coverage: build trees, path maps, filters, thresholds, lcov
    /// dialect, each overriding the spec's `[coverage]` field.
    #[command(flatten)]
    pub coverage_opts: CoverageOpts,
    /// With --coverage: SonarQube, Coveralls, gcovr JSON and CSV outputs
    /// (relative paths inside the output directory).
    #[command(flatten)]
    pub formats: super::format_opts::FormatOpts,
    /// With --coverage: differential coverage against a baseline, each
    /// overriding the spec's `[coverage]` field.
    #[command(flatten)]
    pub differential: super::diff_opts::DiffArgs,
}

/// Prints a termination signal's arrival (the run is then interrupted, or,
/// for a second signal, covnet exits at once).
pub fn announce_signal(r: Received) {
    if r.again {
        progress::eprintln(&format!("covnet: second {}, exiting now", r.name));
    } else {
        progress::eprintln(&format!(
            "covnet: {} received, stopping all machines (send it again to exit at once)",
            r.name
        ));
    }
}

impl RunArgs {
    /// The request for one spec's run, writing into `out`.
    pub fn request(&self, spec: PathBuf, out: Option<PathBuf>) -> RunRequest {
        RunRequest {
            spec,
            out,
            keep_going: self.keep_going,
            backend: self.backend,
            accel: self.accel,
            keep_run_dir: self.keep_run_dir,
            pcap: self.pcap,
            cold_boot: self.cold_boot,
            coverage: self.coverage,
            coverage_per_subtest: self.coverage_per_subtest,
            cores: None,
        }
    }

    /// A spec's `[coverage]` table with the command line's options on top.
    pub fn coverage_settings(
        &self,
        spec: &covnet_runner::spec::CoverageSettings,
    ) -> covnet_runner::spec::CoverageSettings {
        let mut c = self.coverage_opts.over(spec);
        c.formats = self.formats.over(&c.formats);
        c.differential = self.differential.over(&c.differential);
        c
    }
}

/// Runs `covnet run`.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    if (args.coverage_opts.any() || args.formats.any() || args.differential.any()) && !args.coverage
    {
        anyhow::bail!(
            "coverage options (--build, --path-map, --include, --exclude, --fail-under-*, --lcov-format, --sonarqube, --coveralls, --gcovr-json, --csv, --baseline, --diff, --diff-base, --fail-on-lost-coverage) need --coverage"
        );
    }
    if super::suite::is_suite(&args) {
        return super::suite::run(args);
    }
    let spec = args.specs[0].clone();

    let request = args.request(spec.clone(), args.out.clone());
    let plan = RunPlan::with_coverage(&request, |c| args.coverage_settings(c))?;

    let (events, rx) = events::channel();
    let reporter = progress::spawn_reporter(args.no_progress, !args.no_console, rx);
    // Diagnostics from where no event stream is at hand join this one.
    let diagnostics = {
        let events = events.clone();
        diag::set_sink(move |d| events.send(RunEvent::Notice(d)))
    };
    // Watch signals before building, so that Ctrl-C while images build
    // still ends in an orderly teardown.
    let interruption = Interruption::default();
    let signals = {
        let interruption = interruption.clone();
        watch_signals(move |received| {
            announce_signal(received);
            interruption.interrupt(&format!("{} received", received.name));
        })
        .context("failed to install the signal handler")?
    };

    let outcome = covnet_runner::run::execute(&plan, &events, &interruption);
    drop(signals);
    drop(diagnostics);
    drop(events);
    // Every sender is gone now: the reporter drains and ends.
    let _ = reporter.join();

    let outcome = outcome?;
    if let Some(junit) = &args.junit {
        let suite = TestSuite {
            name: plan.name.clone(),
            cases: outcome.cases.clone(),
            elapsed: outcome.script_time,
        };
        let file = std::fs::File::create(junit)
            .with_context(|| format!("failed to create JUnit file {}", junit.display()))?;
        suite
            .write_xml(std::io::BufWriter::new(file))
            .with_context(|| format!("failed to write JUnit file {}", junit.display()))?;
    }
    if let Some(text) = &outcome.failure {
        eprintln!("\n{text}");
    }
    if let Some(bundle) = &outcome.bundle {
        eprintln!("failure bundle: {}", bundle.display());
    }
    if let Some(e) = &outcome.shutdown_error {
        eprintln!("error: {e}");
    }
    let (code, coverage_note) = exit_code(&outcome.verdict);
    // The test's own verdict first; a passed test whose coverage is
    // missing or incomplete says so on the same line (and in the exit code).
    let verdict = if outcome.verdict.test == TestResult::Passed {
        "PASSED"
    } else {
        "FAILED"
    };
    let coverage = match coverage_note {
        Some(c) => format!(", but {c} (exit {code})"),
        None => String::new(),
    };
    eprintln!(
        "{verdict}: {} ({:.2}s){coverage}",
        spec.display(),
        outcome.elapsed.as_secs_f64()
    );
    Ok(ExitCode::from(code))
}

/// The exit code of a run, and what the verdict line adds when a passed
/// test's coverage decides it.
pub fn exit_code(v: &Verdict) -> (u8, Option<&'static str>) {
    let test = match v.test {
        TestResult::Passed => exit::SUCCESS,
        TestResult::Failed | TestResult::TimedOut => exit::PARTIAL,
        TestResult::Interrupted => exit::INTERRUPTED,
        TestResult::Broken => exit::FAILURE,
    };
    let (code, note) = if test != exit::SUCCESS {
        (test, None)
    } else {
        match &v.coverage {
            CoverageOutcome::Off | CoverageOutcome::Complete => (exit::SUCCESS, None),
            CoverageOutcome::Incomplete => (
                exit::PARTIAL,
                Some("coverage incomplete: some .gcda files were left out"),
            ),
            CoverageOutcome::NothingToReport(end) => (
                coverage_opts::gather_exit(*end),
                Some("no coverage report: nothing to report"),
            ),
            CoverageOutcome::BelowThreshold => {
                (exit::BELOW_THRESHOLD, Some("coverage below the threshold"))
            }
            CoverageOutcome::Failed(_) => (exit::FAILURE, Some("coverage failed")),
        }
    };
    if v.shutdown_failed && code == exit::SUCCESS {
        (exit::FAILURE, note)
    } else {
        (code, note)
    }
}

fn parse_backend(s: &str) -> Result<Backend, String> {
    match s {
        "vm" => Ok(Backend::Vm),
        "namespace" => Ok(Backend::Namespace),
        _ => Err(format!("`{s}` is not a backend (vm or namespace)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use covnet_runner::coverage::notices::GatherEnd;

    fn verdict(test: TestResult, coverage: CoverageOutcome) -> Verdict {
        Verdict {
            test,
            coverage,
            shutdown_failed: false,
        }
    }

    #[test]
    fn the_test_decides_first_then_the_coverage_then_the_shutdown() {
        use CoverageOutcome as C;
        use TestResult as T;
        let cases = [
            (T::Passed, C::Off, exit::SUCCESS),
            (T::Passed, C::Complete, exit::SUCCESS),
            (T::Passed, C::Incomplete, exit::PARTIAL),
            (
                T::Passed,
                C::NothingToReport(GatherEnd::NothingToReport),
                exit::PARTIAL,
            ),
            (
                T::Passed,
                C::NothingToReport(GatherEnd::Failed),
                exit::FAILURE,
            ),
            (T::Passed, C::BelowThreshold, exit::BELOW_THRESHOLD),
            (T::Passed, C::Failed("x".into()), exit::FAILURE),
            (T::Failed, C::BelowThreshold, exit::PARTIAL),
            (T::TimedOut, C::Complete, exit::PARTIAL),
            (T::Interrupted, C::Incomplete, exit::INTERRUPTED),
            (T::Broken, C::Off, exit::FAILURE),
        ];
        for (test, coverage, code) in cases {
            let v = verdict(test, coverage.clone());
            assert_eq!(exit_code(&v).0, code, "{v:?}");
        }
        let mut v = verdict(T::Passed, C::Complete);
        v.shutdown_failed = true;
        assert_eq!(exit_code(&v), (exit::FAILURE, None));
        v.coverage = C::BelowThreshold;
        assert_eq!(exit_code(&v).0, exit::BELOW_THRESHOLD);
    }
}
