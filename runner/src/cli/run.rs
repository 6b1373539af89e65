//! `covnet run`: boot a spec's network headless, run its test script,
//! report, and tear everything down.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use clap::Args;

use covnet_merger::capture::NotesSearch;
use covnet_merger::paths::SourceRewrite;
use covnet_runner::bundle::{write_bundle, BundleInput};
use covnet_runner::coverage::{self, CollectOptions, MachineCapture, MergeSettings};
use covnet_runner::events::{self, TerminalReporter};
use covnet_runner::junit::TestSuite;
use covnet_runner::machine::vm::accel::AccelRequest;
use covnet_runner::network::{watch_signals, Interrupter, Network, NetworkOptions};
use covnet_runner::script::{
    run_script, CollectHook, ScriptCoverage, ScriptFailure, ScriptOptions,
};
use covnet_runner::spec::{Backend, CoverageSettings, Script, Spec};

use super::coverage_opts::{self, CoverageOpts};
use super::exit;

/// Arguments of `covnet run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// The spec file (TOML) with machines and a [test] table.
    pub spec: PathBuf,
    /// Output directory: failure bundle, copied files (default:
    /// `covnet-out/<spec name>`).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
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
    /// Keep the run directory (sockets, console logs) for inspection.
    #[arg(long)]
    pub keep_run_dir: bool,
    /// Capture every VLAN's traffic; the pcaps go into the failure bundle.
    #[arg(long)]
    pub pcap: bool,
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
}

/// Validated inputs of a run.
struct RunPlan {
    /// Test name: the spec's file stem (its directory's name for `spec.toml`).
    name: String,
    spec: Spec,
    /// The spec's `[coverage]` with the command line's options on top.
    coverage: CoverageSettings,
    source: String,
    options: ScriptOptions,
    out: PathBuf,
}

fn plan(args: &RunArgs) -> anyhow::Result<RunPlan> {
    if args.coverage_opts.any() && !args.coverage {
        anyhow::bail!(
            "coverage options (--build, --path-map, --include, --exclude, --fail-under-*, --lcov-format) need --coverage"
        );
    }
    let mut spec = Spec::from_path(&args.spec)?;
    if let Some(backend) = args.backend {
        spec = spec.with_backend(backend)?;
    }
    let Some(test) = spec.test.clone() else {
        anyhow::bail!(
            "{}: the spec has no [test] table\n  (hint: add `[test]` with `script = \"...\"` or `script_file = \"...\"`, or use `covnet vms` for interactive use)",
            args.spec.display()
        );
    };
    let (source, file) = match &test.script {
        Script::Inline(s) => (s.clone(), None),
        Script::File(p) => (
            std::fs::read_to_string(p)
                .with_context(|| format!("failed to read test script {}", p.display()))?,
            Some(p.clone()),
        ),
    };
    let stem = args
        .spec
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "run".to_owned());
    let stem = if stem == "spec" {
        // examples/httpd/spec.toml -> httpd
        args.spec
            .canonicalize()
            .ok()
            .and_then(|p| {
                p.parent()
                    .and_then(|d| d.file_name())
                    .map(|s| s.to_string_lossy().into_owned())
            })
            .unwrap_or(stem)
    } else {
        stem
    };
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| Path::new("covnet-out").join(&stem));

    std::fs::create_dir_all(&out)
        .with_context(|| format!("failed to create output directory {}", out.display()))?;
    let mut coverage = args.coverage_opts.over(&spec.coverage);
    coverage.per_subtest |= args.coverage_per_subtest;
    // Fail on a bad glob or map before anything boots.
    coverage_opts::resolve(&coverage)?;
    Ok(RunPlan {
        name: stem,
        coverage,
        spec,
        source,
        options: ScriptOptions {
            timeout: test.timeout,
            keep_going: args.keep_going,
            file,
            coverage: None,
        },
        out,
    })
}

