//! Namespace machines (issue 8): machines in their own PID, mount, UTS,
//! IPC and network namespaces on covnet's switch. A web page fetched by
//! host name, a link taken down and up, a crash that leaves nothing
//! behind, a host program with shared libraries, a machine that dies with
//! a SIGKILLed runner, time to first shell, and all of it again as an
//! unprivileged user (through a user namespace) when the tests run as root.
//!
//! Needs busybox-static and curl; a missing one fails the test loudly.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use covnet_runner::machine::namespace::{NamespaceConfig, NamespaceMachine};
use covnet_runner::machine::{EventSink, Machine};
use covnet_runner::net::switch::Switch;
use covnet_runner::run::network::{Network, NetworkOptions};
use covnet_runner::rundir::RunDir;
use covnet_runner::spec::Spec;

const T: Duration = Duration::from_secs(60);

/// Two machines on VLAN 1: a web server and a client with curl.
const WEB: &str = r#"
[machines.server]
[[machines.server.files]]
content = "<h1>hello from a namespace</h1>"
target = "/srv/www/index.html"
[[machines.server.services]]
name = "httpd"
command = "busybox httpd -f -p 80 -h /srv/www"
ready = { port = 80 }

[machines.client]
programs = ["/usr/bin/curl"]
"#;

fn require_tools() {
    assert!(
        Path::new("/bin/busybox").is_file(),
        "busybox-static is required for namespace machine tests"
    );
    assert!(
        Path::new("/usr/bin/curl").is_file(),
        "curl is required for namespace machine tests"
    );
}

/// Namespace machines built from a spec, on one switch, in a private run
/// directory. Prints every console when the test fails; kills everything
/// on drop.
struct NsNet {
    machines: Vec<Arc<NamespaceMachine>>,
    switch: Option<Arc<Switch>>,
    run_dir: Option<RunDir>,
    _dir: tempfile::TempDir,
}

impl NsNet {
    fn new(spec_text: &str) -> NsNet {
        require_tools();
        let dir = tempfile::tempdir().expect("tempdir");
        let spec_path = dir.path().join("spec.toml");
        std::fs::write(&spec_path, spec_text).expect("write spec");
        let spec = Spec::from_path(&spec_path).expect("valid spec");
        let run_dir = RunDir::create_in(dir.path()).expect("run dir");
        let switch = Arc::new(Switch::start().expect("switch"));
        let machines = spec
            .machines
            .iter()
            .map(|m| {
                let cfg = NamespaceConfig::from_spec(&spec, m, &[]).expect("config");
                Arc::new(
                    NamespaceMachine::new(cfg, &run_dir, Some(switch.clone()), EventSink::none())
                        .expect("machine"),
                )
            })
            .collect();
        NsNet {
            machines,
            switch: Some(switch),
            run_dir: Some(run_dir),
            _dir: dir,
        }
    }

    fn m(&self, name: &str) -> &NamespaceMachine {
        self.machines
            .iter()
            .find(|m| m.name() == name)
            .expect("machine in spec")
    }

    fn start_all(&self) {
        for m in &self.machines {
            m.start().expect("machine starts");
        }
    }

    fn succeed(&self, name: &str, cmd: &str) -> String {
        let out = self.m(name).execute(cmd, T).expect("command runs");
        assert_eq!(
            out.status,
            0,
            "`{cmd}` on {name} failed: {}{}",
            out.stdout_lossy(),
            out.stderr_lossy()
        );
        out.stdout_lossy()
    }
}

impl Drop for NsNet {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for m in &self.machines {
                eprintln!("--- console of `{}` ---", m.name());
                for line in m.console_lines(200) {
                    eprintln!("{} | {line}", m.name());
                }
            }
        }
        for m in &self.machines {
            let _ = m.crash();
        }
        self.machines.clear();
        if let Some(switch) = self.switch.take().and_then(|s| Arc::try_unwrap(s).ok()) {
            let _ = switch.shutdown();
        }
        self.run_dir.take();
    }
}

/// The host's network interfaces.
fn host_interfaces() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
        .expect("read /sys/class/net")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The PID namespace of a host process, e.g. `pid:[4026532305]`.
fn pid_namespace(pid: u32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok()
}

/// Host pids of live processes in PID namespace `ns`.
fn processes_in(ns: &Path) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid_namespace(pid).as_deref() == Some(ns) {
            let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(')')
                        .map(|(_, r)| r.trim_start().starts_with('Z'))
                })
                .unwrap_or(true);
            if !zombie {
                found.push(pid);
            }
        }
    }
    found
}

