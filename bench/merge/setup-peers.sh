#!/usr/bin/env bash
# Installs the peer tools the merge benchmark compares covnet against.
# Idempotent: each tool is only installed when missing or at the wrong version.
#   lcov  : Debian package (the version scripts/setup.sh installs)
#   gcovr : pip, pinned
#   grcov : `cargo install --locked` into a bench-local root (bench/work/tools)
# Usage: bench/merge/setup-peers.sh
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
work=${COVNET_BENCH_WORK:-$here/../work}
mkdir -p "$work/tools"
tools=$(cd "$work/tools" && pwd)

GCOVR_VERSION=${GCOVR_VERSION:-8.8}
GRCOV_VERSION=${GRCOV_VERSION:-0.10.7}

log() { printf 'setup-peers: %s\n' "$*" >&2; }

# lcov (Debian package; provides lcov, genhtml, geninfo)
if ! command -v lcov >/dev/null; then
    log "installing lcov (apt)"
    apt-get install -y --no-install-recommends lcov
fi
log "lcov: $(lcov --version | head -n1)"

# time (GNU /usr/bin/time for peak RSS) and hyperfine are used by run.sh
if [ ! -x /usr/bin/time ]; then
    log "installing GNU time (apt)"
    apt-get install -y --no-install-recommends time
fi

# gcovr (pip, into a bench-local virtualenv so the system python is untouched)
if [ ! -x "$tools/gcovr-venv/bin/gcovr" ] ||
    [ "$("$tools/gcovr-venv/bin/gcovr" --version | head -n1 | awk '{print $2}')" != "$GCOVR_VERSION" ]; then
    log "installing gcovr $GCOVR_VERSION (pip)"
    python3 -m venv "$tools/gcovr-venv"
    "$tools/gcovr-venv/bin/pip" install --quiet "gcovr==$GCOVR_VERSION"
fi
mkdir -p "$tools/bin"
ln -sf "$tools/gcovr-venv/bin/gcovr" "$tools/bin/gcovr"
log "gcovr: $("$tools/bin/gcovr" --version | head -n1)"

# grcov (cargo install; slow on small machines, so nice'd)
if [ ! -x "$tools/bin/grcov" ] ||
    [ "$("$tools/bin/grcov" --version | awk '{print $2}')" != "$GRCOV_VERSION" ]; then
    log "installing grcov $GRCOV_VERSION (cargo install --locked; takes a while)"
    nice -n 10 cargo install grcov --locked --version "$GRCOV_VERSION" --root "$tools" -j 1
fi
log "grcov: $("$tools/bin/grcov" --version)"
