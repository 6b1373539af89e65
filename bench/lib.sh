# Shared by every benchmark script (sourced, not run). It records what a
# result depends on and writes the script's section of bench/RESULTS.md:
#
#   . "$(dirname "$0")/../lib.sh"
#   bench_init NAME "Title" "$@"; set -- "${BENCH_ARGS[@]}"
#   bench_version "QEMU" "$(bench_qemu_version)"     # recorded in the header
#   ... measure ...
#   bench_write_section <body.md                     # splices the section
#
# bench_init cds to the repository root, takes `--allow-dirty` out of the
# arguments (the rest are left in BENCH_ARGS), records the commit (`git
# rev-parse HEAD`), the date, nproc, the CPU, the host kernel and the load
# average, and refuses a tree with uncommitted changes unless
# `--allow-dirty` was given (the section then says "dirty tree").
# bench/RESULTS.md itself is not counted: it is what the scripts write.
# Every version is discovered at run time; nothing here names one.
#
# The section lies between `<!-- bench:NAME begin -->` and
# `<!-- bench:NAME end -->`; only that part of RESULTS.md is replaced (the
# section is appended when the markers are missing). Its header says the
# exact command that regenerates it.

BENCH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_RESULTS=$BENCH_ROOT/bench/RESULTS.md
BENCH_VERSIONS=()

bench_log() { printf '%s: %s\n' "${BENCH_NAME:-bench}" "$*" >&2; }
bench_die() { bench_log "$*"; exit 1; }

# bench_init NAME TITLE ARGS...: see above.
bench_init() {
  BENCH_NAME=$1 BENCH_TITLE=$2
  shift 2
  local script=${0#"$BENCH_ROOT"/} a
  BENCH_ALLOW_DIRTY=0
  BENCH_ARGS=()
  for a in "$@"; do
    if [ "$a" = --allow-dirty ]; then BENCH_ALLOW_DIRTY=1; else BENCH_ARGS+=("$a"); fi
  done
  BENCH_CMD="bash $script"
  for a in "${BENCH_ARGS[@]}"; do BENCH_CMD+=" $(printf '%q' "$a")"; done
  cd "$BENCH_ROOT"
  BENCH_COMMIT=$(git rev-parse HEAD) || bench_die "not a git checkout: $BENCH_ROOT"
  BENCH_DIRTY=$(git status --porcelain -- . ':(exclude)bench/RESULTS.md')
  if [ -n "$BENCH_DIRTY" ]; then
    [ "$BENCH_ALLOW_DIRTY" = 1 ] || bench_die "uncommitted changes (commit them, or pass --allow-dirty to mark the section \"dirty tree\"):
$BENCH_DIRTY"
    bench_log "dirty tree: the section will say so"
  fi
  BENCH_DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
  BENCH_LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
  BENCH_NPROC=$(nproc)
  BENCH_CPU=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)
  BENCH_HOST_KERNEL=$(uname -r)
  BENCH_MEM_GIB=$(awk '/^MemTotal:/ { printf "%.0f", $2 / 1048576 }' /proc/meminfo)
  bench_log "commit $BENCH_COMMIT, load average $BENCH_LOAD_BEFORE"
}

# bench_version LABEL VALUE: recorded in the section's header.
bench_version() { BENCH_VERSIONS+=("$1: $2"); }

# The kernel covnet boots by default, chosen as Kernel::host_default does:
# the newest /boot/vmlinuz-*, `-cloud-` ones first. Prints its release.
bench_guest_kernel() {
  local v
  for v in /boot/vmlinuz-*; do
    [ -e "$v" ] || continue
    v=${v#/boot/vmlinuz-}
    case $v in *-cloud-*) printf '0\t%s\n' "$v" ;; *) printf '1\t%s\n' "$v" ;; esac
  done | sort -t$'\t' -k1,1n -k2,2rV | head -n1 | cut -f2
}
bench_qemu_version() { qemu-system-x86_64 --version | sed -n '1s/^QEMU emulator version //p'; }
bench_gcc_version() { gcc -dumpfullversion; }
bench_lcov_version() { lcov --version | sed -n 's/.*LCOV version //p' | head -n1; }
bench_busybox_version() { busybox 2>&1 | sed -n '1s/^BusyBox \(v[^ ]*\).*/\1/p'; }
bench_python_version() { python3 -c 'import platform; print(platform.python_version())'; }

