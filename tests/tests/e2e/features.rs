//! Features the docs promise, each driven end to end through the `covnet`
//! binary (issue 11, item 5): `covnet collect --local` with `--prefix`,
//! `--flush` and `--reset`; `covnet merge --include`; `covnet run` with
//! `--coverage-per-subtest`, `m.reset_coverage()`, `m.wait_until_fails`,
//! `--pcap` (read back with tcpdump) and `--keep-going` (read back from
//! the JUnit file).
//!
//! The programs are the merge tests' C program (`lcov_tool::Program`) and
//! a small service, compiled with `gcc --coverage` at test time. Machines
//! are namespace machines (`--backend namespace`) except for the VM half of
//! the pcap test. Needs gcc, lcov, busybox-static, tcpdump, xmllint and
//! QEMU from scripts/setup.sh; a missing one fails loudly.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use covnet_tests::lcov_tool::{self, covnet, Output, Program, Tracefile};
use covnet_tests::running::wait_until;

/// Longest wait for a process or file a test started (well inside the
/// nextest limit of 10 minutes).
const WAIT: Duration = Duration::from_secs(60);

fn s(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

/// Every `.gcda` file below `dir`, keyed by its path relative to `dir`.
fn gcda_below(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "gcda") {
                let rel = p.strip_prefix(dir).expect("below dir").to_path_buf();
                out.insert(rel, std::fs::read(&p).expect("read .gcda"));
            }
        }
    }
    out
}

/// Fails unless `got` has the same `.gcda` paths as `want`, each with the
/// same bytes.
fn assert_same_gcda(got: &BTreeMap<PathBuf, Vec<u8>>, want: &BTreeMap<PathBuf, Vec<u8>>) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "not the same .gcda files"
    );
    for (path, bytes) in want {
        assert!(got.get(path) == Some(bytes), "{} differs", path.display());
    }
}

/// Per (source file name, function name): the count of a tracefile.
fn function_counts(t: &Tracefile) -> BTreeMap<(String, String), i64> {
    t.functions
        .iter()
        .map(|((file, name), (_, count))| {
            let base = Path::new(file)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            ((base, name.clone()), *count)
        })
        .collect()
}

/// A service that writes its counts only at a clean exit: it calls
/// `tick` N times, writes its pid file (atomically, after its SIGTERM
/// handler is in place), and waits for SIGTERM, then returns from `main`.
const SERVICE_C: &str = r#"#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
    (void)sig;
    stop = 1;
}

static int tick(int i)
{
    return i * i;
}

int main(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    struct sigaction sa = {0};
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    sigset_t term, old;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    sigprocmask(SIG_BLOCK, &term, &old);
    int n = atoi(argv[2]), sum = 0;
    for (int i = 0; i < n; i++)
        sum += tick(i);
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", argv[1]);
    FILE *f = fopen(tmp, "w");
    if (!f || fprintf(f, "%d\n", (int)getpid()) < 0 || fclose(f) != 0 || rename(tmp, argv[1]) != 0)
        return 3;
    while (!stop)
        sigsuspend(&old);
    return sum > 0 ? 0 : 4;
}
"#;

