#!/usr/bin/env bash
# Runs fuzz targets for a given time each, one at a time, at low priority,
# and records what they did.
#
# Usage: fuzz/run.sh TARGET[,TARGET...]|all SECONDS   (SECONDS per target)
#
# Seeds fuzz/corpus/ with seed.sh when a target has none. Builds with
# cargo-fuzz on nightly (`cargo install cargo-fuzz`), release mode with
# debug assertions (overflow checks) and no sanitizer: the readers are
# safe Rust, so ASan adds cost and no findings; panics, overflows, timeouts
# (-timeout) and large allocations (-malloc_limit_mb: sizes read from a
# file must be checked against the bytes that remain) are what count.
#
# Inputs are capped at MAX_LEN bytes (default 4096; seeds are cut there):
# small inputs keep the speed up and still hold many records.
#
# Each run appends a line to fuzz/logs/runs.tsv (date, target, seconds,
# executions, executions per second, result); the full libFuzzer output
# is in fuzz/logs/<target>-<date>.log and crashing inputs in
# fuzz/artifacts/<target>/. A crash makes the script exit 1 after the
# remaining targets ran.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
targets=(gcno gcda lcov json_model spec console_frames tar dwarf)

if [ $# -ne 2 ] || ! [[ "$2" =~ ^[0-9]+$ ]]; then
    echo "usage: $0 TARGET[,TARGET...]|all SECONDS (targets: ${targets[*]})" >&2
    exit 2
fi
if [ "$1" = all ]; then
    run=("${targets[@]}")
else
    IFS=, read -r -a run <<<"$1"
    for t in "${run[@]}"; do
        case " ${targets[*]} " in
            *" $t "*) ;;
            *) echo "$0: unknown target $t (targets: ${targets[*]})" >&2; exit 2 ;;
        esac
    done
fi
seconds="$2"
flags=(-O -a -s none)

cd "$here"
mkdir -p logs
for t in "${run[@]}"; do
    if [ -z "$(ls -A "corpus/$t" 2>/dev/null)" ]; then
        ./seed.sh "$here/corpus"
    fi
done
# NO_BUILD=1 reuses the binaries of an earlier run (a campaign of several
# calls then fuzzes one build even while the tree changes).
[ -n "${NO_BUILD:-}" ] || nice -n 10 cargo +nightly fuzz build "${flags[@]}"

failed=0
for t in "${run[@]}"; do
    stamp="$(date -u +%Y%m%dT%H%M%SZ)"
    log="logs/$t-$stamp.log"
    echo "== $t for ${seconds}s (log: fuzz/$log)"
    status=ok
    mkdir -p "artifacts/$t"
    # The binary cargo-fuzz built (not `cargo fuzz run`, which would rebuild
    # whenever the tree changes mid-campaign).
    nice -n 10 "target/x86_64-unknown-linux-gnu/release/$t" "corpus/$t" \
        -artifact_prefix="artifacts/$t/" -max_len="${MAX_LEN:-4096}" \
        -max_total_time="$seconds" -timeout=10 -malloc_limit_mb=512 \
        -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1 || status=crash
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
    rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)"
    if [ "$status" = crash ]; then
        failed=1
        grep -E '^(==[0-9]+== ERROR|thread .* panicked|SUMMARY|artifact_prefix|Test unit written)' "$log" | head -5 || true
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$stamp" "$t" "$seconds" "${execs:-?}" "${rate:-?}" "$status" |
        tee -a logs/runs.tsv
done
exit "$failed"
