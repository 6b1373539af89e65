#!/usr/bin/env bash
# Differential report benchmark (issue 19, item 3): `covnet report --html
# --json` of the reporter corpus, plain and against a baseline with a
# unified diff, in the same run. Goal: the differential report takes at
# most twice the plain report's time. Writes the "diffcov" section of
# bench/RESULTS.md (other sections are left alone).
#
# usage: bash bench/diffcov/run.sh [--allow-dirty] [--files N] [--lines-per-file M] [--runs R]
#   --files / --lines-per-file  corpus size (default 2000 x 500: 10^6 lines)
#   --runs                      runs of each report (default 5; medians)
# The corpus is bench/report/gen_corpus.py's (two machines); the baseline
# and the diff come from bench/diffcov/derive.py.
# Work files: bench/work/diffcov.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
bench_init diffcov "Differential report: covnet report with a baseline and a diff against the plain report" "$@"
set -- "${BENCH_ARGS[@]}"
files=2000 lines=500 runs=5
while [ $# -gt 0 ]; do
  case $1 in
    --files) files=$2; shift 2 ;;
    --lines-per-file) lines=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    *) bench_die "usage: bench/diffcov/run.sh [--allow-dirty] [--files N] [--lines-per-file M] [--runs R]" ;;
  esac
done
[ -x /usr/bin/time ] || bench_die "/usr/bin/time missing (hint: bash scripts/setup.sh installs time)"
mkdir -p bench/work/diffcov
work=$(cd bench/work/diffcov && pwd)
bench_build_covnet release
COVNET=$BENCH_COVNET
bench_version python "$(bench_python_version)"

bench_report_corpus "$work" "$files" "$lines"
if [ ! -f "$work/corpus/change.diff" ] || [ "$work/corpus/change.diff" -ot "$work/corpus/.size" ]; then
  python3 bench/diffcov/derive.py "$work/corpus"
fi
corpus_desc=$(cat "$work/corpus.txt")

measure() { bench_measure "$work" "$@"; }

cd "$work/corpus"
plain_w=() plain_c=() plain_r=() diff_w=() diff_c=() diff_r=()
for i in $(seq 1 "$runs"); do
  # Interleaved, so both see the same load.
  rm -rf out-plain out-diff
  read -r w c r < <(measure plain "$COVNET" report web.info client.info --html out-plain --json plain.json)
  plain_w+=("$w") plain_c+=("$c") plain_r+=("$r")
  read -r w c r < <(measure diff "$COVNET" report web.info client.info --baseline base-web.info --baseline base-client.info --diff change.diff --diff-root "$(pwd)" --html out-diff --json diff.json)
  diff_w+=("$w") diff_c+=("$c") diff_r+=("$r")
done
# The total's line categories: the block after "lines....." up to "functions".
categories=$(awk '/^  lines\.+:/ {on=1; next} on && /^  functions/ {exit} on {gsub(/^ +/, ""); printf "%s%s", sep, $0; sep="; "}' "$work/diff.out")
cd "$BENCH_ROOT"

med() { printf '%s\n' "$@" | bench_median; }
pw=$(med "${plain_w[@]}") pc=$(med "${plain_c[@]}") pr=$(med "${plain_r[@]}")
dw=$(med "${diff_w[@]}") dc=$(med "${diff_c[@]}") dr=$(med "${diff_r[@]}")
pr=${pr%.*} dr=${dr%.*}
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
rw=$(ratio "$dw" "$pw") rc=$(ratio "$dc" "$pc")
verdict=$(python3 -c "print('met' if $rw <= 2 and $rc <= 2 else 'missed')")
bench_write_section <<MD
Corpus (\`bench/report/gen_corpus.py\`, fixed seed): $corpus_desc; two
machines. Baseline: the same tracefiles with every 5th file's counts
zeroed; diff: two lines inserted into every 5th file. Both reports write
the HTML site and the JSON report; $runs runs each, interleaved; medians.

| report | wall (s) | CPU (s) | peak RSS (MB) | runs (wall s) |
|:--|--:|--:|--:|:--|
| \`covnet report --html --json\` | $pw | $pc | $((pr / 1024)) | ${plain_w[*]} |
| the same with \`--baseline\` ×2 \`--diff\` | $dw | $dc | $((dr / 1024)) | ${diff_w[*]} |

Differential / plain: **${rw}x** wall, **${rc}x** CPU; goal at most 2x:
**$verdict**. Categories of the last run (lines): $categories.
MD
