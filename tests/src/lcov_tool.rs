//! Harness for the merge tests: the `covnet` binary, a small multi-file C
//! program built with `gcc --coverage` at test time and run into capture
//! directories, and the lcov 1.x peer tools (`lcov`, `geninfo`, `genhtml`)
//! run with deadlines and parsed independently of covnet's own reader.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Deadline for one external command (gcc, lcov, genhtml, covnet).
pub const COMMAND_DEADLINE: Duration = Duration::from_secs(300);

/// What a finished command printed.
#[derive(Debug)]
pub struct Output {
    /// Exit status.
    pub status: ExitStatus,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// The command line, for messages.
    pub command: String,
}

impl Output {
    /// Exit code (-1 when killed by a signal).
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "command: {}\nstatus: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command, self.status, self.stdout, self.stderr
        )
    }
}

fn drain<R: Read + Send + 'static>(r: Option<R>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut r) = r {
            // A read error leaves what was read so far; the status tells
            // whether the command worked.
            let _ = r.read_to_end(&mut buf);
        }
        buf
    })
}

fn kill_group(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: killpg only sends a signal to the process group we created
        // for this child (process_group(0) makes its pid the group id).
        unsafe {
            libc::killpg(pid, libc::SIGKILL);
        }
    }
    let _ = child.kill();
}

/// The major version of the installed lcov (`lcov --version`), read once.
pub fn lcov_major() -> Result<u32> {
    static MAJOR: std::sync::OnceLock<std::result::Result<u32, String>> =
        std::sync::OnceLock::new();
    MAJOR
        .get_or_init(|| {
            let out = run(
                Command::new("lcov").arg("--version"),
                Duration::from_secs(60),
            )
            .map_err(|e| format!("lcov is required (hint: bash scripts/setup.sh): {e:#}"))?;
            let text = out.stdout.trim().to_owned();
            text.rsplit(' ')
                .next()
                .and_then(|v| v.split('.').next())
                .and_then(|m| m.parse().ok())
                .ok_or_else(|| format!("lcov --version printed {text:?}"))
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

/// A command for one of lcov's tools (`lcov`, `genhtml`, `geninfo`), after
/// checking that the installed lcov is 1.x: the peer comparisons describe
/// lcov 1.x's behaviour (what Debian 12's package gives), and a different
/// major fails here, naming it, instead of as odd differences later.
pub fn peer(tool: &str) -> Result<Command> {
    let major = lcov_major()?;
    if major != 1 {
        bail!("the lcov peer tests compare with lcov 1.x, but lcov {major}.x is installed (hint: update the expectations in tests/tests/e2e/lcov_peer.rs for its behaviour)");
    }
    Ok(Command::new(tool))
}

/// Runs `cmd` in its own process group with a deadline, capturing output.
/// The group is killed when the deadline passes.
pub fn run(cmd: &mut Command, deadline: Duration) -> Result<Output> {
    let (deadline, cut) = crate::budget::capped(deadline);
    let command = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("failed to start {command}"))?;
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() > deadline => {
                kill_group(&mut child);
                let _ = child.wait();
                bail!(
                    "{command} did not finish within {deadline:?}{cut}; killed its process group"
                );
            }
            Ok(None) => thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                kill_group(&mut child);
                let _ = child.wait();
                return Err(e).with_context(|| format!("failed to wait for {command}"));
            }
        }
    };
    // The group may have left children holding the pipes; they die here.
    kill_group(&mut child);
    let stdout = String::from_utf8_lossy(&out.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned();
    Ok(Output {
        status,
        stdout,
        stderr,
        command,
    })
}

