//! Harness for the exactness tests: compiles the C/C++ fixtures of
//! `tests/fixtures/c` with `gcc --coverage` (the system GCC, and GCC 11) at
//! test time,
//! runs the programs into separate capture directories (`GCOV_PREFIX` +
//! `GCOV_PREFIX_STRIP`), and runs the oracle (`gcov -b -t --json-format`,
//! `gcov-tool merge`) of the same GCC.
//!
//! Every build lives in its own temporary directory, so tests can run in
//! parallel. A missing compiler or tool is an error, never a skip.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tempfile::TempDir;

/// Deadline for one compiler or gcov command.
pub const TOOL_DEADLINE: Duration = Duration::from_secs(300);

/// What a finished command printed.
#[derive(Debug)]
pub struct Output {
    /// The command line.
    pub command: String,
    /// Its working directory.
    pub cwd: PathBuf,
    /// Exit status.
    pub status: ExitStatus,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "command: {}\ncwd: {}\nstatus: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command,
            self.cwd.display(),
            self.status,
            self.stdout,
            self.stderr
        )
    }
}

fn kill_group(child: &mut Child) {
    // The child leads its own process group (process_group(0)): kill the
    // whole group, then the child itself should the group be gone.
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let _ = child.kill();
}

/// Runs `cmd` in its own process group; output goes to files in a
/// temporary directory, the group is killed after exit and at the deadline.
pub fn run(cmd: &mut Command, deadline: Duration) -> Result<Output> {
    let (deadline, cut) = crate::budget::capped(deadline);
    let command = format!("{cmd:?}");
    let cwd = cmd
        .get_current_dir()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| std::env::current_dir().unwrap_or_default());
    let logs = tempfile::Builder::new().prefix("covnet-run-").tempdir()?;
    let (out_path, err_path) = (logs.path().join("stdout"), logs.path().join("stderr"));
    cmd.stdin(Stdio::null())
        .stdout(fs::File::create(&out_path)?)
        .stderr(fs::File::create(&err_path)?)
        .process_group(0);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("failed to start {command} in {}", cwd.display()))?;
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
            Ok(None) => thread::sleep(Duration::from_millis(10)),
            Err(e) => {
                kill_group(&mut child);
                let _ = child.wait();
                return Err(e).with_context(|| format!("failed to wait for {command}"));
            }
        }
    };
    kill_group(&mut child);
    Ok(Output {
        command,
        cwd,
        status,
        stdout: fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: fs::read_to_string(&err_path).unwrap_or_default(),
    })
}

/// Runs `cmd` and fails, showing everything it printed, unless it exits 0.
pub fn run_ok(cmd: &mut Command) -> Result<Output> {
    let out = run(cmd, TOOL_DEADLINE)?;
    if !out.status.success() {
        bail!("command failed\n{out}");
    }
    Ok(out)
}

/// Deadline for one run of a fixture program.
pub const PROGRAM_DEADLINE: Duration = Duration::from_secs(60);

/// One GCC installation: compilers and the matching gcov tools.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Toolchain {
    /// Short name for messages (`gcc-12`).
    pub label: &'static str,
    /// C compiler.
    pub cc: &'static str,
    /// C++ compiler.
    pub cxx: &'static str,
    /// The gcov of the same version.
    pub gcov: &'static str,
    /// The gcov-tool of the same version.
    pub gcov_tool: &'static str,
}

/// The system GCC (`gcc`, whatever version the setup installed: see
/// [`Toolchain::major`]); byte-length record format from GCC 12 on.
pub const SYSTEM_GCC: Toolchain = Toolchain {
    label: "gcc",
    cc: "gcc",
    cxx: "g++",
    gcov: "gcov",
    gcov_tool: "gcov-tool",
};

/// GCC 11 (word-length record format).
pub const GCC11: Toolchain = Toolchain {
    label: "gcc-11",
    cc: "gcc-11",
    cxx: "g++-11",
    gcov: "gcov-11",
    gcov_tool: "gcov-tool-11",
};

