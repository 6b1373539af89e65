//! One machine session over any backend: the [`Machine`] implementation
//! shared by QEMU VMs and namespace machines.
//!
//! A [`Session`] owns everything that does not depend on how the machine
//! runs: the serial console log, the control channel, the lifecycle lock,
//! the boot deadline and its cancelling, copy timeouts, the switch ports of
//! the machine's NICs, and the mapping of channel failures to
//! [`MachineError`]s. A [`Backend`] only brings its process up, says
//! whether it has exited and tears it down.
//!
//! Lifecycle: [`Machine::start`] binds the console socket, lets the backend
//! launch, then waits for the control shell within the boot deadline,
//! stopping early when the backend's process exits; `shutdown` asks the
//! guest to stop its services, sync and power off, then makes sure the
//! process is gone; `crash` kills it at once. Dropping a running session
//! kills it.
//!
//! Locks: the lifecycle lock serialises start/shutdown/crash, the channel
//! lock serialises shell requests, and the backend's process lock is only
//! held briefly, so `crash` works while a command is blocked (the command
//! then fails because the channel closes). `crash` during a boot does not
//! wait for the lifecycle lock first: it raises the cancel flag and kills
//! the backend's process, so the boot ends at once instead of at its
//! deadline (Ctrl-C while booting), on every backend.

use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::console::{shell_quote, ChannelError, ConsoleLog, ControlChannel, Greeting};
use super::terminal::Terminal;
use super::{
    ConsoleTail, EventSink, Machine, MachineError, MachineEvent, Output, ERROR_CONSOLE_LINES,
};
use crate::net::switch::{PortId, Switch};
use crate::rundir::RunDir;

/// How long services get to exit in the guest during `shutdown`.
pub const SERVICE_STOP_GRACE: Duration = Duration::from_secs(5);

/// The file size `copy_from` allows for in its timeout (the size is not
/// known before the copy). 64 MiB, far above any coverage or log file: at
/// the VM's measured TCG throughput that is a 256 s deadline, within the
/// test harness's limit, where 256 MiB would let a hung copy block for
/// 17 minutes.
pub const COPY_FROM_LIMIT: usize = 64 * 1024 * 1024;

/// Longest a write to the serial console may block.
const CONSOLE_SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// How often boot waits look for the control socket.
const CONNECT_POLL: Duration = Duration::from_millis(10);

/// How long QEMU gets to exit after SIGTERM once the guest did not power
/// off by itself.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Where a launched backend's control shell is.
#[derive(Debug)]
pub enum Control {
    /// A socket the backend's process creates: connect once it is there.
    Socket(PathBuf),
    /// An already connected stream.
    Stream(UnixStream),
}

/// The host-side sockets of one machine, laid out by the session.
#[derive(Debug, Clone)]
pub struct Sockets {
    /// The serial console socket the session listens on.
    pub serial: PathBuf,
    /// (NIC socket, switch port socket) per NIC.
    pub nics: Vec<(PathBuf, PathBuf)>,
}

/// How a machine runs: the part of a machine that differs between QEMU
/// and namespaces. Methods take `&self`; implementations keep their
/// process behind a lock held only briefly.
pub trait Backend: Send + Sync {
    /// What the machine was doing while it came up, for `Exited` errors
    /// ("booting").
    const STARTING: &'static str;
    /// Copy throughput assumed for copy timeouts (bytes per second).
    const COPY_BYTES_PER_SEC: u64;
    /// How long a failed wait gives a process that is closing down to
    /// finish exiting before the failure counts as a timeout.
    const EXIT_SETTLE: Duration;

