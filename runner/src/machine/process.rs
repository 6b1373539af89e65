//! Owned child processes (QEMU, a namespace machine's init): killed when
//! covnet dies, stopped with SIGTERM → grace → SIGKILL and reaped with one
//! deadline.
//!
//! This is the runner's platform module: every `unsafe` call into libc lives
//! in the private `sys` module below, each with its `// SAFETY:` justification.
//!
//! `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits,
//! not the process. Children are therefore forked (or cloned, for namespace
//! machines) on one spawner thread that lives as long as the process, so a
//! machine started from a short-lived thread (a test-script worker) is not
//! killed when that thread ends.

use std::io;
use std::process::{Child, Command, ExitStatus};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// How often waits poll the child for exit.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Deadline for reaping a child after SIGKILL.
pub const REAP_DEADLINE: Duration = Duration::from_secs(5);

/// A failure to spawn, signal, or reap an owned process.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessError {
    /// The program could not be started.
    #[error("failed to spawn `{program}`")]
    Spawn {
        /// The program.
        program: String,
        /// Underlying error.
        #[source]
        source: io::Error,
    },
    /// Sending a signal to the process group failed.
    #[error("failed to send signal {signal} to process group {pgid} (`{label}`)")]
    Signal {
        /// What the process is.
        label: String,
        /// Process group id.
        pgid: u32,
        /// Signal number.
        signal: i32,
        /// Underlying error.
        #[source]
        source: io::Error,
    },
    /// Waiting for the process failed.
    #[error("failed to wait for process {pid} (`{label}`)")]
    Wait {
        /// What the process is.
        label: String,
        /// Process id.
        pid: u32,
        /// Underlying error.
        #[source]
        source: io::Error,
    },
    /// The process was still there after SIGKILL and the reap deadline.
    #[error("process {pid} (`{label}`) survived SIGKILL for {}s", waited.as_secs_f64())]
    Survived {
        /// What the process is.
        label: String,
        /// Process id.
        pid: u32,
        /// How long it was waited for after SIGKILL.
        waited: Duration,
    },
}

/// A child process of covnet that dies with it: a program spawned with
/// [`OwnedChild::spawn`] (leader of its own process group) or a process
/// cloned by hand and adopted with [`OwnedChild::adopt`] (a namespace
/// machine's init, signalled alone: killing it ends its PID namespace).
///
/// Stop it with [`OwnedChild::terminate`] or [`OwnedChild::kill`]; dropping
/// a still-running child logs a warning and kills it.
#[derive(Debug)]
pub struct OwnedChild {
    label: String,
    pid: u32,
    /// `None` for an adopted process, reaped with `waitpid`.
    child: Option<Child>,
    status: Option<ExitStatus>,
}

type Job = Box<dyn FnOnce() + Send>;

/// The long-lived thread that forks and clones every child (see the
/// module docs).
fn spawner() -> &'static Mutex<mpsc::Sender<Job>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        let spawned = thread::Builder::new()
            .name("covnet-spawner".into())
            .spawn(move || {
                for job in rx {
                    job();
                }
            });
        if let Err(err) = spawned {
            // Without the thread every request fails with a clear error below.
            crate::diag::warn(format!("cannot start the spawner thread: {err}"));
        }
        Mutex::new(tx)
    })
}

/// Runs `f` on the spawner thread and returns its result: every process
/// covnet creates (fork or clone) must be created there, so that its
/// `PR_SET_PDEATHSIG` follows covnet and not a short-lived thread.
pub fn on_spawner<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> io::Result<R> {
    let (tx, rx) = mpsc::channel();
    let job: Job = Box::new(move || {
        let _ = tx.send(f());
    });
    spawner()
        .lock()
        .map_err(|_| io::Error::other("spawner lock poisoned"))?
        .send(job)
        .map_err(|_| io::Error::other("spawner thread is gone"))?;
    rx.recv()
        .map_err(|_| io::Error::other("spawner thread dropped the request"))
}

impl OwnedChild {
    /// Spawns `cmd` as the leader of a new process group, with
    /// `PR_SET_PDEATHSIG(SIGKILL)` so it dies when covnet dies, even by
    /// SIGKILL. `label` names it in errors and logs.
    pub fn spawn(mut cmd: Command, label: &str) -> Result<OwnedChild, ProcessError> {
        use std::os::unix::process::CommandExt;
        let program = cmd.get_program().to_string_lossy().into_owned();
        let parent = sys::getpid();
        // SAFETY: the closure runs in the forked child before exec and only
        // calls async-signal-safe functions (setpgid, prctl, getppid) through
        // `sys`, allocating nothing.
        unsafe {
            cmd.pre_exec(move || sys::child_setup(parent));
        }
        let child = on_spawner(move || cmd.spawn())
            .and_then(|spawned| spawned)
            .map_err(|source| ProcessError::Spawn { program, source })?;
        Ok(OwnedChild {
            label: label.to_owned(),
            pid: child.id(),
            child: Some(child),
            status: None,
        })
    }

