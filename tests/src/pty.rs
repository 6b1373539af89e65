//! A program run on a pseudo-terminal, driven like a user at a terminal:
//! keys in, the screen's bytes out, window resizes. For `covnet shell`.

use std::io::{Read as _, Write as _};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};

use crate::budget::capped;

/// How often waits look again.
const POLL: Duration = Duration::from_millis(20);

/// A child whose stdin, stdout and stderr are the slave of a new pty and
/// whose controlling terminal it is (so it gets `SIGWINCH`). Killed and
/// reaped on drop.
#[derive(Debug)]
pub struct PtyChild {
    child: Child,
    master: std::fs::File,
    output: Arc<Mutex<Vec<u8>>>,
    /// Set once the pty's last writer is gone and everything was read.
    ended: Arc<AtomicBool>,
    /// Output before this offset was already matched by a wait.
    seen: usize,
    status: Option<ExitStatus>,
}

fn winsize(rows: u16, cols: u16) -> libc::winsize {
    libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

impl PtyChild {
    /// Starts `cmd` on a new pty of `rows` x `cols`.
    pub fn spawn(mut cmd: Command, rows: u16, cols: u16) -> Result<PtyChild> {
        use std::os::unix::process::CommandExt as _;
        let (mut master, mut slave) = (0, 0);
        let ws = winsize(rows, cols);
        // SAFETY: openpty writes two descriptors; name and termios are
        // null (unused), `ws` is a valid winsize.
        let r = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                &ws,
            )
        };
        if r != 0 {
            return Err(std::io::Error::last_os_error()).context("openpty");
        }
        // SAFETY: openpty succeeded: both are fresh descriptors we own.
        let (master, slave) =
            unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        cmd.stdin(Stdio::from(slave.try_clone()?))
            .stdout(Stdio::from(slave.try_clone()?))
            .stderr(Stdio::from(slave));
        // SAFETY: only async-signal-safe calls between fork and exec: a
        // new session whose controlling terminal is the pty (stdin).
        unsafe {
            cmd.pre_exec(move || {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let command = format!("{cmd:?}");
        let child = cmd
            .spawn()
            .with_context(|| format!("failed to start {command} on a pty"))?;
        drop(cmd);
        let master = std::fs::File::from(master);
        let mut reader = master.try_clone()?;
        let output = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&output);
        let ended = Arc::new(AtomicBool::new(false));
        let end = Arc::clone(&ended);
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // EIO once the last slave holder is gone: the end.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let (Ok(mut s), Some(b)) = (sink.lock(), buf.get(..n)) {
                    s.extend_from_slice(b);
                }
            }
            end.store(true, Ordering::SeqCst);
        });
        Ok(PtyChild {
            child,
            master,
            output,
            ended,
            seen: 0,
            status: None,
        })
    }

    /// Everything the program wrote so far.
    pub fn output(&self) -> Vec<u8> {
        self.output.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Types `keys`.
    pub fn send(&mut self, keys: &[u8]) -> Result<()> {
        self.master.write_all(keys).context("write to the pty")
    }

    /// Resizes the terminal (the program gets `SIGWINCH`).
    pub fn resize(&mut self, rows: u16, cols: u16) -> Result<()> {
        let ws = winsize(rows, cols);
        // SAFETY: TIOCSWINSZ reads a valid winsize.
        if unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) } != 0 {
            return Err(std::io::Error::last_os_error()).context("TIOCSWINSZ");
        }
        Ok(())
    }

    /// Waits until the output after the last match contains `needle`;
    /// returns the output from there to the end of the match.
    pub fn wait_for(&mut self, needle: &[u8], timeout: Duration) -> Result<Vec<u8>> {
        let (timeout, cut) = capped(timeout);
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.output();
            let fresh = out.get(self.seen..).unwrap_or(&[]);
            if let Some(i) = fresh.windows(needle.len()).position(|w| w == needle) {
                let upto = self.seen + i + needle.len();
                let got = out.get(self.seen..upto).unwrap_or(&[]).to_vec();
                self.seen = upto;
                return Ok(got);
            }
            let exited = self.try_wait()?;
            if Instant::now() >= deadline || exited.is_some() {
                bail!(
                    "no {:?} on the terminal within {timeout:?}{cut} (exit: {exited:?}); output after the last match:\n{}",
                    String::from_utf8_lossy(needle),
                    String::from_utf8_lossy(fresh).escape_debug()
                );
            }
            thread::sleep(POLL);
        }
    }

    /// The exit status once the program has exited.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self.child.try_wait().context("try_wait")?;
        }
        Ok(self.status)
    }

    /// Waits up to `timeout` for the program to exit and for everything it
    /// (and whatever else held the pty) wrote; returns the exit status and
    /// the whole output.
    pub fn finish(&mut self, timeout: Duration) -> Result<(ExitStatus, Vec<u8>)> {
        let (timeout, cut) = capped(timeout);
        let deadline = Instant::now() + timeout;
        let status = self.wait(timeout)?;
        while !self.ended.load(Ordering::SeqCst) {
            if Instant::now() >= deadline {
                bail!(
                    "the pty was still open {timeout:?}{cut} after start ({status}); output:\n{}",
                    String::from_utf8_lossy(&self.output()).escape_debug()
                );
            }
            thread::sleep(POLL);
        }
        Ok((status, self.output()))
    }

    /// Waits up to `timeout` for the program to exit.
    pub fn wait(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let (timeout, cut) = capped(timeout);
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_wait()? {
                return Ok(st);
            }
            if Instant::now() >= deadline {
                bail!(
                    "the program on the pty did not exit within {timeout:?}{cut}; output:\n{}",
                    String::from_utf8_lossy(&self.output()).escape_debug()
                );
            }
            thread::sleep(POLL);
        }
    }
}

impl Drop for PtyChild {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The screen a terminal shows after `bytes`, as lines: a small emulator
/// knowing carriage return, line feed, cursor up (`ESC [ n A`), erase to
/// the end of the screen (`ESC [ J`) and erase the line (`ESC [ 2 K`);
/// any other control sequence is an error.
pub fn screen(bytes: &[u8]) -> Result<Vec<String>> {
    let text = String::from_utf8_lossy(bytes);
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
                if chars.next() != Some('[') {
                    bail!("an escape that is no CSI sequence in {text:?}");
                }
                let mut n = String::new();
                while let Some(d) = chars.next_if(char::is_ascii_digit) {
                    n.push(d);
                }
                match chars.next() {
                    Some('A') => {
                        let up: usize = n.parse().unwrap_or(1);
                        row = row.saturating_sub(up);
                    }
                    Some('J') => {
                        lines.truncate(row + 1);
                        if let Some(l) = lines.get_mut(row) {
                            l.truncate(col);
                        }
                    }
                    Some('K') if n == "2" => {
                        if let Some(l) = lines.get_mut(row) {
                            l.clear();
                        }
                    }
                    other => bail!("unexpected control sequence {n}{other:?} in {text:?}"),
                }
            }
            c => {
                while lines.len() <= row {
                    lines.push(Vec::new());
                }
                if let Some(line) = lines.get_mut(row) {
                    while line.len() <= col {
                        line.push(' ');
                    }
                    if let Some(cell) = line.get_mut(col) {
                        *cell = c;
                    }
                }
                col += 1;
            }
        }
        while lines.len() <= row {
            lines.push(Vec::new());
        }
    }
    while lines.last().is_some_and(Vec::is_empty) {
        lines.pop();
    }
    Ok(lines.into_iter().map(|l| l.into_iter().collect()).collect())
}
