//! The test covnet descends from, on the real programs: Apache httpd with
//! Subversion's mod_dav_svn on `server`, the svn client on `client`, both
//! built with `gcc --coverage` from Debian's source packages by
//! `examples/subversion/build.sh` (cached by source checksum), run by
//! `covnet run --coverage` on VMs and on namespace machines. The report must
//! equal gcov over the `.gcda` files covnet pulled, per machine and
//! combined, and Subversion's libraries, which run on both machines, must
//! show lines only the server ran, lines only the client ran and lines both
//! ran.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use covnet_tests::lcov_tool::{self, Tracefile};
use covnet_tests::oracle::{self, compare, Object};

use crate::coverage_run::per_test_lines;

/// The build from Debian's sources: about 2-5 minutes cold on the 2-core
/// host (bench/RESULTS.md, "## Subversion"), seconds when cached.
const BUILD_DEADLINE: Duration = Duration::from_secs(900);
/// One `covnet run` of the example (two TCG guests, ~20 svn operations).
const RUN_DEADLINE: Duration = Duration::from_secs(600);

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .join("examples/subversion")
}

/// Runs `examples/subversion/build.sh` (which installs its build
/// dependencies, adds a deb-src entry when needed and skips the work when
/// its cache holds these sources' build) and returns the build directory.
/// A build that cannot be made fails the test.
fn build() -> Result<PathBuf> {
    let dir = example_dir();
    let started = Instant::now();
    let o = lcov_tool::run(
        Command::new("bash").arg(dir.join("build.sh")),
        BUILD_DEADLINE,
    )?;
    ensure!(
        o.status.success(),
        "examples/subversion/build.sh failed (it needs Debian's archive and the packages \
         bash scripts/setup.sh installs):\n{o}"
    );
    eprintln!(
        "build.sh: {:.1} s\n{}",
        started.elapsed().as_secs_f64(),
        o.stderr
    );
    std::fs::canonicalize(dir.join("build")).context("examples/subversion/build after build.sh")
}

/// A private copy of the example pointing at `build`; for namespace
/// machines without the server's host port forward (a VM-only field that
/// only `covnet vms` needs).
fn stage(build: &Path, namespace: bool) -> Result<(tempfile::TempDir, PathBuf)> {
    let tmp = tempfile::tempdir()?;
    let src = example_dir();
    for f in ["test.rhai", "httpd.conf", "start-httpd.sh"] {
        std::fs::copy(src.join(f), tmp.path().join(f)).with_context(|| format!("copy {f}"))?;
    }
    let mut spec = std::fs::read_to_string(src.join("spec.toml"))?;
    if namespace {
        let forward = "forward = [\"8081:80\"]\n";
        ensure!(
            spec.contains(forward),
            "the example spec changed shape: {spec}"
        );
        spec = spec.replace(forward, "");
    }
    std::fs::write(tmp.path().join("spec.toml"), spec)?;
    std::os::unix::fs::symlink(build, tmp.path().join("build"))?;
    let spec = tmp.path().join("spec.toml");
    Ok((tmp, spec))
}

/// A machine's name and its objects.
type MachineObjects = (&'static str, Vec<Object>);

/// The objects of both machines' captures in `out` (their `.gcda` files at
/// the mirrored build path, the notes where gcc left them), and, per
/// machine, the same objects with that machine's data only: its section of
/// `coverage-per-machine.info` lists every file of the run.
fn objects(out: &Path) -> Result<(Vec<Object>, Vec<MachineObjects>)> {
    let capture = |m: &str| out.join("coverage").join(m);
    let (server, client) = (capture("server"), capture("client"));
    let all = oracle::mirrored(&[&server, &client])?;
    let own = |m: &'static str, cap: &Path| {
        let objects = all
            .iter()
            .map(|(notes, data)| {
                let mine = data.iter().filter(|d| d.starts_with(cap)).cloned();
                (notes.clone(), mine.collect())
            })
            .collect();
        (m, objects)
    };
    let per = vec![own("server", &server), own("client", &client)];
    Ok((all, per))
}

/// `covnet`'s tracefile with the branches of lines that define several
/// functions folded the way the oracle sees them. httpd's hook macros
/// (`APR_IMPLEMENT_EXTERNAL_HOOK_*`) define three functions on one line:
/// gcov's JSON lists the line once per function, each with its own
/// branches, and the oracle adds such lists by position (as it adds a
/// header line's branches over objects, and as lcov's repeated `BRDA`
/// keys add up), while covnet keeps every branch of the line apart, under
/// its own block number, in gcov's order. A line is folded only when its
/// branch count is a multiple of gcov's and the positional sums equal
/// gcov's exactly; every other difference stays for `compare` to report.
fn folded(covnet: &Tracefile, gcov: &oracle::Gcov, what: &str) -> Result<Tracefile> {
    let mut out = Tracefile {
        lines: covnet.lines.clone(),
        branches: BTreeMap::new(),
        functions: covnet.functions.clone(),
        tests: covnet.tests.clone(),
    };
    let mut n = 0;
    for (key, taken) in &covnet.branches {
        let want = gcov.branches.get(key).map_or(0, Vec::len);
        // Keyed as `compare` orders them: (line, "block/branch").
        let mut ordered: Vec<((u32, u32), Option<i64>)> = taken
            .iter()
            .map(|((_, bb), t)| {
                let (b, r) = bb.split_once('/').unwrap_or(("0", "0"));
                ((b.parse().unwrap_or(0), r.parse().unwrap_or(0)), *t)
            })
            .collect();
        ordered.sort();
        if want > 0 && ordered.len() > want && ordered.len() % want == 0 {
            let mut sums = vec![0i64; want];
            for (i, (_, t)) in ordered.iter().enumerate() {
                sums[i % want] += t.unwrap_or(0);
            }
            if Some(&sums) == gcov.branches.get(key) {
                n += 1;
                let one = sums
                    .into_iter()
                    .enumerate()
                    .map(|(i, t)| ((key.1.to_string(), format!("0/{i}")), Some(t)))
                    .collect();
                out.branches.insert(key.clone(), one);
                continue;
            }
        }
        out.branches.insert(key.clone(), taken.clone());
    }
    eprintln!(
        "{what}: {n} lines define several functions (branches folded as gcov's JSON lists them)"
    );
    Ok(out)
}

