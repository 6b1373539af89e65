//! covnet's preloaded flush shim on this host, without machines: a program
//! built with plain `gcc --coverage` (no `covnet_flush.c`) writes its counts
//! on SIGUSR2 while it keeps running, each flush holds only what ran since
//! the previous one, and the flushes plus the exit-time dump add up to
//! exactly the counters of a run that was never flushed. Static and
//! stripped programs are known to be unflushable before they run.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use covnet_collector::{Collector, LocalShell};
use covnet_runner::coverage::flush::{self, FlushTable, Flushability};

/// A service stand-in: one command per input line, a reply per command.
const PROGRAM: &str = r#"#include <stdio.h>
#include <string.h>
static int hits;
int route_a(int n)
{
    int s = 0;
    for (int i = 0; i < n; i++)
        s += i;
    return s;
}
int route_b(const char *arg)
{
    if (strlen(arg) > 3)
        return 2;
    return 1;
}
int main(void)
{
    char line[128];
    while (fgets(line, sizeof line, stdin) != NULL) {
        if (line[0] == 'a')
            hits += route_a(5);
        else
            hits += route_b(line);
        printf("ok %d\n", hits);
        fflush(stdout);
    }
    return 0;
}
"#;

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("cannot run {cmd:?}: {e} (gcc is required; run scripts/setup.sh)")
    });
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        std::fs::create_dir_all(root.join("build")).unwrap();
        std::fs::write(root.join("build/svc.c"), PROGRAM).unwrap();
        Fixture { _dir: dir, root }
    }

    fn build(&self) -> PathBuf {
        self.root.join("build")
    }

    /// `gcc --coverage -O0 extra... -o name svc.c`.
    fn compile(&self, name: &str, extra: &[&str]) -> PathBuf {
        run(Command::new("gcc")
            .current_dir(self.build())
            .args(["--coverage", "-O0"])
            .args(extra)
            .args(["-o", name, "svc.c"]));
        self.build().join(name)
    }
}

/// The running program with its pipes.
struct Service {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Service {
    fn start(program: &Path, prefix: &Path, preload: Option<(&Path, &Path)>) -> Service {
        let mut cmd = Command::new(program);
        cmd.env("GCOV_PREFIX", prefix)
            .env("GCOV_PREFIX_STRIP", "0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        if let Some((shim, table)) = preload {
            cmd.env("LD_PRELOAD", shim).env("COVNET_FLUSH_TABLE", table);
        }
        let mut child = cmd.spawn().unwrap();
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Service {
            child,
            stdin,
            stdout,
        }
    }

    fn send(&mut self, line: &str) {
        let w = self.stdin.as_mut().unwrap();
        writeln!(w, "{line}").unwrap();
        w.flush().unwrap();
        let mut reply = String::new();
        self.stdout.read_line(&mut reply).unwrap();
        assert!(reply.starts_with("ok "), "reply {reply:?}");
    }

    /// Ends the program normally (its exit-time dump runs).
    fn finish(mut self) {
        drop(self.stdin.take());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{status}");
    }
}

/// Per (gcda path below the capture, function ident): the arc counters.
type Arcs = BTreeMap<(String, u32), Vec<i64>>;

fn arcs(capture: &Path) -> Arcs {
    let mut out = Arcs::new();
    let mut stack = vec![capture.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "gcda") {
                let bytes = std::fs::read(&p).unwrap();
                let data = covnet_merger::gcda::Data::parse(&bytes)
                    .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                let rel = p.strip_prefix(capture).unwrap().display().to_string();
                for f in &data.functions {
                    let counters = f.arcs.map(|a| a.iter().collect()).unwrap_or_default();
                    out.insert((rel.clone(), f.ident), counters);
                }
            }
        }
    }
    out
}

fn add(total: &mut Arcs, more: &Arcs) {
    for (k, v) in more {
        let t = total.entry(k.clone()).or_insert_with(|| vec![0; v.len()]);
        assert_eq!(t.len(), v.len(), "{k:?}: counter counts differ");
        for (a, b) in t.iter_mut().zip(v) {
            *a += b;
        }
    }
}

