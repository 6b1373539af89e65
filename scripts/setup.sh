#!/usr/bin/env bash
# Installs every system package covnet needs on a fresh Debian 12 machine.
# Idempotent: packages already present are left alone; safe to run twice.
set -euo pipefail

packages=(
  # guests: QEMU, a small fast-to-decompress kernel, static busybox, cpio tools
  qemu-system-x86 qemu-system-data linux-image-cloud-amd64 busybox-static
  # coverage toolchains: GCC 12 (default) and GCC 11 (word-length gcov format)
  gcc g++ gcc-11 g++-11 make
  # LLVM source-based coverage: clang 16 with its profile runtime, and
  # llvm-profdata-16 / llvm-cov-16 as the oracle
  clang-16 libclang-rt-16-dev llvm-16
  # peers and oracles for exactness and benchmarks; python3 also runs
  # Python test scripts (covnet run with a *.py script)
  lcov python3 python3-pip libxml2-utils
  # gcovr 8 (below) lives in a venv of Debian's Python
  python3-venv
  # tests: processes, sockets, network namespaces, browser
  procps iproute2 iputils-ping curl chromium chromium-driver hyperfine time
  # `covnet run --pcap` captures are read back with a real pcap reader
  tcpdump
  # `covnet collect --ssh` is tested against a private sshd on loopback
  openssh-client openssh-server
  # differential coverage: --diff-base and the e2e fixtures' history need git
  git
  # sharded suites are tested under a real Slurm: the test starts its own
  # munged, slurmctld and slurmd on loopback (never the system services)
  slurm-wlm munge
  # blind spots: objdump --dwarf=decodedline is the DWARF tests' oracle;
  # readelf, objcopy and strip make their stripped and split fixtures
  binutils
  # PVH boot: the kernel covnet unpacks from the bzImage is checked
  # against the lz4 tool's unpacking of the same payload
  lz4
  # snapshot tests pin covnet to one or two cores with taskset (Debian
  # ships util-linux on every system; named so a trimmed image gets it)
  util-linux
  # examples/nixos-*: ports of NixOS tests run these Debian daemons and
  # clients in the guests (nginx, Knot DNS with its khost, ss for sshd)
  nginx knot knot-host
  # their scripts are checked against the originals by reverse-applying
  # the recorded diff (nixpkgs' text is not committed)
  patch
  # examples/subversion/build.sh: httpd and Subversion from Debian's source
  # packages (dpkg-source), against Debian's APR, serf and friends
  dpkg-dev libapr1-dev libaprutil1-dev libpcre2-dev libexpat1-dev
  libserf-dev libsqlite3-dev libutf8proc-dev liblz4-dev zlib1g-dev
)

# Root runs commands directly; anyone else through sudo.
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  # Installing must not start system services (an sshd on port 22 of every
  # interface, say): the tests start their own, on loopback only.
  made_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo_cmd[@]}" tee /usr/sbin/policy-rc.d >/dev/null
    "${sudo_cmd[@]}" chmod +x /usr/sbin/policy-rc.d
    made_policy=1
    trap '"${sudo_cmd[@]}" rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [ -z "$made_policy" ] || "${sudo_cmd[@]}" rm -f /usr/sbin/policy-rc.d
  # Nor start them at the next boot: munge and Slurm installed here only
  # serve the tests, which run private daemons (their own munge socket,
  # config and ports). A machine that had them before keeps its setup.
  if [ -d /run/systemd/system ]; then
    for pair in munge:munge slurm-wlm:slurmctld slurm-wlm:slurmd; do
      case " ${missing[*]} " in
        *" ${pair%%:*} "*)
          "${sudo_cmd[@]}" systemctl disable --now "${pair#*:}" >/dev/null 2>&1 || true ;;
      esac
    done
  fi
fi

# The kernel image must be readable by an unprivileged covnet too.
for k in /boot/vmlinuz-*; do
  [ -e "$k" ] && [ ! -r "$k" -o "$(stat -c %a "$k")" = 600 ] && chmod a+r "$k" || true
done

# gcovr 8, from Python's registry: the formats tests check that gcovr reads
# covnet's gcovr JSON and that covnet reads gcovr's. Debian's Python is
# externally managed, so it gets a venv of its own at a fixed path, where the
# tests look for it (then `gcovr` on PATH).
gcovr_venv=/opt/covnet/gcovr
if ! "$gcovr_venv/bin/gcovr" --version 2>/dev/null | head -n 1 | grep -q '^gcovr 8\.'; then
  echo "setup: installing gcovr 8 into $gcovr_venv" >&2
  "${sudo_cmd[@]}" mkdir -p "$(dirname "$gcovr_venv")"
  "${sudo_cmd[@]}" /usr/bin/python3 -m venv "$gcovr_venv"
  "${sudo_cmd[@]}" "$gcovr_venv/bin/pip" install -q --disable-pip-version-check 'gcovr==8.*'
fi

# The test runner README's test command uses (bounded per-test timeouts).
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "setup: installing cargo-nextest" >&2
  cargo install --locked cargo-nextest >/dev/null
fi

echo "setup: ok" >&2
