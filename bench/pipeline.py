"""The full NetGPT pipeline on a synthetic store with the tiny LLM: time per stage and test metrics.

    python bench/pipeline.py --scale 0.1 --workdir /tmp/netgpt_bench --json-out bench/results_pipeline_0.1.json

Steps: synth -> build (features) -> stage 1 (RGCN, `cpu` preset) -> embed -> tiny LLM -> stage 2 -> stage 3
-> `netgpt eval`. Stages 2/3 run in this process with the paper's micro-batch 2 and a bench-sized
accumulation/step cap/learning rate (a random tiny LM is not the paper's 7B model)."""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from graphstore.atomic import write_json

ROOT = Path(__file__).resolve().parents[1]


def timed(name: str, cmd: list[str], log: dict) -> None:
    """Run a command, recording its wall time; exit with its output on failure."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    log[name] = {"seconds": round(time.perf_counter() - t0, 2), "cmd": " ".join(cmd)}
    print(f"{name}: {log[name]['seconds']:.1f} s", flush=True)
    if proc.returncode != 0:
        sys.exit(f"{name} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def write_random_embeddings(store: Path, name: str, seed: int, d_g: int = 128) -> None:
    """Seeded N(0, 1) float16 rows at embeddings/<name> (a stand-in for stage 1, marked in the output)."""
    import numpy as np
    import zarr

    from graphstore.store import GraphStore

    n = GraphStore.open(store).num_nodes("video")
    emb = np.random.default_rng(seed).standard_normal((n, d_g)).astype(np.float16)
    root = zarr.open_group(str(store), mode="a", zarr_format=3)
    root.create_array(f"embeddings/{name}", shape=emb.shape, dtype="float16", chunks=(min(n, 65536), d_g))[...] = emb


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", default="/tmp/netgpt_bench")
    p.add_argument("--pretrain-epochs", type=int, default=2)
    p.add_argument("--pretrain-max-steps", type=int, default=None, help="cap stage-1 steps per epoch")
    p.add_argument("--llm-steps", type=int, default=30, help="optimiser steps of stage 2 and of stage 3")
    p.add_argument("--grad-accum", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--max-eval-samples", type=int, default=None, help="cap stage-3 evaluation samples per split")
    p.add_argument("--engine", default="torch", choices=("torch", "deepspeed", "auto"))
    p.add_argument("--random-embeddings", action="store_true",
                   help="skip stage 1: write seeded random embeddings (d_g 128) to time stages 2/3 alone")
    p.add_argument("--json-out", default=None)
    args = p.parse_args(argv)

    work = Path(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    store, run, llm = work / "store", work / "netgpt_run", work / "tiny_llm"
    py = sys.executable
    log: dict = {}
    timed("synth", [py, "-m", "graphstore.cli", "synth", "--scale", str(args.scale), "--seed", str(args.seed),
                    "--out", str(work / "xs.json"), "--overwrite"], log)
    timed("build", [py, "-m", "graphstore.cli", "build", "--input", str(work / "xs.json"), "--out", str(store)], log)
    pre = [py, "-m", "netgpt.cli", "train", "--stage", "pretrain", "--store", str(store), "--out", str(run),
           "--preset", "cpu", "--epochs", str(args.pretrain_epochs), "--seed", str(args.seed), "--no-progress"]
    if args.pretrain_max_steps:
        pre += ["--max-steps", str(args.pretrain_max_steps)]
    if args.random_embeddings:
        write_random_embeddings(store, run.name, args.seed)
    else:
        timed("stage1_pretrain", pre, log)
        timed("embed", [py, "-m", "netgpt.cli", "embed", "--run", str(run), "--store", str(store), "--no-progress"],
              log)
    timed("tiny_llm", [py, str(ROOT / "tools" / "make_tiny_llm.py"), "--store", str(store), "--out", str(llm)], log)

    from netgpt.llm.stages import run_align, run_finetune

    cfg = {"grad_accum": args.grad_accum, "lr": args.lr, "engine": args.engine, "checkpoint_every": 10,
           "max_eval_samples": args.max_eval_samples}
    results = {}
    for name, fn in (("stage2_align", run_align), ("stage3_finetune", run_finetune)):
        t0 = time.perf_counter()
        results[name] = fn(run, store, llm, max_steps=args.llm_steps, seed=args.seed, config=cfg)
        log[name] = {"seconds": round(time.perf_counter() - t0, 2), "steps": args.llm_steps,
                     "samples_per_step": 2 * args.grad_accum}
        print(f"{name}: {log[name]['seconds']:.1f} s", flush=True)
    timed("eval", [py, "-m", "netgpt.cli", "eval", "--run", str(run), "--stage", "finetune", "--store", str(store)],
          log)

    metrics = {"netgpt_stage3": json.loads((run / "finetune" / "metrics.json").read_text())}
    if not args.random_embeddings:
        metrics["rgcn_stage1"] = json.loads((run / "pretrain" / "metrics.json").read_text())
    out = {"stage1": "random embeddings" if args.random_embeddings else "rgcn", "scale": args.scale,
           "seed": args.seed, "args": vars(args), "timings": log, "metrics": metrics,
           "engine": results["stage2_align"].get("engine"), "cpu_count": os.cpu_count(),
           "peak_rss_children_gb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20, 2),
           "peak_rss_self_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}
    print(json.dumps({"timings": {k: v["seconds"] for k, v in log.items()}, "metrics": metrics}, indent=2))
    if args.json_out:
        write_json(args.json_out, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
