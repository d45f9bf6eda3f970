"""Input scaling fitted on the train split only, and the video-feature ablation mask, as a module
whose buffers travel in every checkpoint (so embed, eval and predict reuse the training statistics)."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from graphstore.store import GraphStore

from .labels import LABEL_INPUT, SEED_STAT_COLUMNS, SEED_STAT_INPUT

SCALER_ROWS = 20_000  # rows per node type the statistics are computed from (a seeded subsample of train)
MIN_STD = 1e-3  # constant columns (e.g. an all-zero placeholder) are centred, not blown up


class InputTransform(nn.Module):
    """x -> (x - mean) / std per node type and column, with the video 'visual' columns optionally zeroed,
    and (bins > 0) the video's per-sample numeric columns also given as piecewise-linear encodings.

    Piecewise-linear encoding (Gorishniy et al., NeurIPS 2022) cuts a column at its train quantiles and
    gives one value per bin: 0 below it, 1 above it, linear inside. A network then fits thresholds on
    counts and ages (the influence levels are thresholds on counts) the way tree models do, instead of
    having to bend one linear input into a staircase."""

    def __init__(self, in_dims: dict[str, int], zero_video_cols: tuple[int, int] | None = None,
                 numeric_cols: tuple[int, int] | None = None, bins: int = 0):
        super().__init__()
        self.types = sorted(in_dims)
        for t in self.types:
            self.register_buffer(f"mean_{t}", torch.zeros(in_dims[t]))
            self.register_buffer(f"std_{t}", torch.ones(in_dims[t]))
        keep = torch.ones(in_dims.get("video", 0))
        if zero_video_cols is not None:
            keep[zero_video_cols[0]:zero_video_cols[1]] = 0
        self.register_buffer("video_keep", keep)
        self.bins = bins if numeric_cols is not None and "video" in in_dims else 0
        self.numeric_cols = tuple(numeric_cols) if self.bins else (0, 0)
        n_num = self.numeric_cols[1] - self.numeric_cols[0]
        self.register_buffer("edges", torch.linspace(0, 1, self.bins + 1).repeat(n_num, 1) if self.bins else torch.zeros(0))
        self.out_dims = dict(in_dims)
        if self.bins:
            self.out_dims["video"] = in_dims["video"] + n_num * self.bins

    def forward(self, x_dict: dict[str, Tensor]) -> dict[str, Tensor]:
        out = {}
        for t, x in x_dict.items():
            if t not in self.types:
                continue
            y = (x.float() - getattr(self, f"mean_{t}")) / getattr(self, f"std_{t}")
            if t == "video":
                y = y * self.video_keep
                if self.bins:
                    y = torch.cat([y, self.piecewise_linear(x.float()[:, self.numeric_cols[0]:self.numeric_cols[1]])], 1)
            out[t] = y
        return out

    def piecewise_linear(self, x: Tensor) -> Tensor:
        """[n, cols * bins] encodings of raw numeric columns against the train-quantile edges."""
        lo, hi = self.edges[:, :-1], self.edges[:, 1:]
        width = (hi - lo).clamp_min(1e-6)
        return ((x.unsqueeze(-1) - lo) / width).clamp(0, 1).flatten(1)

    @torch.no_grad()
    def set_statistics(self, stats: dict[str, tuple[np.ndarray, np.ndarray]],
                       numeric_sample: np.ndarray | None = None) -> None:
        """Load per-type (mean, std) arrays (std floored at MIN_STD) and, with bins, the quantile edges
        of the numeric video columns from `numeric_sample` (raw train rows of those columns)."""
        for t, (mean, std) in stats.items():
            if t in self.types:
                getattr(self, f"mean_{t}").copy_(torch.as_tensor(mean, dtype=torch.float32))
                getattr(self, f"std_{t}").copy_(torch.as_tensor(np.maximum(std, MIN_STD), dtype=torch.float32))
        if self.bins and numeric_sample is not None and len(numeric_sample):
            q = np.quantile(numeric_sample, np.linspace(0, 1, self.bins + 1), axis=0).T  # [cols, bins + 1]
            self.edges.copy_(torch.as_tensor(q, dtype=torch.float32))


def rows_of_videos(store: GraphStore, node_type: str, videos: np.ndarray) -> np.ndarray:
    """Ids (ascending) of the `node_type` nodes that belong to `videos` (attribute nodes, comments, topic...)."""
    rel = next((r for r in store.topology.relations.values() if r.head == node_type and r.tail == "video"), None)
    if node_type == "video" or rel is None:
        return videos
    n = store.num_nodes("video")
    colptr, row = rel.csc(n)
    mine = np.zeros(n, dtype=bool)
    mine[videos] = True
    return np.unique(row[mine[np.repeat(np.arange(n), np.diff(colptr))]])


def subsample(ids: np.ndarray, max_rows: int, rng: np.random.Generator) -> np.ndarray:
    """`ids` sorted, or (when there are more) `max_rows` of them drawn without replacement, sorted."""
    ids = np.asarray(ids)
    return np.sort(rng.choice(ids, size=max_rows, replace=False)) if ids.size > max_rows else np.sort(ids)


def train_rows(train: np.ndarray, seed: int = 0, max_rows: int = SCALER_ROWS) -> np.ndarray:
    """The seeded subsample of train videos that input statistics are computed from."""
    return subsample(train, max_rows, np.random.default_rng([seed, 17]))


def train_statistics(store: GraphStore, node_types: list[str], train: np.ndarray, seed: int = 0,
                     max_rows: int = SCALER_ROWS) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per node type, column mean and std over the rows that train videos own (a seeded subsample).

    Only train videos and their own nodes are read: nothing of val or test enters the statistics."""
    rng = np.random.default_rng([seed, 18])
    videos = train_rows(train, seed, max_rows)
    stats = {}
    for t in node_types:
        ids = subsample(rows_of_videos(store, t, videos), max_rows, rng)
        x = store.features(t).gather(ids, dtype=np.float32).astype(np.float64) if ids.size else None
        if x is None or x.shape[0] == 0:
            continue
        stats[t] = (x.mean(axis=0), x.std(axis=0))
    return stats


class WithInputs(nn.Module):
    """A graph model behind an InputTransform: forward scales the batch's features and runs the model.

    With `label_inputs` (netgpt.models.labels) the video inputs also carry the shown train levels, and
    the seeds' bucket level statistics are encoded and added to their embeddings after message passing
    (the prediction is then made from that sum, which is also the embedding the LLM stages read)."""

    def __init__(self, inputs: nn.Module, model: nn.Module, label_inputs: bool = False, d: int = 0):
        super().__init__()
        self.inputs = inputs
        self.model = model
        self.label_inputs = label_inputs
        if label_inputs:
            self.seed_stats = nn.Sequential(nn.Linear(SEED_STAT_COLUMNS, d), nn.ReLU(), nn.Linear(d, d))

    def forward(self, x_dict, edge_index_dict, batch_size: int):
        scaled = self.inputs(x_dict)
        if not self.label_inputs:
            return self.model(scaled, edge_index_dict, batch_size)
        if LABEL_INPUT not in x_dict or SEED_STAT_INPUT not in x_dict:
            raise ValueError("this model reads known train levels: pass batch_inputs(..., labels=KnownLabels)")
        scaled["video"] = torch.cat([scaled["video"], x_dict[LABEL_INPUT].float()], dim=1)
        emb, _ = self.model(scaled, edge_index_dict, batch_size)
        emb = emb + self.seed_stats(x_dict[SEED_STAT_INPUT].float())
        return emb, self.model.predict(emb)
