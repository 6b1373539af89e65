#!/bin/sh
# covnet control shell: serves framed requests from the host on the
# virtio-serial port named covnet.control (/dev/vport0p1). init execs it
# last, so it normally runs as PID 1 and must never exit.
#
# The port is a plain, flow-controlled virtio-serial port, not the hvc0
# console: QEMU drops console output whenever the host socket is
# momentarily full, and a tty would also need raw mode.
#
# Requests are single lines of ASCII tokens (a command and uploaded data
# travel as raw bytes after their line: the command read with the read
# builtin, the data with `head -c`; no decoding process):
#   <id> PING
#   <id> EXEC <length>
#        followed by exactly <length> bytes: the command, as it is (no NUL)
#   <id> KILL <exec-id>          (no reply: kills that command's group)
#   <id> PUT <path-base64> <mode-octal> <append 0|1> <length>
#        followed by exactly <length> bytes of data, as they are
#   <id> POWEROFF <grace-seconds>
# Every reply except KILL's is
#   =covnet <id> raw <length> \n <exactly length bytes of stdout, as they are>
#   =covnet <id> err \n <base64 lines> =covnet <id> end <status>
# (the raw section only when stdout is not empty: binary-safe, no base64
# cost in a TCG guest; the host reads it by length, never as lines)
# (PING, PUT and POWEROFF send only the err section on failure and end).
# At start the shell announces itself with "=covnet 0 end 0".
#
# A command runs in its own session with stdin from /dev/null and its
# output in files, so a background child that keeps stdout open cannot hold
# up the reply. Environment (for tests on the host): COVNET_CONTROL_DEV
# ("-" = use stdin/stdout as they are and exit at end of input),
# COVNET_CONTROL_DIR (work files), COVNET_PID_DIR (service pid files).

dev=${COVNET_CONTROL_DEV:-}
work=${COVNET_CONTROL_DIR:-/run/covnet/control}
piddir=${COVNET_PID_DIR:-/run/covnet}

# find_port: sets $dev to the device of the port named covnet.control.
find_port() {
	for n in /sys/class/virtio-ports/*/name; do
		read -r name <"$n" 2>/dev/null || continue
		if [ "$name" = covnet.control ]; then
			d=${n%/name}
			dev=/dev/${d##*/}
			[ -c "$dev" ] && return 0
		fi
	done
	return 1
}

# locate_port: sets $dev, unless it names a device already. The port and
# its devtmpfs node appear asynchronously after virtio_console probes: wait
# up to 10 s.
locate_port() {
	n=0
	while ! { [ -n "$dev" ] && [ -c "$dev" ]; } && ! find_port && [ "$n" -lt 200 ]; do
		sleep 0.05
		n=$((n + 1))
	done
	if ! [ -c "$dev" ]; then
		echo "covnet control: no virtio port named covnet.control" >&2
		dev=/dev/vport0p1
	fi
}

# `control.sh --port`: print the port's device and exit (init holds on
# it before it starts the shell).
if [ "${1:-}" = --port ]; then
	locate_port
	echo "$dev"
	exit 0
fi

