"""Samples of a store as prompt token ids, their stage-1 graph embeddings, and padded batches."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from graphstore.errors import UserError
from graphstore.store import GraphStore
from netgpt.llm.prompt import SAMPLE_COLUMNS, Encoded, PromptEncoder, sample_json, sample_record

EMBED_CACHE_BYTES = 1 << 30  # read the whole embedding array into memory below this size


class SampleTexts:
    """The prompt JSON of any video node: its sample row and its comments (comment nodes sorted by video)."""

    def __init__(self, store: GraphStore, *, max_comments: int = 50, seed: int = 0, keys: str = "xsvideo"):
        table = store.samples_table(list(SAMPLE_COLUMNS) + ["level"])
        self.columns = {c: table.column(c).to_pylist() for c in SAMPLE_COLUMNS}
        self.levels = np.asarray(table.column("level").to_numpy(), dtype=np.int64)
        comments = store.comments_table(["video", "text", "time"])
        video = comments.column("video").to_numpy()
        if video.size and np.any(np.diff(video) < 0):
            raise UserError(f"{store.path}: comments.parquet is not sorted by video node")
        n = len(self.levels)
        self.comment_ptr = np.searchsorted(video, np.arange(n + 1))
        self.comment_text = comments.column("text").to_pylist()
        self.comment_time = comments.column("time").to_pylist()
        self.max_comments, self.seed, self.keys = max_comments, seed, keys

    def __len__(self) -> int:
        return len(self.levels)

    def record(self, node: int) -> dict[str, Any]:
        """The JSON object shown to the LLM for video node `node` (never its level)."""
        row = {c: v[node] for c, v in self.columns.items()}
        lo, hi = int(self.comment_ptr[node]), int(self.comment_ptr[node + 1])
        comments = [{"text": self.comment_text[i], "time": self.comment_time[i]} for i in range(lo, hi)]
        return sample_record(row, comments, node=int(node), max_comments=self.max_comments, seed=self.seed,
                             keys=self.keys)

    def text(self, node: int) -> str:
        return sample_json(self.record(node))


class GraphEmbeddings:
    """Rows of a run's stage-1 video embeddings (RUN/embeddings/video.npy), float32 on read.

    Made by `netgpt embed` from this run's best checkpoint and this store (checked on open)."""

    def __init__(self, store: GraphStore, run_dir: str | Path):
        from netgpt.embed import EMBED_DIR, check_embeddings

        check_embeddings(run_dir, store)
        path = Path(run_dir) / EMBED_DIR / "video.npy"
        self.array = np.load(path, mmap_mode="r")
        n = store.num_nodes("video")
        if self.array.ndim != 2 or self.array.shape[0] != n:
            raise UserError(f"{path}: shape {self.array.shape}, expected ({n}, d_g)")
        nbytes = self.array.shape[0] * self.array.shape[1] * self.array.dtype.itemsize
        self.cache = np.asarray(self.array) if nbytes <= EMBED_CACHE_BYTES else None

    @property
    def dim(self) -> int:
        return int(self.array.shape[1])

    def rows(self, nodes: np.ndarray) -> torch.Tensor:
        """float32 (len(nodes), d_g) tensor."""
        nodes = np.asarray(nodes, dtype=np.int64)
        src = self.cache if self.cache is not None else self.array
        return torch.from_numpy(np.asarray(src[nodes], dtype=np.float32))

    def statistics(self, nodes: np.ndarray, max_rows: int = 20_000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Column mean and std over (a seeded subsample of) `nodes`: the train split's, for input scaling."""
        from netgpt.models.inputs import subsample

        x = self.rows(subsample(np.asarray(nodes, dtype=np.int64), max_rows, np.random.default_rng([seed, 23]))).double()
        return x.mean(dim=0).float(), x.std(dim=0, unbiased=False).clamp_min(1e-3).float()


class GrownEmbeddings:
    """The run's stage-1 embeddings of the base store's nodes, and rows made for the new nodes after them."""

    def __init__(self, base, nodes: np.ndarray, rows: np.ndarray):
        self.base, self.first = base, int(np.min(nodes))
        self.new = np.zeros((len(nodes), rows.shape[1]), np.float32)
        self.new[np.asarray(nodes, np.int64) - self.first] = rows

    @property
    def dim(self) -> int:
        return self.base.dim

    def rows(self, nodes: np.ndarray):
        """float32 (len(nodes), d_g) tensor, as GraphEmbeddings.rows."""
        nodes = np.asarray(nodes, dtype=np.int64)
        new = nodes >= self.first
        out = np.zeros((len(nodes), self.dim), np.float32)
        if (~new).any():
            out[~new] = self.base.rows(nodes[~new]).numpy()
        out[new] = self.new[nodes[new] - self.first]
        return torch.from_numpy(out)


@dataclass
class Batch:
    """A right-padded batch: ids, attention mask, labels (-100 off-response), graph rows, levels, nodes."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    graph: torch.Tensor
    level: torch.Tensor
    nodes: np.ndarray

    def to(self, device: torch.device) -> "Batch":
        return Batch(self.input_ids.to(device), self.attention_mask.to(device), self.labels.to(device),
                     self.graph.to(device), self.level.to(device), self.nodes)


def collate(encoded: list[Encoded], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask, labels), right-padded to the longest example."""
    width = max(len(e.input_ids) for e in encoded)
    ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    labels = torch.full((len(encoded), width), -100, dtype=torch.long)
    for i, e in enumerate(encoded):
        n = len(e.input_ids)
        ids[i, :n] = torch.tensor(e.input_ids)
        mask[i, :n] = 1
        labels[i, :n] = torch.tensor(e.labels)
    return ids, mask, labels


@dataclass
class BatchMaker:
    """Turns video node ids into Batches (stage 2 appends the response with the level)."""

    texts: SampleTexts
    encoder: PromptEncoder
    embeddings: GraphEmbeddings
    pad_id: int

    def batch(self, nodes: np.ndarray, *, with_response: bool) -> Batch:
        nodes = np.asarray(nodes, dtype=np.int64)
        levels = self.texts.levels[nodes]
        enc = [self.encoder.encode(self.texts.text(int(v)), int(y) if with_response else None)
               for v, y in zip(nodes, levels)]
        ids, mask, labels = collate(enc, self.pad_id)
        return Batch(ids, mask, labels, self.embeddings.rows(nodes), torch.from_numpy(levels.astype(np.float32)), nodes)


def micro_batch_nodes(train: np.ndarray, index: int, micro_batch: int, seed: int) -> np.ndarray:
    """Nodes of global micro-batch `index`: epochs are seeded permutations of `train`, cut in order."""
    per_epoch = -(-train.size // micro_batch)
    epoch, pos = divmod(index, per_epoch)
    perm = np.random.default_rng([seed, epoch]).permutation(train)
    return perm[pos * micro_batch:(pos + 1) * micro_batch]
