#!/usr/bin/env python3
"""Generate a synthetic coverage corpus for the reporter benchmark.

Writes C-like sources under OUT/src/ and two lcov tracefiles (OUT/web.info,
OUT/client.info: two "machines" covering the same files differently), with
functions, lines and branches.  Deterministic (fixed seed).

usage: gen_corpus.py OUT [--files N] [--lines-per-file M]
"""
import argparse
import os
import random

FUNC_LEN = 25


def source_lines(fid, nlines):
    out = []
    for n in range(nlines):
        k, i = divmod(n, FUNC_LEN)
        if i == 0:
            out.append(f"int f{fid}_{k}(int x) {{")
        elif i == FUNC_LEN - 2:
            out.append("  return x;")
        elif i == FUNC_LEN - 1:
            out.append("}")
        elif i % 6 == 0:
            out.append(f"  if (x % 7 == {i % 7}) x += {i};")
        elif i % 6 == 5:
            out.append(f"  /* step {i}: <mix> & \"quote\" */")
        else:
            out.append(f"  x = x * 31 + {i};")
    return out


def record(tn, path, lines, rnd, hit_ratio):
    recs = [f"TN:{tn}", f"SF:{path}"]
    fns, das, brs = [], [], []
    fh = 0
    lh = 0
    bh = 0
    nfun = (len(lines) + FUNC_LEN - 1) // FUNC_LEN
    for k in range(nfun):
        entered = rnd.random() < hit_ratio
        calls = rnd.randint(1, 500) if entered else 0
        start = k * FUNC_LEN + 1
        fns.append((start, lines[start - 1].split("(")[0][4:], calls))
        for i in range(FUNC_LEN):
            n = k * FUNC_LEN + i + 1
            if n > len(lines):
                break
            text = lines[n - 1]
            if text == "}" or text.startswith("  /*"):
                continue
            count = calls if entered and rnd.random() < 0.93 else 0
            das.append(f"DA:{n},{count}")
            lh += count > 0
            if text.startswith("  if"):
                if count > 0:
                    t = rnd.randint(0, count)
                    for b, v in enumerate((t, count - t)):
                        brs.append(f"BRDA:{n},0,{b},{v}")
                        bh += v > 0
                else:
                    brs.append(f"BRDA:{n},0,0,-")
                    brs.append(f"BRDA:{n},0,1,-")
    for start, name, calls in fns:
        recs.append(f"FN:{start},{name}")
    for start, name, calls in fns:
        recs.append(f"FNDA:{calls},{name}")
        fh += calls > 0
    recs.append(f"FNF:{len(fns)}")
    recs.append(f"FNH:{fh}")
    recs.extend(brs)
    recs.append(f"BRF:{len(brs)}")
    recs.append(f"BRH:{bh}")
    recs.extend(das)
    recs.append(f"LF:{len(das)}")
    recs.append(f"LH:{lh}")
    recs.append("end_of_record")
    return "\n".join(recs) + "\n", len(das)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--lines-per-file", type=int, default=750)
    a = ap.parse_args()
    out = os.path.abspath(a.out)
    rnd = random.Random(20261125)
    web, client = [], []
    total_src = total_da = 0
    for fid in range(a.files):
        d = f"src/mod_{fid % 40:02d}/part_{fid % 7}"
        os.makedirs(os.path.join(out, d), exist_ok=True)
        path = os.path.join(out, d, f"file_{fid:05d}.c")
        lines = source_lines(fid, a.lines_per_file)
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        total_src += len(lines)
        rec, nda = record("web", path, lines, rnd, 0.7)
        web.append(rec)
        rec, _ = record("client", path, lines, rnd, 0.5)
        client.append(rec)
        total_da += nda
    with open(os.path.join(out, "web.info"), "w") as f:
        f.write("".join(web))
    with open(os.path.join(out, "client.info"), "w") as f:
        f.write("".join(client))
    print(f"{a.files} files, {total_src} source lines, {total_da} instrumented lines per tracefile")


if __name__ == "__main__":
    main()
