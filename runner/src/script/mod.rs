//! Rhai test scripts.
//!
//! The script sees every machine as a variable named after it (`server`,
//! `client`; a name that is not a Rhai identifier is reachable with
//! `machine("web-1")`) with the [`Node`] operations as methods, plus
//! `start_all()`, `subtest(name, || { ... })`, `sleep(secs)` and `print`.
//! Timeouts are seconds or duration strings (`"30s"`). A failed step stops
//! the script (or, with `keep_going`, only its subtest) and is reported as
//! a [`StepError`] carrying the script line and column.
//!
//! ```no_run
//! # use covnet_runner::script::{run_script, ScriptOptions};
//! # fn demo(nodes: &[covnet_runner::script::driver::Node]) {
//! let report = run_script(nodes, r#"
//!     start_all();
//!     server.wait_for_open_port(80);
//!     client.succeed("wget -O- http://server/");
//! "#, &ScriptOptions::default());
//! assert!(report.result.is_ok());
//! # }
//! ```

mod api;
pub mod driver;
mod error;
pub mod junit;
mod python;

use std::fmt;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rhai::{
    Dynamic, Engine, EvalAltResult, ImmutableString, NativeCallContext, Position, Scope, INT,
};

use crate::events::RunEvent;
use crate::script::driver::{
    parse_timeout, Node, RunContext, ScriptPosition, StepError, StepErrorKind,
};
use crate::script::junit::{Outcome, TestCase};
pub use crate::spec::ScriptLanguage;

/// How to run a script.
#[derive(Debug, Clone)]
pub struct ScriptOptions {
    /// Time limit of the whole script; when it passes, every machine is
    /// killed and the script fails.
    pub timeout: Duration,
    /// A failed subtest is recorded and the script goes on with the next
    /// statement (the script still fails in the end).
    pub keep_going: bool,
    /// The script's file, named in positions (`None`: inline in the spec).
    pub file: Option<PathBuf>,
    /// How `collect_coverage()` collects (`None`: coverage is off).
    pub coverage: Option<ScriptCoverage>,
    /// What the script is written in.
    pub language: ScriptLanguage,
}

/// Collects every machine's coverage as one named phase; returns a line
/// for the log or why it failed.
pub type CollectHook = Arc<dyn Fn(&str) -> Result<String, String> + Send + Sync>;

/// The script's coverage operations.
#[derive(Clone)]
pub struct ScriptCoverage {
    /// Called by `collect_coverage(phase)`.
    pub collect: CollectHook,
    /// Called with a machine's name before `m.shutdown()` powers it off
    /// (its data lives in guest memory).
    pub before_shutdown: CollectHook,
    /// Called with a machine's name before `m.reboot()`: its data so far,
    /// as a phase of its own, without leaving it out of the final
    /// collection.
    pub before_reboot: CollectHook,
    /// Also collect after every subtest, as a phase named after it.
    pub per_subtest: bool,
}

impl fmt::Debug for ScriptCoverage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScriptCoverage")
            .field("per_subtest", &self.per_subtest)
            .finish_non_exhaustive()
    }
}

impl Default for ScriptOptions {
    fn default() -> Self {
        ScriptOptions {
            timeout: crate::spec::DEFAULT_TEST_TIMEOUT,
            keep_going: false,
            file: None,
            coverage: None,
            language: ScriptLanguage::Rhai,
        }
    }
}

/// Why a script did not pass.
#[derive(Debug)]
#[non_exhaustive]
pub enum ScriptFailure {
    /// The script does not parse.
    Parse {
        /// Rhai's message.
        message: String,
        /// Where.
        position: Option<ScriptPosition>,
    },
    /// A machine step failed.
    Step(StepError),
    /// The script itself failed: `throw`, a type error, an unknown
    /// function or variable.
    Script {
        /// Rhai's message.
        message: String,
        /// Where.
        position: Option<ScriptPosition>,
    },
    /// The script ran past its time limit.
    TimedOut {
        /// The limit.
        timeout: Duration,
    },
    /// The run was interrupted (Ctrl-C).
    Interrupted {
        /// Why.
        reason: String,
    },
    /// With `keep_going`: these subtests failed (each reported when it did).
    Subtests {
        /// Their names, in order.
        failed: Vec<String>,
    },
    /// A failure in a Python script, with the Python traceback.
    Traced {
        /// The failure itself.
        failure: Box<ScriptFailure>,
        /// Python's traceback, as `traceback.format_exception` gives it.
        traceback: String,
    },
    /// The script's interpreter (`python3`) could not run it to its end:
    /// missing, killed, or gone without reporting.
    Interpreter {
        /// What happened, with the tail of its output.
        detail: String,
    },
}

impl ScriptFailure {
    /// True when the failure is the infrastructure's (exit code 1) rather
    /// than the test's (exit code 2).
    pub fn is_infrastructure(&self) -> bool {
        match self {
            ScriptFailure::Step(e) => e.is_infrastructure(),
            ScriptFailure::Interrupted { .. } | ScriptFailure::Interpreter { .. } => true,
            ScriptFailure::Traced { failure, .. } => failure.is_infrastructure(),
            _ => false,
        }
    }

    /// The failed step's position, or the script error's.
    pub fn position(&self) -> Option<ScriptPosition> {
        match self {
            ScriptFailure::Step(e) => e.position,
            ScriptFailure::Parse { position, .. } | ScriptFailure::Script { position, .. } => {
                *position
            }
            ScriptFailure::Traced { failure, .. } => failure.position(),
            _ => None,
        }
    }
}

impl fmt::Display for ScriptFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at =
            |p: &Option<ScriptPosition>| p.map(|p| format!(" at script {p}")).unwrap_or_default();
        match self {
            ScriptFailure::Parse { message, position } => {
                write!(f, "test script does not parse{}: {message}", at(position))
            }
            ScriptFailure::Step(e) => write!(f, "{e}"),
            ScriptFailure::Script { message, position } => {
                write!(f, "test script failed{}: {message}", at(position))
            }
            ScriptFailure::TimedOut { timeout } => write!(
                f,
                "test script did not finish within its timeout of {}s; all machines were killed\n  (hint: raise `timeout` in the spec's [test] table)",
                timeout.as_secs_f64()
            ),
            ScriptFailure::Interrupted { reason } => write!(f, "test run interrupted: {reason}"),
            ScriptFailure::Subtests { failed } => {
                write!(f, "{} subtest(s) failed: {}", failed.len(), failed.join(", "))
            }
            ScriptFailure::Traced { failure, traceback } => {
                write!(f, "{failure}\n  python traceback:")?;
                for line in traceback.trim_end().lines() {
                    write!(f, "\n  | {line}")?;
                }
                Ok(())
            }
            ScriptFailure::Interpreter { detail } => {
                write!(f, "the test script's interpreter failed: {detail}")
            }
        }
    }
}

