//! A minimal QMP client on the socket QEMU serves
//! (`-qmp unix:...,server=on,wait=off`): a connection with capabilities
//! negotiated, commands run one at a time, asynchronous events skipped.
//! Every read and write has a deadline.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// One QMP connection, capabilities negotiated; every command shares the
/// connection's deadline.
#[derive(Debug)]
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    deadline: Instant,
}

impl Qmp {
    /// Connects to `socket` and negotiates capabilities; every later
    /// command must finish by `deadline`.
    pub fn connect(socket: &Path, deadline: Instant) -> io::Result<Qmp> {
        let stream = UnixStream::connect(socket)?;
        let mut qmp = Qmp {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
            deadline,
        };
        // The greeting.
        read_reply(&mut qmp.reader, deadline, true)?;
        qmp.execute("qmp_capabilities", None)?;
        Ok(qmp)
    }

    /// Runs `command` (with `arguments`) and returns its `return` value.
    pub fn execute(
        &mut self,
        command: &str,
        arguments: Option<serde_json::Value>,
    ) -> io::Result<serde_json::Value> {
        let mut request = serde_json::json!({ "execute": command });
        if let Some(arguments) = arguments {
            request["arguments"] = arguments;
        }
        send(&mut self.writer, &request, self.deadline)?;
        read_reply(&mut self.reader, self.deadline, false)
    }

    /// The VM's run state (`running`, `inmigrate`, `postmigrate`, ...).
    pub fn status(&mut self) -> io::Result<String> {
        let reply = self.execute("query-status", None)?;
        Ok(reply
            .get("status")
            .and_then(|s| s.as_str())
            .unwrap_or_default()
            .to_owned())
    }
}

/// Runs the human-monitor command `command_line` (e.g. `hostfwd_add ...`)
/// and returns its output (empty on success for most commands).
pub fn human_command(socket: &Path, command_line: &str, timeout: Duration) -> io::Result<String> {
    let mut qmp = Qmp::connect(socket, Instant::now() + timeout)?;
    let reply = qmp.execute(
        "human-monitor-command",
        Some(serde_json::json!({ "command-line": command_line })),
    )?;
    Ok(reply.as_str().unwrap_or_default().to_owned())
}

fn left(deadline: Instant) -> io::Result<Duration> {
    let d = deadline.saturating_duration_since(Instant::now());
    if d.is_zero() {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "QEMU did not answer on QMP in time",
        ));
    }
    Ok(d)
}

fn send(w: &mut UnixStream, value: &serde_json::Value, deadline: Instant) -> io::Result<()> {
    w.set_write_timeout(Some(left(deadline)?))?;
    w.write_all(format!("{value}\n").as_bytes())
}

/// Reads lines up to the greeting (`greeting`) or the command's `return`
/// (skipping asynchronous events); a QMP `error` is an error.
fn read_reply(
    r: &mut BufReader<UnixStream>,
    deadline: Instant,
    greeting: bool,
) -> io::Result<serde_json::Value> {
    loop {
        r.get_ref().set_read_timeout(Some(left(deadline)?))?;
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "QEMU closed the QMP connection",
            ));
        }
        let value: serde_json::Value = serde_json::from_str(line.trim())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("QMP: {e}")))?;
        if greeting {
            if value.get("QMP").is_some() {
                return Ok(value);
            }
            continue;
        }
        if let Some(ret) = value.get("return") {
            return Ok(ret.clone());
        }
        if let Some(err) = value.get("error") {
            let desc = err
                .get("desc")
                .and_then(|d| d.as_str())
                .unwrap_or("unknown error");
            return Err(io::Error::other(format!("QMP error: {desc}")));
        }
    }
}
