//! The Rhai side of test scripts: the engine, the globals (`start_all`,
//! `subtest`, `sleep`, `collect_coverage`, ...) and every [`Node`]
//! operation registered as a method of the machine variables.

use std::sync::Arc;
use std::time::Duration;

use rhai::{Dynamic, Engine, EvalAltResult, FnPtr, ImmutableString, NativeCallContext, INT};

use super::{script_position, ScriptFailure, State, StepFailureRef, SubtestEnd};
use crate::events::RunEvent;
use crate::net::faults::{parse_delay, parse_rate, FaultError, LinkFaults};
use crate::script::driver::{start_nodes, Node, ServiceVerb, StepError, StepErrorKind};

/// True for names usable as Rhai variables (and not keywords).
pub(super) fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') && !is_reserved(name)
}

fn is_reserved(name: &str) -> bool {
    const WORDS: &[&str] = &[
        "true",
        "false",
        "let",
        "const",
        "if",
        "else",
        "switch",
        "do",
        "while",
        "loop",
        "until",
        "for",
        "in",
        "continue",
        "break",
        "return",
        "throw",
        "try",
        "catch",
        "fn",
        "private",
        "import",
        "export",
        "as",
        "global",
        "Fn",
        "call",
        "curry",
        "this",
        "type_of",
        "print",
        "debug",
        "eval",
        "is_def_fn",
        "is_def_var",
        "is_shared",
        "var",
        "static",
        "shared",
        "sync",
        "async",
        "await",
        "yield",
        "default",
        "void",
        "null",
        "nil",
        "spawn",
        "thread",
        "go",
        "exit",
        "match",
        "case",
        "public",
        "protected",
        "new",
        "use",
        "with",
        "module",
        "package",
        "super",
        "goto",
        "macro",
    ];
    WORDS.contains(&name)
}

type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

pub(super) fn build_engine(state: &Arc<State>) -> Engine {
    let mut engine = Engine::new();
    engine.set_strict_variables(true);
    engine.set_max_expr_depths(256, 256);

    {
        let s = state.clone();
        engine.on_print(move |text| s.print(text));
    }
    {
        let s = state.clone();
        engine.on_debug(move |text, _src, pos| {
            let text = match script_position(pos) {
                Some(p) => format!("[{p}] {text}"),
                None => text.to_owned(),
            };
            s.ctx.events.send(RunEvent::Print { text });
        });
    }
    {
        let s = state.clone();
        engine.on_progress(move |_| s.ctx.interrupted().map(Dynamic::from));
    }

    engine
        .register_type_with_name::<Node>("Machine")
        .register_get("name", |n: &mut Node| n.name().to_owned())
        .register_fn("to_string", |n: &mut Node| {
            format!("machine `{}`", n.name())
        })
        .register_fn("to_debug", |n: &mut Node| format!("machine `{}`", n.name()))
        .register_fn("is_running", |n: Node| n.is_running());
    engine
        .register_type_with_name::<StepFailureRef>("StepFailure")
        .register_fn("to_string", |r: &mut StepFailureRef| r.summary.clone())
        .register_fn("to_debug", |r: &mut StepFailureRef| r.summary.clone())
        .register_get("message", |r: &mut StepFailureRef| r.summary.clone());

    register_globals(&mut engine, state);
    register_commands(&mut engine, state);
    register_waits(&mut engine, state);
    register_actions(&mut engine, state);
    register_services(&mut engine, state);
    engine
}

/// `sleep(secs)`: a pause that the time limit and Ctrl-C interrupt.
fn sleep_step(s: &State, ctx: &NativeCallContext, secs: &Dynamic) -> RhaiResult<()> {
    let d = s.timeout(ctx, None, "sleep()", secs)?;
    s.ctx.sleep(d).map_err(|kind| {
        s.fail(
            ctx,
            StepError {
                machine: None,
                step: "sleep()".to_owned(),
                kind: Box::new(kind),
                console: Vec::new(),
                position: None,
            },
        )
    })
}

