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
# The corpus is bench/report/gen_corpus.py's (two machines); the baseline is
# the same corpus with every 5th file's counts zeroed (lost coverage to
# find), and the diff inserts two lines into every 5th file (new code).
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

if [ ! -f "$work/corpus/web.info" ] || [ "$(cat "$work/corpus/.size" 2>/dev/null)" != "$files x $lines" ]; then
  rm -rf "$work/corpus"
  python3 bench/report/gen_corpus.py "$work/corpus" --files "$files" --lines-per-file "$lines" | tee "$work/corpus.txt" >&2
  # Baseline: every 5th file's counts zeroed; diff: two lines inserted
  # after line 3 of every 5th file (by name order).
  python3 - "$work/corpus" <<'PY'
import os, re, sys
root = sys.argv[1]
src = os.path.join(root, "src")
names = sorted(os.path.relpath(os.path.join(d, f), root)
               for d, _, fs in os.walk(src) for f in fs)
changed = set(names[::5])
zero = {os.path.join(root, n) for n in names[2::5]}
for machine in ("web", "client"):
    out, sf = [], None
    for line in open(os.path.join(root, f"{machine}.info")):
        if line.startswith("SF:"):
            sf = line[3:].strip()
        elif sf in zero and line.startswith(("DA:", "FNDA:", "BRDA:")):
            if line.startswith("DA:"):
                n, _ = line[3:].strip().split(",", 1)
                line = f"DA:{n},0\n"
            elif line.startswith("FNDA:"):
                _, name = line[5:].strip().split(",", 1)
                line = f"FNDA:0,{name}\n"
            else:
                a = line[5:].strip().split(",")
                if a[3] != "-":
                    a[3] = "0"
                line = "BRDA:" + ",".join(a) + "\n"
        out.append(line)
    open(os.path.join(root, f"base-{machine}.info"), "w").writelines(out)
with open(os.path.join(root, "change.diff"), "w") as d:
    for n in sorted(changed):
        d.write(f"--- a/{n}\n+++ b/{n}\n@@ -3,0 +4,2 @@\n+  x = x + 1;\n+  x = x - 1;\n")
PY
  echo "$files x $lines" > "$work/corpus/.size"
fi
corpus_desc=$(cat "$work/corpus.txt")

# measure NAME CMD...: prints "wall_s cpu_s maxrss_kb".
measure() {
  local name=$1; shift
  local log="$work/$name.time"
  /usr/bin/time -v "$@" >"$work/$name.out" 2>"$log" || { echo "$name failed:" >&2; tail -20 "$log" >&2; exit 1; }
  python3 - "$log" <<'PY'
import sys, re
t = open(sys.argv[1]).read()
def f(label):
    return re.search(re.escape(label) + r"\s*(.+)", t).group(1).strip()
secs = 0.0
for p in f("Elapsed (wall clock) time (h:mm:ss or m:ss):").split(":"):
    secs = secs * 60 + float(p)
cpu = float(f("User time (seconds):")) + float(f("System time (seconds):"))
print(f"{secs:.2f} {cpu:.2f} {int(f('Maximum resident set size (kbytes):'))}")
PY
}

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