/// Where script line `line` is in its file: the script file itself, or
/// the spec when the script is inline (found by its text, which a TOML
/// literal string keeps verbatim), as `file:line:column`.
fn script_location(plan: &RunPlan, line: usize, column: usize) -> String {
    if let Some(file) = &plan.options.file {
        return format!("{}:{line}:{column}", file.display());
    }
    let spec = plan.spec.path.display();
    let offset = std::fs::read_to_string(&plan.spec.path)
        .ok()
        .and_then(|text| {
            // Only a unique match identifies the place.
            let mut found = text.match_indices(plan.source.as_str());
            let (at, _) = found.next()?;
            if found.next().is_some() {
                return None;
            }
            Some(text.get(..at)?.matches('\n').count())
        });
    match offset {
        Some(before) => format!("{spec}:{}:{column}", before + line),
        None => format!("{spec} (inline script line {line}, column {column})"),
    }
}

/// Where a termination signal goes: the network's interrupter once it
/// exists, else kept as pending.
#[derive(Default)]
struct SignalTarget {
    interrupter: Option<Interrupter>,
    pending: Option<String>,
}

/// Runs `covnet run`.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let plan = plan(&args)?;
    let suite_name = plan.name.clone();

    let (events, rx) = events::channel();
    let reporter = TerminalReporter::new(std::io::stderr(), !args.no_console).spawn(rx);

    let outcome = run_with_events(&args, &plan, events);
    // Every sender is gone now: the reporter drains and ends.
    let _ = reporter.join();

    let outcome = outcome?;
    if let Some(junit) = &args.junit {
        let suite = TestSuite {
            name: suite_name,
            cases: outcome.cases,
            elapsed: outcome.script_time,
        };
        let file = std::fs::File::create(junit)
            .with_context(|| format!("failed to create JUnit file {}", junit.display()))?;
        suite
            .write_xml(std::io::BufWriter::new(file))
            .with_context(|| format!("failed to write JUnit file {}", junit.display()))?;
    }
    if let Some(text) = &outcome.failure_text {
        eprintln!("\n{text}");
    }
    if let Some(bundle) = &outcome.bundle {
        eprintln!("failure bundle: {}", bundle.display());
    }
    if let Some(e) = &outcome.shutdown_error {
        eprintln!("error: {e}");
    }
    // The test's own verdict first; a passed test whose coverage is
    // missing or incomplete says so on the same line (and in the exit code).
    let verdict = if outcome.test_code == exit::SUCCESS {
        "PASSED"
    } else {
        "FAILED"
    };
    let coverage = match outcome.coverage_verdict {
        Some(c) => format!(", but {c} (exit {})", outcome.code),
        None => String::new(),
    };
    eprintln!(
        "{verdict}: {} ({:.2}s){coverage}",
        args.spec.display(),
        outcome.elapsed.as_secs_f64()
    );
    Ok(ExitCode::from(outcome.code))
}

struct Outcome {
    code: u8,
    /// The exit code the test alone gave.
    test_code: u8,
    /// What the coverage part adds to a passed test's verdict.
    coverage_verdict: Option<&'static str>,
    cases: Vec<covnet_runner::junit::TestCase>,
    failure_text: Option<String>,
    bundle: Option<PathBuf>,
    shutdown_error: Option<String>,
    elapsed: std::time::Duration,
    script_time: std::time::Duration,
}