/// A host process started by a test; SIGKILLed on drop.
struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// `covnet collect --local --prefix DIR --flush GLOB` pulls exactly the
/// `.gcda` files below the prefix (after stopping the running service so
/// that it writes its own), with counts equal to gcov's (lcov's geninfo)
/// on them; `--reset` then leaves no `.gcda` behind, so the next run counts
/// afresh.
#[test]
fn collect_local_prefix_flush_and_reset() {
    let p = Program::build().expect("build the C program with gcc --coverage");
    let service = p
        .add_program("service", SERVICE_C)
        .expect("build the service with gcc --coverage");
    let work = p.dir.path();
    // Two runs of `prog` write main.gcda and util.gcda below the prefix.
    let prefix = p.capture("prefix", &["9", "3"]).expect("run prog");
    std::fs::write(prefix.join("stray.txt"), "not coverage").expect("write stray file");
    let pids = work.join("pids");
    std::fs::create_dir_all(&pids).expect("mkdir pids");
    let pidfile = pids.join("service.pid");
    let mut svc = Service(
        Command::new(&service)
            .arg(&pidfile)
            .arg("5")
            .env("GCOV_PREFIX", &prefix)
            .current_dir(&p.build)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the service"),
    );
    wait_until("the service writes its pid file", WAIT, || pidfile.exists())
        .expect("service ready");
    let before = gcda_below(&prefix);
    let names = |m: &BTreeMap<PathBuf, Vec<u8>>| -> BTreeSet<String> {
        m.keys()
            .filter_map(|k| k.file_name().map(|f| f.to_string_lossy().into_owned()))
            .collect()
    };
    assert_eq!(
        names(&before),
        BTreeSet::from(["main.gcda".to_owned(), "util.gcda".to_owned()]),
        "the running service has written nothing yet"
    );

    let cap = work.join("cap");
    let flush = format!("{}/*.pid", s(&pids));
    let res = covnet(
        &[
            "collect",
            "--local",
            "--prefix",
            s(&prefix),
            "--flush",
            &flush,
            "-o",
            s(&cap),
        ],
        work,
    )
    .expect("run covnet collect");
    assert_eq!(res.code(), 0, "{res}");
    assert!(res.stderr.contains("pulled 3 .gcda files"), "{res}");
    // The flush stopped the service with SIGTERM: it exited through main.
    let mut status = None;
    wait_until("the flushed service exits", WAIT, || {
        status = svc.0.try_wait().ok().flatten();
        status.is_some()
    })
    .expect("--flush stops the service");
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{status:?}");
    let on_disk = gcda_below(&prefix);
    assert_eq!(
        names(&on_disk),
        BTreeSet::from([
            "main.gcda".to_owned(),
            "service.gcda".to_owned(),
            "util.gcda".to_owned()
        ])
    );
    // Exactly those files, byte for byte, at the same paths (mirroring the
    // build directory); the stray file is not coverage.
    assert_same_gcda(&gcda_below(&cap), &on_disk);
    assert!(!cap.join("stray.txt").exists());

    // Their counts are gcov's.
    let info = work.join("collected.info");
    let res = covnet(
        &["merge", "--build", s(&p.build), s(&cap), "-o", s(&info)],
        work,
    )
    .expect("run covnet merge");
    assert_eq!(res.code(), 0, "{res}");
    let ours = Tracefile::read(&info).expect("read covnet's tracefile");
    let peer = Tracefile::read(&p.lcov_capture(&cap, "collected").expect("lcov --capture"))
        .expect("read lcov's tracefile");
    let d = lcov_tool::diff_maps("gcov", &peer.lines, "covnet", &ours.lines);
    assert!(d.is_empty(), "line counts differ from gcov:\n{d}");
    let fc = function_counts(&ours);
    let d = lcov_tool::diff_maps("gcov", &function_counts(&peer), "covnet", &fc);
    assert!(d.is_empty(), "function counts differ from gcov:\n{d}");
    let count = |file: &str, f: &str| fc.get(&(file.to_owned(), f.to_owned())).copied();
    assert_eq!(count("util.c", "classify"), Some(12), "{fc:?}");
    assert_eq!(count("main.c", "main"), Some(2), "{fc:?}");
    assert_eq!(count("service.c", "tick"), Some(5), "{fc:?}");
    assert_eq!(count("service.c", "on_term"), Some(1), "{fc:?}");

    // --reset: the same files again, then none left on the machine.
    let cap2 = work.join("cap2");
    let res = covnet(
        &[
            "collect",
            "--local",
            "--prefix",
            s(&prefix),
            "--reset",
            "-o",
            s(&cap2),
        ],
        work,
    )
    .expect("run covnet collect --reset");
    assert_eq!(res.code(), 0, "{res}");
    assert!(res.stderr.contains("pulled 3 .gcda files"), "{res}");
    assert_same_gcda(&gcda_below(&cap2), &on_disk);
    let left: Vec<PathBuf> = gcda_below(&prefix).into_keys().collect();
    assert!(left.is_empty(), "--reset left {left:?}");
    assert!(
        prefix.join("stray.txt").is_file(),
        "--reset deletes only .gcda files"
    );
    let cap3 = work.join("cap3");
    let res = covnet(
        &["collect", "--local", "--prefix", s(&prefix), "-o", s(&cap3)],
        work,
    )
    .expect("run covnet collect");
    assert_eq!(res.code(), 0, "{res}");
    assert!(res.stderr.contains("pulled 0 .gcda files"), "{res}");
    assert!(gcda_below(&cap3).is_empty(), "{res}");

    // gcov adds to existing data files: after the reset a new run counts
    // from zero (3 calls, not 12 + 3).
    p.capture("prefix", &["3"]).expect("run prog again");
    let cap4 = work.join("cap4");
    let res = covnet(
        &["collect", "--local", "--prefix", s(&prefix), "-o", s(&cap4)],
        work,
    )
    .expect("run covnet collect");
    assert_eq!(res.code(), 0, "{res}");
    let info4 = work.join("after-reset.info");
    let res = covnet(
        &["merge", "--build", s(&p.build), s(&cap4), "-o", s(&info4)],
        work,
    )
    .expect("run covnet merge");
    assert_eq!(res.code(), 0, "{res}");
    let fc = function_counts(&Tracefile::read(&info4).expect("read"));
    assert_eq!(
        fc.get(&("util.c".to_owned(), "classify".to_owned())),
        Some(&3),
        "{fc:?}"
    );
    assert_eq!(
        fc.get(&("service.c".to_owned(), "tick".to_owned())),
        Some(&0),
        "{fc:?}"
    );
}