/// A fixture program: its sources (in `tests/fixtures/c`) and how to run it.
#[derive(Clone, Copy, Debug)]
pub struct Program {
    /// Name of the executable.
    pub name: &'static str,
    /// Translation units.
    pub sources: &'static [&'static str],
    /// Compile as C++.
    pub cxx: bool,
    /// Argument lists, one capture each.
    pub runs: &'static [&'static [&'static str]],
    /// Indices into `runs` of the runs that end without writing any data
    /// (`abort()`, an uncaught exception): their captures must be empty,
    /// and every other capture must hold `.gcda` files.
    pub silent_runs: &'static [usize],
}

impl Toolchain {
    /// The compiler's major version (`gcc -dumpversion`), as the notes
    /// files it writes carry it: the tests name what they really compiled
    /// with instead of assuming what the setup installed.
    pub fn major(&self) -> Result<u32> {
        let out = run_ok(Command::new(self.cc).arg("-dumpversion"))
            .with_context(|| format!("{} is required (hint: bash scripts/setup.sh)", self.cc))?;
        let text = out.stdout.trim();
        text.split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .with_context(|| format!("{} -dumpversion printed {text:?}", self.cc))
    }
}

/// The directory holding the fixture sources.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join("c")
}

/// A compiled fixture: the executable and one `.gcno` per object.
#[derive(Debug)]
pub struct Build {
    /// Keeps the build tree alive.
    pub dir: TempDir,
    /// The toolchain used.
    pub toolchain: Toolchain,
    /// Directory of the objects, `.gcno` files and compiled-in `.gcda` paths.
    pub objdir: PathBuf,
    /// The executable.
    pub exe: PathBuf,
    /// Stems of the objects (`main` for `obj/main.gcno`).
    pub objects: Vec<String>,
}

fn check_tool(tool: &str) -> Result<()> {
    let out =
        run(Command::new(tool).arg("--version"), Duration::from_secs(30)).with_context(|| {
            format!("{tool} is required by the exactness tests (hint: install it; see README)")
        })?;
    if !out.status.success() {
        bail!("{tool} --version failed\n{out}");
    }
    Ok(())
}

impl Build {
    /// Copies the fixture sources into a fresh directory and compiles them
    /// there with `--coverage` and `opt` (e.g. `-O2`), one object per source,
    /// with relative source names (`src/a.c` from the build root, or
    /// `../src/b.c` from `obj/`), so the notes depend on their cwd.
    pub fn new(tc: Toolchain, program: &Program, opt: &str) -> Result<Build> {
        Build::with_generated(tc, program, opt, &[])
    }

    /// Like [`Build::new`], with `generated` (name, contents) files written
    /// next to the fixtures before compiling.
    pub fn with_generated(
        tc: Toolchain,
        program: &Program,
        opt: &str,
        generated: &[(&str, String)],
    ) -> Result<Build> {
        for tool in [tc.cc, tc.cxx, tc.gcov, tc.gcov_tool] {
            check_tool(tool)?;
        }
        let dir = tempfile::Builder::new()
            .prefix("covnet-gcc-")
            .tempdir()
            .context("failed to create a build directory")?;
        let root = dir.path().to_path_buf();
        let src = root.join("src");
        let objdir = root.join("obj");
        fs::create_dir_all(&src)?;
        fs::create_dir_all(&objdir)?;
        for entry in fs::read_dir(fixtures_dir()).context("failed to list the fixtures")? {
            let entry = entry?;
            fs::copy(entry.path(), src.join(entry.file_name()))
                .with_context(|| format!("failed to copy {}", entry.path().display()))?;
        }
        for (name, text) in generated {
            fs::write(src.join(name), text).with_context(|| format!("failed to write {name}"))?;
        }
        let compiler = if program.cxx { tc.cxx } else { tc.cc };
        let mut objects = Vec::new();
        for (i, source) in program.sources.iter().enumerate() {
            let stem = Path::new(source)
                .file_stem()
                .and_then(|s| s.to_str())
                .context("fixture source without a stem")?
                .to_owned();
            // Every other source compiles from obj/ with `../` names, so
            // the notes' cwd and `..` handling are exercised too.
            let (cwd, prefix, out) = if i % 2 == 0 {
                (root.clone(), "src", format!("obj/{stem}.o"))
            } else {
                (objdir.clone(), "../src", format!("{stem}.o"))
            };
            run_ok(
                Command::new(compiler)
                    .current_dir(&cwd)
                    .args(["--coverage", opt, "-g", "-c"])
                    .arg(format!("-I{prefix}"))
                    .arg(format!("{prefix}/{source}"))
                    .arg("-o")
                    .arg(out),
            )
            .with_context(|| format!("failed to compile {source} with {}", tc.label))?;
            objects.push(stem);
        }
        let exe = root.join(program.name);
        let mut link = Command::new(compiler);
        link.current_dir(&root)
            .arg("--coverage")
            .arg("-o")
            .arg(&exe);
        for stem in &objects {
            link.arg(format!("obj/{stem}.o"));
        }
        run_ok(&mut link).with_context(|| format!("failed to link {}", program.name))?;
        Ok(Build {
            dir,
            toolchain: tc,
            objdir,
            exe,
            objects,
        })
    }

