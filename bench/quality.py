"""Prediction quality leaderboard on the synthetic default: every model over several seeds, mean ± std.

Models: the default stage-1 graph model (sage), the paper's RGCN at CPU width (`cpu` preset), LightGBM on
the sample's own features, LightGBM with the author's history, LightGBM with the graph's exact
neighbourhood aggregates (feature means and train-level statistics, `lightgbm_graph`), the train mean, and an upper bound: LightGBM on the own features plus the generator's
graph-visible latents (topic heat, author reach, the author's growth speed), i.e. what a model that
knew them exactly would know; and a tighter bound, `neighbour_latents`: LightGBM on the tabular
features plus, over each sample's earlier same-author and same-topic videos (its in-neighbours, each
video once, its own video left out), the mean of their true log-scale drivers and growth speeds and
their number. That is everything the causal neighbourhood could reveal if every neighbour's counts
were read without noise, so no model on these graphs can be expected to beat it.

    python3 bench/quality.py --scale 0.1 --seeds 0 1 2 --out bench/results_quality_0.1.json
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from graphstore.build import build_store  # noqa: E402
from graphstore.store import GraphStore  # noqa: E402
from graphstore.synth import GRAPH_VISIBLE_LATENTS, latents_path, synthesize  # noqa: E402
from netgpt.baselines import markdown_table, run_baselines, run_lightgbm, summarise  # noqa: E402
from netgpt.config import preset  # noqa: E402

UPPER_LATENTS = (*GRAPH_VISIBLE_LATENTS, "tau")


def upper_bound(store: GraphStore, latents_file: Path, seed: int) -> dict:
    """LightGBM on the sample's own features plus its graph-visible latents (test metrics)."""
    lat = latents_of(store, latents_file, UPPER_LATENTS)
    return run_lightgbm(store, seed, own_only=True, extra=(np.stack([lat[c] for c in UPPER_LATENTS], axis=1),
                                                                list(UPPER_LATENTS)))


def latents_of(store: GraphStore, latents_file: Path, columns: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The generator's latents per video node of the store."""
    import pyarrow.parquet as pq

    table = pq.read_table(latents_file)
    pos = {k: i for i, k in enumerate(table.column("sample_id").to_pylist())}
    rows = np.array([pos[s] for s in store.sample_ids()])
    return {c: table.column(c).to_numpy()[rows] for c in columns}


def neighbour_video_means(store: GraphStore, relation: str, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per node, the mean of a per-video constant over the distinct videos among its in-neighbours in a
    bucket relation, its own video left out (NaN when there are none), and their number.

    A video is counted at its first state (no history in-neighbour); every node is in its own bucket
    prefix, and so is its video's first state, which is subtracted."""
    rel = store.topology.relations[relation]
    n = values.size
    first = np.diff(np.asarray(store.topology.relations["is_history_of"].indptr)) == 0
    total = rel.in_neighbor_sums(np.stack([np.where(first, values, 0.0), first], axis=1)) - np.stack([values, np.ones(n)], axis=1)
    count = np.maximum(total[:, 1], 0.0)
    return np.where(count > 0, total[:, 0] / np.maximum(count, 1.0), np.nan), count


def neighbour_ceiling(store: GraphStore, latents_file: Path, seed: int) -> dict:
    """LightGBM on the tabular features plus the noise-free drivers and growth speeds of each sample's
    earlier same-author and same-topic videos (test metrics)."""
    lat = latents_of(store, latents_file, ("appeal", "topic_heat", "author_reach", "hidden", "tau"))
    driver = lat["appeal"] + lat["topic_heat"] + lat["author_reach"] + lat["hidden"]
    cols, names = [], []
    for relation, short in (("has_same_author_as", "author"), ("has_same_topic_as", "topic")):
        for name, values in (("driver", driver), ("tau", lat["tau"])):
            mean, count = neighbour_video_means(store, relation, values)
            cols.append(mean)
            names.append(f"{short}_videos_mean_{name}")
        cols.append(count)
        names.append(f"{short}_videos")
    return run_lightgbm(store, seed, extra=(np.stack(cols, axis=1), names))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=0.1)
    ap.add_argument("--data-seed", type=int, default=0)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--models", nargs="+", default=["sage", "rgcn", "lightgbm_own", "lightgbm", "lightgbm_graph",
                                                    "train_mean"])
    ap.add_argument("--work", default="runs/quality")
    ap.add_argument("--out", default=None, help="JSON results file")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    data = work / f"xs_{args.scale}_{args.data_seed}.json"
    t0 = time.perf_counter()
    synthesize(data, scale=args.scale, seed=args.data_seed, progress=False)
    store_path = build_store(data, work / f"store_{args.scale}_{args.data_seed}", overwrite=True, progress=False)
    store = GraphStore.open(store_path)
    build_s = time.perf_counter() - t0
    timings: dict[str, float] = {}
    results: dict[str, dict] = {}
    for m in args.models:
        t = time.perf_counter()
        out = work / f"runs_{args.scale}"
        res = run_baselines(out, store_path, preset("default"), models=(m,), seeds=tuple(args.seeds), progress=False)
        results[m] = res[m]
        timings[m] = (time.perf_counter() - t) / len(args.seeds)
        print(f"{m}: {json.dumps(res[m])} ({timings[m]:.0f} s per seed)", flush=True)
    t = time.perf_counter()
    results["upper_bound_latents"] = summarise([upper_bound(store, latents_path(data), s) for s in args.seeds])
    timings["upper_bound_latents"] = (time.perf_counter() - t) / len(args.seeds)
    t = time.perf_counter()
    results["neighbour_latents"] = summarise([neighbour_ceiling(store, latents_path(data), s) for s in args.seeds])
    timings["neighbour_latents"] = (time.perf_counter() - t) / len(args.seeds)
    table = markdown_table(results)
    print(table)
    record = {"command": " ".join(sys.argv), "machine": f"{platform.processor() or platform.machine()}, "
              f"{__import__('os').cpu_count()} cores", "scale": args.scale, "data_seed": args.data_seed,
              "seeds": args.seeds, "splits": {s: int(store.split(s).size) for s in ("train", "val", "test")},
              "build_seconds": build_s, "seconds_per_seed": timings, "results": results, "table": table}
    if args.out:
        Path(args.out).write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
