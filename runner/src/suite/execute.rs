//! Running the specs of a suite on this host, `jobs` at a time, each as
//! its own `covnet run` (own network, own output directory), and how many
//! at a time this host can take.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::discover::SuiteSpec;
use crate::events::EventSender;
use crate::run::{self, Interruption, RunOutcome, RunPlan, RunRequest};
use crate::spec::{Backend, CoverageSettings, Spec};

/// One spec of the suite, run (or not).
#[derive(Debug)]
pub struct SpecRun {
    /// The spec.
    pub spec: SuiteSpec,
    /// Its output directory (`<suite out>/<id>`).
    pub out: PathBuf,
    /// Its machines (empty when the spec could not be read).
    pub machines: Vec<String>,
    /// How it ended; `Err` when it could not be planned or set up, or
    /// did not start (the suite was interrupted).
    pub outcome: Result<RunOutcome, String>,
    /// Wall time.
    pub elapsed: Duration,
}

/// Stops a running suite: every spec running now is interrupted, and no
/// further spec starts. Cheap to clone; safe to call from any thread.
#[derive(Clone, Default)]
pub struct SuiteInterruption {
    stop: Arc<crate::stop::Stop>,
    running: Arc<Mutex<Vec<Interruption>>>,
}

impl SuiteInterruption {
    /// Interrupts every running spec with `reason` and starts no more.
    pub fn interrupt(&self, reason: &str) {
        self.stop.request(reason);
        if let Ok(running) = self.running.lock() {
            for i in running.iter() {
                i.interrupt(reason);
            }
        }
    }

    fn stopped(&self) -> Option<String> {
        self.stop.requested()
    }

    /// A spec's own interruption, registered while it runs.
    fn enter(&self) -> Interruption {
        let i = Interruption::default();
        if let Ok(mut running) = self.running.lock() {
            running.push(i.clone());
        }
        // A signal between the check and the registration still reaches it.
        if let Some(reason) = self.stopped() {
            i.interrupt(&reason);
        }
        i
    }
}

/// How a suite's specs run: the request every spec shares (its `spec` and
/// `out` are set per spec), the coverage settings made of each spec's
/// `[coverage]`, the suite's output directory and the number of specs at
/// once.
pub struct SuitePlan<'a> {
    /// The shared request.
    pub template: RunRequest,
    /// Coverage settings of a spec (e.g. the command line's on top).
    pub coverage: &'a (dyn Fn(&CoverageSettings) -> CoverageSettings + Sync),
    /// The suite's output directory (the bundle).
    pub out: PathBuf,
    /// Specs running at once (at least 1).
    pub jobs: usize,
}

/// Runs `specs`, `plan.jobs` at a time, in suite order; each spec's events
/// go to the sender `events_for` gives it. Results come back in the order
/// of `specs`.
pub fn run_specs(
    specs: &[SuiteSpec],
    plan: &SuitePlan<'_>,
    interruption: &SuiteInterruption,
    events_for: &(dyn Fn(&SuiteSpec) -> EventSender + Sync),
) -> Vec<SpecRun> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<SpecRun>>> = Mutex::new((0..specs.len()).map(|_| None).collect());
    let jobs = plan.jobs.clamp(1, specs.len().max(1));
    let cores = cores_per_job(crate::run::network::host_cores(), jobs);
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(spec) = specs.get(i) else {
                    break;
                };
                let run = run_one(spec, plan, cores, interruption, events_for);
                if let Ok(mut r) = results.lock() {
                    r[i] = Some(run);
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_default()
        .into_iter()
        .zip(specs)
        .map(|(r, spec)| {
            r.unwrap_or_else(|| SpecRun {
                spec: spec.clone(),
                out: plan.out.join(&spec.id),
                machines: Vec::new(),
                outcome: Err("internal error: the spec's worker ended without a result".into()),
                elapsed: Duration::ZERO,
            })
        })
        .collect()
}