    /// Takes ownership of `pid`, a child of this process created on the
    /// spawner thread ([`on_spawner`]) that is not yet reaped. Signals go
    /// to the process alone, not to a process group.
    pub fn adopt(pid: u32, label: &str) -> OwnedChild {
        OwnedChild {
            label: label.to_owned(),
            pid,
            child: None,
            status: None,
        }
    }

    /// The child's pid, which is also its process group id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// What the process is, as given to [`OwnedChild::spawn`].
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The exit status if the child has exited (reaping it), else `None`.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>, ProcessError> {
        if let Some(status) = self.status {
            return Ok(Some(status));
        }
        let status = match self.child.as_mut() {
            Some(child) => child.try_wait(),
            None => sys::try_waitpid(self.pid),
        }
        .map_err(|source| ProcessError::Wait {
            label: self.label.clone(),
            pid: self.pid,
            source,
        })?;
        self.status = status;
        Ok(status)
    }

    /// True until the child has been seen to exit.
    pub fn is_running(&mut self) -> bool {
        matches!(self.try_wait(), Ok(None))
    }

    /// Waits up to `timeout` for the child to exit by itself.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<ExitStatus>, ProcessError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// Sends `signal` to the child's whole process group (to an adopted
    /// process alone). Does nothing once the child is reaped (its id may be
    /// reused).
    pub fn signal_group(&mut self, signal: i32) -> Result<(), ProcessError> {
        if self.status.is_some() {
            return Ok(());
        }
        let sent = match self.child {
            Some(_) => sys::killpg(self.pid, signal),
            None => sys::kill(self.pid, signal),
        };
        match sent {
            Ok(()) => Ok(()),
            Err(err) if err.raw_os_error() == Some(libc::ESRCH) => Ok(()),
            Err(source) => Err(ProcessError::Signal {
                label: self.label.clone(),
                pgid: self.pid,
                signal,
                source,
            }),
        }
    }

    /// SIGTERM to the group, up to `grace` to exit, then SIGKILL and a reap
    /// within [`REAP_DEADLINE`]. Returns how the child ended.
    pub fn terminate(&mut self, grace: Duration) -> Result<ExitStatus, ProcessError> {
        if let Some(status) = self.try_wait()? {
            return Ok(status);
        }
        self.signal_group(libc::SIGTERM)?;
        if let Some(status) = self.wait_timeout(grace)? {
            return Ok(status);
        }
        self.kill()
    }

    /// SIGKILL to the group and a reap within [`REAP_DEADLINE`].
    pub fn kill(&mut self) -> Result<ExitStatus, ProcessError> {
        if let Some(status) = self.try_wait()? {
            return Ok(status);
        }
        self.signal_group(libc::SIGKILL)?;
        match self.wait_timeout(REAP_DEADLINE)? {
            Some(status) => Ok(status),
            None => Err(ProcessError::Survived {
                label: self.label.clone(),
                pid: self.pid,
                waited: REAP_DEADLINE,
            }),
        }
    }
}

impl OwnedChild {
    /// SIGKILL to what is left of a spawned child's process group once the
    /// leader is gone: the processes it started that stayed in the group.
    /// Safe against pid reuse: a pid is not reused while a process group
    /// of that id has members, and only then is a signal sent. Returns once
    /// they are gone (SIGKILL is delivered asynchronously), or after
    /// [`REAP_DEADLINE`].
    pub fn kill_stragglers(&self) {
        if self.child.is_none() {
            return;
        }
        if group_members(self.pid).is_empty() {
            return;
        }
        let _ = sys::killpg(self.pid, libc::SIGKILL);
        let deadline = Instant::now() + REAP_DEADLINE;
        while !group_members(self.pid).is_empty() && Instant::now() < deadline {
            std::thread::sleep(POLL_INTERVAL);
        }
    }
}

impl Drop for OwnedChild {
    fn drop(&mut self) {
        if matches!(self.try_wait(), Ok(Some(_))) {
            return;
        }
        crate::diag::warn(format!(
            "`{}` (pid {}) still running when dropped; killing its process group",
            self.label, self.pid
        ));
        if let Err(err) = self.kill() {
            crate::diag::warn(err.to_string());
        }
    }
}

/// True when a process with this pid exists and is not a zombie.
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name, which may
        // itself contain parentheses: look after the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Pids of all live processes whose process group is `pgid`.
