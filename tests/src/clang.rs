//! Harness for the LLVM coverage tests: builds the fixtures of
//! `tests/fixtures/llvm` with Debian's clang (`clang-16 -fprofile-instr-generate
//! -fcoverage-mapping`) at test time, a program and a shared library, runs
//! the program with `LLVM_PROFILE_FILE` into capture directories, and runs
//! the oracle: `llvm-cov-16 export` over `llvm-profdata-16 merge` of the
//! same profiles. A missing tool is an error with a hint, never a skip.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use tempfile::TempDir;

use crate::gcc::{run, run_ok, Output, PROGRAM_DEADLINE};
use crate::lcov_tool::Tracefile;

/// The C compiler (`scripts/setup.sh` installs it).
pub const CLANG: &str = "clang-16";
/// `llvm-profdata` of the same LLVM.
pub const LLVM_PROFDATA: &str = "llvm-profdata-16";
/// `llvm-cov` of the same LLVM.
pub const LLVM_COV: &str = "llvm-cov-16";

/// Checks that clang and its profile tools are installed.
pub fn require_tools() -> Result<()> {
    let probes: [(&str, &[&str]); 3] = [
        (CLANG, &["-dumpversion"]),
        (LLVM_PROFDATA, &["merge", "--version"]),
        (LLVM_COV, &["--version"]),
    ];
    for (tool, args) in probes {
        run_ok(Command::new(tool).args(args)).with_context(|| {
            format!("{tool} is required for the LLVM coverage tests (hint: bash scripts/setup.sh)")
        })?;
    }
    Ok(())
}

/// The directory holding the LLVM fixture sources.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join("llvm")
}

/// The fixture built with clang: a program linked against a shared
/// library, both instrumented, in their own temporary directory.
#[derive(Debug)]
pub struct LlvmBuild {
    /// The build directory (sources are compiled from here, by relative
    /// path, so the mapping holds relative names resolved against it).
    pub dir: TempDir,
    /// The program.
    pub exe: PathBuf,
    /// The shared library.
    pub lib: PathBuf,
}

const FLAGS: &[&str] = &[
    "-fprofile-instr-generate",
    "-fcoverage-mapping",
    "-O0",
    "-g",
];

impl LlvmBuild {
    /// Copies the fixture sources and builds them.
    pub fn new() -> Result<LlvmBuild> {
        require_tools()?;
        let dir = tempfile::Builder::new().prefix("covnet-llvm-").tempdir()?;
        for f in ["main.c", "lib.c", "shared.h"] {
            fs::copy(fixtures_dir().join(f), dir.path().join(f))
                .with_context(|| format!("failed to copy fixture {f}"))?;
        }
        let lib = dir.path().join("libscore.so");
        run_ok(
            Command::new(CLANG)
                .args(FLAGS)
                .args(["-fPIC", "-shared", "lib.c", "-o"])
                .arg(&lib)
                .current_dir(dir.path()),
        )?;
        let exe = dir.path().join("prog");
        run_ok(
            Command::new(CLANG)
                .args(FLAGS)
                .args(["main.c", "-L.", "-lscore"])
                .arg(format!("-Wl,-rpath,{}", dir.path().display()))
                .arg("-o")
                .arg(&exe)
                .current_dir(dir.path()),
        )?;
        Ok(LlvmBuild { dir, exe, lib })
    }

    /// Runs the program with `args`, its profiles written under `capture`
    /// with `pattern` (an `LLVM_PROFILE_FILE` file name such as
    /// `%p-%m.profraw`).
    pub fn run_into(&self, args: &[&str], capture: &Path, pattern: &str) -> Result<Output> {
        fs::create_dir_all(capture)?;
        let out = run(
            Command::new(&self.exe)
                .args(args)
                .env("LLVM_PROFILE_FILE", capture.join(pattern))
                .current_dir(self.dir.path()),
            PROGRAM_DEADLINE,
        )?;
        if !out.status.success() {
            bail!("fixture run failed\n{out}");
        }
        Ok(out)
    }

    /// The `--object` arguments for covnet and llvm-cov.
    pub fn objects(&self) -> [&Path; 2] {
        [&self.exe, &self.lib]
    }
}

/// The `.profraw` files under `dir`, sorted.
pub fn profraws(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).with_context(|| format!("failed to list {}", dir.display()))? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "profraw") {
            out.push(p);
        }
    }
    out.sort();
    if out.is_empty() {
        bail!("no .profraw under {}", dir.display());
    }
    Ok(out)
}

/// What llvm-cov says about a set of profiles.
#[derive(Debug)]
pub struct LlvmCovOracle {
    /// `llvm-cov export -format=lcov`, parsed independently.
    pub lcov: Tracefile,
    /// `llvm-cov export -format=text` (JSON).
    pub json: serde_json::Value,
}

/// Runs `llvm-profdata merge` over `profiles` and `llvm-cov export` (lcov
/// and JSON) over the result and `objects`, in `work`.
pub fn llvm_cov(objects: &[&Path], profiles: &[PathBuf], work: &Path) -> Result<LlvmCovOracle> {
    fs::create_dir_all(work)?;
    let profdata = work.join("merged.profdata");
    run_ok(
        Command::new(LLVM_PROFDATA)
            .arg("merge")
            .arg("-o")
            .arg(&profdata)
            .args(profiles),
    )?;
    let export = |format: &str| -> Result<String> {
        let mut cmd = Command::new(LLVM_COV);
        cmd.arg("export")
            .arg(format!("-format={format}"))
            .arg("-instr-profile")
            .arg(&profdata);
        for (i, o) in objects.iter().enumerate() {
            if i > 0 {
                cmd.arg("-object");
            }
            cmd.arg(o);
        }
        Ok(run_ok(&mut cmd)?.stdout)
    };
    let lcov_text = export("lcov")?;
    let lcov_path = work.join("llvm-cov.info");
    fs::write(&lcov_path, &lcov_text)?;
    let lcov = Tracefile::parse(&lcov_text, &lcov_path)?;
    let json: serde_json::Value =
        serde_json::from_str(&export("text")?).context("llvm-cov export JSON")?;
    Ok(LlvmCovOracle { lcov, json })
}

/// (file, function name) → (execution count) from llvm-cov's JSON.
pub fn json_functions(
    json: &serde_json::Value,
) -> Result<std::collections::BTreeMap<(String, String), i64>> {
    let mut out = std::collections::BTreeMap::new();
    let funcs = json
        .pointer("/data/0/functions")
        .and_then(|f| f.as_array())
        .context("llvm-cov JSON has no data[0].functions")?;
    for f in funcs {
        let name = f["name"].as_str().context("function name")?.to_owned();
        let file = f
            .pointer("/filenames/0")
            .and_then(|v| v.as_str())
            .context("function filenames")?
            .to_owned();
        let count = f["count"].as_i64().context("function count")?;
        out.insert((file, name), count);
    }
    Ok(out)
}
