//! `covnet run` as a library call: build the network of a [`RunPlan`],
//! run its script with the coverage hooks, write the failure bundle,
//! collect, merge and report coverage, shut everything down and give the
//! [`Verdict`]. Every step is told as a [`RunEvent`]; nothing is printed.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crate::coverage::blind;
use crate::coverage::flush::{self, ShimError};
use crate::coverage::notices;
use crate::diag::Diagnostic;
use crate::events::{EventSender, RunEvent};
use crate::image::closure::SearchPaths;
use crate::run::bundle::{copy_pcaps, write_bundle, BundleInput};
use crate::run::collection::{self, Phases};
use crate::run::network::{Interrupter, Network, NetworkError, NetworkOptions};
use crate::run::plan::RunPlan;
use crate::run::verdict::{CoverageOutcome, RunOutcome, TestResult, Verdict};
use crate::script::{run_script, ScriptFailure};
use covnet_merger::dwarf::DebugSearch;

/// Why a run could not be carried out at all (as opposed to a test that
/// failed, which is a [`Verdict`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// covnet's flush shim could not be built for the services.
    #[error(transparent)]
    Shim(#[from] ShimError),
    /// The network could not be set up.
    #[error("failed to set up the network of {}", spec.display())]
    Network {
        /// The spec file.
        spec: std::path::PathBuf,
        /// Why.
        #[source]
        source: Box<NetworkError>,
    },
}

/// Where an interruption (a signal, a watchdog) goes: the running
/// network, or kept until the network exists, so that Ctrl-C while images
/// build still ends in an orderly teardown. Cheap to clone; safe to call
/// from any thread.
#[derive(Clone, Default)]
pub struct Interruption {
    inner: Arc<Mutex<Target>>,
}

#[derive(Default)]
struct Target {
    interrupter: Option<Interrupter>,
    pending: Option<String>,
}

impl std::fmt::Debug for Interruption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interruption")
            .field("pending", &self.lock().pending)
            .finish_non_exhaustive()
    }
}

impl Interruption {
    fn lock(&self) -> MutexGuard<'_, Target> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Interrupts the run with `reason`: every machine is killed and the
    /// script's blocked step returns.
    pub fn interrupt(&self, reason: &str) {
        let mut t = self.lock();
        match &t.interrupter {
            Some(i) => i.interrupt(reason),
            None => t.pending = Some(reason.to_owned()),
        }
    }

    /// Whether `other` is a clone of this one.
    pub fn same(&self, other: &Interruption) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    fn attach(&self, interrupter: Interrupter) {
        let mut t = self.lock();
        if let Some(reason) = t.pending.take() {
            interrupter.interrupt(&reason);
        }
        t.interrupter = Some(interrupter);
    }

    fn detach(&self) {
        self.lock().interrupter = None;
    }
}

