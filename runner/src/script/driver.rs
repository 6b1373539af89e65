//! The test operations on one machine, as a Rust API.
//!
//! A [`Node`] wraps a [`Machine`] with what a test needs: `succeed`,
//! `fail`, `execute`, waits that poll until a deadline (`wait_until_succeeds`,
//! `wait_for_service`, `wait_for_open_port`, ...), file copies, link
//! control. Rhai scripts (the `script` module) call exactly these methods;
//! `cargo test` users call them directly. Every failure is a [`StepError`]
//! naming the machine, the step and the command, with the command's exit
//! status and output and the machine's last console lines.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::events::{EventSender, RunEvent};
use crate::machine::{Machine, MachineError, Output, ERROR_CONSOLE_LINES};
use crate::net::faults::{FaultError, LinkFaults};
use crate::spec::Ready;

pub use super::error::{Expected, ScriptPosition, StepError, StepErrorKind};

/// Default timeout of the `wait_*` operations when the caller gives none.
pub const DEFAULT_WAIT_TIMEOUT: Duration = Duration::from_secs(120);
/// Default timeout of a graceful shutdown.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// First pause between two attempts of a polling wait; doubles up to
/// [`POLL_INTERVAL_MAX`].
pub const POLL_INTERVAL_START: Duration = Duration::from_millis(100);
/// Longest pause between two attempts of a polling wait.
pub const POLL_INTERVAL_MAX: Duration = Duration::from_millis(800);

/// Timeouts used when an operation is not given one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// One command (`succeed`, `fail`, `execute`).
    pub command: Duration,
    /// A polling wait (`wait_until_succeeds`, `wait_for_*`).
    pub wait: Duration,
    /// A graceful shutdown.
    pub shutdown: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            command: crate::spec::DEFAULT_COMMAND_TIMEOUT,
            wait: DEFAULT_WAIT_TIMEOUT,
            shutdown: DEFAULT_SHUTDOWN_TIMEOUT,
        }
    }
}

/// A service the spec declares on a machine, as `wait_for_service` needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceCheck {
    /// Service name; its pid is in `/run/covnet/<name>.pid`, its log in
    /// `/var/log/<name>.log`.
    pub name: String,
    /// How to tell it is ready, beyond running.
    pub ready: Option<Ready>,
}

/// Kills every node at once (one thread each, so a machine that is slow to
/// die does not delay the others); failures go into the run's events.
pub fn crash_all(nodes: &[Node]) {
    std::thread::scope(|scope| {
        for node in nodes {
            scope.spawn(move || {
                if let Err(e) = node.machine().crash() {
                    node.context()
                        .events
                        .send(RunEvent::Notice(crate::diag::Diagnostic::error(
                            e.to_string(),
                        )));
                }
            });
        }
    });
}

/// Shared state of a run that every node sees: events, timeouts, the
/// interruption flag and the directories host paths are relative to.
#[derive(Debug)]
pub struct RunContext {
    /// Where events go.
    pub events: EventSender,
    /// Default timeouts.
    pub timeouts: Timeouts,
    /// Relative host paths given to `copy_to_vm` are resolved against this
    /// directory (the spec's).
    pub input_dir: PathBuf,
    /// Relative host paths given to `copy_from_vm` are resolved against
    /// this directory (the run's output directory).
    pub output_dir: PathBuf,
    stop: crate::stop::Stop,
    switch: std::sync::OnceLock<Arc<crate::net::switch::Switch>>,
    /// The fault seed was printed.
    seed_shown: AtomicBool,
}

impl RunContext {
    /// A context with the given events, timeouts and directories.
    pub fn new(
        events: EventSender,
        timeouts: Timeouts,
        input_dir: PathBuf,
        output_dir: PathBuf,
    ) -> Self {
        RunContext {
            events,
            timeouts,
            input_dir,
            output_dir,
            stop: crate::stop::Stop::default(),
            switch: std::sync::OnceLock::new(),
            seed_shown: AtomicBool::new(false),
        }
    }

    /// Attaches the switch the run's machines are on, which link faults
    /// and partitions act on. Only the first call counts.
    pub fn attach_switch(&self, switch: Arc<crate::net::switch::Switch>) {
        let _ = self.switch.set(switch);
    }

    /// Prints the switch's fault seed (once per run), so that a run with
    /// random drops or jitter can be repeated.
    pub fn announce_fault_seed(&self) {
        let Some(switch) = self.switch() else {
            return;
        };
        if !self.seed_shown.swap(true, Ordering::SeqCst) {
            let seed = switch.fault_seed();
            self.events.send(RunEvent::Print {
                text: format!(
                    "network fault seed {seed} (hint: {}={seed} repeats this run's drops and jitter)",
                    crate::net::faults::FAULT_SEED_ENV,
                ),
            });
        }
    }

    /// The run's switch, if one is attached.
    pub fn switch(&self) -> Option<&Arc<crate::net::switch::Switch>> {
        self.switch.get()
    }

