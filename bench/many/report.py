#!/usr/bin/env python3
"""The "many" section of bench/RESULTS.md from bench/many/run.sh's results
(one JSON object a line, see measure.py): report.py RESULTS NS VMS."""
import json
import os
import statistics
import sys

path, ns, vms = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rows = [json.loads(l) for l in open(path)]
nproc = os.cpu_count()


def of(kind):
    return [r for r in rows if r["kind"] == kind]


def med(rs, f):
    vals = [v for v in (f(r) for r in rs) if v is not None]
    return statistics.median(vals) if vals else None


def span(a, b):
    return lambda r: None if r[a] is None or r[b] is None else r[b] - r[a]


def s(x):
    return "—" if x is None else f"{x:.1f} s"


def mib(kib):
    return f"{kib / 1024:.0f} MiB"


def verdict(ok):
    return "**met**" if ok else "**missed**"


print("Every machine serves its own page with `busybox httpd` (`ready = { port = 80 }`); the script "
      "(bench/many/gen.py) runs `start_all()`, `wait_for_service(\"httpd\")` on every machine in turn, "
      "and `m1` fetches every page by host name with `wget` and checks them. Release build of covnet. "
      "Wall is the whole `covnet run` command; covnet's peak RSS is its own `VmHWM` (not its machines' "
      "or QEMUs'), read every 50 ms; CPU is covnet plus everything it waited for (machines, QEMUs). "
      "Phases come from covnet's own timestamped lines: *boot* until the last machine is ready (`start_all()` "
      "returns), *waits* the 1st to the last `wait_for_service`, *fetch* `m1`'s loop (VMs: each machine's "
      "program run first), *end* collection, report and shutdown. The load is the 1-minute average just "
      "before each run: after the first run it includes the previous run's own machines fading out of "
      "the average.")
print()

ns_rows = of("ns")
if ns_rows:
    wall = med(ns_rows, lambda r: r["wall"])
    rss = max(r["covnet_peak_kib"] for r in ns_rows)
    print(f"### {ns} namespace machines (one VLAN), {len(ns_rows)} runs")
    print()
    print("| run | load (1 min) | wall | covnet peak RSS | CPU | boot | waits | fetch | end |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in ns_rows + [None]:
        rs = [r] if r else ns_rows
        label = str(r["run"]) if r else "**median**"
        load = f"{r['load']:.2f}" if r else f"{med(rs, lambda x: x['load']):.2f}"
        print(f"| {label} | {load} | {s(med(rs, lambda x: x['wall']))} | "
              f"{mib(med(rs, lambda x: x['covnet_peak_kib']))} | {s(med(rs, lambda x: x['cpu']))} | "
              f"{s(med(rs, lambda x: x['last_ready']))} | {s(med(rs, span('first_wait', 'waits_done')))} | "
              f"{s(med(rs, span('waits_done', 'fetched')))} | {s(med(rs, span('fetched', 'run_took')))} |")
    print()
    waits = med(ns_rows, span("first_wait", "waits_done"))
    boot = med(ns_rows, lambda x: x["last_ready"])
    cpu = med(ns_rows, lambda x: x["cpu"])
    print(f"Goal: <= 10 s end to end with covnet's peak RSS <= 200 MiB. Wall {s(wall)} (median): "
          f"{verdict(wall <= 10)}; peak RSS {mib(rss)} (highest of the runs): {verdict(rss <= 200 * 1024)}.")
    print()
    print(f"Bounds (measured here): CPU {s(cpu)} in {s(wall)} of wall is {cpu / wall:.2f} of this machine's "
          f"{nproc} cores; booting {ns} machines takes {s(boot)} ({boot / ns * 1000:.0f} ms of wall per machine), "
          f"the script's {ns} waits {s(waits)} ({waits / ns * 1000:.0f} ms each: one control-shell round trip "
          f"per wait for a service that is already up). See bench/many/NOTES.md for the profile.")
    print()

for kind, title in (("vm-cold", "cold: each run with an empty image cache (one guest boots cold and saves, the others restore its snapshot: checked)"),
                    ("vm-warm", "warm: reruns on the cache of the first cold run, every guest restored from its snapshot")):
    rs_all = of(kind)
    if not rs_all:
        continue
    print(f"### {vms} TCG VMs, `memory_mib = 128`, `--coverage` — {title}, {len(rs_all)} run(s)")
    print()
    print("| run | load (1 min) | wall | covnet peak RSS | CPU (covnet + QEMUs) | CPU per VM | boot | waits | programs + fetch | collect, report, shutdown |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rs_all + [None]:
        rs = [r] if r else rs_all
        label = str(r["run"]) if r else "**median**"
        load = f"{r['load']:.2f}" if r else f"{med(rs, lambda x: x['load']):.2f}"
        print(f"| {label} | {load} | {s(med(rs, lambda x: x['wall']))} | "
              f"{mib(med(rs, lambda x: x['covnet_peak_kib']))} | {s(med(rs, lambda x: x['cpu']))} | "
              f"{s(med(rs, lambda x: x['cpu'] / vms))} | "
              f"{s(med(rs, lambda x: x['last_ready']))} | {s(med(rs, span('first_wait', 'waits_done')))} | "
              f"{s(med(rs, span('waits_done', 'fetched')))} | {s(med(rs, span('fetched', 'run_took')))} |")
    print()
    wall = med(rs_all, lambda x: x["wall"])
    cpu = med(rs_all, lambda x: x["cpu"])
    boot = med(rs_all, lambda x: x["last_ready"])
    print(f"Goal: <= 60 s with coverage from all {vms} (every run's report lists m1..m{vms}, each with "
          f"covered lines). Wall {s(wall)} (median): {verdict(wall <= 60)}. Bounds: CPU {s(cpu)} in "
          f"{s(wall)} of wall is {cpu / wall:.2f} of {nproc} cores, {cpu / vms:.2f} s per VM (it grows "
          f"with the number of VMs: bench/many/NOTES.md); the last VM was ready after {s(boot)}.")
    print()
