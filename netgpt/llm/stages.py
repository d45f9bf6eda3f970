"""`run_align` (stage 2) and `run_finetune` (stage 3): resumable training into RUN_DIR/<stage>/."""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from graphstore.atomic import filter_jsonl, write_json
from graphstore.errors import UserError
from graphstore.store import GraphStore
from netgpt.identity import check_run_store
from netgpt.llm.config import LLMConfig, as_config
from netgpt.llm.data import BatchMaker, GraphEmbeddings, GrownEmbeddings, SampleTexts, micro_batch_nodes
from netgpt.llm.engine import autocast_context, make_engine, use_bf16
from netgpt.llm.model import GraphLLM, load_llm
from netgpt.llm.prompt import PromptEncoder
from netgpt.metrics import regression_metrics
from netgpt.run_files import load_checkpoint, torch_save, write_predictions

EVAL_SPLITS = ("val", "test")
CHECKPOINT = "checkpoint_last.pt"
FINAL = "final.pt"


@dataclass
class Setup:
    """Everything a stage needs: the model, the batch maker and the store."""

    store: GraphStore
    model: GraphLLM
    maker: BatchMaker
    tokenizer: Any
    cfg: LLMConfig
    device: torch.device
    run_dir: Path
    llm_dir: Path


def stage1_prior(run_dir: Path, store: GraphStore) -> torch.nn.Module | None:
    """A copy of the run's stage-1 predictor (embedding -> logit), or None when the run has no stage-1 model."""
    import copy

    from netgpt.embed import load_best

    if not (run_dir / "pretrain" / "best.pt").is_file():
        return None
    model, _, _ = load_best(run_dir, store)
    head = getattr(getattr(model, "model", model), "head", None)
    if head is None:
        raise UserError(f"{run_dir}: the stage-1 model has no predictor head to use as the prior")
    return copy.deepcopy(head).float().eval()


def setup(store_path: str | Path, llm_dir: str | Path, run_dir: str | Path, cfg: LLMConfig,
          device: torch.device | None = None, progress: bool = True) -> Setup:
    """Open the store, the run's embeddings and the LLM; add the graph tokens, the projector/head and the prompt encoder.

    `progress` False also hides Hugging Face's weight-loading bar."""
    if device is None:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        device = torch.device(f"cuda:{local}") if torch.cuda.is_available() else torch.device("cpu")
    run_dir = Path(run_dir)
    store = GraphStore.open(store_path)
    emb = GraphEmbeddings(store, run_dir)
    train = store.split("train")
    dtype = torch.bfloat16 if use_bf16(cfg, device) else torch.float32
    tokenizer, lm, gids = load_llm(llm_dir, dtype=dtype, seed=cfg.seed, progress=progress)
    prior = stage1_prior(run_dir, store) if cfg.residual_prior else None
    if cfg.residual_prior and prior is None:
        raise UserError(f"{run_dir}: residual_prior needs the run's stage-1 model (pretrain/best.pt)")
    train_mean = float(store.labels()[train].mean()) if train.size else None
    model = GraphLLM(lm, emb.dim, gids, seed=cfg.seed, graph_stats=emb.statistics(train, seed=cfg.seed),
                     prior=prior, train_mean_level=train_mean)
    encoder = PromptEncoder(tokenizer, gids, cfg.max_prompt_tokens)
    texts = SampleTexts(store, max_comments=cfg.max_comments, seed=cfg.seed, keys=cfg.prompt_keys)
    maker = BatchMaker(texts, encoder, emb, int(tokenizer.pad_token_id))
    return Setup(store, model, maker, tokenizer, cfg, device, run_dir.resolve(), Path(llm_dir).resolve())


def _loss(runner, stage: str, batch) -> torch.Tensor:
    if stage == "align":
        return runner(batch.input_ids, batch.attention_mask, batch.graph, batch.labels)
    pred = runner(batch.input_ids, batch.attention_mask, batch.graph)
    return torch.nn.functional.smooth_l1_loss(pred.float(), batch.level)