    /// Splits the network: machines in different `groups` (by name) can no
    /// longer reach each other; machines in no group form one more group
    /// together. Lasts until [`RunContext::heal`] or another partition.
    pub fn partition(&self, groups: &[Vec<String>]) -> Result<(), StepError> {
        let step = format!("partition({groups:?})");
        self.network_step(step, |switch| {
            let mut seen = std::collections::HashSet::new();
            let mut port_groups = Vec::with_capacity(groups.len());
            for group in groups {
                let mut ports = Vec::new();
                for name in group {
                    if !seen.insert(name.as_str()) {
                        return Err(FaultError::DuplicateMachine { name: name.clone() }.into());
                    }
                    let p = switch.machine_ports(name);
                    if p.is_empty() {
                        return Err(FaultError::UnknownMachine { name: name.clone() }.into());
                    }
                    ports.extend(p);
                }
                port_groups.push(ports);
            }
            switch
                .partition(&port_groups)
                .map_err(|e| StepErrorKind::Internal {
                    detail: e.to_string(),
                })
        })
    }

    /// Ends a partition: every machine reaches every other again.
    pub fn heal(&self) -> Result<(), StepError> {
        self.network_step("heal()".to_owned(), |switch| {
            switch.heal();
            Ok(())
        })
    }

    fn network_step(
        &self,
        what: String,
        f: impl FnOnce(&crate::net::switch::Switch) -> Result<(), StepErrorKind>,
    ) -> Result<(), StepError> {
        let started = Instant::now();
        self.events.send(RunEvent::StepStart {
            machine: None,
            what: what.clone(),
        });
        let result = match (self.interrupted(), self.switch()) {
            (Some(reason), _) => Err(StepErrorKind::Interrupted { reason }),
            (None, None) => Err(FaultError::NoSwitch.into()),
            (None, Some(switch)) => f(switch),
        };
        self.events.send(RunEvent::StepEnd {
            machine: None,
            what: what.clone(),
            result: match &result {
                Ok(()) => Ok(started.elapsed()),
                Err(e) => Err(e.to_string()),
            },
        });
        result.map_err(|kind| StepError {
            machine: None,
            step: what,
            kind: Box::new(kind),
            console: Vec::new(),
            position: None,
        })
    }

    /// Marks the run interrupted: every step still to come, and every
    /// polling wait on its next pass, fails with `reason`.
    pub fn interrupt(&self, reason: &str) {
        self.stop.request(reason);
    }

    /// Why the run was interrupted, if it was.
    pub fn interrupted(&self) -> Option<String> {
        self.stop.requested()
    }

    /// Sleeps `d`, waking early (with an error) if the run is interrupted.
    pub fn sleep(&self, d: Duration) -> Result<(), StepErrorKind> {
        let deadline = Instant::now() + d;
        loop {
            if let Some(reason) = self.interrupted() {
                return Err(StepErrorKind::Interrupted { reason });
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(());
            }
            std::thread::sleep((deadline - now).min(Duration::from_millis(50)));
        }
    }
}

/// One machine of a running test network, with the test operations.
/// Cheap to clone (shared).
#[derive(Clone)]
pub struct Node {
    machine: Arc<dyn Machine>,
    services: Arc<[ServiceCheck]>,
    ctx: Arc<RunContext>,
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.machine.name())
            .field("services", &self.services)
            .finish()
    }
}

enum Attempt<T> {
    Done(T),
    NotYet(Option<Output>),
}

impl Node {
    /// A node driving `machine`, whose spec declares `services`.
    pub fn new(
        machine: Arc<dyn Machine>,
        services: Vec<ServiceCheck>,
        ctx: Arc<RunContext>,
    ) -> Self {
        Node {
            machine,
            services: services.into(),
            ctx,
        }
    }

    /// The machine's name.
    pub fn name(&self) -> &str {
        self.machine.name()
    }

    /// The underlying machine.
    pub fn machine(&self) -> &Arc<dyn Machine> {
        &self.machine
    }

    /// The run context shared by all nodes.
    pub fn context(&self) -> &Arc<RunContext> {
        &self.ctx
    }

    /// True while the machine runs.
    pub fn is_running(&self) -> bool {
        self.machine.is_running()
    }

    fn error(&self, step: &str, kind: StepErrorKind) -> StepError {
        let carries_console = matches!(
            &kind,
            StepErrorKind::Machine(
                MachineError::BootTimeout { .. }
                    | MachineError::Exited { .. }
                    | MachineError::CommandTimeout { .. }
                    | MachineError::WaitTimeout { .. }
            )
        );
        StepError {
            machine: Some(self.name().to_owned()),
            step: step.to_owned(),
            console: if carries_console {
                Vec::new()
            } else {
                self.machine.console_lines(ERROR_CONSOLE_LINES)
            },
            kind: Box::new(kind),
            position: None,
        }
    }

    /// Runs one step with start/end events and the interruption check.
    fn step<T>(
        &self,
        what: String,
        f: impl FnOnce() -> Result<T, StepErrorKind>,
    ) -> Result<T, StepError> {
        let started = Instant::now();
        let machine = Some(self.name().to_owned());
        self.ctx.events.send(RunEvent::StepStart {
            machine: machine.clone(),
            what: what.clone(),
        });
        let result = match self.ctx.interrupted() {
            Some(reason) => Err(StepErrorKind::Interrupted { reason }),
            // A step that fails because the run was interrupted under it
            // (its machine killed) says so, not "machine exited".
            None => f().map_err(|kind| match self.ctx.interrupted() {
                Some(reason) => StepErrorKind::Interrupted { reason },
                None => kind,
            }),
        };
        let result = result.map_err(|kind| self.error(&what, kind));
        self.ctx.events.send(RunEvent::StepEnd {
            machine,
            what,
            result: match &result {
                Ok(_) => Ok(started.elapsed()),
                Err(e) => Err(e.kind.to_string().lines().next().unwrap_or("").to_owned()),
            },
        });
        result
    }

