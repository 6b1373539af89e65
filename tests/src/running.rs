//! A `covnet` process running in the background, watched from outside:
//! its stderr as it comes, its run directory, its QEMU processes, signals
//! sent to it and an exit waited for with a deadline. Plus the process
//! table queries the cleanup tests make afterwards.
//!
//! Each run gets its own base directory for run directories (`TMPDIR`,
//! with `XDG_RUNTIME_DIR` removed), so "no run directory left" is a
//! question about that directory alone, whatever else runs on the host.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};

use crate::budget::capped;
use crate::lcov_tool::covnet_bin;

/// How often waits look again.
const POLL: Duration = Duration::from_millis(50);

/// A `covnet` process started by a test; SIGKILLed (and reaped) on drop.
#[derive(Debug)]
pub struct CovnetRun {
    child: Child,
    status: Option<ExitStatus>,
    stderr: Arc<Mutex<String>>,
    reader: Option<JoinHandle<()>>,
    /// What was run, for failure messages.
    pub command: String,
}

impl CovnetRun {
    /// Starts `covnet args...` in `cwd`, in its own process group, with
    /// run directories under `run_base`. Stdout is discarded, stderr kept.
    pub fn spawn(args: &[&str], cwd: &Path, run_base: &Path) -> Result<CovnetRun> {
        use std::os::unix::process::CommandExt as _;
        let bin = covnet_bin()?;
        let mut cmd = Command::new(&bin);
        cmd.args(args)
            .current_dir(cwd)
            .env("TMPDIR", run_base)
            .env_remove("XDG_RUNTIME_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0);
        let command = format!("{cmd:?}");
        let mut child = cmd
            .spawn()
            .with_context(|| format!("failed to start {command}"))?;
        let mut pipe = child.stderr.take().context("stderr is piped")?;
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let reader = thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let (Ok(mut s), Some(bytes)) = (sink.lock(), buf.get(..n)) {
                    s.push_str(&String::from_utf8_lossy(bytes));
                }
            }
        });
        Ok(CovnetRun {
            child,
            status: None,
            stderr,
            reader: Some(reader),
            command,
        })
    }

    /// The covnet process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything covnet wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The exit status once covnet has exited (reaping it).
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self.child.try_wait().context("try_wait on covnet")?;
        }
        Ok(self.status)
    }

    /// Waits until stderr has a line containing `needle` and returns the
    /// line; fails when covnet exits first or `timeout` passes.
    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> Result<String> {
        let (timeout, cut) = capped(timeout);
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.stderr();
            if let Some(line) = text.lines().find(|l| l.contains(needle)) {
                return Ok(line.to_owned());
            }
            if let Some(status) = self.try_wait()? {
                // Let the reader catch up with the last output.
                thread::sleep(POLL);
                let text = self.stderr();
                if let Some(line) = text.lines().find(|l| l.contains(needle)) {
                    return Ok(line.to_owned());
                }
                bail!("covnet exited ({status}) before printing `{needle}`\n{text}");
            }
            if Instant::now() >= deadline {
                bail!("covnet did not print `{needle}` within {timeout:?}{cut}\n{text}");
            }
            thread::sleep(POLL);
        }
    }

    /// The run directory covnet announced on stderr.
    pub fn run_dir(&mut self, timeout: Duration) -> Result<PathBuf> {
        let line = self.wait_for_line("run directory ", timeout)?;
        let (_, path) = line
            .split_once("run directory ")
            .context("run directory line")?;
        Ok(PathBuf::from(path.trim()))
    }

    /// Sends `signal` to the covnet process (not its group).
    pub fn signal(&mut self, signal: i32) -> Result<()> {
        let pid = libc::pid_t::try_from(self.pid()).context("pid out of range")?;
        // SAFETY: kill sends a signal to our own unreaped child (pid > 0);
        // no memory is involved.
        if unsafe { libc::kill(pid, signal) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("failed to send signal {signal} to covnet {pid}"));
        }
        Ok(())
    }

    /// Waits up to `timeout` for covnet to exit; SIGKILLs it and fails if
    /// it does not.
    pub fn wait(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let (timeout, cut) = capped(timeout);
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                if let Some(reader) = self.reader.take() {
                    let _ = reader.join();
                }
                return Ok(status);
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!(
                    "covnet did not exit within {timeout:?}{cut}: {}\n{}",
                    self.command,
                    self.stderr()
                );
            }
            thread::sleep(POLL);
        }
    }
}

impl Drop for CovnetRun {
    fn drop(&mut self) {
        if matches!(self.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Pid, parent pid and state of a process, from `/proc/<pid>/stat`.
fn stat(pid: u32) -> Option<(u32, char)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = text.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((ppid, state))
}

/// True when `pid` is a live process (not a zombie).
pub fn alive(pid: u32) -> bool {
    stat(pid).is_some_and(|(_, state)| state != 'Z' && state != 'X')
}

/// Every process id in `/proc`.
fn all_pids() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// Live processes whose parent is `pid`.
pub fn children_of(pid: u32) -> Vec<u32> {
    all_pids()
        .into_iter()
        .filter(|&p| stat(p).is_some_and(|(ppid, st)| ppid == pid && st != 'Z' && st != 'X'))
        .collect()
}

/// The command line of `pid` with NULs as spaces (empty if gone).
pub fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// Live QEMU processes whose command line mentions `needle` (a run
/// directory), as `(pid, command line)`.
pub fn qemu_processes(needle: &Path) -> Vec<(u32, String)> {
    let needle = needle.to_string_lossy().into_owned();
    all_pids()
        .into_iter()
        .filter(|&p| alive(p))
        .map(|p| (p, cmdline(p)))
        .filter(|(_, c)| c.contains("qemu-system") && c.contains(&needle))
        .collect()
}

/// Waits up to `timeout` for `done`; fails naming `what` otherwise.
pub fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) -> Result<()> {
    let (timeout, cut) = capped(timeout);
    let deadline = Instant::now() + timeout;
    while !done() {
        if Instant::now() >= deadline {
            bail!("{what}: still not the case after {timeout:?}{cut}");
        }
        thread::sleep(POLL);
    }
    Ok(())
}

/// The `covnet-*` run directories in `base`.
pub fn run_dirs_in(base: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(base)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("covnet-"))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}
