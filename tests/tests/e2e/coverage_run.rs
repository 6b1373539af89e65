//! Distributed coverage end to end: the webserver example on two machines,
//! collected, merged and reported by `covnet run --coverage`, checked
//! against GCC's own `gcov` on the very `.gcda` files pulled off the guests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use covnet_tests::lcov_tool::{self, Tracefile};
use covnet_tests::oracle::{self, compare, Gcov, LineCounts};

/// A whole `covnet run` of the example: build, boot two guests, test, pull
/// (`lcov_tool::run` cuts it to what is left of the test's budget when a
/// test runs it twice).
const RUN_DEADLINE: Duration = Duration::from_secs(300);

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_path_buf()
}

/// A private copy of `examples/webserver`, built with `--coverage`.
pub(crate) struct Example {
    _tmp: tempfile::TempDir,
    pub(crate) dir: PathBuf,
}

impl Example {
    pub(crate) fn build() -> Result<Example> {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().join("webserver");
        let src = workspace().join("examples/webserver");
        std::fs::create_dir_all(dir.join("src"))?;
        for f in [
            "Makefile",
            "spec.toml",
            "test.rhai",
            "spec-python.toml",
            "test.py",
        ] {
            std::fs::copy(src.join(f), dir.join(f)).with_context(|| format!("copy {f}"))?;
        }
        for e in std::fs::read_dir(src.join("src"))? {
            let p = e?.path();
            std::fs::copy(&p, dir.join("src").join(p.file_name().unwrap_or_default()))?;
        }
        lcov_tool::run_ok(Command::new("make").arg("-s").current_dir(&dir))
            .context("building the example (gcc and make are installed by scripts/setup.sh)")?;
        Ok(Example { _tmp: tmp, dir })
    }

    pub(crate) fn spec(&self) -> PathBuf {
        self.dir.join("spec.toml")
    }

    /// `covnet run SPEC --coverage --out OUT`; fails on a non-zero exit.
    fn run(&self, spec: &Path, out: &str) -> Result<PathBuf> {
        self.run_with(spec, out, &[])
    }

    /// Like [`Example::run`], with extra `covnet run` arguments.
    pub(crate) fn run_with(&self, spec: &Path, out: &str, extra: &[&str]) -> Result<PathBuf> {
        let out = self.dir.join(out);
        let o = lcov_tool::run(
            Command::new(lcov_tool::covnet_bin()?)
                .args(["run", "--coverage", "--no-console"])
                .args(extra)
                .arg("--out")
                .arg(&out)
                .arg(spec)
                .current_dir(&self.dir),
            RUN_DEADLINE,
        )?;
        ensure!(o.status.success(), "covnet run failed:\n{o}");
        Ok(out)
    }
}

/// Per test name (capture), per (file, line): the `DA` count.
pub(crate) fn per_test_lines(info: &Path) -> Result<BTreeMap<String, LineCounts>> {
    let text = std::fs::read_to_string(info)?;
    let mut out: BTreeMap<String, LineCounts> = BTreeMap::new();
    let (mut tn, mut sf) = (String::new(), String::new());
    for line in text.lines() {
        if let Some(t) = line.strip_prefix("TN:") {
            tn = t.to_owned();
        } else if let Some(f) = line.strip_prefix("SF:") {
            sf = f.to_owned();
        } else if let Some(da) = line.strip_prefix("DA:") {
            let mut it = da.split(',');
            let l: u32 = it.next().context("DA line")?.parse()?;
            let c: i64 = it.next().context("DA count")?.parse()?;
            *out.entry(tn.clone())
                .or_default()
                .entry((sf.clone(), l))
                .or_default() += c;
        }
    }
    Ok(out)
}

/// What gcov says about the objects of `build` (four: three server, one
/// client), given the `.gcda` files copied next to their notes.
fn gcov(build: &Path) -> Result<Gcov> {
    let objects = oracle::objects_of_build(build)?;
    ensure!(objects.len() == 4, "expected 4 objects, found {objects:?}");
    oracle::gcov_over(&objects)
}

