//! The QEMU backend of [`Machine`]: one VM booted from a kernel and an
//! initramfs, driven through its control shell on a virtio-serial port.
//!
//! Lifecycle: [`Vm::new`] attaches the VM's NICs to the switch;
//! [`Machine::start`] listens for the serial console, spawns QEMU (own
//! process group, dies with covnet), connects to the control socket and
//! pings the shell until it answers, all within the boot deadline and
//! stopping early if QEMU exits; [`Machine::shutdown`] asks the guest to
//! stop its services, sync and power off, then makes sure QEMU is gone;
//! [`Machine::crash`] kills QEMU at once. Dropping a running VM kills it.
//!
//! Locks: the lifecycle lock serialises start/shutdown/crash, the channel
//! lock serialises shell requests, and the child lock is only held briefly,
//! so `crash` works while a command is blocked (the command then fails
//! because the channel closes). `crash` during a boot does not wait for the
//! lifecycle lock first: it raises the cancel flag and kills QEMU, so the
//! boot ends at once instead of at its deadline (Ctrl-C while booting).

pub mod accel;
pub mod qemu;

use std::fs::File;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::machine::vm::accel::Accel;
use crate::machine::console::{shell_quote, ChannelError, ConsoleLog, ControlChannel};
use crate::machine::{
    ConsoleTail, EventSink, Machine, MachineError, MachineEvent, Output, ERROR_CONSOLE_LINES,
};
use crate::machine::process::OwnedChild;
use qemu::{Forward, Mac, Nic, QemuConfig};
use crate::switch::{PortId, Switch};

/// The QEMU binary used unless the config names another.
pub const QEMU_BINARY: &str = "qemu-system-x86_64";

/// How long services get to exit in the guest during `shutdown`.
pub const SERVICE_STOP_GRACE: Duration = Duration::from_secs(5);

/// Copy throughput assumed for copy timeouts (bytes per second; about 3 MiB/s
/// was measured each way under TCG on a loaded 2-core host).
const COPY_BYTES_PER_SEC: u64 = 256 * 1024;

/// How long a failed wait gives QEMU to finish exiting before the failure
/// is classified as a timeout rather than an exit.
const EXIT_SETTLE: Duration = Duration::from_millis(500);

/// How often boot waits look at the control socket.
const CONNECT_POLL: Duration = Duration::from_millis(10);

/// One VLAN NIC of a VM config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmNic {
    /// VLAN number.
    pub vlan: u8,
    /// MAC address.
    pub mac: Mac,
}

/// Everything a [`Vm`] needs, resolved (no `auto` left but the boot
/// timeout, which follows the accelerator when `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmConfig {
    /// Machine name (for errors, events, file names).
    pub name: String,
    /// 1-based machine index (forward NIC MAC).
    pub index: u8,
    /// Accelerator.
    pub accel: Accel,
    /// Guest RAM in MiB.
    pub memory_mib: u32,
    /// vCPUs.
    pub cpus: u32,
    /// Kernel image.
    pub kernel: PathBuf,
    /// Initramfs.
    pub initrd: PathBuf,
    /// Extra kernel parameters (after [`qemu::BASE_KERNEL_PARAMS`]).
    pub kernel_params: Vec<String>,
    /// VLAN NICs in guest order.
    pub nics: Vec<VmNic>,
    /// Host port forwards.
    pub forwards: Vec<Forward>,
    /// Boot deadline; `None`: [`Accel::boot_timeout`].
    pub boot_timeout: Option<Duration>,
    /// QEMU binary.
    pub qemu: PathBuf,
    /// Firmware; `None`: QEMU's default (SeaBIOS).
    pub bios: Option<PathBuf>,
    /// Boot the guest with ACPI. Off by default: `acpi=off` saves about
    /// 0.5 s of CPU per boot under TCG, and covnet needs no ACPI (shutdown
    /// is a reset, which ends QEMU under `-no-reboot`). qboot needs ACPI:
    /// without it the guest never starts, so set both together.
    pub acpi: bool,
    /// Serial console log file; `None`: `<run dir>/<name>-console.log`.
    pub console_log: Option<PathBuf>,
}

