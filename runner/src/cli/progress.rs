//! Live progress on stderr: drawn when stderr is a terminal that can take
//! it (`TERM` set and not `dumb`) and `--no-progress` was not given;
//! otherwise the plain timestamped lines.

use std::io::IsTerminal as _;
use std::sync::mpsc::Receiver;
use std::sync::OnceLock;
use std::thread::JoinHandle;

use covnet_runner::events::live::{Hold, Live};
use covnet_runner::events::{RunEvent, TerminalReporter};

use super::tty;

/// The live area of stderr, once a command made one.
static STDERR: OnceLock<Live> = OnceLock::new();

/// Whether to draw live progress on a stderr that `is_tty` or not, whose
/// terminal type is `term`.
pub fn wanted(no_progress: bool, is_tty: bool, term: Option<&str>) -> bool {
    !no_progress && is_tty && term.is_some_and(|t| !t.is_empty() && t != "dumb")
}

/// The live area of stderr, when live progress is wanted.
pub fn stderr(no_progress: bool) -> Option<Live> {
    let term = std::env::var("TERM").ok();
    if !wanted(
        no_progress,
        std::io::stderr().is_terminal(),
        term.as_deref(),
    ) {
        return None;
    }
    let live = STDERR
        .get_or_init(|| Live::new(std::io::stderr(), || tty::window_size(libc::STDERR_FILENO)));
    Some(live.clone())
}

/// Prints `line` on stderr, above the live lines when there are some.
pub fn eprintln(line: &str) {
    match STDERR.get() {
        Some(live) => {
            let _ = live.println(line);
        }
        None => std::eprintln!("{line}"),
    }
}

/// Keeps the live lines of stderr, if any, off the terminal while the
/// returned hold lives (output to stdout, which shares the terminal).
pub fn hold() -> Option<Hold> {
    STDERR.get().map(Live::hold)
}

/// Renders `events` on stderr on a thread of its own: live progress
/// unless `no_progress` (or stderr is no terminal), plain lines otherwise.
pub fn spawn_reporter(
    no_progress: bool,
    show_console: bool,
    events: Receiver<RunEvent>,
) -> JoinHandle<()> {
    match stderr(no_progress) {
        Some(live) => TerminalReporter::live(live.slot("", false), show_console).spawn(events),
        None => TerminalReporter::new(std::io::stderr(), show_console).spawn(events),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_only_on_a_capable_terminal_unless_turned_off() {
        assert!(wanted(false, true, Some("xterm-256color")));
        assert!(!wanted(true, true, Some("xterm-256color")), "--no-progress");
        assert!(!wanted(false, false, Some("xterm")), "not a terminal");
        assert!(!wanted(false, true, Some("dumb")), "TERM=dumb");
        assert!(!wanted(false, true, Some("")), "TERM empty");
        assert!(!wanted(false, true, None), "TERM unset");
    }
}
