#!/usr/bin/env python3
"""Writes the specs of bench/many/run.sh.

  gen.py web N BACKEND MEMORY_MIB OUT.toml [PROGRAM]

N machines m1..mN (all on the default VLAN), each serving its own name with
busybox httpd (`ready = { port = 80 }`); the script starts them all, waits
for every service, and m1 fetches all N pages by host name and checks them.
With PROGRAM (a program built with `gcc --coverage`), every machine gets it
and runs it once with its own name as the argument, so every machine leaves
coverage data behind."""
import json
import sys


def web(n, backend, memory, out, program=None):
    s = f'[defaults]\nbackend = "{backend}"\nmemory_mib = {memory}\n'
    # Every machine boots at once: 40 TCG VMs on a loaded 2-core host take
    # longer than the default boot timeout (90 s) to reach their shells.
    s += 'boot_timeout = "10m"\ncommand_timeout = "10m"\n'
    programs = f"programs = [{json.dumps(program)}]\n" if program else ""
    for i in range(1, n + 1):
        s += (
            f"[machines.m{i}]\n{programs}"
            f"[[machines.m{i}.files]]\n"
            f'content = "m{i}\\n"\n'
            f'target = "/srv/www/index.html"\n'
            f"[[machines.m{i}.services]]\n"
            f'name = "httpd"\n'
            f'command = "busybox httpd -f -p 80 -h /srv/www"\n'
            f"ready = {{ port = 80 }}\n"
        )
    script = "start_all();\n"
    for i in range(1, n + 1):
        script += f'm{i}.wait_for_service("httpd");\n'
    if program:
        name = program.rsplit("/", 1)[-1]
        for i in range(1, n + 1):
            script += f'm{i}.succeed("{name} m{i}");\n'
    expected = "".join(f"m{i}\\n" for i in range(1, n + 1))
    script += (
        f'let pages = m1.succeed("for i in $(seq 1 {n}); do wget -q -O - http://m$i/ || exit 1; done");\n'
        f'if pages != "{expected}" {{ throw `wrong pages: ${{pages}}`; }}\n'
        f'print("fetched {n} pages");\n'
    )
    s += f"[test]\ntimeout = \"20m\"\nscript = '''\n{script}'''\n"
    with open(out, "w", encoding="utf-8") as f:
        f.write(s)


if __name__ == "__main__":
    if len(sys.argv) not in (6, 7) or sys.argv[1] != "web":
        sys.exit(__doc__)
    web(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5], *sys.argv[6:])