    /// Deletes the machine's gcov data, so that what is collected next
    /// covers only what runs from now on.
    pub fn reset_coverage(&self) -> Result<(), StepError> {
        self.step("reset_coverage()".to_owned(), || {
            crate::coverage::reset(self.machine.as_ref(), self.ctx.timeouts.command).map_err(|e| {
                StepErrorKind::Coverage {
                    detail: e.to_string(),
                }
            })
        })
    }

    /// Boots the machine and waits for its control shell.
    pub fn start(&self) -> Result<(), StepError> {
        self.step("start()".to_owned(), || Ok(self.machine.start()?))
    }

    /// Runs `cmd` (default command timeout) and returns its status and output.
    pub fn execute(&self, cmd: &str) -> Result<Output, StepError> {
        self.execute_within(cmd, self.ctx.timeouts.command)
    }

    /// Runs `cmd` with `timeout` and returns its status and output.
    pub fn execute_within(&self, cmd: &str, timeout: Duration) -> Result<Output, StepError> {
        self.step(format!("execute(`{cmd}`)"), || {
            Ok(self.machine.execute(cmd, timeout)?)
        })
    }

    /// Runs `cmd`; fails unless it exits 0. Returns its standard output.
    pub fn succeed(&self, cmd: &str) -> Result<String, StepError> {
        self.succeed_within(cmd, self.ctx.timeouts.command)
    }

    /// [`Node::succeed`] with an explicit timeout.
    pub fn succeed_within(&self, cmd: &str, timeout: Duration) -> Result<String, StepError> {
        self.step(format!("succeed(`{cmd}`)"), || {
            let output = self.machine.execute(cmd, timeout)?;
            if output.success() {
                Ok(output.stdout_lossy())
            } else {
                Err(StepErrorKind::Status {
                    expected: Expected::Success,
                    output,
                })
            }
        })
    }

    /// Runs `cmd`; fails if it exits 0. Returns its standard error.
    pub fn fail(&self, cmd: &str) -> Result<String, StepError> {
        self.fail_within(cmd, self.ctx.timeouts.command)
    }

    /// [`Node::fail`] with an explicit timeout.
    pub fn fail_within(&self, cmd: &str, timeout: Duration) -> Result<String, StepError> {
        self.step(format!("fail(`{cmd}`)"), || {
            let output = self.machine.execute(cmd, timeout)?;
            if output.success() {
                Err(StepErrorKind::Status {
                    expected: Expected::Failure,
                    output,
                })
            } else {
                Ok(output.stderr_lossy())
            }
        })
    }

