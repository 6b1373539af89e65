//! Scale (issue 6, part 5): a network of many machines, each running a
//! web server, with the first fetching a page from every machine by host
//! name. While it runs the test samples covnet's resident memory and reads
//! every QEMU's `-m` argument: each machine gets what the spec says, and
//! the runner itself stays small. The peak RSS is printed
//! (`scale: ... covnet peak VmRSS`); bench/RESULTS.md "## Scale: ten machines" has the
//! measured numbers, including the 10-VM TCG network.
//!
//! Needs qemu-system-x86_64, busybox-static and a Debian kernel in /boot.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use covnet_runner::image::kernel::Kernel;
use covnet_tests::budget::Budget;
use covnet_tests::running::{cmdline, qemu_processes, run_dirs_in, CovnetRun};

/// Ceiling for covnet's own resident memory (it holds no guest memory:
/// that is QEMU's). Measured peaks are far below; see bench/RESULTS.md.
const RUNNER_RSS_LIMIT_KIB: u64 = 200 * 1024;

/// A spec of `n` machines `m1`..`mn` (backend `backend`, `memory` MiB
/// each), each serving its name with busybox httpd; `m1` fetches every
/// page by host name.
fn web_farm_spec(n: usize, backend: &str, memory: u32) -> String {
    let mut spec = format!("[defaults]\nbackend = \"{backend}\"\nmemory_mib = {memory}\n");
    for i in 1..=n {
        spec.push_str(&format!(
            "[machines.m{i}]\n[[machines.m{i}.files]]\ncontent = \"m{i}\\n\"\ntarget = \"/srv/www/index.html\"\n[[machines.m{i}.services]]\nname = \"httpd\"\ncommand = \"busybox httpd -f -p 80 -h /srv/www\"\nready = {{ port = 80 }}\n"
        ));
    }
    let mut script = String::from("start_all();\n");
    for i in 1..=n {
        script.push_str(&format!("m{i}.wait_for_service(\"httpd\");\n"));
    }
    let expected: String = (1..=n).map(|i| format!("m{i}\n")).collect();
    script.push_str(&format!(
        "let pages = m1.succeed(\"for i in $(seq 1 {n}); do wget -q -O - http://m$i/ || exit 1; done\");\nif pages != \"{}\" {{ throw `wrong pages: ${{pages}}`; }}\nprint(\"fetched {n} pages\");\n",
        expected.replace('\n', "\\n")
    ));
    spec.push_str(&format!(
        "[test]\ntimeout = \"20m\"\nscript = '''\n{script}'''\n"
    ));
    spec
}

/// VmRSS of `pid` in KiB.
fn vm_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The value after `-m` in a QEMU command line (NUL-separated as spaces).
fn memory_arg(cmdline: &str) -> Option<String> {
    let mut words = cmdline.split(' ');
    words.find(|w| *w == "-m")?;
    words.next().map(str::to_owned)
}

/// Runs the farm through `covnet run`, sampling as it goes; asserts it
/// passes, every QEMU got `-m <memory>M`, covnet stayed small, and nothing
/// is left. Returns covnet's peak RSS in KiB.
fn run_farm(n: usize, backend: &str, memory: u32) -> u64 {
    let qemu = Command::new("qemu-system-x86_64").arg("--version").output();
    assert!(
        qemu.as_ref().is_ok_and(|o| o.status.success()),
        "qemu-system-x86_64 is required (bash scripts/setup.sh): {qemu:?}"
    );
    if let Err(e) = Kernel::host_default() {
        panic!("a Debian kernel in /boot is required: {e}");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path().join("run");
    std::fs::create_dir(&base).expect("run base");
    let spec = dir.path().join("farm.toml");
    std::fs::write(&spec, web_farm_spec(n, backend, memory)).expect("write spec");
    let out = dir.path().join("out");
    let started = Instant::now();
    let budget = Budget::of_this_test();
    let mut run = CovnetRun::spawn(
        &[
            "run",
            spec.to_str().expect("utf-8"),
            "--out",
            out.to_str().expect("utf-8"),
            "--no-console",
        ],
        dir.path(),
        &base,
    )
    .expect("covnet starts");
    let run_dir = run.run_dir(budget.left()).expect("run dir");
    let mut peak_rss = 0;
    let mut peak_qemu_rss = 0;
    let mut memory_of: BTreeMap<u32, Option<String>> = BTreeMap::new();
    let deadline = budget.deadline();
    let status = loop {
        if let Some(status) = run.try_wait().expect("try_wait") {
            break status;
        }
        if let Some(rss) = vm_rss_kib(run.pid()) {
            peak_rss = peak_rss.max(rss);
        }
        let qemus = qemu_processes(&run_dir);
        peak_qemu_rss = peak_qemu_rss.max(qemus.iter().filter_map(|(p, _)| vm_rss_kib(*p)).sum());
        for (pid, _) in qemus {
            memory_of
                .entry(pid)
                .or_insert_with(|| memory_arg(&cmdline(pid)));
        }
        assert!(
            Instant::now() < deadline,
            "the farm of {n} {backend} machines did not finish within {:?} (the test's budget under its nextest limit)\n{}",
            started.elapsed(),
            run.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let stderr = run.stderr();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains(&format!("fetched {n} pages")), "{stderr}");
    if backend == "vm" {
        assert_eq!(memory_of.len(), n, "QEMUs seen: {memory_of:?}");
        let want = format!("{memory}M");
        for (pid, m) in &memory_of {
            assert_eq!(m.as_deref(), Some(want.as_str()), "QEMU {pid}");
        }
    }
    eprintln!(
        "scale: {n} {backend} machines, {:.1}s wall, covnet peak VmRSS {peak_rss} KiB, QEMUs' peak VmRSS together {peak_qemu_rss} KiB",
        started.elapsed().as_secs_f64(),
    );
    assert!(peak_rss > 0, "covnet's memory was sampled");
    assert!(
        peak_rss < RUNNER_RSS_LIMIT_KIB,
        "covnet's own RSS peaked at {peak_rss} KiB"
    );
    assert!(qemu_processes(&run_dir).is_empty());
    assert!(run_dirs_in(&base).is_empty());
    peak_rss
}

/// Ten namespace machines with a web server each.
#[test]
fn ten_namespace_machines_serve_and_fetch() {
    run_farm(10, "namespace", 128);
}

/// Ten TCG VMs of 128 MiB with a web server each.
#[test]
fn ten_vms_serve_and_fetch() {
    run_farm(10, "vm", 128);
}
