//! Measures a VM's time to first shell: from spawning QEMU until the
//! control shell on its virtio-serial port answers, with covnet's real initramfs
//! (init.sh + control.sh + virtio modules + busybox, one NIC on a switch).
//!
//! Usage: `cargo run -p covnet-runner --example vm_boot_bench -- [RUNS] [VARIANT...]`
//! Every variant boots the PVH kernel unpacked from the host's bzImage, as
//! `covnet run` does, except `bzimage`.
//! Variants: `plain` (the image as built: a plain cpio), `gzip` (the same
//! image gzip'd, as covnet built it until December 2026), `bzimage` (the
//! image booted through the bzImage and its decompressor), `nonic` (no
//! NIC), `acpi` (with ACPI), `qboot` (qboot firmware, with ACPI, which
//! qboot needs), `restore` (a snapshot cache of its own: one boot that
//! saves the booted guest, not counted, then RUNS boots restored from it),
//! `smp2` (a machine with `cpus = 2`, which boots with ACPI), `curl` (like
//! `restore`, for a machine with `/usr/bin/curl` as its program: a layer of
//! its closure, about 19 MB, unpacked from its disk at every release).
//! Defaults otherwise: SeaBIOS, `acpi=off pci=nomsi`, no snapshots.
//! Prints one line per boot (wall time and QEMU's CPU time) and a summary
//! line per variant; with `COVNET_BENCH_IDLE=<seconds>`, also the CPU each
//! variant's guest uses while idle after its first boot.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use covnet_runner::image::initramfs::ImageBuilder;
use covnet_runner::image::kernel::Kernel;
use covnet_runner::image::pvh;
use covnet_runner::machine::vm::accel::{self, AccelRequest};
use covnet_runner::machine::vm::snapshot::SnapshotCache;
use covnet_runner::machine::vm::{Vm, VmConfig};
use covnet_runner::machine::{EventSink, Machine, MachineEvent};
use covnet_runner::net::switch::Switch;
use covnet_runner::rundir::RunDir;
use covnet_runner::spec::Spec;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let runs: usize = match args.next() {
        Some(n) => n.parse().context("RUNS must be a number")?,
        None => 5,
    };
    let mut variants: Vec<String> = args.collect();
    if variants.is_empty() {
        variants = vec!["plain".into(), "gzip".into()];
    }
    let accel = accel::resolve(AccelRequest::Auto)?;
    let run = RunDir::create()?;
    let spec_path = run.file("bench.toml");
    let spec = Spec::from_str(
        "[machines.bench]\n[machines.smp2]\ncpus = 2\n[machines.curl]\nprograms = [\"/usr/bin/curl\"]\n",
        &spec_path,
    )?;
    let machine = spec.machine("bench").context("machine bench")?;
    let smp2 = spec.machine("smp2").context("machine smp2")?;
    let kernel = Kernel::host_default()?;
    let image = ImageBuilder::new(&spec, machine, &kernel)
        .cache_dir(run.file("cache"))
        .build()?;
    // What `covnet run` boots: the PVH kernel unpacked from the bzImage.
    let pvh = pvh::cached(&kernel.image, &run.file("cache"))?;
    // The base as built is a plain cpio; `gzip` boots it compressed as
    // covnet built it before (flate2's fast level).
    let gzip = run.file("base.cpio.gz");
    let bytes = std::fs::read(&image.path)?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&bytes)?;
    let gz = gz.finish()?;
    std::fs::write(&gzip, &gz)?;
    println!(
        "accel={accel} kernel={} (PVH entry of {}) image={} ({} KiB gzip, {} KiB plain)",
        pvh.display(),
        kernel.image.display(),
        image.path.display(),
        gz.len() / 1024,
        bytes.len() / 1024
    );
    // COVNET_BENCH_IDLE=<seconds>: after each variant's first boot, the
    // guest's QEMU CPU while it sits idle (the control shell waiting).
    let idle = Duration::from_secs(
        std::env::var("COVNET_BENCH_IDLE")
            .ok()
            .map(|v| v.parse().context("COVNET_BENCH_IDLE must be whole seconds"))
            .transpose()?
            .unwrap_or(0),
    );
    let switch = Arc::new(Switch::start()?);
    for variant in &variants {
        let mut cfg = VmConfig::from_spec(machine, &pvh, &image, accel, None);
        cfg.name = format!("bench-{variant}");
        match variant.as_str() {
            "gzip" => cfg.initrd = gzip.clone(),
            "bzimage" => cfg.kernel = kernel.image.clone(),
            "smp2" => {
                let image = ImageBuilder::new(&spec, smp2, &kernel)
                    .cache_dir(run.file("cache"))
                    .build()?;
                cfg = VmConfig::from_spec(smp2, &pvh, &image, accel, None);
                cfg.name = format!("bench-{variant}");
            }
            "plain" => {}
            "nonic" => cfg.nics.clear(),
            "acpi" => cfg.acpi = true,
            "qboot" => {
                cfg.bios = Some(covnet_runner::machine::vm::qemu::QBOOT_ROM.into());
                cfg.acpi = true;
            }
            "restore" => {
                cfg.snapshots = Some(SnapshotCache::new(run.file("snapshots")));
            }
            "curl" => {
                let curl = spec.machine("curl").context("machine curl")?;
                let image = ImageBuilder::new(&spec, curl, &kernel)
                    .cache_dir(run.file("cache"))
                    .build()?;
                println!(
                    "curl: layer {} KiB",
                    std::fs::metadata(&image.layer)?.len() / 1024
                );
                cfg = VmConfig::from_spec(curl, &pvh, &image, accel, None);
                cfg.name = format!("bench-{variant}");
                cfg.snapshots = Some(SnapshotCache::new(run.file("snapshots")));
            }
            other => anyhow::bail!("unknown variant `{other}`"),
        }
        // With COVNET_BENCH_TRACE=1, print console lines with their time
        // since QEMU was spawned.
        let trace = std::env::var_os("COVNET_BENCH_TRACE").is_some();
        let t0 = Arc::new(std::sync::Mutex::new(std::time::Instant::now()));
        let events = EventSink::from_fn(move |ev| {
            let mut start = t0.lock().unwrap_or_else(|p| p.into_inner());
            match ev {
                MachineEvent::Booting { .. } => *start = std::time::Instant::now(),
                MachineEvent::ConsoleLine { line, .. } if trace => {
                    println!("  {:7.3}s | {line}", start.elapsed().as_secs_f64())
                }
                ev @ MachineEvent::Snapshot { .. } => println!("  {ev}"),
                _ => {}
            }
        });
        let restore = cfg.snapshots.is_some();
        let vm = Vm::new(cfg, &run, Some(Arc::clone(&switch)), events)?;
        if restore {
            // The boot that saves the guest: cold boot + save, not counted.
            vm.start().context("the boot that saves the guest")?;
            let t = vm.boot_time().unwrap_or(Duration::ZERO);
            let cpu = vm.pid().and_then(cpu_seconds).unwrap_or(f64::NAN);
            println!(
                "SAVE {variant}: cold boot + save {:.3}s (QEMU CPU {cpu:.2}s)",
                t.as_secs_f64()
            );
            vm.crash()?;
        }
        let mut times = Vec::new();
        let mut cpus = Vec::new();
        for i in 0..runs {
            vm.start()
                .with_context(|| format!("boot {i} of variant {variant}"))?;
            let t = vm.boot_time().unwrap_or(Duration::ZERO);
            let cpu = vm.pid().and_then(cpu_seconds).unwrap_or(f64::NAN);
            println!(
                "{variant} run {i}: {:.3}s (QEMU CPU {cpu:.2}s)",
                t.as_secs_f64()
            );
            times.push(t);
            cpus.push(cpu);
            if i == 0 && variant == "plain" {
                shell_ops(&vm)?;
            }
            if i == 0 && !idle.is_zero() {
                idle_cpu(&vm, variant, idle);
            }
            vm.crash()?;
        }
        times.sort();
        let median = times.get(times.len() / 2).copied().unwrap_or_default();
        let (min, max) = (
            times.first().copied().unwrap_or_default(),
            times.last().copied().unwrap_or_default(),
        );
        cpus.sort_by(f64::total_cmp);
        let cpu_median = cpus.get(cpus.len() / 2).copied().unwrap_or(f64::NAN);
        println!(
            "SUMMARY {variant}: runs={runs} median={:.3}s min={:.3}s max={:.3}s qemu_cpu_median={cpu_median:.2}s",
            median.as_secs_f64(),
            min.as_secs_f64(),
            max.as_secs_f64()
        );
    }
    Ok(())
}

