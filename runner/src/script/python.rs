//! Python test scripts: the host's `python3` runs the script with covnet's
//! `covnet` module (`runner/python/covnet/`, embedded in the binary and
//! written into a private run directory), and calls the runner over a
//! unix socket there.
//!
//! Protocol: the script process connects once and sends one JSON object
//! per line, `{"op": ..., "args": {...}, "line": L, "column": C}` (the
//! caller's position in the script); the runner answers each with one line:
//! `{"ok": value}`, `{"fail": {"id": N, "summary": "..."}}` for a failed
//! step (the full [`StepError`] stays here, found again by its id when the
//! failure ends a subtest or the script), or `{"error": "..."}` for a
//! request it cannot understand. The last request is `done`,
//! `script_failed` or `parse_error`.
//!
//! Every request is served by the same [`Node`] and [`State`] functions as
//! the Rhai API. The process leads its own process group and is killed
//! (the whole group) on every path out of [`run`]: its end, the script
//! timeout, an interruption, a runner error; and by the kernel when covnet
//! dies (`PR_SET_PDEATHSIG`). Every wait has a deadline.

use std::io::{self, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use super::{api, ScriptFailure, ScriptOptions, State, SubtestEnd, TimeoutValue};
use crate::machine::process::OwnedChild;
use crate::rundir::RunDir;
use crate::script::driver::{
    start_nodes, Node, ScriptPosition, ServiceVerb, StepError, StepErrorKind,
};

/// The `covnet` Python module.
const INIT_PY: &str = include_str!("../../python/covnet/__init__.py");
/// `python3 -m covnet SCRIPT NAME`.
const MAIN_PY: &str = include_str!("../../python/covnet/__main__.py");

/// The interpreter, found on `PATH`.
pub const PYTHON: &str = "python3";

/// How long `python3` gets to start and connect.
const CONNECT_DEADLINE: Duration = Duration::from_secs(60);
/// How long the process gets to exit after its last request.
const EXIT_DEADLINE: Duration = Duration::from_secs(10);
/// How often blocked reads look at the process and the interruption flag.
const TICK: Duration = Duration::from_millis(100);
/// Longest request line accepted.
const MAX_LINE: usize = 64 << 20;
/// Lines of the process's own output kept for failure messages.
const OUTPUT_TAIL: usize = 40;

/// Runs `source` with `python3` against the state's machines.
pub(super) fn run(
    state: &Arc<State>,
    source: &str,
    options: &ScriptOptions,
) -> Result<(), ScriptFailure> {
    let interp = |detail: String| ScriptFailure::Interpreter { detail };
    let dir =
        RunDir::create().map_err(|e| interp(format!("cannot create its run directory: {e}")))?;
    let (script, display) = write_files(&dir, source, options.file.as_deref())
        .map_err(|e| interp(format!("cannot write the covnet module: {e}")))?;
    let socket = dir
        .socket("python.sock")
        .map_err(|e| interp(e.to_string()))?;
    let listener = UnixListener::bind(&socket)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| interp(format!("cannot listen on {}: {e}", socket.display())))?;
    crate::rundir::restrict_socket(&socket)
        .map_err(|e| interp(format!("cannot restrict {}: {e}", socket.display())))?;

    // A socket pair as the process's stdout and stderr (a pipe, for the
    // MSRV).
    let (out_read, out_write) =
        UnixStream::pair().map_err(|e| interp(format!("cannot create a socket pair: {e}")))?;
    let out_write2 = out_write
        .try_clone()
        .map_err(|e| interp(format!("cannot create a socket pair: {e}")))?;
    let mut cmd = Command::new(PYTHON);
    cmd.args(["-B", "-s", "-m", "covnet"])
        .arg(&script)
        .arg(&display)
        .env("PYTHONPATH", dir.file("python"))
        .env("PYTHONUNBUFFERED", "1")
        .env("COVNET_SOCKET", &socket)
        .current_dir(&state.ctx.input_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::os::fd::OwnedFd::from(out_write)))
        .stderr(Stdio::from(std::os::fd::OwnedFd::from(out_write2)));
    let child = OwnedChild::spawn(cmd, "python3 test script").map_err(|e| {
        interp(format!(
            "{}\n  (hint: covnet runs Python test scripts with the host's `python3`; scripts/setup.sh installs it)",
            crate::coverage::notices::chain(&e)
        ))
    })?;
    let mut process = Process {
        child,
        output: Arc::new(Mutex::new(Vec::new())),
    };
    // The reader ends when the last process holding the pipe is gone.
    process.forward_output(out_read, state);
    let result = serve(state, &listener, &mut process);
    // On every path: the whole group goes, also what the script started
    // after the interpreter itself exited.
    let _ = process.child.kill();
    process.child.kill_stragglers();
    drop(dir);
    result
}