fn run_with_events(
    args: &RunArgs,
    plan: &RunPlan,
    events: events::EventSender,
) -> anyhow::Result<Outcome> {
    let started = std::time::Instant::now();
    // Services get covnet's flush shim, so that phases capture them too.
    let flush = if args.coverage {
        covnet_runner::flush::prepare_spec(&plan.spec)?
    } else {
        Default::default()
    };
    let options = NetworkOptions {
        accel: args.accel,
        events: events.clone(),
        output_dir: plan.out.clone(),
        keep_run_dir: args.keep_run_dir,
        pcap: args.pcap,
        guest_env: if args.coverage {
            [coverage::guest_env(), flush.env].concat()
        } else {
            Vec::new()
        },
        guest_files: flush.files,
    };
    // Watch signals before building, so that Ctrl-C while images build
    // still ends in an orderly teardown: a signal that comes before the
    // network exists is kept and delivered once it does.
    let target: Arc<Mutex<SignalTarget>> = Arc::default();
    let signals = {
        let target = target.clone();
        watch_signals(move |name| {
            let reason = format!("{name} received");
            let mut t = target.lock().unwrap_or_else(|p| p.into_inner());
            match &t.interrupter {
                Some(i) => i.interrupt(&reason),
                None => t.pending = Some(reason),
            }
        })
        .context("failed to install the signal handler")?
    };
    let network = Network::build(&plan.spec, &options)
        .with_context(|| format!("failed to set up the network of {}", args.spec.display()))?;
    {
        let mut t = target.lock().unwrap_or_else(|p| p.into_inner());
        let interrupter = network.interrupter();
        if let Some(reason) = t.pending.take() {
            interrupter.interrupt(&reason);
        }
        t.interrupter = Some(interrupter);
    }

    let phases = Arc::new(Phases::default());
    let mut options = plan.options.clone();
    if args.coverage {
        options.coverage = Some(script_coverage(
            &network,
            &plan.out.join("coverage"),
            phases.clone(),
            plan.coverage.per_subtest,
        ));
    }
    let report = run_script(network.nodes(), &plan.source, &options);

    let mut failure_text = None;
    let mut bundle = None;
    let code = match &report.result {
        Ok(()) => exit::SUCCESS,
        Err(failure) => {
            let text = match (failure, failure.position()) {
                (ScriptFailure::Step(_) | ScriptFailure::Script { .. }, Some(p)) => {
                    format!(
                        "{failure}\n  at {}",
                        script_location(plan, p.line, p.column)
                    )
                }
                _ => failure.to_string(),
            };
            let input = BundleInput {
                failure: &text,
                position: failure.position(),
                script: Some(&plan.source),
                spec: Some(&plan.spec.path),
                nodes: network.nodes(),
                console_logs: network.console_logs(),
                pcaps: network.pcaps(),
            };
            match write_bundle(&plan.out.join("failure"), &input) {
                Ok(_) => bundle = Some(plan.out.join("failure")),
                Err(e) => eprintln!("covnet: {e}"),
            }
            failure_text = Some(text);
            match failure {
                ScriptFailure::TimedOut { .. } => exit::PARTIAL,
                _ if network.context().interrupted().is_some() => exit::INTERRUPTED,
                f if f.is_infrastructure() => exit::FAILURE,
                _ => exit::PARTIAL,
            }
        }
    };

    // Coverage is collected whatever the script's verdict: a failed test's
    // coverage is still worth reading, and a crashed machine is named.
    let coverage = if args.coverage {
        Some(collect_and_report(plan, &network, &phases))
    } else {
        None
    };
    let test_code = code;
    let (code, coverage_verdict) = match &coverage {
        Some(Err(_)) if code == exit::SUCCESS => (exit::FAILURE, Some("coverage failed")),
        Some(Ok(end)) if code == exit::SUCCESS => end.verdict(),
        _ => (code, None),
    };

    let grace = network.context().timeouts.shutdown;
    let shutdown = if code == exit::SUCCESS {
        network.shutdown(grace)
    } else {
        network.kill_all()
    };
    drop(signals);
    drop(network);
    let shutdown_error = shutdown.err().map(|e| e.to_string());
    let code = if shutdown_error.is_some() && code == exit::SUCCESS {
        exit::FAILURE
    } else {
        code
    };
    if let Some(Err(e)) = &coverage {
        eprintln!("error: {e:#}");
    }
    Ok(Outcome {
        code,
        test_code,
        coverage_verdict,
        cases: report.cases,
        failure_text,
        bundle,
        shutdown_error,
        elapsed: started.elapsed(),
        script_time: report.elapsed,
    })
}