/// Copies every `.gcda` below `capture` into `build` (flat: the example's
/// objects all live in one directory).
fn stage(capture: &Path, build: &Path) -> Result<usize> {
    let mut n = 0;
    let mut stack = vec![capture.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "gcda") {
                std::fs::copy(&p, build.join(p.file_name().unwrap_or_default()))?;
                n += 1;
            }
        }
    }
    Ok(n)
}

#[test]
fn webserver_example_matches_gcov_and_attributes_machines() -> Result<()> {
    check_example(&[])
}

/// The same example and checks, every machine a namespace machine: chosen
/// by the backend switch alone, same spec.
#[test]
fn webserver_example_on_namespace_machines_matches_gcov_and_attributes_machines() -> Result<()> {
    check_example(&["--backend", "namespace"])
}

/// The report states each machine's blind spots: its program is wholly
/// instrumented (every source file its DWARF names is covered), and the
/// C library it runs with is named, with debug information or without as
/// this host has it (`libc6-dbg` is not part of the setup).
fn check_blind_spots(out: &Path) -> Result<()> {
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("coverage.json"))?)?;
    let machines = report["blind_spots"]
        .as_array()
        .context("coverage.json has no blind_spots")?;
    let names: Vec<&str> = machines
        .iter()
        .filter_map(|m| m["machine"].as_str())
        .collect();
    ensure!(names == ["server", "client"], "blind spots of {names:?}");
    let index = std::fs::read_to_string(out.join("report/index.html"))?;
    ensure!(
        index.contains(r#"id="blind-spots""#),
        "no blind-spots section"
    );
    for (m, program) in machines.iter().zip(["server", "client"]) {
        let binaries = m["binaries"].as_array().context("binaries")?;
        let named = |name: &str| {
            binaries.iter().find(|b| {
                b["path"]
                    .as_str()
                    .is_some_and(|p| p.rsplit('/').next() == Some(name))
            })
        };
        let prog = named(program).with_context(|| format!("{program} not examined"))?;
        ensure!(
            prog["debug"] == "embedded",
            "{program} is built with -g: {prog}"
        );
        ensure!(
            prog["files"].as_array().is_some_and(|f| f.is_empty())
                && prog["covered_files"].as_u64() >= Some(1),
            "{program} is wholly instrumented: {prog}"
        );
        let libc = named("libc.so.6").context("libc.so.6 not examined")?;
        let path = libc["path"].as_str().context("libc path")?;
        let found = covnet_merger::dwarf::read_path(
            Path::new(path),
            &covnet_merger::dwarf::DebugSearch::default(),
        )?;
        let has_debug = matches!(found.debug, covnet_merger::dwarf::Debug::Found { .. });
        ensure!(
            (libc["debug"] != "missing") == has_debug,
            "{path}: debug information {has_debug} on this host, the report says {}",
            libc["debug"]
        );
        if !has_debug {
            ensure!(
                index.contains("no debug information") && index.contains(path),
                "the HTML names {path} as having no debug information"
            );
        }
        let without = m["totals"]["binaries_without_debug"].as_u64();
        eprintln!(
            "{}: not instrumented: {} source files, {} lines; {without:?} ELF files without debug information",
            m["machine"], m["totals"]["files"], m["totals"]["lines"]
        );
    }
    Ok(())
}

