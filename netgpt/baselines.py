"""`netgpt baselines`: the graph models (default SAGE, the paper's RGCN, GCN, HAN, HGT) on the same loader,
head and loss; LightGBM on the sample's own features, with its author's history, and with the graph's
exact neighbourhood aggregates (graph + tabular: `lightgbm_graph`); predict-the-train-mean. Over several
seeds: mean and std per model in one Markdown table on the test split.

`lightgbm_graph` reads, per sample, the exact means of its same-author and same-topic in-neighbours'
features and the mean and count of the train levels among them, leaving out its own video
(netgpt.models.labels). It does not read the stage-1 embedding: trees fitted on train rows whose
embedding was itself fitted to those rows' labels trust it more than it deserves on new videos
(measured in bench/README.md: val ACC 0.755 with it against 0.771 without)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from graphstore.atomic import write_text
from graphstore.schema import COUNT_FIELDS, DAY
from graphstore.store import GraphStore

from .config import PretrainConfig
from .metrics import regression_metrics

GRAPH_MODELS = ("sage", "rgcn", "gcn", "han", "hgt")
TABULAR_MODELS = ("lightgbm_own", "lightgbm", "lightgbm_graph", "train_mean")
ALL_MODELS = (*GRAPH_MODELS, *TABULAR_MODELS)
DEFAULT_MODELS = ("sage", "rgcn", "lightgbm_own", "lightgbm", "lightgbm_graph", "train_mean")
# The sample's own features (what a model that sees no graph knows).
OWN_FEATURES = ("fans", "likes", "views", "shares", "collects", "comment_count", "age_days", "platform", "duration")


def tabular_features(store: GraphStore) -> tuple[np.ndarray, list[str]]:
    """Per-video features: log counts, observation age, growth since the latest history state,
    platform, duration, and the author's earlier samples (count, mean log views/likes)."""
    n = store.num_nodes("video")
    cols = {c: np.log1p(store.column(c).astype(np.float64)) for c in COUNT_FIELDS}
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


def fit_lightgbm(x: np.ndarray, names: list[str], store: GraphStore, seed: int = 0,
                 num_rounds: int = 1000) -> np.ndarray:
    """Gradient-boosted trees (Huber objective) trained on train, stopped on val; predictions for every row."""
    import lightgbm as lgb

    y = store.labels().astype(np.float64)
    tr, va = store.split("train"), store.split("val")
    params = {"objective": "huber", "alpha": 1.0, "learning_rate": 0.05, "num_leaves": 31, "min_data_in_leaf": 20,
              "feature_fraction": 0.8, "bagging_fraction": 0.8, "bagging_freq": 1,
              "seed": seed, "deterministic": True, "num_threads": 2, "verbose": -1}
    cat = ["platform"] if "platform" in names else []
    dtrain = lgb.Dataset(x[tr], y[tr], feature_name=names, categorical_feature=cat)
    valid = [lgb.Dataset(x[va], y[va], reference=dtrain)] if va.size else []
    callbacks = [lgb.early_stopping(50, verbose=False)] if va.size else []
    booster = lgb.train(params, dtrain, num_boost_round=num_rounds, valid_sets=valid, callbacks=callbacks)
    return np.clip(booster.predict(x, num_iteration=booster.best_iteration or None), 0, 9)


def tabular_metrics(x: np.ndarray, names: list[str], store: GraphStore, seed: int = 0) -> dict:
    """Test metrics of LightGBM on the given feature matrix."""
    pred = fit_lightgbm(x, names, store, seed)
    te = store.split("test")
    return regression_metrics(store.labels()[te].astype(np.float64), pred[te])


def run_lightgbm(store: GraphStore, seed: int = 0, own_only: bool = False,
                 extra: tuple[np.ndarray, list[str]] | None = None) -> dict:
    """LightGBM on the tabular features (own only, or with the author's history), plus `extra` named
    columns (lightgbm_graph: the neighbourhood aggregates; the quality bench's upper bound: the
    generator's latents)."""
    x, names = tabular_features(store)
    if own_only:
        keep = [names.index(c) for c in OWN_FEATURES]
        x, names = x[:, keep], [names[i] for i in keep]
    if extra is not None:
        x = np.concatenate([x, extra[0].astype(np.float32)], axis=1)
        names = names + list(extra[1])
    return tabular_metrics(x, names, store, seed)


def bucket_mean_features(store: GraphStore) -> tuple[np.ndarray, list[str]]:
    """The exact means over each sample's same-author and same-topic in-neighbours (graphstore.featurize.per_sample)."""
    from graphstore.featurize.per_sample import bucket_mean_names, sample_feature_names, sample_features

    names, wanted = sample_feature_names(), bucket_mean_names()
    return sample_features(store)[:, [names.index(c) for c in wanted]].astype(np.float32), wanted


