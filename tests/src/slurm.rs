//! A real, private Slurm cluster for tests: one node on loopback, started
//! from Debian's `slurm-wlm` and `munge` as the test's own processes, never
//! the machine's services.
//!
//! [`Cluster::start`] generates a munge key and starts `munged` on a socket
//! of its own, writes a `slurm.conf` (one node at 127.0.0.1, free ports,
//! state, spool and logs under the cluster's directory, `auth/munge` on that
//! socket, no accounting, no cgroups), starts `slurmctld -D` and `slurmd -D`
//! and waits until `sinfo` shows the node idle. Every client command runs
//! with `SLURM_CONF` set to that config and with the caller's own `SLURM_*`
//! variables removed, so it can reach no other cluster.
//!
//! [`Cluster::shutdown`] (and `Drop`, on every other path, panics included)
//! cancels the cluster's jobs, stops `slurmd`, `slurmctld` and `munged`
//! (SIGTERM to each one's process group, a grace period, SIGKILL), kills any
//! job or `slurmstepd` left, and removes the cluster's directory. The
//! cluster's processes are found by the marker variable [`MARKER`] in their
//! environment (daemons, step daemons and job processes all inherit it) or
//! by the cluster's directory on their command line: [`processes_of`].
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use covnet_tests::slurm::Cluster;
//! use std::time::Duration;
//! let tmp = tempfile::tempdir()?;
//! let cluster = Cluster::start(&tmp.path().join("slurm"))?;
//! let work = tmp.path().join("work");
//! std::fs::create_dir(&work)?;
//! std::fs::write(work.join("job.sh"), "#!/bin/sh\necho $SLURM_ARRAY_TASK_ID\n")?;
//! let job = cluster.submit_array(&work.join("job.sh"), "0-3", &work)?;
//! cluster.wait(&job, Duration::from_secs(120))?.check()?;
//! cluster.shutdown()?;
//! # Ok(())
//! # }
//! ```
//!
//! Needs root (slurmd starts jobs as their user) and the binaries that
//! `scripts/setup.sh` installs.

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::net::TcpListener;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};

use crate::budget::capped;
use crate::lcov_tool::{self, Output};
use crate::running::{alive, cmdline};

/// The environment variable that marks the cluster's processes; its value
/// is the cluster's directory.
pub const MARKER: &str = "COVNET_SLURM_CLUSTER";

/// How long the cluster may take to come up: munged's socket, slurmctld
/// answering, slurmd registered and the node idle.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Deadline of one client command (`sbatch`, `scontrol`, `sinfo`, ...).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Time a daemon gets between SIGTERM and SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(10);

/// Time cancelled jobs get to end before their processes are killed.
const CANCEL_GRACE: Duration = Duration::from_secs(10);

/// Time SIGKILLed processes get to disappear.
const KILL_GRACE: Duration = Duration::from_secs(10);

/// How often waits look again.
const POLL: Duration = Duration::from_millis(100);

/// The hint every missing-tool error carries.
const SETUP_HINT: &str = "(hint: run scripts/setup.sh, which installs slurm-wlm and munge)";

/// Job states after which a job (or array task) does nothing more.
const TERMINAL_STATES: &[&str] = &[
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "NODE_FAIL",
    "PREEMPTED",
    "BOOT_FAIL",
    "DEADLINE",
    "OUT_OF_MEMORY",
];

/// One daemon of the cluster, in its own process group.
#[derive(Debug)]
struct Daemon {
    name: &'static str,
    child: Child,
    /// Its own log file (where it writes with `-D` and a configured log).
    log: PathBuf,
    /// Its stdout and stderr.
    console: PathBuf,
}

impl Daemon {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines of the daemon's log and console, for messages.
    fn tail(&self) -> String {
        let mut text = String::new();
        for path in [&self.log, &self.console] {
            let body = fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<&str> = body.lines().collect();
            let from = lines.len().saturating_sub(20);
            text.push_str(&format!(
                "--- {} ({}) ---\n{}\n",
                self.name,
                path.display(),
                lines.get(from..).unwrap_or_default().join("\n")
            ));
        }
        text
    }