    /// Path of an object's notes file.
    pub fn gcno(&self, stem: &str) -> PathBuf {
        self.objdir.join(format!("{stem}.gcno"))
    }

    /// Runs the program with `args`, its data files going to `capture`
    /// (flat: `capture/<stem>.gcda`). Non-zero exits are fine (exit(),
    /// abort()); hangs are not.
    pub fn run_into(&self, args: &[&str], capture: &Path) -> Result<Output> {
        fs::create_dir_all(capture)?;
        let strip = self
            .objdir
            .components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .count();
        let out = run(
            Command::new(&self.exe)
                .args(args)
                .current_dir(self.dir.path())
                .env("GCOV_PREFIX", capture)
                .env("GCOV_PREFIX_STRIP", strip.to_string()),
            PROGRAM_DEADLINE,
        )?;
        Ok(out)
    }

    /// Runs gcov on one object with the given data file (or none: "not
    /// executed") and returns its JSON document.
    pub fn gcov_json(&self, stem: &str, gcda: Option<&Path>) -> Result<serde_json::Value> {
        let work = tempfile::Builder::new().prefix("covnet-gcov-").tempdir()?;
        fs::copy(self.gcno(stem), work.path().join(format!("{stem}.gcno")))?;
        if let Some(gcda) = gcda {
            fs::copy(gcda, work.path().join(format!("{stem}.gcda")))?;
        }
        let out = run_ok(
            Command::new(self.toolchain.gcov)
                .current_dir(work.path())
                .args(["-b", "-t", "--json-format"])
                .arg(format!("{stem}.gcno")),
        )?;
        serde_json::from_str(out.stdout.trim())
            .with_context(|| format!("gcov printed no JSON document\n{out}"))
    }

    /// Merges capture directories with `gcov-tool merge` (pairwise) into
    /// `out` and returns the merged directory. Fails when no capture holds a `.gcda` (nothing to compare) or when
    /// `gcov-tool` fails: the comparison is never skipped.
    pub fn gcov_tool_merge(&self, captures: &[PathBuf], out: &Path) -> Result<PathBuf> {
        let with_data: Vec<&PathBuf> = captures.iter().filter(|c| has_gcda(c)).collect();
        let Some((first, rest)) = with_data.split_first() else {
            bail!(
                "gcov-tool merge: none of the {} captures holds a .gcda file: {captures:?}",
                captures.len()
            );
        };
        fs::create_dir_all(out)?;
        let mut acc = (*first).clone();
        for (i, next) in rest.iter().enumerate() {
            let dst = out.join(format!("step{i}"));
            run_ok(
                Command::new(self.toolchain.gcov_tool)
                    .arg("merge")
                    .arg(&acc)
                    .arg(next)
                    .arg("-o")
                    .arg(&dst),
            )?;
            acc = dst;
        }
        Ok(acc)
    }
}

/// Whether `dir` holds at least one `.gcda` file (flat, as
/// [`Build::run_into`] writes them).
pub fn has_gcda(dir: &Path) -> bool {
    fs::read_dir(dir).is_ok_and(|rd| {
        rd.flatten()
            .any(|e| e.path().extension().is_some_and(|x| x == "gcda"))
    })
}

/// One line of gcov's JSON, summed over its entries (group functions give
/// several).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OracleLine {
    /// Sum of the entries' counts.
    pub count: i64,
    /// Some entry has `unexecuted_block`.
    pub unexecuted_block: bool,
    /// `(count, throw, fallthrough)` of all entries' branches, in order.
    pub branches: Vec<(i64, bool, bool)>,
}

