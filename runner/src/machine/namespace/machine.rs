//! [`NamespaceMachine`]: the [`Machine`] implementation for namespace
//! machines.
//!
//! Lifecycle: [`NamespaceMachine::new`] resolves the root file system
//! inputs (busybox applets, the programs' ELF closure, the machine's files)
//! and attaches one switch port per NIC; [`Machine::start`] clones the
//! machine's init into its namespaces, starts the frame relay and the
//! console bridges, and waits for the control shell; `shutdown` asks the
//! guest to stop its services (SIGTERM, so coverage data is written), sync
//! and power off (which ends the PID namespace), then kills what is left;
//! `crash` kills init, and with it every process of the machine, at once.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::guest::{self, GuestFileData, NS_INIT_PATH};
use super::link::{NicWiring, Relay, RelayPort};
use super::ns::{self, ChildConfig, NsProcess};
use super::rootfs::{self, Inputs};
use super::tty::TtyBridge;
use crate::machine::console::{shell_quote, ChannelError, ConsoleLog, ControlChannel};
use crate::image::closure::{self, SearchPaths};
use crate::image::initramfs::{busybox_applets, DEFAULT_BUSYBOX};
use crate::machine::{
    ConsoleTail, EventSink, Machine, MachineError, MachineEvent, Output, ERROR_CONSOLE_LINES,
};
use crate::rundir::RunDir;
use crate::switch::{PortId, Switch};

/// Default deadline for the first shell answer of a namespace machine.
pub const DEFAULT_BOOT_TIMEOUT: Duration = Duration::from_secs(30);
/// Extra time the control channel gets beyond a command's own timeout to
/// kill it and confirm.
pub const CHANNEL_SLACK: Duration = Duration::from_secs(3);
/// Longest the guest's services get to exit after SIGTERM on shutdown.
pub const SERVICE_STOP_GRACE: Duration = Duration::from_secs(5);
/// Host bytes per second assumed for copies through the control shell.
const COPY_BYTES_PER_SEC: u64 = 8 * 1024 * 1024;

/// A NIC of a namespace machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NsNic {
    /// VLAN (switch) number.
    pub vlan: u8,
    /// The MAC of `eth<slot>`.
    pub mac: [u8; 6],
}

/// Everything a namespace machine is made of.
#[derive(Debug, Clone)]
pub struct NamespaceConfig {
    /// Machine name: hostname, file names, messages.
    pub name: String,
    /// NICs in `eth<i>` order.
    pub nics: Vec<NsNic>,
    /// Host programs to install at their own path, with their ELF closure.
    pub programs: Vec<PathBuf>,
    /// Generated and spec files (see [`guest::files`]).
    pub files: Vec<GuestFileData>,
    /// Static busybox on the host.
    pub busybox: PathBuf,
    /// Deadline for the first shell answer.
    pub boot_timeout: Duration,
    /// Console log file; `None`: `<run dir>/<name>-console.log`.
    pub console_log: Option<PathBuf>,
}

impl NamespaceConfig {
    /// The config of `machine` of `spec`; `env` is exported to init,
    /// services and the control shell (e.g. `GCOV_PREFIX`).
    pub fn from_spec(
        spec: &crate::spec::Spec,
        machine: &crate::spec::Machine,
        env: &[(String, String)],
    ) -> Result<NamespaceConfig, MachineError> {
        let files = guest::files(spec, machine, env).map_err(|err| MachineError::Io {
            machine: machine.name.clone(),
            what: err.to_string(),
            source: err.source,
        })?;
        Ok(NamespaceConfig {
            name: machine.name.clone(),
            nics: machine
                .nics
                .iter()
                .map(|n| NsNic {
                    vlan: n.vlan,
                    mac: n.mac,
                })
                .collect(),
            programs: machine.programs.clone(),
            files,
            busybox: PathBuf::from(DEFAULT_BUSYBOX),
            boot_timeout: DEFAULT_BOOT_TIMEOUT,
            console_log: None,
        })
    }
}

/// What runs while the machine is up.
struct Running {
    init: NsProcess,
    relay: Option<Relay>,
    control: TtyBridge,
    console: TtyBridge,
}