/// Runs `cmd` and fails (with everything it printed) unless it exits 0.
pub fn run_ok(cmd: &mut Command) -> Result<Output> {
    let out = run(cmd, COMMAND_DEADLINE)?;
    if !out.status.success() {
        bail!("command failed\n{out}");
    }
    Ok(out)
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// The `covnet` binary, built once per test process with
/// `cargo build -p covnet-runner --bin covnet` into the target directory
/// and profile of the running test (the e2e crate cannot use
/// `CARGO_BIN_EXE_covnet`, which only a package's own tests get), so a test
/// never runs a stale binary; `COVNET_BIN` names another one.
pub fn covnet_bin() -> Result<PathBuf> {
    static BIN: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("COVNET_BIN") {
            return Ok(PathBuf::from(p));
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let root = workspace_root();
        // target/<profile>/deps/e2e-… -> target/<profile>
        let exe = std::env::current_exe().map_err(|e| format!("test executable path: {e}"))?;
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .ok_or_else(|| format!("{} is not in target/<profile>/deps", exe.display()))?;
        let target = profile_dir
            .parent()
            .ok_or_else(|| format!("{} has no target dir", profile_dir.display()))?;
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "covnet-runner", "--bin", "covnet"])
            .arg("--target-dir")
            .arg(target)
            .current_dir(&root);
        if release {
            cmd.arg("--release");
        }
        let out = run(&mut cmd, Duration::from_secs(1800)).map_err(|e| format!("{e:#}"))?;
        if !out.status.success() {
            return Err(format!("building covnet failed\n{out}"));
        }
        let bin = profile_dir.join("covnet");
        if bin.is_file() {
            Ok(bin)
        } else {
            Err(format!("{} missing after cargo build", bin.display()))
        }
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

/// Runs `covnet` with `args` (any exit status).
pub fn covnet(args: &[&str], cwd: &Path) -> Result<Output> {
    run(
        Command::new(covnet_bin()?).args(args).current_dir(cwd),
        COMMAND_DEADLINE,
    )
}

const MAIN_C: &str = r#"#include <stdio.h>
#include <stdlib.h>
#include "util.h"

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 0;
    int total = 0;
    for (int i = 0; i < n; i++) {
        total += classify(i);
    }
    if (n > 5)
        printf("big %d\n", total);
    else
        printf("small %d\n", total);
    if (n == 40 || n == 41)
        printf("walk %d\n", walk(n == 41, n == 40 ? 3 : 0, n == 40 ? 2 : 3));
    return 0;
}
"#;

const UTIL_H: &str = r#"int classify(int x);
int walk(int a, int m, int n);
static inline int twice(int x) { return x > 100 ? x : 2 * x; }
"#;

const UTIL_C: &str = r#"#include "util.h"

static int unused(int x)
{
    return x * 3;
}

int classify(int x)
{
    switch (x % 3) {
    case 0:
        return twice(x);
    case 1:
        return x + 1;
    default:
        if (x > 7)
            return unused(x);
        return 0;
    }
}

int walk(int a, int m, int n) { int i = 0; if (a) goto Q; P: i++; if (i > m) return -i; Q: if (i < n) goto P; return i; }
"#;

/// The C program of the merge tests, compiled with `gcc --coverage` in a
/// temporary directory: `src/{main.c,util.c,util.h}`, objects and `.gcno`
/// in `build/`.
pub struct Program {
    /// Keeps the directory alive.
    pub dir: tempfile::TempDir,
    /// Source directory.
    pub src: PathBuf,
    /// Build directory (objects, `.gcno`, the executable `prog`).
    pub build: PathBuf,
    /// Extra compiler flags.
    flags: Vec<String>,
    /// Objects linked into `prog`.
    objects: Vec<String>,
}

impl Program {
    /// Writes and compiles the program.
    pub fn build() -> Result<Program> {
        Program::build_with(&[])
    }

    /// Writes and compiles the program with extra compiler flags; `{dir}`
    /// in a flag stands for the temporary directory.
    pub fn build_with(flags: &[&str]) -> Result<Program> {
        let dir = tempfile::tempdir().context("failed to create a temp dir")?;
        let src = dir.path().join("src");
        let build = dir.path().join("build");
        std::fs::create_dir_all(&src)?;
        std::fs::create_dir_all(&build)?;
        for (name, text) in [("main.c", MAIN_C), ("util.c", UTIL_C), ("util.h", UTIL_H)] {
            std::fs::write(src.join(name), text)?;
        }
        let root = dir.path().to_string_lossy().into_owned();
        let flags = flags.iter().map(|f| f.replace("{dir}", &root)).collect();
        let p = Program {
            dir,
            src,
            build,
            flags,
            objects: vec!["main.o".into(), "util.o".into()],
        };
        p.compile("main")?;
        p.compile("util")?;
        p.link()?;
        Ok(p)
    }

