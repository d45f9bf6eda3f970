"""Does the graph token matter? NetGPT with the tiny local LM against its own stage-1 model.

Rows (test split): stage 1 alone; NetGPT (stages 1-3, the default residual head on the stage-1 prior);
NetGPT with every graph embedding zeroed at prediction time; NetGPT without stage 2; and the paper's
head (no stage-1 prior: the prediction comes from the LM's last hidden state alone), with and without
its graph embeddings zeroed, which shows whether the graph token carries signal through the LM itself.

    python3 bench/netgpt_ablation.py --scale 0.05 --out bench/results_netgpt_ablation_0.05.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from graphstore.build import build_store  # noqa: E402
from graphstore.synth import synthesize  # noqa: E402
from netgpt.config import preset  # noqa: E402
from netgpt.embed import run_embed  # noqa: E402
from netgpt.llm.config import as_config  # noqa: E402
from netgpt.llm.stages import load_finetuned, predict_nodes, run_align, run_finetune  # noqa: E402
from netgpt.metrics import regression_metrics  # noqa: E402
from netgpt.train_gnn import run_pretrain  # noqa: E402


def zeroed(run: Path, store: Path) -> dict:
    """Test metrics of a finished run's stage 3 with all graph embeddings replaced by zeros."""
    s = load_finetuned(run, store)
    nodes = s.store.split("test")[: s.cfg.max_eval_samples]
    pred = predict_nodes(s, nodes, zero_graph=True)
    m = regression_metrics(s.maker.texts.levels[nodes], pred)
    m["distinct_levels"] = int(np.unique(np.clip(np.rint(pred), 0, 9)).size)
    return m


def finetuned(run: Path, store: Path) -> dict:
    """Test metrics of a run's stage 3 with the number of distinct predicted levels."""
    import pyarrow.parquet as pq

    m = json.loads((run / "finetune" / "metrics.json").read_text())["test"]
    pred = np.asarray(pq.read_table(run / "finetune" / "predictions_test.parquet").column("y_pred"))
    m["distinct_levels"] = int(np.unique(np.clip(np.rint(pred), 0, 9)).size)
    return m


def copy_stage1(src: Path, dst: Path) -> Path:
    """A new run holding src's stage-1 model and embeddings."""
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir(parents=True)
    for part in ("pretrain", "embeddings", "config.json"):
        p = src / part
        (shutil.copytree if p.is_dir() else shutil.copy)(p, dst / part)
    return dst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--llm-config", default="tiny")
    ap.add_argument("--llm-max-steps", type=int, default=None)
    ap.add_argument("--work", default="runs/netgpt_ablation")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    t0 = time.perf_counter()
    data = work / "xs.json"
    synthesize(data, scale=args.scale, seed=args.seed, progress=False)
    store = build_store(data, work / "store", progress=False)
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_tiny_llm", Path(__file__).parents[1] / "tools" / "make_tiny_llm.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    llm = mod.make_tiny_llm(store, work / "tiny-llm", seed=args.seed)
    seconds: dict[str, float] = {"data": time.perf_counter() - t0}

    run = work / "netgpt"
    t = time.perf_counter()
    stage1 = run_pretrain(run, store, preset("default", seed=args.seed), progress=False)["test"]
    run_embed(run, store, progress=False)
    seconds["stage1"] = time.perf_counter() - t
    cfg = as_config(args.llm_config, max_steps=args.llm_max_steps, seed=args.seed)
    variants = {"netgpt": (run, cfg), "netgpt_no_stage2": (copy_stage1(run, work / "no_stage2"), as_config(
        cfg, skip_align=True)), "paper_head": (copy_stage1(run, work / "paper_head"), as_config(cfg, residual_prior=False))}
    rows: dict[str, dict] = {"stage1": stage1}
    for name, (r, c) in variants.items():
        t = time.perf_counter()
        if not c.skip_align:
            run_align(r, store, llm, config=c)
        run_finetune(r, store, llm, config=c)
        seconds[name] = time.perf_counter() - t
        rows[name] = finetuned(r, store)
        if name in ("netgpt", "paper_head"):
            rows[f"{name}_graph_zeroed"] = zeroed(r, store)
        print(name, json.dumps(rows[name]), flush=True)
    lines = ["| model | ACC | MSE | MAE | distinct levels |", "|---|---|---|---|---|"]
    lines += [f"| {k} | {v['acc']:.4f} | {v['mse']:.4f} | {v['mae']:.4f} | {v.get('distinct_levels', '')} |"
              for k, v in rows.items()]
    table = "\n".join(lines) + "\n"
    print(table)
    record = {"command": " ".join(sys.argv), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
              "scale": args.scale, "seed": args.seed, "llm_config": cfg.to_dict(), "seconds": seconds,
              "results": rows, "table": table}
    if args.out:
        Path(args.out).write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