#[test]
fn web_page_by_host_name_between_namespace_machines() {
    let net = NsNet::new(WEB);
    net.start_all();
    assert_eq!(net.succeed("server", "hostname").trim(), "server");
    assert_eq!(net.succeed("client", "hostname").trim(), "client");
    let hosts = net.succeed("client", "cat /etc/hosts");
    assert!(hosts.contains("192.168.1.1\tserver"), "{hosts}");
    let addr = net.succeed("server", "ip -4 -o addr show dev eth0");
    assert!(addr.contains("192.168.1.1/24"), "{addr}");
    // The namespaces are really separate from the host's.
    let host_uts = std::fs::read_link("/proc/self/ns/uts").expect("own uts ns");
    let server_pid = net.m("server").pid().expect("server runs");
    assert_ne!(
        std::fs::read_link(format!("/proc/{server_pid}/ns/uts")).expect("server uts ns"),
        host_uts
    );
    // Its own PID namespace: only the machine's few processes are visible.
    let procs: usize = net
        .succeed("server", "ls -d /proc/[0-9]* | wc -l")
        .trim()
        .parse()
        .expect("a count");
    assert!(procs < 30, "{procs} processes visible in the machine");
    net.succeed(
        "client",
        "for i in $(seq 300); do wget -q -O /dev/null http://server/ && exit 0; sleep 0.1; done; exit 1",
    );
    let page = net.succeed("client", "wget -q -O - http://server/");
    assert_eq!(page, "<h1>hello from a namespace</h1>");
    // Host-wide powers are gone even when covnet is root: setting the
    // clock, loading modules, raw I/O (checked on the capability sets, never
    // by trying: a failure would change the host).
    for set in ["CapBnd", "CapPrm", "CapEff"] {
        let line = net.succeed("server", &format!("grep {set} /proc/self/status"));
        let caps = u64::from_str_radix(line.split_whitespace().nth(1).unwrap_or(""), 16)
            .expect("hex capability set");
        for (name, bit) in [
            ("CAP_SYS_MODULE", 16),
            ("CAP_SYS_RAWIO", 17),
            ("CAP_SYS_TIME", 25),
        ] {
            assert_eq!(caps & (1 << bit), 0, "{set} has {name}: {line}");
        }
    }
    // And in effect: re-setting the clock's frequency to its current value
    // (a no-op with CAP_SYS_TIME) is refused.
    let probe = net
        .m("server")
        .execute(
            "f=$(adjtimex | sed -n 's/^-f  freq.adjust: *\\([-0-9]*\\).*/\\1/p'); \
             test -n \"$f\" && adjtimex -f \"$f\"",
            T,
        )
        .expect("adjtimex runs");
    assert_ne!(probe.status, 0, "CAP_SYS_TIME is effective in the machine");
    assert!(
        probe.stderr_lossy().contains("not permitted"),
        "{}",
        probe.stderr_lossy()
    );
    let out = net
        .m("server")
        .execute("mknod /dev/mem2 c 1 1 && head -c 1 /dev/mem2", T)
        .expect("mknod runs");
    assert_ne!(
        out.status, 0,
        "a machine read host memory through a new device node"
    );
    net.succeed(
        "server",
        "head -c 4 /dev/zero | od -An -tx1 | grep -q '00 00 00 00'",
    );
    // The service was started by init, in its log and pid file.
    net.succeed(
        "server",
        "test -s /run/covnet/httpd.pid && test -f /var/log/httpd.log",
    );
}

/// Waits (bounded) until the client fetches the server's page.
fn wait_for_web(net: &NsNet) {
    net.succeed(
        "client",
        "for i in $(seq 300); do wget -q -O /dev/null http://server/ && exit 0; sleep 0.1; done; exit 1",
    );
}

#[test]
fn block_and_unblock_cut_and_restore_the_link() {
    let net = NsNet::new(WEB);
    net.start_all();
    wait_for_web(&net);
    let client = net.m("client");
    client.set_link(false).expect("block");
    let out = client
        .execute("wget -q -T 2 -O - http://server/", T)
        .expect("wget runs");
    assert_ne!(out.status, 0, "fetch succeeded through a blocked link");
    // The server's side of the link is up, but nothing reaches the client.
    let out = net
        .m("server")
        .execute("ping -c 1 -W 1 client", T)
        .expect("ping runs");
    assert_ne!(out.status, 0, "ping answered through a blocked link");
    client.set_link(true).expect("unblock");
    wait_for_web(&net);
    net.succeed("server", "ping -c 1 -W 2 client");
}

#[test]
fn crash_leaves_no_process_and_the_machine_restarts() {
    let spec = format!(
        "{WEB}\n[[machines.server.services]]\nname = \"sleeper\"\ncommand = \"sleep 1000\"\n"
    );
    let host_links = host_interfaces();
    let host_mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let net = NsNet::new(&spec);
    net.start_all();
    // Nothing of the machines shows on the host: no interface, no mount.
    assert_eq!(host_interfaces(), host_links);
    assert_eq!(
        std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo"),
        host_mounts
    );
    let server = net.m("server");
    let pid = server.pid().expect("server runs");
    let ns = pid_namespace(pid).expect("server's pid namespace");
    // init (the control shell), httpd and sleep at least.
    assert!(processes_in(&ns).len() >= 3, "{:?}", processes_in(&ns));
    server.crash().expect("crash");
    assert!(!server.is_running());
    assert_eq!(
        processes_in(&ns),
        Vec::<u32>::new(),
        "processes survived the crash"
    );
    let err = server
        .execute("true", T)
        .expect_err("no shell after a crash");
    assert!(err.to_string().contains("not running"), "{err}");
    // The root mount point is gone from the run directory.
    let root = net
        .run_dir
        .as_ref()
        .expect("run dir")
        .path()
        .join("server-root");
    assert!(!root.exists(), "{} left behind", root.display());
    // And the machine can start again, with its services.
    server.start().expect("restart");
    wait_for_web(&net);
}

#[test]
fn program_with_shared_libraries_runs_from_a_read_only_bind() {
    let net = NsNet::new(WEB);
    net.start_all();
    wait_for_web(&net);
    let version = net.succeed("client", "curl --version");
    assert!(version.starts_with("curl "), "{version}");
    let page = net.succeed("client", "curl -sS http://server/");
    assert_eq!(page, "<h1>hello from a namespace</h1>");
    // Host files are bound read-only; the rest of the root is writable.
    let out = net
        .m("client")
        .execute("echo x >> /usr/bin/curl", T)
        .expect("runs");
    assert_ne!(out.status, 0, "the host's curl was writable");
    net.succeed(
        "client",
        "echo x > /etc/new && test \"$(cat /etc/new)\" = x",
    );
    // Binary-safe copies both ways.
    let data: Vec<u8> = (0..=255u8).cycle().take(3_000_000).collect();
    let client = net.m("client");
    client
        .copy_to(&data, "/tmp/blob", 0o600)
        .expect("copy to the machine");
    assert_eq!(client.copy_from("/tmp/blob").expect("copy back"), data);
}

