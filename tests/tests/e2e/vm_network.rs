//! Networks of real VMs (TCG when there is no KVM) driven through the
//! runner's network, script engine and CLI: a web page fetched by host
//! name, a link taken down and up, guests that hang, a host program with
//! shared libraries, and a spec error that names its line and column.
//!
//! Needs qemu-system-x86_64, busybox-static, curl and a Debian kernel in
//! /boot; a missing one fails the test loudly, never skips it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use covnet_runner::image::kernel::Kernel;
use covnet_runner::machine::MachineError;
use covnet_runner::run::network::{Network, NetworkOptions};
use covnet_runner::script::driver::StepErrorKind;
use covnet_runner::script::{run_script, ScriptOptions};
use covnet_runner::spec::{Backend, Spec};
use covnet_tests::lcov_tool::covnet;

/// The two-machine web network of test (a), with `curl` on the client.
const WEB: &str = r#"
[machines.server]
[[machines.server.files]]
content = "<h1>hello from covnet</h1>"
target = "/srv/www/index.html"
[[machines.server.services]]
name = "httpd"
command = "busybox httpd -f -p 80 -h /srv/www"
ready = { port = 80 }

[machines.client]
programs = ["/usr/bin/curl"]
"#;

/// Fails loudly when something a VM test needs is missing.
fn require_vm_tools() {
    let qemu = Command::new("qemu-system-x86_64").arg("--version").output();
    assert!(
        qemu.as_ref().is_ok_and(|o| o.status.success()),
        "qemu-system-x86_64 is required for VM tests (bash scripts/setup.sh): {qemu:?}"
    );
    if let Err(e) = Kernel::host_default() {
        panic!("a Debian kernel in /boot is required for VM tests: {e}");
    }
    assert!(
        Path::new("/bin/busybox").is_file(),
        "busybox-static is required for VM tests"
    );
}

