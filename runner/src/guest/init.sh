#!/bin/sh
# covnet stage-1 init (PID 1 of every VM guest), run from the initramfs that
# covnet builds. It mounts the kernel filesystems, loads the virtio modules,
# holds until the host releases it (a VM: see `hold`), unpacks the
# machine's layer from its disk, configures the network from
# /covnet/machine.env, starts the spec's services and then execs the
# control shell. Every wait is for the kernel or the host.
#
# Output goes to /dev/console (ttyS0), which the host logs.

export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root
export TERM=linux

say() { echo "covnet init: $*"; }

mount -t proc -o nosuid,nodev,noexec proc /proc
mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
mount -t devtmpfs -o nosuid,mode=0755 devtmpfs /dev

if [ -r /covnet/machine.env ]; then
	. /covnet/machine.env
else
	say "/covnet/machine.env is missing"
fi

# /run and /tmp get a tmpfs unless the image put files there (the rootfs is
# writable RAM already); both when machine.env does not say.
for d in ${COVNET_TMPFS-/run /tmp}; do
	case $d in /tmp) mode=1777 ;; *) mode=0755 ;; esac
	mount -t tmpfs -o "nosuid,nodev,mode=$mode" tmpfs "$d"
done
mkdir -p /dev/pts /dev/shm /run/covnet /var/log
mount -t devpts -o nosuid,noexec,ptmxmode=0666 devpts /dev/pts
# Ptys (`covnet shell`): a namespace machine's /dev has no ptmx node.
[ -e /dev/ptmx ] || ln -s pts/ptmx /dev/ptmx
ln -sf /proc/self/fd /dev/fd

for m in $COVNET_MODULES; do
	insmod "$m" || say "insmod $m failed"
done

# hold: everything above is the same for every boot of this image, and the
# image (the base) is the same for every machine; what follows makes it
# this machine, now. A VM waits here for the host's
# `<id> GO <unix seconds> <entropy> <layer 0|1>`, answering pings with
# `=covnet hold`, so that the host can save the booted guest once and later
# restore it here as any machine: the machine's files, the clock, the
# entropy pool, the hostname, the MACs and addresses and the services all
# come after the restore.
hold() {
	while :; do
		# End of input: the host is not connected (yet, or any more after a
		# restore): wait for it.
		while IFS=' ' read -r _ op now seed layer <&3; do
			case $op in
			PING) echo "=covnet hold" >&3 ;;
			GO) return 0 ;;
			esac
		done
		sleep 0.02
	done
}

# unpack_layer: the machine's layer, a cpio archive on its read-only disk
# (/dev/vda), over the base; then the base's entries the machine does not
# have (busybox links where a program takes the name) go, and the machine's
# own configuration is read. The disk's pages that the kernel cached while
# probing it were dropped before the hold (a restored guest would hold
# those of the saved machine's disk).
unpack_layer() {
	(cd / && cpio -i -d -u -F /dev/vda) 2>/run/covnet/layer.log || return 1
	if [ -r /covnet/unlink ]; then
		while IFS= read -r p; do
			rm -f "$p"
		done </covnet/unlink
	fi
	. /covnet/machine.env
}

if [ -z "$COVNET_NAMESPACE" ]; then
	port=$(/covnet/control.sh --port)
	if [ -c "$port" ]; then
		export COVNET_CONTROL_DEV="$port"
		# A port can be open only once: closed again before the control
		# shell opens it.
		exec 3<>"$port"
		if [ -b /dev/vda ] && ! blockdev --flushbufs /dev/vda; then
			say "could not drop the cached pages of /dev/vda"
		fi
		hold
		if [ "$layer" = 1 ] && ! unpack_layer; then
			say "the machine's layer could not be unpacked from /dev/vda: $(cat /run/covnet/layer.log)"
			reboot -f
		fi
		exec 3<&-
		date -s "@$now" >/dev/null
		echo "$seed" >/dev/urandom
	else
		say "no control port: nothing to hold on"
	fi
fi

# The hostname by /proc where it can be written (no fork).
if [ -n "$COVNET_NAME" ]; then
	{ echo "$COVNET_NAME" >/proc/sys/kernel/hostname; } 2>/dev/null || hostname "$COVNET_NAME"
fi
ip link set lo up

# iface_by_mac MAC: sets $iface to the interface with that address (no forks).
iface_by_mac() {
	iface=
	for d in /sys/class/net/*; do
		read -r a <"$d/address" 2>/dev/null || continue
		if [ "$a" = "$1" ]; then
			iface=${d##*/}
			return 0
		fi
	done
	return 1
}

i=0
while [ "$i" -lt "${COVNET_NICS:-0}" ]; do
	eval "mac=\$COVNET_NIC${i}_MAC addr=\$COVNET_NIC${i}_ADDR prefix=\$COVNET_NIC${i}_PREFIX"
	# A VM's NIC boots with its slot's MAC and takes the machine's here.
	eval "boot=\${COVNET_NIC${i}_BOOT_MAC:-\$mac}"
	if iface_by_mac "$boot"; then
		if [ "$boot" = "$mac" ]; then
			ip link set dev "$iface" up
		else
			ip link set dev "$iface" address "$mac" up
		fi
		ip addr add "$addr/$prefix" dev "$iface"
	else
		say "no interface with MAC $mac for $addr"
	fi
	i=$((i + 1))
done

if [ -n "$COVNET_FWD_MAC" ]; then
	if iface_by_mac "$COVNET_FWD_MAC"; then
		ip addr add "$COVNET_FWD_ADDR/24" dev "$iface"
		ip link set "$iface" up
	else
		say "no interface with MAC $COVNET_FWD_MAC for port forwards"
	fi
fi

[ -n "$GCOV_PREFIX" ] && mkdir -p "$GCOV_PREFIX"

# Services, in spec order: each in its own session (pid = process group),
# stdin from /dev/null, output appended to /var/log/<name>.log. The service
# script execs its command, so the pid file names the service itself.
for s in $COVNET_SERVICES; do
	name=${s#*-}
	(cd / && exec setsid /bin/sh "/covnet/services/$s.sh") </dev/null >>"/var/log/$name.log" 2>&1 &
	echo $! >"/run/covnet/$name.pid"
done

read -r up _ </proc/uptime
say "${COVNET_NAME:-guest} up after ${up}s"
echo "covnet-init-done"

# The terminal port of `covnet shell` (VMs; a namespace machine's sessions
# are started from the host, inside its namespaces).
if [ -z "$COVNET_NAMESPACE" ] && [ -x /covnet/terminal.sh ]; then
	# Not with `&`: a background job of a shell without job control
	# ignores SIGINT, and so would the session's programs (Ctrl-C).
	start-stop-daemon -S -b -q -x /covnet/terminal.sh
fi

if [ -x /covnet/control.sh ]; then
	exec /covnet/control.sh
fi
say "/covnet/control.sh is missing: falling back to a shell"
if [ -c /dev/hvc0 ]; then
	exec setsid /bin/sh -i </dev/hvc0 >/dev/hvc0 2>&1
fi
exec /bin/sh -i
