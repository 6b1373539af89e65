//! A test network: the machines of a spec with their run directory,
//! switch and images, started together and shut down together on every
//! path (success, failure, panic, Ctrl-C).
//!
//! [`Network::build`] turns a validated [`Spec`] into a run directory, one
//! switch for all VLANs, an initramfs per machine and a VM per machine;
//! [`Network::start_all`] boots them in parallel; [`Network::shutdown`]
//! stops them (graceful, then killed) and reports any that survived.
//! `Drop` is the fallback that kills whatever still runs and logs.
//! [`watch_signals`] turns SIGINT/SIGTERM/SIGHUP into an orderly
//! interruption.
//!
//! This is the Rust API of covnet's test scripts, for `cargo test`:
//!
//! ```no_run
//! use std::time::Duration;
//! use covnet_runner::run::network::{Network, NetworkOptions};
//! use covnet_runner::spec::Spec;
//!
//! let spec = Spec::from_path("examples/httpd/spec.toml".as_ref())?;
//! let net = Network::build(&spec, &NetworkOptions::default())?;
//! net.start_all()?;
//! let (server, client) = (net.node("server").unwrap(), net.node("client").unwrap());
//! server.wait_for_service("httpd", Duration::from_secs(60))?;
//! let page = client.succeed("wget -q -O - http://server/")?;
//! assert!(page.contains("hello"));
//! client.block()?;
//! client.fail("timeout 2 wget -q -O - http://server/")?;
//! net.shutdown(Duration::from_secs(30))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::diag::Diagnostic;
use crate::events::{EventSender, RunEvent};
use crate::image::initramfs::{self, Image, ImageBuilder, ImageError};
use crate::image::kernel::{Kernel, KernelError};
use crate::image::pvh;
use crate::machine::namespace::{NamespaceConfig, NamespaceMachine};
use crate::machine::vm::accel::{self, AccelRequest};
use crate::machine::vm::snapshot::SnapshotCache;
use crate::machine::vm::{self, Vm, VmConfig};
use crate::machine::{Machine, MachineError};
use crate::net::faults::FAULT_SEED_ENV;
use crate::net::switch::{Switch, SwitchError};
use crate::rundir::{RunDir, RunDirError};
use crate::script::driver::{
    crash_all, start_nodes, Node, RunContext, ServiceCheck, StepError, Timeouts,
};
use crate::spec::{self, BootTimeout, Spec};

/// How a network is built and run.
#[derive(Debug, Clone, Default)]
pub struct NetworkOptions {
    /// Accelerator for every machine, overriding the spec.
    pub accel: Option<AccelRequest>,
    /// Where events go.
    pub events: EventSender,
    /// The run's output directory (relative `copy_from_vm` targets).
    pub output_dir: PathBuf,
    /// Keep the run directory after the run (sockets, console logs).
    pub keep_run_dir: bool,
    /// Capture every VLAN's frames into `<run dir>/vlan<N>.pcap`.
    pub pcap: bool,
    /// Boot every VM cold: neither restore booted guests from the snapshot
    /// cache nor save them to it (see [`crate::machine::vm::snapshot`]).
    pub cold_boot: bool,
    /// The host cores this network may count on (`None`: all of them);
    /// more VMs than that boot with ACPI and wait for one cold boot per
    /// image (see [`vm::acpi_for_network`]).
    pub cores: Option<usize>,
    /// Extra environment of every machine's init, services and shell (e.g.
    /// `GCOV_PREFIX` when coverage is collected).
    pub guest_env: Vec<(String, String)>,
    /// Extra files in every machine, `(guest path, contents, mode)` (e.g.
    /// covnet's flush shim when coverage is collected); the machines' own
    /// files may replace them.
    pub guest_files: Vec<(String, Vec<u8>, u32)>,
}