    /// Fails naming the daemon (with its log) if it has exited.
    fn ensure_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait().context("try_wait on a daemon")? {
            bail!("{} exited ({status}) \n{}", self.name, self.tail());
        }
        Ok(())
    }

    fn signal_group(&self, signal: i32) {
        if let Ok(pid) = libc::pid_t::try_from(self.pid()) {
            // SAFETY: killpg sends a signal to the process group this
            // daemon leads (spawned with process_group(0)); no memory is
            // involved.
            unsafe {
                libc::killpg(pid, signal);
            }
        }
    }

    /// SIGTERM to its group, `grace` to exit, then SIGKILL; reaped either
    /// way. Fails when it needed SIGKILL or could not be reaped.
    fn stop(&mut self, grace: Duration) -> Result<()> {
        if self.child.try_wait().ok().flatten().is_some() {
            return Ok(());
        }
        self.signal_group(libc::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                // Helpers in its group (slurmctld's slurmscriptd) go too.
                self.signal_group(libc::SIGKILL);
                return Ok(());
            }
            thread::sleep(POLL);
        }
        self.signal_group(libc::SIGKILL);
        let _ = self.child.kill();
        self.child
            .wait()
            .with_context(|| format!("failed to reap {}", self.name))?;
        bail!(
            "{} did not exit within {grace:?} of SIGTERM; killed\n{}",
            self.name,
            self.tail()
        )
    }
}

/// A private one-node Slurm cluster; stopped and removed on drop.
#[derive(Debug)]
pub struct Cluster {
    dir: PathBuf,
    conf: PathBuf,
    node: String,
    /// Started daemons, in start order (munged, slurmctld, slurmd).
    daemons: Vec<Daemon>,
    /// Jobs submitted, cancelled on shutdown.
    jobs: Mutex<Vec<u64>>,
    /// True once stopped and removed.
    stopped: bool,
}

/// An array job submitted by [`Cluster::submit_array`].
#[derive(Clone, Debug)]
pub struct ArrayJob {
    /// The array's job id (`SLURM_ARRAY_JOB_ID`).
    pub id: u64,
    /// The task ids asked for.
    pub tasks: BTreeSet<u32>,
    /// The job's working directory, where each task's output goes.
    pub workdir: PathBuf,
}

impl ArrayJob {
    /// The file a task's stdout and stderr go to (`slurm-<job>_<task>.out`
    /// in the working directory).
    pub fn output(&self, task: u32) -> PathBuf {
        self.workdir.join(format!("slurm-{}_{task}.out", self.id))
    }
}

/// How one array task ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskEnd {
    /// The task id (`SLURM_ARRAY_TASK_ID`).
    pub task: u32,
    /// The task's own job id.
    pub job_id: u64,
    /// Slurm's final state (`COMPLETED`, `FAILED`, `CANCELLED`, ...).
    pub state: String,
    /// The exit code of the job script.
    pub exit_code: i32,
    /// The signal that ended it (0 for none).
    pub signal: i32,
    /// Its stdout and stderr.
    pub output: PathBuf,
}

impl TaskEnd {
    /// True when the task completed with exit code 0.
    pub fn succeeded(&self) -> bool {
        self.state == "COMPLETED" && self.exit_code == 0 && self.signal == 0
    }
}

/// How every task of an array job ended.
#[derive(Clone, Debug)]
pub struct ArrayEnd {
    /// The array's job id.
    pub id: u64,
    /// One entry per task, by task id.
    pub tasks: Vec<TaskEnd>,
}

impl ArrayEnd {
    /// The tasks that did not complete with exit code 0.
    pub fn failed(&self) -> Vec<&TaskEnd> {
        self.tasks.iter().filter(|t| !t.succeeded()).collect()
    }