    /// Writes other sources (`(file name, text)`) into `src/`, compiles
    /// each `.c` among them and links them into `build/prog`.
    pub fn build_sources(sources: &[(&str, &str)]) -> Result<Program> {
        let dir = tempfile::tempdir().context("failed to create a temp dir")?;
        let src = dir.path().join("src");
        let build = dir.path().join("build");
        std::fs::create_dir_all(&src)?;
        std::fs::create_dir_all(&build)?;
        let mut stems = Vec::new();
        for (name, text) in sources {
            std::fs::write(src.join(name), text)?;
            if let Some(stem) = name.strip_suffix(".c") {
                stems.push(stem.to_owned());
            }
        }
        let p = Program {
            dir,
            src,
            build,
            flags: Vec::new(),
            objects: stems.iter().map(|s| format!("{s}.o")).collect(),
        };
        for stem in &stems {
            p.compile(stem)?;
        }
        p.link()?;
        Ok(p)
    }

    /// Compiles `src/<stem>.c` to `build/<stem>.o` (and `.gcno`).
    pub fn compile(&self, stem: &str) -> Result<()> {
        run_ok(
            Command::new("gcc")
                .args(["--coverage", "-O0", "-c"])
                .args(&self.flags)
                .arg(self.src.join(format!("{stem}.c")))
                .arg("-o")
                // Relative, as make does: with -fprofile-dir GCC then
                // writes `#`-mangled data file names.
                .arg(format!("{stem}.o"))
                .current_dir(&self.build),
        )
        .context("gcc is required for the merge tests")?;
        Ok(())
    }

    /// Links `build/prog`.
    pub fn link(&self) -> Result<()> {
        run_ok(
            Command::new("gcc")
                .arg("--coverage")
                .args(&self.objects)
                .args(["-o", "prog"])
                .current_dir(&self.build),
        )?;
        Ok(())
    }

    /// Adds a second program: writes `src/<stem>.c`, compiles it like the
    /// others and links it alone to `build/<stem>`, which it returns.
    pub fn add_program(&self, stem: &str, source: &str) -> Result<PathBuf> {
        std::fs::write(self.src.join(format!("{stem}.c")), source)?;
        self.compile(stem)?;
        run_ok(
            Command::new("gcc")
                .arg("--coverage")
                .arg(format!("{stem}.o"))
                .arg("-o")
                .arg(stem)
                .current_dir(&self.build),
        )?;
        Ok(self.build.join(stem))
    }

    /// Runs the program once per argument into the capture directory
    /// `<tmp>/captures/<name>` (`GCOV_PREFIX`, so `.gcda` files sit under
    /// their full build path) and returns it.
    pub fn capture(&self, name: &str, runs: &[&str]) -> Result<PathBuf> {
        let dir = self.dir.path().join("captures").join(name);
        std::fs::create_dir_all(&dir)?;
        for arg in runs {
            run_ok(
                Command::new(self.build.join("prog"))
                    .arg(arg)
                    .env("GCOV_PREFIX", &dir)
                    .current_dir(&self.build),
            )?;
        }
        Ok(dir)
    }

    /// The `.gcda` files of a capture, keyed by file name.
    pub fn gcda_files(&self, capture: &Path) -> Result<BTreeMap<String, PathBuf>> {
        let inner = capture.join(
            self.build
                .strip_prefix("/")
                .context("build path is not absolute")?,
        );
        let mut out = BTreeMap::new();
        for e in std::fs::read_dir(&inner).with_context(|| format!("{}", inner.display()))? {
            let p = e?.path();
            if p.extension().is_some_and(|x| x == "gcda") {
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                out.insert(name, p);
            }
        }
        Ok(out)
    }

    /// `lcov --capture` (geninfo, which runs gcov) of one capture: copies
    /// the build tree and the capture's `.gcda` into a work directory first.
    pub fn lcov_capture(&self, capture: &Path, name: &str) -> Result<PathBuf> {
        self.lcov_capture_with(capture, name, &[])
    }

    /// [`Program::lcov_capture`] with extra lcov arguments (`--rc …`,
    /// `--no-markers`).
    pub fn lcov_capture_with(&self, capture: &Path, name: &str, extra: &[&str]) -> Result<PathBuf> {
        let work = self.dir.path().join("lcov-work").join(name);
        std::fs::create_dir_all(&work)?;
        for e in std::fs::read_dir(&self.build)? {
            let p = e?.path();
            if p.extension().is_some_and(|x| x == "gcno") {
                if let Some(f) = p.file_name() {
                    std::fs::copy(&p, work.join(f))?;
                }
            }
        }
        for (f, p) in self.gcda_files(capture)? {
            std::fs::copy(&p, work.join(f))?;
        }
        let out = self.dir.path().join(format!("lcov-{name}.info"));
        run_ok(
            peer("lcov")?
                .args(["--capture", "--rc", "lcov_branch_coverage=1", "-t", name])
                .args(extra)
                .arg("-d")
                .arg(&work)
                .arg("-b")
                .arg(&self.build)
                .arg("-o")
                .arg(&out),
        )
        .context("lcov is required for the merge tests")?;
        Ok(out)
    }
}