    /// Polls `attempt` until it is done, the deadline passes, the machine
    /// stops or the run is interrupted.
    fn poll<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut attempt: impl FnMut(Duration) -> Result<Attempt<T>, StepErrorKind>,
    ) -> Result<T, StepErrorKind> {
        let deadline = Instant::now() + timeout;
        let mut pause = POLL_INTERVAL_START;
        let mut last = None;
        loop {
            if let Some(reason) = self.ctx.interrupted() {
                return Err(StepErrorKind::Interrupted { reason });
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(StepErrorKind::Timeout {
                    what: what.to_owned(),
                    timeout,
                    last,
                });
            }
            let per_attempt = remaining.min(self.ctx.timeouts.command);
            match attempt(per_attempt) {
                Ok(Attempt::Done(v)) => return Ok(v),
                Ok(Attempt::NotYet(output)) => last = output.or(last),
                // A hung attempt (e.g. a request to a blocked peer) is
                // just one more "not yet" while time remains.
                Err(StepErrorKind::Machine(MachineError::CommandTimeout { .. }))
                    if Instant::now() < deadline => {}
                Err(e) => return Err(e),
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            self.ctx.sleep(pause.min(remaining))?;
            pause = (pause * 2).min(POLL_INTERVAL_MAX);
        }
    }

    /// Runs `cmd` once per attempt until it exits 0; returns its stdout.
    pub fn wait_until_succeeds(&self, cmd: &str, timeout: Duration) -> Result<String, StepError> {
        self.step(format!("wait_until_succeeds(`{cmd}`)"), || {
            self.poll(&format!("`{cmd}` to succeed"), timeout, |t| {
                let out = self.machine.execute(cmd, t)?;
                Ok(if out.success() {
                    Attempt::Done(out.stdout_lossy())
                } else {
                    Attempt::NotYet(Some(out))
                })
            })
        })
    }

    /// Runs `cmd` once per attempt until it exits non-zero; returns its stderr.
    pub fn wait_until_fails(&self, cmd: &str, timeout: Duration) -> Result<String, StepError> {
        self.step(format!("wait_until_fails(`{cmd}`)"), || {
            self.poll(&format!("`{cmd}` to fail"), timeout, |t| {
                let out = self.machine.execute(cmd, t)?;
                Ok(if out.success() {
                    Attempt::NotYet(Some(out))
                } else {
                    Attempt::Done(out.stderr_lossy())
                })
            })
        })
    }

    /// Waits until something listens on TCP `port` in the guest.
    pub fn wait_for_open_port(&self, port: u16, timeout: Duration) -> Result<(), StepError> {
        self.step(format!("wait_for_open_port({port})"), || {
            self.wait_port(port, timeout)
        })
    }

    fn wait_port(&self, port: u16, timeout: Duration) -> Result<(), StepErrorKind> {
        let cmd = port_listening_command(port);
        self.poll(&format!("TCP port {port} to listen"), timeout, |t| {
            let out = self.machine.execute(&cmd, t)?;
            Ok(if out.success() {
                Attempt::Done(())
            } else {
                Attempt::NotYet(None)
            })
        })
    }

    /// Waits until `path` exists in the guest.
    pub fn wait_for_file(&self, path: &str, timeout: Duration) -> Result<(), StepError> {
        self.step(format!("wait_for_file(`{path}`)"), || {
            self.wait_file(path, timeout)
        })
    }

    fn wait_file(&self, path: &str, timeout: Duration) -> Result<(), StepErrorKind> {
        let cmd = format!("test -e {}", shell_quote(path));
        self.poll(&format!("file {path} to exist"), timeout, |t| {
            let out = self.machine.execute(&cmd, t)?;
            Ok(if out.success() {
                Attempt::Done(())
            } else {
                Attempt::NotYet(None)
            })
        })
    }

    /// Waits until a console line matches `pattern` (regex or plain text).
    pub fn wait_for_console_text(&self, pattern: &str, timeout: Duration) -> Result<(), StepError> {
        self.step(format!("wait_for_console_text(`{pattern}`)"), || {
            Ok(self.machine.wait_for_console_text(pattern, timeout)?)
        })
    }

    /// Waits until the spec's service `name` runs and, if the spec says how
    /// to tell, is ready (port open, file present, command succeeding).
    /// Fails at once when the service's process has died.
    pub fn wait_for_service(&self, name: &str, timeout: Duration) -> Result<(), StepError> {
        self.step(format!("wait_for_service(`{name}`)"), || {
            let service = self.service(name)?;
            let name = service.name.as_str();
            let deadline = Instant::now() + timeout;
            let state = service_state_command(name);
            // What readiness is awaited (for the messages) and the command
            // that tells it; `None`: running is enough.
            let ready: Option<(String, String)> = match &service.ready {
                None => None,
                Some(Ready::Port(port)) => Some((
                    format!("TCP port {port} to listen"),
                    port_listening_command(port.get()),
                )),
                Some(Ready::File(path)) => Some((
                    format!("file {path} to exist"),
                    format!("test -e {}", shell_quote(path)),
                )),
                Some(Ready::Command(cmd)) => Some((format!("`{cmd}` to succeed"), cmd.clone())),
            };
            let shows_output = matches!(service.ready, Some(Ready::Command(_)));
            // One command per attempt: the state and, once the service
            // runs, its readiness (a service that is up when first asked
            // costs one round trip, not three; with hundreds of machines
            // the round trips are what a script's waits spend).
            let cmd = match &ready {
                None => state,
                Some((_, check)) => state_then_ready_command(&state, check),
            };
            let died = |out: &Output| StepErrorKind::ServiceDied {
                name: name.to_owned(),
                log: out.stdout_lossy(),
            };
            let ready_at_once = self.poll(&format!("service `{name}` to run"), timeout, |t| {
                let out = self.machine.execute(&cmd, t)?;
                match out.status {
                    0 => Ok(Attempt::Done(true)),
                    3 => Err(died(&out)),
                    NOT_READY_STATUS if ready.is_some() => Ok(Attempt::Done(false)),
                    _ => Ok(Attempt::NotYet(Some(out))),
                }
            })?;
            let (Some((what, _)), false) = (ready, ready_at_once) else {
                return Ok(());
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            // Each pass asks whether the service still runs, so one that
            // dies while its readiness is awaited fails the wait at once.
            self.poll(&what, remaining, |t| {
                let out = self.machine.execute(&cmd, t)?;
                match out.status {
                    0 => Ok(Attempt::Done(())),
                    3 => Err(died(&out)),
                    _ => Ok(Attempt::NotYet(shows_output.then_some(out))),
                }
            })
        })
    }

    /// The spec's service `name` (a NixOS unit name `name.service` too).
    fn service(&self, name: &str) -> Result<&ServiceCheck, StepErrorKind> {
        let bare = name.strip_suffix(".service").unwrap_or(name);
        self.services
            .iter()
            .find(|s| s.name == name)
            .or_else(|| self.services.iter().find(|s| s.name == bare))
            .ok_or_else(|| StepErrorKind::UnknownService {
                name: name.to_owned(),
                known: self.services.iter().map(|s| s.name.clone()).collect(),
            })
    }

    /// Controls the spec's service `name` as init runs it: `Start` launches
    /// it again the way init did (same script, environment and log), `Stop`
    /// sends SIGTERM to its process group and SIGKILL after
    /// [`SERVICE_STOP_GRACE`](crate::machine::session::SERVICE_STOP_GRACE),
    /// `Restart` does both, `Status` tells. The output is `systemctl`'s
    /// convention: status 0 when the service runs afterwards (for `Stop`:
    /// when it is stopped), 3 when not, with a line saying so (and the
    /// log's tail for a service that died).
    pub fn control_service(
        &self,
        verb: ServiceVerb,
        name: &str,
        timeout: Duration,
    ) -> Result<Output, StepError> {
        self.control_service_step(format!("{verb}_job(`{name}`)"), verb, name, timeout)
    }

    /// [`Node::control_service`] reported as the step `step` (the script
    /// call that asked for it).
    fn control_service_step(
        &self,
        step: String,
        verb: ServiceVerb,
        name: &str,
        timeout: Duration,
    ) -> Result<Output, StepError> {
        self.step(step, || {
            let service = self.service(name)?;
            let cmd = service_control_command(verb, &service.name);
            Ok(self.machine.execute(&cmd, timeout)?)
        })
    }

    /// `systemctl("restart web")`: `start`, `stop`, `restart` or `status`
    /// of a spec service, as [`Node::control_service`].
    pub fn systemctl(&self, query: &str, timeout: Duration) -> Result<Output, StepError> {
        let mut words = query.split_whitespace();
        let verb = words.next().unwrap_or("");
        let unit = words.next();
        let parsed = match (ServiceVerb::parse(verb), unit, words.next()) {
            (Some(v), Some(u), None) => Some((v, u)),
            _ => None,
        };
        match parsed {
            Some((verb, unit)) => {
                self.control_service_step(format!("systemctl(`{query}`)"), verb, unit, timeout)
            }
            None => Err(self.error(
                &format!("systemctl(`{query}`)"),
                StepErrorKind::Unsupported {
                    why: "covnet's systemctl takes `start|stop|restart|status <service>` \
                          for one of the spec's services (there is no systemd in the guest)"
                        .to_owned(),
                },
            )),
        }
    }

    /// Waits until nothing listens on TCP `port` in the guest.
    pub fn wait_for_closed_port(&self, port: u16, timeout: Duration) -> Result<(), StepError> {
        self.step(format!("wait_for_closed_port({port})"), || {
            let cmd = port_listening_command(port);
            self.poll(&format!("TCP port {port} to close"), timeout, |t| {
                let out = self.machine.execute(&cmd, t)?;
                Ok(if out.success() {
                    Attempt::NotYet(None)
                } else {
                    Attempt::Done(())
                })
            })
        })
    }

    /// Waits until a unix socket is bound at `path` in the guest: listening
    /// for a stream socket, bound for a datagram one.
    pub fn wait_for_open_unix_socket(
        &self,
        path: &str,
        datagram: bool,
        timeout: Duration,
    ) -> Result<(), StepError> {
        self.step(format!("wait_for_open_unix_socket(`{path}`)"), || {
            let cmd = unix_socket_command(path, datagram);
            self.poll(&format!("unix socket {path} to open"), timeout, |t| {
                let out = self.machine.execute(&cmd, t)?;
                Ok(if out.success() {
                    Attempt::Done(())
                } else {
                    Attempt::NotYet(None)
                })
            })
        })
    }

    /// NixOS's `wait_until_tty_matches(tty, regex)`: covnet machines have one
    /// console, the serial console, named `ttyS0` (NixOS's `"1"`, the first
    /// virtual console, means it too); other ttys fail, saying why.
    pub fn wait_until_tty_matches(
        &self,
        tty: &str,
        pattern: &str,
        timeout: Duration,
    ) -> Result<(), StepError> {
        if !matches!(
            tty,
            "1" | "ttyS0" | "console" | "/dev/console" | "/dev/ttyS0"
        ) {
            return Err(self.error(
                &format!("wait_until_tty_matches(`{tty}`, `{pattern}`)"),
                StepErrorKind::Unsupported {
                    why: format!(
                        "tty `{tty}`: a covnet machine has only its serial console \
                         (`ttyS0`, also accepted as \"1\")"
                    ),
                },
            ));
        }
        self.step(
            format!("wait_until_tty_matches(`{tty}`, `{pattern}`)"),
            || Ok(self.machine.wait_for_console_text(pattern, timeout)?),
        )
    }

    /// Types `text` on the machine's serial console: a guest program
    /// reading `/dev/console` gets it.
    pub fn send_console(&self, text: &str) -> Result<(), StepError> {
        self.step(format!("send_console({text:?})"), || {
            Ok(self.machine.send_console(text.as_bytes())?)
        })
    }

    /// Everything the serial console showed since the machine first booted.
    pub fn console_text(&self) -> String {
        self.machine.console_text()
    }

    /// Forwards host port `host_port` (on 127.0.0.1) to guest port
    /// `guest_port` from now on (VMs).
    pub fn forward_port(&self, host_port: u16, guest_port: u16) -> Result<(), StepError> {
        self.step(format!("forward_port({host_port}, {guest_port})"), || {
            Ok(self.machine.forward_port(host_port, guest_port)?)
        })
    }

    /// A NixOS driver call covnet's machines cannot support (a screen, a
    /// keyboard): always fails, saying why.
    pub fn unsupported(&self, call: &str) -> StepError {
        self.error(
            &format!("{call}()"),
            StepErrorKind::Unsupported {
                why: format!(
                    "`{call}` needs a graphical display, which covnet machines do not have \
                     (they have a serial console: use wait_for_console_text, \
                     get_console_text and send_chars)"
                ),
            },
        )
    }

    /// Copies guest file `guest` to host path `host` (relative paths land
    /// in the run's output directory; parents are created). Returns the
    /// host path written.
    pub fn copy_from_vm(&self, guest: &str, host: &str) -> Result<PathBuf, StepError> {
        self.step(format!("copy_from_vm(`{guest}`)"), || {
            let data = self.machine.copy_from(guest)?;
            let host = if host.is_empty() {
                let base = Path::new(guest)
                    .file_name()
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from("copied"));
                self.ctx.output_dir.join(self.name()).join(base)
            } else {
                self.ctx.output_dir.join(host)
            };
            if let Some(parent) = host.parent() {
                std::fs::create_dir_all(parent).map_err(|source| StepErrorKind::Host {
                    what: "create directory",
                    path: parent.to_owned(),
                    source,
                })?;
            }
            std::fs::write(&host, data).map_err(|source| StepErrorKind::Host {
                what: "write",
                path: host.clone(),
                source,
            })?;
            Ok(host)
        })
    }

    /// Copies host file `host` (relative to the spec's directory) to guest
    /// path `guest`, keeping its permission bits.
    pub fn copy_to_vm(&self, host: &str, guest: &str) -> Result<(), StepError> {
        self.step(format!("copy_to_vm(`{host}`, `{guest}`)"), || {
            use std::os::unix::fs::PermissionsExt;
            let path = self.ctx.input_dir.join(host);
            let read = |source| StepErrorKind::Host {
                what: "read",
                path: path.clone(),
                source,
            };
            let mode = std::fs::metadata(&path).map_err(read)?.permissions().mode() & 0o7777;
            let data = std::fs::read(&path).map_err(read)?;
            Ok(self.machine.copy_to(&data, guest, mode)?)
        })
    }

    /// Shuts the machine down gracefully.
    pub fn shutdown(&self) -> Result<(), StepError> {
        self.step("shutdown()".to_owned(), || {
            Ok(self.machine.shutdown(self.ctx.timeouts.shutdown)?)
        })
    }

    /// Kills the machine without warning.
    pub fn crash(&self) -> Result<(), StepError> {
        self.step("crash()".to_owned(), || Ok(self.machine.crash()?))
    }

    /// Takes the machine's network links down.
    pub fn block(&self) -> Result<(), StepError> {
        self.step("block()".to_owned(), || Ok(self.machine.set_link(false)?))
    }

    /// Brings the machine's network links back up.
    pub fn unblock(&self) -> Result<(), StepError> {
        self.step("unblock()".to_owned(), || {
            Ok(self.machine.set_link(true)?)
        })
    }

    /// Gives every link of the machine (one per NIC) `faults`, replacing
    /// earlier ones: loss, delay and jitter, and a rate limit, each applied
    /// to both directions (see [`crate::net::faults`]).
    pub fn set_link(&self, faults: LinkFaults) -> Result<(), StepError> {
        self.step(format!("set_link({faults})"), || {
            faults.validate()?;
            let switch = self.ctx.switch().ok_or(FaultError::NoSwitch)?;
            if faults.loss > 0.0 || !faults.jitter.is_zero() {
                self.ctx.announce_fault_seed();
            }
            for port in switch.machine_ports(self.name()) {
                switch
                    .set_link_faults(port, faults)
                    .map_err(|e| StepErrorKind::Internal {
                        detail: e.to_string(),
                    })?;
            }
            Ok(())
        })
    }

    /// Removes the machine's link faults (a perfect link again).
    pub fn clear_link(&self) -> Result<(), StepError> {
        self.step("clear_link()".to_owned(), || {
            let switch = self.ctx.switch().ok_or(FaultError::NoSwitch)?;
            for port in switch.machine_ports(self.name()) {
                switch
                    .set_link_faults(port, LinkFaults::default())
                    .map_err(|e| StepErrorKind::Internal {
                        detail: e.to_string(),
                    })?;
            }
            Ok(())
        })
    }
}