/// Writes the module (and an inline script) into `dir`; returns the
/// script's path and the name it is compiled under.
fn write_files(dir: &RunDir, source: &str, file: Option<&Path>) -> io::Result<(PathBuf, String)> {
    let module = dir.file("python").join("covnet");
    std::fs::create_dir_all(&module)?;
    std::fs::write(module.join("__init__.py"), INIT_PY)?;
    std::fs::write(module.join("__main__.py"), MAIN_PY)?;
    let script = dir.file("test-script.py");
    std::fs::write(&script, source)?;
    let display = match file {
        Some(f) => f.display().to_string(),
        None => script.display().to_string(),
    };
    Ok((script, display))
}

struct Process {
    child: OwnedChild,
    /// The last lines the process wrote to stdout/stderr itself.
    output: Arc<Mutex<Vec<String>>>,
}

impl Process {
    /// Forwards the process's own output (tracebacks of the module, a
    /// `print` to stderr) as events, keeping its tail.
    fn forward_output(&self, pipe: UnixStream, state: &Arc<State>) {
        let tail = self.output.clone();
        let events = state.ctx.events.clone();
        std::thread::Builder::new()
            .name("python-output".into())
            .spawn(move || {
                let mut pipe = pipe;
                let mut pending = Vec::new();
                let mut buf = [0u8; 8192];
                let emit = |line: &[u8]| {
                    let text = String::from_utf8_lossy(line).trim_end().to_owned();
                    events.send(crate::events::RunEvent::Print {
                        text: format!("python3: {text}"),
                    });
                    if let Ok(mut t) = tail.lock() {
                        t.push(text);
                        let excess = t.len().saturating_sub(OUTPUT_TAIL);
                        t.drain(..excess);
                    }
                };
                loop {
                    match pipe.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            pending.extend_from_slice(buf.get(..n).unwrap_or(&[]));
                            while let Some(pos) = pending.iter().position(|&b| b == b'\n') {
                                let line: Vec<u8> = pending.drain(..=pos).collect();
                                emit(&line);
                            }
                        }
                    }
                }
                if !pending.is_empty() {
                    emit(&pending);
                }
            })
            .map(drop)
            .unwrap_or_else(|e| {
                crate::diag::warn(format!("python3's output is not forwarded: {e}"))
            });
    }

    /// Why the process is gone, with its last output.
    fn gone(&mut self, what: &str) -> ScriptFailure {
        let how = match self.child.wait_timeout(Duration::from_secs(2)) {
            Ok(Some(status)) => status.to_string(),
            _ => "still running; killed".to_owned(),
        };
        let tail = self.output.lock().map(|t| t.clone()).unwrap_or_default();
        let mut detail = format!("python3 {what} ({how})");
        if !tail.is_empty() {
            detail.push_str("; its last output:");
            for line in tail {
                detail.push_str("\n  | ");
                detail.push_str(&line);
            }
        }
        ScriptFailure::Interpreter { detail }
    }
}