fn check_example(backend: &[&str]) -> Result<()> {
    let ex = Example::build()?;
    let out = ex.run_with(&ex.spec(), "out1", backend)?;
    for f in [
        "report/index.html",
        "coverage.info",
        "coverage-per-machine.info",
        "cobertura.xml",
        "coverage.json",
    ] {
        ensure!(out.join(f).is_file(), "{f} missing from {}", out.display());
    }

    // Exactness: gcov on the pulled .gcda files is the oracle.
    let build = ex.dir.join("build");
    let staged = stage(&out.join("coverage"), &build)?;
    ensure!(
        staged == 4,
        "expected 3 server + 1 client .gcda, pulled {staged}"
    );
    let oracle = gcov(&build)?;
    let combined = Tracefile::read(&out.join("coverage.info"))?;
    compare("combined", &combined, &oracle)?;

    // Attribution: server code was hit only on `server`, client code only
    // on `client`.
    let per = per_test_lines(&out.join("coverage-per-machine.info"))?;
    ensure!(
        per.keys().collect::<Vec<_>>() == ["client", "server"],
        "sections: {:?}",
        per.keys()
    );
    let hits = |machine: &str, file: &str| -> i64 {
        per[machine]
            .iter()
            .filter(|((f, _), _)| f.ends_with(file))
            .map(|(_, c)| *c)
            .sum()
    };
    for f in ["/src/server.c", "/src/http.c", "/src/routes.c"] {
        ensure!(hits("server", f) > 0, "server should hit {f}");
        ensure!(hits("client", f) == 0, "client cannot hit {f}");
    }
    ensure!(
        hits("client", "/src/client.c") > 0,
        "client should hit client.c"
    );
    ensure!(
        hits("server", "/src/client.c") == 0,
        "server cannot hit client.c"
    );

    // Each machine's "own code" figures are gcov's over its own objects.
    let (report, _) = covnet_reporter::json::read_path(&out.join("coverage.json"))?;
    let tree = covnet_reporter::tree::Tree::new(&report);
    for machine in ["server", "client"] {
        let own = oracle::gcov_over(&oracle::mirrored(&[&out.join("coverage").join(machine)])?)?;
        let at = report
            .captures
            .iter()
            .position(|c| c == machine)
            .context("machine in the report")?;
        let o = tree.totals.own[at];
        let hit = own.lines.values().filter(|&&c| c > 0).count() as u64;
        ensure!(
            (o.lines_hit, o.lines_found) == (hit, own.lines.len() as u64),
            "{machine}: own-code lines {}/{} but gcov over its objects says {hit}/{}",
            o.lines_hit,
            o.lines_found,
            own.lines.len()
        );
        let fns = own.functions.values().filter(|&&c| c > 0).count() as u64;
        ensure!(
            (o.functions_hit, o.functions_found) == (fns, own.functions.len() as u64),
            "{machine}: own-code functions {}/{}, gcov {fns}/{}",
            o.functions_hit,
            o.functions_found,
            own.functions.len()
        );
        eprintln!(
            "{machine}: own code {}/{} lines as gcov says; share of the whole {}/{}",
            o.lines_hit,
            o.lines_found,
            tree.totals.per_capture[at].lines_hit,
            tree.totals.per_capture[at].lines_found
        );
    }

    // The report shows the per-machine breakdown.
    let index = std::fs::read_to_string(out.join("report/index.html"))?;
    ensure!(
        index.contains("server") && index.contains("client"),
        "per-machine view missing"
    );

    check_blind_spots(&out)?;

    // A second run merged with the first: function entries double exactly,
    // and every count equals gcov on `gcov-tool merge` of the two runs.
    let out2 = ex.run_with(&ex.spec(), "out2", backend)?;
    let merged = ex.dir.join("both.info");
    let mut args: Vec<PathBuf> = Vec::new();
    for o in [&out, &out2] {
        for m in ["server", "client"] {
            args.push(o.join("coverage").join(m));
        }
    }
    let o = lcov_tool::run(
        Command::new(lcov_tool::covnet_bin()?)
            .arg("merge")
            .arg("--build")
            .arg(&build)
            .args(&args)
            .arg("-o")
            .arg(&merged)
            .current_dir(&ex.dir),
        lcov_tool::COMMAND_DEADLINE,
    )?;
    ensure!(o.status.success(), "covnet merge failed:\n{o}");
    let both = Tracefile::read(&merged)?;
    for (k, (_, c)) in &combined.functions {
        let twice = both.functions.get(k).map(|(_, c)| *c);
        ensure!(
            twice == Some(2 * c),
            "{k:?}: {c} once, {twice:?} after two runs"
        );
    }
    let first = ex.dir.join("run1");
    let second = ex.dir.join("run2");
    for (o, dir) in [(&out, &first), (&out2, &second)] {
        std::fs::create_dir_all(dir)?;
        stage(&o.join("coverage"), dir)?;
    }
    let merged_dir = ex.dir.join("gcov-tool-merged");
    lcov_tool::run_ok(
        Command::new("gcov-tool")
            .arg("merge")
            .arg("-o")
            .arg(&merged_dir)
            .arg(&first)
            .arg(&second),
    )?;
    for f in std::fs::read_dir(&build)? {
        let p = f?.path();
        if p.extension().is_some_and(|x| x == "gcda") {
            std::fs::remove_file(p)?;
        }
    }
    stage(&merged_dir, &build)?;
    compare("two runs merged", &both, &gcov(&build)?)?;
    Ok(())
}

