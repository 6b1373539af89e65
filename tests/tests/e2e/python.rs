//! Python test scripts end to end: the webserver example's script in
//! Python gives the Rhai one's result, JUnit and coverage on both
//! backends; every NixOS driver call of the Python API (and its Rhai
//! twin) on real machines.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use covnet_tests::lcov_tool::{self, Output, Tracefile};

use crate::coverage_run::Example;
use crate::features::junit_cases;

/// One `covnet run` with VMs booting under TCG.
const RUN_DEADLINE: Duration = Duration::from_secs(240);

fn s(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

fn covnet_run(dir: &Path, spec: &Path, out: &Path, extra: &[&str]) -> Result<Output> {
    lcov_tool::run(
        Command::new(lcov_tool::covnet_bin()?)
            .args(["run", "--no-console", "--out"])
            .arg(out)
            .args(extra)
            .arg(spec)
            .current_dir(dir),
        RUN_DEADLINE,
    )
}

/// What a run of the example gave.
struct ExampleRun {
    /// JUnit cases (name, failed).
    cases: Vec<(String, bool)>,
    /// The combined tracefile.
    cov: Tracefile,
    /// The test names of the per-machine tracefile, sorted.
    captures: Vec<String>,
}

/// The example run with `spec`, with coverage per subtest and JUnit.
fn example_run(ex: &Example, spec: &str, out: &str, backend: &str) -> Result<ExampleRun> {
    let out = ex.dir.join(out);
    let junit = out.join("junit.xml");
    let o = covnet_run(
        &ex.dir,
        &ex.dir.join(spec),
        &out,
        &[
            "--coverage",
            "--coverage-per-subtest",
            "--backend",
            backend,
            "--junit",
            s(&junit),
        ],
    )?;
    ensure!(o.status.success(), "covnet run {spec} failed:\n{o}");
    let per = std::fs::read_to_string(out.join("coverage-per-machine.info"))?;
    let mut captures: Vec<String> = per
        .lines()
        .filter_map(|l| l.strip_prefix("TN:"))
        .map(str::to_owned)
        .collect();
    captures.sort();
    captures.dedup();
    Ok(ExampleRun {
        cases: junit_cases(&junit),
        cov: Tracefile::read(&out.join("coverage.info"))?,
        captures,
    })
}

fn python_matches_rhai(backend: &str) -> Result<()> {
    let ex = Example::build()?;
    let rhai = example_run(&ex, "spec.toml", "rhai", backend)?;
    let py = example_run(&ex, "spec-python.toml", "python", backend)?;
    let (rhai_cases, rhai_cov, rhai_caps) = (rhai.cases, rhai.cov, rhai.captures);
    let (py_cases, py_cov, py_caps) = (py.cases, py.cov, py.captures);
    // Per-subtest coverage alike: the same `<machine>@<subtest>` captures
    // (lcov test names: `client_client_scenario`).
    ensure!(
        rhai_caps.iter().any(|c| c == "client_client_scenario"),
        "Rhai per-subtest captures: {rhai_caps:?}"
    );
    ensure!(
        py_caps == rhai_caps,
        "Python captures {py_caps:?} vs Rhai {rhai_caps:?}"
    );
    let expected: Vec<(String, bool)> = ["client scenario", "pages by hand", "script"]
        .iter()
        .map(|n| ((*n).to_owned(), false))
        .collect();
    ensure!(rhai_cases == expected, "Rhai JUnit: {rhai_cases:?}");
    ensure!(
        py_cases == rhai_cases,
        "Python JUnit {py_cases:?} vs Rhai {rhai_cases:?}"
    );
    ensure!(
        rhai_cov.lines.values().any(|&c| c > 0),
        "the Rhai run covered nothing"
    );
    // How the kernel splits the server's reply over the client's reads is
    // timing: `read_reply`'s body loop runs 0 or more times in any run
    // (two runs of the Rhai script differ there too). Every other line
    // count, and every function's, is the same.
    let start_of = |f: &str| {
        rhai_cov
            .functions
            .iter()
            .find(|((file, name), _)| file.ends_with("/client.c") && name == f)
            .map(|(_, (line, _))| *line)
    };
    let loop_lines = start_of("read_reply").zip(start_of("request"));
    ensure!(
        loop_lines.is_some(),
        "client.c's read_reply/request not in the report"
    );
    let timing = |(file, line): &(String, u32)| {
        file.ends_with("/client.c")
            && loop_lines.is_some_and(|(from, to)| (from..to).contains(line))
    };
    let differ: Vec<_> = rhai_cov
        .lines
        .iter()
        .filter(|(k, c)| !timing(k) && py_cov.lines.get(*k) != Some(c))
        .map(|(k, c)| format!("{}:{} rhai {c} python {:?}", k.0, k.1, py_cov.lines.get(k)))
        .collect();
    ensure!(
        differ.is_empty()
            && py_cov.lines.keys().collect::<Vec<_>>() == rhai_cov.lines.keys().collect::<Vec<_>>(),
        "line counts differ between the Python and the Rhai run:\n{}",
        differ.join("\n")
    );
    ensure!(
        py_cov.functions == rhai_cov.functions,
        "function counts differ"
    );
    let branches_differ: Vec<_> = rhai_cov
        .branches
        .iter()
        .filter(|(k, b)| !timing(k) && py_cov.branches.get(*k) != Some(b))
        .map(|(k, _)| format!("{}:{}", k.0, k.1))
        .collect();
    ensure!(
        branches_differ.is_empty(),
        "branch counts differ: {branches_differ:?}"
    );
    Ok(())
}

#[test]
fn webserver_python_script_matches_rhai_on_namespace_machines() -> Result<()> {
    python_matches_rhai("namespace")
}

#[test]
fn webserver_python_script_matches_rhai_on_vms() -> Result<()> {
    python_matches_rhai("vm")
}

/// A guest program holding a unix socket open: `unixsock PATH stream|dgram`.
const UNIXSOCK_C: &str = r#"#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
int main(int argc, char **argv)
{
    int dgram = argc > 2 && strcmp(argv[2], "dgram") == 0;
    int fd = socket(AF_UNIX, dgram ? SOCK_DGRAM : SOCK_STREAM, 0);
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    strncpy(a.sun_path, argv[1], sizeof a.sun_path - 1);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0)
        return 1;
    if (!dgram && listen(fd, 4) != 0)
        return 1;
    for (;;)
        pause();
}
"#;

