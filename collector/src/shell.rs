//! The one thing the collector needs from a machine: a shell.

use std::time::Duration;

/// What a command printed and how it ended: the one output type of every
/// shell, also what the runner's machines return
/// (`covnet_runner::machine::Output` is this type).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Output {
    /// Exit status (128 + signal number when killed by a signal, as `sh` reports).
    pub status: i32,
    /// Everything the command wrote to standard output, byte for byte.
    pub stdout: Vec<u8>,
    /// Everything the command wrote to standard error, byte for byte.
    pub stderr: Vec<u8>,
}

impl Output {
    /// The command exited with status 0.
    pub fn success(&self) -> bool {
        self.status == 0
    }

    /// Standard output decoded lossily as UTF-8.
    pub fn stdout_lossy(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Standard error decoded lossily as UTF-8.
    pub fn stderr_lossy(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// Standard error as text, trimmed, for messages.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim().to_string()
    }
}

/// Why a command could not be run to completion.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShellError {
    /// The command did not finish within its deadline; it was killed.
    #[error("command timed out after {after:?}: {command}")]
    Timeout {
        /// The command.
        command: String,
        /// The deadline that passed.
        after: Duration,
    },
    /// The shell process or channel failed.
    #[error("shell channel failed: {0}")]
    Io(#[from] std::io::Error),
    /// The machine-specific transport reported an error, kept as it is
    /// (downcast it to the transport's own error type for its kind).
    #[error(transparent)]
    Transport(Box<dyn std::error::Error + Send + Sync + 'static>),
}

/// A POSIX shell on some machine: a VM console, the local host, ssh.
///
/// Implementations run `command` with `sh` semantics as root (or the user the
/// channel logs in as) and return its exact output and status. Output is
/// binary-safe: the collector streams tar archives through it.
pub trait Shell {
    /// Name of the machine, for messages ("server", "localhost", "ssh:host").
    fn name(&self) -> &str;

    /// Runs `command` and waits for it, at most `timeout`.
    fn run(&self, command: &str, timeout: Duration) -> Result<Output, ShellError>;
}

impl<S: Shell + ?Sized> Shell for &S {
    fn name(&self) -> &str {
        (**self).name()
    }

    fn run(&self, command: &str, timeout: Duration) -> Result<Output, ShellError> {
        (**self).run(command, timeout)
    }
}

/// Quotes `s` for a POSIX shell, so it is passed as one literal word.
pub fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+=:,@%".contains(&b))
    {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn quotes_only_when_needed() {
        assert_eq!(quote("/a/b.gcda"), "/a/b.gcda");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("$(rm -rf /)"), "'$(rm -rf /)'");
    }
}
