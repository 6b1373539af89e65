//! Live progress (issue 16, item 4): `covnet run --coverage` of a
//! one-machine namespace spec with stderr on a pty draws live lines (a
//! spinner, the elapsed time, the step) for the image build, the boot, the
//! script's waits, the coverage pull, the merge and the report, and erases
//! them: the screen ends with the same lines as the run with stderr on a
//! pipe, whose output has no control sequence at all, like the runs with
//! `TERM=dumb` and with `--no-progress` on the pty.
//!
//! Needs busybox-static and gcc (scripts/setup.sh); a missing one fails.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use covnet_tests::lcov_tool::{covnet_bin, run, run_ok};
use covnet_tests::pty::{screen, PtyChild};
use regex::Regex;

/// Bound of each run (a namespace machine boots in well under a second;
/// gcc and a loaded host may take much longer).
const T: Duration = Duration::from_secs(240);

const APP_C: &str = r#"#include <stdio.h>
int main(int argc, char **argv)
{
    if (argc > 1)
        printf("args\n");
    else
        printf("none\n");
    return 0;
}
"#;

/// A spec with one namespace machine running a web server and a program
/// built with `--coverage` in `dir`.
fn setup(dir: &Path) -> std::path::PathBuf {
    assert!(
        Path::new("/bin/busybox").is_file(),
        "busybox-static is required (bash scripts/setup.sh)"
    );
    std::fs::write(dir.join("app.c"), APP_C).expect("write app.c");
    run_ok(
        Command::new("gcc")
            .args(["--coverage", "-O0", "-o", "app", "app.c"])
            .current_dir(dir),
    )
    .expect("gcc --coverage builds the program (bash scripts/setup.sh)");
    let spec = dir.join("progress.toml");
    std::fs::write(
        &spec,
        format!(
            r#"[defaults]
backend = "namespace"

[machines.m]
programs = ["{app}"]
[[machines.m.services]]
name = "httpd"
command = "busybox httpd -f -p 80 -h /"

[test]
timeout = "5m"
script = '''
start_all();
m.wait_for_open_port(80);
m.wait_until_succeeds("app");
print("progress ok");
'''
"#,
            app = dir.join("app").display()
        ),
    )
    .expect("write spec");
    spec
}

/// `covnet run` on a pty of 30 x 120 with `TERM=term`; the whole output.
fn on_pty(dir: &Path, spec: &Path, term: &str, extra: &[&str]) -> String {
    let mut cmd = Command::new(covnet_bin().expect("covnet binary"));
    cmd.args(["run", "--coverage", "--no-console", "--out", "out"])
        .args(extra)
        .arg(spec)
        .env("TERM", term)
        .current_dir(dir);
    let mut pty = PtyChild::spawn(cmd, 30, 120).expect("covnet run on a pty");
    let (status, out) = pty.finish(T).expect("covnet run ends");
    let text = String::from_utf8_lossy(&out).into_owned();
    assert!(status.success(), "covnet run failed ({status}):\n{text}");
    text
}

/// Lines with what differs from run to run made equal: stamps, times,
/// dates, the run directory.
fn normalized<'a>(lines: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let secs = Regex::new(r"\d+\.\d+s").expect("regex");
    let run_dir = Regex::new(r"run directory \S+").expect("regex");
    let date = Regex::new(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d").expect("regex");
    lines
        .into_iter()
        .map(|l| {
            let l = secs.replace_all(l, "Ns");
            let l = date.replace_all(&l, "DATE");
            run_dir.replace_all(&l, "run directory R").into_owned()
        })
        .collect()
}

#[test]
fn live_progress_on_a_terminal_and_plain_lines_elsewhere() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let spec = setup(dir);

    // stderr on a pipe: today's plain lines, no control sequence.
    let piped = run(
        Command::new(covnet_bin().expect("covnet binary"))
            .args(["run", "--coverage", "--no-console", "--out", "out"])
            .arg(&spec)
            .env("TERM", "xterm")
            .current_dir(dir),
        T,
    )
    .expect("covnet run");
    assert!(piped.status.success(), "covnet run failed:\n{piped}");
    let plain = &piped.stderr;
    assert!(
        !plain.contains('\x1b') && !plain.contains('\r'),
        "control characters on a pipe:\n{}",
        plain.escape_debug()
    );
    assert!(plain.contains("progress ok"), "{plain}");
    assert!(
        plain.contains("coverage: merged 1 .gcda file(s)"),
        "{plain}"
    );
    let verdict = plain.lines().last().expect("a verdict line");
    assert!(verdict.starts_with("PASSED: "), "{plain}");
    let expected = normalized(plain.lines());

    // stderr on a terminal: live lines with a spinner and the elapsed
    // time for every long step, erased in the end.
    let live = on_pty(dir, &spec, "xterm-256color", &[]);
    let steps = [
        "m: building image",
        "m: booting",
        "m: wait_for_open_port(80)",
        "m: wait_until_succeeds(`app`)",
        "m: pulling coverage",
        "coverage: merging 1 capture(s)",
        "coverage: writing reports",
    ];
    for step in steps {
        let line =
            Regex::new(&format!(r"[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏] \d+\.\ds {}", regex::escape(step))).expect("regex");
        assert!(
            line.is_match(&live),
            "no live line for `{step}`:\n{}",
            live.escape_debug()
        );
    }
    assert!(live.contains("\x1b[J"), "{}", live.escape_debug());
    let shown = screen(live.as_bytes()).expect("only the controls live lines use");
    assert_eq!(
        normalized(shown.iter().map(String::as_str)),
        expected,
        "the terminal's screen differs from the plain lines; raw:\n{}",
        live.escape_debug()
    );

    // A terminal that cannot take it, or --no-progress: the plain lines.
    for (term, extra) in [("dumb", &[][..]), ("xterm", &["--no-progress"][..])] {
        let text = on_pty(dir, &spec, term, extra);
        assert!(
            !text.contains('\x1b'),
            "TERM={term} {extra:?}: {}",
            text.escape_debug()
        );
        let lines: Vec<&str> = text.lines().map(|l| l.trim_end_matches('\r')).collect();
        assert_eq!(normalized(lines), expected, "TERM={term} {extra:?}");
    }
}
