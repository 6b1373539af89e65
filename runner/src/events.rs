//! Run events and the terminal reporter that renders them.
//!
//! The core (network, machines, script engine) never prints: it emits
//! [`RunEvent`]s, ordered like a state machine (run start, image builds,
//! machine boots, script steps and subtests, each `*End` carrying its
//! result, run end), over an [`EventSender`]. The terminal reporter, the
//! log files and the tests all consume the same stream.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::coverage::{CollectFailure, Collected, DataFiles, ReportPaths};
use crate::diag::Diagnostic;
use crate::machine::{EventSink, MachineEvent};

pub mod live;

use live::{LiveSlot, TICK};

/// Networks up to this many machines get every machine's state by name on
/// each change; larger ones get counts per state.
const OVERVIEW_BY_NAME_MAX: usize = 16;

/// The life-cycle state of one machine, as shown by the reporter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MachineState {
    /// Declared in the spec, image not yet built.
    Pending,
    /// Its initramfs is being built.
    Building,
    /// Image built, machine not started.
    Ready,
    /// Its process was spawned, the control shell has not answered yet.
    Booting,
    /// The control shell answers.
    Running,
    /// Boot did not reach the control shell.
    Failed,
    /// Its process is gone.
    Stopped,
}

impl fmt::Display for MachineState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MachineState::Pending => "pending",
            MachineState::Building => "building",
            MachineState::Ready => "ready",
            MachineState::Booting => "booting",
            MachineState::Running => "running",
            MachineState::Failed => "failed",
            MachineState::Stopped => "stopped",
        })
    }
}

/// Something that happened during a run.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RunEvent {
    /// The run directory exists and the machines are known (spec order).
    RunStart {
        /// The run's private directory.
        run_dir: PathBuf,
        /// Machine names in spec order.
        machines: Vec<String>,
    },
    /// Building a machine's initramfs began.
    ImageStart {
        /// Machine name.
        machine: String,
    },
    /// Building a machine's initramfs ended.
    ImageEnd {
        /// Machine name.
        machine: String,
        /// Time taken, or why it failed.
        result: Result<Duration, String>,
    },
    /// An event reported by a machine backend (boot, console line, stop).
    Machine(MachineEvent),
    /// A script step (one machine operation) began.
    StepStart {
        /// Machine the step runs on, if any.
        machine: Option<String>,
        /// What the step does, e.g. ``succeed(`ls`)``.
        what: String,
    },
    /// A script step ended.
    StepEnd {
        /// Machine the step ran on, if any.
        machine: Option<String>,
        /// What the step did.
        what: String,
        /// Time taken, or why it failed.
        result: Result<Duration, String>,
    },
    /// A subtest began.
    SubtestStart {
        /// Subtest name.
        name: String,
    },
    /// A subtest ended.
    SubtestEnd {
        /// Subtest name.
        name: String,
        /// Time taken, or why it failed.
        result: Result<Duration, String>,
    },
    /// The script printed something.
    Print {
        /// The text printed.
        text: String,
    },
    /// The test script ended.
    ScriptEnd {
        /// Time taken, or why it failed.
        result: Result<Duration, String>,
    },
    /// A notice, warning or error that does not stop the run (a machine
    /// killed after a failed shutdown, a capture that failed, an unpaired
    /// `.gcda` summary, an untested GCC version, a threshold not met).
    Notice(Diagnostic),
    /// Pulling a machine's gcov data into a capture began.
    CollectStart {
        /// Capture name: the machine's, or `<machine>@<phase>`.
        capture: String,
        /// The machine.
        machine: String,
    },
    /// Pulling a machine's gcov data ended.
    CollectEnd {
        /// Capture name.
        capture: String,
        /// The machine.
        machine: String,
        /// What was pulled, or why nothing could be.
        result: Result<Collected, CollectFailure>,
    },
    /// Merging the run's captures into one coverage began.
    MergeStart {
        /// Captures to merge (failed ones included).
        captures: usize,
    },
    /// The run's captures were merged into one coverage.
    MergeEnd {
        /// Captures merged (failed ones included).
        captures: usize,
        /// Data files pulled over all captures.
        files: DataFiles,
        /// Source files in the merged coverage, or why there is none.
        result: Result<usize, String>,
    },
    /// The merged coverage's summary table (lines, functions, branches).
    CoverageSummary {
        /// The table, as the reporter formats it.
        table: String,
    },
    /// Writing the coverage reports (and the checks that go with them)
    /// began; it ends with [`RunEvent::ReportWritten`], or, when writing
    /// failed, with a notice and the run's end.
    ReportStart,
    /// The coverage reports were written.
    ReportWritten {
        /// Where each report is.
        paths: ReportPaths,
    },
    /// Everything is shut down.
    RunEnd {
        /// Total wall time.
        elapsed: Duration,
    },
}