/// How the coverage part of a run ended, when it did not fail outright.
enum CoverageEnd {
    /// Every pulled file is in the report and the thresholds are met.
    Complete,
    /// The report was written without some inputs (unpaired or bad
    /// `.gcda` files): exit 2.
    Incomplete,
    /// There is no report: nothing could be paired, or nothing is left
    /// (the exit code says which).
    Nothing(u8),
    /// A `fail_under` threshold was not met: exit 3.
    BelowThreshold,
}

impl CoverageEnd {
    /// The exit code of a run whose test passed, and what the verdict
    /// line adds.
    fn verdict(&self) -> (u8, Option<&'static str>) {
        match self {
            CoverageEnd::Complete => (exit::SUCCESS, None),
            CoverageEnd::Incomplete => (
                exit::PARTIAL,
                Some("coverage incomplete: some .gcda files were left out"),
            ),
            CoverageEnd::Nothing(code) => (*code, Some("no coverage report: nothing to report")),
            CoverageEnd::BelowThreshold => {
                (exit::BELOW_THRESHOLD, Some("coverage below the threshold"))
            }
        }
    }
}

/// Pulls every machine's gcov data, merges it and writes the reports into
/// the output directory; prints where they are and the totals.
fn collect_and_report(
    plan: &RunPlan,
    network: &Network,
    phases: &Phases,
) -> anyhow::Result<CoverageEnd> {
    let done = phases
        .shut_down
        .lock()
        .map(|s| s.clone())
        .unwrap_or_default();
    // Machines shut down by the script were collected just before.
    let machines: Vec<_> = network
        .nodes()
        .iter()
        .filter(|n| !done.contains(n.name()))
        .map(|n| n.machine().clone())
        .collect();
    let opts = CollectOptions {
        stop_services: true,
        reset: false,
        command_timeout: network.context().timeouts.command,
        phase: None,
    };
    let dest = plan.out.join("coverage");
    let mut captures = phases
        .captures
        .lock()
        .map(|c| c.clone())
        .unwrap_or_default();
    captures.extend(coverage::collect_all(&machines, &dest, &opts));
    let settings = coverage_opts::resolve(&plan.coverage)?;
    // A program runs in the guest at its host path: its notes are where
    // gcc left them; then the spec's tree, then the named trees.
    let mut trees = vec![plan.spec.dir()];
    trees.extend(settings.build.iter().cloned());
    let search = NotesSearch::host_then(trees);
    let merge_settings = MergeSettings {
        search: search.clone(),
        map: settings.map.clone(),
        rewrite: SourceRewrite {
            map: settings.map.clone(),
            filter: settings.filter.clone(),
            base: None,
        },
    };
    for c in &captures {
        if let Err(why) = &c.outcome {
            eprintln!("warning: {}: {why}", c.name);
        }
    }
    let mut merged = match coverage::merge(&captures, &merge_settings) {
        Ok(m) => m,
        Err(e) => {
            let pulled: usize = captures
                .iter()
                .filter_map(|c| c.outcome.as_ref().ok())
                .map(|p| p.files)
                .sum();
            eprintln!(
                "\ncoverage: {pulled} .gcda file(s) pulled from {} capture(s)",
                captures.len()
            );
            return Ok(CoverageEnd::Nothing(coverage_opts::print_gather_error(
                &e,
                coverage_opts::Command::Run,
            )));
        }
    };
    super::markers::apply(&mut merged.coverage, &settings.rules);
    let inputs = captures
        .iter()
        .map(|c| match &c.outcome {
            Ok(p) => format!("{} ({} files, {} bytes)", c.name, p.files, p.bytes),
            Err(_) => format!("{} (no coverage)", c.name),
        })
        .collect();
    let mut info = covnet_reporter::RunInfo::now(plan.name.clone(), inputs);
    info.notes = merged.notes.clone();
    let paths = coverage::write_reports(&merged, &info, &plan.out, settings.lcov_format)
        .context("failed to write the coverage report")?;
    let mut table = Vec::new();
    covnet_reporter::summary::write_table(&merged.coverage, &info, &mut table)
        .context("failed to format the coverage summary")?;
    eprintln!("\n{}", String::from_utf8_lossy(&table).trim_end());
    for c in &captures {
        if let Ok(p) = &c.outcome {
            for s in &p.survivors {
                eprintln!(
                    "warning: {}: service `{s}` did not exit after SIGTERM; its coverage is missing",
                    c.name
                );
            }
        }
    }
    coverage_opts::print_notices(&merged.notices, &search, coverage_opts::Command::Run);
    eprintln!("coverage report: {}", paths.html.display());
    eprintln!("lcov tracefile: {}", paths.lcov.display());
    if merged.skipped_inputs {
        return Ok(CoverageEnd::Incomplete);
    }
    let shortfalls = settings.thresholds.check(&merged.coverage.summary());
    if !shortfalls.is_empty() {
        for s in &shortfalls {
            eprintln!("error: {s}");
        }
        return Ok(CoverageEnd::BelowThreshold);
    }
    Ok(CoverageEnd::Complete)
}

