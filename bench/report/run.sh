#!/usr/bin/env bash
# Reporter benchmark: `covnet report --html` against lcov's `genhtml` and
# gcovr's `--html-details`, all measured in this run, on a synthetic corpus
# (default 2000 source files x 750 lines, two machines). Measures wall time,
# CPU time and peak memory with /usr/bin/time -v and writes the "report"
# section of bench/RESULTS.md (other sections are left alone).
#
# usage: bash bench/report/run.sh [--allow-dirty] [--files N] [--lines-per-file M]
#   --files / --lines-per-file  corpus size (default 2000 x 750; gcovr needs
#                               about 10 GB of memory at the default size)
# Needs genhtml (scripts/setup.sh) and gcovr (bench/merge/setup-peers.sh).
# Work files: bench/work/report.
#
# gcovr reads gcov's outputs or its own JSON, not lcov tracefiles:
# lcov_to_gcovr.py converts the corpus first (not timed).
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
bench_init report "Reporter: covnet report against genhtml and gcovr" "$@"
set -- "${BENCH_ARGS[@]}"
files=2000 lines=750
while [ $# -gt 0 ]; do
  case $1 in
    --files) files=$2; shift 2 ;;
    --lines-per-file) lines=$2; shift 2 ;;
    *) bench_die "usage: bench/report/run.sh [--allow-dirty] [--files N] [--lines-per-file M]" ;;
  esac
done
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
rm -rf out-covnet out-covnet-1t out-genhtml
read -r c_wall c_cpu c_rss < <(measure covnet "$COVNET" report web.info client.info --html out-covnet)
read -r c1_wall c1_cpu c1_rss < <(measure covnet-1t env RAYON_NUM_THREADS=1 "$COVNET" report web.info client.info --html out-covnet-1t)
read -r g_wall g_cpu g_rss < <(measure genhtml genhtml --quiet --branch-coverage -o out-genhtml web.info client.info)
c_size=$(du -sm out-covnet | cut -f1)
g_size=$(du -sm out-genhtml | cut -f1)
for t in web client; do
  [ -f "$t.gcovr.json" ] || python3 "$repo/bench/report/lcov_to_gcovr.py" "$t.info" "$t.gcovr.json"
done
rm -rf out-gcovr && mkdir out-gcovr
read -r r_wall r_cpu r_rss < <(measure gcovr "$gcovr" --add-tracefile web.gcovr.json --add-tracefile client.gcovr.json --html-details out-gcovr/index.html --root "$(pwd)")
r_size=$(du -sm out-gcovr | cut -f1)
cd "$repo"

ratio() { python3 -c "print(f'{$1 / $2:.1f}')"; }
bench_write_section <<MD
Corpus (\`gen_corpus.py\`, fixed seed): $corpus_desc; two tracefiles
(two machines), sources on disk; every tool renders every source file.
The tools ran one after the other in this run.

| tool | wall (s) | CPU (s) | peak RSS (MB) | output (MB) |
|:--|--:|--:|--:|--:|
| \`covnet report --html\` | $c_wall | $c_cpu | $((c_rss / 1024)) | $c_size |
| \`covnet report --html\`, 1 thread | $c1_wall | $c1_cpu | $((c1_rss / 1024)) | |
| \`genhtml --branch-coverage\` | $g_wall | $g_cpu | $((g_rss / 1024)) | $g_size |
| \`gcovr --html-details\`, JSON input | $r_wall | $r_cpu | $((r_rss / 1024)) | $r_size |

covnet is **$(ratio "$g_wall" "$c_wall")x** faster than genhtml in wall time
($(ratio "$g_wall" "$c1_wall")x on one thread, $(ratio "$g_cpu" "$c_cpu")x in CPU time) and
**$(ratio "$r_wall" "$c_wall")x** faster than gcovr ($(ratio "$r_cpu" "$c_cpu")x in CPU time).
covnet's time includes reading and merging both tracefiles (the merger's
lcov reader); its peak memory is that merged model. gcovr cannot read lcov
tracefiles: \`lcov_to_gcovr.py\` converts them to gcovr's JSON first
(untimed). The machine is shared: wall times vary with the load shown
above; CPU times are steadier.
MD