struct Console {
    log: ConsoleLog,
    thread: Option<JoinHandle<()>>,
}

/// A machine in its own namespaces on this host, sharing the VMs' switch.
pub struct NamespaceMachine {
    cfg: NamespaceConfig,
    inputs: Inputs,
    root: PathBuf,
    serial: PathBuf,
    console_log: PathBuf,
    /// (NIC socket, switch port socket) per NIC.
    nic_paths: Vec<(PathBuf, PathBuf)>,
    switch: Option<Arc<Switch>>,
    ports: Vec<PortId>,
    events: EventSink,
    user_namespace: bool,
    life: Mutex<()>,
    running: Mutex<Option<Running>>,
    channel: Mutex<Option<ControlChannel>>,
    console: Mutex<Option<Console>>,
    boot_time: Mutex<Option<Duration>>,
    last_exit: Mutex<Option<String>>,
}

impl std::fmt::Debug for NamespaceMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NamespaceMachine")
            .field("name", &self.cfg.name)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl NamespaceMachine {
    /// A stopped machine whose sockets, logs and root mount point live in
    /// `run_dir`, with one port per NIC on `switch`.
    pub fn new(
        cfg: NamespaceConfig,
        run_dir: &RunDir,
        switch: Option<Arc<Switch>>,
        events: EventSink,
    ) -> Result<NamespaceMachine, MachineError> {
        let name = cfg.name.clone();
        let io_err = |what: String, source: std::io::Error| MachineError::Io {
            machine: name.clone(),
            what,
            source,
        };
        let sock = |suffix: &str| {
            run_dir
                .socket(&format!("{name}-{suffix}"))
                .map_err(|err| MachineError::Io {
                    machine: name.clone(),
                    what: "place its sockets in the run directory".into(),
                    source: std::io::Error::other(err.to_string()),
                })
        };
        let mut nic_paths = Vec::new();
        for i in 0..cfg.nics.len() {
            nic_paths.push((
                sock(&format!("nic{i}.sock"))?,
                sock(&format!("sw{i}.sock"))?,
            ));
        }
        let serial = sock("serial.sock")?;
        let root = run_dir.file(&format!("{name}-root"));
        let console_log = cfg
            .console_log
            .clone()
            .unwrap_or_else(|| run_dir.file(&format!("{name}-console.log")));

        let bb = std::fs::read(&cfg.busybox)
            .map_err(|e| io_err(format!("read busybox {}", cfg.busybox.display()), e))?;
        let names = busybox_applets(&bb);
        if names.is_empty() {
            return Err(io_err(
                format!("find the applet list in {}", cfg.busybox.display()),
                std::io::Error::other("not a busybox binary"),
            ));
        }
        let host_files = closure::closure(&cfg.programs, &SearchPaths::host()).map_err(|err| {
            io_err(
                "resolve the programs' shared libraries".into(),
                std::io::Error::other(err.to_string()),
            )
        })?;
        let inputs = Inputs {
            busybox: cfg.busybox.clone(),
            applets: names,
            host_files,
            files: cfg.files.clone(),
            control_tty: PathBuf::new(),
        };

        let mut ports = Vec::new();
        if !cfg.nics.is_empty() {
            let Some(sw) = &switch else {
                return Err(MachineError::Link {
                    machine: name,
                    up: true,
                    detail: "the machine has NICs but no switch was given".into(),
                });
            };
            for (i, (nic, (local, port))) in cfg.nics.iter().zip(&nic_paths).enumerate() {
                let id = sw
                    .add_port(&format!("{name}/eth{i}"), nic.vlan, port, local)
                    .map_err(|err| MachineError::Link {
                        machine: name.clone(),
                        up: true,
                        detail: err.to_string(),
                    })?;
                ports.push(id);
            }
        }
        Ok(NamespaceMachine {
            cfg,
            inputs,
            root,
            serial,
            console_log,
            nic_paths,
            switch,
            ports,
            events,
            user_namespace: ns::needs_user_namespace(),
            life: Mutex::new(()),
            running: Mutex::new(None),
            channel: Mutex::new(None),
            console: Mutex::new(None),
            boot_time: Mutex::new(None),
            last_exit: Mutex::new(None),
        })
    }

    /// The console log file.
    pub fn console_log_path(&self) -> &Path {
        &self.console_log
    }

    /// Host pid of the machine's init (PID 1 of its PID namespace) while it
    /// runs.
    pub fn pid(&self) -> Option<u32> {
        lock(&self.running).as_ref().map(|r| r.init.pid())
    }

    /// Time from clone to the first shell answer of the last start.
    pub fn boot_time(&self) -> Option<Duration> {
        *lock(&self.boot_time)
    }

    /// True when the machine runs in a user namespace of its own (covnet
    /// is not root).
    pub fn uses_user_namespace(&self) -> bool {
        self.user_namespace
    }

    fn name_owned(&self) -> String {
        self.cfg.name.clone()
    }

    fn tail(&self) -> ConsoleTail {
        ConsoleTail(self.console_lines(ERROR_CONSOLE_LINES))
    }

    fn io_err(&self, what: &str, source: std::io::Error) -> MachineError {
        MachineError::Io {
            machine: self.name_owned(),
            what: what.to_owned(),
            source,
        }
    }

    /// How init ended if it has (reaping it), else `None`.
    fn exited(&self) -> Option<String> {
        let mut running = lock(&self.running);
        match running.as_mut().map(|r| r.init.try_wait()) {
            Some(Ok(Some(st))) => Some(ns::describe_status(st)),
            Some(Ok(None)) => None,
            Some(Err(err)) => Some(err.to_string()),
            None => Some(
                lock(&self.last_exit)
                    .clone()
                    .unwrap_or_else(|| "not started".into()),
            ),
        }
    }

    fn remove_stale(&self, path: &Path) -> Result<(), MachineError> {
        match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(self.io_err(&format!("remove stale {}", path.display()), err)),
        }
    }

    fn cstring(&self, what: &str, bytes: &[u8]) -> Result<CString, MachineError> {
        CString::new(bytes).map_err(|_| {
            self.io_err(
                &format!("use {what}"),
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "contains a NUL byte"),
            )
        })
    }

    fn boot(&self) -> Result<(), MachineError> {
        let started = Instant::now();
        let deadline = started + self.cfg.boot_timeout;
        self.remove_stale(&self.serial)?;
        for (local, _) in &self.nic_paths {
            self.remove_stale(local)?;
        }
        match std::fs::create_dir(&self.root) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(self.io_err("create the root mount point", e)),
        }

        // Serial console: init's output goes to a pty bridged into the
        // same console log the VMs use.
        let listener = UnixListener::bind(&self.serial)
            .and_then(|l| crate::rundir::restrict_socket(&self.serial).map(|()| l))
            .map_err(|e| self.io_err("listen for the console", e))?;
        let (log, thread) = ConsoleLog::spawn(
            &self.cfg.name,
            listener,
            &self.console_log,
            self.events.clone(),
        )
        .map_err(|e| self.io_err("open the console log", e))?;
        *lock(&self.console) = Some(Console {
            log,
            thread: Some(thread),
        });
        let (console_master, console_slave_path) =
            ns::open_pty().map_err(|e| self.io_err("open the console pty", e))?;
        let console_slave = ns::open_slave(&console_slave_path)
            .map_err(|e| self.io_err("open the console pty", e))?;
        let console_stream = UnixStream::connect(&self.serial)
            .map_err(|e| self.io_err("connect the console log", e))?;
        let console_bridge = TtyBridge::spawn(
            &format!("{}-console", self.cfg.name),
            console_master,
            console_stream,
            None,
        )
        .map_err(|e| self.io_err("start the console bridge", e))?;

        // Control shell: a pty that is the guest's /dev/hvc0.
        let (ctl_master, ctl_slave_path) =
            ns::open_pty().map_err(|e| self.io_err("open the control pty", e))?;
        let hold =
            ns::open_slave(&ctl_slave_path).map_err(|e| self.io_err("open the control pty", e))?;
        let (host_end, bridge_end) =
            UnixStream::pair().map_err(|e| self.io_err("create the control socket pair", e))?;
        let control_bridge = TtyBridge::spawn(
            &format!("{}-control", self.cfg.name),
            ctl_master,
            bridge_end,
            Some(hold),
        )
        .map_err(|e| self.io_err("start the control bridge", e))?;

        let mut inputs = self.inputs.clone();
        inputs.control_tty = ctl_slave_path;
        let steps = rootfs::plan(&self.root, &inputs)
            .map_err(|e| self.io_err("plan the root file system", std::io::Error::other(e)))?;
        let nics = self
            .cfg
            .nics
            .iter()
            .enumerate()
            .map(|(slot, nic)| {
                let slot = u8::try_from(slot).unwrap_or(u8::MAX);
                NicWiring::new(slot, nic.mac, 1 + 3 * u32::from(slot))
            })
            .collect();
        let child = ChildConfig {
            steps,
            root: self.cstring("the root path", self.root.as_os_str().as_bytes())?,
            hostname: self.cstring("the machine name", self.cfg.name.as_bytes())?,
            nics,
            program: c"/bin/sh".to_owned(),
            argv: vec![
                c"/bin/sh".to_owned(),
                self.cstring("init", NS_INIT_PATH.as_bytes())?,
            ],
            env: vec![
                c"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
                c"HOME=/root".to_owned(),
                c"TERM=linux".to_owned(),
                c"COVNET_NAMESPACE=1".to_owned(),
            ],
        };
        self.events.emit(MachineEvent::Booting {
            machine: self.name_owned(),
            accel: if self.user_namespace {
                "namespaces, unprivileged".into()
            } else {
                "namespaces".into()
            },
        });
        let spawned = ns::spawn(child, console_slave, self.user_namespace).map_err(|err| {
            MachineError::Spawn {
                machine: self.name_owned(),
                program: "the namespace machine's init".into(),
                source: std::io::Error::other(error_chain(&err)),
            }
        })?;

        let mut relay_ports = Vec::new();
        for (packet, (local, port)) in spawned.packets.into_iter().zip(&self.nic_paths) {
            let sock = UnixDatagram::bind(local)
                .and_then(|s| crate::rundir::restrict_socket(local).map(|()| s))
                .map_err(|e| self.io_err(&format!("bind {}", local.display()), e))?;
            sock.connect(port).map_err(|e| {
                self.io_err(&format!("connect to switch port {}", port.display()), e)
            })?;
            relay_ports.push(RelayPort {
                packet,
                switch: sock,
            });
        }
        let mut running = Running {
            init: spawned.init,
            relay: None,
            control: control_bridge,
            console: console_bridge,
        };
        if !relay_ports.is_empty() {
            match Relay::spawn(&self.cfg.name, relay_ports) {
                Ok(r) => running.relay = Some(r),
                Err(e) => {
                    let _ = running.init.kill();
                    return Err(self.io_err("start the frame relay", e));
                }
            }
        }
        *lock(&self.running) = Some(running);

        let mut channel = ControlChannel::new(host_end);
        let boot_err = |m: &NamespaceMachine| match m.exited() {
            Some(how) => MachineError::Exited {
                machine: m.name_owned(),
                during: "starting".into(),
                how,
                console: m.tail(),
            },
            None => MachineError::BootTimeout {
                machine: m.name_owned(),
                timeout: m.cfg.boot_timeout,
                console: m.tail(),
            },
        };
        if channel
            .wait_ready(deadline, || self.exited().is_none())
            .is_err()
        {
            return Err(boot_err(self));
        }
        let boot_time = started.elapsed();
        *lock(&self.channel) = Some(channel);
        *lock(&self.boot_time) = Some(boot_time);
        self.events.emit(MachineEvent::Ready {
            machine: self.name_owned(),
            boot_time,
        });
        Ok(())
    }

    /// Kills init if needed (which ends every process of the machine),
    /// stops the relay and bridges, closes the channel and console reader.
    /// Returns how init ended.
    fn teardown(&self) -> Result<String, MachineError> {
        let running = lock(&self.running).take();
        let had = running.is_some();
        let result = match running {
            Some(mut r) => {
                let ended =
                    r.init
                        .kill()
                        .map(ns::describe_status)
                        .map_err(|err| MachineError::Stop {
                            machine: self.name_owned(),
                            detail: err.to_string(),
                        });
                if let Some(mut relay) = r.relay.take() {
                    relay.stop();
                }
                r.control.stop();
                r.console.stop();
                ended
            }
            None => Ok("not running".into()),
        };
        *lock(&self.channel) = None;
        if let Some(console) = lock(&self.console).as_mut() {
            console.log.stop();
            if let Some(thread) = console.thread.take() {
                let _ = thread.join();
            }
        }
        // The root was mounted only inside the machine's mount namespace;
        // on the host the mount point is an empty directory.
        let _ = std::fs::remove_dir(&self.root);
        if let Ok(how) = &result {
            if had {
                *lock(&self.last_exit) = Some(how.clone());
                self.events.emit(MachineEvent::Stopped {
                    machine: self.name_owned(),
                    how: how.clone(),
                });
            }
        }
        result
    }

    fn channel_err(&self, err: ChannelError, during: String) -> MachineError {
        match err {
            ChannelError::Closed { .. } | ChannelError::Io { .. } if self.exited().is_some() => {
                MachineError::Exited {
                    machine: self.name_owned(),
                    during,
                    how: self.exited().unwrap_or_default(),
                    console: self.tail(),
                }
            }
            ChannelError::Timeout { after, .. } => MachineError::WaitTimeout {
                machine: self.name_owned(),
                what: format!("the control shell while {during}"),
                timeout: after,
                console: self.tail(),
            },
            other => MachineError::Channel {
                machine: self.name_owned(),
                during,
                detail: other.to_string(),
            },
        }
    }

    fn not_running(&self, op: &str) -> MachineError {
        MachineError::NotRunning {
            machine: self.name_owned(),
            op: op.to_owned(),
        }
    }

    fn copy_timeout(len: usize) -> Duration {
        let len = u64::try_from(len).unwrap_or(u64::MAX);
        CHANNEL_SLACK + Duration::from_secs(len / COPY_BYTES_PER_SEC)
    }
}

