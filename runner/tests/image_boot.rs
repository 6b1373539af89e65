//! A spec's machines, built by `image::initramfs` (covnet's own init,
//! services, programs with their ELF closure, `/etc/hosts`) and booted by
//! the VM backend, talk to each other through the switch.
//!
//! Needs qemu-system-x86_64, busybox-static, curl and a Debian kernel in
//! /boot; missing ones fail the test loudly.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use covnet_runner::image::initramfs::ImageBuilder;
use covnet_runner::image::kernel::Kernel;
use covnet_runner::machine::vm::accel::{self, AccelRequest};
use covnet_runner::machine::vm::{Vm, VmConfig};
use covnet_runner::machine::{EventSink, Machine};
use covnet_runner::net::switch::Switch;
use covnet_runner::rundir::RunDir;
use covnet_runner::spec::Spec;

const CMD: Duration = Duration::from_secs(60);
const SHUTDOWN: Duration = Duration::from_secs(60);

const SPEC: &str = r#"
[machines.server]
[[machines.server.files]]
content = "<h1>served by covnet</h1>"
target = "/srv/index.html"
[[machines.server.services]]
name = "httpd"
command = "busybox httpd -f -p 80 -h /srv"
ready = { port = 80 }

[machines.client]
programs = ["/usr/bin/curl"]
"#;

#[test]
fn spec_machines_boot_from_covnet_images_and_talk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec_path = dir.path().join("net.toml");
    std::fs::write(&spec_path, SPEC).expect("write spec");
    let spec = Spec::from_path(&spec_path).expect("spec");
    let kernel = Kernel::host_default().expect("a Debian kernel (bash scripts/setup.sh)");
    let cache = dir.path().join("cache");

    let run = RunDir::create().expect("run dir");
    let switch = Arc::new(Switch::start().expect("switch"));
    let accel = accel::resolve(AccelRequest::Auto).expect("auto always resolves");
    let vms: Vec<Vm> = spec
        .machines
        .iter()
        .map(|m| {
            let builder = ImageBuilder::new(&spec, m, &kernel).cache_dir(&cache);
            let t = Instant::now();
            let image = builder.build().expect("image");
            let uncached = t.elapsed();
            let t = Instant::now();
            let again = builder.build().expect("cached image");
            let cached = t.elapsed();
            assert!(!image.cached && again.cached);
            eprintln!(
                "{}: image {} bytes, built in {uncached:.2?}, cached lookup {cached:.2?}",
                m.name,
                std::fs::metadata(&image.path)
                    .map(|md| md.len())
                    .unwrap_or(0),
            );
            let cfg = VmConfig::from_spec(m, &kernel.image, &image, accel, None);
            Vm::new(cfg, &run, Some(Arc::clone(&switch)), EventSink::none()).expect("vm")
        })
        .collect();

    std::thread::scope(|s| {
        for vm in &vms {
            s.spawn(|| vm.start().expect("boot to the control shell"));
        }
    });
    let [server, client] = vms.as_slice() else {
        panic!("two machines");
    };
    for vm in &vms {
        eprintln!(
            "{}: control shell after {:.2?} ({accel})",
            vm.name(),
            vm.boot_time().unwrap_or_default()
        );
        assert!(
            vm.console_lines(200)
                .iter()
                .any(|l| l.contains("covnet-init-done")),
            "{}: init never finished:\n{}",
            vm.name(),
            vm.console_lines(50).join("\n")
        );
    }

    let out = client.execute("echo hi", CMD).expect("echo");
    assert_eq!((out.status, out.stdout.as_slice()), (0, &b"hi\n"[..]));

    let out = server
        .execute("hostname; ip -o -4 addr show dev eth0 | cut -d' ' -f7", CMD)
        .expect("server identity");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "server\n192.168.1.1/24\n"
    );

    // The client's curl (with its libraries from the host) reaches the
    // server's service by name through /etc/hosts and the switch.
    let out = client
        .execute(
            "i=0; until curl -sf http://server/index.html; do \
             i=$((i+1)); [ $i -ge 100 ] && exit 1; sleep 0.1; done",
            CMD,
        )
        .expect("curl");
    assert_eq!(
        (out.status, String::from_utf8_lossy(&out.stdout).as_ref()),
        (0, "<h1>served by covnet</h1>"),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The service's pid file names the service process itself.
    let out = server
        .execute(
            "tr '\\0' ' ' </proc/$(cat /run/covnet/httpd.pid)/cmdline",
            CMD,
        )
        .expect("pid file");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "busybox httpd -f -p 80 -h /srv "
    );

    for vm in &vms {
        vm.shutdown(SHUTDOWN).expect("shutdown");
    }
    drop(vms);
    if let Ok(switch) = Arc::try_unwrap(switch) {
        switch.shutdown().expect("switch shutdown");
    }
    assert!(Path::new(&cache).is_dir());
}
