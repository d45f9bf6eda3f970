"""Batches for stage 1: the one place that calls graphstore.pyg.make_loader."""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from graphstore.errors import UserError
from graphstore.store import GraphStore

from .config import PretrainConfig
from .models.labels import LABEL_INPUT, SEED_STAT_INPUT, KnownLabels


def check_loader_options(cfg: PretrainConfig) -> None:
    """UserError for a loader setting that no store can serve (checked before a run writes anything)."""
    from graphstore.pyg import FEATURE_CACHES

    if cfg.feature_cache not in FEATURE_CACHES:
        raise UserError(f"--feature-cache must be one of {', '.join(sorted(FEATURE_CACHES))}, got {cfg.feature_cache!r}")


def iter_batches(store: GraphStore, nodes: np.ndarray, cfg: PretrainConfig, *, fanouts: list[int] | None = None,
                 batch_size: int | None = None, seed: int = 0) -> Iterator:
    """HeteroData batches over `nodes` in the given order (seeds first in each batch)."""
    try:
        from graphstore.pyg import make_loader
    except ImportError as exc:  # the loader of issue 4 is missing or broken
        raise UserError(f"graphstore.pyg.make_loader is not importable ({exc})") from exc

    loader = make_loader(
        store, split="train", seeds=np.asarray(nodes, dtype=np.int64), fanouts=list(fanouts or cfg.fanouts),
        batch_size=batch_size or cfg.batch_size, shuffle=False, num_workers=cfg.num_workers,
        seed=seed, relations=cfg.relations(), cache_bytes=int(cfg.feature_cache_mb) << 20,
        feature_cache=cfg.feature_cache,
    )
    return _closing(loader)


def _closing(loader) -> Iterator:
    """The loader's batches; its feature memory is freed as soon as the caller stops (end, break or error),
    so a train loader and the val/test loaders after it never hold their budgets at once."""
    try:
        yield from loader
    finally:
        loader.data[0].close()


def batch_inputs(batch, device: torch.device, labels: KnownLabels | None = None, label_drop: float = 0.0,
                 rng: np.random.Generator | None = None) -> tuple[dict, dict, int, torch.Tensor, torch.Tensor]:
    """(x_dict, edge_index_dict, batch_size, seed node ids, seed labels) of a HeteroData batch; with
    `labels`, x_dict also holds the shown train levels and the seeds' bucket statistics (netgpt.models.labels)."""
    bs = int(batch["video"].batch_size)
    x = {t: batch[t].x.to(device, non_blocking=True) for t in batch.node_types if "x" in batch[t]}
    if labels is not None:
        n_id_all = batch["video"].n_id.numpy()
        x[LABEL_INPUT] = torch.from_numpy(labels.columns(n_id_all, bs, label_drop, rng)).to(device)
        x[SEED_STAT_INPUT] = torch.from_numpy(labels.bucket_stats[n_id_all[:bs]]).to(device)
    ei = {et: batch[et].edge_index.to(device, non_blocking=True) for et in batch.edge_types}
    n_id = batch["video"].n_id[:bs].cpu()
    y = batch["video"].y[:bs].float()
    return x, ei, bs, n_id, y


def feature_dim(store: GraphStore, node_type: str, name: str = "x") -> int:
    """Width of features/<node_type>/<name> (docs/FORMAT.md); UserError when not featurized."""
    key = f"features/{node_type}/{name}"
    if key not in store.root:
        raise UserError(f"{store.path}: no {key}; featurize the store first (graphstore featurize)")
    return int(store.root[key].shape[1])


def input_dims(store: GraphStore, cfg: PretrainConfig) -> dict[str, int]:
    """Feature width of every node type the configured relations reach (video included)."""
    types = {"video"} | {r.head for r in store.relations if r.name in cfg.relations()}
    return {t: feature_dim(store, t) for t in sorted(types)}


def edge_types(store: GraphStore, cfg: PretrainConfig) -> list[tuple[str, str, str]]:
    """(head, relation, 'video') of the configured relations, in schema order."""
    keep = set(cfg.relations())
    return [(r.head, r.name, r.tail) for r in store.relations if r.name in keep]