/// An error and its sources on one line.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut src = err.source();
    while let Some(e) = src {
        s.push_str(": ");
        s.push_str(&e.to_string());
        src = e.source();
    }
    s
}

impl Machine for NamespaceMachine {
    fn name(&self) -> &str {
        &self.cfg.name
    }

    fn start(&self) -> Result<(), MachineError> {
        let _life = lock(&self.life);
        if self.exited().is_none() {
            return Ok(());
        }
        let _ = self.teardown();
        match self.boot() {
            Ok(()) => Ok(()),
            Err(err) => {
                self.events.emit(MachineEvent::BootFailed {
                    machine: self.name_owned(),
                    reason: err.to_string(),
                });
                if let Err(stop_err) = self.teardown() {
                    eprintln!("covnet: warning: {stop_err}");
                }
                Err(err)
            }
        }
    }

    fn is_running(&self) -> bool {
        self.exited().is_none()
    }

    fn execute(&self, cmd: &str, timeout: Duration) -> Result<Output, MachineError> {
        let mut guard = lock(&self.channel);
        let channel = guard
            .as_mut()
            .ok_or_else(|| self.not_running(&format!("run `{cmd}`")))?;
        match channel.execute(cmd, timeout, CHANNEL_SLACK) {
            Ok(out) => Ok(out),
            Err(ChannelError::CommandTimeout { timeout, .. }) => {
                Err(MachineError::CommandTimeout {
                    machine: self.name_owned(),
                    command: cmd.to_owned(),
                    timeout,
                    console: self.tail(),
                })
            }
            Err(err) => Err(self.channel_err(err, format!("running `{cmd}`"))),
        }
    }

