#!/usr/bin/env bash
# Boot time of a NixOS-style full-distribution guest, for comparison with
# covnet's initramfs guests: a debootstrapped Debian 12 (minbase + systemd +
# udev, 263 MB) on a virtio disk, the same host kernel and Debian's own
# initrd, under the same QEMU/TCG, timed from spawning QEMU until a unit
# after multi-user.target prints a marker on ttyS0.
#   bash bench/vm/fulldistro.sh [RUNS]      (needs root for debootstrap)
set -euo pipefail
runs=${1:-3}
work=${WORK:-bench/work/fulldistro}
kernel=$(ls /boot/vmlinuz-*-cloud-amd64 | sort -V | tail -1)
initrd=/boot/initrd.img-${kernel#/boot/vmlinuz-}
mkdir -p "$work"
if [ ! -f "$work/disk.img" ]; then
  command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap >/dev/null
  root="$work/root"
  debootstrap --variant=minbase --include=systemd-sysv,udev bookworm "$root" http://deb.debian.org/debian >/dev/null
  cat > "$root/etc/systemd/system/booted.service" <<'UNIT'
[Unit]
Description=Announce a finished boot on the serial console
After=multi-user.target

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'echo FULLDISTRO-BOOTED > /dev/ttyS0'

[Install]
WantedBy=multi-user.target
UNIT
  ln -sf /etc/systemd/system/booted.service "$root/etc/systemd/system/multi-user.target.wants/booted.service"
  echo '/dev/vda / ext4 rw 0 1' > "$root/etc/fstab"
  mke2fs -q -t ext4 -d "$root" "$work/disk.img" 1G
fi
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for i in $(seq "$runs"); do
  log=$(mktemp)
  start=$(date +%s.%N)
  qemu-system-x86_64 -nodefaults -no-user-config -display none -machine pc -accel tcg,thread=multi \
    -m 512 -smp 1 -kernel "$kernel" -initrd "$initrd" \
    -append "root=/dev/vda rw console=ttyS0 quiet" \
    -drive file="$work/disk.img",if=virtio,format=raw,snapshot=on \
    -serial file:"$log" -no-reboot 2>/dev/null &
  pid=$!
  deadline=$(( $(date +%s) + 300 ))
  until grep -q FULLDISTRO-BOOTED "$log" 2>/dev/null; do
    kill -0 $pid 2>/dev/null || { echo "qemu exited early"; tail -20 "$log"; exit 1; }
    [ "$(date +%s)" -lt "$deadline" ] || { kill $pid; echo timeout; exit 1; }
    sleep 0.05
  done
  end=$(date +%s.%N)
  kill $pid; wait $pid 2>/dev/null || true
  rm -f "$log"
  awk -v i="$i" -v a="$start" -v b="$end" 'BEGIN{printf "full distribution run %d: %.2fs\n", i, b-a}'
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
