#!/usr/bin/env python3
"""Renders the body of the "merge" section of bench/RESULTS.md (run.sh adds
the header and splices it in with bench/lib.sh) from one run's results.

  report.py --results DIR --src SRC --build BUILD --captures N \
            --captures-total M --runs R  > merge.md
  report.py --results DIR --diff-only OTHER.info

The first form reads times.tsv (tool, run, wall seconds, peak RSS KiB, load
before, load after), rss.tsv (captures, covnet peak RSS KiB) and the tools'
merged tracefiles, and checks them against the untimed oracle (gcov on
`gcov-tool merge` of all captures): `lcov --summary` totals and a per-line
DA diff. The second compares OTHER.info with covnet.info of the run.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
from collections import defaultdict

PEERS = ["lcov", "gcovr", "grcov"]
ORDER = ["covnet"] + PEERS

COMMANDS = {
    "covnet": "covnet merge --build $BUILD $CAPTURES/* -o covnet.info",
    "lcov": "for each capture: lcov --rc lcov_branch_coverage=1 -c -d $STAGED/NN -o cNN.info; "
    "then lcov --rc lcov_branch_coverage=1 -a c00.info -a c01.info ... -o lcov.info",
    "gcovr": "gcovr -r $SRC -j $(nproc) --lcov gcovr.info $STAGED",
    "grcov": "grcov $STAGED --branch -t lcov -o grcov.info",
    "oracle": "gcov-tool merge of the captures (pairwise, in turn), then "
    "lcov --rc lcov_branch_coverage=1 -c -d MERGED -o oracle.info",
}


def sh(*cmd):
    """Runs a command, returns its stdout+stderr (empty string if missing)."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except OSError:
        return ""
    return p.stdout + p.stderr


def parse_info(path):
    """Parses an lcov tracefile, merging duplicate records the way lcov does."""
    da = defaultdict(int)
    fn = defaultdict(int)
    brda = defaultdict(int)
    sf = None
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("SF:"):
                sf = os.path.normpath(line[3:])
            elif line.startswith("DA:") and sf:
                parts = line[3:].split(",")
                da[(sf, int(parts[0]))] += int(parts[1])
            elif line.startswith("FNDA:") and sf:
                count, name = line[5:].split(",", 1)
                fn[(sf, name)] += int(count)
            elif line.startswith("BRDA:") and sf:
                ln, block, branch, taken = line[5:].split(",")
                brda[(sf, int(ln), block, branch)] += 0 if taken == "-" else int(taken)
    return da, fn, brda


def lcov_summary(path):
    """`lcov --summary` totals as {kind: (hit, found)}."""
    out = sh("lcov", "--rc", "lcov_branch_coverage=1", "--summary", path)
    totals = {}
    for kind in ("lines", "functions", "branches"):
        m = re.search(kind + r"\.*: [\d.]+% \((\d+) of (\d+)", out)
        totals[kind] = (int(m.group(1)), int(m.group(2))) if m else None
    return totals


def fmt_total(t):
    return "no data" if t is None else f"{t[0]} / {t[1]}"


def da_diff(a, b):
    """Line-level comparison of two DA maps."""
    only_a = sum(1 for k in a if k not in b)
    only_b = sum(1 for k in b if k not in a)
    common = [k for k in a if k in b]
    count = sum(1 for k in common if a[k] != b[k])
    status = sum(1 for k in common if (a[k] > 0) != (b[k] > 0))
    return only_a, only_b, count, status