    fn copy_to(&self, data: &[u8], guest_path: &str, mode: u32) -> Result<(), MachineError> {
        let op = format!("copy to `{guest_path}`");
        let mut guard = lock(&self.channel);
        let channel = guard.as_mut().ok_or_else(|| self.not_running(&op))?;
        match channel.put(data, guest_path, mode, Self::copy_timeout(data.len())) {
            Ok(Ok(())) => Ok(()),
            Ok(Err((status, stderr))) => Err(MachineError::Guest {
                machine: self.name_owned(),
                op,
                status,
                stderr: String::from_utf8_lossy(&stderr).trim_end().to_owned(),
            }),
            Err(err) => Err(self.channel_err(err, op)),
        }
    }

    fn copy_from(&self, guest_path: &str) -> Result<Vec<u8>, MachineError> {
        let op = format!("copy from `{guest_path}`");
        let cmd = format!("cat -- {}", shell_quote(guest_path));
        let timeout = Self::copy_timeout(256 * 1024 * 1024);
        let out = {
            let mut guard = lock(&self.channel);
            let channel = guard.as_mut().ok_or_else(|| self.not_running(&op))?;
            channel
                .execute(&cmd, timeout, CHANNEL_SLACK)
                .map_err(|err| self.channel_err(err, op.clone()))?
        };
        if out.status != 0 {
            return Err(MachineError::Guest {
                machine: self.name_owned(),
                op,
                status: out.status,
                stderr: out.stderr_lossy().trim_end().to_owned(),
            });
        }
        Ok(out.stdout)
    }

