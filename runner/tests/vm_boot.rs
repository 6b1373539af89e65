//! Boots real QEMU VMs (TCG on machines without KVM) from a minimal
//! initramfs built here from the host's static busybox, the kernel's virtio
//! modules and covnet's `control.sh`, and checks the VM backend end to end.
//!
//! Needs qemu-system-x86_64, busybox-static and a Debian kernel in /boot;
//! missing ones fail the tests loudly.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use covnet_runner::image::cpio::CpioWriter;
use covnet_runner::image::kernel::Kernel;
use covnet_runner::image::modules::{ModuleDeps, GUEST_MODULES};
use covnet_runner::machine::console::CONTROL_SH;
use covnet_runner::machine::process::{group_members, pid_alive};
use covnet_runner::machine::vm::accel::{self, AccelRequest};
use covnet_runner::machine::vm::qemu::Mac;
use covnet_runner::machine::vm::{Vm, VmConfig, VmNic};
use covnet_runner::machine::{EventSink, Machine, MachineError, MachineEvent, Output};
use covnet_runner::net::switch::Switch;
use covnet_runner::rundir::RunDir;

const CMD: Duration = Duration::from_secs(60);
const SHUTDOWN: Duration = Duration::from_secs(60);

/// A tiny stage-1 init: kernel filesystems, virtio modules, an optional
/// address from `covnet.ip=` on the kernel command line, then control.sh.
const TEST_INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
for m in /modules/*.ko; do insmod "$m" || echo "insmod $m failed"; done
for p in $(cat /proc/cmdline); do
	case $p in covnet.ip=*) ip addr add "${p#covnet.ip=}/24" dev eth0; ip link set eth0 up ;; esac
done
ip link set lo up
echo covnet-test-init-done
exec /covnet/control.sh
"#;

fn initramfs(dir: &Path) -> (PathBuf, PathBuf) {
    let kernel = Kernel::host_default().expect("a Debian kernel in /boot (run scripts/setup.sh)");
    let deps = ModuleDeps::load(&kernel.modules_dir).expect("modules.dep of the host kernel");
    let modules = deps.resolve(GUEST_MODULES).expect("virtio modules");
    let busybox = std::fs::read("/bin/busybox").expect("busybox-static at /bin/busybox");
    let path = dir.join("test-initramfs.cpio");
    let file = std::fs::File::create(&path).expect("create initramfs");
    let mut cpio = CpioWriter::new(std::io::BufWriter::new(file));
    for d in [
        "bin", "dev", "proc", "sys", "run", "tmp", "modules", "covnet",
    ] {
        cpio.dir(d, 0o755).expect("cpio dir");
    }
    cpio.file("bin/busybox", 0o755, &busybox)
        .expect("cpio busybox");
    cpio.file("init", 0o755, TEST_INIT.as_bytes())
        .expect("cpio init");
    cpio.file("covnet/control.sh", 0o755, CONTROL_SH.as_bytes())
        .expect("cpio control.sh");
    for (i, m) in modules.iter().enumerate() {
        let data = m.read().expect("module bytes");
        cpio.file(&format!("modules/{i:02}-{}.ko", m.name), 0o644, &data)
            .expect("cpio module");
    }
    cpio.finish().expect("finish cpio");
    (kernel.image, path)
}

fn config(name: &str, kernel: &Path, initrd: &Path) -> VmConfig {
    VmConfig::new(
        name,
        kernel,
        initrd,
        accel::resolve(AccelRequest::Auto).expect("auto always resolves"),
    )
}

/// Asserts QEMU (pid = process group) is gone.
fn assert_gone(pid: u32) {
    assert!(!pid_alive(pid), "qemu {pid} is still alive");
    assert_eq!(group_members(pid), Vec::<u32>::new(), "process group {pid}");
}

#[test]
fn boot_execute_copy_timeout_shutdown_restart_crash() {
    let run = RunDir::create().expect("run dir");
    let (kernel, initrd) = initramfs(run.path());
    let (tx, rx) = std::sync::mpsc::channel();
    let vm = Vm::new(
        config("alpha", &kernel, &initrd),
        &run,
        None,
        EventSink::channel(tx),
    )
    .expect("vm");

    vm.start().expect("boot to the control shell");
    let boot = vm.boot_time().expect("boot time");
    eprintln!("alpha: control shell after {:.2}s", boot.as_secs_f64());
    assert!(vm.is_running());

    // stdout, stderr and status exact and apart.
    let out = vm
        .execute("echo hi; echo err >&2; exit 3", CMD)
        .expect("execute");
    assert_eq!(
        out,
        Output {
            status: 3,
            stdout: b"hi\n".to_vec(),
            stderr: b"err\n".to_vec()
        }
    );

    // Binary round trip of all 256 byte values (and a multi-chunk file).
    let data: Vec<u8> = (0..=255u8).collect();
    vm.copy_to(&data, "/tmp/dir/all.bin", 0o600)
        .expect("copy_to");
    assert_eq!(vm.copy_from("/tmp/dir/all.bin").expect("copy_from"), data);
    // 2 MiB: enough to fill the host socket buffers, where a virtconsole
    // would drop output (regression: lost base64 lines in copy_from).
    let big: Vec<u8> = (0..2u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    vm.copy_to(&big, "/tmp/big.bin", 0o755)
        .expect("copy_to big");
    assert_eq!(vm.copy_from("/tmp/big.bin").expect("copy_from big"), big);
    let mode = vm.execute("stat -c %a /tmp/big.bin", CMD).expect("stat");
    assert_eq!(mode.stdout, b"755\n");
    let missing = vm.copy_from("/nonexistent").expect_err("missing file");
    assert!(
        matches!(missing, MachineError::Guest { status: 1, .. }),
        "{missing}"
    );

    // A background child holding stdout does not hold up the reply.
    let out = vm
        .execute("sleep 1000 & echo started", CMD)
        .expect("background child");
    assert_eq!(out.stdout, b"started\n");

    // The host timeout fires, the command's group is killed in the guest,
    // and the shell stays usable.
    let err = vm
        .execute("sleep 100; echo not-killed", Duration::from_secs(2))
        .expect_err("timeout");
    assert!(
        matches!(&err, MachineError::CommandTimeout { command, .. } if command == "sleep 100; echo not-killed"),
        "{err}"
    );
    let left = vm
        .execute("ps -o args | grep -c '^sleep 100$' || true", CMD)
        .expect("ps");
    assert_eq!(
        left.stdout_lossy().trim(),
        "0",
        "sleep 100 survived the kill"
    );

    // Console log: lines from init, and waits on them.
    vm.wait_for_console_text("covnet-test-init-done", CMD)
        .expect("init marker on the serial console");
    assert!(vm
        .console_lines(1000)
        .iter()
        .any(|l| l.contains("covnet-test-init-done")));
    let err = vm
        .wait_for_console_text("never-printed", Duration::from_millis(300))
        .expect_err("times out");
    assert!(err.to_string().contains("never-printed"), "{err}");

    // Graceful shutdown leaves no process behind.
    let pid = vm.pid().expect("pid");
    vm.shutdown(SHUTDOWN).expect("shutdown");
    assert!(!vm.is_running());
    assert_gone(pid);
    assert!(matches!(
        vm.execute("true", CMD),
        Err(MachineError::NotRunning { .. })
    ));

    // Restart, then crash.
    vm.start().expect("second boot");
    let out = vm.execute("cat /proc/uptime", CMD).expect("after restart");
    assert!(out.success());
    let pid = vm.pid().expect("pid");
    vm.crash().expect("crash");
    assert_gone(pid);

    let events: Vec<MachineEvent> = rx.try_iter().collect();
    let kinds: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            MachineEvent::Booting { .. } => Some("booting"),
            MachineEvent::Ready { .. } => Some("ready"),
            MachineEvent::Stopped { .. } => Some("stopped"),
            _ => None,
        })
        .collect();
    assert_eq!(
        kinds,
        ["booting", "ready", "stopped", "booting", "ready", "stopped"]
    );
    assert!(events
        .iter()
        .any(|e| e.to_string() == "alpha| covnet-test-init-done"));
    let stops: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            MachineEvent::Stopped { how, .. } => Some(how.as_str()),
            _ => None,
        })
        .collect();
    // The shutdown was the guest's own (QEMU exited 0), the crash a SIGKILL.
    assert_eq!(stops, ["exit status: 0", "signal: 9 (SIGKILL)"]);
}

#[test]
fn qemu_exiting_during_boot_ends_the_wait_early() {
    let run = RunDir::create().expect("run dir");
    let cfg = config(
        "broken",
        Path::new("/nonexistent/vmlinuz"),
        Path::new("/nonexistent/initrd"),
    );
    let vm = Vm::new(cfg, &run, None, EventSink::none()).expect("vm");
    let err = vm.start().expect_err("cannot boot");
    match &err {
        MachineError::Exited {
            machine, console, ..
        } => {
            assert_eq!(machine, "broken");
            assert!(
                console.lines.iter().any(|l| l.contains("[qemu]")),
                "QEMU's own error is reported: {err}"
            );
        }
        other => panic!("expected Exited, got {other}"),
    }
    assert!(!vm.is_running());
}

#[test]
fn two_vms_talk_through_the_switch_and_links_can_be_cut() {
    let run = RunDir::create().expect("run dir");
    let (kernel, initrd) = initramfs(run.path());
    let switch = Arc::new(Switch::start().expect("switch"));
    let vms: Vec<Vm> = (1..=2u8)
        .map(|i| {
            let mut cfg = config(&format!("n{i}"), &kernel, &initrd);
            cfg.index = i;
            cfg.nics = vec![VmNic {
                vlan: 1,
                mac: Mac::for_nic(1, i, 0),
            }];
            cfg.kernel_params = vec![format!("covnet.ip=192.168.1.{i}")];
            Vm::new(cfg, &run, Some(Arc::clone(&switch)), EventSink::none()).expect("vm")
        })
        .collect();
    std::thread::scope(|s| {
        for vm in &vms {
            s.spawn(|| vm.start().expect("boot"));
        }
    });
    let [a, b] = vms.as_slice() else {
        panic!("two vms")
    };
    let ping = |vm: &Vm, target: &str| {
        vm.execute(&format!("ping -c 1 -W 2 {target}"), CMD)
            .expect("ping runs")
    };
    let out = ping(a, "192.168.1.2");
    assert!(out.success(), "ping a→b: {}", out.stdout_lossy());

    b.set_link(false).expect("link down");
    let out = ping(a, "192.168.1.2");
    assert!(!out.success(), "ping through a cut link succeeded");

    b.set_link(true).expect("link up");
    let out = ping(b, "192.168.1.1");
    assert!(
        out.success(),
        "ping b→a after unblock: {}",
        out.stdout_lossy()
    );
    assert!(switch.stats().delivered > 0);

    for vm in &vms {
        let pid = vm.pid().expect("pid");
        vm.shutdown(SHUTDOWN).expect("shutdown");
        assert_gone(pid);
    }
}