/// A failure to set up a network.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetworkError {
    /// The run directory could not be created.
    #[error(transparent)]
    RunDir(#[from] RunDirError),
    /// The switch could not be started or a capture opened.
    #[error(transparent)]
    Switch(#[from] SwitchError),
    /// No usable kernel for a machine.
    #[error("machine `{machine}`: no usable kernel")]
    Kernel {
        /// The machine.
        machine: String,
        /// Why.
        #[source]
        source: KernelError,
    },
    /// A machine asks for KVM where it is not usable.
    #[error("machine `{machine}`: {reason}")]
    Accel {
        /// The machine.
        machine: String,
        /// Why KVM is not usable.
        reason: accel::KvmUnusable,
    },
    /// A machine's image could not be built.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// A machine could not be created (sockets, switch ports).
    #[error(transparent)]
    Machine(#[from] MachineError),
    /// A bug: an image-building thread panicked.
    #[error("internal error: the image build of machine `{machine}` panicked")]
    Panicked {
        /// The machine.
        machine: String,
    },
}

fn accel_request(a: spec::Accel) -> AccelRequest {
    match a {
        spec::Accel::Auto => AccelRequest::Auto,
        spec::Accel::Kvm => AccelRequest::Kvm,
        spec::Accel::Tcg => AccelRequest::Tcg,
    }
}

/// A failure to stop the network cleanly.
#[derive(Debug, thiserror::Error)]
#[error("failed to shut down {} machine(s): {}", errors.len(), errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
pub struct ShutdownError {
    /// One error per machine that did not stop cleanly.
    pub errors: Vec<MachineError>,
}

/// Kills every machine of a network from another thread (signal handler,
/// watchdog) and marks the run interrupted, so that blocked steps return.
#[derive(Clone)]
pub struct Interrupter {
    ctx: Arc<RunContext>,
    nodes: Vec<Node>,
}

impl std::fmt::Debug for Interrupter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interrupter")
            .field("machines", &self.nodes.len())
            .finish()
    }
}

impl Interrupter {
    /// Marks the run interrupted with `reason` and kills every machine.
    pub fn interrupt(&self, reason: &str) {
        self.ctx.interrupt(reason);
        crash_all(&self.nodes);
    }
}

/// The machines of one run and everything they need.
pub struct Network {
    nodes: Vec<Node>,
    ctx: Arc<RunContext>,
    console_logs: Vec<(String, PathBuf)>,
    pcaps: Vec<PathBuf>,
    run_dir_path: Option<PathBuf>,
    /// Resources dropped after the machines, in this order.
    resources: Vec<Box<dyn std::any::Any + Send>>,
    closed: AtomicBool,
    started: Instant,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("nodes", &self.nodes)
            .field("run_dir", &self.run_dir_path)
            .finish()
    }
}

