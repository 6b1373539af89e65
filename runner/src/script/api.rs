//! The Rhai side of test scripts: the engine, the globals (`start_all`,
//! `subtest`, `sleep`, `collect_coverage`, ...) and every [`Node`]
//! operation registered as a method of the machine variables.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rhai::{Dynamic, Engine, EvalAltResult, FnPtr, ImmutableString, NativeCallContext, INT};

use super::{script_position, ScriptFailure, State, StepFailureRef};
use crate::events::RunEvent;
use crate::net::faults::{parse_delay, parse_rate, FaultError, LinkFaults};
use crate::script::driver::{start_nodes, Node, StepError, StepErrorKind};

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
        engine.on_print(move |text| {
            s.ctx.events.send(RunEvent::Print {
                text: text.to_owned(),
            });
            if let Ok(mut o) = s.output.lock() {
                o.push_str(text);
                o.push('\n');
            }
        });
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
    engine
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

    let s = state.clone();
    engine.register_fn(
        "sleep",
        move |ctx: NativeCallContext, secs: Dynamic| -> RhaiResult<()> {
            let d = s.timeout(&ctx, None, "sleep()", &secs)?;
            s.ctx.sleep(d).map_err(|kind| {
                s.fail(
                    &ctx,
                    StepError {
                        machine: None,
                        step: "sleep()".to_owned(),
                        kind: Box::new(kind),
                        console: Vec::new(),
                        position: None,
                    },
                )
            })
        },
    );

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
            s.ctx.events.send(RunEvent::SubtestStart {
                name: name.to_owned(),
            });
            let started = Instant::now();
            let result = f.call_within_context::<Dynamic>(&ctx, ());
            let elapsed = started.elapsed();
            if s.coverage.as_ref().is_some_and(|c| c.per_subtest) {
                // What the subtest ran is its own capture, failed or not.
                if let Err(e) = s.collect_coverage(name) {
                    if result.is_ok() {
                        return Err(s.fail(&ctx, e));
                    }
                }
            }
            match result {
                Ok(v) => {
                    s.record(name, elapsed, None);
                    s.ctx.events.send(RunEvent::SubtestEnd {
                        name: name.to_owned(),
                        result: Ok(elapsed),
                    });
                    Ok(v)
                }
                Err(err) => {
                    let failure = s.describe(&err);
                    s.record(name, elapsed, Some(&failure));
                    s.ctx.events.send(RunEvent::SubtestEnd {
                        name: name.to_owned(),
                        result: Err(failure.to_string()),
                    });
                    let interrupted = s.ctx.interrupted().is_some();
                    if s.keep_going && !interrupted && !failure.is_infrastructure() {
                        if let Ok(mut failed) = s.failed_subtests.lock() {
                            failed.push(name.to_owned());
                        }
                        return Ok(Dynamic::UNIT);
                    }
                    // Re-raise with the full error kept for the final report.
                    s.failure_recorded
                        .store(true, std::sync::atomic::Ordering::SeqCst);
                    Err(match failure {
                        ScriptFailure::Step(step) => s.fail(&ctx, step),
                        _ => err,
                    })
                }
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
        |n, cmd: &ImmutableString, t| {
            let out = n.execute_within(cmd, t)?;
            let mut map = rhai::Map::new();
            map.insert("status".into(), Dynamic::from(INT::from(out.status)));
            map.insert("stdout".into(), Dynamic::from(out.stdout_lossy()));
            map.insert("stderr".into(), Dynamic::from(out.stderr_lossy()));
            Ok(map)
        },
    );
}

fn port_arg(n: &Node, port: INT) -> Result<u16, StepError> {
    u16::try_from(port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| StepError {
            machine: Some(n.name().to_owned()),
            step: format!("wait_for_open_port({port})"),
            kind: Box::new(StepErrorKind::BadTimeout {
                value: format!("{port} is not a TCP port (1..=65535)"),
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
    let waits: [(&'static str, TextOp<()>); 3] = [
        ("wait_for_service", |n, name, t| n.wait_for_service(name, t)),
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
        |n, port: &INT, t| n.wait_for_open_port(port_arg(n, *port)?, t),
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
                if name == "shutdown" {
                    s.collect_before_shutdown(&node)
                        .map_err(|e| s.fail(&ctx, e))?;
                }
                action(&node).map_err(|e| s.fail(&ctx, e))
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
    let s = state.clone();
    engine.register_fn(
        "copy_to_vm",
        move |ctx: NativeCallContext, node: Node, host: &str, guest: &str| -> RhaiResult<()> {
            node.copy_to_vm(host, guest).map_err(|e| s.fail(&ctx, e))
        },
    );
}

/// The link faults of a script's `m.set_link(#{...})` map: `loss`
/// (percent), `delay` and `jitter` (duration strings or seconds), `rate`
/// (a string like "1mbit" or bits/s). Missing keys are perfect.
fn link_faults(map: &rhai::Map) -> Result<LinkFaults, FaultError> {
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