/// A built network in a temp dir that prints every machine's console when
/// the test fails, and checks on drop that no QEMU of its run survived.
struct TestNet {
    net: Option<Network>,
    run_dir: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestNet {
    fn new(spec_text: &str) -> TestNet {
        TestNet::on(spec_text, Backend::Vm)
    }

    /// The spec's network with every machine on `backend`: the same spec,
    /// switched only by the backend, as `covnet run --backend` does.
    fn on(spec_text: &str, backend: Backend) -> TestNet {
        if backend == Backend::Vm {
            require_vm_tools();
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let spec_path = dir.path().join("spec.toml");
        std::fs::write(&spec_path, spec_text).expect("write spec");
        let spec = Spec::from_path(&spec_path)
            .expect("valid spec")
            .with_backend(backend)
            .expect("the spec runs on this backend");
        let options = NetworkOptions {
            output_dir: dir.path().join("out"),
            ..NetworkOptions::default()
        };
        let net = Network::build(&spec, &options).expect("network builds");
        let run_dir = net.run_dir().expect("run dir").to_owned();
        TestNet {
            net: Some(net),
            run_dir,
            _dir: dir,
        }
    }

    fn net(&self) -> &Network {
        self.net.as_ref().expect("network alive")
    }

    /// Shuts everything down and asserts no QEMU of this run is left.
    fn finish(mut self) {
        let net = self.net.take().expect("network alive");
        net.shutdown(Duration::from_secs(30))
            .expect("every machine stops");
        drop(net);
        assert_no_qemu_left(&self.run_dir);
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        if let Some(net) = self.net.take() {
            if std::thread::panicking() {
                for node in net.nodes() {
                    eprintln!("--- console of `{}` ---", node.name());
                    for line in node.machine().console_lines(200) {
                        eprintln!("{} | {line}", node.name());
                    }
                }
            }
            let _ = net.kill_all();
        }
    }
}

/// QEMU processes whose command line mentions `run_dir`.
fn qemu_processes(run_dir: &Path) -> Vec<String> {
    let needle = run_dir.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if text.contains("qemu-system") && text.contains(&needle) {
            found.push(format!("{}: {text}", entry.file_name().to_string_lossy()));
        }
    }
    found
}

fn assert_no_qemu_left(run_dir: &Path) {
    let left = qemu_processes(run_dir);
    assert!(left.is_empty(), "QEMU processes left behind: {left:#?}");
}

fn write_spec(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write spec");
    path
}

/// (a) through the CLI: the client fetches the server's page by host
/// name; the run exits 0, reports each machine's state, prefixes console
/// lines and writes JUnit with one case per subtest.
#[test]
fn cli_run_fetches_page_by_host_name() {
    require_vm_tools();
    cli_run_fetches_page(&[]);
}

/// Test (a) on namespace machines: the same spec, `--backend namespace`.
#[test]
fn cli_run_fetches_page_by_host_name_on_namespace_machines() {
    cli_run_fetches_page(&["--backend", "namespace"]);
}

fn cli_run_fetches_page(backend: &[&str]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = format!(
        "{WEB}\n[test]\ntimeout = \"5m\"\nscript = '''\n{}'''\n",
        r#"start_all();
server.wait_for_service("httpd");
subtest("fetch", || {
    let page = client.succeed("wget -q -O - http://server/");
    if !page.contains("hello from covnet") { throw `unexpected page: ${page}`; }
    print("page: " + page);
});
subtest("hosts", || {
    client.succeed("grep -w server /etc/hosts");
    server.succeed("test \"$(hostname)\" = server");
});
"#
    );
    let spec_path = write_spec(dir.path(), "web.toml", &spec);
    let junit = dir.path().join("junit.xml");
    let out_dir = dir.path().join("out");
    let mut args = vec![
        "run",
        spec_path.to_str().expect("utf-8 path"),
        "--out",
        out_dir.to_str().expect("utf-8 path"),
        "--junit",
        junit.to_str().expect("utf-8 path"),
    ];
    args.extend_from_slice(backend);
    let out = covnet(&args, dir.path()).expect("covnet runs");
    let stderr = out.stderr.clone();
    assert_eq!(out.status.code(), Some(0), "covnet run failed:\n{stderr}");
    assert!(
        stderr.contains("machines: server=running client=running"),
        "{stderr}"
    );
    assert!(
        stderr
            .lines()
            .any(|l| l.trim_start().starts_with("server | ")),
        "console lines are prefixed with the machine name:\n{stderr}"
    );
    assert!(
        stderr.contains("page: <h1>hello from covnet</h1>"),
        "{stderr}"
    );
    assert!(stderr.contains("PASSED"), "{stderr}");
    let xml = std::fs::read_to_string(&junit).expect("junit written");
    assert!(
        xml.contains(r#"tests="3" failures="0" errors="0""#),
        "{xml}"
    );
    assert!(xml.contains(r#"<testcase name="fetch""#), "{xml}");
    assert!(
        !dir.path().join("out/failure").exists(),
        "no bundle on success"
    );
}

/// (a) and (b) through the Rust API: the page is fetched by host name,
/// `block` makes the request fail, `unblock` makes it succeed again.
#[test]
fn block_and_unblock_cut_and_restore_the_link() {
    block_and_unblock(Backend::Vm);
}

/// (b) on namespace machines, same spec.
#[test]
fn block_and_unblock_cut_and_restore_the_link_on_namespace_machines() {
    block_and_unblock(Backend::Namespace);
}

fn block_and_unblock(backend: Backend) {
    let t = TestNet::on(WEB, backend);
    let net = t.net();
    net.start_all().expect("machines boot");
    let server = net.node("server").expect("server");
    let client = net.node("client").expect("client");
    server
        .wait_for_service("httpd", Duration::from_secs(60))
        .expect("httpd ready");
    let fetch = "timeout 3 wget -q -O - http://server/";
    let page = client.succeed(fetch).expect("fetch before block");
    assert!(page.contains("hello from covnet"), "{page}");

    client.block().expect("block");
    let err = client
        .succeed(fetch)
        .expect_err("fetch must fail while blocked");
    assert!(
        matches!(&*err.kind, StepErrorKind::Status { output, .. } if output.status != 0),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.starts_with(
            "machine `client`: succeed(`timeout 3 wget -q -O - http://server/`) failed"
        ),
        "{text}"
    );
    client.fail(fetch).expect("fail() passes while blocked");

    client.unblock().expect("unblock");
    let page = client
        .wait_until_succeeds(fetch, Duration::from_secs(60))
        .expect("fetch after unblock");
    assert!(page.contains("hello from covnet"), "{page}");
    t.finish();
}

/// (c) a command that never finishes is cut at its timeout with a clear
/// error; the machine stays usable; nothing is left behind.
#[test]
fn hanging_command_times_out_and_machine_survives() {
    hanging_command(Backend::Vm);
}

/// (c) on a namespace machine, same spec.
#[test]
fn hanging_command_times_out_and_machine_survives_on_namespace_machines() {
    hanging_command(Backend::Namespace);
}

fn hanging_command(backend: Backend) {
    let t = TestNet::on("[machines.lonely]\n", backend);
    let net = t.net();
    net.start_all().expect("machine boots");
    let m = net.node("lonely").expect("machine");
    let err = m
        .succeed_within("sleep 1000", Duration::from_secs(2))
        .expect_err("must time out");
    assert!(
        matches!(
            &*err.kind,
            StepErrorKind::Machine(MachineError::CommandTimeout { .. })
        ),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("succeed(`sleep 1000`) failed") && text.contains("did not finish within 2s"),
        "{text}"
    );
    assert_eq!(
        m.succeed("echo still here").expect("usable"),
        "still here\n"
    );
    m.crash().expect("crash");
    assert!(!m.is_running());
    let err = m
        .succeed("true")
        .expect_err("a crashed machine runs nothing");
    assert!(err.to_string().contains("machine `lonely`"), "{err}");
    t.finish();
}

/// (c) a guest whose init never gives a shell fails its boot at the boot
/// deadline, naming the machine; its QEMU is gone afterwards.
#[test]
fn guest_that_never_reaches_the_shell_fails_boot_cleanly() {
    let t = TestNet::new(
        "[defaults]\nboot_timeout = \"10s\"\n[machines.stuck]\nkernel_params = [\"rdinit=/bin/cat\"]\n",
    );
    let net = t.net();
    let err = net.start_all().expect_err("boot must fail");
    let text = err.to_string();
    assert!(
        matches!(
            &*err.kind,
            StepErrorKind::Machine(MachineError::BootTimeout { .. })
        ),
        "{text}"
    );
    assert!(
        text.contains("machine `stuck`: start() failed") && text.contains("within 10s of boot"),
        "{text}"
    );
    t.finish();
}

/// (c) a guest whose init exits at once (`rdinit=/bin/false`: the kernel
/// panics and QEMU quits) fails its boot when QEMU is gone, not at the
/// 5-minute boot deadline, naming the machine and showing the panic.
#[test]
fn guest_whose_init_exits_fails_boot_at_once() {
    let t = TestNet::new(
        "[defaults]\nboot_timeout = \"5m\"\n[machines.dead]\nkernel_params = [\"rdinit=/bin/false\"]\n",
    );
    let err = t.net().start_all().expect_err("boot must fail");
    let text = err.to_string();
    assert!(text.contains("machine `dead`: start() failed"), "{text}");
    match &*err.kind {
        StepErrorKind::Machine(MachineError::Exited { during, .. }) => {
            assert_eq!(during, "booting", "{text}")
        }
        // The VM backend reports a boot timeout when the control channel
        // closes before QEMU's exit is reaped; the console shows why.
        StepErrorKind::Machine(MachineError::BootTimeout { .. }) => {
            let console = t.net().nodes()[0].machine().console_lines(100_000);
            assert!(console.iter().any(|l| l.contains("Kernel panic")), "{text}")
        }
        _ => panic!("unexpected failure kind: {text}"),
    }
    t.finish();
}

/// (c) through the CLI: a script whose command hangs past the test's time
/// limit fails with exit 2, says so, leaves a failure bundle and no QEMU.
#[test]
fn cli_script_timeout_kills_everything_and_bundles() {
    require_vm_tools();
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = "[machines.sleeper]\n[test]\ntimeout = \"20s\"\nscript = '''\nstart_all();\nsleeper.succeed(\"sleep 1000\");\n'''\n";
    let spec_path = write_spec(dir.path(), "hang.toml", spec);
    let out_dir = dir.path().join("out");
    let out = covnet(
        &[
            "run",
            spec_path.to_str().expect("utf-8 path"),
            "--out",
            out_dir.to_str().expect("utf-8 path"),
            "--no-console",
            "--keep-run-dir",
        ],
        dir.path(),
    )
    .expect("covnet runs");
    let stderr = out.stderr.clone();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("test script did not finish within its timeout of 20s"),
        "{stderr}"
    );
    let report = std::fs::read_to_string(out_dir.join("failure/report.txt")).expect("bundle");
    assert!(report.contains("sleeper (stopped)"), "{report}");
    assert!(out_dir.join("failure/sleeper/console.log").is_file());
    let run_dir = stderr
        .lines()
        .find_map(|l| {
            l.split_once("run directory ")
                .map(|(_, p)| PathBuf::from(p.trim()))
        })
        .expect("run directory printed");
    assert_no_qemu_left(&run_dir);
    let _ = std::fs::remove_dir_all(&run_dir);
}

/// Through the CLI, a failing step in a script that also copies files
/// both ways and waits for console text: exit 2, the failure names the
/// script position, and the bundle holds the console logs, the service
/// log pulled from the guest and the script excerpt.
#[test]
fn cli_failed_step_leaves_bundle_with_service_logs() {
    require_vm_tools();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("payload.txt"), "payload 42\n").expect("payload");
    let script = r#"start_all();
server.wait_for_service("httpd");
server.succeed("echo marker-5150 > /dev/console");
server.wait_for_console_text("marker-5150", "60s");
server.copy_to_vm("payload.txt", "/tmp/payload.txt");
if server.succeed("cat /tmp/payload.txt") != "payload 42\n" { throw "copy_to_vm lost data"; }
server.copy_from_vm("/srv/www/index.html", "pulled/index.html");
subtest("missing page", || {
    client.succeed("wget -q -O - http://server/missing.html");
});
"#;
    let spec = format!("{WEB}\n[test]\ntimeout = \"5m\"\nscript = '''\n{script}'''\n");
    let spec_path = write_spec(dir.path(), "fail.toml", &spec);
    let out_dir = dir.path().join("out");
    let junit = dir.path().join("junit.xml");
    let out = covnet(
        &[
            "run",
            spec_path.to_str().expect("utf-8 path"),
            "--out",
            out_dir.to_str().expect("utf-8 path"),
            "--junit",
            junit.to_str().expect("utf-8 path"),
        ],
        dir.path(),
    )
    .expect("covnet runs");
    let stderr = out.stderr.clone();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "machine `client`: succeed(`wget -q -O - http://server/missing.html`) failed at script line 9, column 12: command exited with status 1"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("404"), "wget's stderr is shown:\n{stderr}");
    assert_eq!(
        std::fs::read_to_string(out_dir.join("pulled/index.html")).expect("copied from vm"),
        "<h1>hello from covnet</h1>"
    );
    let bundle = out_dir.join("failure");
    let report = std::fs::read_to_string(bundle.join("report.txt")).expect("report");
    assert!(
        report.contains("script position: line 9, column 12"),
        "{report}"
    );
    assert!(report.contains(">    9 |     client.succeed("), "{report}");
    assert!(
        bundle.join("server/var/log/httpd.log").is_file(),
        "{report}"
    );
    let console = std::fs::read_to_string(bundle.join("server/console.log")).expect("console");
    assert!(console.contains("marker-5150"), "{console}");
    assert!(bundle.join("client/console.log").is_file());
    let xml = std::fs::read_to_string(&junit).expect("junit");
    assert!(xml.contains(r#"failures="1""#), "{xml}");
}

/// `covnet vms` keeps a network up for interactive use: `covnet shell`
/// runs commands as root in a machine (keeping `cd`), a host port forward
/// reaches the guest's web server, and Ctrl-C (SIGINT) stops everything,
/// exit 0, no QEMU left.
#[test]
fn vms_serves_shells_and_forwards_until_interrupted() {
    use std::io::BufRead;
    require_vm_tools();
    let dir = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let spec = format!(
        r#"
[machines.server]
forward = ["{port}:80"]
[[machines.server.files]]
content = "<h1>hello from covnet</h1>"
target = "/srv/www/index.html"
[[machines.server.services]]
name = "httpd"
command = "busybox httpd -f -p 80 -h /srv/www"

[machines.client]
"#
    );
    let spec_path = write_spec(dir.path(), "vms.toml", &spec);
    let bin = covnet_tests::lcov_tool::covnet_bin().expect("covnet binary");
    let mut child = Command::new(&bin)
        .args([
            "vms",
            spec_path.to_str().expect("utf-8 path"),
            "--no-console",
        ])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn covnet vms");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let mut child = Kill(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let err_text = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut std::io::BufReader::new(stderr), &mut s);
        s
    });
    let mut run_dir = None;
    let mut banner = Vec::new();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(180))
            .unwrap_or_else(|e| panic!("covnet vms printed no banner ({e}); so far: {banner:#?}"));
        if let Some((_, p)) = line.split_once("run directory ") {
            run_dir = Some(PathBuf::from(p.trim()));
        }
        banner.push(line.clone());
        if line.starts_with("Press Ctrl-C") {
            break;
        }
    }
    let run_dir = run_dir.expect("run directory in banner");
    let text = banner.join("\n");
    assert!(text.contains("server: eth0 192.168.1.1 (vlan 1)"), "{text}");
    assert!(
        text.contains(&format!("forward: 127.0.0.1:{port} -> server:80")),
        "{text}"
    );
    assert!(text.contains("covnet shell client"), "{text}");

    let run = run_dir.to_str().expect("utf-8 path");
    let out = covnet(
        &[
            "shell",
            "server",
            "--run",
            run,
            "-c",
            "cat /srv/www/index.html; id -u",
        ],
        dir.path(),
    )
    .expect("covnet shell -c");
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    assert_eq!(out.stdout, "<h1>hello from covnet</h1>0\n");
    let out = covnet(
        &["shell", "client", "--run", run, "-c", "exit 7"],
        dir.path(),
    )
    .expect("covnet shell -c");
    assert_eq!(out.status.code(), Some(7), "{}", out.stderr);

    // The interactive form keeps the working directory between lines.
    let mut shell = Command::new(&bin)
        .args(["shell", "server", "--run", run])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn covnet shell");
    {
        use std::io::Write;
        let mut stdin = shell.stdin.take().expect("stdin");
        stdin
            .write_all(b"cd /srv/www\npwd\nls\nexit\n")
            .expect("write to shell");
    }
    let out = shell.wait_with_output().expect("shell ends");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "/srv/www\nindex.html\n"
    );

    // The forward reaches httpd in the guest (once it listens).
    let mut page = String::new();
    for _ in 0..60 {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::{Read, Write};
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = s.write_all(b"GET / HTTP/1.0\r\nHost: server\r\n\r\n");
            page.clear();
            let _ = s.read_to_string(&mut page);
            if page.contains("hello from covnet") {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        page.contains("<h1>hello from covnet</h1>"),
        "through the forward: {page:?}"
    );

    let pid = child.0.id().to_string();
    let kill = Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill");
    assert!(kill.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(st) = child.0.try_wait().expect("try_wait") {
            break st;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "covnet vms did not stop after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let err = err_text.join().unwrap_or_default();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(err.contains("SIGINT received"), "{err}");
    assert_no_qemu_left(&run_dir);
    assert!(!run_dir.exists(), "run directory removed");
}

/// (d) a host program with shared libraries runs in the guest thanks to
/// its ELF closure, and talks to the server by name.
#[test]
fn host_curl_runs_in_guest_with_its_closure() {
    host_curl_runs(Backend::Vm);
}

/// (d) on namespace machines, same spec.
#[test]
fn host_curl_runs_in_guest_with_its_closure_on_namespace_machines() {
    host_curl_runs(Backend::Namespace);
}

fn host_curl_runs(backend: Backend) {
    let t = TestNet::on(WEB, backend);
    let net = t.net();
    net.start_all().expect("machines boot");
    let client = net.node("client").expect("client");
    let version = client.succeed("curl --version").expect("curl runs");
    assert!(version.starts_with("curl "), "{version}");
    net.node("server")
        .expect("server")
        .wait_for_open_port(80, Duration::from_secs(60))
        .expect("port 80 open");
    let page = client
        .succeed("curl -sS --max-time 10 http://server/")
        .expect("curl fetches");
    assert_eq!(page, "<h1>hello from covnet</h1>");
    t.finish();
}

/// (e) a spec error names the file, line and column, and exits 1.
#[test]
fn spec_error_names_line_and_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec_path = write_spec(
        dir.path(),
        "bad.toml",
        "[machines.a]\nmemory_mib = 256\nmemroy = 3\n",
    );
    let out = covnet(
        &["run", spec_path.to_str().expect("utf-8 path")],
        dir.path(),
    )
    .expect("covnet runs");
    let stderr = out.stderr.clone();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("bad.toml:3:1:"), "{stderr}");
    assert!(stderr.contains("memroy"), "{stderr}");
}

/// The script engine over real machines: a failed step reports machine,
/// command, status, output and the script position.
#[test]
fn script_failure_reports_position_and_output() {
    let t = TestNet::new("[machines.solo]\n");
    let report = run_script(
        t.net().nodes(),
        "start_all();\nsolo.succeed(\"true\");\n  solo.succeed(\"echo to-out; echo to-err >&2; exit 3\");\n",
        &ScriptOptions::default(),
    );
    let failure = report.result.expect_err("script fails");
    let text = failure.to_string();
    assert!(
        text.starts_with("machine `solo`: succeed(`echo to-out; echo to-err >&2; exit 3`) failed at script line 3, column 8: command exited with status 3"),
        "{text}"
    );
    assert!(text.contains("stdout:\n  | to-out"), "{text}");
    assert!(text.contains("stderr:\n  | to-err"), "{text}");
    assert_eq!(failure.position().map(|p| p.line), Some(3));
    t.finish();
}