pub fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    let (_, rest) = stat.rsplit_once(')')?;
                    let mut fields = rest.split_whitespace();
                    let state = fields.next()?;
                    let _ppid = fields.next()?;
                    let pgrp = fields.next()?.parse::<u32>().ok()?;
                    Some(pgrp == pgid && state != "Z" && state != "X")
                })
                .unwrap_or(false)
        })
        .collect()
}

/// Thin safe wrappers over the libc calls the runner needs.
pub(crate) mod sys {
    use std::fs::File;
    use std::io;
    use std::os::fd::AsRawFd;

    /// This process's pid.
    pub(crate) fn getpid() -> libc::pid_t {
        // SAFETY: getpid has no preconditions and cannot fail.
        unsafe { libc::getpid() }
    }

    /// Runs in the forked child before exec: new process group, SIGKILL
    /// when the parent thread dies, and a check that the parent did not
    /// die before the prctl took effect; umask 077, so the sockets and
    /// files a child (QEMU) creates in the run directory are owner-only.
    /// Async-signal-safe, no allocation.
    pub(crate) fn child_setup(parent: libc::pid_t) -> io::Result<()> {
        // SAFETY: umask only changes this (child) process's file mode
        // creation mask and cannot fail.
        unsafe {
            libc::umask(0o077);
        }
        // SAFETY: setpgid(0, 0) only changes this (child) process's group.
        if unsafe { libc::setpgid(0, 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: PR_SET_PDEATHSIG takes a signal number as its only
        // argument; the remaining varargs are ignored by the kernel.
        if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // covnet itself runs without transparent huge pages (main.rs); the
        // flag is inherited across exec, and the child (QEMU's guest RAM)
        // should have them.
        // SAFETY: PR_SET_THP_DISABLE takes one integer argument; the rest
        // are ignored. Failure leaves the inherited setting.
        unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 0, 0, 0, 0) };
        // SAFETY: getppid has no preconditions and cannot fail.
        if unsafe { libc::getppid() } != parent {
            // The parent died between fork and prctl: do not outlive it.
            return Err(io::Error::other("parent exited during spawn"));
        }
        Ok(())
    }