/// The sending half of a run's event stream; cheap to clone, never blocks,
/// and silently drops events once the receiver is gone.
#[derive(Debug, Clone, Default)]
pub struct EventSender {
    tx: Option<Sender<RunEvent>>,
}

impl EventSender {
    /// A sender that discards every event.
    pub fn none() -> Self {
        EventSender { tx: None }
    }

    /// Sends one event.
    pub fn send(&self, event: RunEvent) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(event);
        }
    }

    /// A machine-backend sink forwarding into this stream as
    /// [`RunEvent::Machine`].
    pub fn machine_sink(&self) -> EventSink {
        let this = self.clone();
        EventSink::from_fn(move |ev| this.send(RunEvent::Machine(ev)))
    }
}

/// A new event stream: the sender for the core and the receiver for a
/// reporter.
pub fn channel() -> (EventSender, Receiver<RunEvent>) {
    let (tx, rx) = mpsc::channel();
    (EventSender { tx: Some(tx) }, rx)
}

/// Renders run events as terminal lines: console lines prefixed with the
/// machine name, machine state changes with a one-line overview of every
/// machine's state, steps, subtests and results; on a terminal, also the
/// long steps in progress as live lines (see [`live`]).
#[derive(Debug)]
pub struct TerminalReporter<W: Write> {
    out: W,
    started: Instant,
    states: BTreeMap<String, MachineState>,
    order: Vec<String>,
    width: usize,
    show_console: bool,
    live: Option<LiveSlot>,
}

impl TerminalReporter<LiveSlot> {
    /// A reporter printing through `slot` of a terminal's live area: the
    /// same lines as [`TerminalReporter::new`], with the steps in progress
    /// as live lines under them.
    pub fn live(slot: LiveSlot, show_console: bool) -> Self {
        let mut r = TerminalReporter::new(slot.clone(), show_console);
        r.live = Some(slot);
        r
    }
}

impl<W: Write> TerminalReporter<W> {
    /// A reporter writing to `out`; `show_console` controls whether guest
    /// console lines are echoed.
    pub fn new(out: W, show_console: bool) -> Self {
        TerminalReporter {
            out,
            started: Instant::now(),
            states: BTreeMap::new(),
            order: Vec::new(),
            width: 0,
            show_console,
            live: None,
        }
    }

    fn set_state(&mut self, machine: &str, state: MachineState) -> io::Result<()> {
        if !self.states.contains_key(machine) {
            self.order.push(machine.to_owned());
            self.width = self.width.max(machine.len());
        }
        let previous = self.states.insert(machine.to_owned(), state);
        if previous == Some(state) {
            return Ok(());
        }
        let overview = if self.order.len() <= OVERVIEW_BY_NAME_MAX {
            self.order
                .iter()
                .map(|m| {
                    let s = self.states.get(m).copied().unwrap_or(MachineState::Pending);
                    format!("{m}={s}")
                })
                .collect::<Vec<String>>()
                .join(" ")
        } else {
            self.counted_overview()
        };
        writeln!(self.out, "{} machines: {overview}", self.stamp())
    }

