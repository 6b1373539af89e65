#!/usr/bin/env bash
# Builds the merge-benchmark corpus: the zstd C library bundled in the
# crates.io package zstd-sys (fetched with cargo), compiled with
# `gcc --coverage -O0` into bench/work/build, plus bench/merge/driver.c, then
# run as 50 captures, each into its own GCOV_PREFIX directory
# bench/work/captures/NN/<absolute build path>/...gcda.
# Idempotent: re-running rebuilds the objects and the captures from scratch.
# Usage: bench/merge/corpus.sh
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "${COVNET_BENCH_WORK:-$here/../work}"
work=$(cd "${COVNET_BENCH_WORK:-$here/../work}" && pwd)
ZSTD_SYS_VERSION=${ZSTD_SYS_VERSION:-2.0.16+zstd.1.5.7}
CAPTURES=${CAPTURES:-50}
CC=${CC:-gcc}
jobs=$(nproc)

log() { printf 'corpus: %s\n' "$*" >&2; }

# 1. Fetch the crate through cargo (a throwaway project depending on it).
fetch=$work/fetch
mkdir -p "$fetch/src"
cat >"$fetch/Cargo.toml" <<TOML
[package]
name = "covnet-bench-fetch"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
zstd-sys = "=$ZSTD_SYS_VERSION"

[workspace]
TOML
echo 'fn main() {}' >"$fetch/src/main.rs"
log "cargo fetch zstd-sys $ZSTD_SYS_VERSION"
(cd "$fetch" && cargo fetch --quiet)
crate=$(cd "$fetch" && cargo metadata --format-version 1 --quiet |
    python3 -c 'import json,sys; m=json.load(sys.stdin); print([p["manifest_path"] for p in m["packages"] if p["name"]=="zstd-sys"][0])')
crate=$(dirname "$crate")
[ -d "$crate/zstd/lib" ] || { log "no zstd/lib in $crate"; exit 1; }

src=$work/src/zstd-sys-$ZSTD_SYS_VERSION
rm -rf "$src"
mkdir -p "$src"
cp -r "$crate/zstd/lib" "$crate/zstd/contrib" "$src/"
cp "$here/driver.c" "$src/driver.c"

# 2. Compile every C file of the library with coverage instrumentation.
build=$work/build
rm -rf "$build" "$work/captures"
mkdir -p "$build"
cflags=(-O0 --coverage -g -pthread -DZSTD_MULTITHREAD -DZSTD_LEGACY_SUPPORT=1
    -DZSTD_DISABLE_ASM -DXXH_PRIVATE_API
    -I"$src/lib" -I"$src/lib/common" -I"$src/lib/dictBuilder"
    -I"$src/lib/deprecated" -I"$src/lib/legacy" -I"$src/contrib/seekable_format")
(cd "$src" && find lib contrib -name '*.c' | sort; echo driver.c) >"$work/units.txt"
log "compiling $(wc -l <"$work/units.txt") translation units with $CC --coverage"
while read -r unit; do
    mkdir -p "$build/$(dirname "$unit")"
    printf '%s\0' "$unit"
done <"$work/units.txt" |
    xargs -0 -P "$jobs" -I{} sh -c 'exec "$0" "$@"' "$CC" "${cflags[@]}" \
        -c "$src/{}" -o "$build/{}.o"
# the trailing sh trick above keeps each unit's object at build/<unit>.o
objs=()
while read -r unit; do objs+=("$build/$unit.o"); done <"$work/units.txt"
"$CC" --coverage -pthread -o "$build/driver" "${objs[@]}"

# 3. Run the 50 captures, each with its own GCOV_PREFIX.
log "running $CAPTURES captures"
for ((n = 0; n < CAPTURES; n++)); do
    dir=$(printf '%s/captures/%02d' "$work" "$n")
    mkdir -p "$dir"
    GCOV_PREFIX=$dir "$build/driver" "$n" >"$dir.log"
done
ngcno=$(find "$build" -name '*.gcno' | wc -l)
ngcda=$(find "$work/captures" -name '*.gcda' | wc -l)
nlines=$(xargs -I{} cat "$src/{}" <"$work/units.txt" | wc -l)
log "done: $ngcno .gcno, $ngcda .gcda in $CAPTURES captures, $nlines source lines"