impl Network {
    /// Builds the network of `spec`: a private run directory, one switch
    /// for all VLANs, an initramfs per machine (in parallel, cached) and a
    /// stopped VM per machine attached to the switch. Nothing is booted
    /// yet; see [`Network::start_all`].
    pub fn build(spec: &Spec, options: &NetworkOptions) -> Result<Network, NetworkError> {
        let started = Instant::now();
        let events = options.events.clone();
        let mut run_dir = RunDir::create()?;
        if options.keep_run_dir {
            run_dir.keep();
        }
        events.send(RunEvent::RunStart {
            run_dir: run_dir.path().to_owned(),
            machines: spec.machines.iter().map(|m| m.name.clone()).collect(),
        });
        let switch = Arc::new(Switch::start()?);
        let mut pcaps = Vec::new();
        if options.pcap {
            let mut vlans: Vec<u8> = spec
                .machines
                .iter()
                .flat_map(|m| m.nics.iter().map(|n| n.vlan))
                .collect();
            vlans.sort_unstable();
            vlans.dedup();
            for vlan in vlans {
                let path = run_dir.file(&format!("vlan{vlan}.pcap"));
                switch.capture(vlan, &path)?;
                pcaps.push(path);
            }
        }

        warn_applet_names(spec, &events);
        let images = build_images(spec, &options.guest_env, &options.guest_files, &events)?;

        let boot_timeout = match spec.defaults.boot_timeout {
            BootTimeout::Auto => None,
            BootTimeout::Fixed(d) => Some(d),
        };
        let mut nodes = Vec::new();
        let mut console_logs = Vec::new();
        let mut slowest = accel::Accel::Kvm;
        let mut machines: Vec<Arc<dyn Machine>> = Vec::new();
        let mut boots: HashMap<PathBuf, PathBuf> = HashMap::new();
        let many_vms = vm::acpi_for_network(
            images.iter().filter(|built| built.is_some()).count(),
            options.cores.unwrap_or_else(host_cores),
        );
        for (m, built) in spec.machines.iter().zip(&images) {
            let Some((kernel, image)) = built else {
                // backend = "namespace": same switch, no VM.
                let mut cfg =
                    NamespaceConfig::from_spec(spec, m, &machine_env(&options.guest_env, m))?;
                // First: later files (the machine's own) may replace them.
                cfg.files.splice(0..0, options.guest_files.iter().cloned());
                if let Some(t) = boot_timeout {
                    cfg.boot_timeout = t;
                }
                let ns = NamespaceMachine::new(
                    cfg,
                    &run_dir,
                    Some(switch.clone()),
                    events.machine_sink(),
                )?;
                console_logs.push((m.name.clone(), ns.console_log_path().to_owned()));
                machines.push(Arc::new(ns));
                continue;
            };
            let request = options.accel.unwrap_or_else(|| accel_request(m.accel));
            let accel = accel::resolve(request).map_err(|reason| NetworkError::Accel {
                machine: m.name.clone(),
                reason,
            })?;
            if accel == accel::Accel::Tcg {
                slowest = accel::Accel::Tcg;
            }
            // Once per distinct kernel: unpacked (or refused, with one
            // notice) for the first VM that boots it.
            let boot = match boots.get(&kernel.image) {
                Some(path) => path.clone(),
                None => {
                    let path = boot_kernel(kernel, &events);
                    boots.insert(kernel.image.clone(), path.clone());
                    path
                }
            };
            let mut cfg = VmConfig::from_spec(m, &boot, image, accel, boot_timeout);
            cfg.acpi |= many_vms;
            cfg.await_cold_boot = many_vms;
            if !options.cold_boot {
                cfg.snapshots = Some(SnapshotCache::new(SnapshotCache::default_dir()));
            }
            let vm = Vm::new(cfg, &run_dir, Some(switch.clone()), events.machine_sink())?;
            console_logs.push((m.name.clone(), vm.console_log_path().to_owned()));
            machines.push(Arc::new(vm));
        }
        let timeouts = Timeouts {
            command: spec.defaults.command_timeout,
            wait: crate::script::driver::DEFAULT_WAIT_TIMEOUT,
            shutdown: slowest.shutdown_grace(),
        };
        let ctx = Arc::new(RunContext::new(
            events,
            timeouts,
            spec.dir(),
            options.output_dir.clone(),
        ));
        if let Some(seed) = fault_seed_from_env(&ctx.events) {
            switch.set_fault_seed(seed);
        }
        ctx.attach_switch(switch.clone());
        for m in spec.machines.iter().filter(|m| !m.link.is_perfect()) {
            for port in switch.machine_ports(&m.name) {
                switch.set_link_faults(port, m.link)?;
            }
            if m.link.loss > 0.0 || !m.link.jitter.is_zero() {
                ctx.announce_fault_seed();
            }
        }
        for (m, machine) in spec.machines.iter().zip(machines) {
            let services = m
                .services
                .iter()
                .map(|s| ServiceCheck {
                    name: s.name.clone(),
                    ready: s.ready.clone(),
                })
                .collect();
            nodes.push(Node::new(machine, services, ctx.clone()));
        }
        let run_dir_path = run_dir.path().to_owned();
        Ok(Network {
            nodes,
            ctx,
            console_logs,
            pcaps,
            run_dir_path: Some(run_dir_path),
            // Dropped in this order after the machines: the switch, then
            // the run directory with its sockets and logs.
            resources: vec![Box::new(switch), Box::new(run_dir)],
            closed: AtomicBool::new(false),
            started,
        })
    }