def rank_world() -> tuple[int, int]:
    """(rank, world size) of the process group launched by deepspeed/torchrun; (0, 1) otherwise."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def total_steps(n_train: int, cfg: LLMConfig, world: int = 1) -> int:
    """Optimiser steps of a stage: epochs over the train split, capped by max_steps."""
    per_epoch = -(-n_train // cfg.micro_batch)
    steps = max(1, -(-cfg.epochs * per_epoch // (cfg.grad_accum * world)))
    return min(steps, cfg.max_steps) if cfg.max_steps is not None else steps


def train_stage(stage: str, out: Path, s: Setup, *, resume: bool, stop_after_steps: int | None = None,
                progress: bool = False) -> dict[str, Any]:
    """The optimisation loop of a stage with checkpoints every cfg.checkpoint_every steps."""
    cfg, model = s.cfg, s.model
    train = s.store.split("train")
    if train.size == 0:
        raise UserError(f"{s.store.path}: the train split is empty")
    rank, world = rank_world()
    steps = total_steps(train.size, cfg, world)
    if not use_bf16(cfg, s.device):
        model.float()
    model.to(s.device)
    engine = make_engine(model, cfg, steps, s.device)
    if world > 1 and engine.name != "deepspeed":
        raise UserError("several processes need the deepspeed engine (the plain torch loop is single-process)")
    runner = getattr(engine, "engine", model)
    ck_path, metrics_path = out / CHECKPOINT, out / "metrics.jsonl"
    start = 0
    if resume and ck_path.is_file():
        ck = load_checkpoint(ck_path, keys=("engine_name", "trainable", "engine"))
        if ck["engine_name"] != engine.name:
            raise UserError(f"{ck_path}: written by the {ck['engine_name']} engine, this run uses {engine.name}; "
                            f"set engine={ck['engine_name']!r}")
        model.load_trainable_state(ck["trainable"])
        engine.load_state_dict(ck["engine"])
        engine.load(out / "ds", ck["ds_tag"])
        start = int(ck["step"])
        # drop metric lines after the checkpoint (left by a run killed between logging and checkpointing)
        filter_jsonl(metrics_path, lambda rec: rec["step"] <= start)
    model.train()
    last_loss = float("nan")
    t0 = time.perf_counter()
    # one bar per stage, on rank 0 only (as stage 1's bar per epoch); metrics.jsonl keeps the per-step record
    bar = tqdm(total=steps, initial=start, desc=stage, unit="step", disable=not (progress and rank == 0))
    for step in range(start, steps):
        torch.manual_seed(cfg.seed * 1_000_003 + step)
        losses = []
        lr = engine.lr()
        for a in range(cfg.grad_accum):
            index = (step * cfg.grad_accum + a) * world + rank  # ranks take interleaved micro-batches
            nodes = micro_batch_nodes(train, index, cfg.micro_batch, cfg.seed)
            batch = s.maker.batch(nodes, with_response=stage == "align").to(s.device)
            with engine.autocast():
                loss = _loss(runner, stage, batch)
            engine.backward(loss)
            losses.append(float(loss.detach()))
        gnorm = engine.step()
        last_loss = float(np.mean(losses))
        record = {"step": step + 1, "loss": last_loss, "lr": lr, "grad_norm": gnorm,
                  "seconds": time.perf_counter() - t0}
        if rank == 0:
            with open(metrics_path, "a") as f:
                f.write(json.dumps(record) + "\n")
        bar.set_postfix(loss=f"{last_loss:.4f}", lr=f"{lr:.2e}", refresh=False)
        bar.update(1)
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == steps:
            tag = f"step{step + 1}"
            engine.save(out / "ds", tag)  # every rank (DeepSpeed collects its shards)
            _test_kill_point("after_engine_save", step + 1)
            if rank == 0:
                # written (atomically) after the engine state it names: the commit point of the checkpoint
                torch_save({"trainable": model.trainable_state(), "engine": engine.state_dict(),
                             "step": step + 1, "ds_tag": tag, "engine_name": engine.name, "config": cfg.to_dict()},
                           ck_path)
                _drop_old_tags(out / "ds", keep=tag)
        if stop_after_steps is not None and step + 1 - start >= stop_after_steps and step + 1 < steps:
            bar.close()
            return {"stopped_at_step": step + 1, "steps": steps}
    bar.close()
    model.eval()
    return {"steps": steps, "train_loss": last_loss, "engine": engine.name,
            "train_seconds": time.perf_counter() - t0}


def for_grown_store(s: Setup, store: GraphStore, new_nodes: np.ndarray, new_rows: np.ndarray) -> Setup:
    """`s` (opened on the store its run was trained on) scoring new nodes of a store grown from it."""
    import dataclasses

    texts = SampleTexts(store, max_comments=s.cfg.max_comments, seed=s.cfg.seed, keys=s.cfg.prompt_keys)
    emb = GrownEmbeddings(s.maker.embeddings, new_nodes, new_rows)
    return dataclasses.replace(s, store=store, maker=BatchMaker(texts, s.maker.encoder, emb, s.maker.pad_id))


def _drop_old_tags(directory: Path, keep: str) -> None:
    """Remove DeepSpeed checkpoint tags other than `keep` (the one the checkpoint file names)."""
    import shutil

    if directory.is_dir():
        for child in directory.iterdir():
            if child.is_dir() and child.name.startswith("step") and child.name != keep:
                shutil.rmtree(child, ignore_errors=True)


def _test_kill_point(name: str, step: int) -> None:
    """SIGKILL this process at a named point when NETGPT_KILL_AT=name:step (crash-consistency tests)."""
    if os.environ.get("NETGPT_KILL_AT") == f"{name}:{step}":
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


@torch.no_grad()
def predict_nodes(s: Setup, nodes: np.ndarray, *, zero_graph: bool = False, progress: bool = False,
                  desc: str = "predict") -> np.ndarray:
    """Stage-3 predictions (continuous levels) of video nodes, in the order given.

    `zero_graph` replaces every graph embedding by zeros (the ablation that shows what the graph carries);
    `progress` shows a transient bar (as stage 1's evaluation)."""
    s.model.eval()
    out = []
    for i in tqdm(range(0, len(nodes), s.cfg.eval_batch_size), desc=desc, unit="batch", leave=False,
                  disable=not progress):
        batch = s.maker.batch(nodes[i:i + s.cfg.eval_batch_size], with_response=False).to(s.device)
        graph = torch.zeros_like(batch.graph) if zero_graph else batch.graph
        with autocast_context(s.cfg, s.device):
            out.append(s.model.predict(batch.input_ids, batch.attention_mask, graph).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def _prepare(stage: str, run_dir: str | Path, resume: bool) -> Path:
    out = Path(run_dir) / stage
    if out.exists() and not resume and any(out.iterdir()):
        raise UserError(f"{out} already exists; pass --resume to continue it or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _run(stage: str, run_dir: str | Path, store_path: str | Path, llm_dir: str | Path, *, max_steps: int | None,
         resume: bool, seed: int | None, config, stop_after_steps: int | None, progress: bool,
         allow_other_store: bool = False) -> dict[str, Any]:
    check_run_store(run_dir, store_path, allow_other_store)  # before anything is written
    out = _prepare(stage, run_dir, resume)
    stored = out / "config.json"
    if resume and config is None and stored.is_file():  # a resumed run keeps the settings it started with
        config = json.loads(stored.read_text())["llm"]
    cfg = as_config(config, max_steps=max_steps, seed=seed)
    if (out / FINAL).is_file():  # finished earlier: resume is a no-op
        done = json.loads((out / "result.json").read_text())
        return {**done, "resumed_finished": True}
    s = setup(store_path, llm_dir, run_dir, cfg, progress=progress and rank_world()[0] == 0)
    if stage == "finetune" and not cfg.skip_align:
        align_final = Path(run_dir) / "align" / FINAL
        if not align_final.is_file():
            raise UserError(f"{align_final}: no finished stage 2; run `netgpt train --stage align` first "
                            "or set skip_align (the no-stage-2 ablation)")
        s.model.load_trainable_state(load_checkpoint(align_final, keys=("trainable",))["trainable"])
    trainable = s.model.set_trainable(stage, cfg.top_layers)
    write_json(out / "config.json", {"stage": stage, "llm_dir": str(s.llm_dir), "embeddings": str(s.run_dir),
                                      "store": str(Path(store_path).resolve()), "store_id": s.store.store_id,
                                      "d_g": s.maker.embeddings.dim,
                                      "trainable": trainable, "llm": cfg.to_dict()}, sort_keys=True)
    result = train_stage(stage, out, s, resume=resume, stop_after_steps=stop_after_steps, progress=progress)
    if "stopped_at_step" in result or rank_world()[0] != 0:
        return result
    if stage == "finetune":
        ids = s.store.sample_ids()
        metrics = {}
        for split in EVAL_SPLITS:
            nodes = s.store.split(split)[: cfg.max_eval_samples]
            y_pred = predict_nodes(s, nodes, progress=progress, desc=split)
            y_true = s.maker.texts.levels[nodes].astype(np.float64)
            metrics[split] = regression_metrics(y_true, y_pred)
            write_predictions(out / f"predictions_{split}.parquet", nodes, ids, y_true, y_pred)
        write_json(out / "metrics.json", metrics, sort_keys=True)
        result.update(metrics)
    write_json(out / "result.json", result, sort_keys=True)
    torch_save({"trainable": s.model.trainable_state(), "config": cfg.to_dict(), "stage": stage}, out / FINAL)
    return result


def summary_line(stage: str, result: dict[str, Any]) -> str:
    """One line on how a stage run ended (what the command line prints per stage, with or without bars)."""
    if result.get("resumed_finished"):
        return f"{stage}: already finished, nothing to do"
    if "stopped_at_step" in result:
        return f"{stage}: stopped after step {result['stopped_at_step']} of {result['steps']} (continue with --resume)"
    line = (f"{stage}: {result['steps']} steps in {result['train_seconds']:.1f} s, last loss {result['train_loss']:.4f} "
            f"({result['engine']} engine)")
    for split in EVAL_SPLITS:
        if split in result:
            m = result[split]
            line += f"; {split} acc {m['acc']:.4f} mse {m['mse']:.4f} mae {m['mae']:.4f}"
    return line


def run_align(run_dir: str | Path, store_path: str | Path, llm_dir: str | Path, *, max_steps: int | None = None,
              resume: bool = False, seed: int | None = None, config: LLMConfig | dict | str | None = None,
              stop_after_steps: int | None = None, progress: bool = False,
              allow_other_store: bool = False) -> dict[str, Any]:
    """Stage 2: train the projector and graph_start/graph_end with the LM loss on the response."""
    return _run("align", run_dir, store_path, llm_dir, max_steps=max_steps, resume=resume, seed=seed, config=config,
                stop_after_steps=stop_after_steps, progress=progress, allow_other_store=allow_other_store)


def run_finetune(run_dir: str | Path, store_path: str | Path, llm_dir: str | Path, *, max_steps: int | None = None,
                 resume: bool = False, seed: int | None = None, config: LLMConfig | dict | str | None = None,
                 stop_after_steps: int | None = None, progress: bool = False,
                 allow_other_store: bool = False) -> dict[str, Any]:
    """Stage 3: train head + projector + top decoder layers with Smooth L1; write predictions and metrics."""
    return _run("finetune", run_dir, store_path, llm_dir, max_steps=max_steps, resume=resume, seed=seed,
                config=config, stop_after_steps=stop_after_steps, progress=progress,
                allow_other_store=allow_other_store)


def load_finetuned(run_dir: str | Path, store_path: str | Path) -> Setup:
    """The stage-3 model of a finished run, for predictions."""
    out = Path(run_dir) / "finetune"
    if not (out / FINAL).is_file():
        raise UserError(f"{out}: no finished stage 3 (no {FINAL}); run `netgpt train --stage finetune` first")
    meta = json.loads((out / "config.json").read_text())
    cfg = LLMConfig.from_dict(meta["llm"])
    s = setup(store_path, meta["llm_dir"], meta["embeddings"], cfg)
    s.model.load_trainable_state(load_checkpoint(out / FINAL, keys=("trainable",))["trainable"])
    s.model.to(s.device).eval()
    return s