/// One function of gcov's JSON.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OracleFunction {
    /// `demangled_name`.
    pub demangled: String,
    /// `start_column`, `end_line`, `end_column`.
    pub position: (u32, u32, u32),
    /// `execution_count`.
    pub count: i64,
    /// `blocks`.
    pub blocks: u32,
    /// `blocks_executed`.
    pub blocks_executed: u32,
}

/// gcov's JSON of one object, keyed like covnet's model.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Oracle {
    /// Per absolute source path, per line number.
    pub lines: BTreeMap<String, BTreeMap<u32, OracleLine>>,
    /// Per absolute source path, per (mangled name, start line).
    pub functions: BTreeMap<String, BTreeMap<(String, u32), OracleFunction>>,
}

fn int(v: &serde_json::Value, key: &str) -> Result<i64> {
    v.get(key)
        .and_then(serde_json::Value::as_i64)
        .with_context(|| format!("gcov JSON lacks integer `{key}` in {v}"))
}

fn flag(v: &serde_json::Value, key: &str) -> Result<bool> {
    v.get(key)
        .and_then(serde_json::Value::as_bool)
        .with_context(|| format!("gcov JSON lacks boolean `{key}` in {v}"))
}

impl Oracle {
    /// Reads gcov's JSON document; relative file names are resolved against
    /// its `current_working_directory` as covnet does.
    pub fn from_json(doc: &serde_json::Value) -> Result<Oracle> {
        let cwd = doc
            .get("current_working_directory")
            .and_then(|c| c.as_str())
            .map(str::as_bytes);
        let mut o = Oracle::default();
        let files = doc
            .get("files")
            .and_then(|f| f.as_array())
            .context("gcov JSON lacks `files`")?;
        for file in files {
            let name = file
                .get("file")
                .and_then(|f| f.as_str())
                .context("gcov JSON file lacks `file`")?;
            let path = covnet_merger::object::source_path(cwd, None, name.as_bytes());
            let lines = o.lines.entry(path.clone()).or_default();
            for l in file
                .get("lines")
                .and_then(|l| l.as_array())
                .into_iter()
                .flatten()
            {
                let ln = u32::try_from(int(l, "line_number")?)?;
                let e = lines.entry(ln).or_default();
                e.count += int(l, "count")?;
                e.unexecuted_block |= flag(l, "unexecuted_block")?;
                for b in l
                    .get("branches")
                    .and_then(|b| b.as_array())
                    .into_iter()
                    .flatten()
                {
                    e.branches
                        .push((int(b, "count")?, flag(b, "throw")?, flag(b, "fallthrough")?));
                }
            }
            let fns = o.functions.entry(path).or_default();
            for f in file
                .get("functions")
                .and_then(|f| f.as_array())
                .into_iter()
                .flatten()
            {
                let name = f.get("name").and_then(|n| n.as_str()).unwrap_or_default();
                let u = |k| int(f, k).and_then(|x| Ok(u32::try_from(x)?));
                fns.insert(
                    (name.to_owned(), u("start_line")?),
                    OracleFunction {
                        demangled: f
                            .get("demangled_name")
                            .and_then(|n| n.as_str())
                            .unwrap_or_default()
                            .to_owned(),
                        position: (u("start_column")?, u("end_line")?, u("end_column")?),
                        count: int(f, "execution_count")?,
                        blocks: u("blocks")?,
                        blocks_executed: u("blocks_executed")?,
                    },
                );
            }
        }
        o.lines.retain(|_, l| !l.is_empty());
        o.functions.retain(|_, f| !f.is_empty());
        Ok(o)
    }
}

/// How many items a comparison checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Compared {
    /// Lines.
    pub lines: u64,
    /// Branches.
    pub branches: u64,
    /// Functions.
    pub functions: u64,
}

impl Compared {
    /// Adds another comparison's counts.
    pub fn add(&mut self, o: Compared) {
        self.lines += o.lines;
        self.branches += o.branches;
        self.functions += o.functions;
    }
}

/// Where differences between covnet and gcov go.
#[derive(Debug, Default)]
pub struct Differences {
    /// Count, flag or structure differences: always failures.
    pub mismatches: Vec<String>,
    /// Demangled-name differences of functions outside `strict_root`
    /// (system headers), where `cpp_demangle` and libiberty may disagree.
    pub demangling: Vec<String>,
}