impl VmConfig {
    /// A config from a resolved spec machine, its boot files and the
    /// accelerator. SeaBIOS and `acpi=off` (measured fastest, see
    /// bench/RESULTS.md).
    pub fn from_spec(
        machine: &crate::spec::Machine,
        kernel: &Path,
        initrd: &Path,
        accel: Accel,
        boot_timeout: Option<Duration>,
    ) -> VmConfig {
        VmConfig {
            name: machine.name.clone(),
            index: machine.index,
            accel,
            memory_mib: machine.memory_mib.get(),
            cpus: u32::from(machine.cpus.get()),
            kernel: kernel.to_owned(),
            initrd: initrd.to_owned(),
            kernel_params: machine.kernel_params.clone(),
            nics: machine
                .nics
                .iter()
                .map(|n| VmNic {
                    vlan: n.vlan,
                    mac: Mac(n.mac),
                })
                .collect(),
            forwards: machine
                .forward
                .iter()
                .map(|f| Forward {
                    host_port: f.host_port.get(),
                    guest_port: f.guest_port.get(),
                })
                .collect(),
            boot_timeout,
            qemu: PathBuf::from(QEMU_BINARY),
            bios: None,
            acpi: false,
            console_log: None,
        }
    }

    /// A minimal config (no NICs, 256 MiB, 1 vCPU, SeaBIOS, `acpi=off`).
    pub fn new(name: &str, kernel: &Path, initrd: &Path, accel: Accel) -> VmConfig {
        VmConfig {
            name: name.to_owned(),
            index: 1,
            accel,
            memory_mib: 256,
            cpus: 1,
            kernel: kernel.to_owned(),
            initrd: initrd.to_owned(),
            kernel_params: Vec::new(),
            nics: Vec::new(),
            forwards: Vec::new(),
            boot_timeout: None,
            qemu: PathBuf::from(QEMU_BINARY),
            bios: None,
            acpi: false,
            console_log: None,
        }
    }
}

/// Socket and file paths of one VM in the run directory.
#[derive(Debug, Clone)]
struct Paths {
    serial: PathBuf,
    control: PathBuf,
    qmp: PathBuf,
    qemu_log: PathBuf,
    console_log: PathBuf,
    /// (NIC socket, switch port socket) per NIC.
    nics: Vec<(PathBuf, PathBuf)>,
}

struct Console {
    log: ConsoleLog,
    thread: Option<JoinHandle<()>>,
}

/// A QEMU virtual machine.
pub struct Vm {
    cfg: VmConfig,
    paths: Paths,
    switch: Option<Arc<Switch>>,
    ports: Vec<PortId>,
    events: EventSink,
    life: Mutex<()>,
    /// Raised by `crash` (without the lifecycle lock) to end a boot.
    cancel: AtomicBool,
    child: Mutex<Option<OwnedChild>>,
    channel: Mutex<Option<ControlChannel>>,
    console: Mutex<Option<Console>>,
    boot_time: Mutex<Option<Duration>>,
    last_exit: Mutex<Option<String>>,
}

