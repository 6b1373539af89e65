//! The machine interface every backend implements, and its common types.
//!
//! A [`Machine`] is one guest of a test network: a QEMU VM (the `vm`
//! module) or any other backend with a root shell. The trait is
//! synchronous and `Send + Sync`, so test scripts and `cargo test` users can
//! call it directly from any thread; implementations keep their own
//! internal state behind locks.
//!
//! Every blocking method has a deadline. When a wait gives up, the error
//! names the machine, what was waited for and carries the machine's last
//! console lines.

pub mod console;
pub mod namespace;
pub mod process;
pub mod session;
pub mod terminal;
pub mod vm;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How many console lines an error carries by default.
pub const ERROR_CONSOLE_LINES: usize = 20;

/// The result of one command run in a guest: exit status and both output
/// streams, exactly as the command produced them. The collector's
/// [`covnet_collector::Output`]: one type across the seam.
pub use covnet_collector::Output;

/// One guest of a test network, driven synchronously.
///
/// All methods take `&self`; implementations are shared between threads
/// (`Arc<dyn Machine>`).
pub trait Machine: Send + Sync {
    /// The machine's name from the spec.
    fn name(&self) -> &str;

    /// Boots the machine and waits until its control shell answers. A
    /// no-op when it is already running.
    fn start(&self) -> Result<(), MachineError>;

    /// True while the machine's process is alive and its shell usable.
    fn is_running(&self) -> bool;

    /// Runs `cmd` with the guest's `/bin/sh -c` and returns its status and
    /// output. A command still running after `timeout` is killed (with its
    /// process group) and the call fails with [`MachineError::CommandTimeout`].
    fn execute(&self, cmd: &str, timeout: Duration) -> Result<Output, MachineError>;

    /// Writes `data` to `guest_path` (parent directories created) with
    /// permission bits `mode`. Binary safe.
    fn copy_to(&self, data: &[u8], guest_path: &str, mode: u32) -> Result<(), MachineError>;

    /// Reads the whole file at `guest_path`. Binary safe.
    fn copy_from(&self, guest_path: &str) -> Result<Vec<u8>, MachineError>;

    /// The last `last` lines of the machine's serial console log.
    fn console_lines(&self, last: usize) -> Vec<String>;

    /// Waits until a console line matches `pattern` (a regular expression;
    /// plain text matches itself unless it contains regex metacharacters).
    /// Lines logged before the call count too.
    fn wait_for_console_text(&self, pattern: &str, timeout: Duration) -> Result<(), MachineError>;

    /// Graceful shutdown: services get SIGTERM, file systems are synced, the
    /// guest powers off; the process is killed if it is still there after
    /// `timeout`. A no-op when the machine is not running.
    fn shutdown(&self, timeout: Duration) -> Result<(), MachineError>;

    /// Immediate power-off: the machine's process is killed without warning
    /// to the guest.
    fn crash(&self) -> Result<(), MachineError>;

    /// Takes all the machine's network links down (`false`) or up (`true`).
    fn set_link(&self, up: bool) -> Result<(), MachineError>;

    /// Writes `data` to the machine's serial console, as typed on it: a
    /// guest program reading `/dev/console` gets it.
    fn send_console(&self, data: &[u8]) -> Result<(), MachineError> {
        let _ = data;
        Err(MachineError::Unsupported {
            machine: self.name().to_owned(),
            op: "write to the serial console".to_owned(),
            why: "this machine's backend has no console input".to_owned(),
        })
    }

    /// The whole serial console log so far (every boot), lines joined
    /// with `\n`.
    fn console_text(&self) -> String {
        self.console_lines(usize::MAX).join("\n")
    }

    /// Forwards host port `host_port` on 127.0.0.1 to `guest_port` in the
    /// guest, from now on.
    fn forward_port(&self, host_port: u16, guest_port: u16) -> Result<(), MachineError> {
        let _ = (host_port, guest_port);
        Err(MachineError::Unsupported {
            machine: self.name().to_owned(),
            op: "forward a port".to_owned(),
            why: "only VMs (backend = \"vm\") have host port forwards".to_owned(),
        })
    }