    /// A network of already created machines (any backend), with no run
    /// directory of its own. `resources` are dropped after the machines
    /// have been shut down, first to last.
    pub fn from_nodes(
        nodes: Vec<Node>,
        ctx: Arc<RunContext>,
        resources: Vec<Box<dyn std::any::Any + Send>>,
    ) -> Network {
        Network {
            nodes,
            ctx,
            console_logs: Vec::new(),
            pcaps: Vec::new(),
            run_dir_path: None,
            resources,
            closed: AtomicBool::new(false),
            started: Instant::now(),
        }
    }

    /// The machines, in spec order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The machine called `name`.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name() == name)
    }

    /// The run context (events, timeouts, directories).
    pub fn context(&self) -> &Arc<RunContext> {
        &self.ctx
    }

    /// The run's private directory, if the network has one.
    pub fn run_dir(&self) -> Option<&Path> {
        self.run_dir_path.as_deref()
    }

    /// Per machine, its serial console log file.
    pub fn console_logs(&self) -> &[(String, PathBuf)] {
        &self.console_logs
    }

    /// The switch's packet captures.
    pub fn pcaps(&self) -> &[PathBuf] {
        &self.pcaps
    }

    /// Splits the network into `groups` of machine names; see
    /// [`RunContext::partition`].
    pub fn partition(&self, groups: &[Vec<String>]) -> Result<(), StepError> {
        self.ctx.partition(groups)
    }

    /// Ends a partition.
    pub fn heal(&self) -> Result<(), StepError> {
        self.ctx.heal()
    }

    /// Boots every machine in parallel and waits until all answer.
    pub fn start_all(&self) -> Result<(), StepError> {
        start_nodes(&self.nodes)
    }

    /// A handle that can interrupt the run from another thread.
    pub fn interrupter(&self) -> Interrupter {
        Interrupter {
            ctx: self.ctx.clone(),
            nodes: self.nodes.clone(),
        }
    }

    /// Stops every machine: gracefully within `grace` (in parallel), then
    /// killed. Idempotent. Errors name each machine that would not stop.
    pub fn shutdown(&self, grace: Duration) -> Result<(), ShutdownError> {
        if self.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let errors: Vec<MachineError> = std::thread::scope(|scope| {
            let handles: Vec<_> =
                self.nodes
                    .iter()
                    .map(|n| {
                        scope.spawn(move || -> Option<MachineError> {
                            let m = n.machine();
                            if !m.is_running() {
                                // Reap a crashed or never-started machine.
                                return m.crash().err();
                            }
                            match m.shutdown(grace) {
                                Ok(()) => None,
                                Err(first) => match m.crash() {
                                    Ok(()) => {
                                        n.context().events.send(RunEvent::Notice(
                                            Diagnostic::warning(format!("{first}; killed instead")),
                                        ));
                                        None
                                    }
                                    Err(e) => Some(e),
                                },
                            }
                        })
                    })
                    .collect();
            handles
                .into_iter()
                .filter_map(|h| h.join().unwrap_or(None))
                .collect()
        });
        self.end(errors)
    }

    /// Tells the run's end and turns the machines' errors into the result.
    fn end(&self, errors: Vec<MachineError>) -> Result<(), ShutdownError> {
        self.ctx.events.send(RunEvent::RunEnd {
            elapsed: self.started.elapsed(),
        });
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ShutdownError { errors })
        }
    }

    /// Kills every machine at once (no graceful shutdown). Idempotent
    /// together with [`Network::shutdown`].
    pub fn kill_all(&self) -> Result<(), ShutdownError> {
        if self.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let errors: Vec<MachineError> = std::thread::scope(|scope| {
            let handles: Vec<_> = self
                .nodes
                .iter()
                .map(|n| scope.spawn(move || n.machine().crash().err()))
                .collect();
            handles
                .into_iter()
                .filter_map(|h| h.join().unwrap_or(None))
                .collect()
        });
        self.end(errors)
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        // Fallback only: the owner should have called shutdown().
        if let Err(e) = self.kill_all() {
            crate::diag::warn(format!("while dropping the network: {e}"));
        }
        // Machines hold their resources' paths; drop them before the switch
        // and the run directory.
        self.nodes.clear();
        while !self.resources.is_empty() {
            let r = self.resources.remove(0);
            drop(r);
        }
    }
}

