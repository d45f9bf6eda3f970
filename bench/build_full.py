"""Synthesise XS-Video at a scale, build the store, and record time, peak RSS, bytes per part and counts.

Usage: python bench/build_full.py --scale 1.0 --workdir /tmp/xs1 [--keep]
Each step runs in its own process so that its peak RSS is measured alone (ru_maxrss of the child).
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

PAPER = {
    "nodes": 5_506_697, "video": 381_926, "comment": 923_045, "topic": 535, "platform": 5,
    "is_comment_of": 923_045, "has_same_author_as": 5_372_152, "has_same_topic_as": 1_655_971_954,
    "is_history_of": 484_364, "edges": 1_667_716_553,
}


_WRAPPER = (
    "import resource, subprocess, sys, json; r = subprocess.run(sys.argv[1:]); "
    "print(json.dumps({'peak_kb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}), file=sys.stderr); "
    "sys.exit(r.returncode)"
)


def run_child(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (GB) of one command, measured in a fresh wrapper process."""
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-c", _WRAPPER, *cmd], stderr=subprocess.PIPE, text=True)
    wall = time.time() - t0
    lines = proc.stderr.strip().splitlines()
    if proc.returncode:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return round(wall, 1), round(json.loads(lines[-1])["peak_kb"] / 1e6, 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", default="/tmp/xsvideo_bench")
    ap.add_argument("--features", action="store_true", help="also encode features (hash text encoder)")
    ap.add_argument("--json-out", default=None)
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    src, store = work / f"xsvideo_{args.scale}.json", work / f"store_{args.scale}"
    result = {"scale": args.scale, "machine": f"{platform.machine()} {platform.processor() or ''} cores={__import__('os').cpu_count()}".strip()}
    if not src.exists():
        result["synth_s"], result["synth_peak_rss_gb"] = run_child(
            [sys.executable, "-m", "graphstore.cli", "synth", "--scale", str(args.scale), "--seed", str(args.seed), "--out", str(src)])
    result["input_bytes"] = src.stat().st_size
    cmd = [sys.executable, "-m", "graphstore.cli", "build", "--input", str(src), "--out", str(store), "--overwrite"]
    if not args.features:
        cmd.append("--no-features")
    result["build_s"], result["build_peak_rss_gb"] = run_child(cmd)
    info = json.loads(subprocess.run([sys.executable, "-m", "graphstore.cli", "info", str(store), "--json"],
                                     check=True, capture_output=True, text=True).stdout)
    result["bytes"] = info["bytes"]
    result["topology_bytes"] = info["bytes"].get("topology", 0)
    got = {"nodes": info["num_nodes"], "edges": info["num_edges"], **info["nodes"], **info["edges"]}
    f = args.scale
    expected = {k: v * (1 if k in ("topic", "platform") else f) for k, v in PAPER.items()}
    expected["has_same_topic_as"] = PAPER["has_same_topic_as"] * f * f  # 535 topics at every scale
    expected["edges"] = (PAPER["edges"] - PAPER["has_same_topic_as"]) * f + expected["has_same_topic_as"]
    result["counts"] = {k: {"paper": expected[k], "got": got.get(k)} for k in PAPER}
    result["splits"] = info["splits"]
    for k, c in result["counts"].items():
        c["rel_err"] = round(abs(c["got"] - c["paper"]) / c["paper"], 4) if c["got"] is not None and c["paper"] else None
    print(json.dumps(result, indent=2))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
