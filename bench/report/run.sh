#!/usr/bin/env bash
# Reporter benchmark: `covnet report --html` against lcov's `genhtml` on a
# synthetic corpus (>= 2000 source files, >= 1,000,000 instrumented lines,
# two machines). Measures wall time, CPU time and peak memory with
# /usr/bin/time -v and writes the "## Reporter" section of bench/RESULTS.md
# (other sections are left alone).
#
# usage: bench/report/run.sh [WORKDIR]      (default: bench/work/report)
# env:   COVNET=path/to/covnet  (default: build target/release/covnet)
#        FILES=2000 LINES_PER_FILE=750  (corpus size)
#        GCOVR=0  skips gcovr (it needs ~8 min and ~11 GB here)
#
# gcovr (`pip install gcovr`) reads gcov's outputs or its own JSON, not lcov
# tracefiles: lcov_to_gcovr.py converts the corpus first (not timed).
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)
work=${1:-bench/work/report}
files=${FILES:-2000}
lines=${LINES_PER_FILE:-750}
mkdir -p "$work"
work=$(cd "$work" && pwd)

if [ -z "${COVNET:-}" ]; then
  cargo build --release --locked -p covnet-runner --bin covnet >&2
  COVNET=$repo/target/release/covnet
fi
command -v genhtml >/dev/null || { echo "genhtml missing (hint: bash scripts/setup.sh installs lcov)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "/usr/bin/time missing (hint: bash scripts/setup.sh installs time)" >&2; exit 1; }

if [ ! -f "$work/corpus/web.info" ] || [ "$(cat "$work/corpus/.size" 2>/dev/null)" != "$files x $lines" ]; then
  rm -rf "$work/corpus"
  python3 bench/report/gen_corpus.py "$work/corpus" --files "$files" --lines-per-file "$lines" | tee "$work/corpus.txt" >&2
  echo "$files x $lines" > "$work/corpus/.size"
fi
corpus_desc=$(cat "$work/corpus.txt")

# measure NAME CMD...: runs CMD under /usr/bin/time -v, prints
# "wall_s cpu_s maxrss_kb".
measure() {
  local name=$1; shift
  local log="$work/$name.time"
  /usr/bin/time -v "$@" >"$work/$name.out" 2>"$log" || { echo "$name failed:" >&2; tail -20 "$log" >&2; exit 1; }
  python3 - "$log" <<'PY'
import sys, re
t = open(sys.argv[1]).read()
def f(label):
    return re.search(re.escape(label) + r"\s*(.+)", t).group(1).strip()
wall = f("Elapsed (wall clock) time (h:mm:ss or m:ss):")
parts = [float(p) for p in wall.split(":")]
secs = 0.0
for p in parts:
    secs = secs * 60 + p
cpu = float(f("User time (seconds):")) + float(f("System time (seconds):"))
rss = int(f("Maximum resident set size (kbytes):"))
print(f"{secs:.2f} {cpu:.2f} {rss}")
PY
}

cd "$work/corpus"
rm -rf out-covnet out-covnet-1t out-genhtml
read -r c_wall c_cpu c_rss < <(measure covnet "$COVNET" report web.info client.info --html out-covnet)
read -r c1_wall c1_cpu c1_rss < <(measure covnet-1t env RAYON_NUM_THREADS=1 "$COVNET" report web.info client.info --html out-covnet-1t)
read -r g_wall g_cpu g_rss < <(measure genhtml genhtml --quiet --branch-coverage -o out-genhtml web.info client.info)
c_size=$(du -sm out-covnet | cut -f1)
g_size=$(du -sm out-genhtml | cut -f1)
gcovr_row="| gcovr | not run (GCOVR=0 or gcovr not installed: pip install gcovr) | | | |"
gcovr_ratio=""
if [ "${GCOVR:-1}" != 0 ] && command -v gcovr >/dev/null; then
  for t in web client; do
    [ -f "$t.gcovr.json" ] || python3 "$repo/bench/report/lcov_to_gcovr.py" "$t.info" "$t.gcovr.json"
  done
  rm -rf out-gcovr && mkdir out-gcovr
  read -r r_wall r_cpu r_rss < <(measure gcovr gcovr --add-tracefile web.gcovr.json --add-tracefile client.gcovr.json --html-details out-gcovr/index.html --root "$(pwd)")
  r_size=$(du -sm out-gcovr | cut -f1)
  gcovr_row="| \`gcovr --html-details\` ($(gcovr --version | head -1)), JSON input | $r_wall | $r_cpu | $((r_rss / 1024)) | $r_size |"
  gcovr_ratio=" and **$(python3 -c "print(f'{$r_wall / $c_wall:.0f}')")x** faster than gcovr"
fi
cd "$repo"

ratio() { python3 -c "print(f'{$1 / $2:.1f}')"; }
section=$(cat <<MD
## Reporter

\`bench/report/run.sh\` — $(date -u +%Y-%m-%d), $(nproc) cores, load average at start $(cut -d' ' -f1 /proc/loadavg).
Corpus (\`gen_corpus.py\`, fixed seed): $corpus_desc; two tracefiles
(two machines), sources on disk; every tool renders every source file.

| tool | wall (s) | CPU (s) | peak RSS (MB) | output (MB) |
|:--|--:|--:|--:|--:|
| \`covnet report --html\` | $c_wall | $c_cpu | $((c_rss / 1024)) | $c_size |
| \`covnet report --html\`, 1 thread | $c1_wall | $c1_cpu | $((c1_rss / 1024)) | |
| \`genhtml --branch-coverage\` (lcov $(genhtml --version | grep -o '[0-9][0-9.]*' | head -1)) | $g_wall | $g_cpu | $((g_rss / 1024)) | $g_size |
$gcovr_row

covnet is **$(ratio "$g_wall" "$c_wall")x** faster than genhtml in wall time
($(ratio "$g_wall" "$c1_wall")x on one thread, $(ratio "$g_cpu" "$c_cpu")x in CPU time)$gcovr_ratio.
covnet's time includes reading and merging both tracefiles (the merger's
lcov reader); its peak memory is that merged model. gcovr cannot read lcov
tracefiles: \`lcov_to_gcovr.py\` converts them to gcovr's JSON first
(untimed). The machine is shared (2 cores): wall times vary with the load
shown above; CPU times are steadier.
MD
)

results=bench/RESULTS.md
[ -f "$results" ] || printf '# Benchmarks\n\n' > "$results"
python3 - "$results" "$section" <<'PY'
import sys, re
path, section = sys.argv[1], sys.argv[2].rstrip("\n") + "\n"
text = open(path).read()
m = re.search(r"^## Reporter\n.*?(?=^## |\Z)", text, flags=re.S | re.M)
if m:
    text = text[:m.start()] + section + "\n" + text[m.end():].lstrip("\n")
else:
    text = text.rstrip("\n") + "\n\n" + section
open(path, "w").write(text)
PY
echo "$section"
