#!/usr/bin/env bash
# The webserver example (two machines, coverage collected, merged and
# reported) on both backends: wall time of `covnet run --coverage`, median
# of RUNS runs each, plus each machine's time to first shell as covnet
# reports it ("ready after").
#   bash bench/backends/run.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-5}
cargo build --release -q -p covnet-runner --bin covnet
make -s -C examples/webserver
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for backend in namespace vm; do
  walls=()
  for i in $(seq "$runs"); do
    start=$(date +%s.%N)
    ./target/release/covnet run --backend "$backend" --coverage --no-console \
      --out "$out/$backend-$i" examples/webserver/spec.toml 2>"$out/$backend-$i.log"
    end=$(date +%s.%N)
    walls+=("$(awk -v a="$start" -v b="$end" 'BEGIN {printf "%.3f", b - a}')")
    boots=$(grep -o '[a-z]*: ready after [0-9.]*s' "$out/$backend-$i.log" | sed 's/: ready after /=/' | tr '\n' ' ')
    printf '%-9s run %d: wall %.3fs  first shell: %s\n' "$backend" "$i" "${walls[-1]}" "$boots"
  done
  median=$(printf '%s\n' "${walls[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  printf '%-9s median wall over %d runs: %.3fs\n' "$backend" "$runs" "$median"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
