"""End-to-end loader throughput: graphstore.pyg.make_loader vs PyG NeighborLoader over an in-memory HeteroData.

Usage: python bench/loader.py --store STORE [--batches 30] [--cache-mb 1024] [--pyg] [--json-out FILE]
The PyG baseline materialises every relation's edge_index and every feature matrix in memory
(float32), so run it only at scales where that fits.
"""
from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np
import torch

from graphstore.pyg import make_loader
from graphstore.store import GraphStore


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def run_loader(loader, batches: int) -> dict:
    it = iter(loader)
    next(it)  # warm-up: worker start, lazy opens, kernel compilation
    t = time.perf_counter()
    nodes = edges = k = 0
    for k, b in enumerate(it, 1):
        nodes += sum(b[nt].num_nodes for nt in b.node_types)
        edges += sum(b[et].edge_index.shape[1] for et in b.edge_types)
        if k >= batches:
            break
    dt = time.perf_counter() - t
    return {"batches": k, "seconds": dt, "batches_per_s": k / dt, "nodes_per_batch": nodes / max(1, k),
            "edges_per_batch": edges / max(1, k)}


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
    ap.add_argument("--batches", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--fanouts", default="10,10")
    ap.add_argument("--cache-mb", type=int, default=1024)
    ap.add_argument("--num-workers", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pyg", action="store_true", help="also time PyG's NeighborLoader on in-memory HeteroData")
    ap.add_argument("--json-out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    store = GraphStore.open(args.store)
    fanouts = [int(f) for f in args.fanouts.split(",")]
    res = {"store": str(store.path), "videos": store.num_nodes("video"), "fanouts": fanouts,
           "batch_size": args.batch_size, "cache_mb": args.cache_mb, "threads": args.threads,
           "num_workers": args.num_workers}
    loader = make_loader(store, "train", fanouts=fanouts, batch_size=args.batch_size, num_workers=args.num_workers,
                         cache_bytes=args.cache_mb << 20, seed=0)
    res["graphstore"] = run_loader(loader, args.batches)
    res["graphstore"]["peak_rss_gb"] = peak_rss_gb()
    print("graphstore loader:", json.dumps(res["graphstore"]))
    if args.pyg:
        from torch_geometric.loader import NeighborLoader

        t = time.perf_counter()
        data = in_memory_heterodata(store, None)
        res["pyg_materialise_s"] = time.perf_counter() - t
        pyg = NeighborLoader(data, num_neighbors=fanouts, input_nodes=("video", torch.from_numpy(store.split("train"))),
                             batch_size=args.batch_size, shuffle=True, num_workers=args.num_workers)
        res["pyg"] = run_loader(pyg, args.batches)
        res["pyg"]["peak_rss_gb"] = peak_rss_gb()
        print("PyG NeighborLoader (in memory):", json.dumps(res["pyg"]))
        print(f"speed-up: {res['graphstore']['batches_per_s'] / res['pyg']['batches_per_s']:.2f}x")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
