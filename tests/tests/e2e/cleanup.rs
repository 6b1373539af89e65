//! Nothing survives a run, however it ends (issue 6, part 3): `covnet run`
//! gets SIGINT during a boot that would hang, SIGTERM or SIGKILL while a
//! script step runs, its QEMU is SIGKILLed or frozen from outside, or the
//! guest kernel panics. Afterwards the process table has no QEMU of the
//! run and no live child of covnet, and the run's base directory has no
//! run directory (after a SIGKILL, once the next covnet has started).
//!
//! Needs qemu-system-x86_64, busybox-static and a Debian kernel in /boot;
//! a missing one fails the test loudly.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use covnet_runner::image::kernel::Kernel;
use covnet_tests::running::{
    alive, children_of, qemu_processes, run_dirs_in, wait_until, CovnetRun,
};

/// Boots under TCG on a loaded 2-core host take seconds to a minute.
const BOOT: Duration = Duration::from_secs(240);
/// How long an orderly stop may take once asked for.
const STOP: Duration = Duration::from_secs(90);
/// Printed by the scripts once every machine is up.
const READY: &str = "covnet-test: ready";
/// covnet's exit code for a run stopped by a signal.
const INTERRUPTED: i32 = 130;

fn require_vm_tools() {
    let qemu = Command::new("qemu-system-x86_64").arg("--version").output();
    assert!(
        qemu.as_ref().is_ok_and(|o| o.status.success()),
        "qemu-system-x86_64 is required for VM tests (bash scripts/setup.sh): {qemu:?}"
    );
    if let Err(e) = Kernel::host_default() {
        panic!("a Debian kernel in /boot is required for VM tests: {e}");
    }
}

/// A spec in a temp dir and the base directory its runs put run dirs in.
struct Scene {
    dir: tempfile::TempDir,
    base: PathBuf,
    spec: PathBuf,
}

impl Scene {
    fn new(spec: &str) -> Scene {
        require_vm_tools();
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().join("run");
        std::fs::create_dir(&base).expect("run base");
        let spec_path = dir.path().join("spec.toml");
        std::fs::write(&spec_path, spec).expect("write spec");
        Scene {
            dir,
            base,
            spec: spec_path,
        }
    }

    /// `covnet run` of the spec in the background.
    fn start(&self) -> CovnetRun {
        self.start_spec(&self.spec, "out")
    }

    fn start_spec(&self, spec: &Path, out: &str) -> CovnetRun {
        let out = self.dir.path().join(out);
        CovnetRun::spawn(
            &[
                "run",
                spec.to_str().expect("utf-8 path"),
                "--out",
                out.to_str().expect("utf-8 path"),
                "--no-console",
            ],
            self.dir.path(),
            &self.base,
        )
        .expect("covnet starts")
    }
}

/// A one-VM spec whose script prints [`READY`] and then blocks in a
/// guest command until the test acts.
fn blocked_script_spec() -> String {
    format!(
        "[defaults]\ncommand_timeout = \"10m\"\n[machines.m]\nmemory_mib = 128\n[test]\ntimeout = \"15m\"\nscript = '''\nstart_all();\nprint(\"{READY}\");\nm.succeed(\"sleep 900\");\n'''\n"
    )
}

/// Starts the scene's run and returns it, its run directory and the pids
/// of covnet's QEMU children (taken as soon as they exist) once the script
/// has printed [`READY`].
fn start_blocked(scene: &Scene) -> (CovnetRun, PathBuf, Vec<u32>) {
    let (mut run, run_dir, qemus) = start_booting(scene);
    run.wait_for_line(READY, BOOT).expect("machines up");
    (run, run_dir, qemus)
}