/// Builds every machine's image in parallel (one thread per machine),
/// with start/end events; returns them in spec order with their kernels.
fn build_images(
    spec: &Spec,
    env: &[(String, String)],
    files: &[(String, Vec<u8>, u32)],
    events: &EventSender,
) -> Result<Vec<Option<(Kernel, Image)>>, NetworkError> {
    let results: Vec<Result<Option<(Kernel, Image)>, NetworkError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = spec
            .machines
            .iter()
            .map(|m| {
                let events = events.clone();
                let handle =
                    scope.spawn(move || -> Result<Option<(Kernel, Image)>, NetworkError> {
                        events.send(RunEvent::ImageStart {
                            machine: m.name.clone(),
                        });
                        let t = Instant::now();
                        let result = machine_image(spec, m, &machine_env(env, m), files);
                        events.send(RunEvent::ImageEnd {
                            machine: m.name.clone(),
                            result: match &result {
                                Ok(_) => Ok(t.elapsed()),
                                Err(e) => Err(e.to_string()),
                            },
                        });
                        result
                    });
                (m, handle)
            })
            .collect();
        handles
            .into_iter()
            .map(|(m, h)| {
                h.join().unwrap_or_else(|_| {
                    Err(NetworkError::Panicked {
                        machine: m.name.clone(),
                    })
                })
            })
            .collect()
    });
    results.into_iter().collect()
}

/// The host's cores as this process sees them (its CPU affinity and cgroup
/// quota): what a network counts on unless told its share
/// ([`NetworkOptions::cores`]).
pub fn host_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Warns about programs and files that have the name of a busybox applet:
/// a bare `wget` in a command or service runs busybox's, not the
/// machine's `/usr/bin/wget` (see [`initramfs::named_like_applets`]).
fn warn_applet_names(spec: &Spec, events: &EventSender) {
    // Without a readable busybox the image build fails, saying so.
    let Ok(applets) = initramfs::applets_of(Path::new(initramfs::DEFAULT_BUSYBOX)) else {
        return;
    };
    for m in &spec.machines {
        let programs = m.programs.iter().filter_map(|p| p.to_str());
        let files = m.files.iter().map(|f| f.target.as_str());
        for path in initramfs::named_like_applets(programs.chain(files), &applets) {
            let name = Path::new(path)
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default();
            events.send(RunEvent::Notice(Diagnostic::warning(format!(
                "machine `{}`: {path} has the name of a busybox applet: a bare `{name}` in a command or service runs busybox's `{name}` (the guest's shell prefers its applets)\n  (hint: name it by its path, {path})",
                m.name
            ))));
        }
    }
}

/// The fault seed from [`FAULT_SEED_ENV`], when set to a number.
fn fault_seed_from_env(events: &EventSender) -> Option<u64> {
    let text = std::env::var(FAULT_SEED_ENV).ok()?;
    match text.trim().parse() {
        Ok(seed) => Some(seed),
        Err(_) => {
            events.send(RunEvent::Notice(Diagnostic::warning(format!(
                "ignoring {FAULT_SEED_ENV}={text:?}: not a number"
            ))));
            None
        }
    }
}

/// The guest's default `PATH`, as the stage-1 init sets it.
const GUEST_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The environment of machine `m`: the run's extra variables, plus a `PATH`
/// that also holds the directories of the machine's programs, so that
/// service commands and scripts can name them without their build path.
fn machine_env(env: &[(String, String)], m: &spec::Machine) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = env.to_vec();
    let mut path = GUEST_PATH.to_owned();
    for dir in m.programs.iter().filter_map(|p| p.parent()) {
        let dir = dir.to_string_lossy();
        if !dir.is_empty() && !path.split(':').any(|d| d == dir) {
            path.push(':');
            path.push_str(&dir);
        }
    }
    if !out.iter().any(|(k, _)| k == "PATH") {
        out.push(("PATH".to_owned(), path));
    }
    out
}