/// A private directory with the `unixsock` program and a host file.
fn driver_dir() -> Result<(tempfile::TempDir, PathBuf)> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("unixsock.c"), UNIXSOCK_C)?;
    lcov_tool::run_ok(
        Command::new("gcc")
            .args(["-O1", "-o", "unixsock", "unixsock.c"])
            .current_dir(dir.path()),
    )
    .context("compiling the unix socket helper (gcc: scripts/setup.sh)")?;
    std::fs::write(dir.path().join("host.txt"), "from the host\n")?;
    let prog = dir.path().join("unixsock");
    Ok((dir, prog))
}

/// Two machines: `a` with a web service and the socket helper, `b` a
/// client.
fn driver_spec(prog: &Path, test: &str) -> String {
    format!(
        r#"[machines.a]
programs = ["{p}"]
files = [{{ target = "/srv/www/index.html", content = "hello from a\n" }}]

[[machines.a.services]]
name = "web"
command = "busybox httpd -f -p 80 -h /srv/www"
ready = {{ port = 80 }}

[machines.b]

[test]
timeout = "5m"
{test}
"#,
        p = s(prog)
    )
}

/// Every NixOS call on namespace machines, one subtest each.
const DRIVER_PY: &str = r#"
start_all()

with subtest("wait_for_unit"):
    a.wait_for_unit("web")
    a.wait_for_unit("web.service", timeout=30)
    a.wait_for_service("web")

