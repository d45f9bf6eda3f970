"""Prediction quality: time features that resolve the observation age, per-sample features, input scaling
from train only, and a default graph model that extracts a signal only the graph holds."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from graphstore.build import build_store
from graphstore.featurize.encoders import time_encoding
from graphstore.schema import DAY
from graphstore.store import GraphStore
from tests.xsvideo_fixtures import make_records, write_xsvideo

POST = 1_733_000_000  # 2024-11-30


def _probe_r2(scheme: str, seed: int = 0) -> float:
    """Held-out R^2 of a linear probe that reads the observation age off [enc(post), enc(current)]."""
    rng = np.random.default_rng(seed)
    n = 600
    post = POST + rng.uniform(0, 20 * DAY, n)
    age = rng.uniform(1, 13, n)  # days
    feats = np.concatenate([time_encoding(post, scheme=scheme), time_encoding(post + age * DAY, scheme=scheme)], 1)
    x = np.concatenate([feats, np.ones((n, 1))], 1)
    tr, te = slice(0, 400), slice(400, n)
    w, *_ = np.linalg.lstsq(x[tr], age[tr], rcond=1e-8)
    resid = age[te] - x[te] @ w
    return 1 - resid.var() / age[te].var()


def test_default_time_features_tell_1_from_12_days_after_posting():
    assert _probe_r2("multiscale") > 0.99
    assert _probe_r2("paper") < 0.5  # its longest period is ~16.8 h: only the time of day survives


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("quality")
    src = write_xsvideo(tmp / "xs.json", make_records(60, seed=2))
    return build_store(src, tmp / "store", progress=False, cutoff="2024-11-20", val_days=6)


def test_video_features_hold_age_history_and_degrees(store):
    s = GraphStore.open(store)
    info = s.meta["features"]["video"]
    assert s.meta["time_encoding"] == "multiscale"
    lo, hi = info["parts"]["sample"]
    x = s.features("video").gather(np.arange(s.num_nodes("video")), dtype=np.float32)[:, lo:hi]
    col = {c: x[:, i] for i, c in enumerate(info["sample_columns"])}
    age = (s.column("ctime").astype(float) - s.column("post_time").astype(float)) / DAY
    np.testing.assert_allclose(col["age_days"], np.maximum(age, 0), rtol=2e-3, atol=2e-2)
    hist = s.topology.relations["is_history_of"]
    has = np.diff(np.asarray(hist.indptr)) > 0
    np.testing.assert_array_equal(col["has_history"] > 0.5, has)
    ctime = s.column("ctime").astype(float)
    for v in np.flatnonzero(has)[:20]:
        prev = max(ctime[u] for u in s.in_neighbors("is_history_of", v))
        assert col["days_since_history"][v] == pytest.approx((ctime[v] - prev) / DAY, rel=2e-3, abs=2e-2)
    deg = np.log1p(s.topology.relations["has_same_author_as"].in_degrees(s.num_nodes("video")))
    np.testing.assert_allclose(col["log_degree_has_same_author_as"], deg, rtol=2e-3)


def test_featurize_reencodes_time_with_the_paper_encoding(store, tmp_path):
    import shutil

    from graphstore.featurize import featurize_store

    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    meta = featurize_store(copy, time_encoding="paper", progress=False)
    s = GraphStore.open(copy)
    assert s.meta["time_encoding"] == "paper" and meta["time"]["dim"] == 512 and meta["ctime"]["dim"] == 512
    np.testing.assert_allclose(s.features("time").gather(np.arange(3), dtype=np.float32),
                               time_encoding(s.column("post_time")[:3], scheme="paper"), atol=2e-3)


def test_input_statistics_come_from_train_only(store, monkeypatch):
    from graphstore.features.array import FeatureArray
    from netgpt.models.inputs import rows_of_videos, train_statistics

    s = GraphStore.open(store)
    train = s.split("train")
    seen: list[np.ndarray] = []
    original = FeatureArray.gather

    def spy(self, ids, *a, **kw):
        seen.append(np.asarray(ids))
        return original(self, ids, *a, **kw)

    monkeypatch.setattr(FeatureArray, "gather", spy)
    types = ["video", "likes", "comment", "title"]
    stats = train_statistics(s, types, train)
    assert set(stats) == set(types)
    allowed = {t: set(rows_of_videos(s, t, train).tolist()) for t in types}
    others = np.setdiff1d(np.arange(s.num_nodes("video")), train)
    assert len(seen) == len(types)
    for t, ids in zip(types, seen):
        assert set(ids.tolist()) <= allowed[t], t
    # and the statistics are those of the train rows: val/test rows would change them
    x = original(s.features("video"), train, dtype=np.float32)
    np.testing.assert_allclose(stats["video"][0], x.mean(0), rtol=1e-5, atol=1e-5)
    x_all = original(s.features("video"), np.concatenate([train, others]), dtype=np.float32)
    assert not np.allclose(stats["video"][0], x_all.mean(0), atol=1e-4)


def test_scaling_is_saved_with_the_run_and_reused(store, tmp_path):
    from netgpt.config import preset
    from netgpt.embed import load_best
    from netgpt.train_gnn import run_pretrain

    cfg = preset("default", d_g=8, fanouts=[2, 2], batch_size=16, epochs=1, max_steps=1, max_eval_batches=1)
    run_pretrain(tmp_path / "r", store, cfg, progress=False)
    model, _, _ = load_best(tmp_path / "r", GraphStore.open(store))
    mean = model.inputs.mean_video
    assert mean.abs().sum() > 0 and (model.inputs.std_video > 0).all()
    ck = torch.load(tmp_path / "r" / "pretrain" / "best.pt", weights_only=False)
    torch.testing.assert_close(ck["model"]["inputs.mean_video"], mean)


# --- a signal that only the graph holds -------------------------------------------------------------------
def _author_signal_records(seed: int = 0) -> dict[str, dict]:
    """Level = the author's latent reach; a sample's own likes show it through heavy noise, and the
    author's other samples (same-author edges) show it through many independent draws."""
    rng = np.random.default_rng(seed)
    recs = make_records(260, seed=seed)
    authors = {f"u{a}": a for a in range(10)}
    by_video: dict[str, str] = {}
    for r in recs.values():
        author = by_video.setdefault(r["url"], f"u{int(rng.integers(0, 10))}")
        a = authors[author]
        r.update(author_id=author, level=a, likes=int(np.exp(3 + 0.5 * a + rng.normal(0, 2.0))), fans=None,
                 views=None, shares=0, collects=0, comments=[], comment_count=0, title="t", description="d")
    return recs