#[test]
fn crashed_machine_is_named_and_the_others_coverage_kept() -> Result<()> {
    let ex = Example::build()?;
    let spec = ex.dir.join("crash.toml");
    let text = std::fs::read_to_string(ex.spec())?.replace(
        "script_file = \"test.rhai\"",
        "script = '''\nstart_all();\nserver.wait_for_service(\"webserver\");\nclient.succeed(\"client server 80\");\nclient.crash();\n'''",
    );
    if !text.contains("client.crash()") {
        bail!("the example spec changed shape: {text}");
    }
    std::fs::write(&spec, text)?;
    let out = ex.run(&spec, "crash-out")?;

    let combined = Tracefile::read(&out.join("coverage.info"))?;
    let server_hits: i64 = combined
        .lines
        .iter()
        .filter(|((f, _), _)| f.ends_with("/src/http.c"))
        .map(|(_, c)| c)
        .sum();
    ensure!(server_hits > 0, "the server's coverage must be kept");
    let client_hits: i64 = combined
        .lines
        .iter()
        .filter(|((f, _), _)| f.ends_with("/src/client.c"))
        .map(|(_, c)| c)
        .sum();
    ensure!(client_hits == 0, "the crashed client's data died with it");
    let index = std::fs::read_to_string(out.join("report/index.html"))?;
    let notes = index
        .split("id=\"run-notes\"")
        .nth(1)
        .context("the report must carry the run's notes")?;
    ensure!(
        notes.contains("client"),
        "the crashed machine must be named: {notes}"
    );
    Ok(())
}

/// Per test name (capture), per function name: the `FNDA` count.
fn per_test_functions(info: &Path) -> Result<BTreeMap<String, BTreeMap<String, i64>>> {
    let text = std::fs::read_to_string(info)?;
    let mut out: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    let mut tn = String::new();
    for line in text.lines() {
        if let Some(t) = line.strip_prefix("TN:") {
            tn = t.to_owned();
        } else if let Some(f) = line.strip_prefix("FNDA:") {
            let (count, name) = f.split_once(',').context("FNDA line")?;
            *out.entry(tn.clone())
                .or_default()
                .entry(name.to_owned())
                .or_default() += count.parse::<i64>()?;
        }
    }
    Ok(out)
}