    /// Opens an interactive terminal session: a login shell on a pty in
    /// the guest whose `TERM` is `term` (see [`terminal`]). The default
    /// says the machine has none.
    fn open_terminal(&self, term: &str) -> Result<terminal::Terminal, MachineError> {
        let _ = term;
        Err(MachineError::Terminal {
            machine: self.name().to_owned(),
            detail: "this kind of machine has no interactive terminal".into(),
        })
    }
}

/// Something that happened to a machine, for terminal reporters and logs.
///
/// Events for one machine are ordered like a state machine: `Booting`, then
/// `Ready` or `BootFailed`, console lines at any time, `Stopped` last.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MachineEvent {
    /// The machine's process was spawned.
    Booting {
        /// Machine name.
        machine: String,
        /// Accelerator used, e.g. `"kvm"` or `"tcg"`.
        accel: String,
    },
    /// The control shell answered for the first time.
    Ready {
        /// Machine name.
        machine: String,
        /// Time from spawn to the first shell answer.
        boot_time: Duration,
    },
    /// Boot did not reach the control shell.
    BootFailed {
        /// Machine name.
        machine: String,
        /// Why, as displayed by the error.
        reason: String,
    },
    /// One line of the machine's serial console.
    ConsoleLine {
        /// Machine name.
        machine: String,
        /// The line, without its line terminator.
        line: String,
    },
    /// The machine's process is gone.
    Stopped {
        /// Machine name.
        machine: String,
        /// How it ended, e.g. `"exit status: 0"`.
        how: String,
    },
    /// A booted guest was restored from the snapshot cache, saved to it,
    /// or could not be (see [`vm::snapshot`]).
    Snapshot {
        /// Machine name.
        machine: String,
        /// What happened.
        action: SnapshotAction,
    },
}

/// What happened to a VM's snapshot (see [`MachineEvent::Snapshot`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotAction {
    /// The guest was restored from `path`: QEMU ran the restored guest
    /// `took` after it was spawned.
    Restored {
        /// The snapshot file.
        path: PathBuf,
        /// Spawn to running guest.
        took: Duration,
    },
    /// The booted guest was saved to `path` for the next boots.
    Saved {
        /// The snapshot file.
        path: PathBuf,
        /// Its size.
        bytes: u64,
        /// How long the guest was held for the save.
        took: Duration,
    },
    /// Restoring from `path` failed: the file was removed and the guest
    /// boots cold.
    RestoreFailed {
        /// The snapshot file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The booted guest could not be saved (the run goes on).
    SaveFailed {
        /// Why.
        reason: String,
    },
}

impl MachineEvent {
    /// The name of the machine the event is about.
    pub fn machine(&self) -> &str {
        match self {
            MachineEvent::Booting { machine, .. }
            | MachineEvent::Ready { machine, .. }
            | MachineEvent::BootFailed { machine, .. }
            | MachineEvent::ConsoleLine { machine, .. }
            | MachineEvent::Stopped { machine, .. }
            | MachineEvent::Snapshot { machine, .. } => machine,
        }
    }
}

impl fmt::Display for MachineEvent {
    /// Renders the event as one terminal line prefixed with the machine name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MachineEvent::Booting { machine, accel } => {
                write!(f, "{machine}: booting ({accel})")
            }
            MachineEvent::Ready { machine, boot_time } => {
                write!(f, "{machine}: ready after {:.2}s", boot_time.as_secs_f64())
            }
            MachineEvent::BootFailed { machine, reason } => {
                write!(f, "{machine}: boot failed: {reason}")
            }
            MachineEvent::ConsoleLine { machine, line } => write!(f, "{machine}| {line}"),
            MachineEvent::Stopped { machine, how } => write!(f, "{machine}: stopped ({how})"),
            MachineEvent::Snapshot { machine, action } => match action {
                SnapshotAction::Restored { path, took } => write!(
                    f,
                    "{machine}: restored the booted guest in {:.2}s from {}",
                    took.as_secs_f64(),
                    path.display()
                ),
                SnapshotAction::Saved { path, bytes, took } => write!(
                    f,
                    "{machine}: saved the booted guest for the next runs ({:.1} MB in {:.2}s) to {}",
                    *bytes as f64 / 1e6,
                    took.as_secs_f64(),
                    path.display()
                ),
                SnapshotAction::RestoreFailed { path, reason } => write!(
                    f,
                    "{machine}: could not restore {} ({reason}); removed it, booting cold",
                    path.display()
                ),
                SnapshotAction::SaveFailed { reason } => {
                    write!(f, "{machine}: could not save the booted guest: {reason}")
                }
            },
        }
    }
}

