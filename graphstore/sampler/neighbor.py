"""NeighborSampler: multi-hop uniform in-neighbour sampling over a Topology, no edges materialised."""
from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from graphstore.errors import SamplerError
from graphstore.sampler import rng
from graphstore.sampler.kernel import SamplerBackend, kernel_relation
from graphstore.sampler.output import SampleOutput
from graphstore.topology import Relation, Topology

if TYPE_CHECKING:
    from graphstore.store import GraphStore

log = logging.getLogger(__name__)

BACKENDS = ("auto", "cpp", "numba")


Fanouts = Sequence[int | Mapping[str, int]]


def as_topology(topology_or_store: Topology | GraphStore) -> Topology:
    """The Topology itself, or the `.topology` of a store-like object."""
    if isinstance(topology_or_store, Topology):
        return topology_or_store
    topo = getattr(topology_or_store, "topology", None)
    if topo is None:
        raise SamplerError(f"expected a Topology or an object with .topology, got {type(topology_or_store).__name__}")
    return topo


def active_relations(topology: Topology, relations: Sequence[str] | None) -> list[tuple[int, Relation]]:
    """(RNG relation index, Relation) of the relations in use, in topology order."""
    names = list(topology.relations)
    if relations is not None:
        unknown = [r for r in relations if r not in topology.relations]
        if unknown:
            raise SamplerError(f"unknown relation(s) {unknown}; the topology has {names}")
    keep = set(names if relations is None else relations)
    out = []
    for idx, name in enumerate(names):
        rel = topology.relations[name]
        if name in keep:
            if rel.tail != "video":
                raise SamplerError(f"relation {name}: tail must be 'video', got {rel.tail!r}")
            out.append((idx, rel))
    return out


def parse_fanouts(fanouts: Fanouts, names: Sequence[str]) -> list[list[int]]:
    """Per hop, the fanout of every relation in `names` (0: skip, -1: all)."""
    if isinstance(fanouts, (int, str, Mapping)) or not isinstance(fanouts, Sequence):
        raise SamplerError("fanouts must be a list with one entry per hop")
    if len(fanouts) == 0:
        raise SamplerError("fanouts must have at least one hop")
    out = []
    for hop, entry in enumerate(fanouts):
        if isinstance(entry, Mapping):
            unknown = [r for r in entry if r not in names]
            if unknown:
                raise SamplerError(f"fanouts hop {hop}: unknown or inactive relation(s) {unknown}")
            row = [entry.get(r, 0) for r in names]
        else:
            row = [entry] * len(names)
        for r, k in zip(names, row):
            if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < -1:
                raise SamplerError(f"fanouts hop {hop} relation {r}: expected an int >= -1, got {k!r}")
        out.append([int(k) for k in row])
    return out


def make_backend(backend: str, num_threads: int | None) -> SamplerBackend:
    """The kernel backend object for a name ('auto': C++ when built, else Numba)."""
    from graphstore.sampler import cpp_backend

    if backend not in BACKENDS:
        raise SamplerError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if num_threads is not None and (isinstance(num_threads, bool) or int(num_threads) < 1):
        raise SamplerError(f"num_threads must be a positive int or None, got {num_threads!r}")
    if backend == "cpp" and not cpp_backend.available():
        raise SamplerError(f"the C++ sampler is not built ({cpp_backend.IMPORT_ERROR}); run "
                           "`python setup.py build_ext --inplace` or use backend='numba'")
    if backend == "cpp" or (backend == "auto" and cpp_backend.available()):
        return cpp_backend.CppBackend(num_threads)
    from graphstore.sampler.numba_backend import NumbaBackend

    if backend == "auto":
        log.info("C++ sampler not importable (%s); using Numba", cpp_backend.IMPORT_ERROR)
    return NumbaBackend(num_threads)


