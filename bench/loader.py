"""End-to-end loader throughput: graphstore.pyg.make_loader vs PyG NeighborLoader over an in-memory HeteroData.

Usage: python bench/loader.py --store STORE [--warmup 10] [--rounds 3] [--batches 20] [--cache-mb 1024] [--pyg]
                              [--feature-cache {none,sieve,lookahead,lookahead-lru}] [--json-out FILE]
Both loaders get the same warm-up, then timed rounds alternate between them; the figure is the median
round. The PyG baseline materialises every relation's edge_index and every feature matrix in memory
(float32), so run it only at scales where that fits. With --pyg the peak RSS is the process's (both
loaders); run without --pyg for our loader's own peak.
"""
from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np
import torch

from graphstore.cli import add_fanouts_argument
from graphstore.pyg import FEATURE_CACHES, LOOKAHEAD_BATCHES, make_loader
from graphstore.store import GraphStore


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def endless(loader):
    """Batches of a loader, epoch after epoch."""
    while True:
        yield from loader


def time_batches(it, batches: int) -> dict:
    """batches/s over the next `batches` batches of an iterator, with nodes and edges per batch."""
    t = time.perf_counter()
    nodes = edges = 0
    for _ in range(batches):
        b = next(it)
        nodes += sum(b[nt].num_nodes for nt in b.node_types)
        edges += sum(b[et].edge_index.shape[1] for et in b.edge_types)
    dt = time.perf_counter() - t
    return {"batches": batches, "seconds": dt, "batches_per_s": batches / dt, "nodes_per_batch": nodes / batches,
            "edges_per_batch": edges / batches}


def summarise(rounds: list[dict]) -> dict:
    """Median of per-round rates, and the rounds themselves."""
    rates = [r["batches_per_s"] for r in rounds]
    return {"batches_per_s": float(np.median(rates)), "min_batches_per_s": min(rates), "max_batches_per_s": max(rates),
            "batches": sum(r["batches"] for r in rounds), "nodes_per_batch": float(np.mean([r["nodes_per_batch"] for r in rounds])),
            "edges_per_batch": float(np.mean([r["edges_per_batch"] for r in rounds])), "rounds": rounds}


def in_memory_heterodata(store: GraphStore, relations):
    """Every relation materialised as edge_index, every x as float32, y on video."""
    from torch_geometric.data import HeteroData

    from graphstore.pyg import GraphStoreGraphStore

    data = HeteroData()
    gs = GraphStoreGraphStore(store, relations=relations)
    for attr in gs.get_all_edge_attrs():
        row, colptr = gs._get_edge_index(attr)
        col = torch.repeat_interleave(torch.arange(colptr.numel() - 1), colptr.diff())
        data[attr.edge_type].edge_index = torch.stack([row, col])
    types = {"video"} | {et[0] for et in data.edge_types}
    for t in types:
        f = store.features(t)
        data[t].x = torch.from_numpy(f.gather(np.arange(f.shape[0])).astype(np.float32))
    data["video"].y = torch.from_numpy(store.labels().astype(np.float32))
    return data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--store", required=True)
    ap.add_argument("--batches", type=int, default=20, help="batches per timed round")
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds, alternating between the loaders")
    ap.add_argument("--warmup", type=int, default=10, help="untimed batches per loader before the rounds")
    ap.add_argument("--batch-size", type=int, default=512)
    add_fanouts_argument(ap, default=[10, 10], help="neighbours per relation and hop")
    ap.add_argument("--cache-mb", type=int, default=1024)
    ap.add_argument("--num-workers", type=int, default=0)
    ap.add_argument("--raw-read", default="auto", choices=["auto", "mmap", "pread"],
                    help="how raw feature arrays are read (auto: mmap while they fit in the cache budget)")
    ap.add_argument("--feature-cache", default="none", choices=sorted(FEATURE_CACHES),
                    help="feature reader within --cache-mb: none (raw arrays by --raw-read), sieve (chunk cache), "
                         "lookahead (Belady over the next --lookahead batches), lookahead-lru")
    ap.add_argument("--lookahead", type=int, default=LOOKAHEAD_BATCHES,
                    help="batches the look-ahead cache samples ahead (default: %(default)s)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pyg", action="store_true", help="also time PyG's NeighborLoader on in-memory HeteroData")
    ap.add_argument("--json-out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    store = GraphStore.open(args.store)
    fanouts = args.fanouts
    res = {"store": str(store.path), "videos": store.num_nodes("video"), "fanouts": fanouts,
           "batch_size": args.batch_size, "cache_mb": args.cache_mb, "threads": args.threads,
           "num_workers": args.num_workers, "warmup_batches": args.warmup, "rounds": args.rounds,
           "batches_per_round": args.batches, "feature_cache": args.feature_cache, "lookahead": args.lookahead}
    loaders = {"graphstore": make_loader(store, "train", fanouts=fanouts, batch_size=args.batch_size,
                                         num_workers=args.num_workers, cache_bytes=args.cache_mb << 20, seed=0,
                                         raw_read=args.raw_read, feature_cache=args.feature_cache,
                                         lookahead_batches=args.lookahead)}
    res["raw_read"] = loaders["graphstore"].data[0].raw_read
    if args.pyg:
        from torch_geometric.loader import NeighborLoader

        t = time.perf_counter()
        data = in_memory_heterodata(store, None)
        res["pyg_materialise_s"] = time.perf_counter() - t
        torch.manual_seed(0)
        loaders["pyg"] = NeighborLoader(data, num_neighbors=fanouts, batch_size=args.batch_size, shuffle=True,
                                        input_nodes=("video", torch.from_numpy(store.split("train"))),
                                        num_workers=args.num_workers)
    # warm-up (worker start, lazy opens, first touch of mapped pages, kernel compilation), then
    # alternating rounds so that both loaders see the same machine state
    iters = {name: endless(loader) for name, loader in loaders.items()}
    for it in iters.values():
        for _ in range(args.warmup):
            next(it)
    rounds: dict[str, list] = {name: [] for name in loaders}
    for r in range(args.rounds):
        for name, it in iters.items():
            rounds[name].append(time_batches(it, args.batches))
            print(f"round {r} {name}: {rounds[name][-1]['batches_per_s']:.2f} batches/s", flush=True)
    for name in loaders:
        res[name] = summarise(rounds[name])
    res["peak_rss_gb_process"] = peak_rss_gb()
    cache = getattr(loaders["graphstore"].data[0], "cache", None)
    if cache is not None:
        res["lookahead_cache"] = {k: v for k, v in cache.stats().items() if k != "types"}
    print("graphstore loader:", {k: v for k, v in res["graphstore"].items() if k != "rounds"})
    if args.pyg:
        print("PyG NeighborLoader (in memory):", {k: v for k, v in res["pyg"].items() if k != "rounds"})
        ratios = [a["batches_per_s"] / b["batches_per_s"] for a, b in zip(rounds["graphstore"], rounds["pyg"])]
        res["speedup_median"] = res["graphstore"]["batches_per_s"] / res["pyg"]["batches_per_s"]
        res["speedup_per_round"] = ratios
        print(f"speed-up (ratio of medians): {res['speedup_median']:.2f}x; per round: "
              + ", ".join(f"{x:.2f}" for x in ratios))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
