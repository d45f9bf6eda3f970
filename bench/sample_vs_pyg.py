"""Our NeighborSampler vs PyG's neighbour sampler on the same graph, seeds, fanouts and threads.

The store's graph is materialised once as a PyG HeteroData (every implicit bucket edge written
out), then both samplers run the same seed batches, alternating round by round, and the script
prints sampled edges per second (SEPS) for both and their ratio. PyG's sampling needs pyg-lib or
torch-sparse (`pip install -e ".[bench]"`); without either, only our side is measured.

    python bench/sample_vs_pyg.py --store /tmp/s005 --threads 2 [--loader] [--json-out FILE]
"""
from __future__ import annotations

import argparse
import gc
import platform
import statistics
import sys
import time

import numpy as np
import torch

from graphstore.atomic import write_json
from graphstore.cli import add_fanouts_argument
from graphstore.commands.sample import peak_rss_mb, seed_batches
from graphstore.sampler import NeighborSampler
from graphstore.store import GraphStore
from graphstore.topology import Relation


def edge_index(rel: Relation, num_videos: int) -> np.ndarray:
    """All (head, tail) pairs of one relation as an int64 [2, E] array (buckets written out)."""
    return rel.edge_index(num_videos)


def materialise(store: GraphStore):
    """The store's topology as a torch_geometric HeteroData with every edge explicit."""
    from torch_geometric.data import HeteroData

    data = HeteroData()
    for t, n in store.meta["node_types"].items():
        data[t].num_nodes = int(n)
    nv = store.num_nodes("video")
    for rel in store.relations:
        data[rel.edge_type].edge_index = torch.from_numpy(edge_index(rel, nv))
    return data


def pyg_backend() -> str | None:
    """'pyg-lib' or 'torch-sparse' when PyG can sample, else None."""
    import torch_geometric.typing as tg

    if tg.WITH_PYG_LIB:
        return "pyg-lib"
    if tg.WITH_TORCH_SPARSE:
        return "torch-sparse"
    return None


def time_ours(sampler: NeighborSampler, batches: list[np.ndarray], first: int) -> tuple[float, int]:
    """Seconds and sampled edges over the batches."""
    edges, t0 = 0, time.perf_counter()
    for i, seeds in enumerate(batches):
        edges += sampler.sample(seeds, batch=first + i).num_edges
    return time.perf_counter() - t0, edges


def time_pyg(sampler, batches: list[np.ndarray]) -> tuple[float, int]:
    """Seconds and sampled edges of PyG's sampler (what NeighborLoader calls per batch)."""
    from torch_geometric.sampler import NodeSamplerInput

    inputs = [NodeSamplerInput(input_id=None, node=torch.from_numpy(s), input_type="video") for s in batches]
    edges, t0 = 0, time.perf_counter()
    for inp in inputs:
        out = sampler.sample_from_nodes(inp)
        edges += sum(int(r.numel()) for r in out.row.values())
    return time.perf_counter() - t0, edges