/// The source files of a tracefile.
fn sources(t: &Tracefile) -> BTreeSet<String> {
    t.lines
        .keys()
        .map(|(f, _)| f.clone())
        .chain(t.functions.keys().map(|(f, _)| f.clone()))
        .collect()
}

/// `t` restricted to the source files in `keep`.
fn restricted(t: &Tracefile, keep: &BTreeSet<String>) -> Tracefile {
    Tracefile {
        lines: t
            .lines
            .iter()
            .filter(|((f, _), _)| keep.contains(f))
            .map(|(k, v)| (k.clone(), *v))
            .collect(),
        branches: t
            .branches
            .iter()
            .filter(|((f, _), _)| keep.contains(f))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        functions: t
            .functions
            .iter()
            .filter(|((f, _), _)| keep.contains(f))
            .map(|(k, v)| (k.clone(), *v))
            .collect(),
        tests: t.tests.clone(),
    }
}

/// `covnet merge --include GLOB` keeps exactly the matching source files,
/// with the counts they have in the unfiltered merge, for captures and
/// tracefiles alike; several `--include` add up, `--exclude` still applies.
#[test]
fn merge_include_keeps_only_matching_files() {
    let p = Program::build().expect("build the C program with gcc --coverage");
    let work = p.dir.path();
    let c1 = p.capture("c1", &["9"]).expect("run c1");
    let c2 = p.capture("c2", &["41"]).expect("run c2");
    let merge = |name: &str, extra: &[&str]| -> Tracefile {
        let out = work.join(name);
        let mut args = vec!["merge", "--build", s(&p.build), s(&c1), s(&c2)];
        args.extend_from_slice(extra);
        args.extend(["-o", s(&out)]);
        let res = covnet(&args, work).expect("run covnet merge");
        assert_eq!(res.code(), 0, "{res}");
        Tracefile::read(&out).expect("read tracefile")
    };
    let all = merge("all.info", &[]);
    let main_c = s(&p.src.join("main.c")).to_owned();
    let util_c = s(&p.src.join("util.c")).to_owned();
    let util_h = s(&p.src.join("util.h")).to_owned();
    assert_eq!(
        sources(&all),
        BTreeSet::from([main_c.clone(), util_c.clone(), util_h.clone()]),
        "the unfiltered merge has all three files, so the filter has work"
    );

    let only_util = merge("util.info", &["--include", "*/util.c"]);
    let keep = BTreeSet::from([util_c.clone()]);
    assert_eq!(sources(&only_util), keep);
    assert_eq!(only_util, restricted(&all, &keep));

    let two = merge(
        "two.info",
        &["--include", "*/util.c", "--include", "*/main.c"],
    );
    let keep = BTreeSet::from([main_c.clone(), util_c.clone()]);
    assert_eq!(sources(&two), keep);
    assert_eq!(two, restricted(&all, &keep));

    let both = merge("both.info", &["--include", "*/util.*", "--exclude", "*.h"]);
    assert_eq!(both, only_util, "--exclude applies after --include");

    // A tracefile input is filtered the same way.
    let out = work.join("from-tracefile.info");
    let res = covnet(
        &[
            "merge",
            s(&work.join("all.info")),
            "--include",
            "*/main.c",
            "-o",
            s(&out),
        ],
        work,
    )
    .expect("run covnet merge");
    assert_eq!(res.code(), 0, "{res}");
    let t = Tracefile::read(&out).expect("read");
    let keep = BTreeSet::from([main_c]);
    assert_eq!(sources(&t), keep);
    assert_eq!(t, restricted(&all, &keep));
}