#[test]
fn script_phases_and_shutdown_keep_their_own_captures() -> Result<()> {
    let ex = Example::build()?;
    let spec = ex.dir.join("phases.toml");
    let text = std::fs::read_to_string(ex.spec())?.replace(
        "script_file = \"test.rhai\"",
        "script = '''\nstart_all();\nserver.wait_for_service(\"webserver\");\nclient.succeed(\"client server 80 get /hello\");\ncollect_coverage(\"hello\");\nclient.succeed(\"client server 80\");\nclient.succeed(\"client server 80\");\nserver.shutdown();\n'''",
    );
    ensure!(
        text.contains("collect_coverage"),
        "the example spec changed shape"
    );
    std::fs::write(&spec, text)?;
    let out = ex.run(&spec, "phases-out")?;

    let per = per_test_functions(&out.join("coverage-per-machine.info"))?;
    let main_calls = |capture: &str| per.get(capture).and_then(|f| f.get("main")).copied();
    // One client run before the phase ended, two after; the reset between
    // them keeps the phases apart.
    ensure!(
        main_calls("client_hello") == Some(1),
        "client@hello: {per:?}"
    );
    ensure!(main_calls("client") == Some(2), "client: {per:?}");
    // The server ran through both phases: covnet's preloaded shim flushed
    // it at the end of the first (its start and the /hello request), and
    // the rest was collected when the script shut it down.
    ensure!(
        main_calls("server_hello") == Some(1),
        "server@hello: {per:?}"
    );
    ensure!(main_calls("server") == Some(0), "server: {per:?}");
    let parses = |capture: &str| {
        per.get(capture)
            .and_then(|f| f.get("http_parse"))
            .copied()
            .unwrap_or(0)
    };
    ensure!(parses("server_hello") >= 1, "server@hello: {per:?}");
    ensure!(parses("server") >= 16, "server requests: {per:?}");
    let index = std::fs::read_to_string(out.join("report/index.html"))?;
    ensure!(
        !index.contains("id=\"run-notes\""),
        "nothing was lost, so no notes"
    );
    Ok(())
}

/// `reboot()` keeps the first boot's coverage: it is collected as the
/// phase `boot-1` before the machine goes down, and what the second boot
/// runs is in the final capture.
fn reboot_keeps_the_first_boots_coverage(backend: &str) -> Result<()> {
    let ex = Example::build()?;
    let spec = ex.dir.join("reboot.toml");
    let text = std::fs::read_to_string(ex.spec())?.replace(
        "script_file = \"test.rhai\"",
        "script = '''\nstart_all();\nserver.wait_for_service(\"webserver\");\nclient.succeed(\"client server 80 get /hello\");\nserver.reboot();\nserver.wait_for_service(\"webserver\");\nclient.succeed(\"client server 80 get /hello\");\nclient.succeed(\"client server 80 get /hello\");\n'''",
    );
    ensure!(text.contains("reboot"), "the example spec changed shape");
    std::fs::write(&spec, text)?;
    let out = ex.run_with(&spec, &format!("reboot-{backend}"), &["--backend", backend])?;
    let per = per_test_functions(&out.join("coverage-per-machine.info"))?;
    let calls = |capture: &str, f: &str| {
        per.get(capture)
            .and_then(|fs| fs.get(f))
            .copied()
            .unwrap_or(0)
    };
    // One server process per boot; one request before the reboot, two
    // after.
    ensure!(
        calls("server_boot_1", "main") == 1,
        "server@boot-1: {per:?}"
    );
    ensure!(
        calls("server", "main") == 1,
        "server after the reboot: {per:?}"
    );
    let requests = |c: &str| calls(c, "http_parse");
    ensure!(
        requests("server_boot_1") >= 1 && requests("server") > requests("server_boot_1"),
        "requests per boot: {per:?}"
    );
    let all = per_test_functions(&out.join("coverage.info"))?;
    let total_main: i64 = all.values().filter_map(|f| f.get("main")).sum();
    ensure!(
        total_main >= 2,
        "the combined report holds both boots: {all:?}"
    );
    Ok(())
}

#[test]
fn reboot_keeps_the_first_boots_coverage_on_vms() -> Result<()> {
    reboot_keeps_the_first_boots_coverage("vm")
}

#[test]
fn reboot_keeps_the_first_boots_coverage_on_namespace_machines() -> Result<()> {
    reboot_keeps_the_first_boots_coverage("namespace")
}