/// What a script run produced.
#[derive(Debug)]
pub struct ScriptReport {
    /// Passed, or why not.
    pub result: Result<(), ScriptFailure>,
    /// One case per subtest, then one named `script` for the whole run.
    pub cases: Vec<TestCase>,
    /// Wall time of the script.
    pub elapsed: Duration,
}

/// A step failure as the script sees it (in `catch`): a handle to the full
/// [`StepError`] kept on the Rust side.
#[derive(Debug, Clone)]
struct StepFailureRef {
    id: usize,
    summary: String,
}

struct State {
    ctx: Arc<RunContext>,
    nodes: Vec<Node>,
    keep_going: bool,
    coverage: Option<ScriptCoverage>,
    failures: Mutex<Vec<Option<StepError>>>,
    cases: Mutex<Vec<TestCase>>,
    failed_subtests: Mutex<Vec<String>>,
    /// What `print` wrote, per open case: the script's own at the bottom,
    /// one more for each subtest under way.
    output: Mutex<Vec<String>>,
    /// A subtest recorded the failure that ends the script.
    failure_recorded: std::sync::atomic::AtomicBool,
}

fn script_position(pos: Position) -> Option<ScriptPosition> {
    pos.line().map(|line| ScriptPosition {
        line,
        column: pos.position().unwrap_or(1),
    })
}

impl State {
    /// With coverage on, pulls a machine's data before a graceful shutdown
    /// loses it.
    fn collect_before_shutdown(&self, node: &Node) -> Result<(), StepError> {
        let Some(cov) = &self.coverage else {
            return Ok(());
        };
        if !node.is_running() {
            return Ok(());
        }
        (cov.before_shutdown)(node.name())
            .map(|_| ())
            .map_err(|detail| StepError {
                machine: Some(node.name().to_owned()),
                step: "shutdown()".to_owned(),
                kind: Box::new(StepErrorKind::Coverage { detail }),
                console: Vec::new(),
                position: None,
            })
    }

    /// `m.shutdown()`: coverage first (with coverage on), then a graceful
    /// power-off.
    fn shutdown(&self, node: &Node) -> Result<(), StepError> {
        self.collect_before_shutdown(node)?;
        node.shutdown()
    }

    /// `m.reboot()`: coverage of the boot that ends (with coverage on), a
    /// graceful power-off, and a boot; init starts the services again.
    fn reboot(&self, node: &Node) -> Result<(), StepError> {
        if let Some(cov) = self.coverage.as_ref().filter(|_| node.is_running()) {
            (cov.before_reboot)(node.name()).map_err(|detail| StepError {
                machine: Some(node.name().to_owned()),
                step: "reboot()".to_owned(),
                kind: Box::new(StepErrorKind::Coverage { detail }),
                console: Vec::new(),
                position: None,
            })?;
        }
        node.shutdown()?;
        node.start()
    }

    /// `collect_coverage(phase)`: every machine's data so far, as a phase.
    fn collect_coverage(&self, phase: &str) -> Result<(), StepError> {
        let step = format!("collect_coverage({phase:?})");
        let fail = |detail: String| StepError {
            machine: None,
            step: step.clone(),
            kind: Box::new(StepErrorKind::Coverage { detail }),
            console: Vec::new(),
            position: None,
        };
        let Some(cov) = &self.coverage else {
            return Err(fail(
                "coverage is off\n  (hint: run with `covnet run --coverage`)".to_owned(),
            ));
        };
        self.ctx.events.send(RunEvent::StepStart {
            machine: None,
            what: step.clone(),
        });
        let started = Instant::now();
        let result = (cov.collect)(phase);
        self.ctx.events.send(RunEvent::StepEnd {
            machine: None,
            what: step.clone(),
            result: match &result {
                Ok(_) => Ok(started.elapsed()),
                Err(e) => Err(e.clone()),
            },
        });
        result.map(|_| ()).map_err(fail)
    }

    /// Turns a step failure into a Rhai error at the call's position,
    /// keeping the full error on the Rust side.
    fn fail(&self, ctx: &NativeCallContext, mut err: StepError) -> Box<EvalAltResult> {
        let pos = ctx.call_position();
        if err.position.is_none() {
            err.position = script_position(pos);
        }
        let summary = err.summary();
        let id = self.keep_failure(err);
        EvalAltResult::ErrorRuntime(Dynamic::from(StepFailureRef { id, summary }), pos).into()
    }

    fn take_failure(&self, id: usize) -> Option<StepError> {
        self.failures
            .lock()
            .ok()
            .and_then(|mut f| f.get_mut(id).and_then(Option::take))
    }

    fn timeout(
        &self,
        ctx: &NativeCallContext,
        node: Option<&Node>,
        step: &str,
        value: &Dynamic,
    ) -> Result<Duration, Box<EvalAltResult>> {
        let value = if let Some(i) = value.clone().try_cast::<INT>() {
            TimeoutValue::Int(i)
        } else if let Some(x) = value.clone().try_cast::<rhai::FLOAT>() {
            TimeoutValue::Float(x)
        } else if let Some(s) = value.clone().try_cast::<ImmutableString>() {
            TimeoutValue::Text(s.to_string())
        } else {
            TimeoutValue::Other(format!("{value} ({})", value.type_name()))
        };
        self.timeout_value(node, step, value)
            .map_err(|e| self.fail(ctx, e))
    }

