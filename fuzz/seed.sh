#!/usr/bin/env bash
# Builds the seed corpora of every fuzz target from the project's test
# fixtures, at run time (nothing here is committed):
#   gcno, gcda      tests/fixtures/c compiled with gcc and gcc-11 --coverage
#                   at -O0 and -O2 (C and C++), run, .gcno/.gcda copied
#   lcov            `lcov --capture` of those runs (with branches), plus
#                   covnet's own V1/V2 and per-capture tracefiles
#   json_model      `covnet merge --json` of the same captures
#   spec            examples/*/spec.toml and the toml blocks of docs/spec.md
#   console_frames  replies framed as guest/control.sh frames them
#   tar             the capture trees archived by busybox tar and GNU tar
#                   (gnu, ustar, pax)
#   dwarf           the fixtures' objects and programs (built with -g), and
#                   -gz and DWARF 4 objects of the C fixtures
# plus everything in fuzz/regressions/<target>/.
#
# Usage: fuzz/seed.sh [CORPUS_DIR]   (default: fuzz/corpus)
# Needs gcc, g++, gcc-11, g++-11, lcov, busybox, tar, base64 and a built
# covnet (cargo build -p covnet-runner); fails loudly when one is missing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
out="${1:-$here/corpus}"
fixtures="$root/tests/fixtures/c"

for tool in gcc g++ gcc-11 g++-11 lcov busybox tar base64; do
    command -v "$tool" >/dev/null || { echo "seed.sh: $tool is required" >&2; exit 1; }
done
covnet="$root/target/debug/covnet"
[ -x "$covnet" ] || (cd "$root" && cargo build -q -p covnet-runner)

work="$(mktemp -d -t covnet-seed-XXXXXX)"
trap 'rm -rf "$work"' EXIT
for t in gcno gcda lcov json_model spec console_frames tar dwarf; do
    mkdir -p "$out/$t"
done

n=0
# build CC CXX GCOV LABEL OPT: compiles the C and C++ fixtures, runs them
# into captures, and copies notes, data, tracefiles and archives.
build() {
    local cc="$1" cxx="$2" gcov="$3" label="$4" opt="$5"
    local dir="$work/$label$opt"
    mkdir -p "$dir/src" "$dir/obj" "$dir/cobj"
    cp "$fixtures"/* "$dir/src/"
    (
        cd "$dir"
        for s in main util oneline extra; do
            "$cc" --coverage "$opt" -g -Isrc -c "src/$s.c" -o "obj/$s.o"
        done
        "$cc" --coverage -o cprog obj/*.o
        "$cxx" --coverage "$opt" -g -Isrc -c src/cxx.cc -o cobj/cxx.o
        "$cxx" --coverage -o cxxprog cobj/cxx.o
        for args in "loop 3" "loop2 4" "none 1"; do
            # shellcheck disable=SC2086
            (timeout 20 ./cprog $args >/dev/null 2>&1; true) 2>/dev/null
        done
        for args in 4 7 "5 uncaught" 0; do
            # shellcheck disable=SC2086
            (timeout 20 ./cxxprog $args >/dev/null 2>&1; true) 2>/dev/null
        done
    )
    for f in "$dir"/obj/*.gcno "$dir"/cobj/*.gcno; do
        cp "$f" "$out/gcno/$label$opt-$(basename "$f")"
    done
    for f in "$dir"/obj/*.gcda "$dir"/cobj/*.gcda; do
        cp "$f" "$out/gcda/$label$opt-$(basename "$f")"
    done
    lcov --quiet --capture --directory "$dir" --gcov-tool "$gcov" \
        --rc lcov_branch_coverage=1 --output-file "$out/lcov/$label$opt.info" \
        >/dev/null 2>&1 || { echo "seed.sh: lcov --capture failed for $label$opt" >&2; exit 1; }
    "$covnet" merge --build "$dir" "$dir" -o "$out/lcov/$label$opt-covnet-v1.info" \
        --json "$out/json_model/$label$opt.json" >/dev/null 2>&1
    "$covnet" merge --build "$dir" "$dir" -o "$out/lcov/$label$opt-covnet-v2.info" \
        --lcov-format 2 --per-capture >/dev/null 2>&1
    # Archives of the data files only (what guests send back).
    local gcdas="$work/gcdas-$label$opt"
    mkdir -p "$gcdas"
    (cd "$dir" && find . -name '*.gcda' -exec cp --parents {} "$gcdas/" \;)
    busybox tar -cf "$out/tar/$label$opt-busybox.tar" -C "$gcdas" .
    tar --format=gnu -cf "$out/tar/$label$opt-gnu.tar" -C "$gcdas" .
    tar --format=ustar -cf "$out/tar/$label$opt-ustar.tar" -C "$gcdas" .
    tar --format=pax -cf "$out/tar/$label$opt-pax.tar" -C "$gcdas" .
    cp "$dir/cprog" "$out/dwarf/$label$opt-cprog"
    for f in "$dir"/obj/*.o; do
        cp "$f" "$out/dwarf/$label$opt-$(basename "$f")"
    done
    for flags in "-gz" "-gdwarf-4"; do
        "$cc" "$opt" -g "$flags" -I"$dir/src" -c "$dir/src/util.c" \
            -o "$out/dwarf/$label$opt$flags-util.o"
    done
    n=$((n + 1))
}

build gcc g++ gcov gcc12 -O0
build gcc g++ gcov gcc12 -O2
build gcc-11 g++-11 gcov-11 gcc11 -O0

# Specs: the examples and every ```toml block of docs/spec.md.
for f in "$root"/examples/*/spec.toml; do
    cp "$f" "$out/spec/$(basename "$(dirname "$f")").toml"
done
awk -v dir="$out/spec" '
    /^```toml/ { k++; file = dir "/doc-" k ".toml"; inblock = 1; next }
    /^```/ { inblock = 0; next }
    inblock { print > file }
' "$root/docs/spec.md"

# Framed replies as control.sh writes them (base64 in 76-column lines).
frame() {
    local id="$1" status="$2" out="$3" err="$4"
    printf '=covnet %s out\n' "$id"
    printf '%s' "$out" | base64
    printf '=covnet %s err\n' "$id"
    printf '%s' "$err" | base64
    printf '=covnet %s end %s\n' "$id" "$status"
}
cf="$out/console_frames"
frame 1 0 "hello" "" >"$cf/simple"
{ printf '1 EXEC ZWNobw==\r\n'; frame 0 5 stale ""; frame 1 7 fresh "warn"; } >"$cf/stale"
head -c 3000 /dev/urandom >"$work/blob"
frame 1 1 "$(head -c 2000 "$work/blob" | base64 -w0)" "oops" >"$cf/long"
printf '=covnet 0 end 0\n=covnet 1 out\n!!!\n=covnet 1 end 0\n' >"$cf/bad-base64"
printf '=covnet 1 end x\n' >"$cf/bad-status"

# The regression corpus joins the seeds.
for t in gcno gcda lcov json_model spec console_frames tar dwarf; do
    if [ -d "$here/regressions/$t" ]; then
        cp "$here/regressions/$t"/* "$out/$t/" 2>/dev/null || true
    fi
done

for t in gcno gcda lcov json_model spec console_frames tar dwarf; do
    printf '%-15s %4d files %8d bytes\n' "$t" "$(find "$out/$t" -type f | wc -l)" \
        "$(find "$out/$t" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')"
done