/// Prints the QEMU CPU a booted, idle guest uses over `idle`, as a share
/// of one core (`IDLE <variant>: ...`).
fn idle_cpu(vm: &Vm, variant: &str, idle: Duration) {
    let Some(pid) = vm.pid() else { return };
    let before = cpu_seconds(pid);
    let t0 = std::time::Instant::now();
    std::thread::sleep(idle);
    let (Some(before), Some(after)) = (before, cpu_seconds(pid)) else {
        return;
    };
    let wall = t0.elapsed().as_secs_f64();
    println!(
        "IDLE {variant}: {:.2}% of a core over {wall:.1}s",
        100.0 * (after - before) / wall
    );
}

/// Times shell round trips and copies on a booted VM.
fn shell_ops(vm: &Vm) -> anyhow::Result<()> {
    let timeout = Duration::from_secs(120);
    let n = 20;
    let t = std::time::Instant::now();
    for _ in 0..n {
        vm.execute("true", timeout)?;
    }
    let per = t.elapsed() / n;
    println!(
        "OPS execute(`true`): {:.1} ms per round trip ({n} runs)",
        per.as_secs_f64() * 1e3
    );
    let data: Vec<u8> = (0..4u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let t = std::time::Instant::now();
    vm.copy_to(&data, "/tmp/bench.bin", 0o644)?;
    let put = t.elapsed();
    let t = std::time::Instant::now();
    let back = vm.copy_from("/tmp/bench.bin")?;
    let get = t.elapsed();
    anyhow::ensure!(
        back == data,
        "copy round trip differs: {} bytes back, first difference at {:?}",
        back.len(),
        back.iter().zip(&data).position(|(a, b)| a != b)
    );
    let mib = data.len() as f64 / (1024.0 * 1024.0);
    println!(
        "OPS copy_to {mib:.0} MiB: {:.2}s ({:.2} MiB/s); copy_from: {:.2}s ({:.2} MiB/s)",
        put.as_secs_f64(),
        mib / put.as_secs_f64(),
        get.as_secs_f64(),
        mib / get.as_secs_f64()
    );
    Ok(())
}

/// CPU time (user + system) QEMU has used so far: on a loaded host this is
/// close to what the boot would take in wall time on an idle one, since a
/// single-vCPU TCG guest is CPU-bound.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state is field 3, utime 14 and stime 15 (1-based).
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}