def time_loader(data, fanouts: list[int], batches: list[np.ndarray]) -> tuple[float, int]:
    """Seconds and edges of a full PyG NeighborLoader pass (sampling plus HeteroData assembly)."""
    from torch_geometric.loader import NeighborLoader

    seeds = torch.from_numpy(np.concatenate(batches))
    loader = NeighborLoader(data, num_neighbors={et: list(fanouts) for et in data.edge_types},
                            input_nodes=("video", seeds), batch_size=len(batches[0]), shuffle=False)
    edges, t0 = 0, time.perf_counter()
    for batch in loader:
        edges += sum(int(batch[et].edge_index.shape[1]) for et in batch.edge_types)
    return time.perf_counter() - t0, edges


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--batch-size", type=int, default=512)
    add_fanouts_argument(ap, default=[50, 51], help="neighbours per relation and hop")
    ap.add_argument("--batches", type=int, default=10, help="batches per round and sampler")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (ours, PyG, ours, PyG, ...)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--backend", default="auto", choices=("auto", "cpp", "numba"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--loader", action="store_true", help="also time a full NeighborLoader pass")
    ap.add_argument("--json-out", default=None, help="write the figures as JSON here")
    args = ap.parse_args(argv)

    fanouts = args.fanouts
    torch.set_num_threads(args.threads)
    store = GraphStore.open(args.store)
    pool = store.split("train")
    batches = list(seed_batches(pool, args.batch_size, args.batches + 1, args.seed))
    warm, batches = batches[0], batches[1:]
    ours = NeighborSampler(store, fanouts, seed=args.seed, backend=args.backend, num_threads=args.threads)
    ours.sample(warm)  # JIT / page cache
    rss_ours = peak_rss_mb()

    which = pyg_backend()
    pyg = data = None
    t_setup = t_mat = None
    if which:
        from torch_geometric.sampler import NeighborSampler as PygSampler

        t0 = time.perf_counter()
        data = materialise(store)
        t_mat = time.perf_counter() - t0
        t0 = time.perf_counter()
        pyg = PygSampler(data, num_neighbors={et: list(fanouts) for et in data.edge_types})
        t_setup = time.perf_counter() - t0
        time_pyg(pyg, [warm])
    else:
        print("PyG cannot sample here: neither pyg-lib nor torch-sparse imports; measuring ours only", file=sys.stderr)

    rows = []
    for r in range(args.rounds):
        sec, edges = time_ours(ours, batches, first=1 + r * len(batches))
        rows.append({"round": r, "sampler": f"graphstore-{ours.backend}", "seconds": sec, "edges": edges,
                     "seps": edges / sec})
        if pyg is not None:
            gc.collect()
            sec, edges = time_pyg(pyg, batches)
            rows.append({"round": r, "sampler": f"pyg-{which}", "seconds": sec, "edges": edges, "seps": edges / sec})
        for row in rows[-2:] if pyg is not None else rows[-1:]:
            print(f"round {r}  {row['sampler']:<22} {row['seps']:>14,.0f} SEPS  "
                  f"({row['edges'] / len(batches):,.0f} edges/batch, {row['seconds']:.2f} s)")

    med = {name: statistics.median(x["seps"] for x in rows if x["sampler"] == name)
           for name in dict.fromkeys(x["sampler"] for x in rows)}
    result = {
        "store": str(store.path), "videos": store.num_nodes("video"),
        "edges": sum(r["num_edges"] for r in store.meta["relations"]),
        "batch_size": args.batch_size, "fanouts": fanouts, "batches": args.batches, "rounds": args.rounds,
        "threads": args.threads, "pyg_backend": which, "median_seps": med, "rounds_detail": rows,
        "pyg_materialise_s": t_mat, "pyg_sampler_setup_s": t_setup,
        "peak_rss_mb_ours": rss_ours, "peak_rss_mb_total": peak_rss_mb(),
        "machine": f"{platform.machine()} {platform.processor() or ''} cpus={torch.get_num_threads()}",
    }
    if pyg is not None:
        ours_seps = med[f"graphstore-{ours.backend}"]
        pyg_seps = med[f"pyg-{which}"]
        result["ratio"] = ours_seps / pyg_seps
        print(f"median SEPS: graphstore-{ours.backend} {ours_seps:,.0f}  pyg-{which} {pyg_seps:,.0f}  "
              f"ratio {result['ratio']:.1f}x")
        if args.loader:
            sec, edges = time_loader(data, fanouts, batches)
            result["pyg_loader_seps"] = edges / sec
            print(f"PyG NeighborLoader (sampling + HeteroData assembly): {edges / sec:,.0f} SEPS")
    else:
        print(f"median SEPS: graphstore-{ours.backend} {med[f'graphstore-{ours.backend}']:,.0f} (PyG: not run)")
    print(f"peak RSS: {result['peak_rss_mb_ours']:,.0f} MiB before materialising, "
          f"{result['peak_rss_mb_total']:,.0f} MiB after")
    if args.json_out:
        write_json(args.json_out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