/// Accepts the script's connection and serves it to the end.
fn serve(
    state: &Arc<State>,
    listener: &UnixListener,
    process: &mut Process,
) -> Result<(), ScriptFailure> {
    let deadline = Instant::now() + CONNECT_DEADLINE;
    let stream = loop {
        if let Some(reason) = state.ctx.interrupted() {
            return Err(ScriptFailure::Interrupted { reason });
        }
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => {
                return Err(ScriptFailure::Interpreter {
                    detail: format!("accepting python3's connection failed: {e}"),
                })
            }
        }
        if !process.child.is_running() {
            return Err(process.gone("exited before connecting to covnet"));
        }
        if Instant::now() >= deadline {
            return Err(process.gone(&format!(
                "did not connect within {}s",
                CONNECT_DEADLINE.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let io_fail = |e: io::Error| ScriptFailure::Interpreter {
        detail: format!("the connection to python3 failed: {e}"),
    };
    stream.set_nonblocking(false).map_err(io_fail)?;
    stream.set_read_timeout(Some(TICK)).map_err(io_fail)?;
    let mut conn = Conn {
        stream,
        pending: Vec::new(),
    };
    let mut session = Session {
        state: state.clone(),
        subtests: Vec::new(),
    };
    loop {
        let line = match conn.next_line(state, process)? {
            Some(line) => line,
            None => return Err(process.gone("ended without finishing the script")),
        };
        let request: Value = match serde_json::from_slice(&line) {
            Ok(v) => v,
            Err(e) => {
                conn.send(&json!({ "error": format!("malformed request: {e}") }))
                    .map_err(io_fail)?;
                continue;
            }
        };
        let (reply, end) = session.handle(&request);
        // The process may be gone already after its last request.
        let sent = conn.send(&reply);
        if let Some(result) = end {
            if sent.is_ok() {
                let _ = process.child.wait_timeout(EXIT_DEADLINE);
            }
            return result;
        }
        sent.map_err(io_fail)?;
        if let Some(reason) = state.ctx.interrupted() {
            return Err(ScriptFailure::Interrupted { reason });
        }
    }
}

struct Conn {
    stream: UnixStream,
    pending: Vec<u8>,
}

impl Conn {
    /// The next request line; `None` when the process closed the
    /// connection. Returns early on an interruption.
    fn next_line(
        &mut self,
        state: &State,
        process: &mut Process,
    ) -> Result<Option<Vec<u8>>, ScriptFailure> {
        let mut buf = [0u8; 64 * 1024];
        loop {
            if let Some(pos) = self.pending.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.pending.drain(..=pos).collect();
                line.pop();
                return Ok(Some(line));
            }
            if let Some(reason) = state.ctx.interrupted() {
                return Err(ScriptFailure::Interrupted { reason });
            }
            match self.stream.read(&mut buf) {
                Ok(0) => return Ok(None),
                Ok(n) => {
                    self.pending.extend_from_slice(buf.get(..n).unwrap_or(&[]));
                    if self.pending.len() > MAX_LINE {
                        return Err(ScriptFailure::Interpreter {
                            detail: format!("python3 sent a request over {MAX_LINE} bytes"),
                        });
                    }
                }
                Err(e) if crate::machine::console::no_data_yet(&e) => {
                    if !process.child.is_running() {
                        // Its last words may still be in the socket.
                        continue;
                    }
                }
                Err(_) => return Ok(None),
            }
        }
    }

    fn send(&mut self, reply: &Value) -> io::Result<()> {
        self.stream.write_all(format!("{reply}\n").as_bytes())
    }
}

/// One script's requests.
struct Session {
    state: Arc<State>,
    /// Open subtests, innermost last.
    subtests: Vec<(String, Instant)>,
}

type Handled = (Value, Option<Result<(), ScriptFailure>>);

/// Why a request could not be carried out.
enum Refusal {
    /// A failed step: kept, its id and summary sent.
    Step(StepError),
    /// A malformed request.
    Protocol(String),
}

impl From<StepError> for Refusal {
    fn from(e: StepError) -> Self {
        Refusal::Step(e)
    }
}

impl Session {
    fn handle(&mut self, request: &Value) -> Handled {
        let op = request.get("op").and_then(Value::as_str).unwrap_or("");
        let empty = Map::new();
        let args = request
            .get("args")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let position = position_of(request.get("line"), request.get("column"));
        match op {
            "done" => (json!({ "ok": null }), Some(Ok(()))),
            "script_failed" => {
                let failure = self.failure(args.get("failure"));
                (json!({ "ok": null }), Some(Err(failure)))
            }
            "parse_error" => {
                let failure = ScriptFailure::Parse {
                    message: str_of(args, "message").unwrap_or_default().to_owned(),
                    position: position_of(args.get("line"), args.get("column")),
                };
                (json!({ "ok": null }), Some(Err(failure)))
            }
            _ => match self.call(op, args) {
                Ok(v) => (json!({ "ok": v }), None),
                Err(Refusal::Protocol(e)) => (json!({ "error": e }), None),
                Err(Refusal::Step(mut e)) => {
                    if e.position.is_none() {
                        e.position = position;
                    }
                    let summary = e.summary();
                    let id = self.state.keep_failure(e);
                    (json!({ "fail": { "id": id, "summary": summary } }), None)
                }
            },
        }
    }

    /// The failure a Python exception (as `covnet._describe` gives it)
    /// stands for, with its traceback.
    fn failure(&self, desc: Option<&Value>) -> ScriptFailure {
        let empty = Map::new();
        let desc = desc.and_then(Value::as_object).unwrap_or(&empty);
        let traceback = str_of(desc, "traceback").unwrap_or_default().to_owned();
        let step = desc
            .get("id")
            .and_then(Value::as_u64)
            .and_then(|id| usize::try_from(id).ok())
            .and_then(|id| self.state.take_failure(id));
        let failure = match step {
            Some(step) => ScriptFailure::Step(step),
            None => ScriptFailure::Script {
                message: str_of(desc, "message")
                    .unwrap_or("the script raised an exception")
                    .to_owned(),
                position: position_of(desc.get("line"), Some(&json!(1))),
            },
        };
        ScriptFailure::Traced {
            failure: Box::new(failure),
            traceback,
        }
    }

    fn node(&self, args: &Map<String, Value>) -> Result<Node, Refusal> {
        let name = str_of(args, "machine")
            .ok_or_else(|| Refusal::Protocol("no `machine` in the request".into()))?;
        self.state
            .nodes
            .iter()
            .find(|n| n.name() == name)
            .cloned()
            .ok_or_else(|| Refusal::Protocol(format!("no machine `{name}`")))
    }

    /// A timeout argument (`None`/absent: `default`).
    fn timeout(
        &self,
        node: Option<&Node>,
        op: &str,
        args: &Map<String, Value>,
        default: Duration,
    ) -> Result<Duration, Refusal> {
        let value = match args.get("timeout") {
            None | Some(Value::Null) => return Ok(default),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(i) => TimeoutValue::Int(i),
                None => TimeoutValue::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            Some(Value::String(s)) => TimeoutValue::Text(s.clone()),
            Some(other) => TimeoutValue::Other(other.to_string()),
        };
        Ok(self.state.timeout_value(node, &format!("{op}()"), value)?)
    }

    fn call(&mut self, op: &str, args: &Map<String, Value>) -> Result<Value, Refusal> {
        let state = self.state.clone();
        let t = state.ctx.timeouts;
        match op {
            "hello" => {
                return Ok(json!(state
                    .nodes
                    .iter()
                    .map(|n| n.name().to_owned())
                    .collect::<Vec<_>>()))
            }
            "print" => {
                state.print(str_of(args, "text").unwrap_or_default());
                return Ok(Value::Null);
            }
            "start_all" => return Ok(start_nodes(&state.nodes).map(|()| Value::Null)?),
            "sleep" => {
                let d = self.timeout(None, "sleep", args, Duration::ZERO)?;
                state.ctx.sleep(d).map_err(|kind| StepError {
                    machine: None,
                    step: "sleep()".to_owned(),
                    kind: Box::new(kind),
                    console: Vec::new(),
                    position: None,
                })?;
                return Ok(Value::Null);
            }
            "collect_coverage" => {
                state.collect_coverage(str_arg(args, "phase")?)?;
                return Ok(Value::Null);
            }
            "partition" => {
                let groups: Vec<Vec<String>> = args
                    .get("groups")
                    .cloned()
                    .and_then(|g| serde_json::from_value(g).ok())
                    .ok_or_else(|| {
                        Refusal::Protocol("partition: groups must be lists of machines".into())
                    })?;
                state.ctx.partition(&groups)?;
                return Ok(Value::Null);
            }
            "heal" => {
                state.ctx.heal()?;
                return Ok(Value::Null);
            }
            "subtest_start" => {
                let name = str_arg(args, "name")?.to_owned();
                let started = state.start_subtest(&name);
                self.subtests.push((name, started));
                return Ok(Value::Null);
            }
            "subtest_end" => return self.end_subtest(args),
            _ => {}
        }

        let node = self.node(args)?;
        let n = &node;
        let text = |key: &str| str_arg(args, key);
        let port = |key: &str| -> Result<u16, Refusal> {
            let p = args.get(key).and_then(Value::as_i64).ok_or_else(|| {
                Refusal::Step(bad_argument(
                    n,
                    op,
                    format!("`{key}` must be a port number"),
                ))
            })?;
            Ok(api::port_arg(n, op, p)?)
        };
        let value = match op {
            "succeed" => json!(n.succeed_within(
                text("command")?,
                self.timeout(Some(n), op, args, t.command)?
            )?),
            "fail" => json!(n.fail_within(
                text("command")?,
                self.timeout(Some(n), op, args, t.command)?
            )?),
            "execute" => output(&n.execute_within(
                text("command")?,
                self.timeout(Some(n), op, args, t.command)?,
            )?),
            "wait_until_succeeds" => json!(
                n.wait_until_succeeds(text("command")?, self.timeout(Some(n), op, args, t.wait)?)?
            ),
            "wait_until_fails" => json!(
                n.wait_until_fails(text("command")?, self.timeout(Some(n), op, args, t.wait)?)?
            ),
            "wait_for_service" => {
                unit(n.wait_for_service(text("name")?, self.timeout(Some(n), op, args, t.wait)?)?)
            }
            "wait_for_open_port" => {
                unit(n.wait_for_open_port(port("port")?, self.timeout(Some(n), op, args, t.wait)?)?)
            }
            "wait_for_closed_port" => unit(
                n.wait_for_closed_port(port("port")?, self.timeout(Some(n), op, args, t.wait)?)?,
            ),
            "wait_for_open_unix_socket" => {
                let datagram = args
                    .get("datagram")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                unit(n.wait_for_open_unix_socket(
                    text("path")?,
                    datagram,
                    self.timeout(Some(n), op, args, t.wait)?,
                )?)
            }
            "wait_for_file" => {
                unit(n.wait_for_file(text("path")?, self.timeout(Some(n), op, args, t.wait)?)?)
            }
            "wait_for_console_text" => unit(n.wait_for_console_text(
                text("pattern")?,
                self.timeout(Some(n), op, args, t.wait)?,
            )?),
            "wait_until_tty_matches" => unit(n.wait_until_tty_matches(
                text("tty")?,
                text("pattern")?,
                self.timeout(Some(n), op, args, t.wait)?,
            )?),
            "systemctl" => {
                output(&n.systemctl(text("query")?, self.timeout(Some(n), op, args, t.command)?)?)
            }
            "start_job" | "stop_job" => {
                let verb = if op == "start_job" {
                    ServiceVerb::Start
                } else {
                    ServiceVerb::Stop
                };
                output(&n.control_service(
                    verb,
                    text("name")?,
                    self.timeout(Some(n), op, args, t.command)?,
                )?)
            }
            "send_console" => unit(n.send_console(text("text")?)?),
            "console_text" => json!(n.console_text()),
            "copy_to_vm" => unit(n.copy_to_vm(text("host")?, text("guest")?)?),
            "copy_from_vm" => {
                let guest = text("guest")?;
                let dir = text("target_dir")?;
                let host = if dir.is_empty() {
                    String::new()
                } else {
                    let base = Path::new(guest)
                        .file_name()
                        .map(PathBuf::from)
                        .unwrap_or_else(|| PathBuf::from("copied"));
                    Path::new(dir).join(base).display().to_string()
                };
                json!(n.copy_from_vm(guest, &host)?.display().to_string())
            }
            "start" => unit(n.start()?),
            "shutdown" => unit(state.shutdown(n)?),
            "reboot" => unit(state.reboot(n)?),
            "crash" => unit(n.crash()?),
            "is_running" => json!(n.is_running()),
            "block" => unit(n.block()?),
            "unblock" => unit(n.unblock()?),
            "set_link" => {
                let map = rhai_map(args.get("settings"));
                let faults = api::link_faults(&map)
                    .map_err(|e| bad_step(n, "set_link", StepErrorKind::from(e)))?;
                unit(n.set_link(faults)?)
            }
            "clear_link" => unit(n.clear_link()?),
            "forward_port" => unit(n.forward_port(port("host_port")?, port("guest_port")?)?),
            "reset_coverage" => unit(n.reset_coverage()?),
            "unsupported" => return Err(Refusal::Step(n.unsupported(text("call")?))),
            other => return Err(Refusal::Protocol(format!("unknown operation `{other}`"))),
        };
        Ok(value)
    }

    fn end_subtest(&mut self, args: &Map<String, Value>) -> Result<Value, Refusal> {
        let name = str_arg(args, "name")?;
        let Some((open, started)) = self.subtests.pop() else {
            return Err(Refusal::Protocol(format!(
                "subtest `{name}` was not started"
            )));
        };
        if open != name {
            return Err(Refusal::Protocol(format!(
                "subtest `{name}` ended inside `{open}`"
            )));
        }
        let failure = match args.get("failure") {
            None | Some(Value::Null) => None,
            Some(desc) => Some((desc, self.failure(Some(desc)))),
        };
        let id = failure
            .as_ref()
            .and_then(|(d, _)| d.get("id"))
            .and_then(Value::as_u64)
            .and_then(|id| usize::try_from(id).ok());
        match self
            .state
            .end_subtest(&open, started, failure.map(|(_, f)| f))
        {
            SubtestEnd::Passed => Ok(json!("ok")),
            SubtestEnd::Swallowed => Ok(json!("continue")),
            SubtestEnd::CoverageFailed(e) => Err(Refusal::Step(e)),
            SubtestEnd::Raise(f) => {
                // The exception goes on up: the step stays findable by id
                // for the script's final report.
                if let (Some(id), ScriptFailure::Traced { failure, .. }) = (id, f) {
                    if let ScriptFailure::Step(step) = *failure {
                        self.state.put_back_failure(id, step);
                    }
                }
                Ok(json!("raise"))
            }
        }
    }
}

fn position_of(line: Option<&Value>, column: Option<&Value>) -> Option<ScriptPosition> {
    let line = usize::try_from(line?.as_u64()?).ok()?;
    let column = column
        .and_then(Value::as_u64)
        .and_then(|c| usize::try_from(c).ok())
        .unwrap_or(1)
        .max(1);
    Some(ScriptPosition { line, column })
}

fn str_of<'a>(args: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    args.get(key).and_then(Value::as_str)
}

fn str_arg<'a>(args: &'a Map<String, Value>, key: &str) -> Result<&'a str, Refusal> {
    str_of(args, key).ok_or_else(|| Refusal::Protocol(format!("`{key}` must be a string")))
}