#[test]
fn shutdown_sends_sigterm_to_services_first() {
    let spec = r#"
[machines.solo]
[[machines.solo.services]]
name = "graceful"
command = "trap 'echo service-got-sigterm >/proc/1/fd/2; exit 0' TERM; while :; do sleep 0.1; done"
"#;
    let net = NsNet::new(spec);
    net.start_all();
    let solo = net.m("solo");
    let pid = solo.pid().expect("runs");
    let ns = pid_namespace(pid).expect("pid namespace");
    net.succeed("solo", "test -s /run/covnet/graceful.pid");
    solo.shutdown(T).expect("shutdown");
    assert!(!solo.is_running());
    assert!(
        solo.console_lines(50)
            .iter()
            .any(|l| l.contains("service-got-sigterm")),
        "{:?}",
        solo.console_lines(50)
    );
    assert_eq!(processes_in(&ns), Vec::<u32>::new());
}

/// Started from a thread that ends at once, the machine keeps running
/// (its PDEATHSIG follows the spawner thread, not the caller). With
/// `COVNET_NS_HOLD=<file>` it also writes its init's pid and its run
/// directory to `<file>` and blocks, so that
/// `machine_dies_with_a_sigkilled_runner` can SIGKILL this process.
#[test]
fn machine_outlives_the_thread_that_started_it() {
    let net = Arc::new(NsNet::new(WEB));
    let n = Arc::clone(&net);
    std::thread::spawn(move || n.m("server").start().expect("starts"))
        .join()
        .expect("starter thread");
    std::thread::sleep(Duration::from_millis(200));
    assert!(net.m("server").is_running());
    assert_eq!(net.succeed("server", "echo alive").trim(), "alive");
    if let Some(hold) = std::env::var_os("COVNET_NS_HOLD") {
        let pid = net.m("server").pid().expect("runs");
        let dir = net._dir.path().display().to_string();
        std::fs::write(&hold, format!("{pid}\n{dir}\n")).expect("write hold file");
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

#[test]
fn machine_dies_with_a_sigkilled_runner() {
    require_tools();
    let dir = tempfile::tempdir().expect("tempdir");
    let hold = dir.path().join("hold");
    let exe = std::env::current_exe().expect("test binary");
    let mut helper = Command::new(exe)
        .args([
            "--exact",
            "namespace::machine_outlives_the_thread_that_started_it",
            "--nocapture",
        ])
        .env("COVNET_NS_HOLD", &hold)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("helper starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    let text = loop {
        if let Ok(t) = std::fs::read_to_string(&hold) {
            if t.lines().count() >= 2 {
                break t;
            }
        }
        if Instant::now() > deadline || helper.try_wait().expect("try_wait").is_some() {
            let _ = helper.kill();
            let _ = helper.wait();
            panic!("the helper did not start its machine");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut lines = text.lines();
    let pid: u32 = lines.next().and_then(|l| l.parse().ok()).expect("pid");
    let helper_dir = PathBuf::from(lines.next().expect("dir"));
    let ns = pid_namespace(pid).expect("machine's pid namespace");
    assert!(!processes_in(&ns).is_empty());
    helper.kill().expect("SIGKILL the runner");
    helper.wait().expect("reap the runner");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !processes_in(&ns).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        processes_in(&ns),
        Vec::<u32>::new(),
        "machine processes outlived the runner"
    );
    // The runner could not clean its temp dir up; nothing is mounted
    // there on the host, so plain removal works.
    std::fs::remove_dir_all(&helper_dir).expect("remove the helper's files");
}

#[test]
fn time_to_first_shell() {
    let net = NsNet::new("[machines.solo]\n");
    let solo = net.m("solo");
    let mut times = Vec::new();
    for _ in 0..7 {
        solo.start().expect("starts");
        times.push(solo.boot_time().expect("boot time measured"));
        solo.crash().expect("stops");
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    eprintln!(
        "namespace machine, time to first shell over {} starts: min {:.1} ms, median {:.1} ms, max {:.1} ms ({})",
        times.len(),
        ms(times[0]),
        ms(times[times.len() / 2]),
        ms(times[times.len() - 1]),
        if solo.uses_user_namespace() { "unprivileged, user namespace" } else { "root" }
    );
}

/// As root, runs the web test again as user `nobody` (uid 65534) so the
/// machines need a user namespace; as any other user, runs it directly.
#[test]
fn unprivileged_user_runs_namespace_machines() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        let net = NsNet::new(WEB);
        assert!(net.m("server").uses_user_namespace());
        net.start_all();
        wait_for_web(&net);
        assert_eq!(
            net.succeed("client", "curl -sS http://server/"),
            "<h1>hello from a namespace</h1>"
        );
        assert_eq!(net.succeed("client", "id -u").trim(), "0");
        return;
    }
    let exe = std::env::current_exe().expect("test binary");
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--reset-env",
        ])
        .arg(&exe)
        .args([
            "--exact",
            "namespace::unprivileged_user_runs_namespace_machines",
            "--nocapture",
        ])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("TMPDIR", "/tmp")
        .current_dir("/")
        .output()
        .expect("setpriv runs (util-linux)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "as uid 65534: {}\n{stdout}\n{stderr}",
        out.status
    );
}

