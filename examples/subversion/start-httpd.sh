#!/bin/sh
# The `httpd` service of `server`: makes what httpd needs, creates the demo
# repository, then execs httpd in the foreground as nobody (so the
# service's pid is httpd's, which SIGTERM stops with its children).
#
# Every instrumented process on the server runs as nobody, httpd's parent
# included: gcov makes the directories below GCOV_PREFIX with mode 0755 as
# the first writer, and httpd's root parent writes mod_dav_svn's and the
# libsvn_* libraries' counts already at start-up (it unloads its modules
# once while reading its configuration), which would lock its nobody
# children out of those files. nobody may bind port 80 in this machine's
# own network namespace (VM or namespace machine alike).
set -eu
# The build's prefix, from svnadmin's place on PATH (`httpd` alone would be
# busybox's applet, which comes first).
prefix=$(cd "$(dirname "$(command -v svnadmin)")/.." && pwd -P)
echo 80 > /proc/sys/net/ipv4/ip_unprivileged_port_start
mkdir -p /run/httpd /srv/svn
chown nobody:nogroup /run/httpd /srv/svn
if [ -n "${GCOV_PREFIX:-}" ]; then
    mkdir -p "$GCOV_PREFIX"
    chown nobody:nogroup "$GCOV_PREFIX"
fi
[ -d /srv/svn/demo ] || su -s /bin/sh nobody -c 'svnadmin create /srv/svn/demo'
exec su -s /bin/sh nobody -c "exec $prefix/bin/httpd -d $prefix -f /etc/httpd/httpd.conf -DFOREGROUND"