def render(args):
    times = defaultdict(list)
    loads = defaultdict(list)
    with open(os.path.join(args.results, "times.tsv"), encoding="utf-8") as f:
        for row in f:
            cols = row.rstrip("\n").split("\t")
            times[cols[0]].append((float(cols[2]), int(cols[3])))
            loads[cols[0]].append(f"{cols[4]} → {cols[5]}")
    med = {
        t: (statistics.median(w for w, _ in v), statistics.median(r for _, r in v), len(v))
        for t, v in times.items()
    }

    units = [
        u.strip()
        for u in open(os.path.join(os.path.dirname(args.build), "units.txt"), encoding="utf-8")
    ]
    nlines = 0
    for u in units:
        with open(os.path.join(args.src, u), "rb") as f:
            nlines += f.read().count(b"\n")
    capdir = os.path.join(os.path.dirname(args.build), "captures")
    dirs = sorted(c for c in os.listdir(capdir) if os.path.isdir(os.path.join(capdir, c)))
    ngcda = sum(
        1 for c in dirs[: args.captures]
        for _d, _s, files in os.walk(os.path.join(capdir, c))
        for x in files if x.endswith(".gcda")
    )

    out = []
    w = out.append
    w(f"Not a test: nothing asserts on time. {args.runs} run(s) of each tool, all in this "
      f"run, one after the other (setup: `bench/merge/setup-peers.sh`, corpus: "
      f"`bench/merge/corpus.sh`).")
    w("")
    w(f"- Corpus: zstd {os.path.basename(args.src).split('+zstd.')[-1]} as bundled in the "
      f"crates.io package `{os.path.basename(args.src).split('+')[0]}` (fetched with cargo): "
      f"{len(units)} translation units (lib/, contrib/seekable_format, plus the bench's own "
      f"`driver.c`), {nlines} source lines, built with `gcc --coverage -O0 -pthread "
      f"-DZSTD_MULTITHREAD -DZSTD_LEGACY_SUPPORT=1`.")
    sub = "" if args.captures == args.captures_total else \
        f" (the first {args.captures} of the corpus's {args.captures_total})"
    w(f"- Workload: {args.captures} captures{sub}: `driver N` (N = 0..{args.captures - 1}; "
      f"data shape, level and API family vary with N: one-shot, advanced params, streaming, "
      f"dictionary training + CDict/DDict, multithreaded + LDM, seekable format, "
      f"deprecated/block API and error paths), each with its own `GCOV_PREFIX`, "
      f"{ngcda} .gcda files in all.")
    w("- Wall time and peak RSS: GNU `/usr/bin/time -f '%e %M'` around the whole pipeline, "
      "median of the runs. Peak RSS is the largest single process of the pipeline "
      "(lcov/gcovr/grcov spawn gcov; concurrent children are not summed).")
    w("- The gcov-based peers need each .gcda beside its .gcno, so each capture is given to "
      "them as a hard-link view (build .gcno + that capture's .gcda), prepared once and not "
      "timed. covnet reads the raw capture directories and the build tree.")
    w("")
    w("Commands (timed):")
    w("")
    w("```sh")
    for t in ORDER + ["oracle"]:
        w(f"# {t}{' (untimed reference)' if t == 'oracle' else ''}")
        w(COMMANDS[t])
    w("```")
    w("")

    w("| tool | wall (s, median) | peak RSS (MiB, median) | runs (wall s) | wall / covnet "
      "| RSS / covnet | load avg before → after each run |")
    w("| --- | ---: | ---: | --- | ---: | ---: | --- |")
    base = med.get("covnet")
    for t in ORDER:
        if t not in med:
            w(f"| {t} | not measured | | | | | |")
            continue
        wall, rss, n = med[t]
        rw = f"{wall / base[0]:.1f}x" if base and base[0] > 0 else "n/a"
        rr = f"{rss / base[1]:.2f}" if base and base[1] > 0 else "n/a"
        each = ", ".join(f"{x:g}" for x, _ in times[t])
        load = ", ".join(loads[t])
        w(f"| {t} | {wall:.2f} | {rss / 1024:.1f} | {n} ({each}) | {rw} | {rr} | {load} |")
    w("")
    peers = [t for t in PEERS if t in med]
    if base and peers:
        fastest = min(peers, key=lambda t: med[t][0])
        smallest = min(peers, key=lambda t: med[t][1])
        goals = []
        if "lcov" in med:
            r = med["lcov"][0] / base[0]
            goals.append(f"vs lcov {r:.1f}x (goal >= 20x: {'met' if r >= 20 else 'NOT met'})")
        r = med[fastest][0] / base[0]
        goals.append(f"vs fastest peer ({fastest}) {r:.1f}x "
                     f"(goal >= 3x: {'met' if r >= 3 else 'NOT met'})")
        ok = base[1] <= med[smallest][1]
        goals.append(f"peak RSS with plain `-o`, {args.captures} captures: "
                     f"{base[1] / 1024:.1f} MiB vs smallest peer ({smallest}) "
                     f"{med[smallest][1] / 1024:.1f} MiB (goal <= smallest peer: "
                     f"{'met' if ok else 'NOT met'})")
        w("Goals: " + "; ".join(goals) + ".")
    w("")
    rss_rows = []
    with open(os.path.join(args.results, "rss.tsv"), encoding="utf-8") as f:
        for row in f:
            n, kib = row.split()
            rss_rows.append((n, int(kib)))
    w("covnet's peak RSS by number of captures (`covnet merge --build $BUILD "
      "$CAPTURES/<first n> -o out.info`, once each, untimed except for the row of all captures; the last row is the oracle's "
      "`gcov-tool merge` of all captures given to covnet as one capture):")
    w("")
    w("| captures | peak RSS (MiB) |")
    w("| --- | ---: |")
    for n, kib in rss_rows:
        if n == "premerged":
            if base:
                w(f"| {args.captures} (the timed runs above, median) | {base[1] / 1024:.1f} |")
            w(f"| {args.captures}, pre-merged into 1 by gcov-tool | {kib / 1024:.1f} |")
        else:
            w(f"| {n} | {kib / 1024:.1f} |")
    w("")
    diff_path = os.path.join(args.results, "premerged-diff.txt")
    if os.path.exists(diff_path):
        with open(diff_path, encoding="utf-8") as f:
            w("Output of the pre-merged run against covnet's merge of the captures: "
              + f.read().strip() + ".")
        w("")

    oracle_path = os.path.join(args.results, "oracle.info")
    w("Agreement (`lcov --summary` totals, hit / found; DA diff is per source line "
      "against the oracle = gcov on `gcov-tool merge` of all captures):")
    w("")
    w("| output | lines | functions | branches | DA lines only here / only in oracle "
      "| DA count differs | hit/not-hit differs |")
    w("| --- | --- | --- | --- | ---: | ---: | ---: |")
    oracle = parse_info(oracle_path)
    for t in ["oracle"] + ORDER:
        p = os.path.join(args.results, f"{t}.info")
        if not os.path.exists(p):
            continue
        s = lcov_summary(p)
        if t == "oracle":
            diff = ("", "", "")
        else:
            oa, ob, c, st = da_diff(parse_info(p)[0], oracle[0])
            diff = (f"{oa} / {ob}", str(c), str(st))
        w(f"| {t} | {fmt_total(s['lines'])} | {fmt_total(s['functions'])} | "
          f"{fmt_total(s['branches'])} | {diff[0]} | {diff[1]} | {diff[2]} |")
    w("")
    covnet_path = os.path.join(args.results, "covnet.info")
    if os.path.exists(covnet_path):
        cov = parse_info(covnet_path)
        w("Per-line DA diff of each peer against covnet's output:")
        w("")
        w("| peer | DA lines only in peer / only in covnet | DA count differs "
          "| hit/not-hit differs |")
        w("| --- | ---: | ---: | ---: |")
        for t in PEERS:
            p = os.path.join(args.results, f"{t}.info")
            if os.path.exists(p):
                oa, ob, c, st = da_diff(parse_info(p)[0], cov[0])
                w(f"| {t} | {oa} / {ob} | {c} | {st} |")
        w("")
    if args.notes and os.path.exists(args.notes):
        with open(args.notes, encoding="utf-8") as f:
            w(f.read().rstrip("\n"))
        w("")
    sys.stdout.write("\n".join(out))


def diff_only(results, other):
    """One line: how OTHER compares with covnet.info, per DA line."""
    a = parse_info(other)[0]
    b = parse_info(os.path.join(results, "covnet.info"))[0]
    oa, ob, c, st = da_diff(a, b)
    if (oa, ob, c, st) == (0, 0, 0, 0):
        print(f"identical DA records ({len(a)} lines)")
    else:
        print(f"{oa} / {ob} DA lines only in one, {c} counts differ, {st} hit/not-hit differ")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results")
    ap.add_argument("--src")
    ap.add_argument("--build")
    ap.add_argument("--captures", type=int)
    ap.add_argument("--captures-total", type=int)
    ap.add_argument("--runs", type=int)
    ap.add_argument("--notes", default=os.path.join(os.path.dirname(__file__), "NOTES.md"))
    ap.add_argument("--diff-only")
    args = ap.parse_args()
    if args.diff_only:
        diff_only(args.results, args.diff_only)
    else:
        render(args)


if __name__ == "__main__":
    main()