def graph_features(store: GraphStore) -> tuple[np.ndarray, list[str]]:
    """lightgbm_graph's extra columns: the exact neighbourhood feature means and train-level statistics."""
    from .models.labels import BUCKET_RELATIONS, KnownLabels

    means, names = bucket_mean_features(store)
    levels = KnownLabels.of_store(store).bucket_stats
    level_names = [f"{r}_{c}" for r in BUCKET_RELATIONS for c in ("level_mean", "log_level_count")]
    return np.concatenate([means, levels], axis=1), names + level_names


def run_train_mean(store: GraphStore) -> dict:
    """Predict the mean train level for every test sample."""
    y = store.labels().astype(np.float64)
    mean = float(y[store.split("train")].mean())
    te = store.split("test")
    return regression_metrics(y[te], np.full(te.size, mean))


def markdown_table(results: dict[str, dict]) -> str:
    """One Markdown table of ACC/MSE/MAE per model (mean ± std when there are several seeds)."""
    many = any("acc_std" in r for r in results.values())
    lines = ["| model | seeds | n | ACC | MSE | MAE |", "|---|---|---|---|---|---|"]
    for m, r in results.items():
        cell = (lambda k: f"{r[k]:.4f} ± {r[k + '_std']:.4f}") if many else (lambda k: f"{r[k]:.4f}")
        lines.append(f"| {m} | {r.get('seeds', 1)} | {r['n']} | {cell('acc')} | {cell('mse')} | {cell('mae')} |")
    return "\n".join(lines) + "\n"


def summarise(per_seed: list[dict]) -> dict:
    """Mean and (population) std over seeds of acc/mse/mae."""
    out = {"n": per_seed[0]["n"], "seeds": len(per_seed)}
    for k in ("acc", "mse", "mae"):
        v = np.array([r[k] for r in per_seed], dtype=np.float64)
        out[k], out[f"{k}_std"] = float(v.mean()), float(v.std())
    return out


def run_baselines(out_dir: str | Path, store_path: str | Path, cfg: PretrainConfig, *,
                  models: tuple[str, ...] = DEFAULT_MODELS, seeds: tuple[int, ...] = (0,),
                  progress: bool = True) -> dict[str, dict]:
    """Train/evaluate every model for every seed; write OUT/baselines.{json,md}; return {model: summary}.

    Graph models use their own preset (sage: `default`, rgcn: `cpu` unless the given config is an rgcn
    one) with cfg's budget overrides."""
    from .train_gnn import run_pretrain

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    store = GraphStore.open(store_path)
    per_model: dict[str, list[dict]] = {m: [] for m in models}
    for seed in seeds:
        for m in models:
            run_dir = out_dir / f"{m}_seed{seed}"
            if m in GRAPH_MODELS:
                res = run_pretrain(run_dir, store_path, graph_config(cfg, m, seed), progress=progress)
                per_model[m].append(res["test"])
            elif m == "lightgbm_graph":
                per_model[m].append(run_lightgbm(store, seed, extra=graph_features(store)))
            elif m in ("lightgbm", "lightgbm_own"):
                per_model[m].append(run_lightgbm(store, seed, own_only=m == "lightgbm_own"))
            elif m == "train_mean":
                per_model[m].append(run_train_mean(store))
            else:
                raise ValueError(f"unknown baseline {m!r}")
    results = {m: summarise(r) if len(seeds) > 1 else r[0] for m, r in per_model.items()}
    raw = {"seeds": list(seeds), "summary": results, "per_seed": per_model}
    for suffix, text in ((".json", json.dumps(raw, indent=2)), (".md", markdown_table(results))):
        write_text(out_dir / f"baselines{suffix}", text)
    return results


# The preset each graph model is trained with when the given config is another model's.
PRESET_OF = {"sage": "default", "rgcn": "cpu", "gcn": "cpu", "han": "cpu", "hgt": "cpu"}


def graph_config(cfg: PretrainConfig, model: str, seed: int) -> PretrainConfig:
    """The config of graph model `model` at `seed`: cfg itself for its own model, else the model's
    preset with cfg's budget caps and ablation switches."""
    from dataclasses import replace

    from .config import preset

    if cfg.model == model:
        return replace(cfg, seed=seed)
    keep = ("max_steps", "max_eval_batches", "num_workers", "feature_cache_mb", "feature_cache", "no_video_features",
            "no_video_video", "no_interaction", "no_comments")
    return preset(PRESET_OF[model], model=model, seed=seed, **{k: getattr(cfg, k) for k in keep})