    /// Fails naming every failed task with its state, exit code, output
    /// file and the output's last lines.
    pub fn check(&self) -> Result<()> {
        let failed = self.failed();
        if failed.is_empty() {
            return Ok(());
        }
        let mut msg = format!(
            "{} of {} tasks of array job {} failed:\n",
            failed.len(),
            self.tasks.len(),
            self.id
        );
        for t in failed {
            let body =
                fs::read_to_string(&t.output).unwrap_or_else(|e| format!("(cannot read it: {e})"));
            let lines: Vec<&str> = body.lines().collect();
            let from = lines.len().saturating_sub(20);
            msg.push_str(&format!(
                "task {} (job {}): {} exit {} signal {}; output {}:\n{}\n",
                t.task,
                t.job_id,
                t.state,
                t.exit_code,
                t.signal,
                t.output.display(),
                lines.get(from..).unwrap_or_default().join("\n")
            ));
        }
        bail!("{msg}")
    }
}

impl fmt::Display for ArrayEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "array job {}:", self.id)?;
        for t in &self.tasks {
            writeln!(
                f,
                "  task {} (job {}): {} exit {}:{} ({})",
                t.task,
                t.job_id,
                t.state,
                t.exit_code,
                t.signal,
                t.output.display()
            )?;
        }
        Ok(())
    }
}

/// The path of `name` on `PATH` or in the sbin directories (which a
/// non-login root shell may lack), or an error with the setup hint.
fn find_binary(name: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .with_context(|| format!("`{name}` is not installed\n{SETUP_HINT}"))
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")
        .context("failed to bind a port on 127.0.0.1")?
        .local_addr()?
        .port())
}

/// Removes the caller's Slurm and munge settings from `cmd`'s
/// environment (a test run inside a Slurm job must not reach that job's
/// cluster) and points it at this cluster's config, with the marker.
fn private_env(cmd: &mut Command, conf: &Path, dir: &Path) {
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if [
            "SLURM_", "SBATCH_", "SALLOC_", "SRUN_", "SQUEUE_", "SINFO_", "MUNGE_",
        ]
        .iter()
        .any(|p| k.starts_with(p))
        {
            cmd.env_remove(&key);
        }
    }
    cmd.env("SLURM_CONF", conf).env(MARKER, dir);
}

/// The hardware line of `slurmd -C` (`CPUs=2 Boards=1 ... RealMemory=N`)
/// and the node name it found, so the config says what slurmd will see.
fn node_hardware(slurmd: &Path, dir: &Path) -> Result<(String, String)> {
    let mut cmd = Command::new(slurmd);
    cmd.arg("-C");
    // No config exists yet: slurmd -C needs none, and must not read the
    // machine's.
    private_env(&mut cmd, &dir.join("absent.conf"), dir);
    let out = lcov_tool::run(&mut cmd, CLIENT_TIMEOUT)?;
    ensure!(out.status.success(), "slurmd -C failed\n{out}");
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("NodeName="))
        .with_context(|| format!("no NodeName= line from slurmd -C\n{out}"))?;
    let (name, hardware) = line
        .strip_prefix("NodeName=")
        .and_then(|l| l.split_once(' '))
        .with_context(|| format!("unexpected slurmd -C line `{line}`"))?;
    ensure!(
        hardware.contains("CPUs="),
        "no CPUs= in slurmd -C's `{line}`"
    );
    Ok((name.to_owned(), hardware.trim().to_owned()))
}