impl std::fmt::Debug for Vm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vm").field("name", &self.cfg.name).finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Vm {
    /// A stopped VM whose sockets and logs live in `run_dir`, with one
    /// switch port per NIC (on `switch`, which must outlive the VM's use).
    pub fn new(
        cfg: VmConfig,
        run_dir: &crate::rundir::RunDir,
        switch: Option<Arc<Switch>>,
        events: EventSink,
    ) -> Result<Vm, MachineError> {
        let name = cfg.name.clone();
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
        let paths = Paths {
            serial: sock("serial.sock")?,
            control: sock("ctl.sock")?,
            qmp: sock("qmp.sock")?,
            qemu_log: run_dir.file(&format!("{name}-qemu.log")),
            console_log: cfg
                .console_log
                .clone()
                .unwrap_or_else(|| run_dir.file(&format!("{name}-console.log"))),
            nics: nic_paths,
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
            for (i, (nic, (local, port))) in cfg.nics.iter().zip(&paths.nics).enumerate() {
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
        Ok(Vm {
            cfg,
            paths,
            switch,
            ports,
            events,
            life: Mutex::new(()),
            cancel: AtomicBool::new(false),
            child: Mutex::new(None),
            channel: Mutex::new(None),
            console: Mutex::new(None),
            boot_time: Mutex::new(None),
            last_exit: Mutex::new(None),
        })
    }

    /// The VM's config.
    pub fn config(&self) -> &VmConfig {
        &self.cfg
    }

    /// The serial console log file.
    pub fn console_log_path(&self) -> &Path {
        &self.paths.console_log
    }

    /// QEMU's own stderr/stdout log.
    pub fn qemu_log_path(&self) -> &Path {
        &self.paths.qemu_log
    }

    /// QEMU's pid (= its process group) while it runs.
    pub fn pid(&self) -> Option<u32> {
        lock(&self.child).as_ref().map(OwnedChild::pid)
    }

    /// Time from spawning QEMU to the first shell answer of the last boot.
    pub fn boot_time(&self) -> Option<Duration> {
        *lock(&self.boot_time)
    }

    /// The effective boot deadline.
    pub fn boot_timeout(&self) -> Duration {
        self.cfg
            .boot_timeout
            .unwrap_or_else(|| self.cfg.accel.boot_timeout())
    }

    /// The QEMU command line (without the program).
    pub fn qemu_args(&self) -> Vec<std::ffi::OsString> {
        qemu::command_line(&self.qemu_config())
    }

    fn qemu_config(&self) -> QemuConfig {
        QemuConfig {
            accel: self.cfg.accel,
            bios: self.cfg.bios.clone(),
            memory_mib: self.cfg.memory_mib,
            cpus: self.cfg.cpus,
            kernel: self.cfg.kernel.clone(),
            initrd: self.cfg.initrd.clone(),
            append: qemu::kernel_cmdline(&self.kernel_params()),
            serial_socket: self.paths.serial.clone(),
            control_socket: self.paths.control.clone(),
            qmp_socket: self.paths.qmp.clone(),
            nics: self
                .cfg
                .nics
                .iter()
                .zip(&self.paths.nics)
                .enumerate()
                .map(|(index, (nic, (local, remote)))| Nic {
                    index,
                    mac: nic.mac,
                    local: local.clone(),
                    remote: remote.clone(),
                })
                .collect(),
            forwards: self.cfg.forwards.clone(),
            forward_mac: Mac::for_forward(self.cfg.index),
        }
    }

    /// Extra kernel parameters: `acpi=off` unless ACPI is wanted, then the
    /// config's own.
    fn kernel_params(&self) -> Vec<String> {
        let mut params = Vec::with_capacity(self.cfg.kernel_params.len() + 1);
        if !self.cfg.acpi {
            params.push("acpi=off".to_owned());
        }
        params.extend(self.cfg.kernel_params.iter().cloned());
        params
    }

    fn name_owned(&self) -> String {
        self.cfg.name.clone()
    }

    /// The last console lines plus QEMU's own log, for error reports.
    fn tail(&self) -> ConsoleTail {
        let mut lines = self.console_lines(ERROR_CONSOLE_LINES);
        if let Ok(qemu_log) = std::fs::read_to_string(&self.paths.qemu_log) {
            let qemu_lines: Vec<&str> = qemu_log.lines().collect();
            let skip = qemu_lines.len().saturating_sub(5);
            for line in qemu_lines.iter().skip(skip) {
                lines.push(format!("[qemu] {line}"));
            }
        }
        ConsoleTail(lines)
    }

    fn io_err(&self, what: &str, source: std::io::Error) -> MachineError {
        MachineError::Io {
            machine: self.name_owned(),
            what: what.to_owned(),
            source,
        }
    }

    /// Exit status of QEMU if it has exited (reaping it).
    fn exited(&self) -> Option<String> {
        let mut child = lock(&self.child);
        match child.as_mut().map(OwnedChild::try_wait) {
            Some(Ok(Some(status))) => Some(status.to_string()),
            Some(Ok(None)) => None,
            Some(Err(err)) => Some(err.to_string()),
            None => Some(
                lock(&self.last_exit)
                    .clone()
                    .unwrap_or_else(|| "not started".into()),
            ),
        }
    }

    /// Like [`Vm::exited`], but gives a QEMU that is closing down (its
    /// sockets already closed) `settle` to finish exiting.
    fn exited_within(&self, settle: Duration) -> Option<String> {
        let mut child = lock(&self.child);
        if let Some(c) = child.as_mut() {
            let _ = c.wait_timeout(settle);
        }
        drop(child);
        self.exited()
    }

    fn remove_stale(&self, path: &Path) -> Result<(), MachineError> {
        match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(self.io_err(&format!("remove stale {}", path.display()), err)),
        }
    }

    fn boot(&self) -> Result<(), MachineError> {
        let spawned_at = Instant::now();
        let deadline = spawned_at + self.boot_timeout();
        for path in [&self.paths.serial, &self.paths.control, &self.paths.qmp] {
            self.remove_stale(path)?;
        }
        for (local, _) in &self.paths.nics {
            self.remove_stale(local)?;
        }
        let listener = UnixListener::bind(&self.paths.serial)
            .and_then(|l| crate::rundir::restrict_socket(&self.paths.serial).map(|()| l))
            .map_err(|e| self.io_err("listen for the serial console", e))?;
        let (log, thread) = ConsoleLog::spawn(
            &self.cfg.name,
            listener,
            &self.paths.console_log,
            self.events.clone(),
        )
        .map_err(|e| self.io_err("open the console log", e))?;
        *lock(&self.console) = Some(Console {
            log,
            thread: Some(thread),
        });

        let qemu_log = File::create(&self.paths.qemu_log)
            .map_err(|e| self.io_err("create the QEMU log", e))?;
        let qemu_log2 = qemu_log
            .try_clone()
            .map_err(|e| self.io_err("create the QEMU log", e))?;
        let mut cmd = Command::new(&self.cfg.qemu);
        cmd.args(self.qemu_args())
            .stdin(Stdio::null())
            .stdout(Stdio::from(qemu_log))
            .stderr(Stdio::from(qemu_log2));
        let child =
            OwnedChild::spawn(cmd, &format!("qemu of {}", self.cfg.name)).map_err(|err| {
                MachineError::Spawn {
                    machine: self.name_owned(),
                    program: self.cfg.qemu.display().to_string(),
                    source: match err {
                        crate::machine::process::ProcessError::Spawn { source, .. } => source,
                        other => std::io::Error::other(other.to_string()),
                    },
                }
            })?;
        *lock(&self.child) = Some(child);
        if self.cancel.load(Ordering::SeqCst) {
            // `crash` came before QEMU existed: it could not kill it.
            self.kill_now();
        }
        self.events.emit(MachineEvent::Booting {
            machine: self.name_owned(),
            accel: self.cfg.accel.to_string(),
        });

        let boot_err = |vm: &Vm| match vm.exited_within(EXIT_SETTLE) {
            Some(how) => MachineError::Exited {
                machine: vm.name_owned(),
                during: "booting".into(),
                how,
                console: vm.tail(),
            },
            None => MachineError::BootTimeout {
                machine: vm.name_owned(),
                timeout: vm.boot_timeout(),
                console: vm.tail(),
            },
        };

        // QEMU creates the control socket early; connect as soon as it's there.
        let stream = loop {
            if self.exited().is_some() || self.cancelled() || Instant::now() >= deadline {
                return Err(boot_err(self));
            }
            match UnixStream::connect(&self.paths.control) {
                Ok(stream) => break stream,
                Err(_) => thread::sleep(CONNECT_POLL),
            }
        };
        let mut channel = ControlChannel::new(stream);
        if channel
            .wait_ready(deadline, || self.exited().is_none() && !self.cancelled())
            .is_err()
        {
            return Err(boot_err(self));
        }
        let boot_time = spawned_at.elapsed();
        *lock(&self.channel) = Some(channel);
        *lock(&self.boot_time) = Some(boot_time);
        self.events.emit(MachineEvent::Ready {
            machine: self.name_owned(),
            boot_time,
        });
        Ok(())
    }

    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }

    /// SIGKILL to QEMU's process group without reaping or taking the
    /// lifecycle lock (the holder notices the exit).
    fn kill_now(&self) {
        if let Some(child) = lock(&self.child).as_mut() {
            if let Err(err) = child.signal_group(libc::SIGKILL) {
                eprintln!("covnet: warning: {err}");
            }
        }
    }

    /// Kills QEMU if needed, closes the channel and the console reader.
    /// Returns how QEMU ended.
    fn teardown(&self, grace: Option<Duration>) -> Result<String, MachineError> {
        let child = {
            let mut slot = lock(&self.child);
            let child = slot.take();
            if child.is_some() {
                // Until it is reaped below, readers see why it is gone.
                *lock(&self.last_exit) = Some("being stopped by covnet".into());
            }
            child
        };
        let had_child = child.is_some();
        let result = match child {
            Some(mut child) => {
                let ended = match grace {
                    Some(grace) => child.terminate(grace),
                    None => child.kill(),
                };
                ended
                    .map(|s| s.to_string())
                    .map_err(|err| MachineError::Stop {
                        machine: self.name_owned(),
                        detail: err.to_string(),
                    })
            }
            None => Ok("not running".into()),
        };
        // The channel's socket is closed by QEMU's exit; a blocked request
        // returns, then the lock is free.
        *lock(&self.channel) = None;
        if let Some(console) = lock(&self.console).as_mut() {
            console.log.stop();
            if let Some(thread) = console.thread.take() {
                let _ = thread.join();
            }
        }
        if let Ok(how) = &result {
            if had_child {
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
            ChannelError::Closed { .. } | ChannelError::Io { .. }
                if self.exited_within(EXIT_SETTLE).is_some() =>
            {
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

    fn copy_timeout(&self, len: usize) -> Duration {
        let len = u64::try_from(len).unwrap_or(u64::MAX);
        self.cfg.accel.channel_slack() + Duration::from_secs(len / COPY_BYTES_PER_SEC)
    }
}

impl Machine for Vm {
    fn name(&self) -> &str {
        &self.cfg.name
    }

    fn start(&self) -> Result<(), MachineError> {
        let _life = lock(&self.life);
        if self.exited().is_none() {
            return Ok(());
        }
        // A previous run that died: reap and clean up first.
        let _ = self.teardown(None);
        match self.boot() {
            Ok(()) => Ok(()),
            Err(err) => {
                self.events.emit(MachineEvent::BootFailed {
                    machine: self.name_owned(),
                    reason: err.to_string(),
                });
                if let Err(stop_err) = self.teardown(None) {
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
        match channel.execute(cmd, timeout, self.cfg.accel.channel_slack()) {
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
        match channel.put(data, guest_path, mode, self.copy_timeout(data.len())) {
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
        // The size is unknown up front: allow for a large file.
        let timeout = self.copy_timeout(64 * 1024 * 1024);
        let out = {
            let mut guard = lock(&self.channel);
            let channel = guard.as_mut().ok_or_else(|| self.not_running(&op))?;
            channel
                .execute(&cmd, timeout, self.cfg.accel.channel_slack())
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
            return self.teardown(None).map(|_| ());
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
        let powered_off = lock(&self.child)
            .as_mut()
            .map(|c| c.wait_timeout(remaining))
            .transpose()
            .map_err(|err| MachineError::Stop {
                machine: self.name_owned(),
                detail: err.to_string(),
            })?
            .flatten()
            .is_some();
        if !powered_off {
            eprintln!(
                "covnet: warning: {}: guest did not power off within {}s; terminating QEMU",
                self.cfg.name,
                timeout.as_secs_f64()
            );
        }
        self.teardown(Some(Duration::from_secs(2))).map(|_| ())
    }

    fn crash(&self) -> Result<(), MachineError> {
        // A boot in progress holds the lifecycle lock until its deadline:
        // end it first (the flag covers a QEMU not spawned yet).
        self.cancel.store(true, Ordering::SeqCst);
        self.kill_now();
        let _life = lock(&self.life);
        let result = self.teardown(None).map(|_| ());
        self.cancel.store(false, Ordering::SeqCst);
        result
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

impl Drop for Vm {
    fn drop(&mut self) {
        if self.exited().is_none() {
            eprintln!(
                "covnet: warning: VM `{}` still running when dropped; killing it",
                self.cfg.name
            );
        }
        if let Err(err) = self.teardown(None) {
            eprintln!("covnet: warning: {err}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::vm::accel::Accel;

    fn spec_machine(text: &str) -> crate::spec::Spec {
        crate::spec::Spec::from_str(text, Path::new("/tmp/covnet-vm-test.toml")).expect("spec")
    }

    #[test]
    fn config_from_spec_keeps_nics_forwards_and_params() {
        let spec = spec_machine(
            "[machines.a]\n[machines.b]\nvlans = [1, 3]\nforward = [\"8081:80\"]\n\
             memory_mib = 128\ncpus = 2\nkernel_params = [\"x=1\"]\n",
        );
        let b = spec.machine("b").expect("machine b");
        let cfg = VmConfig::from_spec(b, Path::new("/k"), Path::new("/i"), Accel::Tcg, None);
        assert_eq!(cfg.name, "b");
        assert_eq!(cfg.index, 2);
        assert_eq!((cfg.memory_mib, cfg.cpus), (128, 2));
        assert_eq!(cfg.kernel_params, ["x=1"]);
        assert_eq!(
            cfg.nics,
            [
                VmNic {
                    vlan: 1,
                    mac: Mac::for_nic(1, 2, 0)
                },
                VmNic {
                    vlan: 3,
                    mac: Mac::for_nic(3, 2, 1)
                }
            ]
        );
        assert_eq!(
            cfg.forwards,
            [Forward {
                host_port: 8081,
                guest_port: 80
            }]
        );
    }

    #[test]
    fn qemu_args_use_the_run_dir_and_switch_ports() {
        let spec = spec_machine("[machines.web]\nvlans = [2]\n");
        let web = spec.machine("web").expect("machine");
        let cfg = VmConfig::from_spec(web, Path::new("/k"), Path::new("/i"), Accel::Tcg, None);
        let base = tempfile::tempdir().expect("tempdir");
        let run = crate::rundir::RunDir::create_in(base.path()).expect("run dir");
        let switch = Arc::new(Switch::start().expect("switch"));
        let vm = Vm::new(cfg, &run, Some(Arc::clone(&switch)), EventSink::none()).expect("vm");
        let args: Vec<String> = vm
            .qemu_args()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let dir = run.path().display().to_string();
        assert!(args.contains(&format!(
            "dgram,id=net0,local.type=unix,local.path={dir}/web-nic0.sock,\
             remote.type=unix,remote.path={dir}/web-sw0.sock"
        )));
        assert!(
            args.contains(&"virtio-net-pci,netdev=net0,mac=52:54:00:02:01:00,romfile=".to_string())
        );
        assert!(
            run.file("web-sw0.sock").exists(),
            "switch port bound at creation"
        );
        assert_eq!(vm.boot_timeout(), Accel::Tcg.boot_timeout());
        let append = args
            .iter()
            .skip_while(|a| *a != "-append")
            .nth(1)
            .expect("-append");
        assert!(append.ends_with("panic=-1 acpi=off"), "{append}");
        assert!(!args.contains(&"-bios".to_string()));
        assert!(!vm.is_running());
        assert!(matches!(
            vm.execute("true", Duration::from_secs(1)),
            Err(MachineError::NotRunning { .. })
        ));
        assert!(vm.console_lines(5).is_empty());
        vm.set_link(false).expect("link down");
        assert!(!switch.link_up(PortId(0)));
    }

    #[test]
    fn nics_without_a_switch_are_refused() {
        let spec = spec_machine("[machines.a]\n");
        let cfg = VmConfig::from_spec(
            spec.machine("a").expect("a"),
            Path::new("/k"),
            Path::new("/i"),
            Accel::Tcg,
            None,
        );
        let base = tempfile::tempdir().expect("tempdir");
        let run = crate::rundir::RunDir::create_in(base.path()).expect("run dir");
        let err = Vm::new(cfg, &run, None, EventSink::none()).expect_err("no switch");
        assert!(matches!(err, MachineError::Link { .. }), "{err}");
    }

    #[test]
    fn missing_qemu_binary_is_a_spawn_error() {
        let base = tempfile::tempdir().expect("tempdir");
        let run = crate::rundir::RunDir::create_in(base.path()).expect("run dir");
        let mut cfg = VmConfig::new("q", Path::new("/k"), Path::new("/i"), Accel::Tcg);
        cfg.qemu = "/nonexistent/qemu-system-x86_64".into();
        let vm = Vm::new(cfg, &run, None, EventSink::none()).expect("vm");
        let err = vm.start().expect_err("no qemu");
        match err {
            MachineError::Spawn { source, .. } => {
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound)
            }
            other => panic!("expected Spawn, got {other}"),
        }
    }
}
