#!/usr/bin/env bash
# Time to first shell of a covnet VM: spawn QEMU -> the control shell on its
# virtio-serial port answers. Boots covnet's real initramfs (init.sh +
# control.sh + virtio modules + busybox, one NIC on the runner's switch)
# RUNS times per variant (example runner/examples/vm_boot_bench.rs) and
# writes the "vm-boot" section of bench/RESULTS.md.
#
#   bash bench/vm/run.sh [--allow-dirty] [RUNS] [VARIANT...]
#   variants: plain (the image as built: a plain cpio), gzip (the same
#   image gzip'd, as covnet built it until December 2026), bzimage (through
#   the bzImage, not the PVH entry), nonic, acpi, qboot, restore (restored
#   from a snapshot saved by one uncounted boot), smp2 (`cpus = 2`: boots
#   with ACPI), curl (restored like restore, for a machine with
#   /usr/bin/curl: its ~19 MB layer unpacked from its disk at every release)
#   COVNET_BENCH_TRACE=1 also prints console lines with their time;
#   COVNET_BENCH_IDLE=<seconds> (default here 10, 0 to skip) also measures
#   each variant's idle guest after its first boot.
#
# Boots are sequential. TCG boot time is CPU-bound and scales with the
# host's load, so QEMU's own CPU time is reported next to the wall time.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
bench_init vm-boot "VM boot: time to first shell" "$@"
set -- "${BENCH_ARGS[@]}"
runs=${1:-5}
shift || true
variants=("$@")
[ ${#variants[@]} -gt 0 ] || variants=(plain bzimage restore curl smp2 gzip nonic acpi qboot)
bench_build_covnet release --example vm_boot_bench
bench_version QEMU "$(bench_qemu_version)"
bench_version "guest kernel" "$(bench_guest_kernel)"
bench_version busybox "$(bench_busybox_version)"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
COVNET_BENCH_IDLE=${COVNET_BENCH_IDLE:-10} \
  ./target/release/examples/vm_boot_bench "$runs" "${variants[@]}" | tee "$log" >&2

python3 - "$log" "$runs" <<'PY' | bench_write_section
import re, sys
log, runs = open(sys.argv[1]).read(), sys.argv[2]
what = {
    "plain": "default (PVH entry, SeaBIOS, `acpi=off pci=nomsi`), the image as built (a plain cpio)",
    "gzip": "default, the same image gzip'd (as covnet built it until December 2026)",
    "smp2": "a machine with `cpus = 2` (boots with ACPI, where it finds its second CPU)",
    "bzimage": "booted through the bzImage (its decompressor), not the PVH entry",
    "nonic": "default, no NIC",
    "acpi": "with ACPI (SeaBIOS)",
    "qboot": "qboot firmware + ACPI (qboot needs ACPI)",
    "restore": "restored from its snapshot (warm: a rerun of the same spec)",
    "curl": "restored, a machine with `/usr/bin/curl` as its program (its layer: curl's closure, unpacked from the layer disk)",
}
head = re.search(r"accel=(\S+) kernel=(\S+) \(PVH entry of (\S+)\) image=\S+ \((\d+) KiB gzip, (\d+) KiB plain\)", log)
print(f"`vm_boot_bench {runs}`: one machine (`-smp 1`, 256 MiB, `-M pc`, one virtio-net NIC "
      f"on the runner's switch), accelerator `{head.group(1)}`, kernel `{head.group(2)}` (the "
      f"PVH kernel unpacked from `{head.group(3)}`, as `covnet run` boots it), "
      f"base initramfs {head.group(5)} KiB (as built, uncompressed; {head.group(4)} KiB gzip'd). QEMU CPU is "
      "user+system time from /proc at the first shell answer: a single-vCPU TCG guest is "
      "CPU-bound, so it is close to the wall time on an idle host.")
print()
print(f"| variant ({runs} boots each) | wall median | wall min | wall max | QEMU CPU median |")
print("|---|---:|---:|---:|---:|")
rows = {}
for m in re.finditer(r"SUMMARY (\S+): runs=\d+ median=([\d.]+)s min=([\d.]+)s max=([\d.]+)s "
                     r"qemu_cpu_median=([\d.]+|NaN)s", log):
    v, med, mn, mx, cpu = m.groups()
    rows[v] = (float(med), float(mn), float(cpu) if cpu != "NaN" else float("nan"))
    print(f"| {v}: {what.get(v, v)} | {med} s | {mn} s | {mx} s | {cpu} s |")
print()
save = re.search(r"SAVE restore: cold boot \+ save ([\d.]+)s \(QEMU CPU ([\d.]+)s\)", log)
if save:
    print(f"The uncounted boot that saved the snapshot (cold boot, then the save): "
          f"{save.group(1)} s wall, QEMU CPU {save.group(2)} s.")
    print()
ok = lambda x, goal: "met" if x <= goal else "missed"
if "plain" in rows:
    med, mn, cpu = rows["plain"]
    print(f"Issue 18, goal 1, cold (the image as built, no snapshot): ≤ 1.2 s: wall median "
          f"{med:.2f} s (**{ok(med, 1.2)}** at this load), QEMU CPU median {cpu:.2f} s "
          f"(**{ok(cpu, 1.2)}**; what an idle host would see).")
    print()
if "restore" in rows:
    med, mn, cpu = rows["restore"]
    print(f"Issue 18, goal 1, warm (restored from the snapshot): ≤ 0.5 s: wall median "
          f"{med:.2f} s (**{ok(med, 0.5)}** at this load), QEMU CPU median {cpu:.2f} s "
          f"(**{ok(cpu, 0.5)}**).")
    print()
layer = re.search(r"^curl: layer (\d+) KiB$", log, flags=re.M)
if "curl" in rows and layer:
    med, mn, cpu = rows["curl"]
    print(f"With a real program's closure (`curl`: a layer of {int(layer.group(1)) / 1024:.1f} MiB), "
          f"restored from the same snapshot as `restore`: {med:.2f} s wall, QEMU CPU {cpu:.2f} s.")
    print()
idle = re.findall(r"^IDLE (\S+): ([\d.]+)% of a core over ([\d.]+)s$", log, flags=re.M)
if idle:
    print(f"Idle: QEMU's CPU while the guest sits booted and idle (the control shell "
          f"waiting for the host), after each variant's first boot, over {idle[0][2]} s. "
          "A guest without ACPI has no local APIC: its timer is the PIT, whose one-shot "
          "reach (16 bits at 1.19 MHz) wakes it at least every 55 ms.")
    print()
    print("| variant | idle QEMU CPU |")
    print("|---|---:|")
    for v, pct, _ in idle:
        print(f"| {v} | {pct} % of a core |")
    print()
ops = re.findall(r"^OPS (.*)$", log, flags=re.M)
if ops:
    print("Control channel on the first `plain` boot (4 MiB pseudo-random data, verified "
          "byte for byte):")
    print()
    for o in ops:
        print(f"- {o}")
    print()
print("Per boot:")
print()
print("```")
for line in log.splitlines():
    if re.match(r"\S+ run \d+: ", line):
        print(line)
print("```")
PY