fn register_globals(engine: &mut Engine, state: &Arc<State>) {
    let s = state.clone();
    engine.register_fn(
        "start_all",
        move |ctx: NativeCallContext| -> RhaiResult<()> {
            start_nodes(&s.nodes).map_err(|e| s.fail(&ctx, e))
        },
    );

    let s = state.clone();
    engine.register_fn(
        "machine",
        move |ctx: NativeCallContext, name: &str| -> RhaiResult<Node> {
            s.nodes
                .iter()
                .find(|n| n.name() == name)
                .cloned()
                .ok_or_else(|| {
                    let known: Vec<&str> = s.nodes.iter().map(|n| n.name()).collect();
                    EvalAltResult::ErrorRuntime(
                        format!(
                            "no machine `{name}` in the spec (machines: {})",
                            known.join(", ")
                        )
                        .into(),
                        ctx.call_position(),
                    )
                    .into()
                })
        },
    );

    let s = state.clone();
    engine.register_fn("machines", move || -> rhai::Array {
        s.nodes.iter().cloned().map(Dynamic::from).collect()
    });

    // Rhai's core package has its own `sleep(INT)` and `sleep(FLOAT)`,
    // which beat a `Dynamic` parameter and ignore the time limit and
    // Ctrl-C: covnet's is registered for each type a timeout may have.
    let s = state.clone();
    engine.register_fn("sleep", move |ctx: NativeCallContext, secs: INT| {
        sleep_step(&s, &ctx, &Dynamic::from(secs))
    });
    let s = state.clone();
    engine.register_fn("sleep", move |ctx: NativeCallContext, secs: rhai::FLOAT| {
        sleep_step(&s, &ctx, &Dynamic::from(secs))
    });
    let s = state.clone();
    engine.register_fn("sleep", move |ctx: NativeCallContext, secs: Dynamic| {
        sleep_step(&s, &ctx, &secs)
    });

    let s = state.clone();
    engine.register_fn(
        "collect_coverage",
        move |ctx: NativeCallContext, phase: &str| -> RhaiResult<()> {
            s.collect_coverage(phase).map_err(|e| s.fail(&ctx, e))
        },
    );

    let s = state.clone();
    engine.register_fn(
        "subtest",
        move |ctx: NativeCallContext, name: &str, f: FnPtr| -> RhaiResult<Dynamic> {
            let started = s.start_subtest(name);
            let result = f.call_within_context::<Dynamic>(&ctx, ());
            let (value, failure) = match result {
                Ok(v) => (Some(v), None),
                Err(err) => {
                    let failure = s.describe(&err);
                    (None, Some((err, failure)))
                }
            };
            let (err, failure) = match failure {
                Some((err, failure)) => (Some(err), Some(failure)),
                None => (None, None),
            };
            match s.end_subtest(name, started, failure) {
                SubtestEnd::Passed => Ok(value.unwrap_or(Dynamic::UNIT)),
                SubtestEnd::Swallowed => Ok(Dynamic::UNIT),
                SubtestEnd::CoverageFailed(e) => Err(s.fail(&ctx, e)),
                // Re-raise with the full error kept for the final report.
                SubtestEnd::Raise(ScriptFailure::Step(step)) => Err(s.fail(&ctx, step)),
                SubtestEnd::Raise(other) => Err(err.unwrap_or_else(|| {
                    EvalAltResult::ErrorRuntime(other.to_string().into(), ctx.call_position())
                        .into()
                })),
            }
        },
    );
}

/// Registers `name(node, arg)` with the default timeout chosen by
/// `default` and `name(node, arg, timeout)`.
fn register_timed<A, R>(
    engine: &mut Engine,
    state: &Arc<State>,
    name: &'static str,
    default: fn(&crate::script::driver::Timeouts) -> Duration,
    op: fn(&Node, &A, Duration) -> Result<R, StepError>,
) where
    A: Clone + Send + Sync + 'static,
    R: Clone + Send + Sync + 'static,
{
    let s = state.clone();
    engine.register_fn(
        name,
        move |ctx: NativeCallContext, node: Node, arg: A| -> RhaiResult<R> {
            op(&node, &arg, default(&s.ctx.timeouts)).map_err(|e| s.fail(&ctx, e))
        },
    );
    let s = state.clone();
    engine.register_fn(
        name,
        move |ctx: NativeCallContext, node: Node, arg: A, timeout: Dynamic| -> RhaiResult<R> {
            let t = s.timeout(&ctx, Some(&node), &format!("{name}()"), &timeout)?;
            op(&node, &arg, t).map_err(|e| s.fail(&ctx, e))
        },
    );
}

fn command_timeout(t: &crate::script::driver::Timeouts) -> Duration {
    t.command
}

fn wait_timeout(t: &crate::script::driver::Timeouts) -> Duration {
    t.wait
}