/// Where machine events go: a callback shared between threads.
#[derive(Clone)]
pub struct EventSink(Arc<dyn Fn(MachineEvent) + Send + Sync>);

impl EventSink {
    /// A sink calling `f` for every event (from any thread).
    pub fn from_fn(f: impl Fn(MachineEvent) + Send + Sync + 'static) -> Self {
        EventSink(Arc::new(f))
    }

    /// A sink that drops every event.
    pub fn none() -> Self {
        EventSink::from_fn(|_| {})
    }

    /// A sink sending every event into a channel; a closed receiver drops
    /// events silently.
    pub fn channel(tx: std::sync::mpsc::Sender<MachineEvent>) -> Self {
        EventSink::from_fn(move |ev| {
            let _ = tx.send(ev);
        })
    }

    /// Delivers one event.
    pub fn emit(&self, event: MachineEvent) {
        (self.0)(event)
    }
}

impl fmt::Debug for EventSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EventSink")
    }
}

impl Default for EventSink {
    fn default() -> Self {
        EventSink::none()
    }
}

/// Console lines attached to an error, displayed indented after it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsoleTail {
    /// The last lines, oldest first.
    pub lines: Vec<String>,
    /// When the machine did not come up: what to suspect, shown after
    /// the lines (a VM given less memory than it loads).
    pub hint: Option<String>,
}

impl ConsoleTail {
    /// The tail of `lines`, without a hint.
    pub fn of(lines: Vec<String>) -> ConsoleTail {
        ConsoleTail { lines, hint: None }
    }
}

impl fmt::Display for ConsoleTail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lines.is_empty() {
            f.write_str("\n  (console log is empty)")?;
        } else {
            f.write_str("\n  last console lines:")?;
            for line in &self.lines {
                write!(f, "\n  | {line}")?;
            }
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  (hint: {hint})")?;
        }
        Ok(())
    }
}

