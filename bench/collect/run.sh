#!/usr/bin/env bash
# Coverage collection throughput: pulls MIB MiB of .gcda files (512 KiB each,
# random, so nothing compresses) off one TCG guest through covnet's
# collector (example runner/examples/collect_bench.rs), RUNS times, and
# writes the "collect" section of bench/RESULTS.md.
#   bash bench/collect/run.sh [--allow-dirty] [MIB] [RUNS]
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
bench_init collect "Coverage collection throughput" "$@"
set -- "${BENCH_ARGS[@]}"
mib=${1:-20} runs=${2:-5}
bench_build_covnet release --example collect_bench
bench_version QEMU "$(bench_qemu_version)"
bench_version "guest kernel" "$(bench_guest_kernel)"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
./target/release/examples/collect_bench "$mib" "$runs" | tee "$log" >&2
median=$(sed -n 's/^median: \([0-9.]*\) MiB\/s.*/\1/p' "$log")
[ -n "$median" ] || bench_die "no median in the output"
verdict=$(python3 -c "r = $median * 1.048576; print(f'{r:.2f} MB/s)**; goal ≥ 5 MB/s ' + ('met' if r >= 5 else 'not met'))")
bench_write_section <<MD
One TCG guest (1024 MiB), $mib MiB of random \`.gcda\` files ($((mib * 2)) × 512 KiB
below \`/covnet/gcov/home/user/build/obj/\`), pulled $runs times by the
collector exactly as \`covnet run --coverage\` does: a listing with sizes
and SHA-256 made in the guest, one tar stream over the control channel
(virtio-serial port, base64 framed), verification of every file, local
write. Random data is the worst case; real \`.gcda\` files are mostly zero
counters, but the channel does not compress, so this is also roughly the
rate for them.

\`\`\`
$(cat "$log")
\`\`\`

**Median $median MiB/s ($verdict at this load.
MD