/// The file QEMU boots for `kernel`: its PVH kernel (unpacked once into
/// the image cache, see [`pvh`]), or the bzImage itself, with a notice
/// saying why, when it has none.
fn boot_kernel(kernel: &Kernel, events: &EventSender) -> PathBuf {
    match pvh::cached(&kernel.image, &initramfs::default_cache_dir()) {
        Ok(path) => path,
        Err(e) => {
            events.send(RunEvent::Notice(Diagnostic::notice(format!(
                "VMs boot {} through its own decompressor, not the PVH entry \
                 (slower to boot under TCG: bench/RESULTS.md, vm-boot): {e}",
                kernel.image.display()
            ))));
            kernel.image.clone()
        }
    }
}

/// The kernel and initramfs of a VM; `None` for a namespace machine (its
/// root is assembled from the same inputs when it starts).
fn machine_image(
    spec: &Spec,
    m: &spec::Machine,
    env: &[(String, String)],
    files: &[(String, Vec<u8>, u32)],
) -> Result<Option<(Kernel, Image)>, NetworkError> {
    if m.backend == spec::Backend::Namespace {
        return Ok(None);
    }
    let kernel = match m.kernel.as_ref().or(spec.defaults.kernel.as_ref()) {
        Some(path) => Kernel::from_image(path),
        None => Kernel::host_default(),
    }
    .map_err(|source| NetworkError::Kernel {
        machine: m.name.clone(),
        source,
    })?;
    let mut builder = ImageBuilder::new(spec, m, &kernel);
    for (key, value) in env {
        builder = builder.env(key, value);
    }
    for (path, data, mode) in files {
        builder = builder.file(path, *mode, data.clone());
    }
    let image = builder.build()?;
    Ok(Some((kernel, image)))
}

/// A termination signal that arrived, as [`watch_signals`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// `"SIGINT"`, `"SIGTERM"` or `"SIGHUP"`.
    pub name: &'static str,
    /// Not the first signal: the process exits with status 130 as soon as
    /// the callback returns.
    pub again: bool,
}

/// Watches SIGINT, SIGTERM and SIGHUP on its own thread until dropped.
/// Every signal calls `on_signal` (which tells the user and interrupts the
/// run); after a second one the process exits at once with status 130
/// (guests die with it through their parent-death signal).
pub struct SignalWatch {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for SignalWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SignalWatch")
    }
}

/// Starts watching termination signals; see [`SignalWatch`].
pub fn watch_signals(
    on_signal: impl Fn(Received) + Send + 'static,
) -> std::io::Result<SignalWatch> {
    use tokio::signal::unix::{signal, SignalKind};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (mut int, mut term, mut hup) = rt.block_on(async {
        Ok::<_, std::io::Error>((
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
            signal(SignalKind::hangup())?,
        ))
    })?;
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("covnet-signals".into())
        .spawn(move || {
            rt.block_on(async move {
                let mut seen = 0u32;
                loop {
                    let name = tokio::select! {
                        _ = int.recv() => "SIGINT",
                        _ = term.recv() => "SIGTERM",
                        _ = hup.recv() => "SIGHUP",
                        _ = &mut stop_rx => return,
                    };
                    seen += 1;
                    let again = seen > 1;
                    on_signal(Received { name, again });
                    if again {
                        std::process::exit(130);
                    }
                }
            })
        })?;
    Ok(SignalWatch {
        stop: Some(stop_tx),
        thread: Some(thread),
    })
}

impl Drop for SignalWatch {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::Output;
    use std::sync::atomic::AtomicUsize;

    /// A machine that only records its life cycle.
    #[derive(Default)]
    struct Recorder {
        name: String,
        running: AtomicBool,
        starts: AtomicUsize,
        shutdowns: AtomicUsize,
        crashes: AtomicUsize,
        fail_shutdown: bool,
    }