/// A VM and a namespace machine on one VLAN, built from one spec by the
/// runner's network: each fetches the other's page by host name, and
/// blocking the namespace machine's link cuts it off from the VM.
#[test]
fn vm_and_namespace_machine_share_one_network() {
    require_tools();
    let qemu = Command::new("qemu-system-x86_64").arg("--version").output();
    assert!(
        qemu.as_ref().is_ok_and(|o| o.status.success()),
        "qemu-system-x86_64 is required for the mixed VM/namespace test: {qemu:?}"
    );
    let spec_text = r#"
[machines.vm]
[[machines.vm.files]]
content = "from the vm"
target = "/srv/www/index.html"
[[machines.vm.services]]
name = "httpd"
command = "busybox httpd -f -p 80 -h /srv/www"
ready = { port = 80 }

[machines.ns]
backend = "namespace"
programs = ["/usr/bin/curl"]
[[machines.ns.files]]
content = "from the namespace"
target = "/srv/www/index.html"
[[machines.ns.services]]
name = "httpd"
command = "busybox httpd -f -p 80 -h /srv/www"
ready = { port = 80 }
"#;
    let dir = tempfile::tempdir().expect("tempdir");
    let spec_path = dir.path().join("mixed.toml");
    std::fs::write(&spec_path, spec_text).expect("write spec");
    let spec = Spec::from_path(&spec_path).expect("valid spec");
    let options = NetworkOptions {
        output_dir: dir.path().join("out"),
        ..NetworkOptions::default()
    };
    let net = Network::build(&spec, &options).expect("network builds");
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        net.start_all().expect("both machines start");
        let vm = net.node("vm").expect("vm node");
        let ns = net.node("ns").expect("ns node");
        vm.wait_for_service("httpd", Duration::from_secs(120))
            .expect("vm httpd");
        ns.wait_for_service("httpd", Duration::from_secs(30))
            .expect("ns httpd");
        let from_vm = ns
            .succeed("curl -sS --retry 20 --retry-connrefused --retry-delay 1 http://vm/")
            .expect("namespace machine fetches from the VM");
        assert_eq!(from_vm, "from the vm");
        let from_ns = vm
            .succeed(
                "for i in $(seq 30); do wget -q -O - http://ns/ && exit 0; sleep 1; done; exit 1",
            )
            .expect("VM fetches from the namespace machine");
        assert_eq!(from_ns, "from the namespace");
        ns.machine().set_link(false).expect("block ns");
        let out = vm
            .machine()
            .execute("wget -q -T 3 -O - http://ns/", T)
            .expect("wget runs");
        assert_ne!(out.status, 0, "reached a blocked namespace machine");
        ns.machine().set_link(true).expect("unblock ns");
        let again = vm
            .succeed(
                "for i in $(seq 30); do wget -q -O - http://ns/ && exit 0; sleep 1; done; exit 1",
            )
            .expect("VM reaches the namespace machine again");
        assert_eq!(again, "from the namespace");
    }));
    if result.is_err() {
        for node in net.nodes() {
            eprintln!("--- console of `{}` ---", node.name());
            for line in node.machine().console_lines(100) {
                eprintln!("{} | {line}", node.name());
            }
        }
    }
    let stopped = net.shutdown(Duration::from_secs(30));
    drop(net);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
    stopped.expect("every machine stops");
}

/// The spec of the CLI tests: namespace machines only; the server runs
/// `sleep <marker>` as a service, so each test finds its own processes.
fn ns_web_spec(script: &str, marker: u32) -> String {
    format!(
        "[defaults]\nbackend = \"namespace\"\n{WEB}\n[[machines.server.services]]\nname = \"marker\"\ncommand = \"exec sleep {marker}\"\n\n[test]\ntimeout = \"5m\"\nscript = '''\n{script}'''\n"
    )
}

/// Host pids of processes running `sleep <marker>` (the marker service).
fn marker_processes(marker: u32) -> Vec<u32> {
    let want = format!("sleep\0{marker}\0").into_bytes();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            if cmd == want {
                found.push(pid);
            }
        }
    }
    found
}

/// `covnet run` on a spec whose machines are all namespace machines: the
/// script cannot tell them from VMs (services, waits, block/unblock).
#[test]
fn cli_run_with_namespace_machines() {
    require_tools();
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = ns_web_spec(
        r#"start_all();
server.wait_for_service("httpd");
let page = client.succeed("curl -sS http://server/");
if page != "<h1>hello from a namespace</h1>" { throw `unexpected page: ${page}`; }
client.block();
client.fail("wget -q -T 2 -O - http://server/");
client.unblock();
client.succeed("for i in $(seq 50); do wget -q -O - http://server/ && exit 0; sleep 0.1; done; exit 1");
print("namespace run ok");
"#,
        4243,
    );
    let path = dir.path().join("ns.toml");
    std::fs::write(&path, spec).expect("write spec");
    let out = covnet_cli(
        &[
            "run",
            path.to_str().expect("utf-8"),
            "--out",
            dir.path().join("out").to_str().expect("utf-8"),
        ],
        dir.path(),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "covnet run failed:\n{}",
        out.stderr
    );
    assert!(out.stderr.contains("namespace run ok"), "{}", out.stderr);
    assert!(
        marker_processes(4243).is_empty(),
        "{:?}",
        marker_processes(4243)
    );
}

