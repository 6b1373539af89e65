#!/usr/bin/env bash
# Coverage collection throughput: pulls MIB MiB of .gcda files (512 KiB
# each) off one machine through covnet's collector (example
# runner/examples/collect_bench.rs), RUNS times, for random bytes (nothing
# compresses) and gcda-shaped files (mostly zero counters), on a TCG VM and
# a namespace machine, and writes the "collect" section of bench/RESULTS.md.
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
rows=""
for backend in vm namespace; do
	for kind in random gcda; do
		./target/release/examples/collect_bench "$mib" "$runs" "$kind" "$backend" | tee -a "$log" >&2
		m=$(sed -n "s/^median: \([0-9.]*\) MiB\/s of files, \([0-9.]*\) MiB\/s on the channel .*($kind, $backend)$/\1 \2/p" "$log")
		[ -n "$m" ] || bench_die "no median for $kind on $backend"
		set -- $m
		rows+="| $backend | $kind | **$1** | $2 |"$'\n'
	done
done
bench_write_section <<MD
One machine (TCG VM with 1 vCPU and 1024 MiB, or a namespace machine),
$mib MiB of \`.gcda\` files ($((mib * 2)) × 512 KiB below
\`/covnet/gcov/home/user/build/obj/\`), pulled $runs times by the collector
exactly as \`covnet run --coverage\` does: a listing with sizes and SHA-256
made on the machine, one tar stream over the control channel (stdout
raw behind its length), verification of every file by size and SHA-256,
local write. \`random\`: bytes that do not compress; \`gcda\`: files shaped
like gcc's (function records, 64-bit counters nine in ten zero). covnet's
own machines send the tar stream uncompressed (busybox \`gzip -1\` in the
TCG guest was slower than the channel: 6.9 MiB/s of files against 12.1);
\`covnet collect --ssh\` gzips when a sample compresses.

| backend | data | median MiB/s of files | median MiB/s on the channel |
|---|---|---:|---:|
$rows
Goals (issue 18): ≥ 30 MiB/s of random data off a TCG guest, ≥ 100 MiB/s
effective for real \`.gcda\`: both **not met** on the VM at this load (see
"what bounds it" below the log).

\`\`\`
$(cat "$log")
\`\`\`
MD
