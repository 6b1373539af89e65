#!/usr/bin/env python3
"""Runs one `covnet run` and measures it: measure.py LOG -- CMD...

Prints one JSON object: wall seconds (the whole command), covnet's peak
resident memory (VmHWM of covnet's own process, read every 50 ms: covnet
alone, not its QEMUs or machines), the CPU seconds of covnet and
everything it waited for (wait4), the exit status, and phase times read
from covnet's timestamped event lines in LOG (its stderr):
  last_ready  the last machine ready (booted, control shell up)
  first_wait  the script's first wait_for_service
  waits_done  the first step after the last wait_for_service
  fetched     "fetched N pages" (m1's loop over every machine done)
  merged      "coverage: merged ..." (--coverage runs: pulled and merged)
  run_took    covnet's own "run took" (after every machine shut down)"""
import json
import os
import re
import subprocess
import sys
import time


def hwm_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def phases(log):
    stamp = re.compile(r"^\[\s*([\d.]+)s\] (.*)$")
    lines = []
    for line in open(log, encoding="utf-8", errors="replace"):
        m = stamp.match(line)
        if m and not m.group(2).startswith("machines: "):
            lines.append((float(m.group(1)), m.group(2)))

    def last(pred):
        hits = [i for i, (_, text) in enumerate(lines) if pred(text)]
        return hits[-1] if hits else None

    def at(i):
        return None if i is None else lines[i][0]

    ready = last(lambda t: " ready after " in t)
    first_wait = next((i for i, (_, t) in enumerate(lines) if "wait_for_service(" in t), None)
    last_wait = last(lambda t: "wait_for_service(" in t)
    after_waits = None
    if last_wait is not None:
        after_waits = next(
            (i for i in range(last_wait + 1, len(lines)) if re.match(r"m\d+: \w+\(", lines[i][1])),
            None,
        )
    fetched = last(lambda t: re.match(r"fetched \d+ pages", t) is not None)
    merged = last(lambda t: t.startswith("coverage: merged"))
    took = next((float(m.group(1)) for _, t in lines if (m := re.search(r"run took ([\d.]+)s", t))), None)
    return {
        "last_ready": at(ready),
        "first_wait": at(first_wait),
        "waits_done": at(after_waits),
        "fetched": at(fetched),
        "merged": at(merged),
        "run_took": took,
    }


def main():
    log = sys.argv[1]
    cmd = sys.argv[sys.argv.index("--") + 1:]
    start = time.monotonic()
    with open(log, "wb") as err:
        p = subprocess.Popen(cmd, stdout=err, stderr=subprocess.STDOUT)
        peak = 0
        while True:
            h = hwm_kib(p.pid)
            if h is not None:
                peak = max(peak, h)
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            time.sleep(0.05)
    wall = time.monotonic() - start
    # wait4 gives the child's usage including its waited-for descendants.
    out = {
        "wall": round(wall, 2),
        "covnet_peak_kib": peak,
        "cpu": round(ru.ru_utime + ru.ru_stime, 2),
        "status": os.waitstatus_to_exitcode(status),
    }
    out.update(phases(log))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