/// A program with the name of a busybox applet (coreutils' `env`) is
/// installed, but the guest's busybox shell runs its own `env` for the bare
/// name: `covnet run` warns, naming the path that reaches the program, and
/// the program answers by that path.
#[test]
fn a_program_named_like_an_applet_is_warned_about_and_runs_by_its_path() {
    require_tools();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("env.toml");
    std::fs::write(
        &path,
        "[machines.a]\nbackend = \"namespace\"\nprograms = [\"/usr/bin/env\"]\n\n[test]\n\
         script = 'start_all(); print(\"by path: \" + a.succeed(\"/usr/bin/env --version\"));'\n",
    )
    .expect("write spec");
    let out = covnet_cli(
        &[
            "run",
            "--no-console",
            path.to_str().expect("utf-8"),
            "--out",
            dir.path().join("out").to_str().expect("utf-8"),
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "warning: machine `a`: /usr/bin/env has the name of a busybox applet: a bare `env`"
        ) && out
            .stderr
            .contains("(hint: name it by its path, /usr/bin/env)"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("by path: env (GNU coreutils)"),
        "{}",
        out.stderr
    );
}

/// SIGINT to `covnet run` while a script step runs: every process of the
/// namespace machines is gone when covnet exits.
#[test]
fn sigint_to_covnet_run_leaves_no_machine_process() {
    require_tools();
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = ns_web_spec("start_all();\nserver.succeed(\"sleep 600\");\n", 4244);
    let path = dir.path().join("ns.toml");
    std::fs::write(&path, spec).expect("write spec");
    let bin = covnet_tests::lcov_tool::covnet_bin().expect("covnet binary");
    let mut child = Command::new(bin)
        .args([
            "run",
            path.to_str().expect("utf-8"),
            "--out",
            dir.path().join("out").to_str().expect("utf-8"),
        ])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("covnet starts");
    // Wait for this run's marker service.
    let deadline = Instant::now() + Duration::from_secs(120);
    let marker = loop {
        if let Some(&p) = marker_processes(4244).first() {
            break p;
        }
        if Instant::now() > deadline || child.try_wait().expect("try_wait").is_some() {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the machines did not come up");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let ns = pid_namespace(marker).expect("machine pid namespace");
    // SAFETY: kill sends a signal to our own child; no memory is involved.
    let sent = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    assert_eq!(sent, 0);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("covnet run did not stop after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        !status.success(),
        "an interrupted run is a failure: {status}"
    );
    assert_eq!(
        processes_in(&ns),
        Vec::<u32>::new(),
        "machine processes outlived covnet"
    );
}

/// Output of a `covnet` run with stderr as text.
struct CliOut {
    status: std::process::ExitStatus,
    stderr: String,
}

fn covnet_cli(args: &[&str], cwd: &Path) -> CliOut {
    let out = covnet_tests::lcov_tool::covnet(args, cwd).expect("covnet runs");
    CliOut {
        status: out.status,
        stderr: out.stderr.clone(),
    }
}

/// A machine on two VLANs gets `eth0` and `eth1` with the spec's MACs and
/// addresses, and reaches each VLAN's other machine only through its NIC.
#[test]
fn two_vlans_give_two_interfaces() {
    let net = NsNet::new(
        "[machines.a]\nvlans = [1, 2]\n[machines.b]\nvlans = [2]\n[machines.c]\nvlans = [1]\n",
    );
    net.start_all();
    let links = net.succeed(
        "a",
        "cat /sys/class/net/eth0/address /sys/class/net/eth1/address",
    );
    assert_eq!(links, "52:54:00:01:01:00\n52:54:00:02:01:01\n");
    let addrs = net.succeed("a", "ip -4 -o addr show");
    assert!(
        addrs.contains("eth0") && addrs.contains("192.168.1.1/24"),
        "{addrs}"
    );
    assert!(
        addrs.contains("eth1") && addrs.contains("192.168.2.1/24"),
        "{addrs}"
    );
    net.succeed("a", "ping -c 1 -W 5 192.168.2.2");
    net.succeed("a", "ping -c 1 -W 5 192.168.1.3");
    // b (vlan 2 only) cannot reach c (vlan 1 only).
    let out = net
        .m("b")
        .execute("ping -c 1 -W 1 192.168.1.3", T)
        .expect("ping runs");
    assert_ne!(out.status, 0, "VLANs are not separate");
}

/// Init, its services and the control shell start with umask 022, as PID 1
/// of a VM does (the root itself is built with umask 0): a file a command
/// creates is 0644, not world-writable (sshd refuses such an
/// `authorized_keys`).
#[test]
fn guest_programs_start_with_umask_022() {
    let net = NsNet::new(
        "[machines.a]\n[[machines.a.services]]\nname = \"u\"\n\
         command = \"umask >/tmp/service-umask.new && mv /tmp/service-umask.new /tmp/service-umask && exec sleep 1000\"\n",
    );
    net.start_all();
    assert_eq!(net.succeed("a", "umask"), "0022\n");
    assert_eq!(
        net.succeed(
            "a",
            "echo x >/tmp/f && mkdir /tmp/d && stat -c %a /tmp/f /tmp/d"
        ),
        "644\n755\n"
    );
    // The service wrote its umask at boot; the shell's command timeout
    // bounds the wait.
    assert_eq!(
        net.succeed(
            "a",
            "while [ ! -e /tmp/service-umask ]; do sleep 0.05; done; cat /tmp/service-umask"
        ),
        "0022\n"
    );
}

/// A `#!/bin/sh` script brings the host's /bin/sh (dash) into the
/// programs' closure; the machine's /bin/sh stays busybox's, as in a VM,
/// so the control shell (which needs busybox's `read -d`) keeps working
/// and the script runs.
#[test]
fn a_shell_script_program_keeps_busyboxs_sh() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("hello.sh");
    std::fs::write(&script, "#!/bin/sh\necho \"hello from $0\"\n").expect("write script");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let net = NsNet::new(&format!("[machines.a]\nprograms = [{script:?}]\n"));
    net.start_all();
    // Shorter than T: with dash as /bin/sh no command ever answered.
    let out = net
        .m("a")
        .execute(
            &format!("{} && readlink /bin/sh", script.display()),
            Duration::from_secs(20),
        )
        .expect("the control shell answers");
    assert_eq!(
        (out.status, out.stdout_lossy()),
        (0, format!("hello from {}\nbusybox\n", script.display())),
        "{}",
        out.stderr_lossy()
    );
}

/// A command that outlives its timeout is killed (with what it started)
/// and reported; the shell keeps working; exit statuses and stderr come
/// back exactly.
#[test]
fn hanging_command_times_out_and_the_shell_survives() {
    let net = NsNet::new("[machines.solo]\n");
    net.start_all();
    let solo = net.m("solo");
    let err = solo
        .execute("sleep 300 & sleep 301; echo never", Duration::from_secs(1))
        .expect_err("times out");
    assert!(err.is_timeout(), "{err}");
    assert!(err.to_string().contains("sleep 300"), "{err}");
    let left = net.succeed("solo", "ps -o args | grep -c '^sleep 30[01]$' || true");
    assert_eq!(
        left.trim(),
        "0",
        "the timed-out command's processes survived"
    );
    let out = solo
        .execute("echo out; echo err >&2; exit 7", T)
        .expect("runs");
    assert_eq!(
        (out.status, out.stdout_lossy(), out.stderr_lossy()),
        (7, "out\n".to_owned(), "err\n".to_owned())
    );
}

/// `covnet run --coverage` on the webserver example with both machines as
/// namespace machines: services stop with SIGTERM, the `.gcda` files come
/// off both machines and the report attributes each file to its machine,
/// exactly as with VMs.
#[test]
fn coverage_run_with_namespace_machines() {
    require_tools();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("webserver");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/webserver");
    std::fs::create_dir_all(dir.join("src")).expect("mkdir");
    for f in ["Makefile", "test.rhai"] {
        std::fs::copy(src.join(f), dir.join(f)).expect("copy example");
    }
    for e in std::fs::read_dir(src.join("src"))
        .expect("example sources")
        .flatten()
    {
        std::fs::copy(e.path(), dir.join("src").join(e.file_name())).expect("copy source");
    }
    let spec = std::fs::read_to_string(src.join("spec.toml")).expect("example spec");
    std::fs::write(
        dir.join("spec.toml"),
        format!("[defaults]\nbackend = \"namespace\"\n\n{spec}"),
    )
    .expect("write spec");
    covnet_tests::lcov_tool::run_ok(Command::new("make").arg("-s").current_dir(&dir))
        .expect("the example builds (gcc and make from scripts/setup.sh)");
    let out = dir.join("out");
    let o = covnet_tests::lcov_tool::run(
        Command::new(covnet_tests::lcov_tool::covnet_bin().expect("covnet binary"))
            .args(["run", "--coverage", "--no-console", "--out"])
            .arg(&out)
            .arg(dir.join("spec.toml"))
            .current_dir(&dir),
        Duration::from_secs(600),
    )
    .expect("covnet runs");
    assert!(o.status.success(), "covnet run --coverage failed:\n{o}");
    let mut gcda = Vec::new();
    let mut stack = vec![out.join("coverage")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "gcda") {
                gcda.push(p);
            }
        }
    }
    assert_eq!(
        gcda.len(),
        4,
        "3 server + 1 client .gcda expected: {gcda:?}"
    );
    let per = std::fs::read_to_string(out.join("coverage-per-machine.info"))
        .expect("per-machine tracefile");
    // Hits per machine and source file: each machine ran only its own
    // program.
    let hits = |machine: &str, file: &str| -> u64 {
        let mut total = 0;
        for section in per
            .split("TN:")
            .filter(|s| s.starts_with(&format!("{machine}\n")))
        {
            let mut current = false;
            for line in section.lines() {
                if let Some(sf) = line.strip_prefix("SF:") {
                    current = sf.ends_with(file);
                } else if let Some(da) = line.strip_prefix("DA:").filter(|_| current) {
                    total += da
                        .split(',')
                        .nth(1)
                        .and_then(|c| c.parse::<u64>().ok())
                        .unwrap_or(0);
                }
            }
        }
        total
    };
    assert!(hits("server", "/src/server.c") > 0, "{per}");
    assert!(hits("server", "/src/routes.c") > 0, "{per}");
    assert_eq!(hits("server", "/src/client.c"), 0, "{per}");
    assert!(hits("client", "/src/client.c") > 0, "{per}");
    assert_eq!(hits("client", "/src/routes.c"), 0, "{per}");
    assert!(out.join("report/index.html").is_file());
}