/// Writes `spec` as `<dir>/<name>` and runs `covnet run` on it with
/// `--backend BACKEND --no-console --out <dir>/out-<name>` and `extra`.
fn run_spec(
    dir: &Path,
    name: &str,
    spec: &str,
    backend: &str,
    extra: &[&str],
) -> (Output, PathBuf) {
    let path = dir.join(name);
    std::fs::write(&path, spec).expect("write spec");
    let out = dir.join(format!("out-{name}"));
    let mut args = vec![
        "run",
        s(&path),
        "--backend",
        backend,
        "--no-console",
        "--out",
        s(&out),
    ];
    args.extend_from_slice(extra);
    (covnet(&args, dir).expect("run covnet"), out)
}

/// Two machines `a` and `b` with the C program, and a script.
fn two_machines(prog: &Path, script: &str) -> String {
    format!(
        "[machines.a]\nprograms = [\"{p}\"]\n\n[machines.b]\nprograms = [\"{p}\"]\n\n[test]\ntimeout = \"5m\"\nscript = '''\n{script}'''\n",
        p = s(prog)
    )
}

/// The run's `coverage.json`: per capture name, per function name of
/// `main.c` and `util.c`, its count in that capture.
fn counts_by_capture(out: &Path) -> BTreeMap<String, BTreeMap<String, i64>> {
    let (cov, _) = covnet_reporter::json::read_path(&out.join("coverage.json"))
        .expect("coverage.json is a covnet report");
    let mut per: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    for (path, file) in &cov.files {
        if !(path.ends_with("/main.c") || path.ends_with("/util.c")) {
            continue;
        }
        for f in &file.functions {
            assert_eq!(f.by_capture.len(), cov.captures.len(), "{path}: {}", f.name);
            for (capture, n) in cov.captures.iter().zip(&f.by_capture) {
                per.entry(capture.clone())
                    .or_default()
                    .insert(f.name.clone(), *n);
            }
        }
    }
    // Every capture is listed, even one with no data.
    for c in &cov.captures {
        per.entry(c.clone()).or_default();
    }
    per
}