/// Waits (bounded) until the flush thread of `pid` has announced itself.
fn wait_ready(prefix: &Path, pid: u32) {
    let ack = prefix.join(format!(".covnet-flush-{pid}"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ack.exists() {
        assert!(
            Instant::now() < deadline,
            "the shim never announced itself in {}",
            ack.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn preloaded_shim_flushes_unmodified_programs_and_counts_add_up() {
    let fx = Fixture::new();
    let pie = fx.compile("svc", &[]);
    let no_pie = fx.compile("svc-nopie", &["-no-pie"]);
    let table = FlushTable::of_programs([pie.as_path(), no_pie.as_path()]);
    for p in [&pie, &no_pie] {
        let (_, f) = &table.programs[&std::fs::canonicalize(p).unwrap()];
        assert!(matches!(f, Flushability::Shim(_)), "{}: {f:?}", p.display());
    }
    let table_file = fx.root.join("programs.tab");
    std::fs::write(&table_file, table.render()).unwrap();
    let shim = flush::build_shim(&fx.root.join("cache")).expect("the shim builds");
    // Cached: the second call finds the first build.
    assert_eq!(flush::build_shim(&fx.root.join("cache")).unwrap(), shim);

    let script: &[&[&str]] = &[&["a"], &["bb", "bbbbb"], &[]];
    for (n, program) in [&pie, &no_pie].into_iter().enumerate() {
        // The whole run, never flushed.
        let whole_prefix = fx.root.join(format!("whole-{n}"));
        let mut s = Service::start(program, &whole_prefix, None);
        for step in script {
            for line in *step {
                s.send(line);
            }
        }
        s.finish();
        let whole = arcs(&whole_prefix);
        assert!(!whole.is_empty(), "the whole run wrote no counters");

        // The same run flushed after each step but the last.
        let prefix = fx.root.join("prefix");
        let _ = std::fs::remove_dir_all(&prefix);
        let mut s = Service::start(program, &prefix, Some((&shim, &table_file)));
        let pid = s.child.id();
        wait_ready(&prefix, pid);
        let pids = fx.root.join("pids");
        std::fs::create_dir_all(&pids).unwrap();
        std::fs::write(pids.join("svc.pid"), pid.to_string()).unwrap();
        let collector = Collector::new(
            LocalShell::new(),
            prefix.to_str().unwrap(),
            Duration::from_secs(30),
        );
        let mut sum = Arcs::new();
        let mut parts = Vec::new();
        for (i, step) in script.iter().enumerate() {
            for line in *step {
                s.send(line);
            }
            if i + 1 == script.len() {
                break;
            }
            let report = collector
                .signal_flush(
                    &format!("{}/*.pid", pids.display()),
                    flush::FLUSH_SIGNAL,
                    Duration::from_secs(20),
                )
                .unwrap();
            assert_eq!(report.stopped, vec!["svc"], "{report:?}");
            let capture = fx.root.join(format!("capture{i}"));
            let _ = std::fs::remove_dir_all(&capture);
            collector.pull(&capture).unwrap();
            collector.reset().unwrap();
            let got = arcs(&capture);
            add(&mut sum, &got);
            parts.push(got);
        }
        s.finish();
        let last = arcs(&prefix);
        add(&mut sum, &last);
        parts.push(last);
        assert_eq!(
            sum,
            whole,
            "{}: flushes + exit differ from the whole run",
            program.display()
        );
        // Each part holds its own step: route_a only in the first, the
        // two route_b calls only in the second, neither after.
        let calls = |part: &Arcs| -> Vec<i64> { part.values().map(|v| v.iter().sum()).collect() };
        assert!(calls(&parts[0]).iter().any(|c| *c > 0));
        assert_ne!(parts[0], parts[1]);
        assert!(
            parts[1].values().any(|v| v.iter().any(|c| *c > 0)),
            "{:?}",
            parts[1]
        );
        eprintln!(
            "{}: {} functions, counters of 2 flushes + exit == whole run",
            program.display(),
            whole.len()
        );
    }
}

#[test]
fn static_and_stripped_programs_are_known_unflushable() {
    let fx = Fixture::new();
    let stat = fx.compile("svc-static", &["-static"]);
    let dynamic = fx.compile("svc", &[]);
    let stripped = fx.build().join("svc-stripped");
    run(Command::new("strip").arg("-o").arg(&stripped).arg(&dynamic));
    let why = |p: &Path| match flush::inspect(p).unwrap() {
        Flushability::Impossible(why) => why,
        other => panic!("{}: {other:?}", p.display()),
    };
    assert!(why(&stat).contains("statically linked"), "{}", why(&stat));
    assert!(why(&stripped).contains("stripped"), "{}", why(&stripped));
    let note = flush::why_not_flushed(stat.to_str().unwrap()).unwrap();
    assert!(note.contains("svc-static") && note.contains("statically linked"));
    // Nothing to say about a program without gcov data.
    assert_eq!(flush::why_not_flushed("/bin/busybox"), None);
    assert_eq!(
        flush::inspect(Path::new("/bin/busybox")).unwrap(),
        Flushability::NotInstrumented
    );
    // A program that links covnet_flush.c flushes itself.
    std::fs::write(
        fx.build().join("covnet_flush.c"),
        covnet_collector::FLUSH_C_SOURCE,
    )
    .unwrap();
    run(Command::new("gcc").current_dir(fx.build()).args([
        "--coverage",
        "-pthread",
        "-o",
        "svc-linked",
        "svc.c",
        "covnet_flush.c",
    ]));
    assert_eq!(
        flush::inspect(&fx.build().join("svc-linked")).unwrap(),
        Flushability::SelfFlushing
    );
}