/// Runs one spec, counting on `cores` of the host's.
fn run_one(
    spec: &SuiteSpec,
    plan: &SuitePlan<'_>,
    cores: usize,
    interruption: &SuiteInterruption,
    events_for: &(dyn Fn(&SuiteSpec) -> EventSender + Sync),
) -> SpecRun {
    let started = Instant::now();
    let out = plan.out.join(&spec.id);
    let mut run = SpecRun {
        spec: spec.clone(),
        out: out.clone(),
        machines: Vec::new(),
        outcome: Err(String::new()),
        elapsed: Duration::ZERO,
    };
    if let Some(reason) = interruption.stopped() {
        run.outcome = Err(format!("the suite was stopped: {reason}"));
        return run;
    }
    // A rerun into the same directory must not bring back the last run's
    // coverage when this one brings none.
    for stale in ["coverage.json", crate::coverage::identity::FILE] {
        let _ = std::fs::remove_file(run.out.join(stale));
    }
    let request = RunRequest {
        spec: spec.path.clone(),
        out: Some(out),
        cores: Some(cores),
        ..plan.template.clone()
    };
    let planned = RunPlan::with_coverage(&request, plan.coverage);
    run.outcome = match planned {
        Err(e) => Err(crate::coverage::notices::chain(&e)),
        Ok(p) => {
            run.machines = p.spec.machines.iter().map(|m| m.name.clone()).collect();
            let events = events_for(spec);
            let own = interruption.enter();
            let result = run::execute(&p, &events, &own);
            if let Ok(mut running) = interruption.running.lock() {
                running.retain(|i| !i.same(&own));
            }
            result.map_err(|e| crate::coverage::notices::chain(&e))
        }
    };
    run.elapsed = started.elapsed();
    run
}

/// The host cores one of `jobs` specs running at once may count on: its
/// share, at least one. A spec's network sizes its VMs' timer and cold
/// boots by it (see [`crate::machine::vm::acpi_for_network`]).
pub fn cores_per_job(cores: usize, jobs: usize) -> usize {
    (cores / jobs.max(1)).max(1)
}

/// How many specs run at once when `-j` is not given, and why: namespace
/// machines are processes, so as many specs as cores; a VM under TCG
/// keeps about one core busy per vCPU and needs its memory, so the specs
/// with VMs run as many at once as the cores and the available memory
/// hold for the largest of them.
pub fn default_jobs(specs: &[Spec], cores: usize, mem_available_mib: u64) -> (usize, String) {
    let cores = cores.max(1);
    let vm_load = |s: &Spec| -> (usize, u64) {
        s.machines
            .iter()
            .filter(|m| m.backend == Backend::Vm)
            .fold((0, 0), |(c, mem), m| {
                (
                    c + usize::from(m.cpus.get()),
                    mem + u64::from(m.memory_mib.get()),
                )
            })
    };
    let (cpu, mem) = specs
        .iter()
        .map(vm_load)
        .fold((0, 0), |(c, m), (c2, m2)| (c.max(c2), m.max(m2)));
    if cpu == 0 {
        return (
            cores,
            format!("{cores} at once: namespace machines only, one spec per core"),
        );
    }
    let by_cpu = (cores / cpu).max(1);
    // Leave a quarter of the memory to the host (QEMU's own, page cache).
    let by_mem = usize::try_from(mem_available_mib * 3 / 4 / mem.max(1))
        .unwrap_or(usize::MAX)
        .max(1);
    let jobs = by_cpu.min(by_mem);
    (
        jobs,
        format!(
            "{jobs} at once: the largest spec's VMs need {cpu} vCPU(s) and {mem} MiB; this host has {cores} core(s) and {mem_available_mib} MiB available"
        ),
    )
}

/// `MemAvailable` of `/proc/meminfo` in MiB (0 when unknown).
pub fn mem_available_mib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemAvailable:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

/// A spec's output directory inside the suite's.
pub fn spec_dir(out: &Path, spec: &SuiteSpec) -> PathBuf {
    out.join(&spec.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> Spec {
        Spec::from_str(text, Path::new("/s/x.toml")).unwrap()
    }

    #[test]
    fn each_job_counts_on_its_share_of_the_cores() {
        assert_eq!(cores_per_job(2, 1), 2);
        assert_eq!(cores_per_job(2, 2), 1);
        assert_eq!(cores_per_job(2, 4), 1, "never zero");
        assert_eq!(cores_per_job(16, 3), 5);
        assert_eq!(cores_per_job(4, 0), 4);
    }

    #[test]
    fn jobs_follow_cores_for_namespaces_and_cores_and_memory_for_vms() {
        let ns = spec("[defaults]\nbackend = \"namespace\"\n[machines.a]\n[machines.b]\n");
        assert_eq!(default_jobs(std::slice::from_ref(&ns), 8, 1000).0, 8);
        let vms = spec("[machines.a]\nmemory_mib = 512\n[machines.b]\nmemory_mib = 512\n");
        // 2 vCPUs per spec: 8 cores hold 4; 3000 MiB * 3/4 hold 2.
        let (j, why) = default_jobs(&[ns, vms.clone()], 8, 3000);
        assert_eq!(j, 2, "{why}");
        assert!(why.contains("1024 MiB"), "{why}");
        assert_eq!(default_jobs(&[vms], 1, 100_000).0, 1, "never zero");
    }
}