/// Starts every node at once, one thread each, and waits for all of them.
/// Returns the first failure in node order; the others are reported
/// through the run's events.
pub fn start_nodes(nodes: &[Node]) -> Result<(), StepError> {
    let results: Vec<Result<(), StepError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = nodes
            .iter()
            .map(|n| (n, scope.spawn(move || n.start())))
            .collect();
        handles
            .into_iter()
            .map(|(n, h)| {
                h.join().unwrap_or_else(|_| {
                    Err(n.error(
                        "start()",
                        StepErrorKind::Internal {
                            detail: "the thread starting the machine panicked".to_owned(),
                        },
                    ))
                })
            })
            .collect()
    });
    results
        .into_iter()
        .collect::<Result<Vec<()>, _>>()
        .map(|_| ())
}

/// Quotes `s` for a POSIX shell (single quotes).
pub fn shell_quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('\'');
    for c in s.chars() {
        if c == '\'' {
            q.push_str("'\\''");
        } else {
            q.push(c);
        }
    }
    q.push('\'');
    q
}

/// A guest shell command exiting 0 when a TCP socket listens on `port`
/// (IPv4 or IPv6), read from `/proc/net/tcp*` so it needs no `nc`/`ss`.
/// Shell built-ins only: a wait on each of hundreds of machines is a
/// round trip each, and every process it starts is a fork and an exec.
pub fn port_listening_command(port: u16) -> String {
    format!(
        "for f in /proc/net/tcp /proc/net/tcp6; do [ -r \"$f\" ] || continue; \
         while read -r x l x s x; do [ \"$s\" = 0A ] && [ \"${{l##*:}}\" = {port:04X} ] && exit 0; \
         done <\"$f\"; done; exit 1"
    )
}