/// The `slurm.conf` of a one-node cluster with everything under `dir`.
///
/// Clients and slurmd reach slurmctld at 127.0.0.1 and slurmd listens on
/// 127.0.0.1 only (`NoInAddrAny` binds it to `NodeAddr`); slurmctld
/// listens on its free port on every address, as `NoCtldInAddrAny` would
/// bind it to whatever the host name resolves to, which need not be
/// loopback. All traffic stays on loopback either way.
fn slurm_conf(
    dir: &Path,
    node: &str,
    hardware: &str,
    ctld_port: u16,
    slurmd_port: u16,
    user: &str,
) -> String {
    let d = dir.display();
    format!(
        "# covnet test cluster: generated, private, removed after the test\n\
         ClusterName=covnet\n\
         SlurmctldHost={node}(127.0.0.1)\n\
         SlurmctldPort={ctld_port}\n\
         SlurmdPort={slurmd_port}\n\
         SlurmUser={user}\n\
         SlurmdUser={user}\n\
         AuthType=auth/munge\n\
         AuthInfo=socket={d}/munge/munge.socket\n\
         CredType=cred/munge\n\
         CommunicationParameters=NoInAddrAny\n\
         StateSaveLocation={d}/state\n\
         SlurmdSpoolDir={d}/spool\n\
         SlurmctldPidFile={d}/slurmctld.pid\n\
         SlurmdPidFile={d}/slurmd.pid\n\
         SlurmctldLogFile={d}/log/slurmctld.log\n\
         SlurmdLogFile={d}/log/slurmd.log\n\
         PlugStackConfig={d}/plugstack.conf\n\
         MailProg=/bin/true\n\
         # no cgroups, no systemd: processes tracked by parentage\n\
         ProctrackType=proctrack/linuxproc\n\
         TaskPlugin=task/none\n\
         JobAcctGatherType=jobacct_gather/none\n\
         AccountingStorageType=accounting_storage/none\n\
         JobCompType=jobcomp/none\n\
         SwitchType=switch/none\n\
         MpiDefault=none\n\
         # array tasks share the node, one CPU each\n\
         SelectType=select/cons_tres\n\
         SelectTypeParameters=CR_CPU\n\
         SchedulerParameters=batch_sched_delay=0\n\
         ReturnToService=2\n\
         KillWait=2\n\
         MinJobAge=3600\n\
         NodeName={node} NodeAddr=127.0.0.1 NodeHostname={node} {hardware} State=UNKNOWN\n\
         PartitionName=covnet Nodes={node} Default=YES MaxTime=INFINITE State=UP\n"
    )
}

/// The name of the effective user (SlurmUser must name the user the
/// daemons run as).
fn user_name() -> Result<String> {
    let out = lcov_tool::run(Command::new("id").arg("-un"), CLIENT_TIMEOUT)?;
    ensure!(out.status.success(), "id -un failed\n{out}");
    Ok(out.stdout.trim().to_owned())
}

/// Task ids of an `--array` spec: `0-3`, `1,3,5`, `0-7:2`, `0-15%4`.
pub fn parse_task_ids(spec: &str) -> Result<BTreeSet<u32>> {
    let body = spec.split_once('%').map_or(spec, |(b, _)| b);
    let mut ids = BTreeSet::new();
    for part in body.split(',') {
        let (range, step) = match part.split_once(':') {
            Some((r, s)) => (
                r,
                s.parse::<u32>()
                    .ok()
                    .filter(|&s| s > 0)
                    .with_context(|| format!("bad step in array spec `{spec}`"))?,
            ),
            None => (part, 1),
        };
        let (lo, hi) = match range.split_once('-') {
            Some((lo, hi)) => (lo, hi),
            None => (range, range),
        };
        let lo: u32 = lo
            .trim()
            .parse()
            .with_context(|| format!("bad task id in array spec `{spec}`"))?;
        let hi: u32 = hi
            .trim()
            .parse()
            .with_context(|| format!("bad task id in array spec `{spec}`"))?;
        ensure!(lo <= hi, "empty range in array spec `{spec}`");
        ids.extend((lo..=hi).step_by(step as usize));
    }
    ensure!(!ids.is_empty(), "array spec `{spec}` names no task");
    Ok(ids)
}

