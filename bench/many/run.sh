#!/usr/bin/env bash
# Many machines (issue 18, goal 5): one spec of NS namespace machines
# (default 250) and one of VMS TCG VMs (default 40, `memory_mib = 128`),
# each machine serving its own page with busybox httpd, the script waiting
# for every service and `m1` fetching every page by host name
# (bench/many/gen.py writes the specs). On the VMs, every machine also runs
# a small program built here with `gcc --coverage` (outside the spec's
# directory), the run is `--coverage`, and the report must list every VM
# as a capture with covered lines.
#
# Each `covnet run` (release build) is measured by bench/many/measure.py:
# wall time of the whole command, covnet's own peak RSS (VmHWM, sampled),
# CPU of covnet and everything below it, and phase times from covnet's
# timestamped event lines. Namespace runs share one image cache. VM runs
# come in two labelled kinds: "cold", each with an empty image cache of its
# own (`XDG_CACHE_HOME`: images built, one guest booted cold and saved as a
# snapshot, the other 39 restored from it, as all share one base image;
# checked), and "warm", reruns of the same spec on the cache the first cold
# run left (every guest restored from the snapshot; checked).
#   bash bench/many/run.sh [--allow-dirty] [--runs N] [--vm-runs N] [--warm-runs N]
#                          [--ns N] [--vms N] [--only ns|vm]
# --runs is the namespace runs (default 5); --vm-runs the cold VM runs and
# --warm-runs the warm ones (both default to --runs). One 40-VM run took
# 400 s on the loaded 2-core host, so a session short of time may ask for
# fewer: the section says how many runs each median is of.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
bench_init many "Many machines: 250 namespace machines, 40 TCG VMs" "$@"
set -- "${BENCH_ARGS[@]}"
runs=5 vm_runs= warm_runs= ns=250 vms=40 only=
while [ $# -gt 0 ]; do
  case $1 in
    --runs) runs=$2; shift 2 ;;
    --vm-runs) vm_runs=$2; shift 2 ;;
    --warm-runs) warm_runs=$2; shift 2 ;;
    --ns) ns=$2; shift 2 ;;
    --vms) vms=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    *) bench_die "unknown argument $1 (see the header of $0)" ;;
  esac
done
vm_runs=${vm_runs:-$runs} warm_runs=${warm_runs:-$runs}
bench_build_covnet release
bench_version QEMU "$(bench_qemu_version)"
bench_version "guest kernel" "$(bench_guest_kernel)"
bench_version gcc "$(bench_gcc_version)"
bench_version BusyBox "$(bench_busybox_version)"
here=$BENCH_ROOT/bench/many
work=$(mktemp -d /tmp/covnet-bench-many.XXXXXX)
# Kept when a run fails (its log and failure bundle are there).
trap '[ "${done:-}" = 1 ] && rm -rf "$work" || echo "kept $work" >&2' EXIT

# measure KIND I LOG CMD...: one measured run, its JSON line appended to
# $work/results as {"kind": KIND, "run": I, ...}.
measure() {
  local kind=$1 i=$2 log=$3
  shift 3
  local load line
  load=$(cut -d' ' -f1 /proc/loadavg)
  line=$(python3 "$here/measure.py" "$log" -- "$@")
  python3 -c 'import json, sys
r = json.loads(sys.argv[1]); r.update(kind=sys.argv[2], run=int(sys.argv[3]), load=float(sys.argv[4]))
print(json.dumps(r))' "$line" "$kind" "$i" "$load" | tee -a "$work/results" >&2
  if [ "$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["status"])' "$line")" != 0 ]; then
    tail -n 30 "$log" >&2
    bench_die "$kind run $i failed (log above)"
  fi
  grep -q "^PASSED" "$log" || { tail -n 30 "$log" >&2; bench_die "$kind run $i did not pass"; }
}

# check_captures OUT N: the report lists m1..mN, each with covered lines.
check_captures() {
  python3 - "$1/coverage.json" "$2" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
n = int(sys.argv[2])
caps = {c["name"]: c for c in report["captures"]}
want = {f"m{i}" for i in range(1, n + 1)}
if set(caps) != want:
    sys.exit(f"captures {sorted(set(caps) ^ want)} differ from m1..m{n}")
empty = [m for m, c in caps.items() if c["totals"]["lines"]["hit"] == 0]
if empty:
    sys.exit(f"no covered line from {empty}")
PY
}

if [ "$only" != vm ]; then
  python3 "$here/gen.py" web "$ns" namespace 128 "$work/ns.toml"
  export XDG_CACHE_HOME=$work/cache-ns
  for i in $(seq "$runs"); do
    bench_log "namespace run $i of $runs (load $(cut -d' ' -f1-3 /proc/loadavg))"
    measure ns "$i" "$work/ns-$i.log" "$BENCH_COVNET" run "$work/ns.toml" --out "$work/out-ns" --no-console --no-progress
    grep -q "fetched $ns pages" "$work/ns-$i.log" || bench_die "namespace run $i: no \"fetched $ns pages\""
  done
fi

if [ "$only" != ns ]; then
  mkdir -p "$work/build"
  gcc --coverage -O0 -g -o "$work/build/hello" "$here/hello.c"
  python3 "$here/gen.py" web "$vms" vm 128 "$work/vm.toml" "$work/build/hello"
  for kind in cold warm; do
    n=$vm_runs
    [ $kind = cold ] || n=$warm_runs
    for i in $(seq "$n"); do
      if [ $kind = cold ]; then
        export XDG_CACHE_HOME=$work/cache-vm-cold-$i
      else
        # The cache the first cold run left: images built, nothing else.
        export XDG_CACHE_HOME=$work/cache-vm-cold-1
      fi
      bench_log "VM $kind run $i of $n (load $(cut -d' ' -f1-3 /proc/loadavg))"
      rm -rf "$work/out-vm"
      measure "vm-$kind" "$i" "$work/vm-$kind-$i.log" "$BENCH_COVNET" run "$work/vm.toml" --coverage --out "$work/out-vm" --no-console --no-progress
      grep -q "fetched $vms pages" "$work/vm-$kind-$i.log" || bench_die "VM $kind run $i: no \"fetched $vms pages\""
      check_captures "$work/out-vm" "$vms" || bench_die "VM $kind run $i: coverage not from every VM"
      restored=$(grep -c 'restored the booted guest' "$work/vm-$kind-$i.log" || true)
      saved=$(grep -c 'saved the booted guest' "$work/vm-$kind-$i.log" || true)
      if [ $kind = cold ]; then
        # All 40 share one base: one boots cold and saves, the others
        # (more VMs than cores) wait for its snapshot and restore it.
        [ "$saved" = 1 ] && [ "$restored" = $((vms - 1)) ] ||
          bench_die "VM cold run $i: $saved saved and $restored restored (want 1 and $((vms - 1)))"
      else
        [ "$restored" = "$vms" ] || bench_die "VM warm run $i restored $restored of $vms guests"
      fi
      [ $kind = warm ] || [ "$i" = 1 ] || rm -rf "$XDG_CACHE_HOME"
    done
  done
fi

python3 "$here/report.py" "$work/results" "$ns" "$vms" | bench_write_section
done=1