/// A guest shell command telling a service's state by its exit status:
/// 0 running, 1 not started yet (no pid file), 3 dead or a zombie (the
/// log's tail is printed). Built-ins only while the service runs (see
/// [`port_listening_command`]).
pub fn service_state_command(name: &str) -> String {
    let pid = shell_quote(&format!("/run/covnet/{name}.pid"));
    let log = shell_quote(&format!("/var/log/{name}.log"));
    format!(
        "test -s {pid} || exit 1; read -r p <{pid}; \
         kill -0 \"$p\" 2>/dev/null && {{ z=; \
         while read -r k v x; do [ \"$k\" = State: ] && {{ z=$v; break; }}; done 2>/dev/null <\"/proc/$p/status\"; \
         [ \"$z\" != Z ] && exit 0; }}; \
         tail -n 20 {log} 2>/dev/null; exit 3"
    )
}

/// The exit status of [`state_then_ready_command`] for a service that runs
/// but is not ready yet (the state command's own are 0, 1 and 3).
pub const NOT_READY_STATUS: i32 = 4;

/// One guest command for a wait on a service with a readiness check: the
/// exit status of `state` ([`service_state_command`]) unless the service
/// runs; then 0 when `check` succeeds, else [`NOT_READY_STATUS`] (with the
/// check's output). `check` runs in a subshell through `eval`, so its
/// `exit`, comments and newlines stay its own.
pub fn state_then_ready_command(state: &str, check: &str) -> String {
    format!(
        "( {state}\n); s=$?; [ \"$s\" -eq 0 ] || exit \"$s\"; \
         ( eval {} ) && exit 0; exit {NOT_READY_STATUS}",
        shell_quote(check)
    )
}

