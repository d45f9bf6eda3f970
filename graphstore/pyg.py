"""PyG integration: FeatureStore, GraphStore and BaseSampler over a graphstore, and `make_loader`."""
from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from torch.utils.data.dataloader import _MultiProcessingDataLoaderIter
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
LOOKAHEAD_BATCHES = 16  # batches sampled ahead by the look-ahead feature cache

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

    loader_class: type[NodeLoader] = NodeLoader  # the loader that drives this store (make_loader)
    filter_per_worker = True  # DataLoader workers gather features (into shared memory)

    @classmethod
    def for_loader(cls, store: StoreLike, *, lookahead_batches: int = LOOKAHEAD_BATCHES,
                   **kwargs: Any) -> GraphStoreFeatureStore:
        """The store make_loader uses (options of other feature caches, such as lookahead_batches, ignored)."""
        return cls(store, **kwargs)

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

    def close(self) -> None:
        """Frees this store's feature memory now (chunk caches, maps, open files); reads after it reopen."""
        for arr in self.arrays.values():
            arr.close()


def _only_auto(raw_read: str, feature_cache: str) -> None:
    if raw_read != "auto":
        raise UserError(f"raw_read={raw_read!r} applies to feature_cache='none'; feature_cache={feature_cache!r} "
                        "reads the arrays its own way")


class SieveFeatureStore(GraphStoreFeatureStore):
    """Every array read by storage chunk through FeatureArray's SIEVE chunk cache (its share of cache_bytes).

    Raw arrays have large chunks (up to 16 MiB, docs/FORMAT.md): a miss reads a whole chunk, and an
    array whose share is under one chunk reads each chunk it touches once per gather.
    """

    def __init__(self, store: StoreLike, node_types: Sequence[str] | None = None,
                 cache_bytes: int = LOADER_FEATURE_BYTES, drop_features: Sequence[str] = (),
                 raw_read: str = "auto") -> None:
        _only_auto(raw_read, "sieve")
        super().__init__(store, node_types, cache_bytes=cache_bytes, drop_features=drop_features, raw_read="mmap")
        for t in self.raw_read:
            self.arrays[t].map_raw = False  # with raw_read 'mmap' and no maps: the chunk cache serves the array
            self.raw_read[t] = "sieve"


class LookaheadFeatureStore(GraphStoreFeatureStore):
    """Features through a LookaheadCache (graphstore.features.lookahead) of `cache_bytes`.

    Driven by LookaheadNodeLoader, which samples `lookahead_batches` ahead and registers each batch's
    node ids; ids that are not the batch being served are read uncached (same values).
    """

    filter_per_worker = False  # workers only sample; the cache gathers in the loader's process

    @classmethod
    def for_loader(cls, store: StoreLike, *, lookahead_batches: int = LOOKAHEAD_BATCHES,
                   **kwargs: Any) -> LookaheadFeatureStore:
        return cls(store, lookahead_batches=lookahead_batches, **kwargs)

    def __init__(self, store: StoreLike, node_types: Sequence[str] | None = None,
                 cache_bytes: int = LOADER_FEATURE_BYTES, drop_features: Sequence[str] = (),
                 raw_read: str = "auto", lookahead_batches: int = LOOKAHEAD_BATCHES, policy: str = "belady") -> None:
        from graphstore.features.lookahead import LookaheadCache

        _only_auto(raw_read, "lookahead")
        if isinstance(lookahead_batches, bool) or not isinstance(lookahead_batches, (int, np.integer)) \
                or lookahead_batches < 1:
            raise UserError(f"lookahead_batches must be an int >= 1, got {lookahead_batches!r}")
        super().__init__(store, node_types, cache_bytes=0, drop_features=drop_features, raw_read="pread")
        self.lookahead_batches = int(lookahead_batches)
        self.cache: LookaheadCache | None = LookaheadCache(self.arrays, cache_bytes, policy=policy)
        self.raw_read = {t: "lookahead" for t in self.raw_read}

    def __getstate__(self) -> dict:
        return {**self.__dict__, "cache": None}  # a DataLoader worker samples only

    def close(self) -> None:
        """Frees the look-ahead cache's rows (its budget) and the arrays' memory now."""
        if self.cache is not None:
            self.cache.close()
        super().close()

    def _get_tensor(self, attr: TensorAttr) -> torch.Tensor | None:
        if self.cache is not None and attr.attr_name == "x" and attr.index is not None:
            x = self.cache.gather(attr.group_name, np.asarray(attr.index, dtype=np.int64),
                                  num_threads=torch.get_num_threads())
            if x is not None:
                return torch.from_numpy(x)
        return super()._get_tensor(attr)


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