# bench_build_covnet release|debug [TARGET...]: builds the binary or example
# of this tree (so it is the recorded commit's code) and records `covnet
# --version`. Extra arguments go to cargo (default: `--bin covnet`).
bench_build_covnet() {
  local profile=$1
  shift
  local args=(-p covnet-runner)
  [ "$profile" = release ] && args+=(--release)
  [ $# -gt 0 ] || set -- --bin covnet
  cargo build -q --locked "${args[@]}" "$@" >&2 || bench_die "cargo build failed"
  BENCH_COVNET=$BENCH_ROOT/target/$profile/covnet
  if [ "$*" = "--bin covnet" ]; then
    bench_version covnet "$("$BENCH_COVNET" --version | head -n1), $profile build"
  else
    bench_version built "$profile build of covnet-runner $*"
  fi
}

# median of the numbers on stdin, one a line
bench_median() {
  sort -g | awk '{ v[NR] = $1 } END {
    if (NR == 0) exit 1
    if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# bench_write_section < BODY: the body (markdown without the title) goes
# under a generated header into the NAME section of RESULTS.md.
bench_write_section() {
  local body tree versions v
  body=$(cat)
  BENCH_LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
  if [ -n "$BENCH_DIRTY" ]; then
    tree="**dirty tree** (uncommitted changes on top of it: not reproducible from the commit)"
  else
    tree="clean tree"
  fi
  versions=""
  for v in "${BENCH_VERSIONS[@]}"; do versions+="${versions:+; }$v"; done
  local section
  section=$(
    printf '<!-- bench:%s begin -->\n' "$BENCH_NAME"
    printf '## %s\n\n' "$BENCH_TITLE"
    printf 'Regenerate: `%s` (writes this section only).\n\n' "$BENCH_CMD"
    printf -- '- Commit `%s`, %s; measured %s.\n' "$BENCH_COMMIT" "$tree" "$BENCH_DATE"
    printf -- '- Machine: %s cores (%s), %s GiB, host kernel %s; shared with other work.\n' \
      "$BENCH_NPROC" "$BENCH_CPU" "$BENCH_MEM_GIB" "$BENCH_HOST_KERNEL"
    printf -- '- Load average (1, 5, 15 min): %s before, %s after.\n' \
      "$BENCH_LOAD_BEFORE" "$BENCH_LOAD_AFTER"
    [ -z "$versions" ] || printf -- '- Versions (found at run time): %s.\n' "$versions"
    printf '\n%s\n' "$body"
    printf '<!-- bench:%s end -->\n' "$BENCH_NAME"
  )
  python3 - "$BENCH_RESULTS" "$BENCH_NAME" "$section" <<'PY'
import os, sys
path, name, section = sys.argv[1], sys.argv[2], sys.argv[3].rstrip("\n") + "\n"
begin, end = f"<!-- bench:{name} begin -->", f"<!-- bench:{name} end -->"
text = open(path, encoding="utf-8").read() if os.path.exists(path) else "# Benchmarks\n"
i = text.find(begin)
if i >= 0:
    j = text.find(end, i)
    if j < 0:
        sys.exit(f"{path}: {begin} without {end}")
    j += len(end)
    if text[j:j + 1] == "\n":
        j += 1
    text = text[:i] + section + text[j:]
else:
    text = text.rstrip("\n") + "\n\n" + section
open(path, "w", encoding="utf-8").write(text)
PY
  bench_log "wrote section $BENCH_NAME of bench/RESULTS.md"
  printf '%s\n' "$section"
}

# bench_e2e_binary: builds the e2e test binary of this tree (debug, as CI
# runs it) and prints its path.
bench_e2e_binary() {
  cargo test -q --locked -p covnet-tests --test e2e --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json, sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "e2e":
        print(m["executable"])' | tail -n1
}

# bench_measure DIR NAME CMD...: runs CMD under /usr/bin/time -v (stdout to
# DIR/NAME.out, the timing log to DIR/NAME.time) and prints
# "wall_s cpu_s maxrss_kb"; fails showing the log's tail.
bench_measure() {
  local dir=$1 name=$2; shift 2
  local log="$dir/$name.time"
  /usr/bin/time -v "$@" >"$dir/$name.out" 2>"$log" || { echo "$name failed:" >&2; tail -20 "$log" >&2; exit 1; }
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

# bench_report_corpus DIR FILES LINES: the reporter corpus
# (bench/report/gen_corpus.py, fixed seed) in DIR/corpus, made again only
# when its size changed; its description in DIR/corpus.txt.
bench_report_corpus() {
  local dir=$1 files=$2 lines=$3
  if [ ! -f "$dir/corpus/web.info" ] || [ "$(cat "$dir/corpus/.size" 2>/dev/null)" != "$files x $lines" ]; then
    rm -rf "$dir/corpus"
    python3 "$BENCH_ROOT/bench/report/gen_corpus.py" "$dir/corpus" --files "$files" --lines-per-file "$lines" | tee "$dir/corpus.txt" >&2
    echo "$files x $lines" > "$dir/corpus/.size"
  fi
}
