#!/usr/bin/env bash
# Reporter benchmark: `covnet report --html` against lcov's `genhtml` and
# gcovr's `--html-details`, all measured in this run, on a synthetic corpus
# (default 2000 source files x 750 lines, two machines). Measures wall time,
# CPU time and peak memory with /usr/bin/time -v and writes the "report"
# section of bench/RESULTS.md (other sections are left alone).
#
# usage: bash bench/report/run.sh [--allow-dirty] [--files N] [--lines-per-file M] [--runs R]
#   --files / --lines-per-file  corpus size (default 2000 x 750; gcovr needs
#                               about 10 GB of memory at the default size)
#   --runs                      runs of covnet (all threads and one thread)
#                               and of genhtml, interleaved (default 5;
#                               medians); gcovr runs once (about 9 minutes)
# Needs genhtml (scripts/setup.sh) and gcovr (bench/merge/setup-peers.sh).
# Work files: bench/work/report.
#
# Every run writes a new output directory: outputs of an earlier
# invocation are deleted before anything is measured (and the file system
# given time to settle, see below), this run's after everything is.
#
# gcovr reads gcov's outputs or its own JSON, not lcov tracefiles:
# lcov_to_gcovr.py converts the corpus first (not timed).
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
bench_init report "Reporter: covnet report against genhtml and gcovr" "$@"
set -- "${BENCH_ARGS[@]}"
files=2000 lines=750 runs=5
while [ $# -gt 0 ]; do
  case $1 in
    --files) files=$2; shift 2 ;;
    --lines-per-file) lines=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    *) bench_die "usage: bench/report/run.sh [--allow-dirty] [--files N] [--lines-per-file M] [--runs R]" ;;
  esac
done
[ "$runs" -ge 1 ] 2>/dev/null || bench_die "--runs wants a positive number"
repo=$BENCH_ROOT
mkdir -p bench/work/report
work=$(cd bench/work/report && pwd)
gcovr=$repo/bench/work/tools/bin/gcovr
command -v genhtml >/dev/null || bench_die "genhtml missing (hint: bash scripts/setup.sh installs lcov)"
[ -x /usr/bin/time ] || bench_die "/usr/bin/time missing (hint: bash scripts/setup.sh installs time)"
[ -x "$gcovr" ] || bench_die "gcovr missing: run bash bench/merge/setup-peers.sh"
bench_build_covnet release
COVNET=$BENCH_COVNET
bench_version genhtml "$(bench_lcov_version)"
bench_version gcovr "$("$gcovr" --version | head -n1 | awk '{print $2}')"
bench_version python "$(bench_python_version)"

bench_report_corpus "$work" "$files" "$lines"
corpus_desc=$(cat "$work/corpus.txt")

measure() { bench_measure "$work" "$@"; }

cd "$work/corpus"
# The root file system here is ext4 without a journal: creating files
# within 5-30 s of deleting many (the previous outputs) makes the kernel
# scan past the recently deleted inodes, about a second of system time
# for 2,000 pages, charged to whichever tool runs next. Delete first, then
# wait that out, so no tool pays for an earlier run's cleanup.
if compgen -G 'out-*' >/dev/null; then
  rm -rf out-*
  sync
  bench_log "deleted earlier outputs; waiting 35 s for the file system to settle"
  sleep 35
fi
median() { printf '%s\n' "$@" | bench_median; }
c_w=() c_c=() c_r=() c1_w=() c1_c=() c1_r=() g_w=() g_c=() g_r=()
# The first covnet after genhtml (or after the wait above) finds little
# memory the guest kernel has not handed back to the host (free page
# reporting): its fresh pages cost far more system time than those of
# the covnet right after it, which reuses what the first one freed. The
# two covnet variants take turns at going first, so that neither has
# only one of those positions.
covnet_all() {
  read -r w c r < <(measure "covnet-$1" "$COVNET" report web.info client.info --html "out-covnet-$1")
  c_w+=("$w") c_c+=("$c") c_r+=("$r")
}
covnet_one() {
  read -r w c r < <(measure "covnet-1t-$1" env RAYON_NUM_THREADS=1 "$COVNET" report web.info client.info --html "out-covnet-1t-$1")
  c1_w+=("$w") c1_c+=("$c") c1_r+=("$r")
}
for i in $(seq "$runs"); do
  bench_log "run $i of $runs (load $(cut -d' ' -f1-3 /proc/loadavg))"
  if [ $((i % 2)) = 1 ]; then covnet_all "$i"; covnet_one "$i"; else covnet_one "$i"; covnet_all "$i"; fi
  read -r w c r < <(measure "genhtml-$i" genhtml --quiet --branch-coverage -o "out-genhtml-$i" web.info client.info)
  g_w+=("$w") g_c+=("$c") g_r+=("$r")