/// One record of `scontrol -o show job`: `Key=Value` fields.
fn field<'a>(record: &'a str, key: &str) -> Option<&'a str> {
    record
        .split_whitespace()
        .filter_map(|t| t.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// Live processes of the cluster in `dir`: [`MARKER`]`=dir` in their
/// environment or `dir` on their command line; `(pid, command line)`.
pub fn processes_of(dir: &Path) -> Vec<(u32, String)> {
    let needle = dir.to_string_lossy().into_owned();
    let marker = format!("{MARKER}={needle}").into_bytes();
    let me = std::process::id();
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| p != me && alive(p))
        .filter_map(|p| {
            let line = cmdline(p);
            let marked = fs::read(format!("/proc/{p}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|v| v == marker.as_slice()));
            (marked || line.contains(&needle)).then_some((p, line))
        })
        .collect()
}

impl Cluster {
    /// Starts munged, slurmctld and slurmd with everything under `dir`
    /// (created here; it must not exist yet, and is removed on shutdown)
    /// and waits until the node is idle.
    pub fn start(dir: &Path) -> Result<Cluster> {
        // SAFETY: geteuid only reads the process's credentials.
        let euid = unsafe { libc::geteuid() };
        ensure!(
            euid == 0,
            "the private Slurm cluster needs root: slurmd starts each job as its user \
             (run the tests as root, as CI does)"
        );
        let munged = find_binary("munged")?;
        let mungekey = find_binary("mungekey")?;
        let slurmctld = find_binary("slurmctld")?;
        let slurmd = find_binary("slurmd")?;
        for client in ["sbatch", "scontrol", "sinfo", "squeue", "scancel"] {
            find_binary(client)?;
        }
        let dir = dir.to_path_buf();
        fs::create_dir(&dir).with_context(|| format!("failed to create {}", dir.display()))?;
        let mut cluster = Cluster {
            conf: dir.join("slurm.conf"),
            dir,
            node: String::new(),
            daemons: Vec::new(),
            jobs: Mutex::new(Vec::new()),
            stopped: false,
        };
        // From here on, any error drops `cluster`, which stops what started.
        cluster.start_daemons(&munged, &mungekey, &slurmctld, &slurmd)?;
        Ok(cluster)
    }

    fn start_daemons(
        &mut self,
        munged: &Path,
        mungekey: &Path,
        slurmctld: &Path,
        slurmd: &Path,
    ) -> Result<()> {
        let (timeout, cut) = capped(START_TIMEOUT);
        let deadline = Instant::now() + timeout;
        let dir = self.dir.clone();
        for sub in ["munge", "state", "spool", "log"] {
            fs::create_dir(dir.join(sub))?;
        }
        fs::write(dir.join("plugstack.conf"), "")?;

        // munged: its own key, socket, pid, log and seed files.
        let socket = dir.join("munge/munge.socket");
        ensure!(
            socket.as_os_str().len() < 100,
            "munge socket path {} is too long for a unix socket; use a shorter directory",
            socket.display()
        );
        let key = dir.join("munge/munge.key");
        let out = lcov_tool::run(
            Command::new(mungekey)
                .arg("--create")
                .arg("--keyfile")
                .arg(&key),
            CLIENT_TIMEOUT,
        )?;
        ensure!(out.status.success(), "mungekey failed\n{out}");
        let mut cmd = Command::new(munged);
        // Root needs --force; -F keeps it our child.
        cmd.args(["--foreground", "--force"])
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--key-file={}", key.display()))
            .arg(format!(
                "--pid-file={}",
                dir.join("munge/munged.pid").display()
            ))
            .arg(format!(
                "--log-file={}",
                dir.join("log/munged.log").display()
            ))
            .arg(format!(
                "--seed-file={}",
                dir.join("munge/munged.seed").display()
            ));
        self.spawn("munged", cmd, "munged.log")?;
        self.wait_for("munged's socket", deadline, cut, |_| Ok(socket.exists()))?;

        // slurm.conf, from what slurmd sees of this machine.
        let (node, hardware) = node_hardware(slurmd, &dir)?;
        let conf = slurm_conf(
            &dir,
            &node,
            &hardware,
            free_port()?,
            free_port()?,
            &user_name()?,
        );
        fs::write(&self.conf, conf)?;
        self.node = node;

        // The daemons get the config on their command line too, so that
        // `ps` shows whose they are.
        let mut cmd = Command::new(slurmctld);
        cmd.arg("-D").arg("-f").arg(&self.conf);
        self.spawn("slurmctld", cmd, "slurmctld.log")?;
        self.wait_for("slurmctld to answer `scontrol ping`", deadline, cut, |c| {
            let out = c.client("scontrol", &["ping"])?;
            Ok(out.status.success() && out.stdout.contains("is UP"))
        })?;
        let mut cmd = Command::new(slurmd);
        cmd.arg("-D").arg("-f").arg(&self.conf);
        self.spawn("slurmd", cmd, "slurmd.log")?;
        let node = self.node.clone();
        self.wait_for(
            &format!("node {node} idle in `sinfo`"),
            deadline,
            cut,
            |c| {
                let out = c.client("sinfo", &["--noheader", "--Node", "--format=%N %T"])?;
                Ok(out.status.success()
                    && out.stdout.lines().any(|l| {
                        l.split_whitespace().collect::<Vec<_>>() == [node.as_str(), "idle"]
                    }))
            },
        )?;
        Ok(())
    }

    /// Starts a daemon in its own process group with the private
    /// environment, its stdout and stderr in `log/<name>.console`.
    fn spawn(&mut self, name: &'static str, mut cmd: Command, log: &str) -> Result<()> {
        let console = self.dir.join(format!("log/{name}.console"));
        let file = fs::File::create(&console)?;
        private_env(&mut cmd, &self.conf, &self.dir);
        cmd.current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .process_group(0);
        let child = cmd
            .spawn()
            .with_context(|| format!("failed to start {name} ({cmd:?})\n{SETUP_HINT}"))?;
        self.daemons.push(Daemon {
            name,
            child,
            log: self.dir.join("log").join(log),
            console,
        });
        Ok(())
    }

    /// Polls `ready` until it holds; fails when a daemon exits or the
    /// deadline passes, with the daemons' logs.
    fn wait_for(
        &mut self,
        what: &str,
        deadline: Instant,
        cut: &str,
        mut ready: impl FnMut(&Cluster) -> Result<bool>,
    ) -> Result<()> {
        loop {
            for d in &mut self.daemons {
                d.ensure_running()
                    .with_context(|| format!("while waiting for {what}"))?;
            }
            if ready(self)? {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "no {what} within {START_TIMEOUT:?}{cut}\n{}",
                    self.daemon_logs()
                );
            }
            thread::sleep(POLL);
        }
    }

    /// The last lines of every daemon's log.
    pub fn daemon_logs(&self) -> String {
        self.daemons.iter().map(Daemon::tail).collect()
    }

    /// The cluster's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The generated `slurm.conf` (what `SLURM_CONF` points at).
    pub fn conf(&self) -> &Path {
        &self.conf
    }

    /// The node's name (the host's name, as slurmd sees it).
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Process ids of the daemons, as `(name, pid)`.
    pub fn daemon_pids(&self) -> Vec<(&'static str, u32)> {
        self.daemons.iter().map(|d| (d.name, d.pid())).collect()
    }

    /// A client command (`sbatch`, `scontrol`, ...) with this cluster's
    /// config and munge socket, and none of the caller's Slurm settings.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        private_env(&mut cmd, &self.conf, &self.dir);
        cmd
    }

    /// Runs a client command with a deadline.
    fn client(&self, program: &str, args: &[&str]) -> Result<Output> {
        lcov_tool::run(self.command(program).args(args), CLIENT_TIMEOUT)
    }

    /// Submits `script` as an array job of `tasks` (an `--array` spec such
    /// as `0-3`) to run in `workdir` as the calling user, with the caller's
    /// environment (`PATH` included, `--export=ALL`); each task's output
    /// goes to [`ArrayJob::output`].
    pub fn submit_array(&self, script: &Path, tasks: &str, workdir: &Path) -> Result<ArrayJob> {
        let ids = parse_task_ids(tasks)?;
        let job = ArrayJob {
            id: 0,
            tasks: ids,
            workdir: workdir.to_path_buf(),
        };
        let output = workdir.join("slurm-%A_%a.out");
        let mut cmd = self.command("sbatch");
        cmd.arg("--parsable")
            .arg(format!("--array={tasks}"))
            .arg("--export=ALL")
            .arg("--chdir")
            .arg(workdir)
            .arg("--output")
            .arg(&output)
            .arg(script)
            .current_dir(workdir);
        let out = lcov_tool::run(&mut cmd, CLIENT_TIMEOUT)?;
        ensure!(
            out.status.success(),
            "sbatch failed\n{out}\n{}",
            self.daemon_logs()
        );
        // --parsable prints `id` or `id;cluster`.
        let id: u64 = out
            .stdout
            .trim()
            .split(';')
            .next()
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("no job id from sbatch --parsable\n{out}"))?;
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.push(id);
        }
        Ok(ArrayJob { id, ..job })
    }

    /// Waits up to `timeout` until every task of `job` has ended (polling
    /// `scontrol show job`), and reports how each ended. Failed tasks are
    /// reported, not an error: call [`ArrayEnd::check`].
    pub fn wait(&self, job: &ArrayJob, timeout: Duration) -> Result<ArrayEnd> {
        let (timeout, cut) = capped(timeout);
        let deadline = Instant::now() + timeout;
        let id = job.id.to_string();
        loop {
            let out = self.client("scontrol", &["--oneliner", "show", "job", &id])?;
            ensure!(
                out.status.success(),
                "scontrol show job {id} failed\n{out}\n{}",
                self.daemon_logs()
            );
            let ended = ended_tasks(&out.stdout, job)?;
            if ended.len() == job.tasks.len() {
                return Ok(ArrayEnd {
                    id: job.id,
                    tasks: ended,
                });
            }
            if Instant::now() >= deadline {
                bail!(
                    "array job {id}: {} of {} tasks ended within {timeout:?}{cut}\n{}\n{}",
                    ended.len(),
                    job.tasks.len(),
                    out.stdout,
                    self.daemon_logs()
                );
            }
            thread::sleep(POLL);
        }
    }

    /// Stops the cluster (jobs cancelled, daemons SIGTERMed then
    /// SIGKILLed, leftover processes killed) and removes its directory;
    /// fails when something had to be killed, survived, or stayed.
    pub fn shutdown(mut self) -> Result<()> {
        self.stop()
    }

    fn stop(&mut self) -> Result<()> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        let mut errors = Vec::new();
        let ctld_up = self
            .daemons
            .iter_mut()
            .any(|d| d.name == "slurmctld" && d.child.try_wait().ok().flatten().is_none());
        let ids: Vec<String> = self
            .jobs
            .lock()
            .map(|j| j.iter().map(u64::to_string).collect())
            .unwrap_or_default();
        if ctld_up && !ids.is_empty() {
            let mut args = vec!["--quiet"];
            args.extend(ids.iter().map(String::as_str));
            match self.client("scancel", &args) {
                Ok(o) if o.status.success() => {}
                Ok(o) => errors.push(format!("scancel failed\n{o}")),
                Err(e) => errors.push(format!("{e:#}")),
            }
            // Cancelled jobs end within KillWait; wait for the queue to empty.
            let jobs = ids.join(",");
            let deadline = Instant::now() + CANCEL_GRACE;
            while Instant::now() < deadline {
                match self.client("squeue", &["--noheader", "--jobs", &jobs]) {
                    Ok(o) if o.status.success() && o.stdout.trim().is_empty() => break,
                    _ => thread::sleep(POLL),
                }
            }
        }
        // slurmd before slurmctld before munged, which both need to
        // authenticate while they shut down.
        for d in self.daemons.iter_mut().rev() {
            if let Err(e) = d.stop(TERM_GRACE) {
                errors.push(format!("{e:#}"));
            }
        }
        // Step daemons and job processes live in sessions of their own.
        let deadline = Instant::now() + KILL_GRACE;
        let mut killed = Vec::new();
        loop {
            let left = processes_of(&self.dir);
            if left.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                errors.push(format!(
                    "processes of the cluster survived SIGKILL: {left:?}"
                ));
                break;
            }
            for (pid, line) in left {
                if let Ok(p) = libc::pid_t::try_from(pid) {
                    // SAFETY: kill sends a signal; the pid was live and
                    // marked as this cluster's a moment ago.
                    unsafe {
                        libc::kill(p, libc::SIGKILL);
                    }
                }
                if !killed.iter().any(|(k, _)| *k == pid) {
                    killed.push((pid, line));
                }
            }
            thread::sleep(POLL);
        }
        if !killed.is_empty() {
            errors.push(format!(
                "processes of the cluster outlived its daemons and were killed: {killed:?}"
            ));
        }
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            errors.push(format!("failed to remove {}: {e}", self.dir.display()));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            bail!(
                "stopping the Slurm cluster in {}:\n{}",
                self.dir.display(),
                errors.join("\n")
            )
        }
    }
}

