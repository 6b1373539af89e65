#!/usr/bin/env bash
# The webserver example (two machines, coverage collected, merged and
# reported) on both backends: wall time of `covnet run --coverage`, median
# of RUNS runs each, plus each machine's time to first shell as covnet
# reports it ("ready after"). Writes the "backends" section of
# bench/RESULTS.md.
#   bash bench/backends/run.sh [--allow-dirty] [RUNS]
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
bench_init backends "Backends: the webserver example on VMs and on namespace machines" "$@"
set -- "${BENCH_ARGS[@]}"
runs=${1:-5}
bench_build_covnet release
bench_version QEMU "$(bench_qemu_version)"
bench_version "guest kernel" "$(bench_guest_kernel)"
bench_version gcc "$(bench_gcc_version)"
make -s -C examples/webserver >&2
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for backend in namespace vm; do
  for i in $(seq "$runs"); do
    start=$(date +%s.%N)
    "$BENCH_COVNET" run --backend "$backend" --coverage --no-console \
      --out "$out/$backend-$i" examples/webserver/spec.toml 2>"$out/$backend-$i.log" ||
      { cat "$out/$backend-$i.log" >&2; bench_die "$backend run $i failed"; }
    end=$(date +%s.%N)
    wall=$(awk -v a="$start" -v b="$end" 'BEGIN {printf "%.3f", b - a}')
    boots=$(grep -o '[a-z]*: ready after [0-9.]*s' "$out/$backend-$i.log" | sed 's/: ready after /=/' | tr '\n' ' ')
    printf '%s\t%s\t%s\n' "$backend" "$wall" "$boots" >>"$out/runs.tsv"
    printf '%-9s run %d: wall %ss  first shell: %s\n' "$backend" "$i" "$wall" "$boots" | tee -a "$out/log" >&2
  done
  info=$(find "$out/$backend-$runs" -name '*.info' | head -n1)
  [ -n "$info" ] || bench_die "no lcov tracefile in $out/$backend-$runs"
  "$BENCH_COVNET" summary "$info" >"$out/$backend.summary"
done

python3 - "$out" "$runs" <<'PY' | bench_write_section
import re, statistics, sys
out, runs = sys.argv[1], sys.argv[2]
rows = {}
for line in open(f"{out}/runs.tsv"):
    b, wall, boots = line.rstrip("\n").split("\t")
    shells = [float(x) for x in re.findall(r"=([\d.]+)s", boots)]
    rows.setdefault(b, []).append((float(wall), shells))
print(f"`covnet run --backend B --coverage` of `examples/webserver/spec.toml`: two machines, "
      "the client's whole scenario against the server by host name, then every machine's "
      "`.gcda` pulled, merged exactly and written as HTML, lcov, Cobertura and JSON. Wall "
      "time of the whole command; \"first shell\" is covnet's own \"ready after\" per "
      "machine. VMs under TCG.")
print()
print(f"| backend | median wall ({runs} runs) | min – max wall | first shell median (min – max) | goal (medians) |")
print("|---|---:|---:|---:|---|")
for b in ("namespace", "vm"):
    walls = [w for w, _ in rows[b]]
    shells = [s for _, ss in rows[b] for s in ss]
    med, smed = statistics.median(walls), statistics.median(shells)
    goal = "—"
    if b == "namespace":
        ok = med <= 1.0 and smed <= 0.05
        goal = f"≤ 1 s end to end, first shell ≤ 50 ms: {'met' if ok else 'not met'}"
    print(f"| {b} | **{med:.3f} s** | {min(walls):.3f} – {max(walls):.3f} s | "
          f"{smed:.2f} s ({min(shells):.2f} – {max(shells):.2f} s) | {goal} |")
print()
summ = {b: [l.split(":", 1)[1].strip() for l in open(f"{out}/{b}.summary") if ":" in l and "%" in l]
        for b in ("namespace", "vm")}
if summ["namespace"] == summ["vm"]:
    print("Both backends report the same coverage for the last run:")
else:
    print("The two backends' last runs report different coverage (the example's scenario "
          "does not force every path on every run, e.g. under load):")
print()
print("```")
for b in ("namespace", "vm"):
    for line in open(f"{out}/{b}.summary"):
        print(f"{b:9s} {line.rstrip()}")
print("```")
print()
print("```")
print(open(f"{out}/log").read().rstrip())
print("```")
PY