    fn console_lines(&self, last: usize) -> Vec<String> {
        lock(&self.console)
            .as_ref()
            .map(|c| c.log.last_lines(last))
            .unwrap_or_default()
    }

    fn wait_for_console_text(&self, pattern: &str, timeout: Duration) -> Result<(), MachineError> {
        crate::machine::console::wait_for_console_text(
            &self.name_owned(),
            pattern,
            timeout,
            || {
                lock(&self.console)
                    .as_ref()
                    .map(|c| c.log.clone())
                    .ok_or_else(|| self.not_running(&format!("wait for console text `{pattern}`")))
            },
            || self.tail(),
            || self.exited(),
        )
    }

    fn shutdown(&self, timeout: Duration) -> Result<(), MachineError> {
        let _life = lock(&self.life);
        if self.exited().is_some() {
            return self.teardown().map(|_| ());
        }
        let deadline = Instant::now() + timeout;
        let grace = SERVICE_STOP_GRACE.min(timeout / 2);
        let asked = lock(&self.channel)
            .as_mut()
            .map(|channel| channel.poweroff(grace, timeout));
        if let Some(Err(err)) = asked {
            eprintln!(
                "covnet: warning: {}: graceful poweroff request failed: {err}",
                self.cfg.name
            );
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        let powered_off = lock(&self.running)
            .as_mut()
            .map(|r| r.init.wait_timeout(remaining))
            .transpose()
            .map_err(|err| MachineError::Stop {
                machine: self.name_owned(),
                detail: err.to_string(),
            })?
            .flatten()
            .is_some();
        if !powered_off {
            eprintln!(
                "covnet: warning: {}: machine did not power off within {}s; killing it",
                self.cfg.name,
                timeout.as_secs_f64()
            );
        }
        self.teardown().map(|_| ())
    }

    fn crash(&self) -> Result<(), MachineError> {
        let _life = lock(&self.life);
        self.teardown().map(|_| ())
    }

    fn set_link(&self, up: bool) -> Result<(), MachineError> {
        let Some(switch) = &self.switch else {
            return Err(MachineError::Link {
                machine: self.name_owned(),
                up,
                detail: "the machine has no network interfaces".into(),
            });
        };
        for &port in &self.ports {
            switch
                .set_link(port, up)
                .map_err(|err| MachineError::Link {
                    machine: self.name_owned(),
                    up,
                    detail: err.to_string(),
                })?;
        }
        Ok(())
    }
}

impl Drop for NamespaceMachine {
    fn drop(&mut self) {
        if self.exited().is_none() {
            eprintln!(
                "covnet: warning: namespace machine `{}` still running when dropped; killing it",
                self.cfg.name
            );
        }
        if let Err(err) = self.teardown() {
            eprintln!("covnet: warning: {err}");
        }
    }
}