/// Found/hit numbers as printed by `lcov --summary`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerSummary {
    /// (hit, found) lines.
    pub lines: (u64, u64),
    /// (hit, found) functions.
    pub functions: (u64, u64),
    /// (hit, found) branches.
    pub branches: (u64, u64),
}

/// Parses `lines......: 85.7% (6 of 7 lines)` style output; "no data
/// found" is (0, 0).
pub fn parse_summary(text: &str) -> Result<PeerSummary> {
    let mut s = PeerSummary::default();
    let mut seen = 0;
    for line in text.lines() {
        let line = line.trim();
        let slot = if line.starts_with("lines.") {
            &mut s.lines
        } else if line.starts_with("functions.") {
            &mut s.functions
        } else if line.starts_with("branches.") {
            &mut s.branches
        } else {
            continue;
        };
        seen += 1;
        if line.ends_with("no data found") {
            continue;
        }
        let inner = line
            .split_once('(')
            .and_then(|(_, r)| r.split_once(')'))
            .map(|(i, _)| i)
            .with_context(|| format!("unexpected summary line {line:?}"))?;
        let mut words = inner.split_whitespace();
        let hit = words.next().unwrap_or("").parse()?;
        let _of = words.next();
        let found = words.next().unwrap_or("").parse()?;
        *slot = (hit, found);
    }
    if seen != 3 {
        bail!("summary output without the three rate lines:\n{text}");
    }
    Ok(s)
}

/// `lcov --summary` of a tracefile (with branch coverage); fails when lcov
/// prints any warning or error.
pub fn lcov_summary(info: &Path) -> Result<PeerSummary> {
    let out = run_ok(
        peer("lcov")?
            .args(["--rc", "lcov_branch_coverage=1", "--summary"])
            .arg(info),
    )?;
    let all = format!("{}\n{}", out.stdout, out.stderr);
    let lower = all.to_lowercase();
    if lower.contains("warning") || lower.contains("error") {
        bail!("lcov --summary complained\n{out}");
    }
    parse_summary(&all)
}

/// `lcov -a` of several tracefiles into `out`.
pub fn lcov_add(inputs: &[&Path], out: &Path) -> Result<()> {
    let mut cmd = peer("lcov")?;
    cmd.args(["--rc", "lcov_branch_coverage=1"]);
    for i in inputs {
        cmd.arg("-a").arg(i);
    }
    cmd.arg("-o").arg(out);
    run_ok(&mut cmd)?;
    Ok(())
}

/// `genhtml` of a tracefile into `out_dir`; fails on any warning or error.
pub fn genhtml(info: &Path, out_dir: &Path, details: bool) -> Result<Output> {
    let mut cmd = peer("genhtml")?;
    cmd.args(["--branch-coverage", "-q", "-o"]).arg(out_dir);
    if details {
        cmd.arg("--show-details");
    }
    cmd.arg(info);
    let out = run_ok(&mut cmd)?;
    let all = format!("{}\n{}", out.stdout, out.stderr).to_lowercase();
    if all.contains("warning") || all.contains("error") {
        bail!("genhtml complained\n{out}");
    }
    if !out_dir.join("index.html").is_file() {
        bail!("genhtml wrote no index.html\n{out}");
    }
    Ok(out)
}

/// (source file, line number).
pub type LineKey = (String, u32);

/// The data of a tracefile, summed over test sections, parsed without
/// covnet: per (file, line) the `DA` sum, per (file, line) the `BRDA`
/// taken values in order, per (file, name) the `FN` line and `FNDA` sum.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tracefile {
    /// `DA` counts.
    pub lines: BTreeMap<(String, u32), i64>,
    /// `BRDA` values per line, `None` for `-`, keyed by (block, branch).
    pub branches: BTreeMap<LineKey, BTreeMap<(String, String), Option<i64>>>,
    /// (start line, count) per function.
    pub functions: BTreeMap<(String, String), (u32, i64)>,
    /// Test names in order.
    pub tests: Vec<String>,
}

