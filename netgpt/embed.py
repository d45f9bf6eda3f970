"""`netgpt embed`: stage-1 video embeddings of a run's best model, written into the store as the
Zarr array embeddings/<run name> (float16, [num_video, d_g]) for the LLM stages.

Inference samples each relation's in-neighbours with `embed_fanout` per hop (a large, documented
fanout instead of full neighbourhoods: same-topic buckets reach hundreds of thousands of nodes)."""
from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import zarr
from tqdm import tqdm

from graphstore.errors import UserError
from graphstore.store import GraphStore

from .config import PretrainConfig
from .data import batch_inputs, iter_batches
from .train_gnn import STAGE, model_for_store

EMBED_SEED_OFFSET = 2_000_003


def file_digest(path: Path) -> str:
    """sha256 hex of a file (the run id of a checkpoint)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_best(run_dir: Path, store: GraphStore, stage: str = STAGE) -> tuple[torch.nn.Module, PretrainConfig, dict]:
    """The best checkpoint's model (eval mode), its config and the checkpoint dict."""
    best = run_dir / stage / "best.pt"
    if not best.is_file():
        raise UserError(f"{run_dir}: no {stage}/best.pt; train it first with `netgpt train --stage {stage}`")
    ck = torch.load(best, map_location="cpu", weights_only=False)
    cfg = PretrainConfig.from_dict(ck["config"])
    model = model_for_store(cfg, store)
    model.load_state_dict(ck["model"])
    return model.eval(), cfg, ck


@torch.no_grad()
def embed_videos(model: torch.nn.Module, store: GraphStore, cfg: PretrainConfig, *, fanout: int | None = None,
                 batch_size: int | None = None, progress: bool = True) -> np.ndarray:
    """[num_video, d_g] float32 embeddings of every video node, node order."""
    n = store.num_nodes("video")
    fan = [fanout or cfg.embed_fanout] * cfg.num_layers
    bs = batch_size or cfg.eval_batch_size
    out = np.zeros((n, cfg.d_g), dtype=np.float32)
    bar = tqdm(total=n, desc="embed", unit="video", disable=not progress)
    for batch in iter_batches(store, np.arange(n, dtype=np.int64), cfg, fanouts=fan, batch_size=bs,
                              seed=cfg.seed + EMBED_SEED_OFFSET):
        x, ei, b, n_id, _ = batch_inputs(batch, torch.device("cpu"))
        emb, _ = model(x, ei, b)
        out[n_id.numpy()] = emb.float().numpy()
        bar.update(b)
    bar.close()
    return out


def write_embeddings(store_path: Path, name: str, emb: np.ndarray, attrs: dict) -> Path:
    """Write embeddings/<name> (float16) via a temporary array that is renamed at the end."""
    if not name or "/" in name or name.startswith("."):
        raise UserError(f"run name {name!r} cannot name an embeddings array")
    root = zarr.open_group(str(store_path), mode="r+", zarr_format=3)
    if "embeddings" not in root:
        root.create_group("embeddings")
    tmp_name = f".{name}.tmp"
    arr = root["embeddings"].create_array(tmp_name, shape=emb.shape, dtype="float16",
                                          chunks=(min(max(emb.shape[0], 1), 65536), emb.shape[1]), overwrite=True)
    arr[...] = emb.astype(np.float16)
    arr.attrs.update(attrs)
    final, tmp = store_path / "embeddings" / name, store_path / "embeddings" / tmp_name
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final


def run_embed(run_dir: str | Path, store_path: str | Path, *, name: str | None = None, fanout: int | None = None,
              progress: bool = True) -> dict:
    """Embed every video with the run's best stage-1 model into STORE/embeddings/<run name>."""
    run_dir, store_path = Path(run_dir), Path(store_path)
    store = GraphStore.open(store_path)
    model, cfg, ck = load_best(run_dir, store)
    t0 = time.perf_counter()
    emb = embed_videos(model, store, cfg, fanout=fanout, progress=progress)
    name = name or run_dir.resolve().name
    attrs = {"run": name, "run_id": file_digest(run_dir / STAGE / "best.pt")[:16], "run_dir": str(run_dir.resolve()),
             "stage": STAGE, "best_epoch": int(ck["epoch"]), "d_g": int(cfg.d_g),
             "fanout": int(fanout or cfg.embed_fanout), "num_layers": int(cfg.num_layers)}
    path = write_embeddings(store_path, name, emb, attrs)
    return {**attrs, "path": str(path), "shape": list(emb.shape), "seconds": time.perf_counter() - t0}