    /// Reaps child `pid` if it has exited (`WNOHANG`; `__WALL` so that a
    /// cloned child without an exit signal is seen too).
    pub(crate) fn try_waitpid(pid: u32) -> io::Result<Option<std::process::ExitStatus>> {
        use std::os::unix::process::ExitStatusExt;
        let pid = libc::pid_t::try_from(pid)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "pid out of range"))?;
        let mut st = 0;
        // SAFETY: waitpid on our own child with WNOHANG writes only `st`.
        let r = unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG | libc::__WALL) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((r == pid).then(|| std::process::ExitStatus::from_raw(st)))
    }

    /// Sends `signal` to process `pid` alone.
    pub(crate) fn kill(pid: u32, signal: i32) -> io::Result<()> {
        let pid = libc::pid_t::try_from(pid)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "pid out of range"))?;
        if pid <= 1 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "refusing to signal pid <= 1",
            ));
        }
        // SAFETY: kill of one positive pid (> 1, checked above) touches no
        // memory; callers only signal their own unreaped children, whose
        // pid cannot have been reused.
        if unsafe { libc::kill(pid, signal) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Sends `signal` to process group `pgid`.
    pub(crate) fn killpg(pgid: u32, signal: i32) -> io::Result<()> {
        let pgid = libc::pid_t::try_from(pgid)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "pgid out of range"))?;
        if pgid <= 1 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "refusing to signal process group <= 1",
            ));
        }
        // SAFETY: kill with a negative pid signals that process group; it
        // touches no memory. pgid > 1 is checked above so this never means
        // "every process" (-1) or "own group" (0).
        if unsafe { libc::kill(-pgid, signal) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Closes a raw file descriptor returned by an ioctl (errors ignored:
    /// nothing useful can be done about them).
    pub(crate) fn close_fd(fd: i32) {
        // SAFETY: `fd` was just returned to us by the kernel and is owned by
        // no Rust object, so closing it cannot invalidate anyone else's fd.
        unsafe {
            libc::close(fd);
        }
    }

    /// An argument-less ioctl on `file` (e.g. `KVM_GET_API_VERSION`),
    /// returning the ioctl's non-negative result.
    pub(crate) fn ioctl_no_arg(file: &File, request: libc::c_ulong) -> io::Result<i32> {
        // SAFETY: the fd is valid for the lifetime of `file`; the requests
        // used with this wrapper take no argument (the third argument 0 is
        // ignored by the kernel) and write no memory.
        let ret = unsafe { libc::ioctl(file.as_raw_fd(), request, 0 as libc::c_ulong) };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(ret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sleeper(script: &str) -> Command {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c").arg(script);
        cmd
    }

    #[test]
    fn child_leads_its_own_group() {
        let mut child = OwnedChild::spawn(sleeper("sleep 30"), "sleeper").expect("spawn sh");
        let pid = child.pid();
        let members = group_members(pid);
        assert!(members.contains(&pid), "group {pid} members: {members:?}");
        child.kill().expect("kill");
        assert!(!pid_alive(pid));
    }

    #[test]
    fn terminate_kills_the_whole_group_including_grandchildren() {
        // The shell ignores SIGTERM and has a background grandchild: only
        // SIGKILL to the group ends both.
        let mut child = OwnedChild::spawn(
            sleeper("trap '' TERM; sleep 30 & sleep 30; wait"),
            "stubborn",
        )
        .expect("spawn sh");
        let pgid = child.pid();
        // Wait until the grandchildren exist (bounded).
        let deadline = Instant::now() + Duration::from_secs(5);
        while group_members(pgid).len() < 3 && Instant::now() < deadline {
            thread::sleep(POLL_INTERVAL);
        }
        assert!(group_members(pgid).len() >= 3, "{:?}", group_members(pgid));
        let status = child
            .terminate(Duration::from_millis(200))
            .expect("terminate");
        assert!(!status.success());
        let deadline = Instant::now() + Duration::from_secs(5);
        while !group_members(pgid).is_empty() && Instant::now() < deadline {
            thread::sleep(POLL_INTERVAL);
        }
        assert_eq!(group_members(pgid), Vec::<u32>::new());
    }

    #[test]
    fn terminate_is_graceful_when_the_child_obeys() {
        let mut child = OwnedChild::spawn(sleeper("exec sleep 30"), "sleep").expect("spawn");
        let status = child.terminate(Duration::from_secs(10)).expect("terminate");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGTERM));
    }

    #[test]
    fn spawn_failure_names_the_program() {
        let err = OwnedChild::spawn(Command::new("/nonexistent/qemu"), "x").unwrap_err();
        assert_eq!(err.to_string(), "failed to spawn `/nonexistent/qemu`");
    }

    #[test]
    fn child_spawned_from_a_finished_thread_survives_it() {
        let mut child = thread::spawn(|| OwnedChild::spawn(sleeper("sleep 30"), "s"))
            .join()
            .expect("thread")
            .expect("spawn");
        thread::sleep(Duration::from_millis(100));
        assert!(child.is_running());
        child.kill().expect("kill");
    }

    #[test]
    fn drop_kills_a_running_child() {
        let child = OwnedChild::spawn(sleeper("sleep 30"), "dropped").expect("spawn");
        let pid = child.pid();
        drop(child);
        assert!(!pid_alive(pid));
    }

    /// Re-runs this test binary as a stand-in for covnet: it spawns a
    /// child and is then SIGKILLed; the child must die with it.
    #[test]
    fn child_dies_when_covnet_is_sigkilled() {
        const HELPER: &str = "COVNET_PDEATHSIG_HELPER";
        if std::env::var_os(HELPER).is_some() {
            let child = OwnedChild::spawn(sleeper("sleep 300"), "orphan-to-be").expect("spawn");
            println!("PID {}", child.pid());
            use std::io::Write as _;
            let _ = std::io::stdout().flush();
            thread::sleep(Duration::from_secs(300));
            return;
        }
        let exe = std::env::current_exe().expect("test binary");
        let mut cmd = Command::new(exe);
        cmd.args([
            "--exact",
            "machine::process::tests::child_dies_when_covnet_is_sigkilled",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER, "1")
        .stdout(std::process::Stdio::piped());
        let mut helper = OwnedChild::spawn(cmd, "helper").expect("spawn helper");
        let stdout = helper
            .child
            .as_mut()
            .and_then(|c| c.stdout.take())
            .expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            use std::io::BufRead as _;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                // libtest prints the test name on the same line first.
                if let Some((_, pid)) = line.split_once("PID ") {
                    let _ = tx.send(pid.trim().parse::<u32>().ok());
                    return;
                }
            }
        });
        let grandchild = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("helper reports its child")
            .expect("numeric pid");
        assert!(pid_alive(grandchild));
        helper.kill().expect("SIGKILL the helper");
        let deadline = Instant::now() + Duration::from_secs(10);
        while pid_alive(grandchild) && Instant::now() < deadline {
            thread::sleep(POLL_INTERVAL);
        }
        assert!(
            !pid_alive(grandchild),
            "child {grandchild} outlived its parent"
        );
    }

    #[test]
    fn killpg_refuses_dangerous_groups() {
        assert!(sys::killpg(0, 0).is_err());
        assert!(sys::killpg(1, 0).is_err());
    }
}
