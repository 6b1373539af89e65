#!/usr/bin/env bash
# Wall time of VM network test (a): `covnet run bench/vm/web.toml` (two
# VMs boot in parallel, httpd on `server`, `client` fetches the page by host
# name, both shut down). Runs it RUNS times in sequence (the first run also
# fills the image cache and is reported apart) and prints every run's wall
# time, boot times and script time, then median/min/max of the warm runs.
#
#   bash bench/vm/network.sh [RUNS]        (default 5 warm runs)
#
# TCG boot time is CPU-bound: the host's load average is printed before
# and after, since other work on the machine slows every guest.
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-5}
cargo build -q -p covnet-runner --bin covnet
bin=./target/debug/covnet
spec=bench/vm/web.toml
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "host: $(nproc) cores, $(uptime | sed 's/.*load average/load average/')"
echo "qemu: $(qemu-system-x86_64 --version | head -1)"

one() { # prints: wall boot_server boot_client script
	local log=$out/run.log t0 t1
	t0=$(date +%s.%N)
	if ! "$bin" run "$spec" --out "$out/o" --no-console >"$log" 2>&1; then
		echo "covnet run failed:" >&2
		cat "$log" >&2
		exit 1
	fi
	t1=$(date +%s.%N)
	local wall boots script
	wall=$(echo "$t1 - $t0" | bc -l)
	boots=$(sed -n 's/.*\] \(server\|client\): ready after \([0-9.]*\)s/\1=\2/p' "$log" | sort | tr '\n' ' ')
	script=$(sed -n 's/.*script passed (\([0-9.]*\)s).*/\1/p' "$log")
	printf '%.2f %s script=%s\n' "$wall" "$boots" "$script"
}

echo "cold (image cache may be empty): $(one)"
walls=()
for i in $(seq 1 "$runs"); do
	line=$(one)
	echo "run $i: wall=${line}"
	walls+=("${line%% *}")
done
printf '%s\n' "${walls[@]}" | sort -n | awk '
	{ v[NR] = $1 }
	END {
		if (NR % 2) med = v[(NR + 1) / 2]; else med = (v[NR / 2] + v[NR / 2 + 1]) / 2;
		printf "warm runs: %d, median %.2f s, min %.2f s, max %.2f s\n", NR, med, v[1], v[NR]
	}'
echo "host after: $(uptime | sed 's/.*load average/load average/')"