    /// A script's timeout argument as a duration, or the step's error.
    fn timeout_value(
        &self,
        node: Option<&Node>,
        step: &str,
        value: TimeoutValue,
    ) -> Result<Duration, StepError> {
        value.duration().map_err(|kind| StepError {
            machine: node.map(|n| n.name().to_owned()),
            step: step.to_owned(),
            kind: Box::new(kind),
            console: Vec::new(),
            position: None,
        })
    }

    /// A subtest begins.
    fn start_subtest(&self, name: &str) -> Instant {
        if let Ok(mut o) = self.output.lock() {
            o.push(String::new());
        }
        self.ctx.events.send(RunEvent::SubtestStart {
            name: name.to_owned(),
        });
        Instant::now()
    }

    /// A subtest ended, with `failure` if it failed: per-subtest coverage,
    /// its JUnit case, its event, and whether the failure goes on up.
    fn end_subtest(
        &self,
        name: &str,
        started: Instant,
        failure: Option<ScriptFailure>,
    ) -> SubtestEnd {
        let elapsed = started.elapsed();
        if self.coverage.as_ref().is_some_and(|c| c.per_subtest) {
            // What the subtest ran is its own capture, failed or not.
            if let Err(e) = self.collect_coverage(name) {
                if failure.is_none() {
                    return SubtestEnd::CoverageFailed(e);
                }
            }
        }
        let Some(failure) = failure else {
            self.record(name, elapsed, None, self.take_output(true));
            self.ctx.events.send(RunEvent::SubtestEnd {
                name: name.to_owned(),
                result: Ok(elapsed),
            });
            return SubtestEnd::Passed;
        };
        self.record(name, elapsed, Some(&failure), self.take_output(true));
        self.ctx.events.send(RunEvent::SubtestEnd {
            name: name.to_owned(),
            result: Err(failure.to_string()),
        });
        let interrupted = self.ctx.interrupted().is_some();
        if self.keep_going && !interrupted && !failure.is_infrastructure() {
            if let Ok(mut failed) = self.failed_subtests.lock() {
                failed.push(name.to_owned());
            }
            return SubtestEnd::Swallowed;
        }
        self.failure_recorded
            .store(true, std::sync::atomic::Ordering::SeqCst);
        SubtestEnd::Raise(failure)
    }

    /// Keeps a step failure for the final report; returns its id.
    fn keep_failure(&self, err: StepError) -> usize {
        match self.failures.lock() {
            Ok(mut f) => {
                f.push(Some(err));
                f.len() - 1
            }
            Err(_) => usize::MAX,
        }
    }

    /// Puts a failure taken with [`State::take_failure`] back.
    fn put_back_failure(&self, id: usize, err: StepError) {
        if let Ok(mut f) = self.failures.lock() {
            if let Some(slot) = f.get_mut(id) {
                *slot = Some(err);
            }
        }
    }

    /// `print` from the script: an event and the current case's output.
    fn print(&self, text: &str) {
        self.ctx.events.send(RunEvent::Print {
            text: text.to_owned(),
        });
        if let Ok(mut o) = self.output.lock() {
            if let Some(o) = o.last_mut() {
                o.push_str(text);
                o.push('\n');
            }
        }
    }

    /// Describes an error that left a subtest or the script.
    fn describe(&self, err: &EvalAltResult) -> ScriptFailure {
        let inner = err.unwrap_inner();
        match inner {
            EvalAltResult::ErrorRuntime(d, pos) => {
                if let Some(r) = d.clone().try_cast::<StepFailureRef>() {
                    if let Some(step) = self.take_failure(r.id) {
                        return ScriptFailure::Step(step);
                    }
                    return ScriptFailure::Script {
                        message: r.summary,
                        position: script_position(*pos),
                    };
                }
                ScriptFailure::Script {
                    message: format!("{d}"),
                    position: script_position(*pos),
                }
            }
            EvalAltResult::ErrorTerminated(d, _) => match self.ctx.interrupted() {
                Some(reason) => ScriptFailure::Interrupted { reason },
                None => ScriptFailure::Interrupted {
                    reason: format!("{d}"),
                },
            },
            other => ScriptFailure::Script {
                message: other.to_string(),
                position: script_position(other.position())
                    .or_else(|| script_position(err.position())),
            },
        }
    }

    /// The output of the case that ends: the innermost subtest's, or (not
    /// `subtest`) all that is left, the script's own.
    fn take_output(&self, subtest: bool) -> String {
        let Ok(mut o) = self.output.lock() else {
            return String::new();
        };
        if subtest && o.len() > 1 {
            return o.pop().unwrap_or_default();
        }
        let all = o.concat();
        *o = vec![String::new()];
        all
    }

    fn record(
        &self,
        name: &str,
        elapsed: Duration,
        failure: Option<&ScriptFailure>,
        output: String,
    ) {
        let outcome = match failure {
            None => Outcome::Passed,
            Some(f) if f.is_infrastructure() => Outcome::Error {
                message: first_line(&f.to_string()),
                detail: f.to_string(),
            },
            Some(f) => Outcome::Failed {
                message: first_line(&f.to_string()),
                detail: f.to_string(),
            },
        };
        if let Ok(mut cases) = self.cases.lock() {
            cases.push(TestCase {
                name: name.to_owned(),
                elapsed,
                outcome,
                output,
            });
        }
    }
}

/// How a subtest's end goes on.
enum SubtestEnd {
    /// It passed.
    Passed,
    /// It failed and the script goes on (`keep_going`).
    Swallowed,
    /// It failed and the failure ends the script.
    Raise(ScriptFailure),
    /// It passed but collecting its coverage failed.
    CoverageFailed(StepError),
}

/// A timeout as a script gives it: seconds or a duration string.
#[derive(Debug, Clone, PartialEq)]
enum TimeoutValue {
    /// Whole seconds.
    Int(i64),
    /// Seconds.
    Float(f64),
    /// `"30s"`, `"2m"`, `"1.5"`.
    Text(String),
    /// Anything else, described.
    Other(String),
}