    /// How the machine runs, for [`MachineEvent::Booting`].
    fn kind(&self) -> String;
    /// The boot deadline: spawn to first shell answer.
    fn boot_timeout(&self) -> Duration;
    /// Extra time the control channel gets beyond a command's own timeout.
    fn channel_slack(&self) -> Duration;
    /// Host files to remove before a boot (stale sockets of a former run).
    fn stale_files(&self) -> Vec<PathBuf> {
        Vec::new()
    }
    /// Starts the machine's process; its console connects to
    /// `sockets.serial`, its NICs to `sockets.nics`.
    fn launch(&self, sockets: &Sockets) -> Result<Control, MachineError>;
    /// Host pid of the machine's process while it has one.
    fn pid(&self) -> Option<u32>;
    /// `None` while the process runs, how it ended once it has (reaping
    /// it), or `Some(None)` when there is no process.
    fn exited(&self) -> Option<Option<String>>;
    /// Waits up to `timeout` for the process to exit by itself; true when
    /// it did (or there is none).
    fn wait_exit(&self, timeout: Duration) -> Result<bool, String>;
    /// SIGKILL to the process without reaping it or taking any lock for
    /// long (the lifecycle holder notices the exit).
    fn kill_now(&self);
    /// Ends the process (SIGTERM and `grace` first when given) and all the
    /// backend runs beside it. `None` when nothing ran, else how it ended.
    fn stop(&self, grace: Option<Duration>) -> Option<Result<String, String>>;
    /// Opens a terminal session (see [`super::terminal`]) of the running
    /// machine `name`.
    fn open_terminal(&self, name: &str, term: &str) -> Result<Terminal, MachineError>;
    /// Releases a guest whose init holds before it takes its identity
    /// ([`Greeting::Held`]: VMs), with the host's clock and fresh entropy.
    /// A backend may first save the booted guest (see
    /// [`super::vm::snapshot`]).
    fn release(&self, channel: &mut ControlChannel, deadline: Instant) -> Result<(), ChannelError> {
        channel.release(std::time::SystemTime::now(), &fresh_seed(), false, deadline)
    }
    /// When a released guest's control shell must have answered by, within
    /// the boot `deadline`.
    fn ready_by(&self, deadline: Instant) -> Instant {
        deadline
    }
    /// The backend's own account of a released guest that did not come up
    /// (a restored VM: the restore failed, the session boots it cold);
    /// `None`: a boot failure.
    fn not_ready(&self) -> Option<MachineError> {
        None
    }
    /// Extra lines for error reports after the console's (QEMU's log).
    fn log_tail(&self) -> Vec<String> {
        Vec::new()
    }
    /// What to suspect when the machine did not come up (a VM: too
    /// little memory for what it loads).
    fn boot_failure_hint(&self) -> Option<String> {
        None
    }
    /// Forwards host port `host_port` to guest port `guest_port` of the
    /// running machine `machine`.
    fn forward_port(
        &self,
        machine: &str,
        host_port: u16,
        guest_port: u16,
    ) -> Result<(), MachineError> {
        let _ = (host_port, guest_port);
        Err(MachineError::Unsupported {
            machine: machine.to_owned(),
            op: "forward a port".to_owned(),
            why: "namespace machines have no host port forwards (they need a VM: backend = \"vm\")"
                .to_owned(),
        })
    }
}

struct Console {
    log: ConsoleLog,
    thread: Option<JoinHandle<()>>,
}

/// A machine: one backend behind the shared console, control channel and
/// lifecycle. The concrete machines are aliases:
/// [`Vm`](super::vm::Vm) and [`NamespaceMachine`](super::namespace::NamespaceMachine).
pub struct Session<B: Backend> {
    name: String,
    backend: B,
    sockets: Sockets,
    console_log: PathBuf,
    switch: Option<Arc<Switch>>,
    ports: Vec<PortId>,
    events: EventSink,
    life: Mutex<()>,
    /// Raised by `crash` (without the lifecycle lock) to end a boot.
    cancel: AtomicBool,
    channel: Mutex<Option<ControlChannel>>,
    console: Mutex<Option<Console>>,
    boot_time: Mutex<Option<Duration>>,
    last_exit: Mutex<Option<String>>,
}

impl<B: Backend> std::fmt::Debug for Session<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("name", &self.name)
            .field("kind", &self.backend.kind())
            .finish()
    }
}