/// Starts the scene's run and returns it as soon as its QEMU runs.
fn start_booting(scene: &Scene) -> (CovnetRun, PathBuf, Vec<u32>) {
    let mut run = scene.start();
    let run_dir = run.run_dir(BOOT).expect("run directory announced");
    wait_until("QEMU of the run started", BOOT, || {
        !qemu_processes(&run_dir).is_empty()
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", run.stderr()));
    let qemus = qemus_of(&run, &run_dir);
    (run, run_dir, qemus)
}

/// covnet's children that are this run's QEMUs (there must be some).
fn qemus_of(run: &CovnetRun, run_dir: &Path) -> Vec<u32> {
    let children = children_of(run.pid());
    let qemus: Vec<u32> = qemu_processes(run_dir)
        .into_iter()
        .map(|(pid, _)| pid)
        .collect();
    assert!(
        !qemus.is_empty() && qemus.iter().all(|p| children.contains(p)),
        "QEMUs of {} {qemus:?} should be children of covnet {} {children:?}\n{}",
        run_dir.display(),
        run.pid(),
        run.stderr()
    );
    qemus
}

/// The run is over and left nothing: no QEMU mentioning its run dir, none
/// of the recorded children alive, no run directory under the base.
fn assert_nothing_left(scene: &Scene, run_dir: &Path, children: &[u32], context: &str) {
    let qemu = qemu_processes(run_dir);
    assert!(qemu.is_empty(), "QEMU left behind: {qemu:#?}\n{context}");
    let living: Vec<u32> = children.iter().copied().filter(|&p| alive(p)).collect();
    assert!(
        living.is_empty(),
        "children of covnet still alive: {living:?}\n{context}"
    );
    assert!(
        !run_dir.exists(),
        "run directory {} left behind\n{context}",
        run_dir.display()
    );
    let dirs = run_dirs_in(&scene.base);
    assert!(dirs.is_empty(), "run directories left: {dirs:?}\n{context}");
}

/// Stops an orderly run with `signal` while a step blocks.
fn signal_mid_script(signal: i32) {
    let scene = Scene::new(&blocked_script_spec());
    let (mut run, run_dir, qemus) = start_blocked(&scene);
    run.signal(signal).expect("signal covnet");
    let status = run.wait(STOP).expect("covnet stops after the signal");
    let stderr = run.stderr();
    assert_eq!(status.code(), Some(INTERRUPTED), "{stderr}");
    let name = if signal == libc::SIGINT {
        "SIGINT"
    } else {
        "SIGTERM"
    };
    assert!(
        stderr.contains(&format!("interrupted: {name} received")),
        "the failed step names the interruption:\n{stderr}"
    );
    assert_nothing_left(&scene, &run_dir, &qemus, &stderr);
}

#[test]
fn sigint_mid_script_leaves_nothing() {
    signal_mid_script(libc::SIGINT);
}

#[test]
fn sigterm_mid_script_leaves_nothing() {
    signal_mid_script(libc::SIGTERM);
}

/// Ctrl-C while a guest boots (one that would never finish: init is
/// `cat`, the boot deadline is 10 minutes) stops the run at once, not at
/// the boot deadline.
#[test]
fn sigint_during_a_hung_boot_stops_at_once() {
    let scene = Scene::new(
        "[defaults]\nboot_timeout = \"10m\"\n[machines.m]\nmemory_mib = 128\nkernel_params = [\"rdinit=/bin/cat\"]\n[test]\ntimeout = \"20m\"\nscript = \"start_all();\"\n",
    );
    let (mut run, run_dir, qemus) = start_booting(&scene);
    run.signal(libc::SIGINT).expect("SIGINT");
    // Far below the 10-minute boot deadline the run would otherwise wait.
    let status = run.wait(STOP).expect("covnet stops during the boot");
    let stderr = run.stderr();
    assert_eq!(status.code(), Some(INTERRUPTED), "{stderr}");
    assert_nothing_left(&scene, &run_dir, &qemus, &stderr);
}

/// SIGKILL cannot be caught: QEMU dies with covnet (PR_SET_PDEATHSIG) and
/// the run directory, which only covnet could have removed, is removed by
/// the next covnet that starts.
#[test]
fn sigkill_kills_qemu_and_the_next_run_reclaims_the_run_dir() {
    let scene = Scene::new(&blocked_script_spec());
    let (mut run, run_dir, qemus) = start_blocked(&scene);
    run.signal(libc::SIGKILL).expect("SIGKILL");
    let status = run.wait(STOP).expect("covnet is dead");
    assert!(!status.success());
    wait_until("QEMU of the SIGKILLed covnet gone", STOP, || {
        qemu_processes(&run_dir).is_empty() && !qemus.iter().any(|&p| alive(p))
    })
    .expect("QEMU dies with covnet");
    assert!(
        run_dir.join("covnet.owner").is_file(),
        "the dead covnet's run directory is still there, with its owner file"
    );

    // The next run (a namespace machine: no boot to wait for) reclaims it.
    let next_spec = scene.dir.path().join("next.toml");
    std::fs::write(
        &next_spec,
        "[machines.n]\nbackend = \"namespace\"\n[test]\nscript = \"start_all(); n.succeed(\\\"true\\\");\"\n",
    )
    .expect("write spec");
    let mut next = scene.start_spec(&next_spec, "out-next");
    let status = next.wait(STOP).expect("the next run ends");
    let stderr = next.stderr();
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "removed stale run directory {}",
            run_dir.display()
        )),
        "{stderr}"
    );
    assert_nothing_left(&scene, &run_dir, &qemus, &stderr);
}