/// A failure of a [`Machine`] operation. Every variant names the machine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MachineError {
    /// The machine's process could not be started.
    #[error("machine `{machine}`: failed to spawn `{program}`")]
    Spawn {
        /// Machine name.
        machine: String,
        /// Program that failed to start.
        program: String,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Preparing or using a host-side resource failed (run dir, socket, log).
    #[error("machine `{machine}`: failed to {what}")]
    Io {
        /// Machine name.
        machine: String,
        /// What was being done, as a "failed to ..." fragment.
        what: String,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The control shell did not answer within the boot deadline.
    #[error(
        "machine `{machine}`: control shell did not answer within {}s of boot{console}",
        timeout.as_secs_f64()
    )]
    BootTimeout {
        /// Machine name.
        machine: String,
        /// The boot deadline.
        timeout: Duration,
        /// Last console lines.
        console: ConsoleTail,
    },
    /// The machine's process exited while something waited for it.
    #[error("machine `{machine}`: exited ({how}) while {during}{console}")]
    Exited {
        /// Machine name.
        machine: String,
        /// What was going on, e.g. "booting" or "running `ls`".
        during: String,
        /// Exit status as displayed by the OS.
        how: String,
        /// Last console lines.
        console: ConsoleTail,
    },
    /// A command did not finish within its timeout (it was killed).
    #[error(
        "machine `{machine}`: command `{command}` did not finish within {}s{console}",
        timeout.as_secs_f64()
    )]
    CommandTimeout {
        /// Machine name.
        machine: String,
        /// The command as given.
        command: String,
        /// The timeout.
        timeout: Duration,
        /// Last console lines.
        console: ConsoleTail,
    },
    /// A wait (console text, ...) gave up.
    #[error(
        "machine `{machine}`: timed out after {}s waiting for {what}{console}",
        timeout.as_secs_f64()
    )]
    WaitTimeout {
        /// Machine name.
        machine: String,
        /// What was waited for.
        what: String,
        /// The timeout.
        timeout: Duration,
        /// Last console lines.
        console: ConsoleTail,
    },
    /// The operation needs a running machine.
    #[error(
        "machine `{machine}`: cannot {op}: machine is not running\n  (hint: call start() first)"
    )]
    NotRunning {
        /// Machine name.
        machine: String,
        /// The operation attempted.
        op: String,
    },
    /// The control channel broke (socket closed, malformed reply); it is
    /// unusable afterwards.
    #[error("machine `{machine}`: control channel failed during {during}: {detail}")]
    Channel {
        /// Machine name.
        machine: String,
        /// What was going on, e.g. "command `ls`".
        during: String,
        /// What went wrong.
        detail: String,
    },
    /// A guest-side helper step failed (e.g. writing a copied file).
    #[error("machine `{machine}`: {op} failed in the guest (status {status}): {stderr}")]
    Guest {
        /// Machine name.
        machine: String,
        /// The operation, e.g. "copy to `/etc/x`".
        op: String,
        /// Exit status of the guest step.
        status: i32,
        /// Its standard error, lossily decoded.
        stderr: String,
    },
    /// A console pattern is not a valid regular expression.
    #[error("machine `{machine}`: invalid console pattern `{pattern}`: {detail}")]
    Pattern {
        /// Machine name.
        machine: String,
        /// The pattern as given.
        pattern: String,
        /// Why it is invalid.
        detail: String,
    },
    /// The machine's process could not be stopped (it survived SIGKILL or
    /// could not be reaped).
    #[error("machine `{machine}`: failed to stop: {detail}")]
    Stop {
        /// Machine name.
        machine: String,
        /// What went wrong.
        detail: String,
    },
    /// The machine's backend cannot do this.
    #[error("machine `{machine}`: cannot {op}: {why}")]
    Unsupported {
        /// Machine name.
        machine: String,
        /// The operation attempted.
        op: String,
        /// Why not.
        why: String,
    },
    /// An interactive terminal session could not be opened.
    #[error("machine `{machine}`: cannot open a terminal: {detail}")]
    Terminal {
        /// Machine name.
        machine: String,
        /// Why.
        detail: String,
    },
    /// A saved guest could not be restored (the snapshot is removed: the
    /// next boot is cold).
    #[error("machine `{machine}`: could not restore {}: {reason}", snapshot.display())]
    Restore {
        /// Machine name.
        machine: String,
        /// The snapshot file.
        snapshot: PathBuf,
        /// Why.
        reason: String,
    },
    /// Changing the network link state failed.
    #[error("machine `{machine}`: failed to set link {}: {detail}", if *up { "up" } else { "down" })]
    Link {
        /// Machine name.
        machine: String,
        /// The requested state.
        up: bool,
        /// What went wrong.
        detail: String,
    },
}

impl MachineError {
    /// The name of the machine the error is about.
    pub fn machine(&self) -> &str {
        match self {
            MachineError::Spawn { machine, .. }
            | MachineError::Io { machine, .. }
            | MachineError::BootTimeout { machine, .. }
            | MachineError::Exited { machine, .. }
            | MachineError::CommandTimeout { machine, .. }
            | MachineError::WaitTimeout { machine, .. }
            | MachineError::NotRunning { machine, .. }
            | MachineError::Channel { machine, .. }
            | MachineError::Guest { machine, .. }
            | MachineError::Pattern { machine, .. }
            | MachineError::Stop { machine, .. }
            | MachineError::Unsupported { machine, .. }
            | MachineError::Terminal { machine, .. }
            | MachineError::Restore { machine, .. }
            | MachineError::Link { machine, .. } => machine,
        }
    }

