#!/usr/bin/env bash
# Merge benchmark: covnet vs lcov, gcovr and grcov, each producing one merged
# lcov tracefile from the 50 captures made by corpus.sh.
#
# What each tool runs (timed, end to end):
#   covnet : covnet merge --build BUILD CAPTURES/* -o covnet.info
#   lcov   : per capture `lcov -c -d STAGED/NN`, then `lcov -a` of the 50
#   gcovr  : one `gcovr -j NPROC --lcov` over STAGED (gcovr merges per file)
#   grcov  : one `grcov STAGED --branch -t lcov` (grcov merges per file)
# The peers need each .gcda next to its .gcno, so STAGED/NN is a hard-link
# view (build .gcno + capture NN's .gcda), made once and NOT timed; covnet
# reads the raw captures and the build tree directly.
# Untimed oracle: `gcov-tool merge` of all captures, then one lcov capture.
#
# Each tool runs RUNS times (default 3) under GNU time (the 1-minute load
# average before each run is recorded too); the median wall time
# and the median peak RSS (largest single process of the pipeline) are kept.
# Results: bench/work/results/*.info, times.tsv, merge.md; with --write,
# the "## Merge" section of bench/RESULTS.md is replaced by merge.md.
#
# Usage: bench/merge/run.sh [--write | --report-only]
#   --report-only re-renders merge.md and RESULTS.md from earlier results.
#   env: TOOLS="covnet lcov gcovr grcov" RUNS=3 COVNET=target/release/covnet
# Tools left out of TOOLS keep their earlier measurements in times.tsv.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
work=$(cd "${COVNET_BENCH_WORK:-$here/../work}" && pwd)
build=$work/build
captures=$work/captures
staged=$work/staged
results=$work/results
tmp=$work/tmp
tools=$work/tools/bin
COVNET=${COVNET:-$root/target/release/covnet}
TOOLS=${TOOLS:-covnet lcov gcovr grcov}
RUNS=${RUNS:-3}
jobs=$(nproc)
src=$(ls -d "$work"/src/zstd-sys-* 2>/dev/null | head -n1)
lcov_rc=(--rc lcov_branch_coverage=1)

log() { printf 'run: %s\n' "$*" >&2; }
# lcov 1.16's perl prints "Subroutine ... redefined" noise on this perl; drop it
quiet_perl() { grep -v 'Subroutine .* redefined' >&2 || true; }

capture_dirs() { ls -d "$captures"/[0-9][0-9]; }

# One pipeline per tool, writing the merged tracefile to $1.
pipeline_covnet() {
    mapfile -t dirs < <(capture_dirs)
    "$COVNET" merge --build "$build" "${dirs[@]}" -o "$1"
}
pipeline_lcov() {
    rm -rf "$tmp/lcov" && mkdir -p "$tmp/lcov"
    local adds=() d n
    for d in "$staged"/[0-9][0-9]; do
        n=$(basename "$d")
        lcov -q "${lcov_rc[@]}" -c -d "$d" -o "$tmp/lcov/c$n.info" 2> >(quiet_perl)
        adds+=(-a "$tmp/lcov/c$n.info")
    done
    lcov -q "${lcov_rc[@]}" "${adds[@]}" -o "$1" 2> >(quiet_perl)
}
pipeline_gcovr() {
    "$tools/gcovr" -r "$src" -j "$jobs" --lcov "$1" "$staged"
}
pipeline_grcov() {
    "$tools/grcov" "$staged" --branch -t lcov -o "$1"
}
pipeline_oracle() {
    rm -rf "$tmp/oracle" && mkdir -p "$tmp/oracle"
    local acc="" d next i=0
    for d in $(capture_dirs); do
        if [ -z "$acc" ]; then
            acc=$tmp/oracle/m0
            cp -r "$d$build" "$acc"
            continue
        fi
        i=$((i + 1))
        next=$tmp/oracle/m$i
        gcov-tool merge "$acc" "$d$build" -o "$next"
        rm -rf "$acc"
        acc=$next
    done
    (cd "$build" && find . -name '*.gcno') | while read -r g; do
        ln -f "$build/$g" "$acc/$g"
    done
    lcov -q "${lcov_rc[@]}" -c -d "$acc" -o "$1" 2> >(quiet_perl)
}

if [ "${1:-}" = "__pipeline" ]; then
    "pipeline_$2" "$3"
    exit
fi

write=0 measure=1
case "${1:-}" in
--write) write=1 ;;
--report-only) write=1 measure=0 ;;
"") ;;
*) log "usage: run.sh [--write | --report-only]"; exit 2 ;;
esac

[ -n "$src" ] && [ -x "$build/driver" ] && [ -d "$captures/00" ] ||
    { log "no corpus: run bench/merge/corpus.sh first"; exit 1; }

if [ "$measure" = 1 ]; then
    # Untimed: the hard-link views the gcov-based peers need.
    log "staging gcda+gcno views for the peers (untimed)"
    rm -rf "$staged"
    for d in $(capture_dirs); do
        n=$(basename "$d")
        (cd "$d$build" && find . -name '*.gcda') | while read -r f; do
            mkdir -p "$staged/$n/$(dirname "$f")"
            ln "$d$build/$f" "$staged/$n/$f"
            ln "$build/${f%.gcda}.gcno" "$staged/$n/${f%.gcda}.gcno"
        done
    done

    mkdir -p "$results"
    if [ -x "$COVNET" ] && [[ " $TOOLS " == *" covnet "* ]]; then
        { "$COVNET" --version
          echo "binary of $(date -u -r "$COVNET" '+%Y-%m-%d %H:%M UTC')"
          git -C "$root" log -1 --format='main at %h when measured'; } \
            >"$results/covnet-version.txt" 2>/dev/null || true
    fi
    log "oracle: gcov-tool merge + lcov capture (untimed)"
    bash "$0" __pipeline oracle "$results/oracle.info"

    : >"$results/times.tsv.new"
    for tool in $TOOLS; do
        if [ "$tool" = covnet ] && [ ! -x "$COVNET" ]; then
            log "covnet: $COVNET missing (cargo build --release -p covnet-runner --bin covnet); skipped"
            continue
        fi
        for ((r = 1; r <= RUNS; r++)); do
            rm -f "$results/$tool.info"
            sync
            read -r load _ </proc/loadavg
            /usr/bin/time -f '%e %M' -o "$tmp/time" bash "$0" __pipeline "$tool" "$results/$tool.info"
            read -r wall rss <"$tmp/time"
            log "$tool run $r: ${wall}s, ${rss} KB (load average before: $load)"
            printf '%s\t%s\t%s\t%s\t%s\n' "$tool" "$r" "$wall" "$rss" "$load" >>"$results/times.tsv.new"
        done
    done
    # keep earlier measurements of tools not re-run this time
    if [ -f "$results/times.tsv" ]; then
        for tool in $(cut -f1 "$results/times.tsv" | sort -u); do
            grep -q "^$tool	" "$results/times.tsv.new" || grep "^$tool	" "$results/times.tsv" >>"$results/times.tsv.new"
        done
    fi
    mv "$results/times.tsv.new" "$results/times.tsv"

    fi

    python3 "$here/report.py" --results "$results" --src "$src" --build "$build" \
        --captures "$(capture_dirs | wc -l)" >"$results/merge.md"
    cat "$results/merge.md"
    if [ "$write" = 1 ]; then
        python3 "$here/report.py" --splice "$root/bench/RESULTS.md" <"$results/merge.md"
        log "updated bench/RESULTS.md"
fi
