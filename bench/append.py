"""`graphstore append` of one day's crawl against a full rebuild, and `netgpt predict --input` latency.

    python bench/append.py --scale 1.0 --workdir /work/bench_runs/append --json-out bench/results_append_1.0.json

Synthesises XS-Video at a scale, holds out the last crawl day (about 10,000 samples at full scale),
builds the store of the other days (with features, not timed), then times in separate processes
(wall seconds and peak RSS of each): a full rebuild of every sample with features, and
`graphstore append` of the held-out day onto a copy of the older store; checks that both stores hold
the same counts. It then trains a small stage-1 run on the older store and times, in one process
after a warm-up call, `predict_input` (overlay + featurize + sample + score) for 1 sample and for up
to 1,000 samples of the held-out day, several times each (p50/p95).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's packages, here and (PYTHONPATH) in every child process
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))

from build_full import run_child  # noqa: E402  (bench/build_full.py: wall seconds and peak RSS of a child)


def split_last_day(src: Path, workdir: Path) -> tuple[Path, Path, dict]:
    """(older samples file, last crawl day file, counts) from a synthetic XS-Video file, streamed (the
    full-scale file is 700 MB).

    The last day is the latest one crawled at least half as much as the median day (the synthetic
    window ends with a few stray samples); later strays go with it, so no older sample lists a held-out one.
    """
    per_day: dict[str, int] = {}
    for _, rec in _records(src):
        per_day[rec["当前时间"][:10]] = per_day.get(rec["当前时间"][:10], 0) + 1
    typical = float(np.median(list(per_day.values())))
    day = max(d for d, n in per_day.items() if n >= typical / 2)
    base, tail = workdir / "older.json", workdir / "last_day.json"
    counts = {"day": day, "older_samples": 0, "day_samples": 0}
    with open(base, "w") as older, open(tail, "w") as held:
        for f in (older, held):
            f.write("{")
        for sid, rec in _records(src):
            late = rec["当前时间"][:10] >= day
            key = "day_samples" if late else "older_samples"
            (held if late else older).write(("," if counts[key] else "") + json.dumps(sid) + ":"
                                            + json.dumps(rec, ensure_ascii=False))
            counts[key] += 1
        for f in (older, held):
            f.write("}")
    return base, tail, counts


def _records(src: Path):
    from graphstore.ingest import iter_records

    with open(src, "rb") as f:
        yield from iter_records(src, "xsvideo-json", f)


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "graphstore.cli", *args]


def store_counts(store: Path) -> dict:
    info = json.loads(subprocess.run(cli("info", str(store), "--json"), check=True, capture_output=True, text=True,
                                     cwd=ROOT).stdout)
    return {"nodes": info["nodes"], "edges": info["edges"], "splits": info["splits"]}


def latency(run: Path, store: Path, day_file: Path, reps: int, sizes: list[int], workdir: Path) -> dict:
    """p50/p95 seconds of predict_input for each size (samples drawn from the held-out day), one process."""
    from netgpt.commands.predict import predict_input

    records = json.loads(day_file.read_text())
    ids = sorted(records)
    rng = np.random.default_rng(0)
    out = {}
    predict_input(run, store, _subset(records, ids[:1], workdir / "warmup.json"), progress=False)
    for size in sizes:
        size = min(size, len(ids))
        times = []
        for rep in range(reps):
            pick = list(rng.choice(ids, size=size, replace=False))
            path = _subset(records, pick, workdir / f"predict_{size}_{rep}.json")
            t0 = time.perf_counter()
            got, scores = predict_input(run, store, path, progress=False)
            times.append(time.perf_counter() - t0)
            assert len(got) == size and np.isfinite(scores).all()
        out[str(size)] = {"samples": size, "reps": reps, "p50_s": round(float(np.percentile(times, 50)), 3),
                          "p95_s": round(float(np.percentile(times, 95)), 3), "all_s": [round(t, 3) for t in times]}
    out["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 3)
    return out


def _subset(records: dict, ids: list[str], path: Path) -> Path:
    path.write_text(json.dumps({k: records[k] for k in ids}, ensure_ascii=False))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", default="/tmp/xsvideo_append_bench")
    ap.add_argument("--reps", type=int, default=10, help="predict calls per size (p50/p95 over them)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 1000], help="samples per predict call")
    ap.add_argument("--train-steps", type=int, default=20, help="optimiser steps of the stage-1 run that predicts")
    ap.add_argument("--json-out", default=None)
    ap.add_argument("--latency-only", nargs=3, metavar=("RUN", "STORE", "DAY_FILE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    work = Path(args.workdir)
    if args.latency_only:
        run, store, day = map(Path, args.latency_only)
        print(json.dumps(latency(run, store, day, args.reps, args.sizes, work)))
        return
    work.mkdir(parents=True, exist_ok=True)
    result: dict = {"scale": args.scale, "machine": f"{platform.machine()} cores={os.cpu_count()}"}
    src = work / f"xsvideo_{args.scale}.json"
    if not src.exists():
        result["synth_s"], _ = run_child(cli("synth", "--scale", str(args.scale), "--seed", str(args.seed),
                                             "--out", str(src)))
    older, day, result["split"] = split_last_day(src, work)
    base = work / "older.store"
    if not (base / "zarr.json").is_file():
        result["older_build_s"], result["older_build_peak_rss_gb"] = run_child(
            cli("build", "--input", str(older), "--out", str(base), "--overwrite"))

    full = work / "all.store"
    result["rebuild_s"], result["rebuild_peak_rss_gb"] = run_child(
        cli("build", "--input", str(src), "--out", str(full), "--overwrite"))
    grown = work / "appended.store"
    shutil.rmtree(grown, ignore_errors=True)
    shutil.copytree(base, grown)
    result["append_s"], result["append_peak_rss_gb"] = run_child(
        cli("append", "--store", str(grown), "--input", str(day), "--no-progress"))
    same = store_counts(grown) == store_counts(full)
    result["append_equals_rebuild_counts"] = same
    if not same:
        raise SystemExit("the appended store's counts differ from the rebuild's")

    run = work / "run"
    if not (run / "pretrain" / "best.pt").is_file():
        shutil.rmtree(run, ignore_errors=True)
        result["train_s"], _ = run_child([sys.executable, "-m", "netgpt.cli", "train", "--store", str(base), "--out",
                                          str(run), "--preset", "cpu", "--epochs", "1", "--max-steps",
                                          str(args.train_steps), "--max-eval-batches", "2", "--no-progress"])
    cmd = [sys.executable, __file__, "--workdir", str(work), "--reps", str(args.reps), "--sizes",
           *map(str, args.sizes), "--latency-only", str(run), str(base), str(day)]
    proc = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
    result["predict"] = json.loads(proc.stdout.strip().splitlines()[-1])
    print(json.dumps(result, indent=2))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
