//! How a test step fails: [`StepError`] names the machine, the step and
//! the command, with the command's exit status and output and the
//! machine's last console lines; [`ScriptPosition`] says where in the
//! script. Re-exported by [`super::driver`].

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::machine::{MachineError, Output};

/// How much of a command's output a failure report shows, per stream.
const REPORT_OUTPUT_BYTES: usize = 4096;

/// A line and column in a test script (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScriptPosition {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
}

impl fmt::Display for ScriptPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// What a failed step was expecting from its command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// Exit status 0.
    Success,
    /// A non-zero exit status.
    Failure,
}

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StepErrorKind {
    /// The command's exit status was not what the step expected.
    #[error("{}", match expected {
        Expected::Success => format!("command exited with status {}", output.status),
        Expected::Failure => "command succeeded but was expected to fail".to_owned(),
    })]
    Status {
        /// What the step expected.
        expected: Expected,
        /// The command's status and output.
        output: Output,
    },
    /// A polling wait gave up.
    #[error("timed out after {}s waiting for {what}", timeout.as_secs_f64())]
    Timeout {
        /// What was waited for.
        what: String,
        /// The timeout.
        timeout: Duration,
        /// The last attempt's output, if the wait ran a command.
        last: Option<Output>,
    },
    /// The machine backend failed (boot, channel, command timeout, ...).
    #[error(transparent)]
    Machine(#[from] MachineError),
    /// A host-side file operation failed.
    #[error("failed to {what} {}", path.display())]
    Host {
        /// What was being done, a "failed to ..." fragment.
        what: &'static str,
        /// The host path.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: io::Error,
    },
    /// `wait_for_service` named a service the spec does not declare.
    #[error("machine has no service `{name}` (the spec declares: {})\n  (hint: add it under [[machines.<name>.services]])", if known.is_empty() { "none".to_owned() } else { known.join(", ") })]
    UnknownService {
        /// The name asked for.
        name: String,
        /// The services the machine has.
        known: Vec<String>,
    },
    /// A service's process is gone.
    #[error("service `{name}` is not running (its pid file exists but the process is gone); its log ends:\n{log}")]
    ServiceDied {
        /// The service.
        name: String,
        /// Last lines of `/var/log/<name>.log`.
        log: String,
    },
    /// A timeout string that is not a duration.
    #[error("invalid timeout `{value}` (expected seconds or a duration like \"30s\", \"2m\")")]
    BadTimeout {
        /// The value given.
        value: String,
    },
    /// Collecting or resetting coverage failed.
    #[error("coverage: {detail}")]
    Coverage {
        /// What failed, naming the machine.
        detail: String,
    },
    /// A bug in covnet (a panicked worker thread).
    #[error("internal error: {detail}")]
    Internal {
        /// What happened.
        detail: String,
    },
    /// The run was interrupted (Ctrl-C, test timeout) while the step ran.
    #[error("interrupted: {reason}")]
    Interrupted {
        /// Why.
        reason: String,
    },
    /// A script passed an argument of the wrong kind.
    #[error("bad argument: {what}")]
    BadArgument {
        /// What is wrong.
        what: String,
    },
    /// A call covnet's machines cannot carry out (a NixOS driver call for
    /// a screen, an unknown tty or `systemctl` verb).
    #[error("not supported: {why}")]
    Unsupported {
        /// Why, and what to use instead.
        why: String,
    },
    /// A network fault (link setting, partition) could not be applied.
    #[error(transparent)]
    Fault(#[from] crate::net::faults::FaultError),
}

/// A failed test step: which machine, which step, why, and where in the
/// script.
#[derive(Debug)]
pub struct StepError {
    /// The machine, if the step ran on one.
    pub machine: Option<String>,
    /// The step, e.g. ``succeed(`wget http://server/`)``.
    pub step: String,
    /// Why it failed.
    pub kind: Box<StepErrorKind>,
    /// The machine's last console lines when the step failed (empty when
    /// the kind already carries them).
    pub console: Vec<String>,
    /// Where in the test script, when run from a script.
    pub position: Option<ScriptPosition>,
}

impl StepError {
    /// True when the failure is the infrastructure's (a process that did not
    /// spawn, a broken control channel, host I/O), not the test's.
    pub fn is_infrastructure(&self) -> bool {
        match &*self.kind {
            StepErrorKind::Machine(e) => matches!(
                e,
                MachineError::Spawn { .. }
                    | MachineError::Io { .. }
                    | MachineError::Channel { .. }
                    | MachineError::Stop { .. }
                    | MachineError::Link { .. }
            ),
            StepErrorKind::Interrupted { .. } | StepErrorKind::Internal { .. } => true,
            _ => false,
        }
    }

    /// One line: machine, step and reason, without outputs.
    pub fn summary(&self) -> String {
        let who = self
            .machine
            .as_deref()
            .map(|m| format!("machine `{m}`: "))
            .unwrap_or_default();
        let at = self
            .position
            .map(|p| format!(" (script {p})"))
            .unwrap_or_default();
        let first = self.kind.to_string();
        let first = first.lines().next().unwrap_or("").to_owned();
        format!("{who}{}{at}: {first}", self.step)
    }
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(m) = &self.machine {
            write!(f, "machine `{m}`: ")?;
        }
        write!(f, "{} failed", self.step)?;
        if let Some(p) = self.position {
            write!(f, " at script {p}")?;
        }
        match &*self.kind {
            StepErrorKind::Status { output, .. } => {
                write!(f, ": {}", self.kind)?;
                write_output(f, output)?;
            }
            StepErrorKind::Timeout {
                last: Some(output), ..
            } => {
                write!(f, ": {}", self.kind)?;
                write!(f, "\n  last attempt exited with status {}", output.status)?;
                write_output(f, output)?;
            }
            StepErrorKind::Machine(e) => {
                // The machine error names the machine itself; keep the rest.
                let text = e.to_string();
                let prefix = format!("machine `{}`: ", e.machine());
                write!(f, ": {}", text.strip_prefix(&prefix).unwrap_or(&text))?;
                write_causes(f, std::error::Error::source(e))?;
            }
            StepErrorKind::Host { source, .. } => {
                write!(f, ": {}", self.kind)?;
                write_causes(f, Some(source))?;
            }
            kind => write!(f, ": {kind}")?,
        }
        if !self.console.is_empty() {
            f.write_str("\n  last console lines:")?;
            for line in &self.console {
                write!(f, "\n  | {line}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for StepError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &*self.kind {
            StepErrorKind::Machine(e) => Some(e),
            StepErrorKind::Host { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// `cause` and what caused it, a line each: a failed spawn or host file
/// operation says why (the OS error), which its own message does not.
fn write_causes(
    f: &mut fmt::Formatter<'_>,
    mut cause: Option<&(dyn std::error::Error + 'static)>,
) -> fmt::Result {
    while let Some(c) = cause {
        write!(f, "\n  caused by: {c}")?;
        cause = c.source();
    }
    Ok(())
}

fn write_output(f: &mut fmt::Formatter<'_>, output: &Output) -> fmt::Result {
    for (name, bytes) in [("stdout", &output.stdout), ("stderr", &output.stderr)] {
        if bytes.is_empty() {
            write!(f, "\n  {name}: (empty)")?;
            continue;
        }
        let shown = bytes.len().min(REPORT_OUTPUT_BYTES);
        let start = bytes.len() - shown;
        let text = String::from_utf8_lossy(bytes.get(start..).unwrap_or(&[]));
        write!(f, "\n  {name}:")?;
        if start > 0 {
            write!(f, "\n  | ... ({start} bytes before)")?;
        }
        for line in text.trim_end_matches('\n').lines() {
            write!(f, "\n  | {line}")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(kind: StepErrorKind) -> StepError {
        StepError {
            machine: Some("a".into()),
            step: "start()".into(),
            kind: Box::new(kind),
            console: vec!["covnet-init-done".into()],
            position: None,
        }
    }

    #[test]
    fn a_failed_spawn_or_host_operation_says_why() {
        let spawn = step(StepErrorKind::Machine(MachineError::Spawn {
            machine: "a".into(),
            program: "the namespace machine's init".into(),
            source: io::Error::from_raw_os_error(libc::EROFS),
        }));
        assert_eq!(
            spawn.to_string(),
            "machine `a`: start() failed: failed to spawn `the namespace machine's init`\n  \
             caused by: Read-only file system (os error 30)\n  \
             last console lines:\n  | covnet-init-done"
        );
        let host = step(StepErrorKind::Host {
            what: "read",
            path: "/x/in.txt".into(),
            source: io::Error::from_raw_os_error(libc::ENOENT),
        });
        assert!(
            host.to_string().starts_with(
                "machine `a`: start() failed: failed to read /x/in.txt\n  \
                 caused by: No such file or directory (os error 2)"
            ),
            "{host}"
        );
    }
}