class _LookaheadIterator:
    """Samples `lookahead_batches` ahead of the batch it yields and serves features from the cache."""

    def __init__(self, loader: LookaheadNodeLoader, inner: Any) -> None:
        self.loader, self.inner = loader, inner
        store = loader.data[0]
        self.cache, self.window = store.cache, store.lookahead_batches
        self._start()

    def _start(self) -> None:
        self.queue: deque = deque()
        self.exhausted = False
        self.session = self.cache.begin()

    def _reset(self, loader: Any, first_iter: bool = False) -> None:
        self.inner._reset(loader, first_iter)  # persistent workers: a new epoch on the same iterator
        self._start()

    def __iter__(self) -> _LookaheadIterator:
        return self

    def __len__(self) -> int:
        return len(self.inner)

    def __next__(self) -> Any:
        while not self.exhausted and len(self.queue) <= self.window:
            try:
                out = next(self.inner)
            except StopIteration:
                self.exhausted = True
                break
            self.queue.append((self.session.register({t: v.numpy() for t, v in out.node.items()}), out))
        if not self.queue:
            self.session.finish()
            raise StopIteration
        batch, out = self.queue.popleft()
        with self.session.serve(batch):
            return self.loader.filter_fn(out)

    def __del__(self) -> None:
        if isinstance(getattr(self, "inner", None), _MultiProcessingDataLoaderIter):
            self.inner.__del__()


class LookaheadNodeLoader(NodeLoader):
    """NodeLoader whose features come from a LookaheadFeatureStore: the same batches, in the same order."""

    def _get_iterator(self) -> _LookaheadIterator:
        return _LookaheadIterator(self, DataLoader._get_iterator(self))


LookaheadFeatureStore.loader_class = LookaheadNodeLoader

# feature readers make_loader can use: name -> factory of the FeatureStore (its loader_class drives it)
FEATURE_CACHES: dict[str, Callable[..., GraphStoreFeatureStore]] = {
    "none": GraphStoreFeatureStore.for_loader,  # raw arrays by raw_read (mmap / pread), small ones chunk-cached
    "sieve": SieveFeatureStore.for_loader,  # every array through the SIEVE chunk cache
    "lookahead": partial(LookaheadFeatureStore.for_loader, policy="belady"),  # Belady over the next batches
    "lookahead-lru": partial(LookaheadFeatureStore.for_loader, policy="lru"),  # same prefetch, LRU (ablation)
}


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
    feature_cache: str = "none",
    lookahead_batches: int = LOOKAHEAD_BATCHES,
    **loader_kwargs: Any,
) -> NodeLoader:
    """A NodeLoader yielding HeteroData batches (x per type, edge_index per relation, video y/batch_size/n_id).

    feature_cache: how features are read within `cache_bytes` (FEATURE_CACHES): 'none' (raw arrays by
    `raw_read`), 'sieve' (SIEVE chunk cache), 'lookahead' (Belady over the next `lookahead_batches`
    batches, prefetched in the background; docs/FORMAT.md), 'lookahead-lru'. Batches are the same.
    """
    if feature_cache not in FEATURE_CACHES:
        raise UserError(f"feature_cache must be one of {sorted(FEATURE_CACHES)}, got {feature_cache!r}")
    gs = _store(store)
    ids = np.asarray(seeds if seeds is not None else gs.split(split), dtype=np.int64).ravel()
    sampler = GraphStoreSampler(gs, fanouts, seed=seed, relations=relations)
    node_types = ["video"] + sorted({r["head"] for r in gs.meta["relations"]
                                     if relations is None or r["name"] in relations} - {"video"})
    feature_store = FEATURE_CACHES[feature_cache](gs, node_types=node_types, cache_bytes=cache_bytes,
                                                  drop_features=drop_features, raw_read=raw_read,
                                                  lookahead_batches=lookahead_batches)
    graph_store = GraphStoreGraphStore(gs, relations=relations)
    generator = torch.Generator().manual_seed(int(seed))
    return feature_store.loader_class(
        (feature_store, graph_store), sampler, input_nodes=("video", torch.from_numpy(ids)),
        batch_size=batch_size, shuffle=shuffle, num_workers=num_workers, generator=generator,
        filter_per_worker=feature_store.filter_per_worker, persistent_workers=num_workers > 0, **loader_kwargs,
    )
