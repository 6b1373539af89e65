#!/bin/sh
# covnet terminal port (VMs only): serves `covnet shell` sessions on the
# virtio-serial port named covnet.terminal, one at a time. init starts it
# in the background before it execs the control shell.
#
# A session: the host connects to the port's socket and sends one line
# "covnet-terminal <TERM>"; from then on it speaks telnet to a busybox
# telnetd in inetd mode on the port. telnetd gives the session a pty
# (window size from the host's NAWS messages) running /covnet/login.sh,
# and ends when every program on the pty has closed it (not -K, which
# can drop the last output, the exit status) or when the host disconnects
# (the port then reads end of file, and the session's shell gets SIGHUP). While no
# host is connected a read of the port ends at once: look once a second.

dev=
n=0
while [ -z "$dev" ] && [ "$n" -lt 100 ]; do
	for f in /sys/class/virtio-ports/*/name; do
		read -r name <"$f" 2>/dev/null || continue
		if [ "$name" = covnet.terminal ]; then
			d=${f%/name}
			[ -c "/dev/${d##*/}" ] && dev=/dev/${d##*/}
		fi
	done
	[ -n "$dev" ] || sleep 0.1
	n=$((n + 1))
done
if [ -z "$dev" ]; then
	echo "covnet terminal: no virtio port named covnet.terminal" >&2
	exit 1
fi
exec <>"$dev" >&0 2>/dev/null
while :; do
	if IFS=' ' read -r word term && [ "$word" = covnet-terminal ]; then
		TERM=${term:-vt100} telnetd -i -f /dev/null -l /covnet/login.sh
	else
		sleep 1
	fi
done
