#!/usr/bin/env bash
# Boot time of a NixOS-style full-distribution guest against covnet's
# initramfs guest, both measured in this run, interleaved: covnet's
# (`vm_boot_bench 1 gzip`: spawn -> control shell answers), then a
# debootstrapped Debian (minbase + systemd + udev) on a virtio disk with the
# same kernel and Debian's own initrd, under the same QEMU/TCG, timed from
# spawning QEMU until a unit after multi-user.target prints a marker on
# ttyS0. Writes the "boot-fulldistro" section of bench/RESULTS.md.
#   bash bench/vm/fulldistro.sh [--allow-dirty] [RUNS]   (needs root for debootstrap)
# The kernel is the one covnet boots by default, the Debian release and
# mirror are the host's own (from /etc/os-release and apt's sources).
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
bench_init boot-fulldistro "Boot: covnet's guest against a full-distribution guest" "$@"
set -- "${BENCH_ARGS[@]}"
runs=${1:-3}
work=bench/work/fulldistro
release=$(bench_guest_kernel)
[ -n "$release" ] || bench_die "no kernel in /boot (bash scripts/setup.sh)"
kernel=/boot/vmlinuz-$release
initrd=/boot/initrd.img-$release
[ -r "$initrd" ] || bench_die "no $initrd"
. /etc/os-release
suite=$VERSION_CODENAME
bench_build_covnet release --example vm_boot_bench
bench_version QEMU "$(bench_qemu_version)"
bench_version "guest kernel" "$release"
bench_version "full distribution" "$PRETTY_NAME"
mkdir -p "$work"
if [ ! -f "$work/disk.img" ] || [ "$(cat "$work/suite" 2>/dev/null)" != "$suite" ]; then
  command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap >/dev/null
  mirror=$(apt-get indextargets --format '$(REPO_URI)' "Codename: $suite" | sort -u | head -n1)
  [ -n "$mirror" ] || bench_die "no apt source for $suite"
  root="$work/root"
  rm -rf "$root" "$work/disk.img"
  debootstrap --variant=minbase --include=systemd-sysv,udev "$suite" "$root" "$mirror" >/dev/null
  cat > "$root/etc/systemd/system/booted.service" <<'UNIT'
[Unit]
Description=Announce a finished boot on the serial console
After=multi-user.target

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'echo FULLDISTRO-BOOTED > /dev/ttyS0'

[Install]
WantedBy=multi-user.target
UNIT
  ln -sf /etc/systemd/system/booted.service "$root/etc/systemd/system/multi-user.target.wants/booted.service"
  echo '/dev/vda / ext4 rw 0 1' > "$root/etc/fstab"
  mke2fs -q -t ext4 -d "$root" "$work/disk.img" 1G
  echo "$suite" >"$work/suite"
  rm -rf "$root"
fi
size=$(du -sm --apparent-size "$work/disk.img" | cut -f1)
used=$(debugfs -R stats "$work/disk.img" 2>/dev/null | awk -F: '/^Block count|^Free blocks|^Block size/ { gsub(/ /, "", $2); v[$1] = $2 } END { printf "%d", (v["Block count"] - v["Free blocks"]) * v["Block size"] / 1048576 }')

# QEMU's user+system CPU seconds so far (all its threads)
qemu_cpu() { awk -v hz="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); printf "%.2f", ($12 + $13) / hz }' "/proc/$1/stat"; }

# Interleaved, so both guests see the same load: covnet, full, covnet, ...
covnet_log=$(mktemp)
trap 'rm -f "$covnet_log"' EXIT
full=() full_cpu=()
for i in $(seq "$runs"); do
  ./target/release/examples/vm_boot_bench 1 gzip | tee -a "$covnet_log" >&2
  log=$(mktemp)
  start=$(date +%s.%N)
  qemu-system-x86_64 -nodefaults -no-user-config -display none -machine pc -accel tcg,thread=multi \
    -m 512 -smp 1 -kernel "$kernel" -initrd "$initrd" \
    -append "root=/dev/vda rw console=ttyS0 quiet" \
    -drive file="$work/disk.img",if=virtio,format=raw,snapshot=on \
    -serial file:"$log" -no-reboot 2>/dev/null &
  pid=$!
  deadline=$(( $(date +%s) + 300 ))
  until grep -q FULLDISTRO-BOOTED "$log" 2>/dev/null; do
    kill -0 $pid 2>/dev/null || { tail -20 "$log" >&2; bench_die "qemu exited early"; }
    [ "$(date +%s)" -lt "$deadline" ] || { kill $pid; bench_die "full distribution: no boot in 300 s"; }
    sleep 0.05
  done
  end=$(date +%s.%N)
  full_cpu+=("$(qemu_cpu $pid)")
  kill $pid; wait $pid 2>/dev/null || true
  rm -f "$log"
  full+=("$(awk -v a="$start" -v b="$end" 'BEGIN{printf "%.2f", b-a}')")
  bench_log "full distribution run $i: ${full[-1]}s (QEMU CPU ${full_cpu[-1]}s)"
done

python3 - "$covnet_log" "$runs" "$suite" "$used" "${full[*]}" "${full_cpu[*]}" <<'PY' | bench_write_section
import re, statistics, sys
log, runs, suite, used = open(sys.argv[1]).read(), sys.argv[2], sys.argv[3], sys.argv[4]
full = [float(x) for x in sys.argv[5].split()]
full_cpu = [float(x) for x in sys.argv[6].split()]
boots = re.findall(r"^gzip run \d+: ([\d.]+)s \(QEMU CPU ([\d.]+)s\)", log, flags=re.M)
cov = [float(w) for w, _ in boots]
cov_cpu = [float(c) for _, c in boots]
cm, fm = statistics.median(cov), statistics.median(full)
cc, fc = statistics.median(cov_cpu), statistics.median(full_cpu)
fmt = lambda v: ", ".join(f"{x:.2f}" for x in v)
print(f"Both guests in this run, interleaved (covnet, full distribution, covnet, ...) so "
      f"that they see the same load; TCG, `-smp 1`. QEMU CPU is QEMU's user+system time "
      f"at the moment the guest is ready: load-independent, and close to the wall time on "
      f"an idle host.")
print()
print("| guest | wall, each run (s) | wall median | QEMU CPU, each run (s) | QEMU CPU median |")
print("|---|---|---:|---|---:|")
print(f"| covnet initramfs (`vm_boot_bench 1 gzip`, {runs}×; spawn → control shell answers) | "
      f"{fmt(cov)} | **{cm:.2f} s** | {fmt(cov_cpu)} | **{cc:.2f} s** |")
print(f"| Debian {suite} minbase + systemd + udev on a virtio disk ({used} MB used), Debian's "
      f"initrd (spawn → multi-user.target) | {fmt(full)} | {fm:.2f} s | {fmt(full_cpu)} | "
      f"{fc:.2f} s |")
print()
verdict = lambda x: "meets" if x <= 2 else "misses"
print(f"covnet's time to first shell {verdict(cm)} the ≤ 2 s goal in wall time at this load "
      f"({cm:.2f} s) and {verdict(cc)} it in QEMU CPU time ({cc:.2f} s). The "
      f"full-distribution guest (systemd, udev, a root disk) takes {fc / cc:.1f}× the CPU "
      f"time ({fm / cm:.1f}× the wall time) on the same emulator, before any test-driver "
      "backdoor or network setup of its own.")
PY
