#!/usr/bin/env bash
# Bundle merge benchmark (issue 14, item 4): `covnet merge` of 100 shard
# bundles holding 1,000 captures in all, with and without per-capture
# attribution; time and peak memory, beside the size of what is read.
# The merge folds one spec's coverage at a time into the total, so its
# memory is bounded by the total plus one spec, not by the inputs.
# Writes the "bundles" section of bench/RESULTS.md.
#
# usage: bash bench/bundles/run.sh [--allow-dirty] [--bundles N] [--captures M] [--files F] [--lines-per-file L] [--runs R]
#   defaults: 100 bundles x 10 captures, each capture 200 files x 250 lines
#   (the reporter corpus generator's files), 5 runs (medians).
# Work files: bench/work/bundles.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
bench_init bundles "Merging shard bundles: covnet merge of many bundles' captures" "$@"
set -- "${BENCH_ARGS[@]}"
bundles=100 captures=10 files=200 lines=250 runs=5
while [ $# -gt 0 ]; do
  case $1 in
    --bundles) bundles=$2; shift 2 ;;
    --captures) captures=$2; shift 2 ;;
    --files) files=$2; shift 2 ;;
    --lines-per-file) lines=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    *) bench_die "usage: bench/bundles/run.sh [--allow-dirty] [--bundles N] [--captures M] [--files F] [--lines-per-file L] [--runs R]" ;;
  esac
done
[ -x /usr/bin/time ] || bench_die "/usr/bin/time missing (hint: bash scripts/setup.sh installs time)"
mkdir -p bench/work/bundles
work=$(cd bench/work/bundles && pwd)
bench_build_covnet release
COVNET=$BENCH_COVNET
bench_version python "$(bench_python_version)"

# One spec's coverage: the corpus' two machines, renamed m0..m(M-1)
# (alternating), as the JSON report a run writes.
bench_report_corpus "$work" "$files" "$lines"
spec_json="$work/spec-$captures.json"
if [ ! -f "$spec_json" ] || [ "$spec_json" -ot "$work/corpus/.size" ]; then
  args=()
  for i in $(seq 0 $((captures - 1))); do
    src=$work/corpus/web.info
    [ $((i % 2)) -eq 1 ] && src=$work/corpus/client.info
    sed "s/^TN:.*/TN:m$i/" "$src" > "$work/m$i.info"
    args+=("$work/m$i.info")
  done
  "$COVNET" report "${args[@]}" --json "$spec_json" > /dev/null
  rm -f "$work"/m*.info
fi
python3 bench/bundles/make.py "$work/b" "$spec_json" "$bundles" >&2
# Every bundle's file counted (make.py hard-links one file into all).
inputs_mb=$(python3 -c 'import glob, os, sys; print(round(sum(os.path.getsize(p) for p in glob.glob(sys.argv[1] + "/b/*/*/coverage.json")) / 1e6))' "$work")
total_captures=$((bundles * captures))

measure() { bench_measure "$work" "$@"; }
plain_w=() plain_c=() plain_r=() per_w=() per_c=() per_r=()
for i in $(seq 1 "$runs"); do
  read -r w c r < <(measure plain "$COVNET" merge "$work"/b/b* -o "$work/all.info")
  plain_w+=("$w") plain_c+=("$c") plain_r+=("$r")
  read -r w c r < <(measure per "$COVNET" merge "$work"/b/b* --per-capture -o "$work/all-per.info")
  per_w+=("$w") per_c+=("$c") per_r+=("$r")
done
grep -q "merged $bundles bundle(s): $bundles spec(s), $total_captures capture(s)" "$work/plain.time" \
  || bench_die "the merge did not report $bundles bundles and $total_captures captures: $(tail -5 "$work/plain.time")"
tn=$(grep '^TN:' "$work/all-per.info" | sort -u | wc -l)
med() { printf '%s\n' "$@" | bench_median; }
pw=$(med "${plain_w[@]}") pc=$(med "${plain_c[@]}") pr=$(med "${plain_r[@]}")
qw=$(med "${per_w[@]}") qc=$(med "${per_c[@]}") qr=$(med "${per_r[@]}")
pr=${pr%.*} qr=${qr%.*}
bench_write_section <<MD
$bundles bundles (\`bench/bundles/make.py\`), one spec each, $captures captures
per spec: **$total_captures captures**; each spec's \`coverage.json\` is the
reporter corpus (\`bench/report/gen_corpus.py\`, $(cat "$work/corpus.txt"))
with its two machines spread over $captures captures. The bundles hold
$inputs_mb MB of JSON in all. $runs runs each, interleaved; medians.

| command | wall (s) | CPU (s) | peak RSS (MB) | runs (wall s) |
|:--|--:|--:|--:|:--|
| \`covnet merge BUNDLE... -o all.info\` | $pw | $pc | $((pr / 1024)) | ${plain_w[*]} |
| \`covnet merge BUNDLE... --per-capture -o all.info\` ($tn test names) | $qw | $qc | $((qr / 1024)) | ${per_w[*]} |

Bundles are read one spec at a time. Without attribution each spec joins
the total at once: the peak is the total plus one spec's coverage,
whatever the number of bundles. With \`--per-capture\` every line carries
a count per capture, so the total grows with the captures (the
per-capture tracefile names $tn of them), and partial totals of equal
size are merged pairwise (a binary counter) so that merging costs
lines x captures per level, not per spec.
MD