/// QEMU SIGKILLed from outside mid-step: the step fails naming the
/// machine, the run fails, and covnet still cleans up.
#[test]
fn qemu_killed_from_outside_fails_the_run_and_leaves_nothing() {
    let scene = Scene::new(&blocked_script_spec());
    let (mut run, run_dir, qemus) = start_blocked(&scene);
    for &pid in &qemus {
        // SAFETY: kill only sends a signal to a QEMU of this test's run.
        assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) }, 0);
    }
    let status = run.wait(STOP).expect("covnet notices and ends");
    let stderr = run.stderr();
    assert!(!status.success(), "{status}\n{stderr}");
    assert!(
        stderr.contains("machine `m`: exited"),
        "the failure names the machine and its exit:\n{stderr}"
    );
    assert_nothing_left(&scene, &run_dir, &qemus, &stderr);
}

/// A frozen guest (QEMU SIGSTOPped from outside: it never answers again)
/// is bounded by the command timeout (5 s plus the channel slack); the
/// stopped QEMU is still killed.
#[test]
fn frozen_guest_times_out_and_leaves_nothing() {
    let scene = Scene::new(&format!(
        "[defaults]\ncommand_timeout = \"5s\"\n[machines.m]\nmemory_mib = 128\n[test]\ntimeout = \"15m\"\nscript = '''\nstart_all();\nprint(\"{READY}\");\nm.succeed(\"sleep 2\");\nm.succeed(\"true\");\n'''\n"
    ));
    let (mut run, run_dir, qemus) = start_blocked(&scene);
    for &pid in &qemus {
        // SAFETY: kill only sends a signal to a QEMU of this test's run.
        assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGSTOP) }, 0);
    }
    let status = run.wait(STOP + BOOT).expect("the timeout ends the run");
    let stderr = run.stderr();
    assert!(!status.success(), "{status}\n{stderr}");
    assert!(
        stderr.contains("machine `m`: command `") && stderr.contains("` did not finish within 5s"),
        "the failure is the command's timeout:\n{stderr}"
    );
    assert_nothing_left(&scene, &run_dir, &qemus, &stderr);
}

/// A guest kernel panic (sysrq crash; `panic=-1` with `-no-reboot` makes
/// QEMU exit) fails the step with the panic in the machine's console log.
#[test]
fn guest_kernel_panic_fails_the_run_and_leaves_nothing() {
    let scene = Scene::new(&format!(
        "[machines.m]\nmemory_mib = 128\n[test]\ntimeout = \"15m\"\nscript = '''\nstart_all();\nprint(\"{READY}\");\nm.succeed(\"echo c > /proc/sysrq-trigger\");\n'''\n"
    ));
    let (mut run, run_dir, qemus) = start_blocked(&scene);
    let status = run.wait(STOP).expect("the panic ends the run");
    let stderr = run.stderr();
    assert!(!status.success(), "{status}\n{stderr}");
    let console = std::fs::read_to_string(scene.dir.path().join("out/failure/m/console.log"))
        .expect("console log in the failure bundle");
    assert!(
        console.contains("Kernel panic"),
        "console shows the panic:\n{console}"
    );
    assert_nothing_left(&scene, &run_dir, &qemus, &stderr);
}

/// The same for namespace machines: their processes die with a SIGKILLed
/// covnet, and the next covnet removes the run directory with the
/// machines' root trees in it.
#[test]
fn sigkill_with_namespace_machines_leaves_nothing_after_the_next_run() {
    let spec = format!(
        "[defaults]\nbackend = \"namespace\"\ncommand_timeout = \"10m\"\n[machines.a]\n[machines.b]\n[test]\ntimeout = \"15m\"\nscript = '''\nstart_all();\nprint(\"{READY}\");\na.succeed(\"sleep 900\");\n'''\n"
    );
    let scene = Scene::new(&spec);
    let mut run = scene.start();
    let run_dir = run.run_dir(BOOT).expect("run directory announced");
    run.wait_for_line(READY, BOOT).expect("machines up");
    let children = children_of(run.pid());
    assert!(children.len() >= 2, "machine inits: {children:?}");
    let entries: Vec<String> = std::fs::read_dir(&run_dir)
        .expect("list run dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        entries.iter().any(|e| e == "a-root"),
        "machine root in the run dir: {entries:?}"
    );
    run.signal(libc::SIGKILL).expect("SIGKILL");
    run.wait(STOP).expect("covnet is dead");
    wait_until("machines of the SIGKILLed covnet gone", STOP, || {
        !children.iter().any(|&p| alive(p))
    })
    .expect("machines die with covnet");
    assert!(run_dir.is_dir(), "left for the next covnet to reclaim");

    let next_spec = scene.dir.path().join("next.toml");
    std::fs::write(
        &next_spec,
        "[machines.n]\nbackend = \"namespace\"\n[test]\nscript = \"start_all();\"\n",
    )
    .expect("write spec");
    let mut next = scene.start_spec(&next_spec, "out-next");
    let status = next.wait(STOP).expect("the next run ends");
    let stderr = next.stderr();
    assert!(status.success(), "{stderr}");
    assert_nothing_left(&scene, &run_dir, &children, &stderr);
}
