"""Stage 1: graph pretraining (single process or DDP under torchrun), checkpoints, resume,
early stopping on VAL, final predictions and metrics for val and test."""
from __future__ import annotations

import json
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from graphstore.atomic import filter_jsonl, write_json
from graphstore.errors import UserError
from graphstore.store import GraphStore

from .config import PretrainConfig
from .data import batch_inputs, check_loader_options, edge_types, input_dims, iter_batches
from .distributed import DistContext, barrier, broadcast_flag, cleanup, gather_arrays, init_distributed, shard_seeds
from .metrics import regression_metrics
from .models.labels import LABEL_COLUMNS, KnownLabels, known_labels
from .run_files import load_checkpoint, torch_save, write_predictions

STAGE = "pretrain"
EVAL_SPLITS = ("val", "test")
EVAL_SEED_OFFSET = 1_000_003  # loader seed of evaluation batches: fixed, distinct from training


def build_model(cfg: PretrainConfig, in_dims: dict[str, int], etypes: list[tuple[str, str, str]],
                visual_cols: tuple[int, int] | None = None, numeric_cols: tuple[int, int] | None = None) -> torch.nn.Module:
    """The configured graph model (sage, rgcn, or a baseline gcn/han/hgt) behind its input transform."""
    from .models.inputs import InputTransform, WithInputs

    transform = InputTransform(in_dims, visual_cols if cfg.no_video_features else None, numeric_cols, cfg.numeric_bins)
    in_dims = dict(transform.out_dims)
    if cfg.label_inputs:
        in_dims["video"] += LABEL_COLUMNS
    if cfg.model == "sage":
        from .models.sage import HeteroSAGE

        inner = HeteroSAGE(in_dims, etypes, cfg.d_g, cfg.num_layers, cfg.dropout, cfg.identity_noise)
    elif cfg.model == "rgcn":
        from .models.rgcn import HeteroRGCN

        inner = HeteroRGCN(in_dims, etypes, cfg.d_g, cfg.num_layers, cfg.dropout)
    else:
        from .models.baselines import build_baseline

        inner = build_baseline(cfg, in_dims, etypes)
    return WithInputs(transform, inner, cfg.label_inputs, cfg.d_g)


def model_for_store(cfg: PretrainConfig, store: GraphStore) -> torch.nn.Module:
    """Build the model for a store's feature widths and relations, seeded by cfg.seed."""
    from graphstore.featurize.jobs import video_parts

    torch.manual_seed(cfg.seed)
    parts = video_parts(store.meta["features"]["video"])
    numeric = tuple(parts["sample"]) if "sample" in parts else None
    return build_model(cfg, input_dims(store, cfg), edge_types(store, cfg), tuple(parts["visual"]), numeric)


def fit_input_statistics(model: torch.nn.Module, store: GraphStore, cfg: PretrainConfig) -> None:
    """Set the model's input scaling from the train split (only) when the config asks for it."""
    from .models.inputs import train_rows, train_statistics

    if cfg.scale_inputs or cfg.numeric_bins:
        train = store.split("train")
        stats = train_statistics(store, model.inputs.types, train, cfg.seed) if cfg.scale_inputs else {}
        lo, hi = model.inputs.numeric_cols
        numeric = store.features("video").gather(train_rows(train, cfg.seed), dtype=np.float32)[:, lo:hi] \
            if model.inputs.bins else None
        model.inputs.set_statistics(stats, numeric)


