//! The signal-driven flush, for real: a program built with `gcc --coverage`
//! and `covnet_flush.c` writes its counts on SIGUSR2 while it keeps running.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use covnet_collector::{Collector, LocalShell, Shell, FLUSH_C_SOURCE};

const PROGRAM: &str = r#"#include <unistd.h>
int work(int n)
{
    int s = 0;
    for (int i = 0; i < n; i++)
        s += i;
    return s;
}
int main(void) {
    volatile int sink = 0;
    for (int k = 0; k < 7; k++)
        sink += work(3);
    for (;;)
        pause();
}
"#;

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("cannot run {cmd:?}: {e} (gcc and gcov are required; run scripts/setup.sh)")
    });
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn sigusr2_writes_counts_without_stopping_the_program() {
    let dir = tempfile::tempdir().unwrap();
    let build = dir.path().join("build");
    let prefix = dir.path().join("prefix");
    std::fs::create_dir_all(&build).unwrap();
    std::fs::create_dir_all(&prefix).unwrap();
    std::fs::write(build.join("svc.c"), PROGRAM).unwrap();
    std::fs::write(build.join("covnet_flush.c"), FLUSH_C_SOURCE).unwrap();
    run(Command::new("gcc").current_dir(&build).args([
        "--coverage",
        "-O0",
        "-pthread",
        "-o",
        "svc",
        "svc.c",
        "covnet_flush.c",
    ]));

    let shell = LocalShell::new();
    let b = build.to_str().unwrap();
    let p = prefix.to_str().unwrap();
    shell
        .run(
            // Started once its flush thread has announced itself (bounded).
            &format!("cd {b} && GCOV_PREFIX={p} setsid ./svc </dev/null >/dev/null 2>&1 & echo $! > {b}/svc.pid; \
                      i=0; while [ ! -f {p}/.covnet-flush-$(cat {b}/svc.pid) ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done"),
            Duration::from_secs(10),
        )
        .unwrap();
    let pid = std::fs::read_to_string(build.join("svc.pid"))
        .unwrap()
        .trim()
        .to_string();

    let collector = Collector::new(LocalShell::new(), p, Duration::from_secs(30));
    let report = collector
        .signal_flush(&format!("{b}/*.pid"), "USR2", Duration::from_secs(10))
        .unwrap();
    let still_running = Path::new("/proc").join(&pid).exists();
    // End the program without an exit-time dump before any assertion.
    let _ = Command::new("kill").args(["-9", &pid]).status();
    assert_eq!(report.stopped, vec!["svc"], "{report:?}");
    assert!(report.survivors.is_empty());
    assert!(still_running, "the flush must not stop the program");

    // The dump landed under the prefix, mirroring the build path.
    let pulled_to = dir.path().join("capture");
    let pulled = collector.pull(&pulled_to).unwrap();
    assert_eq!(pulled.files.len(), 2, "{:?}", pulled.files);

    // And it holds the right counts: gcov says `work` ran 7 times.
    let capture_build = pulled_to.join(build.strip_prefix("/").unwrap());
    for f in std::fs::read_dir(&capture_build).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, build.join(f.file_name().unwrap())).unwrap();
    }
    let out = run(Command::new("gcov")
        .current_dir(&build)
        .args(["-t", "svc-svc.gcno"]));
    let text = String::from_utf8_lossy(&out.stdout);
    let work_line = text
        .lines()
        .find(|l| l.ends_with(":int work(int n)"))
        .unwrap_or_else(|| panic!("no `work` line in gcov output:\n{text}"));
    assert!(work_line.trim_start().starts_with("7:"), "{work_line}");
    let body_line = text
        .lines()
        .find(|l| l.ends_with("s += i;"))
        .unwrap_or_else(|| panic!("no loop body in gcov output:\n{text}"));
    assert!(body_line.trim_start().starts_with("21:"), "{body_line}");
}