    /// The overview of a large network: how many machines are in each
    /// state, failed ones by name (a line per change naming all 250
    /// machines of a big spec made 4 MB of output).
    fn counted_overview(&self) -> String {
        const ORDER: [MachineState; 7] = [
            MachineState::Running,
            MachineState::Booting,
            MachineState::Ready,
            MachineState::Building,
            MachineState::Pending,
            MachineState::Stopped,
            MachineState::Failed,
        ];
        let state = |m: &String| self.states.get(m).copied().unwrap_or(MachineState::Pending);
        let mut parts: Vec<String> = ORDER
            .iter()
            .filter_map(|&s| {
                let n = self.order.iter().filter(|m| state(m) == s).count();
                (n > 0).then(|| format!("{n} {s}"))
            })
            .collect();
        let failed: Vec<&str> = self
            .order
            .iter()
            .filter(|m| state(m) == MachineState::Failed)
            .map(String::as_str)
            .collect();
        if !failed.is_empty() {
            parts.push(format!("failed: {}", failed.join(" ")));
        }
        format!("{} of {}", parts.join(", "), self.order.len())
    }

    fn stamp(&self) -> String {
        format!("[{:>6.2}s]", self.started.elapsed().as_secs_f64())
    }

    /// Renders one event.
    pub fn handle(&mut self, event: &RunEvent) -> io::Result<()> {
        match event {
            RunEvent::RunStart { run_dir, machines } => {
                writeln!(
                    self.out,
                    "{} run directory {}",
                    self.stamp(),
                    run_dir.display()
                )?;
                for m in machines {
                    self.set_state(m, MachineState::Pending)?;
                }
            }
            RunEvent::ImageStart { machine } => self.set_state(machine, MachineState::Building)?,
            RunEvent::ImageEnd { machine, result } => match result {
                Ok(_) => self.set_state(machine, MachineState::Ready)?,
                Err(e) => {
                    writeln!(self.out, "{} {machine}: image failed: {e}", self.stamp())?;
                    self.set_state(machine, MachineState::Failed)?;
                }
            },
            RunEvent::Machine(ev) => match ev {
                MachineEvent::ConsoleLine { machine, line } => {
                    if self.show_console {
                        let w = self.width.max(machine.len());
                        writeln!(self.out, "{machine:>w$} | {line}")?;
                    }
                }
                MachineEvent::Booting { machine, .. } => {
                    writeln!(self.out, "{} {ev}", self.stamp())?;
                    self.set_state(machine, MachineState::Booting)?;
                }
                MachineEvent::Ready { machine, .. } => {
                    writeln!(self.out, "{} {ev}", self.stamp())?;
                    self.set_state(machine, MachineState::Running)?;
                }
                MachineEvent::BootFailed { machine, .. } => {
                    writeln!(self.out, "{} {ev}", self.stamp())?;
                    self.set_state(machine, MachineState::Failed)?;
                }
                MachineEvent::Stopped { machine, .. } => {
                    writeln!(self.out, "{} {ev}", self.stamp())?;
                    self.set_state(machine, MachineState::Stopped)?;
                }
                // Variants the backend may add later render with their Display.
                #[allow(unreachable_patterns)]
                other => writeln!(self.out, "{} {other}", self.stamp())?,
            },
            RunEvent::StepStart { machine, what } => {
                let who = machine.as_deref().unwrap_or("script");
                writeln!(self.out, "{} {who}: {what}", self.stamp())?;
            }
            RunEvent::StepEnd {
                machine,
                what,
                result,
            } => {
                if let Err(e) = result {
                    let who = machine.as_deref().unwrap_or("script");
                    writeln!(self.out, "{} {who}: {what} FAILED: {e}", self.stamp())?;
                }
            }
            RunEvent::SubtestStart { name } => {
                writeln!(self.out, "{} subtest `{name}`", self.stamp())?;
            }
            RunEvent::SubtestEnd { name, result } => match result {
                Ok(d) => writeln!(
                    self.out,
                    "{} subtest `{name}` passed ({:.2}s)",
                    self.stamp(),
                    d.as_secs_f64()
                )?,
                Err(e) => writeln!(self.out, "{} subtest `{name}` FAILED: {e}", self.stamp())?,
            },
            RunEvent::Print { text } => writeln!(self.out, "{} {text}", self.stamp())?,
            RunEvent::ScriptEnd { result } => match result {
                Ok(d) => writeln!(
                    self.out,
                    "{} script passed ({:.2}s)",
                    self.stamp(),
                    d.as_secs_f64()
                )?,
                Err(_) => writeln!(self.out, "{} script FAILED", self.stamp())?,
            },
            RunEvent::Notice(d) => writeln!(self.out, "{d}")?,
            // Starts of steps whose end is told: nothing to print.
            RunEvent::CollectStart { .. } | RunEvent::MergeStart { .. } | RunEvent::ReportStart => {}
            RunEvent::CollectEnd {
                capture, result, ..
            } => {
                // A failed capture is told once, as a notice, by whoever
                // collected it.
                if let Ok(p) = result {
                    writeln!(
                        self.out,
                        "{} {capture}: collected {}, {} bytes",
                        self.stamp(),
                        p.kinds(),
                        p.bytes()
                    )?;
                }
            }
            RunEvent::MergeEnd {
                captures,
                files,
                result,
            } => match result {
                Ok(sources) => writeln!(
                    self.out,
                    "{} coverage: merged {files} from {captures} capture(s) into {sources} source file(s)",
                    self.stamp()
                )?,
                Err(_) => writeln!(
                    self.out,
                    "\ncoverage: {files} pulled from {captures} capture(s)"
                )?,
            },
            RunEvent::CoverageSummary { table } => writeln!(self.out, "\n{table}")?,
            RunEvent::ReportWritten { paths } => {
                writeln!(self.out, "coverage report: {}", paths.html.display())?;
                writeln!(self.out, "lcov tracefile: {}", paths.lcov.display())?;
            }
            RunEvent::RunEnd { elapsed } => writeln!(
                self.out,
                "{} all machines shut down, run took {:.2}s",
                self.stamp(),
                elapsed.as_secs_f64()
            )?,
        }
        if let Some(live) = &self.live {
            live.track(event);
        }
        self.out.flush()
    }