fn check(namespace: bool) -> Result<()> {
    let build = build()?;
    let (tmp, spec) = stage(&build, namespace)?;
    let out = tmp.path().join("out");
    let started = Instant::now();
    let mut cmd = Command::new(lcov_tool::covnet_bin()?);
    cmd.args(["run", "--coverage", "--no-console", "--out"])
        .arg(&out)
        .arg(&spec)
        .current_dir(tmp.path());
    if namespace {
        cmd.args(["--backend", "namespace"]);
    }
    let o = lcov_tool::run(&mut cmd, RUN_DEADLINE)?;
    ensure!(o.status.success(), "covnet run failed:\n{o}");
    eprintln!(
        "covnet run{}: {:.1} s",
        if namespace { " (namespace)" } else { "" },
        started.elapsed().as_secs_f64()
    );

    // Exactness: gcov over the pulled .gcda files, per machine and combined.
    let started = Instant::now();
    let (all, per_machine) = objects(&out)?;
    let sections = Tracefile::read_sections(&out.join("coverage-per-machine.info"))?;
    for (m, objects) in &per_machine {
        let section = sections
            .get(*m)
            .with_context(|| format!("no {m} section in coverage-per-machine.info"))?;
        let gcov = oracle::gcov_over(objects)?;
        compare(m, &folded(section, &gcov, m)?, &gcov)?;
    }
    let combined = Tracefile::read(&out.join("coverage.info"))?;
    let gcov = oracle::gcov_over(&all)?;
    compare("combined", &folded(&combined, &gcov, "combined")?, &gcov)?;
    eprintln!(
        "{} objects: covnet equals gcov per machine and combined (checked in {:.1} s)",
        all.len(),
        started.elapsed().as_secs_f64()
    );

    // Attribution: Subversion's libraries ran on both machines.
    let per = per_test_lines(&out.join("coverage-per-machine.info"))?;
    let count = |m: &str, f: &str, l: u32| {
        per.get(m)
            .and_then(|c| c.get(&(f.to_owned(), l)))
            .copied()
            .unwrap_or(0)
    };
    for lib in ["/subversion/libsvn_subr/", "/subversion/libsvn_delta/"] {
        let (mut both, mut server, mut client) = (0, 0, 0);
        for ((f, l), _) in combined.lines.iter().filter(|((f, _), _)| f.contains(lib)) {
            match (count("server", f, *l) > 0, count("client", f, *l) > 0) {
                (true, true) => both += 1,
                (true, false) => server += 1,
                (false, true) => client += 1,
                (false, false) => {}
            }
        }
        eprintln!("{lib}: lines hit by both machines {both}, only the server {server}, only the client {client}");
        ensure!(
            both > 0 && server > 0 && client > 0,
            "{lib}: both {both}, only server {server}, only client {client}"
        );
    }
    let hits = |m: &str, part: &str| -> i64 {
        per.get(m).map_or(0, |c| {
            c.iter()
                .filter(|((f, _), _)| f.contains(part))
                .map(|(_, n)| *n)
                .sum()
        })
    };
    for (part, runs_on, never_on) in [
        ("/subversion/mod_dav_svn/", "server", "client"),
        ("/httpd/server/", "server", "client"),
        ("/subversion/libsvn_ra_serf/", "client", "server"),
        ("/subversion/libsvn_client/", "client", "server"),
        ("/subversion/libsvn_fs_fs/", "server", "client"),
    ] {
        ensure!(hits(runs_on, part) > 0, "{runs_on} should run {part}");
        ensure!(hits(never_on, part) == 0, "{never_on} cannot run {part}");
    }
    let index = std::fs::read_to_string(out.join("report/index.html"))?;
    ensure!(
        index.contains("libsvn_subr") && index.contains("server") && index.contains("client"),
        "the HTML report shows libsvn_subr per machine"
    );
    Ok(())
}

#[test]
fn subversion_example_on_vms_matches_gcov_and_attributes_machines() -> Result<()> {
    check(false)
}

#[test]
fn subversion_example_on_namespace_machines_matches_gcov_and_attributes_machines() -> Result<()> {
    check(true)
}