    /// True for the errors that mean "gave up waiting".
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            MachineError::BootTimeout { .. }
                | MachineError::CommandTimeout { .. }
                | MachineError::WaitTimeout { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_helpers() {
        let out = Output {
            status: 0,
            stdout: b"hi\n".to_vec(),
            stderr: vec![0xff],
        };
        assert!(out.success());
        assert_eq!(out.stdout_lossy(), "hi\n");
        assert_eq!(out.stderr_lossy(), "\u{fffd}");
        assert!(!Output { status: 3, ..out }.success());
    }

    #[test]
    fn timeout_error_names_machine_command_and_console() {
        let err = MachineError::CommandTimeout {
            machine: "server".into(),
            command: "sleep 100".into(),
            timeout: Duration::from_millis(1500),
            console: ConsoleTail::of(vec!["booted".into(), "eth0 up".into()]),
        };
        let text = err.to_string();
        assert_eq!(
            text,
            "machine `server`: command `sleep 100` did not finish within 1.5s\n  \
             last console lines:\n  | booted\n  | eth0 up"
        );
        assert_eq!(err.machine(), "server");
        assert!(err.is_timeout());
    }

    #[test]
    fn empty_console_is_said() {
        let err = MachineError::BootTimeout {
            machine: "a".into(),
            timeout: Duration::from_secs(30),
            console: ConsoleTail::default(),
        };
        assert_eq!(
            err.to_string(),
            "machine `a`: control shell did not answer within 30s of boot\n  (console log is empty)"
        );
    }

    #[test]
    fn events_render_with_machine_prefix() {
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = EventSink::channel(tx);
        sink.emit(MachineEvent::ConsoleLine {
            machine: "client".into(),
            line: "hello".into(),
        });
        let ev = rx.recv().expect("event delivered");
        assert_eq!(ev.machine(), "client");
        assert_eq!(ev.to_string(), "client| hello");
    }

    /// A machine whose every command fails with `err`.
    struct Failing(fn() -> MachineError);

    impl Machine for Failing {
        fn name(&self) -> &str {
            "m"
        }
        fn start(&self) -> Result<(), MachineError> {
            Ok(())
        }
        fn is_running(&self) -> bool {
            true
        }
        fn execute(&self, _: &str, _: Duration) -> Result<Output, MachineError> {
            Err((self.0)())
        }
        fn copy_to(&self, _: &[u8], _: &str, _: u32) -> Result<(), MachineError> {
            Err((self.0)())
        }
        fn copy_from(&self, _: &str) -> Result<Vec<u8>, MachineError> {
            Err((self.0)())
        }
        fn console_lines(&self, _: usize) -> Vec<String> {
            Vec::new()
        }
        fn wait_for_console_text(&self, _: &str, _: Duration) -> Result<(), MachineError> {
            Err((self.0)())
        }
        fn shutdown(&self, _: Duration) -> Result<(), MachineError> {
            Ok(())
        }
        fn crash(&self) -> Result<(), MachineError> {
            Ok(())
        }
        fn set_link(&self, _: bool) -> Result<(), MachineError> {
            Ok(())
        }
    }

    #[test]
    fn machine_errors_keep_their_kind_through_the_collector_shell() {
        use covnet_collector::{Shell, ShellError};
        let timeout = Failing(|| MachineError::CommandTimeout {
            machine: "m".into(),
            command: "tar c x".into(),
            timeout: Duration::from_secs(7),
            console: ConsoleTail::default(),
        });
        match crate::coverage::MachineShell(&timeout).run("tar c x", Duration::from_secs(7)) {
            Err(ShellError::Timeout { command, after }) => {
                assert_eq!(
                    (command.as_str(), after),
                    ("tar c x", Duration::from_secs(7))
                );
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
        let gone = Failing(|| MachineError::NotRunning {
            machine: "m".into(),
            op: "run `true`".into(),
        });
        let err = crate::coverage::MachineShell(&gone)
            .run("true", Duration::from_secs(1))
            .expect_err("not running");
        let ShellError::Transport(inner) = &err else {
            panic!("expected the machine's error, got {err:?}");
        };
        assert!(matches!(
            inner.downcast_ref::<MachineError>(),
            Some(MachineError::NotRunning { .. })
        ));
        assert_eq!(
            err.to_string(),
            gone.execute("", Duration::ZERO).unwrap_err().to_string()
        );
    }

    #[test]
    fn machine_is_object_safe_and_shareable() {
        fn assert_send_sync<T: Send + Sync + ?Sized>() {}
        assert_send_sync::<dyn Machine>();
        assert_send_sync::<MachineError>();
    }
}