/// `(main, classify, walk)` calls of one capture.
fn calls(per: &BTreeMap<String, BTreeMap<String, i64>>, capture: &str) -> (i64, i64, i64) {
    let Some(f) = per.get(capture) else {
        panic!("no capture `{capture}` in {per:?}");
    };
    let get = |n: &str| f.get(n).copied().unwrap_or(0);
    (get("main"), get("classify"), get("walk"))
}

/// `covnet run --coverage --coverage-per-subtest` keeps each subtest's
/// coverage as `<machine>@<subtest>` captures holding exactly what that
/// subtest ran on that machine (and the end of the script as `<machine>`);
/// without the flag there are only the per-machine captures.
#[test]
fn coverage_per_subtest_captures_each_subtest() {
    let p = Program::build().expect("build the C program with gcc --coverage");
    let work = p.dir.path();
    // prog N calls main once and classify N times; walk only for 40 or 41.
    let spec = two_machines(
        &p.build.join("prog"),
        r#"start_all();
subtest("one", || { a.succeed("prog 3"); });
subtest("two", || { b.succeed("prog 9 && prog 9"); });
subtest("idle", || { a.succeed("true"); });
a.succeed("prog 41");
"#,
    );
    let build = s(&p.build);
    let (res, out) = run_spec(
        work,
        "subtests.toml",
        &spec,
        "namespace",
        &["--coverage", "--coverage-per-subtest", "--build", build],
    );
    assert_eq!(res.code(), 0, "{res}");
    let per = counts_by_capture(&out);
    assert_eq!(
        per.keys().cloned().collect::<BTreeSet<_>>(),
        ["a", "a@idle", "a@one", "a@two", "b", "b@idle", "b@one", "b@two"]
            .map(String::from)
            .into(),
        "{per:?}"
    );
    assert_eq!(calls(&per, "a@one"), (1, 3, 0), "{per:?}");
    assert_eq!(calls(&per, "b@one"), (0, 0, 0), "{per:?}");
    assert_eq!(calls(&per, "a@two"), (0, 0, 0), "{per:?}");
    assert_eq!(calls(&per, "b@two"), (2, 18, 0), "{per:?}");
    assert_eq!(calls(&per, "a@idle"), (0, 0, 0), "{per:?}");
    assert_eq!(calls(&per, "b@idle"), (0, 0, 0), "{per:?}");
    assert_eq!(calls(&per, "a"), (1, 41, 1), "{per:?}");
    assert_eq!(calls(&per, "b"), (0, 0, 0), "{per:?}");
    let total = Tracefile::read(&out.join("coverage.info")).expect("coverage.info");
    let fc = function_counts(&total);
    assert_eq!(
        fc.get(&("util.c".to_owned(), "classify".to_owned())),
        Some(&62),
        "the combined count is the sum of the subtests' and the rest: {fc:?}"
    );
    // The pulled data sits in one directory per capture.
    assert!(
        gcda_below(&out.join("coverage/a@one")).len() == 2
            && gcda_below(&out.join("coverage/b@two")).len() == 2,
        "{:?}",
        gcda_below(&out.join("coverage")).keys()
    );

    // Without the flag: one capture per machine, holding everything.
    let (res, out) = run_spec(
        work,
        "whole.toml",
        &spec,
        "namespace",
        &["--coverage", "--build", build],
    );
    assert_eq!(res.code(), 0, "{res}");
    let per = counts_by_capture(&out);
    assert_eq!(
        per.keys().cloned().collect::<Vec<_>>(),
        ["a", "b"],
        "{per:?}"
    );
    assert_eq!(calls(&per, "a"), (2, 44, 1), "{per:?}");
    assert_eq!(calls(&per, "b"), (2, 18, 0), "{per:?}");
}