with subtest("systemctl"):
    status, out = a.systemctl("status web")
    assert status == 0 and "web: active (running)" in out, (status, out)
    status, out = a.stop_job("web")
    assert status == 0 and "inactive" in out, (status, out)
    a.wait_for_closed_port(80)
    b.fail("wget -q -T 2 -O- http://a/")
    status, out = a.systemctl("status web")
    assert status == 3 and "web: inactive (stopped)" in out, (status, out)
    status, out = a.start_job("web")
    assert status == 0, (status, out)
    a.wait_for_open_port(80)
    assert "hello from a" in b.wait_until_succeeds("wget -q -O- http://a/", timeout=30)
    pid = a.succeed("cat /run/covnet/web.pid")
    status, out = a.systemctl("restart web")
    assert status == 0 and "active (running)" in out, (status, out)
    assert a.succeed("cat /run/covnet/web.pid") != pid
    a.wait_for_unit("web")
    a.succeed("kill -9 $(cat /run/covnet/web.pid)")
    status, out = a.systemctl("status web")
    assert status == 3 and "failed" in out, (status, out)
    a.systemctl("start web")
    a.wait_for_unit("web")
    try:
        a.systemctl("reload web")
        raise AssertionError("reload is not supported")
    except StepFailure as e:
        assert "start|stop|restart|status" in str(e), e
    try:
        a.start_job("nope")
        raise AssertionError("unknown service accepted")
    except StepFailure as e:
        assert "no service `nope`" in str(e), e

with subtest("wait_for_open_unix_socket"):
    a.succeed("(unixsock /tmp/stream.sock stream &) ; (unixsock /tmp/dgram.sock dgram &)")
    a.wait_for_open_unix_socket("/tmp/stream.sock", timeout=30)
    a.wait_for_open_unix_socket("/tmp/dgram.sock", is_datagram=True, timeout=30)
    try:
        a.wait_for_open_unix_socket("/tmp/none.sock", timeout=1)
        raise AssertionError("no socket there")
    except StepFailure as e:
        assert "timed out after 1s" in str(e), e

with subtest("console"):
    a.succeed("(head -n 1 /dev/console >/tmp/typed) >/dev/null 2>&1 &")
    a.send_chars("typed on the console\n")
    a.wait_until_succeeds("grep -q 'typed on the console' /tmp/typed", timeout=30)
    a.send_console("second line\n")
    a.succeed("echo marker-4711 >/dev/console")
    a.wait_until_tty_matches("1", "marker-47[0-9]+", timeout=30)
    a.wait_for_console_text("marker-4711", timeout=30)
    assert "marker-4711" in a.get_console_text()
    try:
        a.wait_until_tty_matches("2", "x", timeout=1)
        raise AssertionError("tty 2 does not exist")
    except StepFailure as e:
        assert "only its serial console" in str(e), e

with subtest("files"):
    a.copy_from_host("host.txt", "/tmp/in/host.txt")
    assert a.succeed("cat /tmp/in/host.txt") == "from the host\n"
    path = a.copy_from_vm("/tmp/in/host.txt", "copied")
    assert path.endswith("copied/host.txt"), path
    assert open(path).read() == "from the host\n"

with subtest("execute"):
    assert a.execute("echo hi; exit 3") == (3, "hi\n")
    assert a.execute("echo hi", check_output=False) == (0, "")
    assert a.fail("echo why >&2; false") == "why\n"
    assert a.succeed("echo 1", "echo 2") == "1\n2\n"
    sleep(0.2)
    sleep("100ms")

with subtest("unsupported"):
    for call in (lambda: a.screenshot("x"), lambda: a.send_key("ret"), lambda: a.wait_for_x()):
        try:
            call()
            raise AssertionError("a graphical call passed")
        except StepFailure as e:
            assert "graphical display" in str(e), e
    try:
        a.forward_port(18080, 80)
        raise AssertionError("forward_port on a namespace machine")
    except StepFailure as e:
        assert "no host port forwards" in str(e), e

with subtest("crash"):
    a.crash()
    assert not a.is_up()
    a.start()
    a.wait_for_unit("web")
    assert "hello from a" in b.succeed("wget -q -O- http://a/")

with subtest("reboot"):
    a.succeed("touch /tmp/before-reboot")
    a.reboot()
    a.wait_for_unit("web")
    a.fail("test -e /tmp/before-reboot")
    assert "hello from a" in b.succeed("wget -q -O- http://a/")

with subtest("shutdown"):
    b.shutdown()
    assert not b.is_up()