/// What [`Node::control_service`] does to a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceVerb {
    /// Launch it again, as init did (nothing when it runs).
    Start,
    /// SIGTERM to its process group, SIGKILL after a grace period.
    Stop,
    /// Stop, then start.
    Restart,
    /// Tell whether it runs.
    Status,
}

impl ServiceVerb {
    /// `start`, `stop`, `restart` or `status`.
    pub fn parse(word: &str) -> Option<ServiceVerb> {
        Some(match word {
            "start" => ServiceVerb::Start,
            "stop" => ServiceVerb::Stop,
            "restart" => ServiceVerb::Restart,
            "status" => ServiceVerb::Status,
            _ => return None,
        })
    }
}

impl fmt::Display for ServiceVerb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ServiceVerb::Start => "start",
            ServiceVerb::Stop => "stop",
            ServiceVerb::Restart => "restart",
            ServiceVerb::Status => "status",
        })
    }
}

/// A guest shell command doing `verb` to service `name` (see
/// [`Node::control_service`]); services are launched as `guest/init.sh`
/// launches them, from `/covnet/services/NN-<name>.sh`.
pub fn service_control_command(verb: ServiceVerb, name: &str) -> String {
    let q = shell_quote(name);
    let pid = shell_quote(&format!("/run/covnet/{name}.pid"));
    let log = shell_quote(&format!("/var/log/{name}.log"));
    let grace = crate::machine::session::SERVICE_STOP_GRACE.as_secs() * 10;
    let alive = "alive() { kill -0 \"$1\" 2>/dev/null && ! grep -qs '^State:[[:space:]]*Z' \"/proc/$1/status\"; }";
    let running = format!("running() {{ test -s {pid} && alive \"$(cat {pid})\"; }}");
    let stop = format!(
        "do_stop() {{ if running; then p=$(cat {pid}); kill -TERM -- \"-$p\" 2>/dev/null || kill -TERM \"$p\"; \
         n=0; while alive \"$p\" && [ $n -lt {grace} ]; do sleep 0.1; n=$((n + 1)); done; \
         alive \"$p\" && {{ kill -KILL -- \"-$p\" 2>/dev/null || kill -KILL \"$p\"; }}; fi; rm -f {pid}; }}"
    );
    let start = format!(
        "do_start() {{ running && return 0; s=$(ls /covnet/services/*-{name}.sh 2>/dev/null | head -n 1); \
         [ -n \"$s\" ] || {{ echo \"no service script for \"{q}; return 1; }}; \
         (cd / && exec setsid /bin/sh \"$s\") </dev/null >>{log} 2>&1 & echo $! >{pid}; }}"
    );
    let status = format!(
        "do_status() {{ if running; then echo {q}\": active (running), pid $(cat {pid})\"; return 0; fi; \
         if test -s {pid}; then echo {q}\": failed (its process is gone); its log ends:\"; tail -n 20 {log} 2>/dev/null; \
         else echo {q}\": inactive (stopped)\"; fi; return 3; }}"
    );
    let body = match verb {
        ServiceVerb::Start => "do_start || exit 1; do_status",
        ServiceVerb::Stop => {
            "do_stop; if running; then do_status; exit 1; fi; echo {q}': inactive (stopped)'"
        }
        ServiceVerb::Restart => "do_stop; do_start || exit 1; do_status",
        ServiceVerb::Status => "do_status",
    }
    .replace("{q}", &q);
    format!("{alive}\n{running}\n{stop}\n{start}\n{status}\n{body}")
}

/// A guest shell command exiting 0 when a unix socket is bound at `path`:
/// a listening stream socket, or a bound datagram socket, as
/// `/proc/net/unix` lists them.
pub fn unix_socket_command(path: &str, datagram: bool) -> String {
    // Flags 00010000 is __SO_ACCEPTCON (listening); type 0001 stream, 0002 dgram.
    let cond = if datagram {
        "$5 == \"0002\""
    } else {
        "$5 == \"0001\" && $4 == \"00010000\""
    };
    format!(
        "awk -v p={} 'BEGIN {{ f = 1 }} NR > 1 && {cond} && $8 == p {{ f = 0 }} END {{ exit f }}' /proc/net/unix",
        shell_quote(path)
    )
}