/// The outcome of one shell command in a machine: (status, stdout and
/// stderr together).
fn attempt(net: &NsNet, name: &str, cmd: &str) -> (i32, String) {
    let out = net.m(name).execute(cmd, T).expect("command runs");
    (
        out.status,
        format!("{}{}", out.stdout_lossy(), out.stderr_lossy()),
    )
}

/// A host process killed and reaped when the test ends, passed or not.
struct HostProcess(std::process::Child);

impl Drop for HostProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Every file under `dir` (itself included) with its owner.
fn owners_under(dir: &Path) -> Vec<(PathBuf, u32)> {
    use std::os::unix::fs::MetadataExt as _;
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(path) = todo.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).into_iter().flatten().flatten() {
                todo.push(entry.path());
            }
        }
        found.push((path, meta.uid()));
    }
    found
}

/// Issue 13, item 5: a machine started by a root covnet runs as the user
/// namespace's root, which is an unprivileged host id (run as another
/// user, the test checks the same of that user's machines). Its root sets the
/// clock, loads a module, writes global sysctls, makes a device node,
/// signals a host process and writes through (and remounts) the read-only
/// bind of a host file: every one fails and the host is unchanged. What
/// the machine's own namespaces allow (mounting a tmpfs, its hostname)
/// works, and its root is uid 0 inside.
#[test]
fn machine_root_holds_no_host_privileges() {
    use covnet_runner::machine::namespace::ns::{IdMap, HOST_ID_BASE, HOST_ID_COUNT};
    // SAFETY: geteuid/getegid have no preconditions and cannot fail.
    let (euid, egid) = unsafe { (libc::geteuid(), libc::getegid()) };
    // As root (as CI runs): a host file of root's in a directory only root
    // can search, bound read-only into the machine as a program. As any
    // other user the machine's root is that user, so the file must be
    // someone else's: the host's curl.
    let host_dir = tempfile::tempdir().expect("tempdir");
    let victim = if euid == 0 {
        let copy = host_dir.path().join("covnet-victim");
        std::fs::copy("/bin/busybox", &copy).expect("copy busybox");
        copy
    } else {
        PathBuf::from("/usr/bin/curl")
    };
    let victim_bytes = std::fs::read(&victim).expect("read the victim");
    let v = victim.display();
    let net = NsNet::new(&format!("[machines.box]\nprograms = [\"{v}\"]\n"));
    let m = net.m("box");
    let expected_map = if euid == 0 {
        IdMap::Range {
            base: HOST_ID_BASE,
            count: HOST_ID_COUNT,
        }
    } else {
        IdMap::Caller {
            uid: euid,
            gid: egid,
        }
    };
    assert_eq!(m.id_map(), expected_map);
    let mut sleeper = HostProcess(
        Command::new("sleep")
            .arg("600")
            .spawn()
            .expect("start a host sleep"),
    );
    let sysctl = |name: &str| {
        std::fs::read_to_string(format!("/proc/sys/{name}"))
            .unwrap_or_else(|e| panic!("read /proc/sys/{name}: {e}"))
            .trim()
            .to_owned()
    };
    let swappiness = sysctl("vm/swappiness");
    let ratelimit = sysctl("kernel/printk_ratelimit");
    let host_name = sysctl("kernel/hostname");
    let clock_before = std::time::SystemTime::now();
    m.start().expect("machine starts");

    // Inside, it is root; on the host, its processes have the mapped ids
    // (as root: the private range's, without host root's groups).
    assert_eq!(net.succeed("box", "id -u").trim(), "0");
    let init = m.pid().expect("running");
    let status = std::fs::read_to_string(format!("/proc/{init}/status")).expect("init status");
    let (host_uid, host_gid) = expected_map.host_root();
    for (key, id) in [("Uid:", host_uid), ("Gid:", host_gid)] {
        let ids: Vec<&str> = status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .expect("id line")
            .split_whitespace()
            .collect();
        let id = id.to_string();
        assert_eq!(ids, [id.as_str(); 4], "{key} of the machine's init");
    }
    assert!(
        euid != 0
            || !status
                .lines()
                .find_map(|l| l.strip_prefix("Groups:"))
                .expect("groups line")
                .split_whitespace()
                .any(|g| g == "0"),
        "the machine's init kept host group 0: {status}"
    );

    // What its own namespaces allow works.
    net.succeed(
        "box",
        "mkdir -p /mnt && mount -t tmpfs none /mnt && echo x > /mnt/f && grep -q ' /mnt tmpfs ' /proc/mounts",
    );
    net.succeed(
        "box",
        "hostname covnet-inside && [ \"$(hostname)\" = covnet-inside ]",
    );
    net.succeed("box", "echo tmp > /tmp/t && [ \"$(cat /tmp/t)\" = tmp ]");

    // What would reach the host fails: each command succeeds only if its
    // action took effect (busybox `date -s` exits 0 even when refused).
    let new_value = |v: &str| if v == "7" { "8" } else { "7" };
    let sleeper_pid = sleeper.0.id();
    let attempts = [
        (
            "clock",
            "date -s '2001-01-01 00:00:00'; [ \"$(date +%Y)\" = 2001 ]".to_owned(),
        ),
        (
            "module",
            "printf 'not a module' > /tmp/m.ko && insmod /tmp/m.ko".to_owned(),
        ),
        (
            "sysctl vm.swappiness",
            format!("echo {} > /proc/sys/vm/swappiness", new_value(&swappiness)),
        ),
        (
            "sysctl kernel.printk_ratelimit",
            format!(
                "echo {} > /proc/sys/kernel/printk_ratelimit",
                new_value(&ratelimit)
            ),
        ),
        ("device node", "mknod /tmp/sda b 8 0".to_owned()),
        (
            "host process by pid",
            format!("[ ! -e /proc/{sleeper_pid} ] && kill -9 {sleeper_pid}"),
        ),
        ("write through the bind", format!("echo pwned > {v}")),
        // The remount itself may succeed: it changes the machine's own
        // mount, in its own mount namespace, not the host's file system;
        // the host file is still not the machine root's to write.
        (
            "write through the bind remounted read-write",
            format!("mount -o remount,bind,rw {v}; echo pwned >> {v}"),
        ),
    ];
    for (what, cmd) in &attempts {
        let (status, out) = attempt(&net, "box", cmd);
        eprintln!("{what}: `{cmd}` -> {status}: {}", out.trim());
        assert_ne!(status, 0, "{what}: `{cmd}` succeeded in the machine: {out}");
    }
    // On a kernel with module support the module fails for want of
    // privilege, not of a valid file (host root would be told "invalid
    // module format"); a kernel without it refuses everyone.
    let (_, out) = attempt(&net, "box", "insmod /tmp/m.ko");
    if Path::new("/proc/modules").exists() {
        assert!(out.contains("not permitted"), "insmod: {out}");
    } else {
        eprintln!("the host kernel has no module support: insmod said {out}");
    }

    // The host is unchanged.
    assert!(
        std::time::SystemTime::now() >= clock_before,
        "the host clock went back"
    );
    assert_eq!(sysctl("vm/swappiness"), swappiness);
    assert_eq!(sysctl("kernel/printk_ratelimit"), ratelimit);
    assert_eq!(sysctl("kernel/hostname"), host_name);
    assert!(
        sleeper.0.try_wait().expect("poll the host sleep").is_none(),
        "the host sleep was killed"
    );
    assert!(
        std::fs::read(&victim).expect("read the victim") == victim_bytes,
        "the bound host file changed"
    );
    drop(sleeper);

    // Nothing in the run directory belongs to anyone but covnet's user
    // after the run (as root: nothing to the machine's ids), and it can be
    // removed.
    m.crash().expect("machine stops");
    let foreign: Vec<_> = owners_under(net._dir.path())
        .into_iter()
        .filter(|(_, uid)| *uid != euid)
        .collect();
    assert_eq!(
        foreign,
        Vec::new(),
        "files of other users in the run directory"
    );
    let run_dir = net._dir.path().to_path_buf();
    drop(net);
    assert!(!run_dir.exists(), "{} was not removed", run_dir.display());
}