mkdir -p "$work" || exit 1
# Commands run from / (run_exec changes directory): the work files by
# absolute path.
case $work in
/*) ;;
*) work=$PWD/$work ;;
esac

if [ "$dev" != - ]; then
	locate_port
	# A port can be open only once: one read-write open, duplicated.
	exec <>"$dev" >&0
fi

# reply_files ID STATUS OUTFILE ERRFILE
reply_files() {
	if [ -s "$3" ]; then
		# Exactly the announced bytes, even if a background child of the
		# command still appends to the file; in 64 KiB blocks (busybox's
		# head -c copies byte by byte, in 4 KiB writes). The size from
		# stat: busybox's wc -c reads the whole file a byte at a time
		# (0.7 s for 20 MiB in a TCG guest, three times the transfer).
		n=$(stat -c %s "$3" 2>/dev/null || wc -c <"$3")
		echo "=covnet $1 raw $((n))"
		dd if="$3" bs=65536 iflag=count_bytes,fullblock count="$((n))" 2>/dev/null
	fi
	if [ -s "$4" ]; then
		echo "=covnet $1 err"
		base64 "$4"
		echo "=covnet $1 end $2"
	else
		# One write, not two: each is a round of the port (a QEMU
		# notification in a VM) and a wake-up of the host's reader.
		printf '=covnet %s err\n=covnet %s end %s\n' "$1" "$1" "$2"
	fi
}

# run_exec ID (runs in the background; the command is in $cmd). Each
# process counts, most of all in a TCG guest where a fork of busybox costs
# milliseconds: this subshell and the command's fork (which execs setsid,
# then sh); stat and dd only when there is stdout, base64 only when there
# is stderr. The work files are not removed here but marked done, and
# removed by one rm per CLEAN_EVERY commands (clean_done). cd here, not in a subshell of its own: this shell is a
# background copy already.
run_exec() {
	out=$work/$1.out
	err=$work/$1.err
	cd / || return
	# setsid: the command leads its own session and process group, so
	# KILL reaches everything it started (unless it setsid'ed again).
	setsid sh -c "$cmd" </dev/null >"$out" 2>"$err" &
	cpid=$!
	echo "$cpid" >"$work/$1.pid"
	wait "$cpid"
	status=$?
	# A late KILL must not reach a later group that got this number.
	: >"$work/$1.pid"
	reply_files "$1" "$status" "$out" "$err"
	# Free the output now (a background child may still add to it).
	: >"$out"
	: >"$err"
	: >"$work/$1.done"
}

# clean_done: removes the work files of the commands that replied, in one
# rm (in the background: the caller is the serve loop).
CLEAN_EVERY=32
clean_done() {
	set --
	for f in "$work"/*.done; do
		[ -e "$f" ] || continue
		i=${f%.done}
		set -- "$@" "$f" "$i.out" "$i.err" "$i.pid"
	done
	[ $# -gt 0 ] && rm -f "$@" &
}

# do_put ID PATH-BASE64 MODE APPEND LENGTH (reads LENGTH bytes of stdin).
# PUTs run in the serve loop, one at a time: one err file serves them all
# (emptied, never removed). The chunks of a file share its path: it is
# decoded, its directory made (only if missing; the name cut by the shell,
# no dirname process) and its mode set with the first chunk; an appending
# chunk of the same path (put_b64, set once a first chunk succeeded) only
# appends.
put_b64=
do_put() {
	err=$work/put.err
	: >"$err"
	status=0
	if [ "$4" != 1 ] || [ "$2" != "$put_b64" ]; then
		put_b64=
		path=$(printf '%s' "$2" | base64 -d 2>>"$err") || status=$?
		case $path in
		*/*) dir=${path%/*} ;;
		*) dir=. ;;
		esac
		if [ "$status" -eq 0 ] && ! [ -d "${dir:-/}" ]; then
			mkdir -p "${dir:-/}" 2>>"$err" || status=$?
		fi
		first=1
	else
		first=0
	fi
	if [ "$status" -eq 0 ] && [ "$4" = 1 ]; then
		head -c "$5" >>"$path" 2>>"$err" || status=$?
	elif [ "$status" -eq 0 ]; then
		head -c "$5" >"$path" 2>>"$err" || status=$?
	else
		# Consume the data anyway to stay in sync with the host.
		head -c "$5" >/dev/null
	fi
	if [ "$status" -eq 0 ] && [ "$first" = 1 ]; then
		chmod "$3" "$path" 2>>"$err" || status=$?
		[ "$status" -eq 0 ] && put_b64=$2
	fi
	reply_files "$1" "$status" /dev/null "$err"
}

# do_poweroff ID GRACE: TERM the services, wait for them, sync, power off.
do_poweroff() {
	for f in "$piddir"/*.pid; do
		[ -f "$f" ] && kill -TERM "$(cat "$f")" 2>/dev/null
	done
	n=0
	while [ "$n" -lt $(($2 * 10)) ]; do
		alive=0
		for f in "$piddir"/*.pid; do
			[ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null && alive=1
		done
		[ "$alive" = 0 ] && break
		sleep 0.1
		n=$((n + 1))
	done
	sync
	echo "=covnet $1 end 0"
	# QEMU runs with -no-reboot, so a reset ends it; unlike an ACPI
	# power-off this also works when the guest booted with acpi=off. Only
	# as PID 1 (of a VM or a PID namespace): run anywhere else, e.g. in a
	# host-side test, it just exits.
	if [ "$$" = 1 ]; then
		reboot -f
	fi
	exit 0
}

execs=0
serve() {
	while IFS=' ' read -r id op a1 a2 a3 a4; do
		case $op in
		PING) echo "=covnet $id end 0" ;;
		EXEC)
			# Exactly $a1 bytes, newlines and backslashes included
			# (-d '': no delimiter but NUL, which a command cannot hold).
			cmd=
			if [ "$a1" -gt 0 ]; then
				IFS= read -r -d '' -n "$a1" cmd
			fi
			run_exec "$id" &
			execs=$((execs + 1))
			if [ $((execs % CLEAN_EVERY)) = 0 ]; then
				clean_done
			fi
			;;
		KILL)
			if [ -f "$work/$a1.pid" ]; then
				kill -KILL -- "-$(cat "$work/$a1.pid")" 2>/dev/null
			fi
			;;
		PUT) do_put "$id" "$a1" "$a2" "$a3" "$a4" ;;
		POWEROFF) do_poweroff "$id" "${a1:-5}" ;;
		'') ;;
		*) echo "=covnet $id end 127" ;;
		esac
	done
}

# Announce readiness (request id 0); the host also pings, in case it
# connected later. Writes block until the host is connected.
echo "=covnet 0 end 0"
serve
[ "$dev" = - ] && exit 0
# End of input means the host is not connected: wait for it to come back.
while :; do
	sleep 0.2
	serve
done