fn unit((): ()) -> Value {
    Value::Null
}

fn output(out: &crate::machine::Output) -> Value {
    json!({
        "status": out.status,
        "stdout": out.stdout_lossy(),
        "stderr": out.stderr_lossy(),
    })
}

fn bad_step(n: &Node, op: &str, kind: StepErrorKind) -> Refusal {
    Refusal::Step(StepError {
        machine: Some(n.name().to_owned()),
        step: format!("{op}()"),
        kind: Box::new(kind),
        console: Vec::new(),
        position: None,
    })
}

fn bad_argument(n: &Node, op: &str, what: String) -> StepError {
    StepError {
        machine: Some(n.name().to_owned()),
        step: format!("{op}()"),
        kind: Box::new(StepErrorKind::BadArgument { what }),
        console: Vec::new(),
        position: None,
    }
}

/// `set_link(loss=1, delay="200ms")`'s keyword arguments as the Rhai map
/// the one settings parser reads.
fn rhai_map(settings: Option<&Value>) -> rhai::Map {
    let mut map = rhai::Map::new();
    if let Some(Value::Object(o)) = settings {
        for (k, v) in o {
            let d = match v {
                Value::Number(n) => match n.as_i64() {
                    Some(i) => rhai::Dynamic::from(i),
                    None => rhai::Dynamic::from(n.as_f64().unwrap_or(f64::NAN)),
                },
                Value::String(s) => rhai::Dynamic::from(rhai::ImmutableString::from(s.as_str())),
                other => rhai::Dynamic::from(other.to_string()),
            };
            map.insert(k.as_str().into(), d);
        }
    }
    map
}
