"""`netgpt baselines`: GCN, HAN, HGT and RGCN on the same loader, head and loss; LightGBM on
tabular per-sample features; predict-the-train-mean. One Markdown table on the test split."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from graphstore.atomic import write_text
from graphstore.store import GraphStore

from .config import PretrainConfig
from .metrics import regression_metrics

GRAPH_MODELS = ("gcn", "han", "hgt", "rgcn")
ALL_MODELS = (*GRAPH_MODELS, "lightgbm", "train_mean")
COUNTS = ("fans", "likes", "views", "shares", "collects", "comment_count")
DAY = 86400.0


def tabular_features(store: GraphStore) -> tuple[np.ndarray, list[str]]:
    """Per-video features: log counts, observation age, growth since the latest history state,
    platform, duration, and the author's earlier samples (count, mean log views/likes)."""
    n = store.num_nodes("video")
    cols = {c: np.log1p(store.column(c).astype(np.float64)) for c in COUNTS}
    ctime, post = store.column("ctime").astype(np.float64), store.column("post_time").astype(np.float64)
    feats = dict(cols)
    feats["age_days"] = (ctime - post) / DAY
    feats["platform"] = store.column("platform").astype(np.float64)
    feats["duration"] = store.column("duration").astype(np.float64)
    hist = store.topology.relations["is_history_of"]
    indptr, indices = np.asarray(hist.indptr), np.asarray(hist.indices)
    last = np.full(n, -1, dtype=np.int64)
    has = np.diff(indptr) > 0
    for v in np.flatnonzero(has):  # the latest history state (max ctime) of each sample
        h = indices[indptr[v]:indptr[v + 1]]
        last[v] = h[np.argmax(ctime[h])]
    for c in ("likes", "views", "comment_count"):
        g = np.full(n, np.nan)
        g[has] = cols[c][has] - cols[c][last[has]]
        feats[f"growth_{c}"] = g
    gap = np.full(n, np.nan)
    gap[has] = (ctime[has] - ctime[last[has]]) / DAY
    feats["days_since_history"] = gap
    author = store.column("author").astype(np.int64)
    order = np.lexsort((ctime, author))
    prev_n, prev_views, prev_likes = np.zeros(n), np.full(n, np.nan), np.full(n, np.nan)
    cnt, sv, sl, cur = 0, 0.0, 0.0, -1
    for v in order:  # running aggregates of the same author's strictly earlier samples
        if author[v] != cur:
            cur, cnt, sv, sl = author[v], 0, 0.0, 0.0
        prev_n[v] = cnt
        if cnt:
            prev_views[v], prev_likes[v] = sv / cnt, sl / cnt
        cnt += 1; sv += cols["views"][v]; sl += cols["likes"][v]
    feats.update(author_prev_samples=prev_n, author_prev_log_views=prev_views, author_prev_log_likes=prev_likes)
    names = list(feats)
    return np.stack([feats[k] for k in names], axis=1).astype(np.float32), names


def run_lightgbm(store: GraphStore, seed: int = 0, num_rounds: int = 300) -> dict:
    """Gradient-boosted trees (L1-ish Huber objective) with early stopping on val; test metrics."""
    import lightgbm as lgb

    x, names = tabular_features(store)
    y = store.labels().astype(np.float64)
    tr, va, te = (store.split(s) for s in ("train", "val", "test"))
    params = {"objective": "huber", "alpha": 1.0, "learning_rate": 0.05, "num_leaves": 31, "min_data_in_leaf": 5,
              "seed": seed, "deterministic": True, "num_threads": 2, "verbose": -1}
    dtrain = lgb.Dataset(x[tr], y[tr], feature_name=names, categorical_feature=["platform"])
    valid = [lgb.Dataset(x[va], y[va], reference=dtrain)] if va.size else []
    callbacks = [lgb.early_stopping(30, verbose=False)] if va.size else []
    booster = lgb.train(params, dtrain, num_boost_round=num_rounds, valid_sets=valid, callbacks=callbacks)
    pred = np.clip(booster.predict(x[te], num_iteration=booster.best_iteration or None), 0, 9)
    return regression_metrics(y[te], pred)


def run_train_mean(store: GraphStore) -> dict:
    """Predict the mean train level for every test sample."""
    y = store.labels().astype(np.float64)
    mean = float(y[store.split("train")].mean())
    te = store.split("test")
    return regression_metrics(y[te], np.full(te.size, mean))


def markdown_table(results: dict[str, dict]) -> str:
    """One Markdown table of ACC/MSE/MAE per model."""
    lines = ["| model | n | ACC | MSE | MAE |", "|---|---|---|---|---|"]
    lines += [f"| {m} | {r['n']} | {r['acc']:.4f} | {r['mse']:.4f} | {r['mae']:.4f} |" for m, r in results.items()]
    return "\n".join(lines) + "\n"


def run_baselines(out_dir: str | Path, store_path: str | Path, cfg: PretrainConfig, *,
                  models: tuple[str, ...] = ALL_MODELS, progress: bool = True) -> dict[str, dict]:
    """Train/evaluate every model; write OUT/baselines.{json,md}; return {model: test metrics}."""
    from dataclasses import replace

    from .train_gnn import run_pretrain

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    store = GraphStore.open(store_path)
    results: dict[str, dict] = {}
    for m in models:
        if m in GRAPH_MODELS:
            res = run_pretrain(out_dir / m, store_path, replace(cfg, model=m), progress=progress)
            results[m] = res["test"]
        elif m == "lightgbm":
            results[m] = run_lightgbm(store, cfg.seed)
        elif m == "train_mean":
            results[m] = run_train_mean(store)
        else:
            raise ValueError(f"unknown baseline {m!r}")
    for suffix, text in ((".json", json.dumps(results, indent=2)), (".md", markdown_table(results))):
        write_text(out_dir / f"baselines{suffix}", text)
    return results