"#;

/// The same calls from Rhai (names as in Python, where Rhai has them).
const DRIVER_RHAI: &str = r#"
start_all();
a.wait_for_unit("web");
let r = a.systemctl("status web");
if r.status != 0 { throw `status: ${r.stdout}`; }
r = a.stop_job("web");
if r.status != 0 { throw `stop: ${r.stdout}`; }
a.wait_for_closed_port(80);
r = a.start_job("web");
if r.status != 0 { throw `start: ${r.stdout}`; }
a.wait_for_unit("web.service");
a.succeed("(unixsock /tmp/s.sock stream &)");
a.wait_for_open_unix_socket("/tmp/s.sock", 30);
a.succeed("(head -n 1 /dev/console >/tmp/typed) >/dev/null 2>&1 &");
a.send_chars("from rhai\n");
a.wait_until_succeeds("grep -q 'from rhai' /tmp/typed", 30);
a.succeed("echo rhai-marker >/dev/console");
a.wait_until_tty_matches("ttyS0", "rhai-marker", 30);
if !a.get_console_text().contains("rhai-marker") { throw "console text"; }
a.copy_from_host("host.txt", "/tmp/h.txt");
a.reboot();
a.wait_for_unit("web");
try { a.screenshot("x"); throw "screenshot passed"; } catch (e) {
    if !e.message.contains("graphical display") { throw e; }
}
// A failure names the call the script made.
try { a.systemctl("status nope"); throw "unknown service passed"; } catch (e) {
    if !e.message.contains("systemctl(`status nope`)") { throw e; }
}
try { a.start_job("nope"); throw "unknown service passed"; } catch (e) {
    if !e.message.contains("start_job(`nope`)") { throw e; }
}
"#;

fn run_driver(name: &str, test: &str, backend: &str) -> Result<Vec<String>> {
    let (dir, prog) = driver_dir()?;
    let spec = dir.path().join(format!("{name}.toml"));
    std::fs::write(&spec, driver_spec(&prog, test))?;
    let out = dir.path().join("out");
    let junit = dir.path().join("junit.xml");
    let o = covnet_run(
        dir.path(),
        &spec,
        &out,
        &["--backend", backend, "--junit", s(&junit)],
    )?;
    ensure!(o.status.success(), "covnet run {name} failed:\n{o}");
    let cases = junit_cases(&junit);
    for (case, failed) in &cases {
        ensure!(!failed, "{case} failed:\n{o}");
    }
    Ok(cases.into_iter().map(|(n, _)| n).collect())
}

#[test]
fn nixos_driver_calls_from_python_on_namespace_machines() -> Result<()> {
    let cases = run_driver(
        "driver-py",
        &format!("language = \"python\"\nscript = '''{DRIVER_PY}'''"),
        "namespace",
    )?;
    // Each call is a passing subtest of its own.
    let want = [
        "wait_for_unit",
        "systemctl",
        "wait_for_open_unix_socket",
        "console",
        "files",
        "execute",
        "unsupported",
        "crash",
        "reboot",
        "shutdown",
        "script",
    ];
    ensure!(cases == want, "{cases:?}");
    Ok(())
}

#[test]
fn nixos_driver_calls_from_rhai_on_namespace_machines() -> Result<()> {
    let cases = run_driver(
        "driver-rhai",
        &format!("script = '''{DRIVER_RHAI}'''"),
        "namespace",
    )?;
    ensure!(cases == ["script"], "{cases:?}");
    Ok(())
}

