#!/usr/bin/env python3
"""Convert an lcov tracefile into gcovr's JSON format (format 0.15, as
gcovr 8 writes it), so gcovr can render the same corpus for the reporter
benchmark.  Only what gcovr needs for its HTML: line counts, branches
(lcov BRDA taken, '-' as 0) and functions.

usage: lcov_to_gcovr.py IN.info OUT.json
"""
import json
import sys


def convert(src, dst):
    files = []
    cur = None
    lines = {}
    for raw in open(src):
        line = raw.rstrip("\n")
        tag, _, val = line.partition(":")
        if tag == "SF":
            cur = {"file": val, "lines": [], "functions": []}
            lines = {}
            fn_line = {}
        elif tag == "FN":
            start, name = val.split(",", 1)
            fn_line[name] = int(start)
        elif tag == "FNDA":
            count, name = val.split(",", 1)
            cur["functions"].append(
                {"name": name, "lineno": fn_line.get(name, 0), "execution_count": int(count)}
            )
        elif tag == "DA":
            no, count = val.split(",")[:2]
            lines.setdefault(int(no), {"line_number": int(no), "count": 0, "branches": []})
            lines[int(no)]["count"] += int(count)
        elif tag == "BRDA":
            no, _block, branch, taken = val.split(",")
            entry = lines.setdefault(int(no), {"line_number": int(no), "count": 0, "branches": []})
            entry["branches"].append(
                {
                    "branchno": int(branch),
                    "count": 0 if taken == "-" else int(taken),
                    "fallthrough": False,
                    "throw": False,
                }
            )
        elif line == "end_of_record":
            cur["lines"] = [lines[k] for k in sorted(lines)]
            files.append(cur)
            cur = None
    with open(dst, "w") as out:
        json.dump({"gcovr/format_version": "0.15", "files": files}, out)


if __name__ == "__main__":
    convert(sys.argv[1], sys.argv[2])