/// A node operation on a string argument within a timeout.
type TextOp<R> = fn(&Node, &ImmutableString, Duration) -> Result<R, StepError>;

fn register_commands(engine: &mut Engine, state: &Arc<State>) {
    let commands: [(&'static str, TextOp<String>); 2] = [
        ("succeed", |n, cmd, t| n.succeed_within(cmd, t)),
        ("fail", |n, cmd, t| n.fail_within(cmd, t)),
    ];
    for (name, op) in commands {
        register_timed(engine, state, name, command_timeout, op);
    }
    register_timed(
        engine,
        state,
        "execute",
        command_timeout,
        |n, cmd: &ImmutableString, t| n.execute_within(cmd, t).map(|o| output_map(&o)),
    );
}

/// A TCP port argument of step `step`.
pub(super) fn port_arg(n: &Node, step: &str, port: INT) -> Result<u16, StepError> {
    u16::try_from(port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| StepError {
            machine: Some(n.name().to_owned()),
            step: format!("{step}({port})"),
            kind: Box::new(StepErrorKind::BadArgument {
                what: format!("{port} is not a TCP port (1..=65535)"),
            }),
            console: Vec::new(),
            position: None,
        })
}

fn register_waits(engine: &mut Engine, state: &Arc<State>) {
    let until: [(&'static str, TextOp<String>); 2] = [
        ("wait_until_succeeds", |n, cmd, t| {
            n.wait_until_succeeds(cmd, t)
        }),
        ("wait_until_fails", |n, cmd, t| n.wait_until_fails(cmd, t)),
    ];
    for (name, op) in until {
        register_timed(engine, state, name, wait_timeout, op);
    }
    let waits: [(&'static str, TextOp<()>); 4] = [
        ("wait_for_service", |n, name, t| n.wait_for_service(name, t)),
        ("wait_for_unit", |n, name, t| n.wait_for_service(name, t)),
        ("wait_for_file", |n, path, t| n.wait_for_file(path, t)),
        ("wait_for_console_text", |n, text, t| {
            n.wait_for_console_text(text, t)
        }),
    ];
    for (name, op) in waits {
        register_timed(engine, state, name, wait_timeout, op);
    }
    register_timed(
        engine,
        state,
        "wait_for_open_port",
        wait_timeout,
        |n, port: &INT, t| n.wait_for_open_port(port_arg(n, "wait_for_open_port", *port)?, t),
    );
    register_timed(
        engine,
        state,
        "wait_for_closed_port",
        wait_timeout,
        |n, port: &INT, t| n.wait_for_closed_port(port_arg(n, "wait_for_closed_port", *port)?, t),
    );
    register_timed(
        engine,
        state,
        "wait_for_open_unix_socket",
        wait_timeout,
        |n, path: &ImmutableString, t| n.wait_for_open_unix_socket(path, false, t),
    );
    register_timed(
        engine,
        state,
        "wait_for_open_unix_datagram_socket",
        wait_timeout,
        |n, path: &ImmutableString, t| n.wait_for_open_unix_socket(path, true, t),
    );
    // wait_until_tty_matches(tty, pattern[, timeout])
    let s = state.clone();
    engine.register_fn(
        "wait_until_tty_matches",
        move |ctx: NativeCallContext, node: Node, tty: &str, pattern: &str| -> RhaiResult<()> {
            node.wait_until_tty_matches(tty, pattern, s.ctx.timeouts.wait)
                .map_err(|e| s.fail(&ctx, e))
        },
    );
    let s = state.clone();
    engine.register_fn(
        "wait_until_tty_matches",
        move |ctx: NativeCallContext,
              node: Node,
              tty: &str,
              pattern: &str,
              timeout: Dynamic|
              -> RhaiResult<()> {
            let t = s.timeout(&ctx, Some(&node), "wait_until_tty_matches()", &timeout)?;
            node.wait_until_tty_matches(tty, pattern, t)
                .map_err(|e| s.fail(&ctx, e))
        },
    );
}

/// An execute-like result as a Rhai map: `status`, `stdout`, `stderr`.
fn output_map(out: &crate::machine::Output) -> rhai::Map {
    let mut map = rhai::Map::new();
    map.insert("status".into(), Dynamic::from(INT::from(out.status)));
    map.insert("stdout".into(), Dynamic::from(out.stdout_lossy()));
    map.insert("stderr".into(), Dynamic::from(out.stderr_lossy()));
    map
}

fn register_services(engine: &mut Engine, state: &Arc<State>) {
    register_timed(
        engine,
        state,
        "systemctl",
        command_timeout,
        |n, query: &ImmutableString, t| n.systemctl(query, t).map(|o| output_map(&o)),
    );
    register_timed(
        engine,
        state,
        "start_job",
        command_timeout,
        |n, name: &ImmutableString, t| {
            n.control_service(ServiceVerb::Start, name, t)
                .map(|o| output_map(&o))
        },
    );
    register_timed(
        engine,
        state,
        "stop_job",
        command_timeout,
        |n, name: &ImmutableString, t| {
            n.control_service(ServiceVerb::Stop, name, t)
                .map(|o| output_map(&o))
        },
    );
}

fn register_actions(engine: &mut Engine, state: &Arc<State>) {
    type Action = fn(&Node) -> Result<(), StepError>;
    let actions: [(&str, Action); 6] = [
        ("start", Node::start),
        ("shutdown", Node::shutdown),
        ("crash", Node::crash),
        ("block", Node::block),
        ("unblock", Node::unblock),
        ("reset_coverage", Node::reset_coverage),
    ];
    for (name, action) in actions {
        let s = state.clone();
        engine.register_fn(
            name,
            move |ctx: NativeCallContext, node: Node| -> RhaiResult<()> {
                let result = match name {
                    "shutdown" => s.shutdown(&node),
                    _ => action(&node),
                };
                result.map_err(|e| s.fail(&ctx, e))
            },
        );
    }
    let s = state.clone();
    engine.register_fn(
        "reboot",
        move |ctx: NativeCallContext, node: Node| -> RhaiResult<()> {
            s.reboot(&node).map_err(|e| s.fail(&ctx, e))
        },
    );
    let s = state.clone();
    engine.register_fn(
        "forward_port",
        move |ctx: NativeCallContext, node: Node, host: INT, guest: INT| -> RhaiResult<()> {
            let port = |p: INT| port_arg(&node, "forward_port", p);
            let (h, g) = (port(host), port(guest));
            h.and_then(|h| g.map(|g| (h, g)))
                .and_then(|(h, g)| node.forward_port(h, g))
                .map_err(|e| s.fail(&ctx, e))
        },
    );
    for text_op in ["send_console", "send_chars"] {
        let s = state.clone();
        engine.register_fn(
            text_op,
            move |ctx: NativeCallContext, node: Node, text: &str| -> RhaiResult<()> {
                node.send_console(text).map_err(|e| s.fail(&ctx, e))
            },
        );
    }
    engine.register_fn("get_console_text", |node: Node| node.console_text());
    for call in [
        "screenshot",
        "send_key",
        "wait_for_x",
        "wait_for_text",
        "get_screen_text",
        "wait_for_window",
        "send_monitor_command",
    ] {
        let s = state.clone();
        engine.register_fn(
            call,
            move |ctx: NativeCallContext, node: Node| -> RhaiResult<()> {
                Err(s.fail(&ctx, node.unsupported(call)))
            },
        );
        let s = state.clone();
        engine.register_fn(
            call,
            move |ctx: NativeCallContext, node: Node, _arg: Dynamic| -> RhaiResult<()> {
                Err(s.fail(&ctx, node.unsupported(call)))
            },
        );
    }

    let s = state.clone();
    engine.register_fn(
        "set_link",
        move |ctx: NativeCallContext, node: Node, settings: rhai::Map| -> RhaiResult<()> {
            let faults = link_faults(&settings).map_err(|e| {
                s.fail(
                    &ctx,
                    StepError {
                        machine: Some(node.name().to_owned()),
                        step: "set_link()".to_owned(),
                        kind: Box::new(e.into()),
                        console: Vec::new(),
                        position: None,
                    },
                )
            })?;
            node.set_link(faults).map_err(|e| s.fail(&ctx, e))
        },
    );
    let s = state.clone();
    engine.register_fn(
        "clear_link",
        move |ctx: NativeCallContext, node: Node| -> RhaiResult<()> {
            node.clear_link().map_err(|e| s.fail(&ctx, e))
        },
    );
    let s = state.clone();
    engine.register_fn(
        "partition",
        move |ctx: NativeCallContext, groups: rhai::Array| -> RhaiResult<()> {
            let groups = partition_groups(&groups).map_err(|e| {
                s.fail(
                    &ctx,
                    StepError {
                        machine: None,
                        step: "partition()".to_owned(),
                        kind: Box::new(e.into()),
                        console: Vec::new(),
                        position: None,
                    },
                )
            })?;
            s.ctx.partition(&groups).map_err(|e| s.fail(&ctx, e))
        },
    );
    let s = state.clone();
    engine.register_fn("heal", move |ctx: NativeCallContext| -> RhaiResult<()> {
        s.ctx.heal().map_err(|e| s.fail(&ctx, e))
    });

    let s = state.clone();
    engine.register_fn(
        "copy_from_vm",
        move |ctx: NativeCallContext, node: Node, guest: &str, host: &str| -> RhaiResult<String> {
            node.copy_from_vm(guest, host)
                .map(|p| p.display().to_string())
                .map_err(|e| s.fail(&ctx, e))
        },
    );
    let s = state.clone();
    engine.register_fn(
        "copy_from_vm",
        move |ctx: NativeCallContext, node: Node, guest: &str| -> RhaiResult<String> {
            node.copy_from_vm(guest, "")
                .map(|p| p.display().to_string())
                .map_err(|e| s.fail(&ctx, e))
        },
    );
    for name in ["copy_to_vm", "copy_from_host"] {
        let s = state.clone();
        engine.register_fn(
            name,
            move |ctx: NativeCallContext, node: Node, host: &str, guest: &str| -> RhaiResult<()> {
                node.copy_to_vm(host, guest).map_err(|e| s.fail(&ctx, e))
            },
        );
    }
}

/// The link faults of a script's `m.set_link(#{...})` map: `loss`
/// (percent), `delay` and `jitter` (duration strings or seconds), `rate`
/// (a string like "1mbit" or bits/s). Missing keys are perfect.
pub(super) fn link_faults(map: &rhai::Map) -> Result<LinkFaults, FaultError> {
    let mut f = LinkFaults::default();
    for (key, value) in map {
        let wrong = |expected| FaultError::WrongType {
            key: key.to_string(),
            expected,
        };
        match key.as_str() {
            "loss" => {
                f.loss = number(value).ok_or_else(|| wrong("a number (percent)"))?;
            }
            field @ ("delay" | "jitter") => {
                let field = if field == "delay" { "delay" } else { "jitter" };
                let d = if let Some(text) = value.read_lock::<ImmutableString>() {
                    parse_delay(field, &text)?
                } else {
                    let secs = number(value)
                        .filter(|s| s.is_finite() && *s >= 0.0)
                        .ok_or_else(|| wrong("a duration like \"200ms\" or seconds"))?;
                    Duration::try_from_secs_f64(secs)
                        .map_err(|_| wrong("a duration like \"200ms\" or seconds"))?
                };
                if field == "delay" {
                    f.delay = d;
                } else {
                    f.jitter = d;
                }
            }
            "rate" => {
                f.rate = Some(if let Some(text) = value.read_lock::<ImmutableString>() {
                    parse_rate(&text)?
                } else {
                    let bits = value
                        .as_int()
                        .ok()
                        .and_then(|i| u64::try_from(i).ok())
                        .ok_or_else(|| wrong("a rate like \"1mbit\" or bits/s"))?;
                    parse_rate(&format!("{bits}bit"))?
                });
            }
            _ => {
                return Err(FaultError::UnknownSetting {
                    key: key.to_string(),
                })
            }
        }
    }
    f.validate()?;
    Ok(f)
}

fn number(value: &Dynamic) -> Option<f64> {
    value
        .as_float()
        .ok()
        .or_else(|| value.as_int().ok().map(|i| i as f64))
}

/// `partition([[a, b], [c]])`: groups of machines (or machine names).
fn partition_groups(groups: &rhai::Array) -> Result<Vec<Vec<String>>, FaultError> {
    let wrong = || FaultError::WrongType {
        key: "partition".to_owned(),
        expected: "an array of arrays of machines, like [[a, b], [c]]",
    };
    groups
        .iter()
        .map(|group| {
            let group = group.read_lock::<rhai::Array>().ok_or_else(wrong)?;
            group
                .iter()
                .map(|m| {
                    if let Some(node) = m.read_lock::<Node>() {
                        Ok(node.name().to_owned())
                    } else if let Some(name) = m.read_lock::<ImmutableString>() {
                        Ok(name.to_string())
                    } else {
                        Err(wrong())
                    }
                })
                .collect()
        })
        .collect()
}