/// A free TCP port on 127.0.0.1 (bound, then released).
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// VMs: forward_port at run time (the host script fetches through it),
/// the serial console, crash and reboot with the service coming back.
#[test]
fn forward_port_console_crash_and_reboot_on_a_vm() -> Result<()> {
    let (dir, prog) = driver_dir()?;
    let (spec_port, run_port) = (free_port()?, free_port()?);
    let script = format!(
        r#"
import urllib.request
start_all()
a.wait_for_unit("web")
with subtest("forward_port"):
    a.forward_port({run_port}, 80)
    page = urllib.request.urlopen("http://127.0.0.1:{run_port}/", timeout=20).read().decode()
    assert page == "hello from a\n", page
    page = urllib.request.urlopen("http://127.0.0.1:{spec_port}/", timeout=20).read().decode()
    assert page == "hello from a\n", page
with subtest("console"):
    a.succeed("(head -n 1 /dev/console >/tmp/typed) >/dev/null 2>&1 &")
    a.send_chars("typed on ttyS0\n")
    a.wait_until_succeeds("grep -q 'typed on ttyS0' /tmp/typed", timeout=60)
    a.wait_until_tty_matches("1", "covnet-init-done")
    assert "covnet-init-done" in a.get_console_text()
with subtest("crash"):
    a.crash()
    assert not a.is_up()
    a.start()
    a.wait_for_unit("web")
with subtest("reboot"):
    a.succeed("touch /tmp/before-reboot")
    a.reboot()
    a.wait_for_unit("web")
    a.fail("test -e /tmp/before-reboot")
    assert a.get_console_text().count("covnet-init-done") == 3
    page = urllib.request.urlopen("http://127.0.0.1:{spec_port}/", timeout=20).read().decode()
    assert page == "hello from a\n", page
"#
    );
    let spec = dir.path().join("vm.toml");
    std::fs::write(
        &spec,
        format!(
            r#"[machines.a]
programs = ["{p}"]
forward = ["{spec_port}:80"]
files = [{{ target = "/srv/www/index.html", content = "hello from a\n" }}]

[[machines.a.services]]
name = "web"
command = "busybox httpd -f -p 80 -h /srv/www"
ready = {{ port = 80 }}

[test]
timeout = "4m"
language = "python"
script = '''{script}'''
"#,
            p = s(&prog)
        ),
    )?;
    let out = dir.path().join("out");
    let junit = dir.path().join("junit.xml");
    let o = covnet_run(
        dir.path(),
        &spec,
        &out,
        &["--backend", "vm", "--junit", s(&junit)],
    )?;
    ensure!(o.status.success(), "covnet run failed:\n{o}");
    let cases = junit_cases(&junit);
    let names: Vec<&str> = cases.iter().map(|(n, _)| n.as_str()).collect();
    ensure!(
        names == ["forward_port", "console", "crash", "reboot", "script"],
        "{cases:?}"
    );
    ensure!(cases.iter().all(|(_, failed)| !failed), "{cases:?}\n{o}");
    Ok(())
}

/// A failing Python script ends `covnet run` as a failing Rhai script
/// does: exit code 2 (1 when the interpreter itself died), the failure
/// naming machine, command and `file:line`, the traceback, and the bundle.
#[test]
fn failing_python_script_ends_the_run_like_a_rhai_one() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let spec = dir.path().join("fail.toml");
    std::fs::write(
        &spec,
        "[machines.a]\n\n[test]\nscript_file = \"test.py\"\ntimeout = \"2m\"\n",
    )?;
    for (body, code, expect) in [
        (
            "start_all()\n\na.succeed('echo no >&2; exit 4')\n",
            2,
            vec![
                "machine `a`: succeed(`echo no >&2; exit 4`) failed at script line 3, column 1: command exited with status 4",
                "test.py:3:1",
                "python traceback:",
                "covnet.StepFailure",
            ],
        ),
        (
            "start_all()\nraise ValueError('bad value')\n",
            2,
            vec!["ValueError: bad value", "test.py:2:1"],
        ),
        (
            "import os\nstart_all()\nos.kill(os.getpid(), 9)\n",
            1,
            vec!["python3 ended without finishing the script"],
        ),
    ] {
        std::fs::write(dir.path().join("test.py"), body)?;
        let out = dir.path().join("out");
        let _ = std::fs::remove_dir_all(&out);
        let o = covnet_run(dir.path(), &spec, &out, &["--backend", "namespace"])?;
        ensure!(o.code() == code, "{body}: exit {} not {code}:\n{o}", o.code());
        for e in expect {
            ensure!(o.stderr.contains(e), "{body}: `{e}` missing:\n{o}");
        }
        ensure!(out.join("failure").is_dir(), "{body}: no failure bundle:\n{o}");
    }
    Ok(())
}