/// The ended tasks of `job` in `scontrol --oneliner show job` output, one
/// per asked task id once all have ended (fewer before).
fn ended_tasks(text: &str, job: &ArrayJob) -> Result<Vec<TaskEnd>> {
    let mut ended = Vec::new();
    for record in text.lines().filter(|l| l.starts_with("JobId=")) {
        let state = field(record, "JobState").unwrap_or_default();
        if !TERMINAL_STATES.contains(&state) {
            continue;
        }
        let job_id: u64 = field(record, "JobId")
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no JobId in `{record}`"))?;
        // A record still pending as a range ends as one (cancelled).
        let tasks = match field(record, "ArrayTaskId") {
            Some(spec) => parse_task_ids(spec)?,
            None => BTreeSet::from([0]),
        };
        let (exit_code, signal) = field(record, "ExitCode")
            .and_then(|v| v.split_once(':'))
            .and_then(|(c, s)| Some((c.parse().ok()?, s.parse().ok()?)))
            .with_context(|| format!("no ExitCode=C:S in `{record}`"))?;
        for task in tasks.into_iter().filter(|t| job.tasks.contains(t)) {
            ended.push(TaskEnd {
                task,
                job_id,
                state: state.to_owned(),
                exit_code,
                signal,
                output: job.output(task),
            });
        }
    }
    ended.sort_by_key(|t| t.task);
    ended.dedup_by_key(|t| t.task);
    Ok(ended)
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // The fallback of `shutdown`: on errors and panics nothing is left
        // running; what went wrong is in the test's own failure.
        let _ = self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_specs() {
        assert_eq!(parse_task_ids("0-3").unwrap(), BTreeSet::from([0, 1, 2, 3]));
        assert_eq!(
            parse_task_ids("1,3,5-6").unwrap(),
            BTreeSet::from([1, 3, 5, 6])
        );
        assert_eq!(parse_task_ids("0-6:3").unwrap(), BTreeSet::from([0, 3, 6]));
        assert_eq!(parse_task_ids("2-3%1").unwrap(), BTreeSet::from([2, 3]));
        assert!(parse_task_ids("3-1").is_err());
        assert!(parse_task_ids("x").is_err());
    }

    #[test]
    fn scontrol_records() {
        let job = ArrayJob {
            id: 7,
            tasks: BTreeSet::from([0, 1, 2, 3]),
            workdir: PathBuf::from("/w"),
        };
        let text = "JobId=8 ArrayJobId=7 ArrayTaskId=0 JobState=COMPLETED Reason=None ExitCode=0:0 DerivedExitCode=0:0\n\
                    JobId=9 ArrayJobId=7 ArrayTaskId=1 JobState=FAILED Reason=NonZeroExitCode ExitCode=3:0\n\
                    JobId=7 ArrayJobId=7 ArrayTaskId=2-3 JobState=PENDING Reason=Resources ExitCode=0:0\n";
        let ended = ended_tasks(text, &job).unwrap();
        assert_eq!(ended.len(), 2);
        assert!(ended[0].succeeded());
        assert_eq!(
            (ended[1].task, ended[1].state.as_str(), ended[1].exit_code),
            (1, "FAILED", 3)
        );
        assert_eq!(ended[1].output, PathBuf::from("/w/slurm-7_1.out"));
        let cancelled = "JobId=7 ArrayJobId=7 ArrayTaskId=0-3 JobState=CANCELLED ExitCode=0:15\n";
        let ended = ended_tasks(cancelled, &job).unwrap();
        assert_eq!(ended.len(), 4);
        assert!(ended.iter().all(|t| !t.succeeded() && t.signal == 15));
    }
}
