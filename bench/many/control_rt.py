#!/usr/bin/env python3
"""Round trips of runner/src/guest/control.sh on the host, without a machine:
  control_rt.py [--base64] SCRIPT N [COMMAND [WRAPPER...]]
runs `busybox sh SCRIPT` on a socketpair (COVNET_CONTROL_DEV=-), sends N
EXEC requests of COMMAND (default `true`) one after another and prints the
mean round trip. --base64: the protocol before f1c11c9 (command as base64
on the request line). WRAPPER, e.g. `strace -f -qq -e trace=clone,execve
-o FILE`, runs the shell under it (count its processes per request)."""
import base64
import os
import socket
import subprocess
import sys
import tempfile
import time

args = sys.argv[1:]
old = args[:1] == ["--base64"]
if old:
    args = args[1:]
script, n = args[0], int(args[1])
cmd = args[2] if len(args) > 2 else "true"
wrap = args[3:]
a, b = socket.socketpair()
d = tempfile.mkdtemp()
env = dict(os.environ, COVNET_CONTROL_DEV="-", COVNET_CONTROL_DIR=d + "/ctl",
           COVNET_PID_DIR=d + "/pid")
p = subprocess.Popen(wrap + ["busybox", "sh", script], stdin=b, stdout=b, env=env)
b.close()
f = a.makefile("rb")
if not f.readline().startswith(b"=covnet 0 end 0"):
    sys.exit("control.sh did not announce itself")
raw = cmd.encode()
t0 = time.perf_counter()
for i in range(1, n + 1):
    if old:
        a.sendall(f"{i} EXEC {base64.b64encode(raw).decode()}\n".encode())
    else:
        a.sendall(f"{i} EXEC {len(raw)}\n".encode() + raw)
    while True:
        line = f.readline()
        if not line:
            sys.exit("control.sh closed the connection")
        if line.startswith(f"=covnet {i} raw ".encode()):
            f.read(int(line.split()[3]))
        if line.startswith(f"=covnet {i} end".encode()):
            break
t = time.perf_counter() - t0
print(f"{script} {cmd!r}: {t / n * 1000:.2f} ms per round trip ({n})")
f.close()
a.close()
p.wait()
