#!/usr/bin/env python3
"""Derive the differential benchmark's inputs from the reporter corpus.

Writes CORPUS/base-web.info and CORPUS/base-client.info (the corpus's
tracefiles with every 5th file's counts zeroed: coverage to lose) and
CORPUS/change.diff (two lines inserted after line 3 of every 5th file, by
name order: new code).

usage: derive.py CORPUS
"""
import os
import sys

root = sys.argv[1]
src = os.path.join(root, "src")
names = sorted(os.path.relpath(os.path.join(d, f), root)
               for d, _, fs in os.walk(src) for f in fs)
changed = names[::5]
zero = {os.path.join(root, n) for n in names[2::5]}
for machine in ("web", "client"):
    out, sf = [], None
    for line in open(os.path.join(root, f"{machine}.info")):
        if line.startswith("SF:"):
            sf = line[3:].strip()
        elif sf in zero and line.startswith("DA:"):
            n, _ = line[3:].strip().split(",", 1)
            line = f"DA:{n},0\n"
        elif sf in zero and line.startswith("FNDA:"):
            _, name = line[5:].strip().split(",", 1)
            line = f"FNDA:0,{name}\n"
        elif sf in zero and line.startswith("BRDA:"):
            a = line[5:].strip().split(",")
            if a[3] != "-":
                a[3] = "0"
            line = "BRDA:" + ",".join(a) + "\n"
        out.append(line)
    with open(os.path.join(root, f"base-{machine}.info"), "w") as f:
        f.writelines(out)
with open(os.path.join(root, "change.diff"), "w") as d:
    for n in changed:
        d.write(f"--- a/{n}\n+++ b/{n}\n@@ -3,0 +4,2 @@\n+  x = x + 1;\n+  x = x - 1;\n")
