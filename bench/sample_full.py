"""Sampling throughput of one store across backends and thread counts (no PyG: any scale).

Each configuration runs in its own process (`graphstore sample --json`) so that peak RSS is per
configuration; the issue's full-scale target is >= 30 M SEPS on 2 threads with peak RSS < 2 GB.

    python bench/sample_full.py --store STORE [--threads 1,2] [--backends cpp,numba] [--batches 20]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

from graphstore.atomic import write_json


def run_one(store: str, backend: str, threads: int, args: argparse.Namespace) -> dict:
    """One `graphstore sample --json` run in a fresh process; its report."""
    cmd = [sys.executable, "-m", "graphstore.cli", "sample", "--store", store, "--backend", backend,
           "--threads", str(threads), "--batch-size", str(args.batch_size), "--fanouts", args.fanouts,
           "--batches", str(args.batches), "--warmup", str(args.warmup), "--seed", str(args.seed), "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr}")
    return json.loads(done.stdout)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    ap.add_argument("--backends", default="cpp,numba", help="comma-separated backends")
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--fanouts", default="50,51")
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json-out", default=None)
    args = ap.parse_args(argv)

    reports = []
    print(f"{'backend':<8}{'threads':>8}{'SEPS':>16}{'nodes/s':>14}{'edges/batch':>13}{'p50 ms':>9}{'p95 ms':>9}{'RSS MiB':>9}")
    for backend in args.backends.split(","):
        for threads in (int(t) for t in args.threads.split(",")):
            r = run_one(args.store, backend, threads, args)
            reports.append(r)
            print(f"{r['backend']:<8}{r['threads']:>8}{r['seps']:>16,.0f}{r['nodes_per_s']:>14,.0f}"
                  f"{r['edges_per_batch']:>13,.0f}{r['latency_p50_ms']:>9.1f}{r['latency_p95_ms']:>9.1f}"
                  f"{r['peak_rss_mb']:>9,.0f}")
    if args.json_out:
        write_json(args.json_out, reports)
    return 0


if __name__ == "__main__":
    sys.exit(main())
