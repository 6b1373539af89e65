#!/usr/bin/env bash
# Time to first shell of a covnet VM: spawn QEMU -> control shell on its virtio-serial port
# answers. Boots covnet's real initramfs (init.sh + control.sh + virtio
# modules + busybox, one NIC on the runner's switch) RUNS times per variant
# and prints per-boot times and a median/min/max summary per variant.
#
#   bash bench/vm/run.sh [RUNS] [VARIANT...]
#   variants: gzip (image as built), plain (decompressed), nonic, acpi, qboot
#   COVNET_BENCH_TRACE=1 also prints console lines with their time.
#
# Boots are sequential; the host's load average is printed before and after
# because TCG boot time is CPU-bound and scales with contention.
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-5}
shift || true
variants=("$@")
[ ${#variants[@]} -gt 0 ] || variants=(gzip plain nonic acpi qboot)
echo "host: $(nproc) cores, $(uptime | sed 's/.*load average/load average/')"
cargo build -q -p covnet-runner --example vm_boot_bench
./target/debug/examples/vm_boot_bench "$runs" "${variants[@]}"
echo "host after: $(uptime | sed 's/.*load average/load average/')"