class NeighborSampler:
    """Uniform multi-hop in-neighbour sampler over a graphstore Topology (C++ or Numba kernels)."""

    def __init__(self, topology_or_store: Topology | GraphStore, fanouts: Fanouts, *, replace: bool = False,
                 seed: int = 0, backend: str = "auto", num_threads: int | None = None,
                 relations: Sequence[str] | None = None) -> None:
        self.topology = as_topology(topology_or_store)
        self.replace, self.seed = bool(replace), int(seed)
        active = active_relations(self.topology, relations)
        self.relations = [kernel_relation(i, r, self.topology.num_nodes) for i, r in active]
        self.fanouts = parse_fanouts(fanouts, [r.name for r in self.relations])
        self.num_hops = len(self.fanouts)
        self._backend = make_backend(backend, num_threads)
        self.backend: str = self._backend.name
        self.num_threads: int = self._backend.num_threads
        self.node_types = self.topology.node_types_reached(r.name for r in self.relations)
        self._maps = {t: np.full(self.topology.num_nodes[t], -1, np.int32) for t in self.node_types}
        self._bufs = {t: np.empty(1024, np.int64) for t in self.node_types}
        self._lock = threading.Lock()
        log.info("neighbour sampler: backend=%s threads=%d relations=%d hops=%d",
                 self.backend, self.num_threads, len(self.relations), self.num_hops)

    @property
    def edge_types(self) -> list[tuple[str, str, str]]:
        return [r.edge_type for r in self.relations]

    def _room(self, node_type: str, need: int) -> None:
        buf = self._bufs[node_type]
        if buf.shape[0] < need:
            new = np.empty(max(need, 2 * buf.shape[0]), np.int64)
            new[: buf.shape[0]] = buf
            self._bufs[node_type] = new

    def _relabel(self, node_type: str, heads: np.ndarray, n: int, source: str) -> tuple[np.ndarray, int]:
        """Local ids of `heads`, appending new nodes after the first n; all or nothing."""
        self._room(node_type, n + heads.shape[0])
        rows, n2 = self._backend.relabel(heads, self._maps[node_type], self._bufs[node_type], n)
        if n2 < 0:  # the kernel undid its own additions; name the first bad id
            size = self._maps[node_type].shape[0]
            bad = int(heads[np.argmax((heads < 0) | (heads >= size))])
            raise SamplerError(f"{source}: {node_type} id {bad} is out of range (valid ids: 0..{size - 1})")
        return rows, int(n2)

    def _forget(self, count: Mapping[str, int]) -> None:
        """Resets the map entries of the nodes a sample added (count[t] of each type)."""
        for t in self.node_types:
            self._maps[t][self._bufs[t][: count[t]]] = -1

    def _clear(self) -> None:
        """Resets every map entry: after a failure, whatever state it left, the next sample starts clean."""
        for m in self._maps.values():
            m.fill(-1)

    def sample(self, seed_ids: np.ndarray | Sequence[int], batch: int = 0) -> SampleOutput:
        """Samples the multi-hop neighbourhood of distinct video seed ids (batch keys the RNG)."""
        seeds = np.ascontiguousarray(np.asarray(seed_ids).ravel())
        if seeds.size and not np.issubdtype(seeds.dtype, np.integer):
            raise SamplerError(f"seed video ids must be integers, got dtype {seeds.dtype}")
        seeds = seeds.astype(np.int64, copy=False)
        nv = self.topology.num_videos
        if seeds.size and (seeds.min() < 0 or seeds.max() >= nv):
            bad = int(seeds[np.argmax((seeds < 0) | (seeds >= nv))])
            raise SamplerError(f"seed video id {bad} is out of range (valid ids: 0..{nv - 1})")
        with self._lock:
            count = {t: 0 for t in self.node_types}
            try:
                return self._sample(seeds, int(batch), count)
            except BaseException:
                self._clear()
                raise
            finally:
                self._forget(count)

    def _sample(self, seeds: np.ndarray, batch: int, count: dict[str, int]) -> SampleOutput:
        _, count["video"] = self._relabel("video", seeds, 0, "seeds")
        if count["video"] != seeds.shape[0]:
            raise SamplerError("seed video ids must be distinct")
        nodes_per_hop = {t: [count[t]] for t in self.node_types}
        edges_per_hop: dict[tuple, list[int]] = {r.edge_type: [] for r in self.relations}
        rows: dict[tuple, list[np.ndarray]] = {r.edge_type: [] for r in self.relations}
        cols: dict[tuple, list[np.ndarray]] = {r.edge_type: [] for r in self.relations}
        lo, hi = 0, count["video"]
        for h in range(self.num_hops):
            frontier = self._bufs["video"][lo:hi].copy()
            before = dict(count)
            for rel, k in zip(self.relations, self.fanouts[h]):
                if k == 0 or frontier.shape[0] == 0:
                    edges_per_hop[rel.edge_type].append(0)
                    continue
                key = rng.relation_key(self.seed, batch, h + 1, rel.index)
                heads, col = self._backend.draw(rel, frontier, lo, k, self.replace, key)
                row, count[rel.head] = self._relabel(rel.head, heads, count[rel.head], f"relation {rel.name}")
                rows[rel.edge_type].append(row)
                cols[rel.edge_type].append(col)
                edges_per_hop[rel.edge_type].append(int(row.shape[0]))
            for t in self.node_types:
                nodes_per_hop[t].append(count[t] - before[t])
            lo, hi = before["video"], count["video"]
        cat = lambda parts: np.concatenate(parts) if parts else np.zeros(0, np.int64)  # noqa: E731
        return SampleOutput(
            node={t: self._bufs[t][: count[t]].copy() for t in self.node_types},
            row={et: cat(p) for et, p in rows.items()},
            col={et: cat(p) for et, p in cols.items()},
            num_sampled_nodes=nodes_per_hop,
            num_sampled_edges=edges_per_hop,
            backend=self.backend,
        )