done
c_wall=$(median "${c_w[@]}") c_cpu=$(median "${c_c[@]}") c_rss=$(median "${c_r[@]}")
c1_wall=$(median "${c1_w[@]}") c1_cpu=$(median "${c1_c[@]}") c1_rss=$(median "${c1_r[@]}")
g_wall=$(median "${g_w[@]}") g_cpu=$(median "${g_c[@]}") g_rss=$(median "${g_r[@]}")
c_rss_max=$(printf '%s\n' "${c_r[@]}" | sort -n | tail -n1)
g_rss_min=$(printf '%s\n' "${g_r[@]}" | sort -n | head -n1)
c_size=$(du -sm out-covnet-1 | cut -f1)
g_size=$(du -sm out-genhtml-1 | cut -f1)
for t in web client; do
  [ -f "$t.gcovr.json" ] || python3 "$repo/bench/report/lcov_to_gcovr.py" "$t.info" "$t.gcovr.json"
done
mkdir out-gcovr
read -r r_wall r_cpu r_rss < <(measure gcovr "$gcovr" --add-tracefile web.gcovr.json --add-tracefile client.gcovr.json --html-details out-gcovr/index.html --root "$(pwd)")
r_size=$(du -sm out-gcovr | cut -f1)
# The measuring is over: this run's outputs can go (the next run waits
# for the file system to settle, see above).
rm -rf out-*
cd "$repo"

ratio() { python3 -c "print(f'{$1 / max($2, 0.01):.1f}')"; }
runs_of() { local IFS=' '; echo "$*"; }
verdict() { python3 -c "print('met' if $1 else 'missed')"; }
wall_x=$(ratio "$g_wall" "$c_wall") cpu_x=$(ratio "$g_cpu" "$c_cpu")
bench_write_section <<MD
Corpus (\`gen_corpus.py\`, fixed seed): $corpus_desc; two tracefiles
(two machines), sources on disk; every tool renders every source file.
covnet (all threads and one thread, taking turns at going first) and
genhtml ran one after the other, $runs times over (medians below); gcovr
once, after them. Each run wrote a new output directory; no file was
deleted while a tool was measured.

| tool | wall (s) | CPU (s) | peak RSS (MB) | output (MB) |
|:--|--:|--:|--:|--:|
| \`covnet report --html\` | $c_wall | $c_cpu | $((${c_rss%.*} / 1024)) | $c_size |
| \`covnet report --html\`, 1 thread | $c1_wall | $c1_cpu | $((${c1_rss%.*} / 1024)) | |
| \`genhtml --branch-coverage\` | $g_wall | $g_cpu | $((${g_rss%.*} / 1024)) | $g_size |
| \`gcovr --html-details\`, JSON input (one run) | $r_wall | $r_cpu | $((r_rss / 1024)) | $r_size |

Every run (wall s / CPU s / peak KB), in order (covnet with all threads
went first in odd runs, on one thread in even runs):
- covnet: $(runs_of "${c_w[@]}") / $(runs_of "${c_c[@]}") / $(runs_of "${c_r[@]}")
- covnet, 1 thread: $(runs_of "${c1_w[@]}") / $(runs_of "${c1_c[@]}") / $(runs_of "${c1_r[@]}")
- genhtml: $(runs_of "${g_w[@]}") / $(runs_of "${g_c[@]}") / $(runs_of "${g_r[@]}")

covnet is **${wall_x}x** faster than genhtml in wall time
($(ratio "$g_wall" "$c1_wall")x on one thread) and **${cpu_x}x** in CPU time, and
**$(ratio "$r_wall" "$c_wall")x** faster than gcovr ($(ratio "$r_cpu" "$c_cpu")x in CPU time).
Issue 18, goal 4: >= 30x genhtml's wall time: **$(verdict "$wall_x >= 30")**;
>= 20x in CPU time: **$(verdict "$cpu_x >= 20")**; peak memory at or below
genhtml's: **$(verdict "$c_rss_max <= $g_rss_min")** (covnet's highest
$((c_rss_max / 1024)) MB, genhtml's lowest $((g_rss_min / 1024)) MB).
covnet's time includes reading the first tracefile while the second is
parsed on another thread into compact records, then folding those into
the first one's model (the merger's lcov reader, one model in memory),
and reading every source twice (exclusion markers, then the page); its
peak memory is that model and the parsed records, pages are written one
by one as they are rendered. gcovr cannot read lcov tracefiles:
\`lcov_to_gcovr.py\` converts them to gcovr's JSON first (untimed). The
machine is shared: wall times vary with the load shown above (genhtml
runs on one core, covnet on both, so the wall ratio depends on the load
more than the CPU ratio does); CPU times are steadier.
MD
