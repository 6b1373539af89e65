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
bounds=""
for backend in vm namespace; do
	for kind in random gcda; do
		./target/release/examples/collect_bench "$mib" "$runs" "$kind" "$backend" | tee -a "$log" >&2
		m=$(sed -n "s/^median: \([0-9.]*\) MiB\/s of files, \([0-9.]*\) MiB\/s on the channel .*($kind, $backend)$/\1 \2/p" "$log")
		[ -n "$m" ] || bench_die "no median for $kind on $backend"
		set -- $m
		rows+="| $backend | $kind | **$1** | $2 |"$'\n'
		b=""
		for step in sha256sum channel "gzip -1" "lzop -1"; do
			v=$(sed -n "s/^bound: $step: median \([0-9.]*\) MiB\/s of files\(.*\) ($kind, $backend)$/\1\2/p" "$log")
			[ -n "$v" ] || bench_die "no $step bound for $kind on $backend"
			b+=" $v |"
		done
		bounds+="| $backend | $kind |$b"$'\n'
	done
done
vm_random=$(sed -n 's/^median: \([0-9.]*\) MiB\/s of files.*(random, vm)$/\1/p' "$log")
vm_gcda=$(sed -n 's/^median: \([0-9.]*\) MiB\/s of files.*(gcda, vm)$/\1/p' "$log")
verdict() { awk -v v="$1" -v g="$2" 'BEGIN { print (v >= g) ? "**met**" : "**not met**" }'; }
bench_write_section <<MD
One machine (TCG VM with 1 vCPU and 1024 MiB, or a namespace machine),
$mib MiB of \`.gcda\` files ($((mib * 2)) × 512 KiB below
\`/covnet/gcov/home/user/build/obj/\`), pulled $runs times by the collector
exactly as \`covnet run --coverage\` does: a listing with sizes and SHA-256
made on the machine, one tar stream over the control channel (stdout
raw behind its length), verification of every file by size and SHA-256,
local write. \`random\`: bytes that do not compress; \`gcda\`: files shaped
like gcc's (function records, 64-bit counters nine in ten zero). covnet's
own machines send the tar stream uncompressed (\`covnet collect --ssh\`
gzips when a sample compresses): see the machine's \`gzip -1\` below.

| backend | data | median MiB/s of files | median MiB/s on the channel |
|---|---|---:|---:|
$rows
What bounds a pull: each step alone, as one command on the machine timed
from the host (its round trip included), median of $runs, in MiB/s of the
files: the machine's \`sha256sum\` of all files (the listing's checksums,
which every file is verified against), the files sent as one command's
stdout (the channel alone), the machine's \`gzip -1\` and \`lzop -1\`
(busybox's fastest compressor) of them (to the bytes they would send).

| backend | data | \`sha256sum\` | channel | \`gzip -1\` | \`lzop -1\` |
|---|---|---:|---:|---:|---:|
$bounds
Goals (issue 18): ≥ 30 MiB/s of random data off a TCG guest:
$(verdict "$vm_random" 30) ($vm_random); ≥ 100 MiB/s effective for real
\`.gcda\`: $(verdict "$vm_gcda" 100) ($vm_gcda). A pull reads every file twice
on the machine (checksums, then tar) and sends it once; a SHA-256 of every
file made on the machine is the floor, whatever the channel and the
compression do, and none of busybox's compressors runs at 100 MiB/s
either.

\`\`\`
$(cat "$log")
\`\`\`
MD