/// A service that dies while its readiness is awaited fails the wait at
/// once, saying it died and showing its log, instead of waiting out the
/// timeout for a port that will never open.
#[test]
fn a_service_dying_before_it_is_ready_fails_the_wait_saying_so() {
    require_tools();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("dies.toml");
    std::fs::write(
        &path,
        "[defaults]\nbackend = \"namespace\"\ncommand_timeout = \"10m\"\n[machines.m]\n[[machines.m.services]]\nname = \"flaky\"\ncommand = \"sh -c 'echo starting up; sleep 1; echo giving up; exit 4'\"\nready = { port = 8080 }\n[test]\ntimeout = \"15m\"\nscript = '''\nstart_all();\nm.wait_for_service(\"flaky\");\n'''\n",
    )
    .expect("write spec");
    let out = covnet_cli(
        &[
            "run",
            path.to_str().expect("utf-8"),
            "--no-console",
            "--out",
            dir.path().join("out").to_str().expect("utf-8"),
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("service `flaky` is not running") && out.stderr.contains("giving up"),
        "{}",
        out.stderr
    );
}

/// Builds tests/fixtures/net/mcast6.c (join an IPv6 group and print what
/// arrives, or send to one) into `dir`.
fn build_mcast6(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/net/mcast6.c");
    let out = dir.join("mcast6");
    let status = Command::new("gcc")
        .args(["-O1", "-Wall", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .expect("gcc runs (hint: run scripts/setup.sh)");
    assert!(status.success(), "gcc failed on {}", src.display());
    out
}

/// Waits (bounded, in the machine) until `eth0` has its link-local IPv6
/// address and no tentative one: duplicate address detection is over.
fn wait_dad(net: &NsNet, machine: &str) {
    net.succeed(
        machine,
        "for i in $(seq 200); do ip -6 addr show dev eth0 scope link | grep -q inet6 && \
         ! ip -6 addr show dev eth0 | grep -q tentative && exit 0; sleep 0.1; done; \
         ip -6 addr show dev eth0; exit 1",
    );
}

/// IPv6 between namespace machines, through the switch's MLD snooping:
/// neighbour discovery on link-local and added addresses (solicitations go
/// to solicited-node groups), duplicate address detection that must reach
/// the machine holding the address, and UDP to a group that two machines
/// joined, one of them after the group was known to the switch.
#[test]
fn ipv6_neighbour_discovery_dad_and_multicast_between_namespace_machines() {
    let tools = tempfile::tempdir().expect("tempdir");
    let mcast6 = build_mcast6(tools.path());
    let m = |name: &str| format!("[machines.{name}]\nprograms = [{:?}]\n", mcast6);
    let net = NsNet::new(&format!("{}{}{}", m("a"), m("b"), m("c")));
    net.start_all();
    for name in ["a", "b", "c"] {
        wait_dad(&net, name);
    }
    // Link-local: b's address, reached from a.
    let b_ll = net.succeed(
        "b",
        "ip -6 -o addr show dev eth0 scope link | sed 's/.*inet6 \\([^/]*\\)\\/.*/\\1/'",
    );
    let b_ll = b_ll.trim();
    assert!(
        b_ll.starts_with("fe80::"),
        "b's link-local address: {b_ll:?}"
    );
    net.succeed("a", &format!("ping6 -c 1 -W 5 {b_ll}%eth0"));
    // Duplicate address detection: c's solicitation for a's address must
    // reach a (a member of that solicited-node group), which defends it.
    net.succeed("a", "ip -6 addr add fd00::1/64 dev eth0");
    wait_dad(&net, "a");
    net.succeed("c", "ip -6 addr add fd00::1/64 dev eth0");
    net.succeed(
        "c",
        "for i in $(seq 200); do ip -6 addr show dev eth0 | grep fd00::1 | grep -q dadfailed && exit 0; sleep 0.1; done; \
         ip -6 addr show dev eth0; exit 1",
    );
    net.succeed("b", "ip -6 addr add fd00::2/64 dev eth0");
    wait_dad(&net, "b");
    net.succeed("a", "ping6 -c 1 -W 5 fd00::2");
    net.succeed("b", "ping6 -c 1 -W 5 fd00::1");
    // Multicast: b joins ff05::1:3 (twice: the listener on port 5001 keeps
    // b in the group), then c joins the group b made known.
    let listen = |machine: &str, port: u16, secs: u32| {
        net.succeed(
            machine,
            &format!(
                "({mcast6} listen ff05::1:3 {port} eth0 {secs} > /tmp/mc{port} 2>&1 &); \
                 for i in $(seq 100); do grep -q joined /tmp/mc{port} && exit 0; sleep 0.1; done; \
                 cat /tmp/mc{port}; exit 1",
                mcast6 = mcast6.display()
            ),
        );
    };
    listen("b", 5001, 120);
    listen("b", 5000, 60);
    listen("c", 5000, 60);
    net.succeed(
        "a",
        &format!(
            "for i in $(seq 10); do {} send ff05::1:3 5000 eth0 hello-$i || exit 1; sleep 0.3; done",
            mcast6.display()
        ),
    );
    for machine in ["b", "c"] {
        net.succeed(
            machine,
            "for i in $(seq 100); do grep -q '^hello-' /tmp/mc5000 && exit 0; sleep 0.1; done; \
             cat /tmp/mc5000; exit 1",
        );
    }
}
