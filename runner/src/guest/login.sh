#!/bin/sh
# The program a `covnet shell` session runs on its pty (busybox telnetd
# starts it): a login shell as root in /root with the machine's
# environment, then the shell's exit status after the marker
# "\036covnet-exit:" (ended by another \036), which the host strips from
# the output and exits with.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root USER=root LOGNAME=root SHELL=/bin/sh
[ -r /covnet/machine.env ] && . /covnet/machine.env
export PS1='\u@\h:\w\$ '
cd /root 2>/dev/null || cd /
/bin/sh -l
status=$?
printf '\036covnet-exit:%d\036' "$status"
