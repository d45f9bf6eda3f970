"""Pure-Python reference sampler (tests only): same RNG and draws, exact Relation.in_neighbors."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from graphstore.sampler import rng
from graphstore.sampler.neighbor import Fanouts, active_relations, as_topology, parse_fanouts
from graphstore.sampler.output import SampleOutput


def reference_sample(topology_or_store, fanouts: Fanouts, seed_ids, *, replace: bool = False, seed: int = 0,
                     batch: int = 0, relations: Sequence[str] | None = None) -> SampleOutput:
    """The sample NeighborSampler must return, computed with Python lists and dicts."""
    topo = as_topology(topology_or_store)
    active = active_relations(topo, relations)
    fan = parse_fanouts(fanouts, [r.name for _, r in active])
    types = ["video"] + sorted({r.head for _, r in active} - {"video"})
    node: dict[str, list[int]] = {t: [] for t in types}
    local: dict[str, dict[int, int]] = {t: {} for t in types}

    def add(t: str, g: int) -> int:
        if g not in local[t]:
            local[t][g] = len(node[t])
            node[t].append(g)
        return local[t][g]

    for s in np.asarray(seed_ids, dtype=np.int64).ravel().tolist():
        if s in local["video"]:
            raise ValueError("seed video ids must be distinct")
        add("video", s)
    nodes_per_hop = {t: [len(node[t])] for t in types}
    ets = [r.edge_type for _, r in active]
    rows: dict = {et: [] for et in ets}
    cols: dict = {et: [] for et in ets}
    edges_per_hop: dict = {et: [] for et in ets}
    frontier = list(node["video"])
    for h, ks in enumerate(fan):
        before = {t: len(node[t]) for t in types}
        for (idx, rel), k in zip(active, ks):
            n0 = len(rows[rel.edge_type])
            if k != 0:
                rkey = rng.relation_key(seed, batch, h + 1, idx)
                for tail in frontier:
                    nbrs = rel.in_neighbors(tail).tolist()
                    for off in rng.draw_offsets(rng.node_key(rkey, tail), len(nbrs), k, replace):
                        rows[rel.edge_type].append(add(rel.head, nbrs[off]))
                        cols[rel.edge_type].append(local["video"][tail])
            edges_per_hop[rel.edge_type].append(len(rows[rel.edge_type]) - n0)
        for t in types:
            nodes_per_hop[t].append(len(node[t]) - before[t])
        frontier = node["video"][before["video"]:]
    arr = lambda x: np.asarray(x, dtype=np.int64)  # noqa: E731
    return SampleOutput(
        node={t: arr(v) for t, v in node.items()},
        row={et: arr(v) for et, v in rows.items()},
        col={et: arr(v) for et, v in cols.items()},
        num_sampled_nodes=nodes_per_hop,
        num_sampled_edges=edges_per_hop,
        backend="reference",
    )