/// Carries out `plan`: events go to `events`, `interruption` stops it.
pub fn execute(
    plan: &RunPlan,
    events: &EventSender,
    interruption: &Interruption,
) -> Result<RunOutcome, RunError> {
    let started = Instant::now();
    let with_coverage = plan.request.coverage;
    // Services get covnet's flush shim, so that phases capture them too.
    let shim = if with_coverage {
        flush::prepare_spec(&plan.spec)?
    } else {
        Default::default()
    };
    // The installed files' debug information does not depend on the test:
    // read while it runs.
    let installed = with_coverage.then(|| {
        blind::read_installed_in_background(
            plan.spec.clone(),
            SearchPaths::host(),
            DebugSearch::default(),
        )
    });
    let options = NetworkOptions {
        accel: plan.request.accel,
        events: events.clone(),
        output_dir: plan.out.clone(),
        keep_run_dir: plan.request.keep_run_dir,
        pcap: plan.request.pcap,
        cold_boot: plan.request.cold_boot,
        cores: plan.request.cores,
        guest_env: if with_coverage {
            [crate::coverage::guest_env(), shim.env].concat()
        } else {
            Vec::new()
        },
        guest_files: shim.files,
    };
    let network = Network::build(&plan.spec, &options).map_err(|source| RunError::Network {
        spec: plan.request.spec.clone(),
        source: Box::new(source),
    })?;
    interruption.attach(network.interrupter());

    let phases = Arc::new(Phases::default());
    let mut script_options = plan.options.clone();
    if with_coverage {
        script_options.coverage = Some(collection::script_coverage(
            &network,
            &plan.out.join("coverage"),
            phases.clone(),
            plan.coverage().per_subtest,
        ));
    }
    let report = run_script(network.nodes(), &plan.source, &script_options);

    let mut failure = None;
    let mut bundle = None;
    let test = match &report.result {
        Ok(()) => TestResult::Passed,
        Err(f) => {
            let text = match (f, f.position()) {
                (
                    ScriptFailure::Step(_)
                    | ScriptFailure::Script { .. }
                    | ScriptFailure::Traced { .. },
                    Some(p),
                ) => {
                    format!("{f}\n  at {}", plan.script_location(p.line, p.column))
                }
                _ => f.to_string(),
            };
            let input = BundleInput {
                failure: &text,
                position: f.position(),
                script: Some(&plan.source),
                spec: Some(&plan.spec.path),
                nodes: network.nodes(),
                console_logs: network.console_logs(),
                pcaps: network.pcaps(),
            };
            let dir = plan.out.join("failure");
            match write_bundle(&dir, &input) {
                Ok(_) => bundle = Some(dir),
                Err(e) => events.send(RunEvent::Notice(Diagnostic::error(e.to_string()))),
            }
            failure = Some(text);
            match f {
                ScriptFailure::TimedOut { .. } => TestResult::TimedOut,
                _ if network.context().interrupted().is_some() => TestResult::Interrupted,
                f if f.is_infrastructure() => TestResult::Broken,
                _ => TestResult::Failed,
            }
        }
    };

    // Coverage is collected whatever the script's verdict: a failed test's
    // coverage is still worth reading, and a crashed machine is named.
    let captures = with_coverage.then(|| collection::collect(plan, &network, &phases));

    // The machines are not needed any more: they shut down (gracefully
    // after a passed test) while the coverage is merged and reported.
    let grace = network.context().timeouts.shutdown;
    let pcap_dir = plan.out.join("pcap");
    let stop_events = events.clone();
    let stop = move || {
        let stopped = if test == TestResult::Passed {
            let stopped = network.shutdown(grace);
            // A passed run has no bundle: its captures, complete now that
            // the machines are down, go into the output directory.
            if !network.pcaps().is_empty() {
                stop_events.send(RunEvent::Notice(
                    match copy_pcaps(network.pcaps(), &pcap_dir) {
                        Ok(notes) if notes.is_empty() => {
                            Diagnostic::notice(format!("packet captures: {}", pcap_dir.display()))
                        }
                        Ok(notes) => Diagnostic::warning(notes.join("\n")),
                        Err(e) => Diagnostic::error(format!(
                            "packet captures not copied to {}: {e}",
                            pcap_dir.display()
                        )),
                    },
                ));
            }
            stopped
        } else {
            network.kill_all()
        };
        drop(network);
        stopped.map_err(|e| e.to_string())
    };
    let (coverage, shutdown) = std::thread::scope(|scope| {
        let stopping = std::thread::Builder::new()
            .name("shutdown".into())
            .spawn_scoped(scope, stop);
        let coverage = match (&captures, installed) {
            (Some(captures), Some(installed)) => {
                collection::report(plan, captures, installed, events)
            }
            _ => Ok(CoverageOutcome::Off),
        };
        let shutdown = match stopping {
            Ok(handle) => handle
                .join()
                .unwrap_or_else(|_| Err("the shutdown thread panicked".into())),
            Err(e) => Err(format!("could not start the shutdown thread: {e}")),
        };
        (coverage, shutdown)
    });
    interruption.detach();
    let coverage = match coverage {
        Ok(c) => c,
        Err(e) => {
            let text = notices::chain(&e);
            events.send(RunEvent::Notice(Diagnostic::error(text.clone())));
            CoverageOutcome::Failed(text)
        }
    };
    let shutdown_error = shutdown.err();
    Ok(RunOutcome {
        verdict: Verdict {
            test,
            coverage,
            shutdown_failed: shutdown_error.is_some(),
        },
        cases: report.cases,
        failure,
        bundle,
        shutdown_error,
        elapsed: started.elapsed(),
        script_time: report.elapsed,
    })
}
