//! `covnet run SPEC...` over a suite: the slice of the suite this host
//! runs (`--partition`, or the engine's own variables), the specs run
//! `-j` at a time with their output prefixed by the spec, one JUnit file,
//! the combined coverage report and the shard bundle's manifest.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use anyhow::Context as _;
use covnet_runner::diag;
use covnet_runner::events::{self, EventSender, RunEvent, TerminalReporter};
use covnet_runner::run::network::watch_signals;
use covnet_runner::run::TestResult;
use covnet_runner::spec::Spec;
use covnet_runner::suite::discover::{self, SuiteSpec};
use covnet_runner::suite::engine::{self, Protocol};
use covnet_runner::suite::execute::{self, SuiteInterruption, SuitePlan};
use covnet_runner::suite::report::{self, SuiteOutputs};

use super::exit;
use super::run::RunArgs;

/// Whether `args` make a suite rather than one run: several specs, a
/// directory or pattern, a partition, `-j`, or an engine's shard
/// variables.
pub fn is_suite(args: &RunArgs) -> bool {
    args.specs.len() > 1
        || args.specs.iter().any(|s| !s.is_file())
        || args.partition.is_some()
        || args.shards.is_some()
        || args.jobs.is_some()
        || engine::detect(None, None, |v| std::env::var(v).ok())
            .ok()
            .flatten()
            .is_some()
}

/// Lines written with a `[spec] ` prefix, each whole (specs running at
/// once do not interleave within a line).
struct Prefixed {
    prefix: String,
    pending: Vec<u8>,
}

impl Write for Prefixed {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(buf);
        while let Some(i) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=i).collect();
            let mut err = std::io::stderr().lock();
            err.write_all(self.prefix.as_bytes())?;
            err.write_all(&line)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.pending.is_empty() {
            let mut line = std::mem::take(&mut self.pending);
            line.push(b'\n');
            let mut err = std::io::stderr().lock();
            err.write_all(self.prefix.as_bytes())?;
            err.write_all(&line)?;
        }
        std::io::stderr().flush()
    }
}

