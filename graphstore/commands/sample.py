"""`graphstore sample STORE`: neighbour-sampling throughput (SEPS), latency and peak RSS."""
from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import TYPE_CHECKING
import json
import resource
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np

from graphstore.cli import add_fanouts_argument, add_store_argument, non_negative_int, positive_int, random_seed, store_path
from graphstore.errors import UserError

if TYPE_CHECKING:
    from graphstore.sampler import NeighborSampler


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help="sample neighbourhoods of random seed videos and report SEPS and latency")
    add_store_argument(p)
    p.add_argument("--batch-size", type=positive_int, default=512, help="seed videos per batch")
    add_fanouts_argument(p, default=[50, 51], help="neighbours per relation and hop, for every relation")
    p.add_argument("--batches", type=positive_int, default=20, help="timed batches")
    p.add_argument("--warmup", type=non_negative_int, default=1, help="untimed batches first (JIT compile, page cache)")
    p.add_argument("--threads", type=positive_int, default=None, help="thread count of the sampler (default: all cores)")
    p.add_argument("--backend", default="auto", choices=("auto", "cpp", "numba"),
                   help="sampling kernels (auto: C++ when built, else Numba)")
    p.add_argument("--relations", default=None, help="comma-separated relations to sample (default: all)")
    p.add_argument("--split", default="train", help="split the seeds come from")
    p.add_argument("--replace", action="store_true", help="sample with replacement")
    p.add_argument("--seed", type=random_seed, default=0, help="seed of every random choice (the seed order and the sampler)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (there is none unless stderr is a terminal, nor with --json)")
    p.set_defaults(func=run)


@dataclass
class SampleReport:
    """Throughput of one `graphstore sample` run."""

    store: str
    backend: str
    threads: int
    batch_size: int
    fanouts: list[int]
    batches: int
    edges: int
    nodes: int
    seconds: float
    seps: float
    nodes_per_s: float
    edges_per_batch: float
    latency_p50_ms: float
    latency_p95_ms: float
    peak_rss_mb: float


def seed_batches(pool: np.ndarray, batch_size: int, count: int, seed: int) -> Iterator[np.ndarray]:
    """`count` batches of distinct seeds: slices of shuffled passes over the pool."""
    rng = np.random.default_rng(seed)
    order, pos = rng.permutation(pool), 0
    for _ in range(count):
        if pos + batch_size > len(order):
            order, pos = rng.permutation(pool), 0
        yield order[pos:pos + batch_size]
        pos += batch_size


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(sampler: NeighborSampler, pool: np.ndarray, batch_size: int, batches: int, warmup: int, seed: int,
            progress: bool = False) -> dict:
    """Runs warmup + timed batches; per-batch seconds, edges and nodes of the timed ones."""
    from tqdm import tqdm

    times, edges, nodes = [], 0, 0
    gen = seed_batches(pool, batch_size, warmup + batches, seed)
    for i, seeds in enumerate(tqdm(gen, total=warmup + batches, desc="sampling", unit="batch", disable=not progress)):
        t0 = time.perf_counter()
        out = sampler.sample(seeds, batch=i)
        dt = time.perf_counter() - t0
        if i >= warmup:
            times.append(dt)
            edges += out.num_edges
            nodes += out.num_nodes
    return {"times": np.asarray(times), "edges": edges, "nodes": nodes}


def run(args: argparse.Namespace) -> int:
    from graphstore.sampler import NeighborSampler
    from graphstore.store import GraphStore

    fanouts = args.fanouts
    store = GraphStore.open(store_path(args))
    pool = store.split(args.split)
    if len(pool) < args.batch_size:
        raise UserError(f"split {args.split!r} has {len(pool)} videos, fewer than --batch-size {args.batch_size}")
    relations = [r.strip() for r in args.relations.split(",") if r.strip()] if args.relations is not None else None
    if relations == []:
        raise UserError(f"--relations {args.relations!r} names no relation; give one or more, comma-separated")
    sampler = NeighborSampler(store, fanouts, replace=args.replace, seed=args.seed, backend=args.backend,
                              num_threads=args.threads, relations=relations)
    m = measure(sampler, pool, args.batch_size, args.batches, args.warmup, args.seed,
                progress=sys.stderr.isatty() and not args.json and not args.no_progress)
    total = float(m["times"].sum())
    report = SampleReport(
        store=str(store.path), backend=sampler.backend, threads=sampler.num_threads, batch_size=args.batch_size,
        fanouts=fanouts, batches=args.batches, edges=m["edges"], nodes=m["nodes"], seconds=round(total, 4),
        seps=m["edges"] / total, nodes_per_s=m["nodes"] / total, edges_per_batch=m["edges"] / args.batches,
        latency_p50_ms=float(np.percentile(m["times"], 50) * 1e3),
        latency_p95_ms=float(np.percentile(m["times"], 95) * 1e3), peak_rss_mb=peak_rss_mb(),
    )
    if args.json:
        print(json.dumps(asdict(report), indent=2))
        return 0
    print(f"store {report.store}: backend {report.backend}, {report.threads} thread(s), batch {report.batch_size}, "
          f"fanouts {report.fanouts}, {report.batches} batches")
    print(f"  SEPS (sampled edges/s)   {report.seps:>16,.0f}")
    print(f"  sampled nodes/s          {report.nodes_per_s:>16,.0f}")
    print(f"  edges per batch          {report.edges_per_batch:>16,.0f}")
    print(f"  batch latency p50 / p95  {report.latency_p50_ms:>9.2f} / {report.latency_p95_ms:.2f} ms")
    print(f"  peak RSS                 {report.peak_rss_mb:>13,.0f} MiB")
    return 0