/// `m.reset_coverage()` deletes what ran before it on that machine only:
/// `a` ran `prog 41` (the only run that calls `walk`), was reset, then ran
/// `prog 3`; `b` ran the same without the reset.
#[test]
fn reset_coverage_drops_what_ran_before() {
    let p = Program::build().expect("build the C program with gcc --coverage");
    let work = p.dir.path();
    let spec = two_machines(
        &p.build.join("prog"),
        r#"start_all();
a.reset_coverage();
a.succeed("prog 41");
b.succeed("prog 41");
a.succeed("test -n \"$(find /covnet/gcov -name '*.gcda')\"");
a.reset_coverage();
a.succeed("test -z \"$(find /covnet/gcov -name '*.gcda')\"");
a.succeed("prog 3");
b.succeed("prog 3");
"#,
    );
    let (res, out) = run_spec(
        work,
        "reset.toml",
        &spec,
        "namespace",
        &["--coverage", "--build", s(&p.build)],
    );
    assert_eq!(res.code(), 0, "{res}");
    assert!(res.stderr.contains("a: reset_coverage()"), "{res}");
    let per = counts_by_capture(&out);
    assert_eq!(
        calls(&per, "a"),
        (1, 3, 0),
        "only the run after the reset: {per:?}"
    );
    assert_eq!(calls(&per, "b"), (2, 44, 1), "no reset on b: {per:?}");
    let fc = function_counts(&Tracefile::read(&out.join("coverage.info")).expect("read"));
    assert_eq!(
        fc.get(&("util.c".to_owned(), "walk".to_owned())),
        Some(&1),
        "{fc:?}"
    );
}

/// The `<testcase>` elements of a JUnit file: name and whether it has a
/// `<failure>`; the file must be well-formed XML (xmllint).
pub(crate) fn junit_cases(path: &Path) -> Vec<(String, bool)> {
    lcov_tool::run_ok(Command::new("xmllint").arg("--noout").arg(path))
        .expect("xmllint accepts the JUnit file (libxml2-utils, scripts/setup.sh)");
    let xml = std::fs::read_to_string(path).expect("JUnit file written");
    xml.split("<testcase ")
        .skip(1)
        .map(|case| {
            let name = case
                .split_once("name=\"")
                .and_then(|(_, rest)| rest.split_once('"'))
                .map(|(n, _)| n.to_owned())
                .expect("testcase name");
            let body = case.split("</testcase>").next().unwrap_or("");
            (name, body.contains("<failure"))
        })
        .collect()
}

/// One machine `a` and a script.
fn one_machine(script: &str) -> String {
    format!("[machines.a]\n\n[test]\ntimeout = \"5m\"\nscript = '''\n{script}'''\n")
}

/// `m.wait_until_fails(cmd, t)` retries until `cmd` exits non-zero and
/// returns its stderr (here on the third attempt, then no more attempts);
/// for a command that never fails it times out with an error naming the
/// step, the timeout and the last attempt.
#[test]
fn wait_until_fails_returns_on_failure_and_times_out_otherwise() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Attempts 1 and 2 succeed, attempt 3 fails: no clock involved.
    let spec = one_machine(
        r#"start_all();
subtest("flips", || {
    let err = a.wait_until_fails("n=$(cat /tmp/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /tmp/n; [ $n -lt 3 ] || { echo failed at attempt $n >&2; exit 1; }", 60);
    if err != "failed at attempt 3\n" { throw `unexpected stderr: ${err}`; }
    let n = a.succeed("cat /tmp/n");
    if n != "3\n" { throw `attempts: ${n}`; }
    print("wait_until_fails returned: " + err);
});
a.wait_until_fails("true", 2);
print("not reached");
"#,
    );
    let junit = dir.path().join("junit.xml");
    let (res, _) = run_spec(
        dir.path(),
        "wait.toml",
        &spec,
        "namespace",
        &["--junit", s(&junit)],
    );
    assert_eq!(res.code(), 2, "{res}");
    assert!(
        res.stderr
            .contains("wait_until_fails returned: failed at attempt 3"),
        "{res}"
    );
    assert!(
        res.stderr.contains(
            "machine `a`: wait_until_fails(`true`) failed at script line 9, column 3: timed out after 2s waiting for `true` to fail"
        ),
        "{res}"
    );
    assert!(
        res.stderr.contains("last attempt exited with status 0"),
        "{res}"
    );
    assert!(!res.stderr.contains("not reached"), "{res}");
    assert_eq!(
        junit_cases(&junit),
        [("flips".to_owned(), false), ("script".to_owned(), true)]
    );
}

