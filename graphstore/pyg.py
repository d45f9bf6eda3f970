"""PyG integration: FeatureStore, GraphStore and BaseSampler over a graphstore, and `make_loader`."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch_geometric.data import EdgeAttr, FeatureStore, TensorAttr
from torch_geometric.data import GraphStore as PygGraphStore
from torch_geometric.data.graph_store import EdgeLayout
from torch_geometric.loader import NodeLoader
from torch_geometric.sampler import BaseSampler, HeteroSamplerOutput, NodeSamplerInput

from graphstore.errors import UserError
from graphstore.features.array import RAW_READS, FeatureArray, open_feature
from graphstore.store import GraphStore

if TYPE_CHECKING:
    from graphstore.sampler import NeighborSampler

# feature memory of one loader process, shared by all the feature arrays it opens: chunk caches plus
# the raw arrays memory-mapped while they fit (a FeatureArray opened alone has CHUNK_CACHE_BYTES)
LOADER_FEATURE_BYTES = 1 << 30

StoreLike = GraphStore | str | Path


def _store(store: StoreLike) -> GraphStore:
    """The store itself, or the store opened at a path."""
    return store if isinstance(store, GraphStore) else GraphStore.open(Path(store))


def _shared_float32(shape: tuple[int, int]) -> torch.Tensor:
    """An uninitialised float32 tensor whose storage is already in shared memory."""
    storage = torch.UntypedStorage._new_shared(max(1, shape[0] * shape[1]) * 4)
    return torch.empty(0, dtype=torch.float32).set_(storage, 0, shape)


class GraphStoreFeatureStore(FeatureStore):
    """Read-only PyG FeatureStore: `x` of every featurized node type (float32) and `y` (level) of videos."""

    def __init__(self, store: StoreLike, node_types: Sequence[str] | None = None,
                 cache_bytes: int = LOADER_FEATURE_BYTES, drop_features: Sequence[str] = (),
                 raw_read: str = "auto") -> None:
        super().__init__()
        store = _store(store)
        self.path = store.path
        feats = store.meta.get("features", {})
        types = [t for t in (node_types or store.node_types) if t not in set(drop_features)]
        missing = [t for t in types if t not in feats]
        if missing:
            raise UserError(f"{store.path}: no features for {missing}; run `graphstore featurize {store.path}`")
        sizes = {t: store.num_nodes(t) * feats[t]["dim"] * np.dtype(feats[t]["dtype"]).itemsize for t in types}
        total = max(1, sum(sizes.values()))
        # the cache budget is shared in proportion to each matrix's size on disk
        self.arrays: dict[str, FeatureArray] = {
            t: open_feature(store, t, "x", cache_bytes=int(cache_bytes * sizes[t] / total)) for t in types}
        if raw_read not in ("auto", *RAW_READS):
            raise UserError(f"raw_read must be 'auto' or one of {RAW_READS}, got {raw_read!r}")
        self.raw_read = {t: raw_read for t, a in self.arrays.items() if a.layout.codec == "raw"}
        if raw_read == "auto":
            # memory maps are fastest, but every page a batch maps counts in RSS (with the kernel's
            # fault-around, up to the whole file): map the smallest raw arrays while their files fit
            # in the budget, read the rest with pread()
            mapped = 0
            for t in sorted(self.raw_read, key=lambda t: sizes[t]):
                mapped += sizes[t]
                self.raw_read[t] = "mmap" if mapped <= cache_bytes else "pread"
        for t, how in self.raw_read.items():
            self.arrays[t].raw_read = how
        self.dropped = {t: (store.num_nodes(t), feats.get(t, {}).get("dim", 1)) for t in drop_features
                        if t in store.node_types}
        self.labels = store.labels().astype(np.float32)

    def _get_tensor(self, attr: TensorAttr) -> torch.Tensor | None:
        idx = attr.index
        if attr.attr_name == "y" and attr.group_name == "video":
            ids = np.arange(len(self.labels)) if idx is None else np.asarray(idx, dtype=np.int64)
            return torch.from_numpy(self.labels[ids])
        if attr.attr_name != "x":
            return None
        if attr.group_name in self.dropped:
            n = len(idx) if idx is not None else self.dropped[attr.group_name][0]
            return torch.zeros((n, self.dropped[attr.group_name][1]), dtype=torch.float32)
        arr = self.arrays.get(attr.group_name)
        if arr is None:
            return None
        ids = np.arange(arr.shape[0]) if idx is None else np.asarray(idx, dtype=np.int64)
        # float16 rows are widened inside the gather (one pass); NumPy's astype was ~60 % of batch time
        if torch.utils.data.get_worker_info() is None:
            return torch.from_numpy(arr.gather(ids, dtype=np.float32, num_threads=torch.get_num_threads()))
        # in a DataLoader worker the batch crosses to the main process through shared memory: gathering
        # straight into a shared buffer saves the copy torch would make when pickling an ordinary tensor
        x = _shared_float32((len(ids), arr.shape[1]))
        arr.gather(ids, dtype=np.float32, num_threads=torch.get_num_threads(), out=x.numpy())
        return x

    def _get_tensor_size(self, attr: TensorAttr) -> tuple[int, ...] | None:
        if attr.attr_name == "y" and attr.group_name == "video":
            return (len(self.labels),)
        if attr.group_name in self.dropped:
            return self.dropped[attr.group_name]
        arr = self.arrays.get(attr.group_name)
        return tuple(arr.shape) if arr is not None and attr.attr_name == "x" else None

    def get_all_tensor_attrs(self) -> list[TensorAttr]:
        attrs = [TensorAttr(t, "x") for t in (*self.arrays, *self.dropped)]
        return attrs + [TensorAttr("video", "y")]

    def _put_tensor(self, tensor, attr: TensorAttr) -> bool:
        raise UserError("GraphStoreFeatureStore is read-only")

    def _remove_tensor(self, attr: TensorAttr) -> bool:
        raise UserError("GraphStoreFeatureStore is read-only")


class GraphStoreGraphStore(PygGraphStore):
    """Read-only PyG GraphStore: one edge type (head, relation, 'video') per relation, materialised on request."""

    def __init__(self, store: StoreLike, relations: Sequence[str] | None = None) -> None:
        super().__init__()
        self._store = _store(store)
        rels = [r for r in self._store.meta["relations"] if relations is None or r["name"] in relations]
        self.edge_types = [(r["head"], r["name"], r["tail"]) for r in rels]
        self._n = self._store.meta["node_types"]

    def get_all_edge_attrs(self) -> list[EdgeAttr]:
        return [EdgeAttr(et, EdgeLayout.CSC, is_sorted=True, size=(self._n[et[0]], self._n[et[2]]))
                for et in self.edge_types]

    def _get_edge_index(self, edge_attr: EdgeAttr) -> tuple[torch.Tensor, torch.Tensor]:
        """(row, colptr) in CSC layout, else (row, col): every edge of the relation written out (vectorised)."""
        nv = self._n["video"]
        colptr, row = self._store.topology.relation(edge_attr.edge_type[1]).csc(nv)
        if edge_attr.layout == EdgeLayout.CSC:
            return torch.from_numpy(row), torch.from_numpy(colptr)
        return torch.from_numpy(row), torch.from_numpy(np.repeat(np.arange(nv, dtype=np.int64), np.diff(colptr)))

    def _put_edge_index(self, edge_index, edge_attr: EdgeAttr) -> bool:
        raise UserError("GraphStoreGraphStore is read-only")

    def _remove_edge_index(self, edge_attr: EdgeAttr) -> bool:
        raise UserError("GraphStoreGraphStore is read-only")


class GraphStoreSampler(BaseSampler):
    """A PyG BaseSampler over graphstore.sampler.NeighborSampler (built lazily in each process)."""

    def __init__(self, store: StoreLike, fanouts: Sequence[Any], seed: int = 0,
                 relations: Sequence[str] | None = None) -> None:
        self.path = Path(getattr(store, "path", store))
        self.fanouts, self.seed, self.relations = list(fanouts), int(seed), relations
        self._sampler = None
        self._calls = 0

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_sampler": None}

    @property
    def sampler(self) -> NeighborSampler:
        if self._sampler is None:
            from graphstore.sampler import NeighborSampler

            self._sampler = NeighborSampler(GraphStore.open(self.path), self.fanouts, seed=self.seed,
                                            relations=self.relations)
        return self._sampler

    def sample_from_nodes(self, index: NodeSamplerInput, **kwargs) -> HeteroSamplerOutput:
        """Samples around index.node; the batch key is the first input id, so draws do not depend on workers."""
        seeds = index.node.numpy().astype(np.int64)
        key = int(index.input_id[0]) if index.input_id is not None and len(index.input_id) else self._calls
        self._calls += 1
        out = self.sampler.sample(seeds, batch=key + self.seed * 1_000_003).to_pyg()
        out.metadata = (index.input_id, None)
        return out

    def sample_from_edges(self, index, neg_sampling=None):
        raise NotImplementedError("graphstore samples from video nodes only")


def make_loader(
    store: StoreLike,
    split: str = "train",
    fanouts: Sequence[Any] = (10, 10),
    batch_size: int = 512,
    shuffle: bool = True,
    num_workers: int = 0,
    seed: int = 0,
    relations: Sequence[str] | None = None,
    drop_features: Sequence[str] = (),
    cache_bytes: int = LOADER_FEATURE_BYTES,
    raw_read: str = "auto",
    seeds: np.ndarray | Sequence[int] | None = None,
    **loader_kwargs: Any,
) -> NodeLoader:
    """A NodeLoader yielding HeteroData batches (x per type, edge_index per relation, video y/batch_size/n_id)."""
    gs = _store(store)
    ids = np.asarray(seeds if seeds is not None else gs.split(split), dtype=np.int64).ravel()
    sampler = GraphStoreSampler(gs, fanouts, seed=seed, relations=relations)
    node_types = ["video"] + sorted({r["head"] for r in gs.meta["relations"]
                                     if relations is None or r["name"] in relations} - {"video"})
    feature_store = GraphStoreFeatureStore(gs, node_types=node_types, cache_bytes=cache_bytes, drop_features=drop_features,
                                           raw_read=raw_read)
    graph_store = GraphStoreGraphStore(gs, relations=relations)
    generator = torch.Generator().manual_seed(int(seed))
    return NodeLoader(
        (feature_store, graph_store), sampler, input_nodes=("video", torch.from_numpy(ids)),
        batch_size=batch_size, shuffle=shuffle, num_workers=num_workers, generator=generator,
        filter_per_worker=True, persistent_workers=num_workers > 0, **loader_kwargs,
    )