impl TimeoutValue {
    fn duration(self) -> Result<Duration, StepErrorKind> {
        match self {
            TimeoutValue::Int(i) => {
                u64::try_from(i)
                    .map(Duration::from_secs)
                    .map_err(|_| StepErrorKind::BadTimeout {
                        value: i.to_string(),
                    })
            }
            TimeoutValue::Float(x) => parse_timeout(&x.to_string()),
            TimeoutValue::Text(s) => parse_timeout(&s),
            TimeoutValue::Other(value) => Err(StepErrorKind::BadTimeout { value }),
        }
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").to_owned()
}

/// Runs `source` against `nodes`: builds the engine, binds every machine,
/// enforces the time limit (killing every machine when it passes) and
/// reports the outcome with one JUnit case per subtest.
pub fn run_script(nodes: &[Node], source: &str, options: &ScriptOptions) -> ScriptReport {
    let started = Instant::now();
    let ctx = match nodes.first() {
        Some(n) => n.context().clone(),
        None => Arc::new(RunContext::new(
            crate::events::EventSender::none(),
            Default::default(),
            PathBuf::from("."),
            PathBuf::from("."),
        )),
    };
    let state = Arc::new(State {
        ctx: ctx.clone(),
        nodes: nodes.to_vec(),
        keep_going: options.keep_going,
        coverage: options.coverage.clone(),
        failures: Mutex::new(Vec::new()),
        cases: Mutex::new(Vec::new()),
        failed_subtests: Mutex::new(Vec::new()),
        output: Mutex::new(vec![String::new()]),
        failure_recorded: std::sync::atomic::AtomicBool::new(false),
    });

    // Watchdog: when the time limit passes, interrupt the run and kill the
    // machines so that any blocked step returns at once.
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let watchdog = {
        let nodes = nodes.to_vec();
        let ctx = ctx.clone();
        let timeout = options.timeout;
        std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = done_rx.recv_timeout(timeout) {
                ctx.interrupt(&format!(
                    "the test script's timeout of {}s passed",
                    timeout.as_secs_f64()
                ));
                crate::script::driver::crash_all(&nodes);
                true
            } else {
                false
            }
        })
    };

    let result = match options.language {
        ScriptLanguage::Rhai => {
            let engine = api::build_engine(&state);
            run_in_engine(&engine, &state, source)
        }
        ScriptLanguage::Python => python::run(&state, source, options),
    };
    drop(done_tx);
    let timed_out = watchdog.join().unwrap_or(false);

    let result = match result {
        // Also a script that caught the interrupted step and ended: the
        // limit passed and the machines were killed.
        _ if timed_out => Err(ScriptFailure::TimedOut {
            timeout: options.timeout,
        }),
        Err(f) => Err(f),
        Ok(()) => {
            let failed = state
                .failed_subtests
                .lock()
                .map(|f| f.clone())
                .unwrap_or_default();
            if failed.is_empty() {
                Ok(())
            } else {
                Err(ScriptFailure::Subtests { failed })
            }
        }
    };
    let elapsed = started.elapsed();
    // The whole script is a case of its own, so a failure outside any
    // subtest still shows in JUnit; one a subtest already recorded is not
    // counted twice.
    let recorded = state
        .failure_recorded
        .load(std::sync::atomic::Ordering::SeqCst);
    let output = state.take_output(false);
    match &result {
        Err(
            ScriptFailure::Step(_) | ScriptFailure::Script { .. } | ScriptFailure::Traced { .. },
        ) if recorded => {
            // No case of its own: what the script printed outside subtests
            // goes with the failed subtest that ended it.
            if let Some(last) = state.cases.lock().ok().as_mut().and_then(|c| c.last_mut()) {
                last.output.push_str(&output);
            }
        }
        Err(ScriptFailure::Subtests { .. }) | Ok(()) => {
            state.record("script", elapsed, None, output)
        }
        Err(f) => state.record("script", elapsed, Some(f), output),
    }
    ctx.events.send(RunEvent::ScriptEnd {
        result: match &result {
            Ok(()) => Ok(elapsed),
            Err(e) => Err(first_line(&e.to_string())),
        },
    });
    let cases = state
        .cases
        .lock()
        .map(|mut c| std::mem::take(&mut *c))
        .unwrap_or_default();
    ScriptReport {
        result,
        cases,
        elapsed,
    }
}