/// Coverage collected while the script runs: phases, subtests, and machines
/// pulled just before the script shut them down.
#[derive(Default)]
struct Phases {
    captures: Mutex<Vec<MachineCapture>>,
    shut_down: Mutex<BTreeSet<String>>,
}

/// The script's `collect_coverage()` and shutdown hooks for this network.
fn script_coverage(
    network: &Network,
    dest: &Path,
    phases: Arc<Phases>,
    per_subtest: bool,
) -> ScriptCoverage {
    let machines: Vec<_> = network
        .nodes()
        .iter()
        .map(|n| n.machine().clone())
        .collect();
    let timeout = network.context().timeouts.command;
    let (dest_all, phases_all, machines_all) = (dest.to_owned(), phases.clone(), machines.clone());
    let collect: CollectHook = Arc::new(move |phase: &str| {
        let running: Vec<_> = machines_all
            .iter()
            .filter(|m| m.is_running())
            .cloned()
            .collect();
        // Services keep running: a phase holds what has exited (or flushed)
        // so far, and the next phase starts afresh.
        let opts = CollectOptions {
            stop_services: false,
            reset: true,
            command_timeout: timeout,
            phase: Some(phase.to_owned()),
        };
        let got = coverage::collect_all(&running, &dest_all, &opts);
        let failed: Vec<String> = got
            .iter()
            .filter_map(|c| c.outcome.as_ref().err().map(|e| format!("{}: {e}", c.name)))
            .collect();
        let files: usize = got
            .iter()
            .filter_map(|c| c.outcome.as_ref().ok())
            .map(|p| p.files)
            .sum();
        if let Ok(mut all) = phases_all.captures.lock() {
            all.extend(got);
        }
        if failed.is_empty() {
            Ok(format!("phase `{phase}`: {files} .gcda files"))
        } else {
            Err(failed.join("; "))
        }
    });
    let dest_one = dest.to_owned();
    let before_shutdown: CollectHook = Arc::new(move |name: &str| {
        let Some(m) = machines.iter().find(|m| m.name() == name) else {
            return Err(format!("no machine `{name}`"));
        };
        let opts = CollectOptions {
            stop_services: true,
            reset: false,
            command_timeout: timeout,
            phase: None,
        };
        let got = coverage::collect_one(m.as_ref(), &dest_one, &opts);
        let result = match &got.outcome {
            Ok(p) => Ok(format!("{name}: {} .gcda files", p.files)),
            Err(e) => Err(format!("{name}: {e}")),
        };
        if let Ok(mut all) = phases.captures.lock() {
            all.push(got);
        }
        if let Ok(mut shut) = phases.shut_down.lock() {
            shut.insert(name.to_owned());
        }
        result
    });
    ScriptCoverage {
        collect,
        before_shutdown,
        per_subtest,
    }
}

fn parse_backend(s: &str) -> Result<Backend, String> {
    match s {
        "vm" => Ok(Backend::Vm),
        "namespace" => Ok(Backend::Namespace),
        _ => Err(format!("`{s}` is not a backend (vm or namespace)")),
    }
}
