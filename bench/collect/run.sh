#!/usr/bin/env bash
# Coverage collection throughput: pulls MIB MiB of .gcda files (512 KiB each,
# random, so nothing compresses) off one TCG guest through covnet's
# collector, RUNS times, and prints each pull and the median.
#   bash bench/collect/run.sh [MIB] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -q -p covnet-runner --example collect_bench
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
./target/release/examples/collect_bench "${1:-20}" "${2:-5}"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
