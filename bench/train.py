"""Stage-1 training throughput of the `cpu` preset (seconds per epoch, samples per second) and the
baselines table, on synthetic stores. Prints and records measured numbers only.

    python bench/train.py --scales 0.1 1.0 --max-steps 20 --workdir /work/bench_runs/train --json-out bench/results_train.json
    python bench/train.py --scales 0.1 --baselines --epochs 3 --max-steps 40 --workdir /work/bench_runs/train
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import torch


def ensure_store(workdir: Path, scale: float, seed: int) -> Path:
    """A featurized synthetic store of `scale` under workdir (built once, reused)."""
    from graphstore.build import build_store
    from graphstore.synth import synthesize

    store = workdir / f"store_{scale}"
    if (store / "zarr.json").is_file():
        return store
    src = workdir / f"xs_{scale}.json"
    if not src.is_file():
        synthesize(src, scale=scale, seed=seed, progress=False)
    t0 = time.perf_counter()
    build_store(src, store, featurize=True, progress=False)
    print(f"scale {scale}: built and featurized in {time.perf_counter() - t0:.1f} s", flush=True)
    return store


def bench_pretrain(store: Path, run_dir: Path, epochs: int, max_steps: int | None, seed: int) -> dict:
    """Train the cpu preset; per-epoch seconds and samples/s from metrics.jsonl."""
    from graphstore.store import GraphStore
    from netgpt.config import preset
    from netgpt.train_gnn import run_pretrain

    shutil.rmtree(run_dir, ignore_errors=True)
    cfg = preset("cpu", epochs=epochs, max_steps=max_steps, seed=seed, max_eval_batches=4 if max_steps else None)
    t0 = time.perf_counter()
    result = run_pretrain(run_dir, store, cfg, progress=False)
    wall = time.perf_counter() - t0
    lines = [json.loads(x) for x in (run_dir / "pretrain" / "metrics.jsonl").read_text().splitlines()]
    n_train = len(GraphStore.open(store).split("train"))
    full_steps = -(-n_train // cfg.batch_size)
    sps = [e["samples_per_second"] for e in lines]
    return {"train_samples": n_train, "steps_per_full_epoch": full_steps, "steps_run_per_epoch": lines[0]["steps"],
            "samples_per_second": sps, "train_seconds_per_epoch": [e["train_seconds"] for e in lines],
            "seconds_per_full_epoch_est": n_train / (sum(sps) / len(sps)),
            "wall_seconds": wall, "metrics": {k: v for k, v in result.items() if k in ("val", "test")},
            "rss_gb_end": psutil.Process().memory_info().rss / 2**30,
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def bench_forward(store_path: Path, batches: int, seed: int, preset_name: str = "cpu", **over) -> dict:
    """Seconds per forward+backward of the planned forward (layer-1 messages in input space)
    against the reference full forward (every sampled node projected and convolved), same batches."""
    import torch.nn.functional as F

    from graphstore.store import GraphStore
    from netgpt.config import preset
    from netgpt.data import batch_inputs, iter_batches
    from netgpt.models.labels import known_labels
    from netgpt.train_gnn import model_for_store

    store = GraphStore.open(store_path)
    cfg = preset(preset_name, seed=seed, **over)
    model = model_for_store(cfg, store)
    labels = known_labels(store, cfg.label_inputs)
    seeds = np.random.default_rng(seed).permutation(store.split("train"))[: batches * cfg.batch_size]
    times: dict[str, list[float]] = {"planned": [], "full": []}
    max_diff, sizes = 0.0, []
    for batch in iter_batches(store, seeds, cfg, seed=seed):
        x, ei, bs, _, y = batch_inputs(batch, torch.device("cpu"), labels)
        sizes.append({t: int(v.size(0)) for t, v in x.items() if t == "video"})
        preds = {}
        for name, fwd in (("planned", model.forward), ("full", model.forward_full)):
            model.zero_grad()
            t0 = time.perf_counter()
            _, pred = fwd(x, ei, bs)
            F.smooth_l1_loss(pred, y).backward()
            times[name].append(time.perf_counter() - t0)
            preds[name] = pred.detach()
        max_diff = max(max_diff, float((preds["planned"] - preds["full"]).abs().max()))
    return {"preset": preset_name, "overrides": {k: str(v) for k, v in over.items()}, "batches": len(sizes),
            "videos_per_batch": [s["video"] for s in sizes], "max_abs_pred_diff": max_diff,
            "seconds_per_batch": {k: float(np.mean(v)) for k, v in times.items()},
            "speedup": float(np.mean(times["full"]) / np.mean(times["planned"]))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scales", type=float, nargs="+", default=[0.1])
    p.add_argument("--workdir", type=Path, default=Path("/work/bench_runs/train"))
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-steps", type=int, help="cap steps per epoch (seconds per epoch are then extrapolated)")
    p.add_argument("--baselines", action="store_true", help="also run all baselines at the first scale")
    p.add_argument("--models", nargs="+", help="baselines to run (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--forward-batches", type=int, default=0,
                   help="also time planned vs full forward+backward on this many batches per scale")
    p.add_argument("--skip-train", action="store_true", help="only the forward comparison / baselines")
    p.add_argument("--json-out", type=Path)
    args = p.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    record = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
                          "torch_threads": torch.get_num_threads(), "load_avg_start": os.getloadavg()},
              "args": {k: str(v) for k, v in vars(args).items()}, "pretrain": {}}
    for scale in args.scales:
        store = ensure_store(args.workdir, scale, args.seed)
        if args.forward_batches:
            fw = bench_forward(store, args.forward_batches, args.seed)
            record.setdefault("forward", {})[str(scale)] = fw
            print(f"scale {scale}: forward+backward per batch: planned {fw['seconds_per_batch']['planned']:.3f} s, "
                  f"full {fw['seconds_per_batch']['full']:.3f} s (x{fw['speedup']:.2f}); "
                  f"max |pred diff| {fw['max_abs_pred_diff']:.2e}", flush=True)
        if args.skip_train:
            continue
        res = bench_pretrain(store, args.workdir / f"run_{scale}", args.epochs, args.max_steps, args.seed)
        record["pretrain"][str(scale)] = res
        print(f"scale {scale}: {res['train_samples']} train samples; "
              f"{sum(res['samples_per_second']) / len(res['samples_per_second']):.1f} samples/s; "
              f"~{res['seconds_per_full_epoch_est']:.0f} s per full epoch; test {res['metrics'].get('test')}", flush=True)
    if args.baselines:
        from netgpt.baselines import ALL_MODELS, markdown_table, run_baselines
        from netgpt.config import preset

        scale = args.scales[0]
        out = args.workdir / f"baselines_{scale}"
        shutil.rmtree(out, ignore_errors=True)
        cfg = preset("cpu", epochs=args.epochs, max_steps=args.max_steps, seed=args.seed)
        t0 = time.perf_counter()
        models = tuple(args.models) if args.models else ALL_MODELS
        res = run_baselines(out, ensure_store(args.workdir, scale, args.seed), cfg, models=models, progress=False)
        record["baselines"] = {"scale": scale, "results": res, "wall_seconds": time.perf_counter() - t0}
        print(markdown_table(res), end="")
    record["machine"]["load_avg_end"] = os.getloadavg()
    if args.json_out:
        args.json_out.write_text(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