def test_default_model_extracts_a_signal_only_the_graph_holds(tmp_path):
    from netgpt.config import preset
    from netgpt.train_gnn import run_pretrain

    src = write_xsvideo(tmp_path / "xs.json", _author_signal_records())
    path = build_store(src, tmp_path / "store", progress=False, cutoff="2024-11-20", val_days=6)
    base = dict(d_g=32, fanouts=[10, 5], batch_size=32, epochs=25, patience=25, lr=3e-3, eval_batch_size=256)
    with_graph = run_pretrain(tmp_path / "g", path, preset("default", **base), progress=False)
    without = run_pretrain(tmp_path / "n", path, preset("default", no_video_video=True, **base), progress=False)
    assert with_graph["test"]["mae"] < 0.8 * without["test"]["mae"], (with_graph["test"], without["test"])
    metrics = [json.loads(x) for x in (tmp_path / "g" / "pretrain" / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["train_loss"] < metrics[0]["train_loss"]


# --- known train levels as inputs (netgpt.models.labels) ----------------------------------------------------
def test_bucket_level_stats_match_brute_force(store):
    from netgpt.models.labels import BUCKET_RELATIONS, MAX_LEVEL, KnownLabels

    s = GraphStore.open(store)
    k = KnownLabels.of_store(s)
    for j, rel in enumerate(BUCKET_RELATIONS):
        for v in range(0, s.num_nodes("video"), 7):
            nb = s.in_neighbors(rel, v)
            nb = nb[~np.isnan(k.level[nb]) & (k.video[nb] != k.video[v])]
            mean = k.level[nb].mean() / MAX_LEVEL if nb.size else 0.0
            np.testing.assert_allclose(k.bucket_stats[v, 2 * j:2 * j + 2], [mean, np.log1p(nb.size)], rtol=1e-5, atol=1e-6)


def test_known_labels_show_only_train_levels_of_other_videos(store):
    from netgpt.models.labels import KnownLabels

    s = GraphStore.open(store)
    k = KnownLabels.of_store(s)
    y = s.labels()
    train = s.split("train")
    assert np.isnan(np.delete(k.level, train)).all()  # val, test and final states: never read
    np.testing.assert_array_equal(k.level[train], y[train])
    # a video's states share one id, and states of different videos do not
    hist = s.topology.relations["is_history_of"]
    v = int(np.flatnonzero(np.diff(np.asarray(hist.indptr)) > 0)[0])
    assert (k.video[s.in_neighbors("is_history_of", v)] == k.video[v]).all()
    seeds = train[:5]
    others = np.setdiff1d(train, np.flatnonzero(np.isin(k.video, k.video[seeds])))[:20]
    n_id = np.concatenate([seeds, np.flatnonzero(np.isin(k.video, k.video[seeds])), others, s.split("test")[:5]])
    cols = k.columns(n_id, len(seeds))
    same_video = np.isin(k.video[n_id], k.video[seeds])
    assert not cols[same_video, 1].any() and not cols[same_video, 0].any()
    assert cols[len(seeds) + same_video[len(seeds):].sum():][:len(others), 1].all()
    assert not cols[-5:, 1].any()
    dropped = k.columns(n_id, len(seeds), drop=0.5, rng=np.random.default_rng(0))
    assert dropped[:, 1].sum() < cols[:, 1].sum() and (dropped[:, 1] <= cols[:, 1]).all()


def test_a_seed_never_reads_its_own_level(store):
    """A train seed's prediction does not move when its own video's level changes (whatever the other
    seeds of its batch are), and predictions do move when other train videos' levels change."""
    from netgpt.config import preset
    from netgpt.data import batch_inputs, iter_batches
    from netgpt.models.labels import KnownLabels
    from netgpt.train_gnn import model_for_store

    s = GraphStore.open(store)
    cfg = preset("default", d_g=16, fanouts=[5, 5], label_inputs=True)
    model = model_for_store(cfg, s).eval()
    k = KnownLabels.of_store(s)
    seeds = s.split("train")[:24]

    def predict(labels: KnownLabels) -> np.ndarray:
        batch = next(iter_batches(s, seeds, cfg, batch_size=len(seeds), seed=3))
        x, ei, bs, _, _ = batch_inputs(batch, torch.device("cpu"), labels)
        with torch.no_grad():
            return model(x, ei, bs)[1].numpy()

    base = predict(k)
    flipped = np.where(np.isnan(k.level), np.nan, 9.0 - k.level)
    for i in range(0, len(seeds), 6):
        own = k.video == k.video[seeds[i]]
        own_changed = KnownLabels.from_levels(s, np.where(own, flipped, k.level), k.video)
        assert not np.array_equal(own_changed.level, k.level, equal_nan=True)
        assert predict(own_changed)[i] == base[i]
    others = ~np.isin(k.video, k.video[seeds])
    assert not np.allclose(predict(KnownLabels.from_levels(s, np.where(others, flipped, k.level), k.video)), base)


def test_neighbour_ceiling_averages_each_earlier_video_once_without_its_own(store):
    import importlib.util

    from netgpt.models.labels import BUCKET_RELATIONS, video_components

    spec = importlib.util.spec_from_file_location("quality_bench", Path(__file__).parents[1] / "bench" / "quality.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    s = GraphStore.open(store)
    video = video_components(s)
    per_video = np.random.default_rng(0).normal(size=video.max() + 1)
    values = per_video[video]
    for rel in BUCKET_RELATIONS:
        mean, count = bench.neighbour_video_means(s, rel, values)
        for v in range(s.num_nodes("video")):
            others = np.unique(video[s.in_neighbors(rel, v)])
            others = others[others != video[v]]
            assert count[v] == others.size
            if others.size:
                np.testing.assert_allclose(mean[v], per_video[others].mean(), rtol=1e-9)
            else:
                assert np.isnan(mean[v])
