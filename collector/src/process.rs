//! Owned child processes with a deadline: the transport of the local and
//! ssh shells.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::shell::{Output, ShellError};

/// How often a running child is polled for exit.
const POLL: Duration = Duration::from_millis(5);

/// Runs `cmd` in a process group of its own, feeds it `stdin`, collects its
/// output, and kills the whole group if it outlives `timeout`.
pub(crate) fn run(
    mut cmd: Command,
    stdin: &[u8],
    timeout: Duration,
    what: &str,
) -> Result<Output, ShellError> {
    use std::os::unix::process::CommandExt;
    cmd.process_group(0)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    let guard = GroupGuard { child: &mut child };
    let mut input = guard.child.stdin.take();
    let stdin = stdin.to_vec();
    let writer = thread::spawn(move || {
        if let Some(mut pipe) = input.take() {
            // A command that exits without reading its input closes the pipe:
            // that is not an error of ours.
            let _ = pipe.write_all(&stdin);
        }
    });
    let out_reader = spawn_reader(guard.child.stdout.take());
    let err_reader = spawn_reader(guard.child.stderr.take());

    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = guard.child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            kill_group(guard.child.id());
            let _ = guard.child.wait();
            return Err(ShellError::Timeout {
                command: what.to_string(),
                after: timeout,
            });
        }
        thread::sleep(POLL);
    };
    // The group may still hold the pipes open (a background child); it is
    // ours and the command is over, so end it.
    kill_group(guard.child.id());
    let _ = writer.join();
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    use std::os::unix::process::ExitStatusExt;
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    Ok(Output {
        status: code,
        stdout,
        stderr,
    })
}

fn spawn_reader<R: Read + Send + 'static>(pipe: Option<R>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut buf);
        }
        buf
    })
}

/// Kills the child's process group on every path out of [`run`].
struct GroupGuard<'a> {
    child: &'a mut Child,
}

impl Drop for GroupGuard<'_> {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            kill_group(self.child.id());
            let _ = self.child.wait();
        }
    }
}

fn kill_group(pid: u32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) takes plain integers and has no memory effects; the
    // negative pid names the process group we created for this child (the
    // child is its leader and has not been reaped yet, so the id is ours).
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.arg("-c").arg(script);
        c
    }

    #[test]
    fn output_and_status_are_exact() {
        let out = run(
            sh("printf 'a\\0b'; printf err >&2; exit 3"),
            b"",
            Duration::from_secs(10),
            "t",
        )
        .unwrap();
        assert_eq!(out.stdout, b"a\0b");
        assert_eq!(out.stderr, b"err");
        assert_eq!(out.status, 3);
    }

    #[test]
    fn stdin_is_fed() {
        let out = run(sh("cat"), b"hello\n", Duration::from_secs(10), "t").unwrap();
        assert_eq!(out.stdout, b"hello\n");
    }

    #[test]
    fn timeout_kills_the_group() {
        let err = run(
            sh("sleep 30 & sleep 30"),
            b"",
            Duration::from_millis(200),
            "sleepy",
        )
        .unwrap_err();
        assert!(matches!(err, ShellError::Timeout { .. }), "{err}");
    }

    #[test]
    fn background_child_holding_stdout_does_not_hang() {
        // Without the group kill this would hit the deadline and fail.
        let out = run(
            sh("sleep 30 & echo done"),
            b"",
            Duration::from_secs(20),
            "bg",
        )
        .unwrap();
        assert_eq!(out.stdout, b"done\n");
    }
}