@torch.no_grad()
def predict_nodes(model: torch.nn.Module, store: GraphStore, nodes: np.ndarray, cfg: PretrainConfig,
                  ctx: DistContext, desc: str = "eval", progress: bool = True,
                  labels: KnownLabels | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(nodes, y_true, y_pred) over `nodes`, sharded across ranks and gathered on every rank
    (`labels`: the store's KnownLabels, made here when the model reads them and none are given)."""
    model.eval()
    if labels is None:
        labels = known_labels(store, cfg.label_inputs)
    mine = np.asarray(nodes, dtype=np.int64)[ctx.rank::ctx.world_size]
    out_n, out_y, out_p = [], [], []
    total = -(-mine.size // cfg.eval_batch_size)
    if cfg.max_eval_batches is not None:
        total = min(total, cfg.max_eval_batches)
    bar = tqdm(total=total, desc=desc, unit="batch", disable=not (progress and ctx.is_main), leave=False)
    for i, batch in enumerate(iter_batches(store, mine, cfg, batch_size=cfg.eval_batch_size, seed=cfg.seed + EVAL_SEED_OFFSET)):
        if i >= total:
            break
        x, ei, bs, n_id, y = batch_inputs(batch, ctx.device, labels)
        _, pred = model(x, ei, bs)
        out_n.append(n_id.numpy()); out_y.append(y.cpu().numpy()); out_p.append(pred.float().cpu().numpy())
        bar.update(1)
    bar.close()
    cat = lambda parts, dt: np.concatenate(parts).astype(dt) if parts else np.zeros(0, dt)  # noqa: E731
    return tuple(gather_arrays(ctx, cat(out_n, np.int64), cat(out_y, np.float32), cat(out_p, np.float32)))


def warmup_cosine(opt: torch.optim.Optimizer, total_steps: int, warmup_ratio: float) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over warmup_ratio of the steps, then cosine decay to 0 (plain cosine at ratio 0)."""
    import math

    total = max(1, total_steps)
    warm = int(round(warmup_ratio * total))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def epoch_steps(cfg: PretrainConfig, num_train: int, world_size: int) -> int:
    """Optimiser steps per epoch on each rank (capped by cfg.max_steps)."""
    steps = -(-(num_train // world_size) // cfg.batch_size)
    return min(steps, cfg.max_steps) if cfg.max_steps is not None else steps


def make_optimizer(model: torch.nn.Module, cfg: PretrainConfig, steps_per_epoch: int):
    """(optimizer, scheduler) of the config: Adam or AdamW with warm-up + cosine over all epochs."""
    opt_cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    opt = opt_cls(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return opt, warmup_cosine(opt, cfg.epochs * steps_per_epoch, cfg.warmup_ratio)


def loader_seed(cfg: PretrainConfig, epoch: int, rank: int) -> int:
    """Seed of the neighbour sampler of a rank's training batches in an epoch."""
    return (cfg.seed * 1_000_003 + epoch * 7919 + rank) % (2**31)


def weight_average(model: torch.nn.Module, cfg: PretrainConfig, steps_per_epoch: int):
    """An exponential moving average of the weights (evaluated and kept instead of the raw weights),
    over about cfg.ema_epochs of steps; None when cfg.ema_epochs is 0.

    On a few thousand training videos the validation score swings by points from one epoch to the
    next; the average of the recent weights is a steadier model to select on val and to export."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    if not cfg.ema_epochs:
        return None
    decay = 1.0 - 1.0 / max(2.0, cfg.ema_epochs * steps_per_epoch)
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"]); np.random.set_state(state["numpy"]); random.setstate(state["python"])


def _epoch_seed(cfg: PretrainConfig, epoch: int, rank: int) -> None:
    """Per-epoch seeding, so a resumed run draws what an uninterrupted one would."""
    s = (cfg.seed * 1_000_003 + epoch * 1009 + rank) % (2**32)
    torch.manual_seed(s); np.random.seed(s); random.seed(s)


def run_pretrain(run_dir: str | Path, store_path: str | Path, cfg: PretrainConfig, *, resume: bool = False,
                 stop_after_epochs: int | None = None, progress: bool = True, stage: str = STAGE) -> dict:
    """Train stage 1 into RUN_DIR/<stage>; returns {split: metrics} of the best (val) model.

    `stop_after_epochs` ends this invocation after that many epochs without touching the
    schedule (the run can be continued with resume=True)."""
    ctx = init_distributed()
    try:
        return _run(Path(run_dir), Path(store_path), cfg, ctx, resume, stop_after_epochs, progress, stage)
    finally:
        cleanup(ctx)


def _run(run_dir: Path, store_path: Path, cfg: PretrainConfig, ctx: DistContext, resume: bool,
         stop_after: int | None, progress: bool, stage: str) -> dict:
    store = GraphStore.open(store_path)  # a wrong path fails before anything is written
    check_loader_options(cfg)  # the options, the store's features and its splits: all before the run dir exists
    if "features" not in store.meta:
        raise UserError(f"{store.location} has no features (built with --no-features); "
                        f"run `graphstore featurize {store.location}` first")
    train_ids = store.split("train")
    val_ids = store.split("val")
    if train_ids.size < ctx.world_size or val_ids.size == 0:
        raise UserError(f"{store_path}: split sizes train={train_ids.size} val={val_ids.size} are too small to train")
    out = run_dir / stage
    last_path, best_path = out / "checkpoint.pt", out / "best.pt"
    if resume and last_path.is_file():
        cfg = PretrainConfig.load(out / "config.json")  # a resumed run keeps its own config
    elif last_path.is_file():
        raise UserError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    else:
        resume = False  # killed before the first checkpoint: start from scratch
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        cfg.save(out / "config.json")
        top = json.loads((run_dir / "config.json").read_text()) if (run_dir / "config.json").is_file() else {}
        if resume and top.get("store_id") not in (None, store.store_id):
            raise UserError(f"{run_dir}: started on another store (id {top['store_id']}, at {top.get('store')}) "
                            f"than {store.location} (id {store.store_id}); resume it on that store")
        top.update({"store": str(Path(store_path).resolve()), "store_id": store.store_id, stage: cfg.to_dict()})
        write_json(run_dir / "config.json", top, sort_keys=True)
    barrier(ctx)

    model = model_for_store(cfg, store)
    labels = known_labels(store, cfg.label_inputs)
    if not resume:
        fit_input_statistics(model, store, cfg)
    model = model.to(ctx.device)
    steps_per_epoch = epoch_steps(cfg, train_ids.size, ctx.world_size)
    opt, sched = make_optimizer(model, cfg, steps_per_epoch)
    start_epoch, best, bad_epochs = 0, {"value": float("inf"), "epoch": -1}, 0
    if resume:
        ck = load_checkpoint(last_path, ctx.device, keys=("model", "optimizer", "scheduler", "epoch", "best",
                                                          "bad_epochs", "rng"))
        model.load_state_dict(ck["model"]); opt.load_state_dict(ck["optimizer"]); sched.load_state_dict(ck["scheduler"])
        start_epoch, best, bad_epochs = ck["epoch"] + 1, ck["best"], ck["bad_epochs"]
        _set_rng_state(ck["rng"])
    if ctx.is_main:
        # drop metric lines of epochs >= start_epoch (left by a run killed after logging)
        filter_jsonl(out / "metrics.jsonl", lambda rec: rec["epoch"] < start_epoch)
    ema = weight_average(model, cfg, steps_per_epoch)
    if resume and ema is not None:
        ema.load_state_dict(ck["ema"])
    net = DistributedDataParallel(model, find_unused_parameters=cfg.model != "rgcn") if ctx.enabled else model
    evaluated = ema.module if ema is not None else model  # the weights that are validated, kept and exported

    ran = 0
    for epoch in range(start_epoch, cfg.epochs):
        if bad_epochs >= cfg.patience or (stop_after is not None and ran >= stop_after):
            break
        _epoch_seed(cfg, epoch, ctx.rank)
        label_rng = np.random.default_rng([cfg.seed, epoch, ctx.rank, 29])
        seeds = shard_seeds(train_ids, epoch, cfg.seed, ctx.rank, ctx.world_size)
        net.train()
        t0, seen, loss_sum, steps = time.perf_counter(), 0, 0.0, 0
        bar = tqdm(total=steps_per_epoch, desc=f"{stage} epoch {epoch}", unit="step", disable=not (progress and ctx.is_main))
        for batch in iter_batches(store, seeds, cfg, seed=loader_seed(cfg, epoch, ctx.rank)):
            if steps >= steps_per_epoch:
                break
            x, ei, bs, _, y = batch_inputs(batch, ctx.device, labels, cfg.label_drop, label_rng)
            _, pred = net(x, ei, bs)
            loss = F.smooth_l1_loss(pred, y.to(ctx.device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
            opt.step(); sched.step()
            if ema is not None:
                ema.update_parameters(model)
            steps += 1; seen += bs; loss_sum += loss.item()
            bar.set_postfix(loss=f"{loss.item():.4f}", samples_s=f"{seen / (time.perf_counter() - t0):.0f}")
            bar.update(1)
        bar.close()
        train_s = time.perf_counter() - t0
        n, yt, yp = predict_nodes(evaluated, store, val_ids, cfg, ctx, desc=f"val {epoch}", progress=progress,
                                  labels=labels)
        val = regression_metrics(yt, yp)
        value = val[cfg.select_metric]
        improved = value < best["value"]
        if improved:
            best, bad_epochs = {"value": value, "epoch": epoch}, 0
        else:
            bad_epochs += 1
        record = {"epoch": epoch, "train_loss": loss_sum / max(steps, 1), "steps": steps,
                  "train_samples": seen * ctx.world_size, "train_seconds": train_s,
                  "samples_per_second": seen * ctx.world_size / max(train_s, 1e-9),
                  "lr": sched.get_last_lr()[0], "val": val, "best_epoch": best["epoch"]}
        if ctx.is_main:
            if improved:
                torch_save({"model": evaluated.state_dict(), "epoch": epoch, "val": val, "config": cfg.to_dict()}, best_path)
            torch_save({"model": model.state_dict(), "ema": ema.state_dict() if ema is not None else None,
                        "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                               "epoch": epoch, "best": best, "bad_epochs": bad_epochs, "rng": _rng_state(),
                               "config": cfg.to_dict()}, last_path)
            with open(out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
            if progress:
                tqdm.write(f"epoch {epoch}: loss {record['train_loss']:.4f} val acc {val['acc']:.4f} "
                           f"mse {val['mse']:.4f} mae {val['mae']:.4f} ({record['samples_per_second']:.0f} samples/s)")
        barrier(ctx)
        ran += 1

    finished = bad_epochs >= cfg.patience or start_epoch + ran >= cfg.epochs
    if not broadcast_flag(ctx, bool(finished)):
        return {"stopped_after_epochs": ran}
    return final_evaluation(run_dir, store, model, cfg, ctx, labels, stage, progress)


def final_evaluation(run_dir: Path, store: GraphStore, model: torch.nn.Module, cfg: PretrainConfig,
                     ctx: DistContext, labels: KnownLabels | None, stage: str = STAGE, progress: bool = True) -> dict:
    """Load best.pt; write predictions_<split>.parquet and metrics.json for val and test (`labels`: the
    run's KnownLabels, None when the model reads none)."""
    out = run_dir / stage
    ck = load_checkpoint(out / "best.pt", ctx.device, keys=("model", "epoch"))
    model.load_state_dict(ck["model"])
    ids = store.sample_ids() if ctx.is_main else None
    results = {}
    for split in EVAL_SPLITS:
        nodes = store.split(split)
        n, yt, yp = predict_nodes(model, store, nodes, cfg, ctx, desc=split, progress=progress, labels=labels)
        results[split] = regression_metrics(yt, yp)
        if ctx.is_main:
            write_predictions(out / f"predictions_{split}.parquet", n, ids, yt, yp)
    if ctx.is_main:
        write_json(out / "metrics.json", results, sort_keys=True)
    barrier(ctx)
    return {**results, "best_epoch": int(ck["epoch"])}
