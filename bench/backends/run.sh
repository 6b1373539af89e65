#!/usr/bin/env bash
# The webserver example (two machines, coverage collected, merged and
# reported) on both backends: wall time of `covnet run --coverage`, median
# of RUNS runs each, plus each machine's time to first shell as covnet
# reports it ("ready after"). VMs twice over: booted cold (`--cold-boot`),
# and restored from the snapshot one first run saved (both machines share
# one base image, so one snapshot; issue 18, goal 2);
# images and snapshots in a cache of the bench's own. Writes the
# "backends" section of bench/RESULTS.md.
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
export XDG_CACHE_HOME=$out/cache
# vm-first: one run with no snapshot yet (boots cold, saves); not in a median.
for backend in namespace vm-cold vm-first vm; do
  n=$runs
  flags=(--backend "${backend%%-*}")
  case $backend in
  vm-cold) flags+=(--cold-boot) ;;
  vm-first) n=1 ;;
  esac
  for i in $(seq "$n"); do
    start=$(date +%s.%N)
    "$BENCH_COVNET" run "${flags[@]}" --coverage --no-console \
      --out "$out/$backend-$i" examples/webserver/spec.toml 2>"$out/$backend-$i.log" ||
      { cat "$out/$backend-$i.log" >&2; bench_die "$backend run $i failed"; }
    case $backend in
    vm-cold | vm-first) ! grep -q 'restored the booted guest' "$out/$backend-$i.log" ||
      bench_die "$backend run $i restored a snapshot" ;;
    vm) [ "$(grep -c 'restored the booted guest' "$out/$backend-$i.log")" = 2 ] ||
      { cat "$out/$backend-$i.log" >&2; bench_die "vm run $i did not restore both machines"; } ;;
    esac
    end=$(date +%s.%N)
    wall=$(awk -v a="$start" -v b="$end" 'BEGIN {printf "%.3f", b - a}')
    boots=$(grep -o '[a-z]*: ready after [0-9.]*s' "$out/$backend-$i.log" | sed 's/: ready after /=/' | tr '\n' ' ')
    printf '%s\t%s\t%s\n' "$backend" "$wall" "$boots" >>"$out/runs.tsv"
    printf '%-9s run %d: wall %ss  first shell: %s\n' "$backend" "$i" "$wall" "$boots" | tee -a "$out/log" >&2
  done
  info=$(find "$out/$backend-$n" -name '*.info' | head -n1)
  [ -n "$info" ] || bench_die "no lcov tracefile in $out/$backend-$n"
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
      "machine. VMs under TCG: `vm, cold` with `--cold-boot` (every boot from scratch); "
      "`vm, first run` once with an empty snapshot cache (both boot cold, one saves the "
      "booted guest: the machines share one base image); `vm, warm` restores both from it "
      "(a rerun of the same spec).")
print()
print(f"| backend | median wall ({runs} runs) | min – max wall | first shell median (min – max) | goal (medians) |")
print("|---|---:|---:|---:|---|")
label = {"namespace": "namespace", "vm-cold": "vm, cold (`--cold-boot`)",
         "vm-first": "vm, first run (saves the snapshot; 1 run)", "vm": "vm, warm (restored)"}
for b in ("namespace", "vm-cold", "vm-first", "vm"):
    walls = [w for w, _ in rows[b]]
    shells = [s for _, ss in rows[b] for s in ss]
    med, smed = statistics.median(walls), statistics.median(shells)
    goal = "—"
    if b == "namespace":
        ok = med <= 1.0 and smed <= 0.05
        goal = f"≤ 1 s end to end, first shell ≤ 50 ms: {'met' if ok else 'not met'}"
    if b == "vm":
        goal = f"issue 18, goal 2: ≤ 1.5 s: **{'met' if med <= 1.5 else 'missed'}**"
    print(f"| {label[b]} | **{med:.3f} s** | {min(walls):.3f} – {max(walls):.3f} s | "
          f"{smed:.2f} s ({min(shells):.2f} – {max(shells):.2f} s) | {goal} |")
print()
kinds = ("namespace", "vm-cold", "vm-first", "vm")
summ = {b: [l.split(":", 1)[1].strip() for l in open(f"{out}/{b}.summary") if ":" in l and "%" in l]
        for b in kinds}
if all(summ[b] == summ["namespace"] for b in kinds):
    print("Every backend and boot reports the same coverage for its last run:")
else:
    print("The last runs report different coverage (the example's scenario does not force "
          "every path on every run, e.g. under load):")
print()
print("```")
for b in kinds:
    for line in open(f"{out}/{b}.summary"):
        print(f"{b:9s} {line.rstrip()}")
print("```")
print()
print("```")
print(open(f"{out}/log").read().rstrip())
print("```")
PY