    impl Machine for Recorder {
        fn name(&self) -> &str {
            &self.name
        }
        fn start(&self) -> Result<(), MachineError> {
            self.starts.fetch_add(1, Ordering::SeqCst);
            self.running.store(true, Ordering::SeqCst);
            Ok(())
        }
        fn is_running(&self) -> bool {
            self.running.load(Ordering::SeqCst)
        }
        fn execute(&self, _: &str, _: Duration) -> Result<Output, MachineError> {
            Ok(Output::default())
        }
        fn copy_to(&self, _: &[u8], _: &str, _: u32) -> Result<(), MachineError> {
            Ok(())
        }
        fn copy_from(&self, _: &str) -> Result<Vec<u8>, MachineError> {
            Ok(Vec::new())
        }
        fn console_lines(&self, _: usize) -> Vec<String> {
            Vec::new()
        }
        fn wait_for_console_text(&self, _: &str, _: Duration) -> Result<(), MachineError> {
            Ok(())
        }
        fn shutdown(&self, _: Duration) -> Result<(), MachineError> {
            self.shutdowns.fetch_add(1, Ordering::SeqCst);
            if self.fail_shutdown {
                return Err(MachineError::Stop {
                    machine: self.name.clone(),
                    detail: "guest ignored poweroff".into(),
                });
            }
            self.running.store(false, Ordering::SeqCst);
            Ok(())
        }
        fn crash(&self) -> Result<(), MachineError> {
            self.crashes.fetch_add(1, Ordering::SeqCst);
            self.running.store(false, Ordering::SeqCst);
            Ok(())
        }
        fn set_link(&self, _: bool) -> Result<(), MachineError> {
            Ok(())
        }
    }

    fn network(machines: &[Arc<Recorder>]) -> Network {
        let ctx = Arc::new(RunContext::new(
            EventSender::none(),
            Timeouts::default(),
            PathBuf::from("."),
            PathBuf::from("."),
        ));
        let nodes = machines
            .iter()
            .map(|m| Node::new(m.clone() as Arc<dyn Machine>, Vec::new(), ctx.clone()))
            .collect();
        Network::from_nodes(nodes, ctx, Vec::new())
    }

    fn recorder(name: &str, fail_shutdown: bool) -> Arc<Recorder> {
        Arc::new(Recorder {
            name: name.into(),
            fail_shutdown,
            ..Recorder::default()
        })
    }

    #[test]
    fn shutdown_is_graceful_then_kills_and_is_idempotent() {
        let (a, b) = (recorder("a", false), recorder("b", true));
        let net = network(&[a.clone(), b.clone()]);
        net.start_all().expect("start");
        assert_eq!(a.starts.load(Ordering::SeqCst), 1);
        net.shutdown(Duration::from_secs(1))
            .expect("b is killed instead");
        assert_eq!(a.shutdowns.load(Ordering::SeqCst), 1);
        assert_eq!(a.crashes.load(Ordering::SeqCst), 0);
        assert_eq!(b.crashes.load(Ordering::SeqCst), 1);
        assert!(!a.is_running() && !b.is_running());
        net.shutdown(Duration::from_secs(1)).expect("again");
        drop(net);
        assert_eq!(a.shutdowns.load(Ordering::SeqCst), 1, "no second shutdown");
    }

    #[test]
    fn drop_and_panic_kill_running_machines() {
        let a = recorder("a", false);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let net = network(std::slice::from_ref(&a));
            net.start_all().expect("start");
            panic!("test body fails");
        }));
        assert!(result.is_err());
        assert!(
            !a.is_running(),
            "unwinding dropped the network, which killed it"
        );
        assert_eq!(a.crashes.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn interrupter_marks_run_and_kills_everything() {
        let (a, b) = (recorder("a", false), recorder("b", false));
        let net = network(&[a.clone(), b.clone()]);
        net.start_all().expect("start");
        net.interrupter().interrupt("SIGINT received");
        assert!(!a.is_running() && !b.is_running());
        assert_eq!(
            net.context().interrupted().as_deref(),
            Some("SIGINT received")
        );
        let err = net.nodes()[0].succeed("true").expect_err("interrupted");
        assert!(err.is_infrastructure(), "{err}");
    }

    #[test]
    fn signal_watch_reports_the_signal_and_stops_on_drop() {
        let (tx, rx) = std::sync::mpsc::channel();
        let watch = watch_signals(move |received| {
            let _ = tx.send(received.name);
        })
        .expect("watch");
        let status = std::process::Command::new("kill")
            .args(["-HUP", &std::process::id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        assert_eq!(rx.recv_timeout(Duration::from_secs(30)), Ok("SIGHUP"));
        drop(watch);
    }
}
