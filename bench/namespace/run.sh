#!/usr/bin/env bash
# Time to first shell of a namespace machine: the e2e test
# `namespace::time_to_first_shell` (tests/tests/e2e/namespace.rs) starts and
# crashes one machine 7 times and prints min/median/max. Runs it RUNS
# times as root and RUNS times as uid 65534 (user namespace), and writes
# the "namespace" section of bench/RESULTS.md.
#   bash bench/namespace/run.sh [--allow-dirty] [RUNS]     (needs root)
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
bench_init namespace "Namespace machines: time to first shell" "$@"
set -- "${BENCH_ARGS[@]}"
runs=${1:-3}
[ "$(id -u)" = 0 ] || bench_die "needs root (it also runs the test as uid 65534)"
exe=$(bench_e2e_binary)
[ -x "$exe" ] || bench_die "could not build the e2e test binary"
bench_version built "debug e2e test binary (cargo test -p covnet-tests --test e2e --no-run)"
bench_version busybox "$(bench_busybox_version)"
out=$(mktemp -d)
chmod 755 "$out"
trap 'rm -rf "$out"' EXIT
test=namespace::time_to_first_shell
for as in root nobody; do
  for i in $(seq "$runs"); do
    if [ "$as" = root ]; then
      "$exe" --exact "$test" --nocapture >"$out/log" 2>&1 || { cat "$out/log" >&2; bench_die "$test failed as root"; }
    else
      setpriv --reuid=65534 --regid=65534 --clear-groups --reset-env \
        env TMPDIR=/tmp "$exe" --exact "$test" --nocapture >"$out/log" 2>&1 </dev/null ||
        { cat "$out/log" >&2; bench_die "$test failed as uid 65534"; }
    fi
    line=$(grep 'time to first shell over' "$out/log") || { cat "$out/log" >&2; bench_die "no result line"; }
    printf '%s\t%s\t%s\n' "$as" "$i" "$line" | tee -a "$out/runs" >&2
  done
done
python3 - "$out/runs" <<'PY' | bench_write_section
import re, sys
print("`namespace::time_to_first_shell` in `tests/tests/e2e/namespace.rs`: one namespace "
      "machine (`[machines.solo]`, one NIC on the switch, no services) started and crashed 7 "
      "times in a row; time from `Machine::start()` to the control shell's first answer (pty "
      "setup, root file system plan, clone into pid/mnt/uts/ipc/net namespaces, veth pair + "
      "packet socket, tmpfs root with read-only binds and the busybox applet links, "
      "pivot_root, the machine's own `init.sh` and `control.sh`). Goal: ≤ 50 ms.")
print()
print("| run as | test run | min (ms) | median (ms) | max (ms) | mode the test reports |")
print("|:--|--:|--:|--:|--:|:--|")
meds = {}
for line in open(sys.argv[1]):
    who, i, text = line.rstrip("\n").split("\t")
    m = re.search(r"min ([\d.]+) ms, median ([\d.]+) ms, max ([\d.]+) ms \((.*)\)", text)
    who = "root" if who == "root" else "uid 65534"
    meds.setdefault(who, []).append(float(m.group(2)))
    print(f"| {who} | {i} | {m.group(1)} | {m.group(2)} | {m.group(3)} | {m.group(4)} |")
print()
parts = []
for who, v in meds.items():
    missed = sum(1 for x in v if x > 50)
    verdict = f"met in all {len(v)} runs" if not missed else f"missed in {missed} of {len(v)} runs"
    parts.append(f"{who}: medians {min(v):.1f}–{max(v):.1f} ms, {verdict}")
print("Goal ≤ 50 ms (median of a test run): " + "; ".join(parts) + ".")
PY
