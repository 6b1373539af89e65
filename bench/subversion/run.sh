#!/usr/bin/env bash
# The Subversion example (examples/subversion): httpd + mod_dav_svn and the
# svn client built from Debian's source packages with --coverage, run by
# `covnet run --coverage` on two VMs and on two namespace machines.
# Measures the build cold (a fresh cache: download, verify, configure,
# make, install) and cached (the same sources again), one run per backend
# (wall time, the run's own phases as covnet prints them) and
# `covnet report` over the two machines' pulled captures; writes the
# "subversion" section of bench/RESULTS.md.
#   bash bench/subversion/run.sh [--allow-dirty]        (needs root for apt)
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
bench_init subversion "Subversion: httpd and svn from Debian's sources, built and run" "$@"
set -- "${BENCH_ARGS[@]}"
bench_build_covnet release
bench_version gcc "$(bench_gcc_version)"
bench_version QEMU "$(bench_qemu_version)"
bench_version "guest kernel" "$(bench_guest_kernel)"

work=$BENCH_ROOT/bench/work/subversion
rm -rf "$work"
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT
export COVNET_SVN_CACHE=$work/cache

# The build writes the symlink examples/subversion/build: keep the user's.
link=$BENCH_ROOT/examples/subversion/build
saved=$(readlink "$link" 2>/dev/null || true)
restore() { if [ -n "$saved" ]; then ln -sfn "$saved" "$link"; else rm -f "$link"; fi; rm -rf "$work"; }
trap restore EXIT

read -r cold_wall cold_cpu _ < <(bench_measure "$work" build-cold bash examples/subversion/build.sh)
read -r cached_wall _ _ < <(bench_measure "$work" build-cached bash examples/subversion/build.sh)
build=$(readlink -f "$link")
versions=$(grep -o 'sources: .*' "$work/build-cold.time" | head -n1)
fallback=$(grep -o 'WARNING: .*' "$work/build-cold.time" | head -n1 || true)
gcno=$(find "$build/src" -name '*.gcno' | wc -l)
size=$(du -sh "$build" | cut -f1)

spec_dir=$work/example
mkdir -p "$spec_dir"
cp examples/subversion/{test.rhai,httpd.conf,start-httpd.sh} "$spec_dir/"
ln -s "$build" "$spec_dir/build"
cp examples/subversion/spec.toml "$spec_dir/spec.toml"
grep -v '^forward = ' examples/subversion/spec.toml >"$spec_dir/spec-ns.toml"

rows=""
for backend in vm namespace; do
  if [ "$backend" = vm ]; then spec=$spec_dir/spec.toml; else spec=$spec_dir/spec-ns.toml; fi
  read -r wall _ _ < <(bench_measure "$work" "run-$backend" \
    "$BENCH_COVNET" run --coverage --no-console --out "$work/out-$backend" "$spec" --backend "$backend")
  read -r rwall _ rss < <(bench_measure "$work" "report-$backend" \
    "$BENCH_COVNET" report "$work/out-$backend/coverage/server" "$work/out-$backend/coverage/client" \
    --html "$work/report-$backend" --lcov "$work/report-$backend.info")
  lines=$("$BENCH_COVNET" summary "$work/report-$backend.info" | grep -i 'lines' | head -n1 | sed 's/^ *//')
  gcda=$(find "$work/out-$backend/coverage" -name '*.gcda' | wc -l)
  rows+="| $backend | $wall | $gcda | $rwall | $((rss / 1024)) | $lines |"$'\n'
done

bench_write_section <<MD
\`examples/subversion\`: \`build.sh\` into a fresh cache (\`COVNET_SVN_CACHE\`), then again
(cached), then \`covnet run --coverage\` of the example on each backend (the namespace run
uses the spec without its VM-only \`forward\` line) and \`covnet report\` (HTML and lcov)
over the run's two machine captures. Build: ${versions}${fallback:+; ${fallback}}.
$gcno \`.gcno\` files; the build directory (sources, notes, prefix) is $size.

| build | wall (s) | CPU (s) |
|:--|--:|--:|
| cold (download, verify, configure, make -j$(nproc), install) | $cold_wall | $cold_cpu |
| cached (same sources: checksums looked up, nothing built) | $cached_wall | |

| backend | covnet run --coverage wall (s) | .gcda pulled | covnet report wall (s) | report max RSS (MiB) | lines |
|:--|--:|--:|--:|--:|:--|
$rows
MD
