//! The coverage part of a run: the script's `collect_coverage()` and
//! shutdown hooks, the final collection from every machine, the merge,
//! the reports and the thresholds, each step told as events.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use covnet_merger::capture::NotesSearch;
use covnet_merger::paths::SourceRewrite;

use crate::coverage::blind::InstalledReading;
use crate::coverage::differential::{self, DiffError};
use crate::coverage::notices::{self, Flavor};
use crate::coverage::settings::{self, SettingsError};
use crate::coverage::{self, CollectOptions, DataFiles, MachineCapture, MergeSettings};
use crate::diag::Diagnostic;
use crate::events::{EventSender, RunEvent};
use crate::machine::Machine;
use crate::run::network::Network;
use crate::run::plan::RunPlan;
use crate::run::verdict::CoverageOutcome;
use crate::script::{CollectHook, ScriptCoverage};

/// Why the coverage part of a run failed (beyond "nothing to report").
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoverageError {
    /// The coverage settings are unusable.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// A report could not be written.
    #[error("failed to write the coverage report")]
    Report(#[source] covnet_reporter::Error),
    /// The summary table could not be formatted.
    #[error("failed to format the coverage summary")]
    Summary(#[source] std::io::Error),
    /// The differential coverage (baseline, change) could not be computed.
    #[error("failed to compute the differential coverage")]
    Differential(#[source] DiffError),
}

/// Coverage collected while the script runs: phases, subtests, and
/// machines pulled just before the script shut them down.
#[derive(Default)]
pub(crate) struct Phases {
    captures: Mutex<Vec<MachineCapture>>,
    shut_down: Mutex<BTreeSet<String>>,
}

/// Collects `machines` in parallel into `dest`, with a
/// [`RunEvent::CollectStart`] and [`RunEvent::CollectEnd`] per capture.
fn collect_all(
    machines: &[Arc<dyn Machine>],
    dest: &Path,
    opts: &CollectOptions,
    events: &EventSender,
) -> Vec<MachineCapture> {
    for m in machines {
        events.send(RunEvent::CollectStart {
            capture: coverage::capture_name(m.name(), opts.phase.as_deref()),
            machine: m.name().to_owned(),
        });
    }
    let got = coverage::collect_all(machines, dest, opts);
    for c in &got {
        events.send(RunEvent::CollectEnd {
            capture: c.name.clone(),
            machine: c.machine.clone(),
            result: c.outcome.clone(),
        });
    }
    got
}

/// The script's `collect_coverage()` and shutdown hooks for this network.
pub(crate) fn script_coverage(
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
    let events = network.context().events.clone();
    let (dest_all, phases_all, machines_all, events_all) = (
        dest.to_owned(),
        phases.clone(),
        machines.clone(),
        events.clone(),
    );
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
        let got = collect_all(&running, &dest_all, &opts, &events_all);
        let failed: Vec<String> = got
            .iter()
            .filter_map(|c| c.outcome.as_ref().err().map(|e| format!("{}: {e}", c.name)))
            .collect();
        let files: DataFiles = got
            .iter()
            .filter_map(|c| c.outcome.as_ref().ok())
            .map(|p| p.kinds())
            .sum();
        if let Ok(mut all) = phases_all.captures.lock() {
            all.extend(got);
        }
        if failed.is_empty() {
            Ok(format!("phase `{phase}`: {files}"))
        } else {
            Err(failed.join("; "))
        }
    });
    // A reboot loses the guest's data like a shutdown, but the machine
    // comes back: its first boot is a phase of its own (`boot-1`, ...) and
    // the final collection still takes what follows.
    let boots = Arc::new(Mutex::new(BTreeMap::<String, u32>::new()));
    let (dest_boot, phases_boot, machines_boot, events_boot) = (
        dest.to_owned(),
        phases.clone(),
        machines.clone(),
        events.clone(),
    );
    let before_reboot: CollectHook = Arc::new(move |name: &str| {
        let Some(m) = machines_boot.iter().find(|m| m.name() == name) else {
            return Err(format!("no machine `{name}`"));
        };
        let n = match boots.lock() {
            Ok(mut b) => {
                let n = b.entry(name.to_owned()).or_insert(0);
                *n += 1;
                *n
            }
            Err(_) => 1,
        };
        let opts = CollectOptions {
            stop_services: true,
            reset: true,
            command_timeout: timeout,
            phase: Some(format!("boot-{n}")),
        };
        let Some(got) = collect_all(std::slice::from_ref(m), &dest_boot, &opts, &events_boot).pop()
        else {
            return Err(format!("{name}: nothing collected"));
        };
        let result = match &got.outcome {
            Ok(p) => Ok(format!("{name}: boot {n}: {} .gcda files", p.files())),
            Err(e) => Err(format!("{name}: {e}")),
        };
        if let Ok(mut all) = phases_boot.captures.lock() {
            all.push(got);
        }
        result
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
        let Some(got) = collect_all(std::slice::from_ref(m), &dest_one, &opts, &events).pop()
        else {
            return Err(format!("{name}: nothing collected"));
        };
        let result = match &got.outcome {
            Ok(p) => Ok(format!("{name}: {}", p.kinds())),
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
        before_reboot,
        per_subtest,
    }
}

/// Writes the identity of the build measured (every paired `.gcno`) into
/// `out`.
fn write_identity(objects: &[std::path::PathBuf], out: &Path) -> Result<(), String> {
    let id = coverage::identity::BuildIdentity::of(objects).map_err(|e| notices::chain(&e))?;
    let text = serde_json::to_vec_pretty(&id).map_err(|e| e.to_string())?;
    std::fs::write(out.join(coverage::identity::FILE), text).map_err(|e| e.to_string())
}

/// Pulls every machine's gcov data (those the script shut down were
/// pulled before) and returns it after the phases' captures: all that
/// [`report`] needs, so that the machines can shut down meanwhile.
pub(crate) fn collect(plan: &RunPlan, network: &Network, phases: &Phases) -> Vec<MachineCapture> {
    let events = &network.context().events;
    let done = phases
        .shut_down
        .lock()
        .map(|s| s.clone())
        .unwrap_or_default();
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
    captures.extend(collect_all(&machines, &dest, &opts, events));
    captures
}

/// Merges the collected `captures` and writes the reports into the output
/// directory, telling every step as events.
pub(crate) fn report(
    plan: &RunPlan,
    captures: &[MachineCapture],
    installed: InstalledReading,
    events: &EventSender,
) -> Result<CoverageOutcome, CoverageError> {
    let settings = settings::resolve(plan.coverage())?;
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
        objects: plan.coverage().objects.clone(),
    };
    let notice = |d: Diagnostic| events.send(RunEvent::Notice(d));
    for c in captures {
        if let Err(why) = &c.outcome {
            notice(Diagnostic::warning(format!("{}: {why}", c.name)));
        }
    }
    let files: DataFiles = captures
        .iter()
        .filter_map(|c| c.outcome.as_ref().ok())
        .map(|p| p.kinds())
        .sum();
    events.send(RunEvent::MergeStart {
        captures: captures.len(),
    });
    let mut merged = match coverage::merge(captures, &merge_settings) {
        Ok(m) => m,
        Err(e) => {
            events.send(RunEvent::MergeEnd {
                captures: captures.len(),
                files,
                result: Err(notices::chain(&e)),
            });
            let (d, end) = notices::gather_error_diagnostic(&e, Flavor::Run);
            notice(d);
            return Ok(CoverageOutcome::NothingToReport(end));
        }
    };
    events.send(RunEvent::MergeEnd {
        captures: captures.len(),
        files,
        result: Ok(merged.coverage.files.len()),
    });
    events.send(RunEvent::ReportStart);
    for d in notices::apply_markers(&mut merged.coverage, &settings.rules) {
        notice(d);
    }
    let inputs = captures
        .iter()
        .map(|c| match &c.outcome {
            Ok(p) => format!("{} ({} files, {} bytes)", c.name, p.files(), p.bytes()),
            Err(_) => format!("{} (no coverage)", c.name),
        })
        .collect();
    let mut info = covnet_reporter::RunInfo::now(plan.name.clone(), inputs);
    info.notes = merged.notes.clone();
    // What is installed on each machine that no capture of it covers.
    let installed = installed.wait();
    for d in installed.warnings() {
        notice(d.clone());
    }
    let blind = coverage::blind::blind_spots(
        &installed,
        &merged.coverage,
        captures,
        &merge_settings.rewrite,
    );
    info.blind_spots = blind;
    let diff_settings = &plan.coverage().differential;
    let cwd = std::env::current_dir().unwrap_or_else(|_| plan.spec.dir());
    let delta = differential::compute(
        diff_settings,
        &merged.coverage,
        &settings,
        &merge_settings.rewrite,
        &cwd,
    )
    .map_err(CoverageError::Differential)?
    .map(|c| {
        for d in notices::notice_diagnostics(&c.baseline_notices, &c.baseline_search, Flavor::Run) {
            notice(d);
        }
        if let Some(w) = differential::unmatched_warning(&c.delta) {
            notice(Diagnostic::warning(w));
        }
        c.delta
    });
    let paths = coverage::write_reports(
        &merged,
        &info,
        &plan.out,
        settings.lcov_format,
        delta.as_ref(),
    )
    .map_err(CoverageError::Report)?;
    if let Err(why) = write_identity(&merged.objects, &plan.out) {
        notice(Diagnostic::warning(format!(
            "the build's identity ({}) was not written: {why}; merging this run's bundle with others cannot check that they measured the same build",
            coverage::identity::FILE
        )));
    }
    let extra = coverage::format_outputs(&plan.coverage().formats, &plan.out);
    let written = covnet_reporter::outputs::write_all(&merged.coverage, &info, &extra)
        .map_err(CoverageError::Report)?;
    if let Some(text) = coverage::coveralls_warning(&written) {
        notice(Diagnostic::warning(text));
    }
    let mut table = Vec::new();
    covnet_reporter::summary::write_table(&merged.coverage, &info, &mut table)
        .map_err(CoverageError::Summary)?;
    if let Some(d) = &delta {
        covnet_reporter::diff::output::write_terminal(d, &merged.coverage.captures, &mut table)
            .map_err(CoverageError::Summary)?;
    }
    events.send(RunEvent::CoverageSummary {
        table: String::from_utf8_lossy(&table).trim_end().to_owned(),
    });
    for c in captures {
        if let Ok(p) = &c.outcome {
            for s in &p.survivors {
                notice(Diagnostic::warning(format!(
                    "{}: service `{s}` did not exit after SIGTERM; its coverage is missing",
                    c.name
                )));
            }
        }
    }
    for d in notices::notice_diagnostics(&merged.notices, &search, Flavor::Run) {
        notice(d);
    }
    events.send(RunEvent::ReportWritten { paths });
    if merged.skipped_inputs {
        return Ok(CoverageOutcome::Incomplete);
    }
    let mut shortfalls: Vec<String> = settings
        .thresholds
        .check(&merged.coverage.summary())
        .iter()
        .map(ToString::to_string)
        .collect();
    if let Some(d) = &delta {
        let gates = covnet_reporter::diff::output::check(
            d,
            diff_settings.fail_under_new_lines,
            diff_settings.fail_on_lost_coverage,
        );
        shortfalls.extend(gates.iter().map(ToString::to_string));
    }
    if !shortfalls.is_empty() {
        for s in &shortfalls {
            notice(Diagnostic::error(s.to_string()));
        }
        return Ok(CoverageOutcome::BelowThreshold);
    }
    Ok(CoverageOutcome::Complete)
}
