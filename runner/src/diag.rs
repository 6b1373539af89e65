//! Diagnostics: notices, warnings and errors the runner has to tell the
//! user about but that do not stop anything (a stale run directory
//! removed, a process still running when dropped, a pcap that could not
//! be written).
//!
//! The library never prints. Where a run's event stream is at hand a
//! [`Diagnostic`] travels in it (`RunEvent::Notice`); where it is not
//! (`Drop` impls, background threads, process-wide helpers) it goes to
//! the process-wide sink of this module, which the binary installs with
//! [`set_sink`] (the `covnet` CLI forwards it into the run's events or to
//! stderr). Before a sink is installed, diagnostics are kept (up to
//! [`PENDING_LIMIT`]) and handed to the first sink.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

/// How much a diagnostic matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Worth knowing; nothing is lost.
    Notice,
    /// Something was lost or may be wrong (coverage missing, a cleanup
    /// that failed).
    Warning,
    /// Part of the result is wrong or missing and the exit code says so.
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Notice => "notice",
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

/// One diagnostic: a severity and a text (which may span lines, e.g. a
/// summary followed by a hint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// How much it matters.
    pub severity: Severity,
    /// What happened, naming the machine, file or process concerned.
    pub text: String,
}

impl Diagnostic {
    /// A notice.
    pub fn notice(text: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Notice,
            text: text.into(),
        }
    }

    /// A warning.
    pub fn warning(text: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            text: text.into(),
        }
    }

    /// An error.
    pub fn error(text: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            text: text.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    /// `warning: text`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.severity, self.text)
    }
}

/// How many diagnostics are kept while no sink is installed; later ones
/// are dropped.
pub const PENDING_LIMIT: usize = 256;

type SinkFn = Arc<dyn Fn(Diagnostic) + Send + Sync>;

#[derive(Default)]
struct State {
    sink: Option<SinkFn>,
    pending: Vec<Diagnostic>,
}

fn state() -> MutexGuard<'static, State> {
    static STATE: Mutex<State> = Mutex::new(State {
        sink: None,
        pending: Vec::new(),
    });
    // A panic while holding the lock leaves plain data behind: go on.
    STATE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Hands `diagnostic` to the installed sink (or keeps it until one is).
pub fn emit(diagnostic: Diagnostic) {
    let sink = {
        let mut s = state();
        match &s.sink {
            Some(sink) => sink.clone(),
            None => {
                if s.pending.len() < PENDING_LIMIT {
                    s.pending.push(diagnostic);
                }
                return;
            }
        }
    };
    // Called without the lock: a sink may emit again.
    sink(diagnostic);
}

/// Emits a warning.
pub fn warn(text: impl Into<String>) {
    emit(Diagnostic::warning(text));
}

/// Emits a notice.
pub fn notice(text: impl Into<String>) {
    emit(Diagnostic::notice(text));
}

/// Restores the previous sink when dropped.
#[must_use = "the sink is removed again when the guard is dropped"]
pub struct SinkGuard {
    previous: Option<SinkFn>,
}

impl fmt::Debug for SinkGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SinkGuard")
    }
}

impl Drop for SinkGuard {
    fn drop(&mut self) {
        state().sink = self.previous.take();
    }
}

/// Installs `sink` for the whole process until the guard is dropped;
/// diagnostics kept so far go to it first.
pub fn set_sink(sink: impl Fn(Diagnostic) + Send + Sync + 'static) -> SinkGuard {
    let sink: SinkFn = Arc::new(sink);
    let (previous, pending) = {
        let mut s = state();
        let previous = s.sink.replace(sink.clone());
        (previous, std::mem::take(&mut s.pending))
    };
    for d in pending {
        sink(d);
    }
    SinkGuard { previous }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_until_a_sink_is_installed_then_forwarded() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        // Other tests of this binary may emit too: look for ours only.
        warn("diag-test: early");
        let guard = {
            let seen = seen.clone();
            set_sink(move |d| seen.lock().expect("lock").push(d))
        };
        notice("diag-test: late");
        drop(guard);
        warn("diag-test: after");
        let seen = seen.lock().expect("lock");
        let ours: Vec<String> = seen
            .iter()
            .filter(|d| d.text.starts_with("diag-test"))
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            ours,
            ["warning: diag-test: early", "notice: diag-test: late"]
        );
    }
}