/// Parses a script timeout: seconds (integer or decimal) or a humantime
/// duration string (`"30s"`, `"2m 30s"`).
pub fn parse_timeout(value: &str) -> Result<Duration, StepErrorKind> {
    let v = value.trim();
    let bad = || StepErrorKind::BadTimeout {
        value: value.to_owned(),
    };
    if let Ok(secs) = v.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|_| bad());
    }
    humantime::parse_duration(v).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// Runs `cmd` with the host's `sh` and with busybox's (the guests'
    /// shell); both must agree.
    fn sh(cmd: &str) -> std::process::Output {
        let host = Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .output()
            .expect("run sh");
        let guest = Command::new("/bin/busybox")
            .args(["sh", "-c", cmd])
            .output()
            .expect("run busybox sh (busybox-static; hint: run scripts/setup.sh)");
        assert_eq!(
            (host.status.code(), &host.stdout),
            (guest.status.code(), &guest.stdout),
            "sh and busybox sh differ on `{cmd}`"
        );
        host
    }

    #[test]
    fn quoting_survives_the_shell() {
        for s in ["plain", "it's", "a b", "$HOME `x` \"q\"", ""] {
            let out = sh(&format!("printf %s {}", shell_quote(s)));
            assert_eq!(String::from_utf8_lossy(&out.stdout), s);
        }
    }

    #[test]
    fn port_command_sees_a_real_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        assert!(sh(&port_listening_command(port)).status.success());
        drop(listener);
        assert!(!sh(&port_listening_command(port)).status.success());
    }

    /// The state command of service `web`, its absolute guest paths
    /// rewritten into `dir` (to check its logic on the host).
    fn state_command_in(dir: &Path) -> String {
        let d = dir.display().to_string();
        service_state_command("web")
            .replace("/run/covnet", &d)
            .replace("/var/log", &d)
    }

    /// Makes `web` dead (a pid no process has) with a log line, and checks
    /// that `cmd` says so: status 3, the log on stdout.
    fn assert_dead_with_log(dir: &Path, cmd: &str) {
        std::fs::write(dir.join("web.pid"), "999999999").expect("pid");
        std::fs::write(dir.join("web.log"), "bind: address in use\n").expect("log");
        let out = sh(cmd);
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "bind: address in use\n"
        );
    }

    #[test]
    fn service_state_distinguishes_missing_running_dead() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cmd = state_command_in(dir.path());
        assert_eq!(sh(&cmd).status.code(), Some(1));
        std::fs::write(dir.path().join("web.pid"), std::process::id().to_string()).expect("pid");
        assert_eq!(sh(&cmd).status.code(), Some(0));
        assert_dead_with_log(dir.path(), &cmd);
        // A zombie (exited, not reaped) is dead too.
        let mut child = Command::new("true").spawn().expect("spawn true");
        let zombie = format!("/proc/{}/status", child.id());
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !std::fs::read_to_string(&zombie)
            .expect("status of the unreaped child")
            .lines()
            .any(|l| l.starts_with("State:") && l.contains('Z'))
        {
            assert!(std::time::Instant::now() < deadline, "`true` never exited");
            std::thread::sleep(Duration::from_millis(10));
        }
        std::fs::write(dir.path().join("web.pid"), child.id().to_string()).expect("pid");
        assert_eq!(sh(&cmd).status.code(), Some(3));
        child.wait().expect("reap");
    }

    #[test]
    fn state_then_ready_tells_missing_dead_unready_ready() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = state_command_in(dir.path());
        let ready = dir.path().join("ready");
        // A check with its own exit status 3, a comment and a newline: none
        // of them may leak into the combined status.
        let check = format!(
            "test -e {} # ready?\nor_not=1; test -e {} || exit 3",
            ready.display(),
            ready.display()
        );
        let cmd = state_then_ready_command(&state, &check);
        assert_eq!(sh(&cmd).status.code(), Some(1));
        std::fs::write(dir.path().join("web.pid"), std::process::id().to_string()).expect("pid");
        assert_eq!(sh(&cmd).status.code(), Some(NOT_READY_STATUS));
        std::fs::write(&ready, "").expect("ready");
        assert_eq!(sh(&cmd).status.code(), Some(0));
        assert_dead_with_log(dir.path(), &cmd);
    }

    #[test]
    fn timeouts_parse() {
        assert_eq!(parse_timeout("30s").ok(), Some(Duration::from_secs(30)));
        assert_eq!(parse_timeout("1.5").ok(), Some(Duration::from_millis(1500)));
        assert_eq!(parse_timeout("2m").ok(), Some(Duration::from_secs(120)));
        assert!(parse_timeout("soon").is_err());
        assert!(parse_timeout("-1").is_err());
    }

    #[test]
    fn status_failure_report_has_everything() {
        let err = StepError {
            machine: Some("client".into()),
            step: "succeed(`wget http://server/`)".into(),
            kind: Box::new(StepErrorKind::Status {
                expected: Expected::Success,
                output: Output {
                    status: 1,
                    stdout: Vec::new(),
                    stderr: b"wget: bad address 'server'\n".to_vec(),
                },
            }),
            console: vec!["booted".into()],
            position: Some(ScriptPosition { line: 3, column: 8 }),
        };
        let text = err.to_string();
        assert_eq!(
            text,
            "machine `client`: succeed(`wget http://server/`) failed at script line 3, column 8: \
             command exited with status 1\n  stdout: (empty)\n  stderr:\n  | wget: bad address 'server'\
             \n  last console lines:\n  | booted"
        );
        assert!(!err.is_infrastructure());
        assert_eq!(
            err.summary(),
            "machine `client`: succeed(`wget http://server/`) (script line 3, column 8): command exited with status 1"
        );
    }
}
