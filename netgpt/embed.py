"""`netgpt embed`: stage-1 video embeddings of a run's best model, written into the run directory as
RUN/embeddings/video.npy (float16, [num_video, d_g]) with meta.json naming the checkpoint (its sha256)
and the store they were made from. The store is never written: the dataset is read-only to training,
and a run reads only embeddings that its own best checkpoint made from the same store.

Inference samples each relation's in-neighbours with `embed_fanout` per hop (a large, documented
fanout instead of full neighbourhoods: same-topic buckets reach hundreds of thousands of nodes)."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from graphstore.errors import UserError
from graphstore.store import GraphStore

from .config import PretrainConfig
from .data import batch_inputs, iter_batches
from .models.labels import known_labels
from .run_files import load_checkpoint
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
    ck = load_checkpoint(best, keys=("config", "model", "epoch"))
    cfg = PretrainConfig.from_dict(ck["config"])
    model = model_for_store(cfg, store)
    model.load_state_dict(ck["model"])
    return model.eval(), cfg, ck


@torch.no_grad()
def embed_videos(model: torch.nn.Module, store: GraphStore, cfg: PretrainConfig, *, fanout: int | None = None,
                 batch_size: int | None = None, progress: bool = True, nodes: np.ndarray | None = None) -> np.ndarray:
    """[len(nodes), d_g] float32 embeddings of `nodes` (default: every video node), in their order."""
    n = store.num_nodes("video")
    nodes = np.arange(n, dtype=np.int64) if nodes is None else np.asarray(nodes, dtype=np.int64)
    row_of = np.full(n, -1, dtype=np.int64)
    row_of[nodes] = np.arange(len(nodes))
    fan = [fanout or cfg.embed_fanout] * cfg.num_layers
    bs = batch_size or cfg.eval_batch_size
    out = None
    labels = known_labels(store, cfg.label_inputs)
    bar = tqdm(total=len(nodes), desc="embed", unit="video", disable=not progress)
    for batch in iter_batches(store, nodes, cfg, fanouts=fan, batch_size=bs, seed=cfg.seed + EMBED_SEED_OFFSET):
        x, ei, b, n_id, _ = batch_inputs(batch, torch.device("cpu"), labels)
        emb, _ = model(x, ei, b)
        if out is None:
            out = np.zeros((len(nodes), emb.shape[1]), dtype=np.float32)
        out[row_of[n_id.numpy()]] = emb.float().numpy()
        bar.update(b)
    bar.close()
    return out if out is not None else np.zeros((0, cfg.d_g), dtype=np.float32)


def run_embeddings(run_dir: str | Path, store: GraphStore, *, nodes: np.ndarray | None = None,
                   progress: bool = True) -> np.ndarray:
    """Embeddings of `nodes` (default: every video) by a finished stage-1 run's best model, in memory."""
    model, cfg, _ = load_best(Path(run_dir), store)
    return embed_videos(model, store, cfg, nodes=nodes, progress=progress)


EMBED_DIR = "embeddings"


def store_identity(store: GraphStore) -> dict:
    """What identifies a store's contents for the embeddings made from it."""
    return {"created": store.meta.get("created"), "num_videos": int(store.num_nodes("video")),
            "features": {t: f.get("xxh64") for t, f in sorted(store.meta.get("features", {}).items())}}


def write_embeddings(run_dir: Path, emb: np.ndarray, attrs: dict) -> Path:
    """Write RUN/embeddings/{video.npy,meta.json} via a temporary directory renamed at the end."""
    final = run_dir / EMBED_DIR
    tmp = run_dir / f".{EMBED_DIR}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    np.save(tmp / "video.npy", emb.astype(np.float16))
    (tmp / "meta.json").write_text(json.dumps(attrs, indent=2, sort_keys=True))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final


def check_embeddings(run_dir: str | Path, store: GraphStore) -> dict:
    """The meta of RUN's embeddings after checking that this run's best checkpoint made them from `store`."""
    run_dir = Path(run_dir)
    meta_path = run_dir / EMBED_DIR / "meta.json"
    if not meta_path.is_file():
        raise UserError(f"{run_dir}: no stage-1 embeddings; run `netgpt embed --run {run_dir} --store {store.path}`")
    meta = json.loads(meta_path.read_text())
    best = run_dir / STAGE / "best.pt"
    if best.is_file() and meta.get("run_id") != file_digest(best)[:16]:
        raise UserError(f"{meta_path}: made by another stage-1 checkpoint than {best}; run `netgpt embed` again")
    if meta.get("store") != store_identity(store):
        raise UserError(f"{meta_path}: made from another store (or other features) than {store.path}; "
                        "run `netgpt embed` again")
    return meta


def embeddings_current(run_dir: str | Path, store: GraphStore) -> bool:
    """Whether RUN holds embeddings of its current best checkpoint and this store."""
    try:
        check_embeddings(run_dir, store)
        return True
    except UserError:
        return False


def run_embed(run_dir: str | Path, store_path: str | Path, *, fanout: int | None = None,
              progress: bool = True) -> dict:
    """Embed every video with the run's best stage-1 model into RUN/embeddings/."""
    run_dir, store_path = Path(run_dir), Path(store_path)
    store = GraphStore.open(store_path)
    model, cfg, ck = load_best(run_dir, store)
    t0 = time.perf_counter()
    emb = embed_videos(model, store, cfg, fanout=fanout, progress=progress)
    attrs = {"run_id": file_digest(run_dir / STAGE / "best.pt")[:16], "run_dir": str(run_dir.resolve()),
             "stage": STAGE, "best_epoch": int(ck["epoch"]), "d_g": int(emb.shape[1]),
             "fanout": int(fanout or cfg.embed_fanout), "num_layers": int(cfg.num_layers),
             "store": store_identity(store), "store_path": str(store.path.resolve())}
    path = write_embeddings(run_dir, emb, attrs)
    return {**attrs, "path": str(path), "shape": list(emb.shape), "seconds": time.perf_counter() - t0}