/// Locks `m`, ignoring poisoning (the data stays consistent: every holder
/// only replaces whole values).
/// 32 bytes from the host's entropy pool for a released guest (a restored
/// guest's own pool is the saved one's).
pub(crate) fn fresh_seed() -> [u8; 32] {
    let mut seed = [0u8; 32];
    // SAFETY: the buffer is valid for its length; a short or failed read
    // leaves zeros, which the guest only mixes into its pool.
    unsafe {
        libc::getrandom(seed.as_mut_ptr().cast(), seed.len(), 0);
    }
    seed
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A socket path `<name>-<suffix>` in the run directory, as a machine error.
pub fn socket(run_dir: &RunDir, name: &str, suffix: &str) -> Result<PathBuf, MachineError> {
    run_dir
        .socket(&format!("{name}-{suffix}"))
        .map_err(|err| MachineError::Io {
            machine: name.to_owned(),
            what: "place its sockets in the run directory".into(),
            source: std::io::Error::other(err.to_string()),
        })
}

/// Removes `path` if it exists.
pub fn remove_stale(machine: &str, path: &Path) -> Result<(), MachineError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(MachineError::Io {
            machine: machine.to_owned(),
            what: format!("remove stale {}", path.display()),
            source: err,
        }),
    }
}

/// What a session is made of besides its backend.
#[derive(Debug)]
pub struct Setup<'a> {
    /// Machine name.
    pub name: &'a str,
    /// The run directory holding the machine's sockets and logs.
    pub run_dir: &'a RunDir,
    /// VLAN of each NIC, in guest order.
    pub vlans: Vec<u8>,
    /// Console log file; `None`: `<run dir>/<name>-console.log`.
    pub console_log: Option<PathBuf>,
    /// The switch the NICs are ports of.
    pub switch: Option<Arc<Switch>>,
    /// Where machine events go.
    pub events: EventSink,
}

impl<B: Backend> Session<B> {
    /// A stopped machine: its sockets placed in the run directory, one
    /// switch port per NIC, and the backend made by `backend` from the
    /// socket layout.
    pub fn create(
        setup: Setup<'_>,
        backend: impl FnOnce(&Sockets) -> Result<B, MachineError>,
    ) -> Result<Session<B>, MachineError> {
        let name = setup.name;
        let mut nics = Vec::new();
        for i in 0..setup.vlans.len() {
            nics.push((
                socket(setup.run_dir, name, &format!("nic{i}.sock"))?,
                socket(setup.run_dir, name, &format!("sw{i}.sock"))?,
            ));
        }
        let sockets = Sockets {
            serial: socket(setup.run_dir, name, "serial.sock")?,
            nics,
        };
        let backend = backend(&sockets)?;
        let link_err = |detail: String| MachineError::Link {
            machine: name.to_owned(),
            up: true,
            detail,
        };
        let mut ports = Vec::new();
        if !setup.vlans.is_empty() {
            let Some(sw) = &setup.switch else {
                return Err(link_err(
                    "the machine has NICs but no switch was given".into(),
                ));
            };
            for (i, (vlan, (local, port))) in setup.vlans.iter().zip(&sockets.nics).enumerate() {
                let id = sw
                    .add_port(&format!("{name}/eth{i}"), *vlan, port, local)
                    .map_err(|err| link_err(err.to_string()))?;
                ports.push(id);
            }
        }
        Ok(Session {
            name: name.to_owned(),
            backend,
            sockets,
            console_log: setup
                .console_log
                .unwrap_or_else(|| setup.run_dir.file(&format!("{name}-console.log"))),
            switch: setup.switch,
            ports,
            events: setup.events,
            life: Mutex::new(()),
            cancel: AtomicBool::new(false),
            channel: Mutex::new(None),
            console: Mutex::new(None),
            boot_time: Mutex::new(None),
            last_exit: Mutex::new(None),
        })
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The serial console log file.
    pub fn console_log_path(&self) -> &Path {
        &self.console_log
    }

    /// Host pid of the machine's process while it runs (QEMU, which leads
    /// its process group; a namespace machine's init).
    pub fn pid(&self) -> Option<u32> {
        self.backend.pid()
    }

    /// Time from spawn to the first shell answer of the last boot.
    pub fn boot_time(&self) -> Option<Duration> {
        *lock(&self.boot_time)
    }

    /// The effective boot deadline.
    pub fn boot_timeout(&self) -> Duration {
        self.backend.boot_timeout()
    }

    fn name_owned(&self) -> String {
        self.name.clone()
    }

    /// The last console lines plus the backend's own, for error reports.
    fn tail(&self) -> ConsoleTail {
        let mut lines = self.console_lines(ERROR_CONSOLE_LINES);
        lines.extend(self.backend.log_tail());
        ConsoleTail::of(lines)
    }

    fn io_err(&self, what: &str, source: std::io::Error) -> MachineError {
        MachineError::Io {
            machine: self.name_owned(),
            what: what.to_owned(),
            source,
        }
    }

    /// How the machine's process ended if it has (reaping it), else `None`.
    fn exited(&self) -> Option<String> {
        match self.backend.exited()? {
            Some(how) => Some(how),
            None => Some(
                lock(&self.last_exit)
                    .clone()
                    .unwrap_or_else(|| "not started".into()),
            ),
        }
    }

    /// Like [`Session::exited`], but gives a process that is closing down
    /// (its sockets already closed) the backend's settle time to finish.
    fn exited_within_settle(&self) -> Option<String> {
        if !B::EXIT_SETTLE.is_zero() {
            let _ = self.backend.wait_exit(B::EXIT_SETTLE);
        }
        self.exited()
    }

    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }

    fn boot(&self) -> Result<(), MachineError> {
        let started = Instant::now();
        let deadline = started + self.boot_timeout();
        remove_stale(&self.name, &self.sockets.serial)?;
        for (local, _) in &self.sockets.nics {
            remove_stale(&self.name, local)?;
        }
        for path in self.backend.stale_files() {
            remove_stale(&self.name, &path)?;
        }
        let listener = UnixListener::bind(&self.sockets.serial)
            .and_then(|l| crate::rundir::restrict_socket(&self.sockets.serial).map(|()| l))
            .map_err(|e| self.io_err("listen for the serial console", e))?;
        let (log, thread) =
            ConsoleLog::spawn(&self.name, listener, &self.console_log, self.events.clone())
                .map_err(|e| self.io_err("open the console log", e))?;
        *lock(&self.console) = Some(Console {
            log,
            thread: Some(thread),
        });

        let control = self.backend.launch(&self.sockets)?;
        if self.cancelled() {
            // `crash` came before the process existed: it could not kill it.
            self.backend.kill_now();
        }
        self.events.emit(MachineEvent::Booting {
            machine: self.name_owned(),
            accel: self.backend.kind(),
        });

        let boot_err = |s: &Self| {
            let mut console = s.tail();
            console.hint = s.backend.boot_failure_hint();
            match s.exited_within_settle() {
                Some(how) => MachineError::Exited {
                    machine: s.name_owned(),
                    during: B::STARTING.into(),
                    how,
                    console,
                },
                None => MachineError::BootTimeout {
                    machine: s.name_owned(),
                    timeout: s.boot_timeout(),
                    console,
                },
            }
        };
        let stream = match control {
            Control::Stream(stream) => stream,
            // The process creates the socket early; connect once it's there.
            Control::Socket(path) => loop {
                if self.exited().is_some() || self.cancelled() || Instant::now() >= deadline {
                    return Err(boot_err(self));
                }
                match UnixStream::connect(&path) {
                    Ok(stream) => break stream,
                    Err(_) => thread::sleep(CONNECT_POLL),
                }
            },
        };
        let mut channel = ControlChannel::new(stream);
        let alive = || self.exited().is_none() && !self.cancelled();
        let held = match channel.wait_greeting(deadline, alive) {
            Ok(greeting) => greeting == Greeting::Held,
            Err(_) => return Err(boot_err(self)),
        };
        if held {
            let up = self.backend.release(&mut channel, deadline).is_ok()
                && channel
                    .wait_ready(self.backend.ready_by(deadline), alive)
                    .is_ok();
            if !up {
                return Err(self.backend.not_ready().unwrap_or_else(|| boot_err(self)));
            }
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

    /// Ends the backend's process if needed, closes the channel and the
    /// console reader. Returns how the process ended.
    fn teardown(&self, grace: Option<Duration>) -> Result<String, MachineError> {
        if self.backend.pid().is_some() {
            // Until it is reaped, readers see why it is gone.
            *lock(&self.last_exit) = Some("being stopped by covnet".into());
        }
        let stopped = self.backend.stop(grace);
        let had_process = stopped.is_some();
        let result = stopped
            .unwrap_or_else(|| Ok("not running".into()))
            .map_err(|detail| MachineError::Stop {
                machine: self.name_owned(),
                detail,
            });
        // The channel's socket is closed by the process's exit; a blocked
        // request returns, then the lock is free.
        *lock(&self.channel) = None;
        if let Some(console) = lock(&self.console).as_mut() {
            console.log.stop();
            if let Some(thread) = console.thread.take() {
                let _ = thread.join();
            }
        }
        if let Ok(how) = &result {
            if had_process {
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
                if self.exited_within_settle().is_some() =>
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
        self.backend.channel_slack() + Duration::from_secs(len / B::COPY_BYTES_PER_SEC)
    }

    /// Runs `f` on the control channel, or fails with `NotRunning` for `op`.
    fn with_channel<T>(
        &self,
        op: &str,
        f: impl FnOnce(&mut ControlChannel) -> T,
    ) -> Result<T, MachineError> {
        let mut guard = lock(&self.channel);
        let channel = guard.as_mut().ok_or_else(|| self.not_running(op))?;
        Ok(f(channel))
    }

    fn guest_err(&self, op: String, status: i32, stderr: &[u8]) -> MachineError {
        MachineError::Guest {
            machine: self.name_owned(),
            op,
            status,
            stderr: String::from_utf8_lossy(stderr).trim_end().to_owned(),
        }
    }
}

impl<B: Backend> Machine for Session<B> {
    fn name(&self) -> &str {
        &self.name
    }

    fn start(&self) -> Result<(), MachineError> {
        let _life = lock(&self.life);
        if self.exited().is_none() {
            return Ok(());
        }
        // A previous run that died: reap and clean up first.
        let _ = self.teardown(None);
        let booted = match self.boot() {
            // The backend removed the snapshot it could not restore: boot
            // cold (its event said so).
            Err(MachineError::Restore { .. }) => {
                let _ = self.teardown(None);
                self.boot()
            }
            other => other,
        };
        match booted {
            Ok(()) => Ok(()),
            Err(err) => {
                self.events.emit(MachineEvent::BootFailed {
                    machine: self.name_owned(),
                    reason: err.to_string(),
                });
                if let Err(stop_err) = self.teardown(None) {
                    crate::diag::warn(stop_err.to_string());
                }
                Err(err)
            }
        }
    }

    fn is_running(&self) -> bool {
        self.exited().is_none()
    }

    fn execute(&self, cmd: &str, timeout: Duration) -> Result<Output, MachineError> {
        let slack = self.backend.channel_slack();
        match self.with_channel(&format!("run `{cmd}`"), |c| c.execute(cmd, timeout, slack))? {
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
        let timeout = self.copy_timeout(data.len());
        match self.with_channel(&op, |c| c.put(data, guest_path, mode, timeout))? {
            Ok(Ok(())) => Ok(()),
            Ok(Err((status, stderr))) => Err(self.guest_err(op, status, &stderr)),
            Err(err) => Err(self.channel_err(err, op)),
        }
    }

    fn copy_from(&self, guest_path: &str) -> Result<Vec<u8>, MachineError> {
        let op = format!("copy from `{guest_path}`");
        let cmd = format!("cat -- {}", shell_quote(guest_path));
        // The size is unknown up front: allow for a large file.
        let timeout = self.copy_timeout(COPY_FROM_LIMIT);
        let slack = self.backend.channel_slack();
        let out = self
            .with_channel(&op, |c| c.execute(&cmd, timeout, slack))?
            .map_err(|err| self.channel_err(err, op.clone()))?;
        if out.status != 0 {
            return Err(self.guest_err(op, out.status, &out.stderr));
        }
        Ok(out.stdout)
    }

    fn send_console(&self, data: &[u8]) -> Result<(), MachineError> {
        let log = lock(&self.console)
            .as_ref()
            .filter(|_| self.exited().is_none())
            .map(|c| c.log.clone())
            .ok_or_else(|| self.not_running("write to the serial console"))?;
        log.send(data, CONSOLE_SEND_TIMEOUT)
            .map_err(|e| self.io_err("write to the serial console", e))
    }

    fn console_text(&self) -> String {
        match std::fs::read(&self.console_log) {
            Ok(bytes) => String::from_utf8_lossy(&bytes)
                .trim_end_matches('\n')
                .replace("\r\n", "\n"),
            Err(_) => self.console_lines(usize::MAX).join("\n"),
        }
    }

    fn forward_port(&self, host_port: u16, guest_port: u16) -> Result<(), MachineError> {
        if self.exited().is_some() || lock(&self.console).is_none() {
            return Err(self.not_running(&format!("forward port {host_port} to {guest_port}")));
        }
        self.backend.forward_port(&self.name, host_port, guest_port)
    }

    fn console_lines(&self, last: usize) -> Vec<String> {
        lock(&self.console)
            .as_ref()
            .map(|c| c.log.last_lines(last))
            .unwrap_or_default()
    }

    fn wait_for_console_text(&self, pattern: &str, timeout: Duration) -> Result<(), MachineError> {
        super::console::wait_for_console_text(
            &self.name,
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
            crate::diag::warn(format!(
                "{}: graceful poweroff request failed: {err}",
                self.name
            ));
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        let powered_off =
            self.backend
                .wait_exit(remaining)
                .map_err(|detail| MachineError::Stop {
                    machine: self.name_owned(),
                    detail,
                })?;
        if !powered_off {
            crate::diag::warn(format!(
                "{}: machine did not power off within {}s; stopping it",
                self.name,
                timeout.as_secs_f64()
            ));
        }
        self.teardown(Some(STOP_GRACE)).map(|_| ())
    }

    fn crash(&self) -> Result<(), MachineError> {
        // A boot in progress holds the lifecycle lock until its deadline:
        // end it first (the flag covers a process not spawned yet).
        self.cancel.store(true, Ordering::SeqCst);
        self.backend.kill_now();
        let _life = lock(&self.life);
        let result = self.teardown(None).map(|_| ());
        self.cancel.store(false, Ordering::SeqCst);
        result
    }

    fn set_link(&self, up: bool) -> Result<(), MachineError> {
        let link_err = |detail: String| MachineError::Link {
            machine: self.name_owned(),
            up,
            detail,
        };
        let Some(switch) = &self.switch else {
            return Err(link_err("the machine has no network interfaces".into()));
        };
        for &port in &self.ports {
            switch
                .set_link(port, up)
                .map_err(|err| link_err(err.to_string()))?;
        }
        Ok(())
    }

    fn open_terminal(&self, term: &str) -> Result<Terminal, MachineError> {
        if self.exited().is_some() {
            return Err(MachineError::NotRunning {
                machine: self.name_owned(),
                op: "open a terminal".into(),
            });
        }
        self.backend.open_terminal(&self.name, term)
    }
}

impl<B: Backend> Drop for Session<B> {
    fn drop(&mut self) {
        if self.exited().is_none() {
            crate::diag::warn(format!(
                "machine `{}` ({}) still running when dropped; killing it",
                self.name,
                self.backend.kind()
            ));
        }
        if let Err(err) = self.teardown(None) {
            crate::diag::warn(err.to_string());
        }
    }
}