    /// Renders events until every sender is dropped, on its own thread.
    pub fn spawn(mut self, events: Receiver<RunEvent>) -> JoinHandle<()>
    where
        W: Send + 'static,
    {
        std::thread::spawn(move || loop {
            // Live lines are redrawn every tick while no event comes.
            let written = match &self.live {
                Some(live) => match events.recv_timeout(TICK) {
                    Ok(ev) => self.handle(&ev),
                    Err(RecvTimeoutError::Timeout) => live.tick(),
                    Err(RecvTimeoutError::Disconnected) => return,
                },
                None => match events.recv() {
                    Ok(ev) => self.handle(&ev),
                    Err(_) => return,
                },
            };
            if written.is_err() {
                // The terminal is gone (closed pipe): keep draining so
                // senders never notice, but stop writing.
                while events.recv().is_ok() {}
                return;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(events: &[RunEvent]) -> String {
        let mut buf = Vec::new();
        let mut r = TerminalReporter::new(&mut buf, true);
        for ev in events {
            r.handle(ev).expect("write to vec");
        }
        String::from_utf8(buf).expect("utf-8")
    }

    #[test]
    fn console_lines_are_prefixed_and_states_overviewed() {
        let text = render(&[
            RunEvent::RunStart {
                run_dir: "/tmp/r".into(),
                machines: vec!["server".into(), "c".into()],
            },
            RunEvent::Machine(MachineEvent::Booting {
                machine: "c".into(),
                accel: "tcg".into(),
            }),
            RunEvent::Machine(MachineEvent::ConsoleLine {
                machine: "c".into(),
                line: "hello".into(),
            }),
            RunEvent::Machine(MachineEvent::Ready {
                machine: "c".into(),
                boot_time: Duration::from_millis(1500),
            }),
        ]);
        assert!(
            text.contains("machines: server=pending c=booting"),
            "{text}"
        );
        assert!(text.contains("     c | hello"), "{text}");
        assert!(
            text.contains("machines: server=pending c=running"),
            "{text}"
        );
    }

    #[test]
    fn a_large_network_is_overviewed_by_counts() {
        let names: Vec<String> = (1..=20).map(|i| format!("m{i}")).collect();
        let mut events = vec![RunEvent::RunStart {
            run_dir: "/tmp/r".into(),
            machines: names.clone(),
        }];
        for m in names.iter().take(3) {
            events.push(RunEvent::Machine(MachineEvent::Booting {
                machine: m.clone(),
                accel: "tcg".into(),
            }));
        }
        events.push(RunEvent::Machine(MachineEvent::Ready {
            machine: "m2".into(),
            boot_time: Duration::from_millis(10),
        }));
        let text = render(&events);
        let last = text
            .lines()
            .rfind(|l| l.contains(" machines: "))
            .expect("an overview line");
        assert!(
            last.ends_with("machines: 1 running, 2 booting, 17 pending of 20"),
            "{text}"
        );
        assert!(!text.contains("m20="), "{text}");
    }

    #[test]
    fn failures_are_shown_with_reason() {
        let text = render(&[
            RunEvent::StepEnd {
                machine: Some("server".into()),
                what: "succeed(`false`)".into(),
                result: Err("exit status 1".into()),
            },
            RunEvent::SubtestEnd {
                name: "fetch".into(),
                result: Err("boom".into()),
            },
        ]);
        assert!(
            text.contains("server: succeed(`false`) FAILED: exit status 1"),
            "{text}"
        );
        assert!(text.contains("subtest `fetch` FAILED: boom"), "{text}");
    }

    #[test]
    fn coverage_steps_and_notices_are_rendered() {
        let text = render(&[
            RunEvent::CollectStart {
                capture: "server".into(),
                machine: "server".into(),
            },
            RunEvent::CollectEnd {
                capture: "server".into(),
                machine: "server".into(),
                result: Ok(Collected {
                    pulled: covnet_collector::Pulled {
                        files: vec!["a.gcda".into(), "b.gcda".into(), "c.gcda".into()],
                        bytes: 3000,
                        ..Default::default()
                    },
                    ..Collected::default()
                }),
            },
            RunEvent::CollectEnd {
                capture: "client".into(),
                machine: "client".into(),
                result: Ok(Collected {
                    pulled: covnet_collector::Pulled {
                        files: vec!["llvm/1-2_0.profraw".into(), "llvm/3-2_0.profraw".into()],
                        bytes: 900,
                        ..Default::default()
                    },
                    ..Collected::default()
                }),
            },
            RunEvent::MergeEnd {
                captures: 2,
                files: DataFiles {
                    gcda: 4,
                    profraw: 0,
                },
                result: Err("nothing paired".into()),
            },
            RunEvent::Notice(Diagnostic::notice("gcc 13.1 is untested")),
            RunEvent::ReportWritten {
                paths: ReportPaths {
                    html: "/o/report/index.html".into(),
                    lcov: "/o/coverage.info".into(),
                    lcov_per_capture: "/o/coverage-per-machine.info".into(),
                    cobertura: "/o/cobertura.xml".into(),
                    json: "/o/coverage.json".into(),
                },
            },
        ]);
        assert!(
            text.contains("server: collected 3 .gcda file(s), 3000 bytes"),
            "{text}"
        );
        assert!(
            text.contains("client: collected 2 .profraw file(s), 900 bytes"),
            "{text}"
        );
        assert!(
            text.contains("\ncoverage: 4 .gcda file(s) pulled from 2 capture(s)\n"),
            "{text}"
        );
        assert!(text.contains("notice: gcc 13.1 is untested\n"), "{text}");
        assert!(
            text.contains(
                "coverage report: /o/report/index.html\nlcov tracefile: /o/coverage.info\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn sender_without_receiver_never_fails() {
        let (tx, rx) = channel();
        drop(rx);
        tx.send(RunEvent::Print { text: "x".into() });
        EventSender::none().send(RunEvent::Print { text: "y".into() });
        let sink = tx.machine_sink();
        sink.emit(MachineEvent::ConsoleLine {
            machine: "m".into(),
            line: "l".into(),
        });
    }

    #[test]
    fn machine_sink_forwards_into_stream() {
        let (tx, rx) = channel();
        tx.machine_sink().emit(MachineEvent::Stopped {
            machine: "m".into(),
            how: "killed".into(),
        });
        match rx.recv().expect("event") {
            RunEvent::Machine(MachineEvent::Stopped { machine, .. }) => assert_eq!(machine, "m"),
            other => panic!("unexpected {other:?}"),
        }
    }

    /// A fake terminal: what is written to it, shared.
    #[derive(Clone, Default)]
    struct Tty(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for Tty {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("tty").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Tty {
        fn bytes(&self) -> Vec<u8> {
            self.0.lock().expect("tty").clone()
        }

        /// The screen after every byte written so far: a tiny terminal
        /// knowing `\r`, `\n`, cursor up (`ESC [ n A`) and erase to the
        /// end of the screen (`ESC [ J`), the only controls live lines use.
        fn screen(&self) -> Vec<String> {
            let text = String::from_utf8(self.bytes()).expect("utf-8");
            let mut lines: Vec<Vec<char>> = vec![Vec::new()];
            let (mut row, mut col) = (0usize, 0usize);
            let mut chars = text.chars().peekable();
            while let Some(c) = chars.next() {
                match c {
                    '\r' => col = 0,
                    '\n' => {
                        row += 1;
                        col = 0;
                    }
                    '\x1b' => {
                        assert_eq!(chars.next(), Some('['), "{text:?}");
                        let mut n = String::new();
                        while let Some(d) = chars.next_if(char::is_ascii_digit) {
                            n.push(d);
                        }
                        match chars.next() {
                            Some('A') => {
                                let n: usize = n.parse().unwrap_or(1);
                                row = row.checked_sub(n).expect("cursor above the screen");
                            }
                            Some('J') => {
                                lines.truncate(row + 1);
                                if let Some(l) = lines.get_mut(row) {
                                    l.truncate(col);
                                }
                            }
                            other => panic!("unexpected control {other:?} in {text:?}"),
                        }
                    }
                    c => {
                        while lines.len() <= row {
                            lines.push(Vec::new());
                        }
                        let line = &mut lines[row];
                        while line.len() <= col {
                            line.push(' ');
                        }
                        line[col] = c;
                        col += 1;
                    }
                }
                while lines.len() <= row {
                    lines.push(Vec::new());
                }
            }
            if lines.last().is_some_and(Vec::is_empty) {
                lines.pop();
            }
            lines.into_iter().map(|l| l.into_iter().collect()).collect()
        }
    }

    /// Lines with every `[  1.23s]` stamp made equal.
    fn unstamped<'a>(lines: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let stamp = regex::Regex::new(r"\[\s*\d+\.\d\ds\]").expect("regex");
        lines
            .into_iter()
            .map(|l| stamp.replace_all(l, "[stamp]").into_owned())
            .collect()
    }

    fn is_live(line: &str) -> bool {
        line.chars().any(|c| live::SPINNER.contains(&c))
    }

    /// A run's events, from the start to the end, with coverage.
    fn whole_run() -> Vec<RunEvent> {
        let step = |what: &str| (Some("a".to_owned()), what.to_owned());
        let (m, what) = step("wait_for_open_port(80)");
        vec![
            RunEvent::RunStart {
                run_dir: "/tmp/r".into(),
                machines: vec!["a".into()],
            },
            RunEvent::ImageStart {
                machine: "a".into(),
            },
            RunEvent::ImageEnd {
                machine: "a".into(),
                result: Ok(Duration::from_secs(1)),
            },
            RunEvent::Machine(MachineEvent::Booting {
                machine: "a".into(),
                accel: "tcg".into(),
            }),
            RunEvent::Machine(MachineEvent::ConsoleLine {
                machine: "a".into(),
                line: "booted".into(),
            }),
            RunEvent::Machine(MachineEvent::Ready {
                machine: "a".into(),
                boot_time: Duration::from_secs(2),
            }),
            RunEvent::SubtestStart { name: "web".into() },
            RunEvent::StepStart {
                machine: m.clone(),
                what: what.clone(),
            },
            RunEvent::StepEnd {
                machine: m,
                what,
                result: Ok(Duration::from_secs(1)),
            },
            RunEvent::SubtestEnd {
                name: "web".into(),
                result: Ok(Duration::from_secs(1)),
            },
            RunEvent::ScriptEnd {
                result: Ok(Duration::from_secs(3)),
            },
            RunEvent::CollectStart {
                capture: "a".into(),
                machine: "a".into(),
            },
            RunEvent::CollectEnd {
                capture: "a".into(),
                machine: "a".into(),
                result: Ok(Collected::default()),
            },
            RunEvent::MergeStart { captures: 1 },
            RunEvent::MergeEnd {
                captures: 1,
                files: DataFiles::default(),
                result: Ok(2),
            },
            RunEvent::ReportStart,
            RunEvent::CoverageSummary {
                table: "lines 100%".into(),
            },
            RunEvent::ReportWritten {
                paths: ReportPaths {
                    html: "/o/report/index.html".into(),
                    lcov: "/o/coverage.info".into(),
                    lcov_per_capture: "/o/coverage-per-machine.info".into(),
                    cobertura: "/o/cobertura.xml".into(),
                    json: "/o/coverage.json".into(),
                },
            },
            RunEvent::Machine(MachineEvent::Stopped {
                machine: "a".into(),
                how: "exit status: 0".into(),
            }),
            RunEvent::RunEnd {
                elapsed: Duration::from_secs(5),
            },
        ]
    }

    /// The live line each event of [`whole_run`] leaves, if any.
    fn live_after(ev: &RunEvent) -> Option<&'static str> {
        match ev {
            RunEvent::ImageStart { .. } => Some("a: building image"),
            RunEvent::Machine(MachineEvent::Booting { .. })
            | RunEvent::Machine(MachineEvent::ConsoleLine { .. }) => Some("a: booting"),
            RunEvent::SubtestStart { .. } => Some("subtest `web`"),
            RunEvent::StepStart { .. } => Some("a: wait_for_open_port(80)"),
            RunEvent::StepEnd { .. } => Some("subtest `web`"),
            RunEvent::CollectStart { .. } => Some("a: pulling coverage"),
            RunEvent::MergeStart { .. } => Some("coverage: merging 1 capture(s)"),
            RunEvent::ReportStart | RunEvent::CoverageSummary { .. } => {
                Some("coverage: writing reports")
            }
            _ => None,
        }
    }

    #[test]
    fn live_lines_follow_the_steps_and_leave_the_plain_lines() {
        let tty = Tty::default();
        let live = live::Live::new(tty.clone(), || Some((24, 100)));
        let slot = live.slot("", false);
        let mut r = TerminalReporter::live(slot.clone(), true);
        for ev in whole_run() {
            r.handle(&ev).expect("write to the fake tty");
            let screen = tty.screen();
            let live: Vec<&String> = screen.iter().filter(|l| is_live(l)).collect();
            match live_after(&ev) {
                Some(label) => {
                    // The innermost step is the last live line, at the bottom.
                    let last = screen.last().expect("a screen");
                    assert!(is_live(last), "after {ev:?}: {screen:#?}");
                    assert!(
                        last.ends_with(&format!("s {label}")),
                        "after {ev:?}: {screen:#?}"
                    );
                    assert!(live.len() <= 2, "after {ev:?}: {screen:#?}");
                }
                None => assert!(live.is_empty(), "after {ev:?}: {screen:#?}"),
            }
        }
        drop((r, slot));
        let raw = String::from_utf8(tty.bytes()).expect("utf-8");
        assert!(
            raw.contains("\x1b[J"),
            "live lines were never erased: {raw:?}"
        );
        // Erased, the live lines leave exactly the plain lines.
        let plain = render(&whole_run());
        let screen = tty.screen();
        assert_eq!(
            unstamped(screen.iter().map(String::as_str)),
            unstamped(plain.lines())
        );
    }

    #[test]
    fn a_live_line_shows_the_time_so_far() {
        let tty = Tty::default();
        let live = live::Live::new(tty.clone(), || Some((24, 100)));
        let slot = live.slot("", false);
        let mut r = TerminalReporter::live(slot.clone(), false);
        r.handle(&RunEvent::StepStart {
            machine: Some("a".into()),
            what: "wait_until_succeeds(`true`)".into(),
        })
        .expect("write");
        let secs = |screen: Vec<String>| -> f64 {
            let last = screen.last().cloned().unwrap_or_default();
            let word = last.split(' ').nth(1).unwrap_or_default();
            word.strip_suffix('s')
                .and_then(|w| w.parse().ok())
                .unwrap_or_else(|| panic!("no elapsed time in {last:?}"))
        };
        let first = secs(tty.screen());
        std::thread::sleep(live::TICK * 2);
        slot.tick().expect("tick");
        // Only lower bounds: the step is at least as old as the sleep.
        let later = secs(tty.screen());
        assert!(later >= 0.2 && later >= first, "{:?}", tty.screen());
        let frames = tty.screen().join("\n");
        assert!(
            frames.ends_with("a: wait_until_succeeds(`true`)"),
            "{frames}"
        );
    }

    #[test]
    fn suites_get_one_live_line_per_spec_and_prefixed_lines() {
        let tty = Tty::default();
        let live = live::Live::new(tty.clone(), || Some((24, 100)));
        let suite = TerminalReporter::live(live.slot("[suite] ", true), false);
        let mut specs: Vec<_> = ["[one] ", "[two] "]
            .into_iter()
            .map(|p| TerminalReporter::live(live.slot(p, true), false))
            .collect();
        for r in &mut specs {
            for ev in whole_run().iter().take(8) {
                r.handle(ev).expect("write");
            }
        }
        let screen = tty.screen();
        let live_lines: Vec<&String> = screen.iter().filter(|l| is_live(l)).collect();
        assert_eq!(live_lines.len(), 2, "{screen:#?}");
        assert!(live_lines[0].starts_with("[one] "), "{screen:#?}");
        assert!(
            live_lines[1].starts_with("[two] ") && live_lines[1].ends_with(" (+1 more)"),
            "{screen:#?}"
        );
        drop(specs);
        drop(suite);
        let screen = tty.screen();
        assert!(!screen.iter().any(|l| is_live(l)), "{screen:#?}");
        let plain = render(&whole_run()[..8]);
        let mut expected = Vec::new();
        for p in ["[one] ", "[two] "] {
            expected.extend(
                plain
                    .lines()
                    .filter(|l| !l.contains(" | "))
                    .map(|l| format!("{p}{l}")),
            );
        }
        assert_eq!(
            unstamped(screen.iter().map(String::as_str)),
            unstamped(expected.iter().map(String::as_str))
        );
    }

    #[test]
    fn live_lines_fit_the_terminal() {
        let tty = Tty::default();
        let live = live::Live::new(tty.clone(), || Some((6, 30)));
        let mut r = TerminalReporter::live(live.slot("", false), false);
        for i in 0..12 {
            r.handle(&RunEvent::ImageStart {
                machine: format!("machine-with-a-long-name-{i}"),
            })
            .expect("write");
        }
        let screen = tty.screen();
        let live_lines: Vec<&String> = screen.iter().filter(|l| is_live(l)).collect();
        assert_eq!(live_lines.len(), 3, "{screen:#?}");
        assert_eq!(
            screen.last().map(String::as_str),
            Some("… and 9 more step(s)"),
            "{screen:#?}"
        );
        // The live lines never wrap (the plain lines above may).
        assert!(
            screen.iter().rev().take(4).all(|l| l.chars().count() < 30),
            "{screen:#?}"
        );
    }

    #[test]
    fn a_hold_keeps_live_lines_off_until_dropped() {
        let tty = Tty::default();
        let live = live::Live::new(tty.clone(), || Some((24, 100)));
        let slot = live.slot("", false);
        let mut r = TerminalReporter::live(slot.clone(), false);
        r.handle(&RunEvent::ImageStart {
            machine: "a".into(),
        })
        .expect("write");
        assert!(tty.screen().last().is_some_and(|l| is_live(l)));
        let hold = live.hold();
        assert!(
            !tty.screen().iter().any(|l| is_live(l)),
            "{:?}",
            tty.screen()
        );
        r.handle(&RunEvent::Print { text: "hi".into() })
            .expect("write");
        slot.tick().expect("tick");
        let screen = tty.screen();
        assert!(!screen.iter().any(|l| is_live(l)), "{screen:?}");
        assert!(
            screen.last().is_some_and(|l| l.ends_with("] hi")),
            "{screen:?}"
        );
        drop(hold);
        assert!(tty.screen().last().is_some_and(|l| is_live(l)));
    }
}