/// `covnet run --keep-going`: a failing subtest does not stop the script,
/// the next subtest and the statements after it run, the JUnit file has
/// one failed and one passed subtest, and the run exits 2. Without the
/// flag the first failure ends the script.
#[test]
fn keep_going_runs_the_subtests_after_a_failure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = one_machine(
        r#"start_all();
subtest("first fails", || {
    a.succeed("touch /tmp/first");
    a.succeed("echo first-failed >&2; exit 3");
    a.succeed("touch /tmp/not-reached");
});
subtest("second passes", || { a.succeed("touch /tmp/second"); });
a.succeed("test -e /tmp/first && test -e /tmp/second && test ! -e /tmp/not-reached");
print("after both subtests");
"#,
    );
    let junit = dir.path().join("junit.xml");
    let (res, _) = run_spec(
        dir.path(),
        "kg.toml",
        &spec,
        "namespace",
        &["--keep-going", "--junit", s(&junit)],
    );
    assert_eq!(res.code(), 2, "{res}");
    assert!(res.stderr.contains("after both subtests"), "{res}");
    assert!(
        res.stderr.contains("1 subtest(s) failed: first fails"),
        "{res}"
    );
    assert!(res.stderr.contains("first-failed"), "{res}");
    let cases = junit_cases(&junit);
    assert_eq!(
        cases
            .iter()
            .filter(|(n, _)| n != "script")
            .cloned()
            .collect::<Vec<_>>(),
        [
            ("first fails".to_owned(), true),
            ("second passes".to_owned(), false)
        ],
        "{cases:?}"
    );
    let xml = std::fs::read_to_string(&junit).expect("junit");
    assert!(xml.contains(r#"failures="1""#), "{xml}");

    let junit = dir.path().join("junit-stop.xml");
    let (res, _) = run_spec(
        dir.path(),
        "stop.toml",
        &spec,
        "namespace",
        &["--junit", s(&junit)],
    );
    assert_eq!(res.code(), 2, "{res}");
    assert!(!res.stderr.contains("after both subtests"), "{res}");
    assert_eq!(junit_cases(&junit), [("first fails".to_owned(), true)]);
}

/// A web server and a client; the page's text is unique to this test.
const PCAP_PAGE: &str = "covnet-pcap-page-5e1d";

fn pcap_spec() -> String {
    format!(
        r#"[machines.server]
[[machines.server.files]]
content = "{PCAP_PAGE}"
target = "/srv/www/index.html"
[[machines.server.services]]
name = "httpd"
command = "busybox httpd -f -p 80 -h /srv/www"
ready = {{ port = 80 }}

[machines.client]

[test]
timeout = "5m"
script = '''
start_all();
server.wait_for_service("httpd");
let page = client.succeed("wget -q -O - http://server/index.html");
if page != "{PCAP_PAGE}" {{ throw `unexpected page: ${{page}}`; }}
client.succeed("wget -q -O - http://server/pcap-missing-7c2b");
'''
"#
    )
}

/// `covnet run --pcap` on `backend`: the failed run's bundle holds
/// `pcap/vlan1.pcap`, which tcpdump reads, and it shows the script's two
/// HTTP exchanges between the machines' addresses (request lines, status
/// lines, the page's text).
fn pcap_holds_the_http_exchange(backend: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (res, out) = run_spec(dir.path(), "web.toml", &pcap_spec(), backend, &["--pcap"]);
    assert_eq!(res.code(), 2, "the script fails on the 404: {res}");
    assert!(res.stderr.contains("404 Not Found"), "{res}");
    let pcap = out.join("failure/pcap/vlan1.pcap");
    assert!(pcap.is_file(), "{} missing\n{res}", pcap.display());
    let dump = lcov_tool::run_ok(Command::new("tcpdump").args(["-nn", "-A", "-r"]).arg(&pcap))
        .expect("tcpdump reads the pcap (tcpdump is installed by scripts/setup.sh)");
    assert!(
        dump.stderr.contains("link-type EN10MB"),
        "an Ethernet capture: {dump}"
    );
    let text = &dump.stdout;
    // Packet header lines: client (192.168.1.2) to server port 80, and back.
    let packet = |from: &str, to: &str, what: &str| {
        text.lines()
            .any(|l| l.contains(from) && l.contains(to) && l.contains(what))
    };
    let (client, server) = ("IP 192.168.1.2.", "> 192.168.1.1.80:");
    assert!(packet(client, server, "GET /index.html HTTP/1.1"), "{text}");
    assert!(
        packet("IP 192.168.1.1.80 >", " 192.168.1.2.", "HTTP/1.1 200 OK"),
        "{text}"
    );
    assert!(text.contains(PCAP_PAGE), "the page's bytes: {text}");
    assert!(
        packet(client, server, "GET /pcap-missing-7c2b HTTP/1.1"),
        "{text}"
    );
    assert!(
        packet(
            "IP 192.168.1.1.80 >",
            " 192.168.1.2.",
            "HTTP/1.1 404 Not Found"
        ),
        "{text}"
    );
}

/// `--pcap` with namespace machines; without `--pcap` the bundle has none;
/// a run that passes (no bundle) has its capture in `<out>/pcap/`.
#[test]
fn pcap_on_namespace_machines_holds_the_http_exchange() {
    pcap_holds_the_http_exchange("namespace");
    let dir = tempfile::tempdir().expect("tempdir");
    let (res, out) = run_spec(dir.path(), "web.toml", &pcap_spec(), "namespace", &[]);
    assert_eq!(res.code(), 2, "{res}");
    assert!(out.join("failure/report.txt").is_file(), "{res}");
    assert!(!out.join("failure/pcap").exists(), "{res}");

    let passing = pcap_spec().replace(
        "client.succeed(\"wget -q -O - http://server/pcap-missing-7c2b\");\n",
        "",
    );
    assert_ne!(passing, pcap_spec());
    let (res, out) = run_spec(dir.path(), "pass.toml", &passing, "namespace", &["--pcap"]);
    assert_eq!(res.code(), 0, "{res}");
    assert!(!out.join("failure").exists(), "{res}");
    let pcap = out.join("pcap/vlan1.pcap");
    assert!(
        res.stderr
            .contains(&format!("packet captures: {}", out.join("pcap").display())),
        "{res}"
    );
    let dump = lcov_tool::run_ok(Command::new("tcpdump").args(["-nn", "-A", "-r"]).arg(&pcap))
        .expect("tcpdump reads the passed run's pcap");
    assert!(dump.stdout.contains("GET /index.html HTTP/1.1"), "{dump}");
    assert!(dump.stdout.contains(PCAP_PAGE), "{dump}");
}

/// `--pcap` with TCG VMs: the same capture through QEMU's NICs.
#[test]
fn pcap_on_vms_holds_the_http_exchange() {
    let qemu = Command::new("qemu-system-x86_64").arg("--version").output();
    assert!(
        qemu.as_ref().is_ok_and(|o| o.status.success()),
        "qemu-system-x86_64 is required (scripts/setup.sh): {qemu:?}"
    );
    pcap_holds_the_http_exchange("vm");
}