impl Tracefile {
    /// Reads a tracefile with a minimal independent parser.
    pub fn read(path: &Path) -> Result<Tracefile> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("failed to read {}", path.display()))?;
        Tracefile::parse(&text, path)
    }

    /// Reads each `TN` section of a tracefile on its own, by test name
    /// (sections of the same name add up).
    pub fn read_sections(path: &Path) -> Result<BTreeMap<String, Tracefile>> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("failed to read {}", path.display()))?;
        let mut chunks: BTreeMap<String, String> = BTreeMap::new();
        let mut tn = String::new();
        for line in text.lines() {
            if let Some(t) = line.strip_prefix("TN:") {
                tn = t.to_owned();
            }
            let chunk = chunks.entry(tn.clone()).or_default();
            chunk.push_str(line);
            chunk.push('\n');
        }
        chunks
            .into_iter()
            .map(|(tn, text)| Ok((tn, Tracefile::parse(&text, path)?)))
            .collect()
    }

    /// Parses tracefile text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Tracefile> {
        let mut t = Tracefile::default();
        let mut sf = String::new();
        for (no, line) in text.lines().enumerate() {
            let ctx = || format!("{}:{}: {line:?}", path.display(), no + 1);
            let Some((key, val)) = line.split_once(':') else {
                continue;
            };
            let f: Vec<&str> = val.split(',').collect();
            let num = |i: usize| -> Result<i64> {
                f.get(i).with_context(ctx)?.parse::<i64>().with_context(ctx)
            };
            match key {
                "TN" if !t.tests.iter().any(|x| x == val) => t.tests.push(val.to_owned()),
                "SF" => sf = val.to_owned(),
                "DA" => {
                    let l = u32::try_from(num(0)?)?;
                    *t.lines.entry((sf.clone(), l)).or_default() += num(1)?;
                }
                "BRDA" => {
                    let l = u32::try_from(num(0)?)?;
                    let taken = match f.get(3) {
                        Some(&"-") => None,
                        _ => Some(num(3)?),
                    };
                    let key = (
                        f.first().copied().unwrap_or("").to_owned(),
                        format!(
                            "{}/{}",
                            f.get(1).copied().unwrap_or(""),
                            f.get(2).copied().unwrap_or("")
                        ),
                    );
                    let slot = t
                        .branches
                        .entry((sf.clone(), l))
                        .or_default()
                        .entry(key)
                        .or_insert(None);
                    *slot = match (*slot, taken) {
                        (None, x) | (x, None) => x,
                        (Some(a), Some(b)) => Some(a + b),
                    };
                }
                "FN" => {
                    let l = u32::try_from(num(0)?)?;
                    let name = f.last().copied().unwrap_or("").to_owned();
                    t.functions.entry((sf.clone(), name)).or_insert((l, 0)).0 = l;
                }
                "FNDA" => {
                    let name = f.get(1).copied().unwrap_or("").to_owned();
                    t.functions.entry((sf.clone(), name)).or_insert((0, 0)).1 += num(0)?;
                }
                _ => {}
            }
        }
        Ok(t)
    }

    /// Branch taken values per line, order-independent (sorted), for
    /// comparing tools that number branch blocks differently.
    pub fn branch_multisets(&self) -> BTreeMap<(String, u32), Vec<Option<i64>>> {
        self.branches
            .iter()
            .map(|(k, m)| {
                let mut v: Vec<Option<i64>> = m.values().copied().collect();
                v.sort();
                (k.clone(), v)
            })
            .collect()
    }
}

/// Differences between two maps, as lines of text ("" when equal).
pub fn diff_maps<K: Ord + std::fmt::Debug, V: PartialEq + std::fmt::Debug>(
    left_name: &str,
    left: &BTreeMap<K, V>,
    right_name: &str,
    right: &BTreeMap<K, V>,
) -> String {
    let mut out = String::new();
    for (k, v) in left {
        match right.get(k) {
            Some(w) if w == v => {}
            Some(w) => {
                let _ = writeln!(out, "{k:?}: {left_name}={v:?} {right_name}={w:?}");
            }
            None => {
                let _ = writeln!(out, "{k:?}: only in {left_name} ({v:?})");
            }
        }
    }
    for (k, w) in right {
        if !left.contains_key(k) {
            let _ = writeln!(out, "{k:?}: only in {right_name} ({w:?})");
        }
    }
    out
}
