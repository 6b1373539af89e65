#!/usr/bin/env python3
"""Make N shard bundles of one suite for the bundle-merge benchmark.

Each bundle holds one spec (`s001` ... ) whose coverage.json is SPEC_JSON
(a covnet JSON report with M captures, the same for every spec: the merge
does the same work whatever the counts), and a manifest naming the suite,
its count partition k/N and the spec's captures.

usage: make.py OUT SPEC_JSON N
"""
import json
import os
import shutil
import sys

out, spec_json, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open(spec_json) as f:
    captures = [c["name"] for c in json.load(f)["captures"]]
ids = [f"s{i:03d}" for i in range(1, n + 1)]
shutil.rmtree(out, ignore_errors=True)
for k, sid in enumerate(ids, start=1):
    bundle = os.path.join(out, f"b{k:03d}")
    os.makedirs(os.path.join(bundle, sid))
    os.link(spec_json, os.path.join(bundle, sid, "coverage.json"))
    manifest = {
        "format": "covnet-shard-bundle",
        "version": 1,
        "covnet": "bench",
        "suite": {"specs": ids},
        "partition": {"kind": "count", "shard": k, "total": n},
        "protocol": "--partition",
        "host": "bench",
        "started": 0,
        "finished": 0,
        "coverage": True,
        "specs": [
            {
                "id": sid,
                "path": f"/bench/{sid}.toml",
                "machines": captures,
                "captures": [f"{sid}/{c}" for c in captures],
                "result": "passed",
                "coverage": "complete",
                "elapsed": 0.0,
                "error": None,
            }
        ],
        "build": {"notes": []},
    }
    with open(os.path.join(bundle, "manifest.json"), "w") as f:
        json.dump(manifest, f)
print(f"{n} bundles of {len(captures)} captures each: {n * len(captures)} captures")
