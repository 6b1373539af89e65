#!/usr/bin/env bash
# Merge benchmark: covnet against lcov, gcovr and grcov, all measured in
# this run, each producing one merged lcov tracefile from the captures
# made by corpus.sh. Writes the "merge" section of bench/RESULTS.md.
#
# What each tool runs (timed, end to end):
#   covnet : covnet merge --build BUILD CAPTURES/* -o covnet.info
#   lcov   : per capture `lcov -c -d STAGED/NN`, then `lcov -a` of them all
#   gcovr  : one `gcovr -j NPROC --lcov` over STAGED (gcovr merges per file)
#   grcov  : one `grcov STAGED --branch -t lcov` (grcov merges per file)
# The peers need each .gcda next to its .gcno, so STAGED/NN is a hard-link
# view (build .gcno + capture NN's .gcda), made once and NOT timed; covnet
# reads the raw captures and the build tree directly.
# Untimed oracle: `gcov-tool merge` of all captures, then one lcov capture.
# Also, untimed: covnet's peak RSS for 1 and 10 captures and for the
# oracle's pre-merged capture (how memory scales; all captures: the table).
#
# Each tool runs RUNS times under GNU time (load average before and after
# each run recorded); the median wall time and the median peak RSS
# (largest single process of the pipeline) are kept.
#
# Usage: bash bench/merge/run.sh [--allow-dirty] [--runs N] [--captures N]
#   --runs N      runs per tool (default 3)
#   --captures N  use the first N captures of the corpus (default: all)
# Needs: bench/merge/corpus.sh (the corpus), bench/merge/setup-peers.sh
# (lcov, gcovr, grcov). Work files: bench/work/.
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
jobs=$(nproc)
src=$(ls -d "$work"/src/zstd-sys-* 2>/dev/null | head -n1)
lcov_rc=(--rc lcov_branch_coverage=1)

# lcov's perl prints "Subroutine ... redefined" noise on this perl; drop it
quiet_perl() { grep -v 'Subroutine .* redefined' >&2 || true; }

# the first $NCAPTURES capture directories
capture_dirs() { ls -d "$captures"/[0-9][0-9] | head -n "$NCAPTURES"; }

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
# Leaves the merged .gcda tree (with the build's .gcno) in $tmp/oracle/merged.
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
    mv "$acc" "$tmp/oracle/merged"
    acc=$tmp/oracle/merged
    (cd "$build" && find . -name '*.gcno') | while read -r g; do
        ln -f "$build/$g" "$acc/$g"
    done
    lcov -q "${lcov_rc[@]}" -c -d "$acc" -o "$1" 2> >(quiet_perl)
}

if [ "${1:-}" = "__pipeline" ]; then
    NCAPTURES=$2 COVNET=$3
    "pipeline_$4" "$5"
    exit
fi

. "$root/bench/lib.sh"
bench_init merge "Merge: covnet against lcov, gcovr and grcov" "$@"
set -- "${BENCH_ARGS[@]}"
RUNS=3 NCAPTURES=
while [ $# -gt 0 ]; do
    case $1 in
    --runs) RUNS=$2; shift 2 ;;
    --captures) NCAPTURES=$2; shift 2 ;;
    *) bench_die "usage: bench/merge/run.sh [--allow-dirty] [--runs N] [--captures N]" ;;
    esac
done

[ -n "$src" ] && [ -x "$build/driver" ] && [ -d "$captures/00" ] ||
    bench_die "no corpus: run bash bench/merge/corpus.sh first"
total=$(ls -d "$captures"/[0-9][0-9] | wc -l)
NCAPTURES=${NCAPTURES:-$total}
[ "$NCAPTURES" -ge 1 ] && [ "$NCAPTURES" -le "$total" ] ||
    bench_die "--captures must be 1..$total (the corpus has $total)"
command -v lcov >/dev/null || bench_die "lcov missing: bash scripts/setup.sh (or bench/merge/setup-peers.sh)"
[ -x "$tools/gcovr" ] && [ -x "$tools/grcov" ] ||
    bench_die "gcovr/grcov missing in $tools: run bash bench/merge/setup-peers.sh"
[ -x /usr/bin/time ] || bench_die "/usr/bin/time missing: bash scripts/setup.sh"

bench_build_covnet release
COVNET=$BENCH_COVNET
bench_version gcc "$(bench_gcc_version)"
bench_version lcov "$(bench_lcov_version)"
bench_version gcovr "$("$tools/gcovr" --version | head -n1 | awk '{print $2}')"
bench_version grcov "$("$tools/grcov" --version | awk '{print $2}')"

pipeline() { bash "$0" __pipeline "$NCAPTURES" "$COVNET" "$@"; }

rm -rf "$results" "$tmp"
mkdir -p "$results" "$tmp"
# Untimed: the hard-link views the gcov-based peers need.
bench_log "staging gcda+gcno views of $NCAPTURES captures for the peers (untimed)"
rm -rf "$staged"
for d in $(capture_dirs); do
    n=$(basename "$d")
    (cd "$d$build" && find . -name '*.gcda') | while read -r f; do
        mkdir -p "$staged/$n/$(dirname "$f")"
        ln "$d$build/$f" "$staged/$n/$f"
        ln "$build/${f%.gcda}.gcno" "$staged/$n/${f%.gcda}.gcno"
    done
done

bench_log "oracle: gcov-tool merge + lcov capture (untimed)"
pipeline oracle "$results/oracle.info"

# peak RSS in KiB of one untimed covnet merge of the given capture dirs
covnet_rss() {
    /usr/bin/time -f '%M' -o "$tmp/rss" "$COVNET" merge --build "$build" "$@" -o "$tmp/rss.info"
    cat "$tmp/rss"
}

: >"$results/times.tsv"
for tool in covnet lcov gcovr grcov; do
    for ((r = 1; r <= RUNS; r++)); do
        rm -f "$results/$tool.info"
        sync
        before=$(cut -d' ' -f1 /proc/loadavg)
        /usr/bin/time -f "%e %M" -o "$tmp/time" bash "$0" __pipeline "$NCAPTURES" "$COVNET" "$tool" "$results/$tool.info"
        after=$(cut -d' ' -f1 /proc/loadavg)
        read -r wall rss <"$tmp/time"
        bench_log "$tool run $r: ${wall}s, ${rss} KiB (load average $before before, $after after)"
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$r" "$wall" "$rss" "$before" "$after" >>"$results/times.tsv"
    done
done

bench_log "covnet peak RSS by number of captures (untimed)"
mapfile -t all < <(capture_dirs)
: >"$results/rss.tsv"
for n in 1 10; do
    [ "$n" -lt "$NCAPTURES" ] || continue
    printf '%s\t%s\n' "$n" "$(covnet_rss "${all[@]:0:n}")" >>"$results/rss.tsv"
done
# the oracle's merged tree as one capture: its .gcda sit at the build's path
mkdir -p "$tmp/premerged$build"
(cd "$tmp/oracle/merged" && find . -name '*.gcda' -exec cp --parents {} "$tmp/premerged$build/" \;)
printf 'premerged\t%s\n' "$(covnet_rss "$tmp/premerged")" >>"$results/rss.tsv"
python3 "$here/report.py" --results "$results" --diff-only "$tmp/rss.info" >"$results/premerged-diff.txt"

python3 "$here/report.py" --results "$results" --src "$src" --build "$build" \
    --captures "$NCAPTURES" --captures-total "$total" --runs "$RUNS" >"$results/merge.md"
bench_write_section <"$results/merge.md"