impl Drop for Prefixed {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// Runs the suite `args` name.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let started = SystemTime::now();
    let clock = Instant::now();
    let suite = discover::discover(&args.specs)?;
    let sharding = engine::detect(args.partition, args.shards, |v| std::env::var(v).ok())?;
    let ids = suite.ids();
    let selected: Vec<SuiteSpec> = match &sharding {
        Some(sh) => {
            let picked = sh.partition.select(&ids);
            suite
                .specs
                .iter()
                .filter(|s| picked.contains(&s.id.as_str()))
                .cloned()
                .collect()
        }
        None => suite.specs.clone(),
    };
    let bazel = match sharding.as_ref().map(|s| &s.protocol) {
        Some(Protocol::Bazel {
            status_file,
            xml_output,
            outputs_dir,
        }) => Some((status_file.clone(), xml_output.clone(), outputs_dir.clone())),
        _ => None,
    };
    let out = match (&args.out, &bazel) {
        (Some(o), _) => o.clone(),
        (None, Some((_, _, Some(dir)))) => dir.join("covnet"),
        (None, _) => PathBuf::from("covnet-out").join("suite"),
    };
    std::fs::create_dir_all(&out)
        .with_context(|| format!("failed to create output directory {}", out.display()))?;
    // Bazel: tell it this test shards, before anything can fail.
    if let Some((Some(status), _, _)) = &bazel {
        std::fs::write(status, b"").with_context(|| {
            format!(
                "failed to touch TEST_SHARD_STATUS_FILE {}",
                status.display()
            )
        })?;
    }
    match &sharding {
        Some(sh) => eprintln!(
            "covnet: suite of {} specs; shard {}/{} ({} slicing) by {}: {} spec(s): {}",
            suite.specs.len(),
            sh.partition.shard,
            sh.partition.total,
            if matches!(
                sh.partition.kind,
                covnet_runner::suite::partition::Kind::Hash
            ) {
                "hash"
            } else {
                "count"
            },
            sh.protocol,
            selected.len(),
            selected
                .iter()
                .map(|s| s.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => eprintln!(
            "covnet: suite of {} specs, all on this host",
            suite.specs.len()
        ),
    }
    if selected.is_empty() {
        eprintln!(
            "warning: this shard holds none of the suite's {} specs: nothing runs here (hash slices of a small suite can be empty; count slices fill every shard)",
            suite.specs.len()
        );
    }
    let jobs = match args.jobs {
        Some(j) => {
            eprintln!("covnet: {j} spec(s) at once (-j)");
            usize::from(j)
        }
        None => {
            let specs: Vec<Spec> = selected
                .iter()
                .filter_map(|s| Spec::from_path(&s.path).ok())
                .collect();
            let cores = covnet_runner::run::network::host_cores();
            let (j, why) = execute::default_jobs(&specs, cores, execute::mem_available_mib());
            eprintln!("covnet: {why} (set with -j N)");
            j
        }
    };

    let coverage = |spec: &covnet_runner::spec::CoverageSettings| args.coverage_settings(spec);
    let plan = SuitePlan {
        template: args.request(PathBuf::new(), None),
        coverage: &coverage,
        out: out.clone(),
        jobs,
    };

    // The suite's own diagnostics, and each spec's events, prefixed; on a
    // terminal, with one live line per running spec.
    let live = super::progress::stderr(args.no_progress);
    let reporter = |prefix: String, show_console: bool, rx| match &live {
        Some(live) => TerminalReporter::live(live.slot(&prefix, true), show_console).spawn(rx),
        None => TerminalReporter::new(
            Prefixed {
                prefix,
                pending: Vec::new(),
            },
            show_console,
        )
        .spawn(rx),
    };
    let (suite_events, suite_rx) = events::channel();
    let suite_reporter = reporter("[suite] ".into(), false, suite_rx);
    let diagnostics = {
        let events = suite_events.clone();
        diag::set_sink(move |d| events.send(RunEvent::Notice(d)))
    };
    let interruption = SuiteInterruption::default();
    let signals = {
        let interruption = interruption.clone();
        watch_signals(move |received| {
            super::run::announce_signal(received);
            interruption.interrupt(&format!("{} received", received.name));
        })
        .context("failed to install the signal handler")?
    };
    let reporters = Arc::new(Mutex::new(Vec::new()));
    let show_console = !args.no_console;
    let events_for = |spec: &SuiteSpec| -> EventSender {
        let (tx, rx) = events::channel();
        let handle = reporter(format!("[{}] ", spec.id), show_console, rx);
        if let Ok(mut r) = reporters.lock() {
            r.push(handle);
        }
        tx
    };
    let runs = execute::run_specs(&selected, &plan, &interruption, &events_for);
    drop(signals);
    for h in reporters
        .lock()
        .map(|mut r| std::mem::take(&mut *r))
        .unwrap_or_default()
    {
        let _ = h.join();
    }
    drop(diagnostics);
    drop(suite_events);
    let _ = suite_reporter.join();

    let junit = args
        .junit
        .clone()
        .or_else(|| bazel.as_ref().and_then(|(_, x, _)| x.clone()));
    let written = report::write(
        &out,
        &SuiteOutputs {
            suite: &suite,
            sharding: sharding.as_ref(),
            runs: &runs,
            coverage: args.coverage,
            lcov_format: if args.coverage_opts.lcov_format == Some(2) {
                covnet_merger::lcov::LcovFormat::V2
            } else {
                covnet_merger::lcov::LcovFormat::V1
            },
            started,
            junit,
        },
    )
    .context("failed to write the suite's outputs")?;

    if let Some(cov) = &written.coverage {
        let mut info = covnet_reporter::RunInfo::now("suite".to_owned(), Vec::new());
        info.notes = written.notes.clone();
        let mut err = std::io::stderr().lock();
        covnet_reporter::summary::write_table(cov, &info, &mut err)?;
        writeln!(
            err,
            "coverage report: {}",
            out.join("report/index.html").display()
        )?;
    }
    for n in &written.notes {
        eprintln!("warning: {n}");
    }
    let mut code = exit::SUCCESS;
    let mut interrupted = false;
    for r in &runs {
        let (c, verdict) = match &r.outcome {
            Ok(o) => {
                interrupted |= o.verdict.test == TestResult::Interrupted;
                let (c, note) = super::run::exit_code(&o.verdict);
                let v = if o.verdict.test == TestResult::Passed {
                    "PASSED"
                } else {
                    "FAILED"
                };
                let note = note.map(|n| format!(", but {n}")).unwrap_or_default();
                (
                    c,
                    format!("{v}: {} ({:.2}s){note}", r.spec.id, r.elapsed.as_secs_f64()),
                )
            }
            Err(e) => (exit::FAILURE, format!("NOT RUN: {}: {e}", r.spec.id)),
        };
        eprintln!("{verdict}");
        code = worse(code, c);
    }
    if interrupted {
        code = exit::INTERRUPTED;
    }
    let passed = runs
        .iter()
        .filter(|r| r.outcome.as_ref().is_ok_and(|o| o.verdict.passed()))
        .count();
    eprintln!(
        "{}: {passed} of {} spec(s) passed ({:.2}s); bundle: {}",
        match (code == exit::SUCCESS, runs.is_empty()) {
            (true, true) => "EMPTY SHARD",
            (true, false) => "PASSED",
            (false, _) => "FAILED",
        },
        runs.len(),
        clock.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(ExitCode::from(code))
}

/// The more severe of two exit codes: an error (1) over a failed test (2)
/// over a missed threshold (3) over success.
fn worse(a: u8, b: u8) -> u8 {
    let rank = |c: u8| match c {
        exit::SUCCESS => 0,
        exit::BELOW_THRESHOLD => 1,
        exit::PARTIAL => 2,
        _ => 3,
    };
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_spec_decides_the_exit_code() {
        assert_eq!(worse(exit::SUCCESS, exit::BELOW_THRESHOLD), 3);
        assert_eq!(worse(exit::PARTIAL, exit::BELOW_THRESHOLD), 2);
        assert_eq!(worse(exit::PARTIAL, exit::FAILURE), 1);
        assert_eq!(worse(exit::FAILURE, exit::SUCCESS), 1);
    }
}