/// Compares covnet's coverage of one object with gcov's, prefixing each
/// difference with `what`. Demangled names must match for functions
/// declared under `strict_root`.
pub fn compare(
    what: &str,
    cov: &covnet_merger::model::Coverage,
    oracle: &Oracle,
    strict_root: &Path,
    diffs: &mut Differences,
) -> Compared {
    let out = &mut diffs.mismatches;
    let mut n = Compared::default();
    let mut ours_lines: BTreeMap<String, BTreeMap<u32, OracleLine>> = BTreeMap::new();
    let mut ours_fns: BTreeMap<String, BTreeMap<(String, u32), OracleFunction>> = BTreeMap::new();
    for (path, file) in &cov.files {
        let lines: BTreeMap<u32, OracleLine> = file
            .lines
            .iter()
            .map(|(&ln, l)| {
                (
                    ln,
                    OracleLine {
                        count: l.count,
                        unexecuted_block: l.unexecuted_block,
                        branches: l
                            .branches
                            .iter()
                            .map(|b| (b.taken.unwrap_or(0), b.throw, b.fallthrough))
                            .collect(),
                    },
                )
            })
            .collect();
        if !lines.is_empty() {
            ours_lines.insert(path.clone(), lines);
        }
        let fns: BTreeMap<(String, u32), OracleFunction> = file
            .functions
            .iter()
            .map(|f| {
                (
                    (f.name.clone(), f.start_line),
                    OracleFunction {
                        demangled: f.demangled.clone(),
                        position: (f.start_column, f.end_line, f.end_column),
                        count: f.count,
                        blocks: f.blocks,
                        blocks_executed: f.blocks_executed,
                    },
                )
            })
            .collect();
        if !fns.is_empty() {
            ours_fns.insert(path.clone(), fns);
        }
    }
    let files: std::collections::BTreeSet<&String> =
        ours_lines.keys().chain(oracle.lines.keys()).collect();
    for path in files {
        let empty = BTreeMap::new();
        let ours = ours_lines.get(path).unwrap_or(&empty);
        let theirs = oracle.lines.get(path).unwrap_or(&empty);
        let numbers: std::collections::BTreeSet<&u32> = ours.keys().chain(theirs.keys()).collect();
        for ln in numbers {
            n.lines += 1;
            match (ours.get(ln), theirs.get(ln)) {
                (Some(a), Some(b)) => {
                    n.branches += b.branches.len() as u64;
                    if a != b {
                        out.push(format!("{what}: {path}:{ln}: covnet {a:?}, gcov {b:?}"));
                    }
                }
                (a, b) => out.push(format!("{what}: {path}:{ln}: covnet {a:?}, gcov {b:?}")),
            }
        }
    }
    let files: std::collections::BTreeSet<&String> =
        ours_fns.keys().chain(oracle.functions.keys()).collect();
    for path in files {
        let empty = BTreeMap::new();
        let ours = ours_fns.get(path).unwrap_or(&empty);
        let theirs = oracle.functions.get(path).unwrap_or(&empty);
        let keys: std::collections::BTreeSet<&(String, u32)> =
            ours.keys().chain(theirs.keys()).collect();
        for key in keys {
            n.functions += 1;
            let (a, b) = (ours.get(key), theirs.get(key));
            let same_but_name = match (a, b) {
                (Some(x), Some(y)) => {
                    x.demangled != y.demangled
                        && OracleFunction {
                            demangled: y.demangled.clone(),
                            ..x.clone()
                        } == *y
                }
                _ => false,
            };
            if same_but_name && !Path::new(path).starts_with(strict_root) {
                diffs.demangling.push(format!(
                    "{what}: {path}: {}: covnet `{}`, gcov `{}`",
                    key.0,
                    a.map(|x| x.demangled.as_str()).unwrap_or_default(),
                    b.map(|x| x.demangled.as_str()).unwrap_or_default()
                ));
            } else if a != b {
                diffs.mismatches.push(format!(
                    "{what}: {path}: function {}@{}: covnet {a:?}, gcov {b:?}",
                    key.0, key.1
                ));
            }
        }
    }
    n
}
