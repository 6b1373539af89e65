#!/usr/bin/env bash
# Scale: the e2e tests `scale::ten_namespace_machines_serve_and_fetch` and
# `scale::ten_vms_serve_and_fetch` (tests/tests/e2e/scale.rs): ten machines
# each serving a page, `m1` fetching all ten by host name, covnet's and the
# QEMUs' resident memory sampled every 100 ms. Runs each RUNS times, one
# after the other, and writes the "scale" section of bench/RESULTS.md.
#   bash bench/scale/run.sh [--allow-dirty] [RUNS]
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
bench_init scale "Scale: ten machines" "$@"
set -- "${BENCH_ARGS[@]}"
runs=${1:-2}
exe=$(bench_e2e_binary)
[ -x "$exe" ] || bench_die "could not build the e2e test binary"
bench_version built "debug e2e test binary and covnet (cargo test -p covnet-tests --test e2e --no-run)"
bench_version QEMU "$(bench_qemu_version)"
bench_version "guest kernel" "$(bench_guest_kernel)"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for t in ten_namespace_machines_serve_and_fetch ten_vms_serve_and_fetch; do
  for i in $(seq "$runs"); do
    "$exe" --exact "scale::$t" --nocapture >"$out/log" 2>&1 || { cat "$out/log" >&2; bench_die "scale::$t failed"; }
    line=$(grep '^scale: ' "$out/log") || { cat "$out/log" >&2; bench_die "no result line"; }
    printf '%s\n' "$line" | tee -a "$out/runs" >&2
  done
done
python3 - "$out/runs" <<'PY' | bench_write_section
import re, sys
rows = {}
for line in open(sys.argv[1]):
    m = re.match(r"scale: (\d+) (\S+) machines, ([\d.]+)s wall, covnet peak VmRSS (\d+) KiB, "
                 r"QEMUs' peak VmRSS together (\d+) KiB", line)
    n, b, wall, rss, qemu = m.groups()
    rows.setdefault(b, []).append((float(wall), int(rss), int(qemu), int(n)))
print("Ten machines `m1`..`m10`, each running `busybox httpd` with its own page; the script "
      "waits for every service, then `m1` fetches all ten pages by host name with `wget`. The "
      "test samples covnet's `VmRSS` and every QEMU's `VmRSS` every 100 ms, checks every "
      "QEMU's `-m` argument against the spec (`memory_mib = 128`) and asserts covnet stays "
      "under 200 MiB. TCG; debug build of `covnet`, as CI runs it.")
print()
print("| network | wall (whole `covnet run`), each run | covnet peak VmRSS | QEMUs' peak VmRSS, together |")
print("|---|---:|---:|---:|")
for b, label in (("namespace", "10 namespace machines"), ("vm", "10 TCG VMs, `memory_mib = 128`")):
    v = rows[b]
    walls = ", ".join(f"{w:.1f} s" for w, *_ in v)
    rss = "–".join(sorted({f"{r / 1024:.0f}" for _, r, _, _ in v}, key=float)) + " MiB"
    q = max(x for _, _, x, _ in v)
    qs = "—" if q == 0 else f"{q / 1048576:.2f} GiB (≈ {q / 1024 / v[0][3]:.0f} MiB per VM)"
    print(f"| {label} | {walls} | {rss} | {qs} |")
print()
print("Each QEMU's resident size for a 128 MiB guest is guest RAM the kernel touched plus "
      "TCG's translation cache and QEMU itself; with KVM the translation cache goes away.")
PY