fn run_in_engine(engine: &Engine, state: &Arc<State>, source: &str) -> Result<(), ScriptFailure> {
    let mut scope = Scope::new();
    for node in &state.nodes {
        if api::is_identifier(node.name()) {
            scope.push_constant(node.name().to_owned(), node.clone());
        }
    }
    let ast = engine
        .compile_with_scope(&scope, source)
        .map_err(|e| ScriptFailure::Parse {
            message: e.err_type().to_string(),
            position: script_position(e.position()),
        })?;
    engine
        .run_ast_with_scope(&mut scope, &ast)
        .map_err(|e| state.describe(&e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{channel, EventSender};
    use crate::machine::{Machine, MachineError, Output};
    use crate::net::faults::LinkFaults;
    use crate::script::driver::Timeouts;
    use std::process::{Command, Stdio};
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A machine whose shell is the host's `sh`, for testing the engine
    /// without QEMU.
    struct HostShell {
        name: String,
        running: AtomicBool,
    }

    impl Machine for HostShell {
        fn name(&self) -> &str {
            &self.name
        }
        fn start(&self) -> Result<(), MachineError> {
            self.running.store(true, Ordering::SeqCst);
            Ok(())
        }
        fn is_running(&self) -> bool {
            self.running.load(Ordering::SeqCst)
        }
        fn execute(&self, cmd: &str, timeout: Duration) -> Result<Output, MachineError> {
            if !self.is_running() {
                return Err(MachineError::NotRunning {
                    machine: self.name.clone(),
                    op: format!("run `{cmd}`"),
                });
            }
            let dir = tempfile::tempdir().map_err(|source| MachineError::Io {
                machine: self.name.clone(),
                what: "create temp dir".into(),
                source,
            })?;
            let (out, err) = (dir.path().join("out"), dir.path().join("err"));
            let io = |source| MachineError::Io {
                machine: self.name.clone(),
                what: "run sh".into(),
                source,
            };
            let mut child = Command::new("sh")
                .arg("-c")
                .arg(cmd)
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(&out).map_err(io)?)
                .stderr(std::fs::File::create(&err).map_err(io)?)
                .spawn()
                .map_err(io)?;
            let deadline = Instant::now() + timeout;
            loop {
                if let Some(status) = child.try_wait().map_err(io)? {
                    return Ok(Output {
                        status: status.code().unwrap_or(128),
                        stdout: std::fs::read(&out).map_err(io)?,
                        stderr: std::fs::read(&err).map_err(io)?,
                    });
                }
                if !self.is_running() || Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    if !self.is_running() {
                        return Err(MachineError::Exited {
                            machine: self.name.clone(),
                            during: format!("running `{cmd}`"),
                            how: "killed".into(),
                            console: Default::default(),
                        });
                    }
                    return Err(MachineError::CommandTimeout {
                        machine: self.name.clone(),
                        command: cmd.into(),
                        timeout,
                        console: Default::default(),
                    });
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        fn copy_to(&self, data: &[u8], guest_path: &str, _mode: u32) -> Result<(), MachineError> {
            std::fs::write(guest_path, data).map_err(|source| MachineError::Io {
                machine: self.name.clone(),
                what: "write".into(),
                source,
            })
        }
        fn copy_from(&self, guest_path: &str) -> Result<Vec<u8>, MachineError> {
            std::fs::read(guest_path).map_err(|source| MachineError::Io {
                machine: self.name.clone(),
                what: "read".into(),
                source,
            })
        }
        fn console_lines(&self, _last: usize) -> Vec<String> {
            vec![format!("{} console", self.name)]
        }
        fn wait_for_console_text(
            &self,
            pattern: &str,
            timeout: Duration,
        ) -> Result<(), MachineError> {
            if self.console_lines(1).iter().any(|l| l.contains(pattern)) {
                return Ok(());
            }
            Err(MachineError::WaitTimeout {
                machine: self.name.clone(),
                what: format!("console text `{pattern}`"),
                timeout,
                console: Default::default(),
            })
        }
        fn shutdown(&self, _timeout: Duration) -> Result<(), MachineError> {
            self.running.store(false, Ordering::SeqCst);
            Ok(())
        }
        fn crash(&self) -> Result<(), MachineError> {
            self.running.store(false, Ordering::SeqCst);
            Ok(())
        }
        fn set_link(&self, _up: bool) -> Result<(), MachineError> {
            Ok(())
        }
    }

    fn nodes(names: &[&str], events: EventSender, out: &std::path::Path) -> Vec<Node> {
        let ctx = Arc::new(RunContext::new(
            events,
            Timeouts {
                command: Duration::from_secs(20),
                wait: Duration::from_secs(5),
                shutdown: Duration::from_secs(1),
            },
            out.to_owned(),
            out.to_owned(),
        ));
        names
            .iter()
            .map(|n| {
                let m: Arc<dyn Machine> = Arc::new(HostShell {
                    name: (*n).to_owned(),
                    running: AtomicBool::new(false),
                });
                Node::new(m, Vec::new(), ctx.clone())
            })
            .collect()
    }

    fn run(names: &[&str], source: &str, options: &ScriptOptions) -> (ScriptReport, Vec<RunEvent>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let (tx, rx) = channel();
        let report = run_script(&nodes(names, tx, dir.path()), source, options);
        (report, rx.try_iter().collect())
    }

    #[test]
    fn link_faults_and_partitions_reach_the_switch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let switch = Arc::new(crate::net::switch::Switch::start().expect("switch"));
        for (i, name) in ["a/eth0", "a/eth1", "b/eth0"].iter().enumerate() {
            switch
                .add_port(
                    name,
                    1,
                    &dir.path().join(format!("{i}.port")),
                    &dir.path().join(format!("{i}.nic")),
                )
                .expect("port");
        }
        let (tx, rx) = channel();
        let nodes = nodes(&["a", "b"], tx, dir.path());
        nodes[0].context().attach_switch(switch.clone());
        let report = run_script(
            &nodes,
            r#"
            a.set_link(#{loss: 10, delay: "200ms", jitter: 0.02, rate: "1mbit"});
            b.set_link(#{rate: 64000});
            partition([[a], ["b"]]);
            heal();
            "#,
            &ScriptOptions::default(),
        );
        assert!(report.result.is_ok(), "{:?}", report.result);
        let want = LinkFaults {
            loss: 10.0,
            delay: Duration::from_millis(200),
            jitter: Duration::from_millis(20),
            rate: std::num::NonZeroU64::new(1_000_000),
        };
        let ports = switch.machine_ports("a");
        assert_eq!(ports.len(), 2);
        assert!(ports.iter().all(|p| switch.link_faults(*p) == want));
        let b = switch.machine_ports("b");
        assert_eq!(switch.link_faults(b[0]).rate.map(|r| r.get()), Some(64_000));
        let events: Vec<RunEvent> = rx.try_iter().collect();
        let seed = format!("network fault seed {}", switch.fault_seed());
        assert!(
            events
                .iter()
                .any(|e| matches!(e, RunEvent::Print { text } if text.contains(&seed))),
            "the seed is printed: {events:?}"
        );

        let report = run_script(&nodes, "a.clear_link();", &ScriptOptions::default());
        assert!(report.result.is_ok(), "{:?}", report.result);
        assert!(switch.link_faults(ports[0]).is_perfect());

        for (source, expect) in [
            (
                "a.set_link(#{loss: 120.0});",
                "loss 120 is not a percentage",
            ),
            ("a.set_link(#{los: 1});", "unknown link setting `los`"),
            ("a.set_link(#{rate: \"fast\"});", "rate `fast`"),
            ("a.set_link(#{delay: \"soon\"});", "delay `soon`"),
            (
                "partition([[a], [a]]);",
                "machine `a` is in two partition groups",
            ),
            ("partition([[a], [\"zz\"]]);", "no machine `zz`"),
            ("partition([a]);", "an array of arrays of machines"),
        ] {
            let report = run_script(&nodes, source, &ScriptOptions::default());
            let err = report.result.expect_err(source).to_string();
            assert!(err.contains(expect), "{source}: {err}");
            assert!(err.contains("line 1"), "{source}: {err}");
        }
    }

    #[test]
    fn faults_without_a_switch_fail_clearly() {
        let (report, _) = run(&["a"], "a.set_link(#{loss: 1});", &ScriptOptions::default());
        let err = report.result.expect_err("no switch").to_string();
        assert!(err.contains("no covnet switch"), "{err}");
        let (report, _) = run(&["a"], "heal();", &ScriptOptions::default());
        let err = report.result.expect_err("no switch").to_string();
        assert!(err.contains("no covnet switch"), "{err}");
    }

    #[test]
    fn machines_are_variables_and_steps_return_output() {
        let (report, events) = run(
            &["server", "web-1"],
            r#"
            start_all();
            let out = server.succeed("echo hello");
            if out != "hello\n" { throw "bad output: " + out; }
            let r = machine("web-1").execute("echo err >&2; exit 3");
            if r.status != 3 || r.stderr != "err\n" { throw "bad execute"; }
            server.fail("false");
            print("name " + server.name);
            "#,
            &ScriptOptions::default(),
        );
        assert!(report.result.is_ok(), "{:?}", report.result);
        assert!(events.contains(&RunEvent::Print {
            text: "name server".into()
        }));
        assert_eq!(report.cases.len(), 1);
        assert_eq!(report.cases[0].outcome, Outcome::Passed);
    }

    #[test]
    fn failed_step_names_machine_command_status_output_and_position() {
        let (report, _) = run(
            &["client"],
            "start_all();\nlet x = 1;\n   client.succeed(\"echo out; echo bad >&2; exit 4\");\n",
            &ScriptOptions::default(),
        );
        let Err(ScriptFailure::Step(err)) = report.result else {
            panic!("expected a step failure, got {:?}", report.result);
        };
        let text = err.to_string();
        assert!(text.starts_with("machine `client`: succeed(`echo out; echo bad >&2; exit 4`) failed at script line 3, column 11: command exited with status 4"), "{text}");
        assert!(text.contains("stdout:\n  | out"), "{text}");
        assert!(text.contains("stderr:\n  | bad"), "{text}");
        assert!(
            text.contains("last console lines:\n  | client console"),
            "{text}"
        );
        assert!(!err.is_infrastructure());
    }

    #[test]
    fn parse_errors_and_script_errors_have_positions() {
        let (report, _) = run(&["a"], "let x = ;", &ScriptOptions::default());
        match report.result {
            Err(ScriptFailure::Parse { position, .. }) => {
                assert_eq!(position.map(|p| p.line), Some(1))
            }
            other => panic!("expected parse failure, got {other:?}"),
        }
        let (report, _) = run(&["a"], "\n\nnope();", &ScriptOptions::default());
        match &report.result {
            Err(ScriptFailure::Script { position, message }) => {
                assert_eq!(position.map(|p| p.line), Some(3), "{message}")
            }
            other => panic!("expected script failure, got {other:?}"),
        }
    }

    #[test]
    fn keep_going_records_failed_subtests_and_still_fails() {
        let source = r#"
            start_all();
            subtest("first", || { a.succeed("exit 1"); });
            subtest("second", || { a.succeed("true"); });
        "#;
        let options = ScriptOptions {
            keep_going: true,
            ..ScriptOptions::default()
        };
        let (report, _) = run(&["a"], source, &options);
        match &report.result {
            Err(ScriptFailure::Subtests { failed }) => assert_eq!(failed, &["first"]),
            other => panic!("expected subtest failure, got {other:?}"),
        }
        let names: Vec<&str> = report.cases.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["first", "second", "script"]);
        assert!(matches!(report.cases[0].outcome, Outcome::Failed { .. }));
        assert_eq!(report.cases[1].outcome, Outcome::Passed);

        // Without keep_going the first failure ends the script, with its
        // position inside the closure.
        let (report, _) = run(&["a"], source, &ScriptOptions::default());
        match &report.result {
            Err(ScriptFailure::Step(e)) => {
                assert_eq!(e.position.map(|p| p.line), Some(3), "{e}")
            }
            other => panic!("expected step failure, got {other:?}"),
        }
        // The failure is counted once, in its subtest.
        assert_eq!(report.cases.len(), 1);
    }

    #[test]
    fn caught_failures_do_not_fail_the_script() {
        let (report, events) = run(
            &["a"],
            r#"a.start(); try { a.succeed("exit 2"); } catch (e) { print("caught: " + e.message); }"#,
            &ScriptOptions::default(),
        );
        assert!(report.result.is_ok(), "{:?}", report.result);
        assert!(events.iter().any(|e| matches!(e,
            RunEvent::Print { text } if text.starts_with("caught: machine `a`: succeed(`exit 2`)"))));
    }

    #[test]
    fn polling_waits_and_timeouts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let flag = dir.path().join("flag");
        let source = format!(
            r#"
            a.start();
            a.succeed("(sleep 0.3; touch '{flag}') >/dev/null 2>&1 &");
            a.wait_until_succeeds("test -e '{flag}'", "10s");
            a.wait_for_file("{flag}", 2);
            a.wait_until_succeeds("false", 0.5);
            "#,
            flag = flag.display()
        );
        let (report, _) = run(&["a"], &source, &ScriptOptions::default());
        match &report.result {
            Err(ScriptFailure::Step(e)) => {
                let text = e.to_string();
                assert!(
                    text.contains("wait_until_succeeds(`false`) failed at script line 6"),
                    "{text}"
                );
                assert!(
                    text.contains("timed out after 0.5s waiting for `false` to succeed"),
                    "{text}"
                );
                assert!(text.contains("last attempt exited with status 1"), "{text}");
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
        let (report, _) = run(
            &["a"],
            r#"a.start(); a.succeed("true", "soon");"#,
            &ScriptOptions::default(),
        );
        assert!(
            matches!(&report.result, Err(ScriptFailure::Step(e)) if matches!(*e.kind, StepErrorKind::BadTimeout { .. })),
            "{:?}",
            report.result
        );
    }

    #[test]
    fn script_timeout_kills_machines_and_fails() {
        let options = ScriptOptions {
            timeout: Duration::from_millis(500),
            ..ScriptOptions::default()
        };
        let (report, _) = run(&["a"], r#"a.start(); a.succeed("sleep 30");"#, &options);
        assert!(
            matches!(report.result, Err(ScriptFailure::TimedOut { .. })),
            "{:?}",
            report.result
        );
        let (report, _) = run(&["a"], "loop { }", &options);
        assert!(
            matches!(report.result, Err(ScriptFailure::TimedOut { .. })),
            "{:?}",
            report.result
        );
        // `sleep` is cut by the time limit too (Rhai's own `sleep(INT)`
        // and `sleep(FLOAT)` were not), and the run fails.
        for secs in ["30", "30.0", "\"30s\""] {
            let (report, _) = run(&["a"], &format!("a.start(); sleep({secs});"), &options);
            assert!(
                matches!(report.result, Err(ScriptFailure::TimedOut { .. })),
                "sleep({secs}): {:?}",
                report.result
            );
        }
        // A script that catches the interrupted step and ends normally
        // after the time limit still fails.
        for (source, language) in [
            (
                "a.start(); try { sleep(30); } catch { }",
                ScriptLanguage::Rhai,
            ),
            (
                "a.start()\ntry:\n    sleep(30)\nexcept StepFailure:\n    pass\n",
                ScriptLanguage::Python,
            ),
        ] {
            let options = ScriptOptions {
                language,
                ..options.clone()
            };
            let (report, _) = run(&["a"], source, &options);
            assert!(
                matches!(report.result, Err(ScriptFailure::TimedOut { .. })),
                "{source}: {:?}",
                report.result
            );
        }
    }

    #[test]
    fn copies_resolve_host_paths() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (tx, _rx) = channel();
        let nodes = nodes(&["a"], tx, dir.path());
        std::fs::write(dir.path().join("in.txt"), "data").expect("write");
        let guest = dir.path().join("guest.txt");
        let source = format!(
            r#"a.start(); a.copy_to_vm("in.txt", "{g}"); let p = a.copy_from_vm("{g}", "sub/out.txt"); print(p);"#,
            g = guest.display()
        );
        let report = run_script(&nodes, &source, &ScriptOptions::default());
        assert!(report.result.is_ok(), "{:?}", report.result);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("sub/out.txt")).expect("copied"),
            "data"
        );
    }

    fn py() -> ScriptOptions {
        ScriptOptions {
            language: ScriptLanguage::Python,
            ..ScriptOptions::default()
        }
    }

    #[test]
    fn python_machines_are_globals_and_steps_return_output() {
        let (report, events) = run(
            &["server", "web-1"],
            r#"
start_all()
out = server.succeed("echo hello")
assert out == "hello\n", out
status, text = machine("web-1").execute("echo out; echo err >&2; exit 3")
assert (status, text) == (3, "out\n"), (status, text)
assert server.fail("echo no >&2; false") == "no\n"
assert [m.name for m in machines] == ["server", "web-1"]
print("name", server.name)
"#,
            &py(),
        );
        assert!(report.result.is_ok(), "{}", report.result.unwrap_err());
        assert!(
            events.contains(&RunEvent::Print {
                text: "name server".into()
            }),
            "{events:?}"
        );
        assert_eq!(report.cases.len(), 1);
        assert_eq!(report.cases[0].outcome, Outcome::Passed);
    }

    #[test]
    fn python_step_failure_is_the_rhai_one_with_the_python_line_and_traceback() {
        let rhai =
            "start_all();\nlet x = 1;\nclient.succeed(\"echo out; echo bad >&2; exit 4\");\n";
        let python = "start_all()\nx = 1\nclient.succeed(\"echo out; echo bad >&2; exit 4\")\n";
        let (r, _) = run(&["client"], rhai, &ScriptOptions::default());
        let (p, _) = run(&["client"], python, &py());
        let (Err(ScriptFailure::Step(r)), Err(pf @ ScriptFailure::Traced { .. })) =
            (r.result, &p.result)
        else {
            panic!("expected step failures, got {:?}", p.result);
        };
        let ScriptFailure::Traced { failure, traceback } = pf else {
            unreachable!()
        };
        let ScriptFailure::Step(e) = &**failure else {
            panic!("expected a step inside, got {failure:?}");
        };
        assert_eq!(e.position.map(|p| p.line), Some(3));
        assert_eq!(e.position.map(|p| p.column), Some(1));
        // Same text but for the column (Rhai points at the method call).
        assert_eq!(
            e.to_string(),
            r.to_string()
                .replace("line 3, column 8", "line 3, column 1")
        );
        assert!(traceback.contains("line 3"), "{traceback}");
        assert!(
            traceback.contains("covnet.StepFailure: machine `client`"),
            "{traceback}"
        );
        let text = pf.to_string();
        assert!(
            text.contains("\n  python traceback:\n  | Traceback"),
            "{text}"
        );
        assert!(!pf.is_infrastructure());
        assert_eq!(pf.position().map(|p| p.line), Some(3));
    }

    #[test]
    fn printed_text_goes_with_the_case_that_printed_it() {
        let source = r#"
print("before");
subtest("outer", || {
    print("in outer");
    subtest("inner", || { print("in inner"); });
    print("outer again");
});
print("after");
"#;
        let (report, _) = run(&["a"], source, &ScriptOptions::default());
        assert!(report.result.is_ok(), "{:?}", report.result);
        let cases: Vec<(&str, &str)> = report
            .cases
            .iter()
            .map(|c| (c.name.as_str(), c.output.as_str()))
            .collect();
        assert_eq!(
            cases,
            [
                ("inner", "in inner\n"),
                ("outer", "in outer\nouter again\n"),
                ("script", "before\nafter\n"),
            ]
        );
        // A subtest failure that ends the script: no case of the script's
        // own, so its output goes with the failed subtest.
        let (report, _) = run(
            &["a"],
            r#"a.start(); print("before"); subtest("bad", || { a.succeed("exit 1"); });"#,
            &ScriptOptions::default(),
        );
        let cases: Vec<(&str, &str)> = report
            .cases
            .iter()
            .map(|c| (c.name.as_str(), c.output.as_str()))
            .collect();
        assert_eq!(cases, [("bad", "before\n")]);
    }

    #[test]
    fn python_subtests_are_context_managers_with_junit_cases_and_keep_going() {
        let source = r#"
start_all()
with subtest("first"):
    a.succeed("exit 1")
with subtest("second"):
    a.succeed("true")
"#;
        let options = ScriptOptions {
            keep_going: true,
            ..py()
        };
        let (report, _) = run(&["a"], source, &options);
        match &report.result {
            Err(ScriptFailure::Subtests { failed }) => assert_eq!(failed, &["first"]),
            other => panic!("expected subtest failure, got {other:?}"),
        }
        let names: Vec<&str> = report.cases.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["first", "second", "script"]);
        assert!(matches!(report.cases[0].outcome, Outcome::Failed { .. }));
        assert_eq!(report.cases[1].outcome, Outcome::Passed);

        // Without keep_going the first failure ends the script, once, with
        // its position inside the block.
        let (report, _) = run(&["a"], source, &py());
        assert_eq!(
            report
                .result
                .as_ref()
                .err()
                .and_then(|f| f.position())
                .map(|p| p.line),
            Some(4)
        );
        assert!(
            matches!(&report.result, Err(ScriptFailure::Traced { failure, .. }) if matches!(**failure, ScriptFailure::Step(_))),
            "{:?}",
            report.result
        );
        assert_eq!(report.cases.len(), 1);
        let Outcome::Failed { detail, .. } = &report.cases[0].outcome else {
            panic!("{:?}", report.cases[0].outcome);
        };
        assert!(
            detail.contains("succeed(`exit 1`) failed at script line 4"),
            "{detail}"
        );

        // A caught failure does not fail the script.
        let (report, _) = run(
            &["a"],
            "a.start()\ntry:\n    a.succeed('exit 2')\nexcept StepFailure as e:\n    print('caught', e)\n",
            &py(),
        );
        assert!(report.result.is_ok(), "{:?}", report.result);
    }

    #[test]
    fn python_exceptions_and_syntax_errors_have_positions() {
        let (report, _) = run(&["a"], "x = 1\nassert x == 2, 'x is not 2'\n", &py());
        match &report.result {
            Err(ScriptFailure::Traced { failure, traceback }) => {
                assert!(
                    matches!(&**failure, ScriptFailure::Script { message, position }
                        if message == "AssertionError: x is not 2" && position.map(|p| p.line) == Some(2)),
                    "{failure:?}"
                );
                assert!(traceback.contains("AssertionError"), "{traceback}");
            }
            other => panic!("expected a script failure, got {other:?}"),
        }
        let (report, _) = run(&["a"], "x = 1\ny = (\n", &py());
        assert!(
            matches!(&report.result, Err(ScriptFailure::Parse { position: Some(p), .. }) if p.line == 2),
            "{:?}",
            report.result
        );
    }

    #[test]
    fn python_graphical_calls_fail_saying_why() {
        for call in [
            "a.screenshot('x')",
            "a.send_key('ctrl-alt-delete')",
            "a.wait_for_x()",
        ] {
            let (report, _) = run(&["a"], &format!("a.start()\n{call}\n"), &py());
            let text = report.result.expect_err(call).to_string();
            assert!(text.contains("needs a graphical display"), "{text}");
            assert!(text.contains("line 2"), "{text}");
        }
        let (report, _) = run(
            &["a"],
            "a.start();\na.screenshot(\"x\");\n",
            &ScriptOptions::default(),
        );
        let text = report.result.expect_err("rhai").to_string();
        assert!(text.contains("needs a graphical display"), "{text}");
    }

    /// Reads the pids a script wrote, one per line.
    fn pids(path: &std::path::Path) -> Vec<u32> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    #[test]
    fn python_that_hangs_raises_or_is_killed_leaves_nothing_running() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pidfile = dir.path().join("pids");
        let prologue = format!(
            "import os, subprocess\nchild = subprocess.Popen(['sleep', '300'])\nwith open({:?}, 'w') as f:\n    f.write(f'{{os.getpid()}}\\n{{child.pid}}\\n')\nstart_all()\n",
            pidfile.display().to_string()
        );
        let short = ScriptOptions {
            timeout: Duration::from_secs(3),
            ..py()
        };
        type Check = fn(&ScriptFailure) -> bool;
        let cases: [(&str, &str, &ScriptOptions, Check); 4] = [
            ("hang in python", "while True:\n    pass\n", &short, |f| {
                matches!(f, ScriptFailure::TimedOut { .. })
            }),
            ("hang in a step", "a.succeed('sleep 30')\n", &short, |f| {
                matches!(f, ScriptFailure::TimedOut { .. })
            }),
            ("raise", "raise RuntimeError('boom')\n", &short, |f| {
                f.to_string().contains("RuntimeError: boom")
            }),
            ("killed", "os.kill(os.getpid(), 9)\n", &short, |f| {
                matches!(f, ScriptFailure::Interpreter { detail } if detail.contains("signal: 9"))
                    && f.is_infrastructure()
            }),
        ];
        for (what, body, options, check) in cases {
            let _ = std::fs::remove_file(&pidfile);
            let (report, _) = run(&["a"], &format!("{prologue}{body}"), options);
            let failure = report.result.expect_err(what);
            assert!(check(&failure), "{what}: {failure}");
            let got = pids(&pidfile);
            assert_eq!(got.len(), 2, "{what}: the script ran and wrote its pids");
            for pid in got {
                assert!(
                    !crate::machine::process::pid_alive(pid),
                    "{what}: pid {pid} outlived the run"
                );
            }
        }
    }

    #[test]
    fn python_interrupted_run_ends_and_kills_python() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (tx, _rx) = channel();
        let nodes = nodes(&["a"], tx, dir.path());
        let ctx = nodes[0].context().clone();
        let pidfile = dir.path().join("pid");
        let source = format!(
            "import os\nwith open({:?}, 'w') as f:\n    f.write(str(os.getpid()))\nsleep(60)\n",
            pidfile.display().to_string()
        );
        let interrupter = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !pidfile.exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            ctx.interrupt("Ctrl-C");
            pidfile
        });
        let report = run_script(&nodes, &source, &py());
        let pidfile = interrupter.join().expect("interrupter");
        assert!(
            matches!(&report.result, Err(f) if f.to_string().contains("interrupted: Ctrl-C")),
            "{:?}",
            report.result
        );
        let pid = pids(&pidfile);
        assert_eq!(pid.len(), 1);
        assert!(!crate::machine::process::pid_alive(pid[0]));
    }
}
