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
# host is connected a read of the port ends at once: look once a second,
# waiting with a timed read of a FIFO nobody writes (the shell's own
# `read -t`: `sleep` would fork a process every second, which costs an
# idle TCG guest about a percent of a host core).

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
idle=/run/covnet/terminal.idle
mkfifo -m 600 "$idle" 2>/dev/null
# Read-write: opening a FIFO so does not wait for a writer.
if ! exec 4<>"$idle"; then
	# No FIFO: wait by the clock instead.
	exec 4</dev/null
	nap() { sleep 1; }
else
	nap() { read -r -t 1 _ <&4; }
fi
exec <>"$dev" >&0 2>/dev/null
while :; do
	if IFS=' ' read -r word term && [ "$word" = covnet-terminal ]; then
		TERM=${term:-vt100} telnetd -i -f /dev/null -l /covnet/login.sh 4<&-
	else
		nap
	fi
done
