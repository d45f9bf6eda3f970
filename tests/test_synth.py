"""Synthetic XS-Video: format, calibration, the generative story's properties, determinism."""
from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from datetime import datetime

import numpy as np
import pytest

from graphstore.build import build_store
from graphstore.cli import main as cli_main
from graphstore.schema import PLATFORMS, XSVIDEO_KEYS
from graphstore.store import GraphStore
from graphstore.synth import (
    FULL, expected_counts, latents_path, qwen_like_tokens, same_topic_target, summary_dict, synthesize, topic_ranks,
    topics_at,
)


@pytest.fixture(scope="module")
def synth_store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("synth")
    summary = synthesize(tmp / "xs.json", scale=0.01, seed=3, progress=False)
    store = GraphStore.open(build_store(tmp / "xs.json", tmp / "store", featurize=False, progress=False))
    return summary, store, json.loads((tmp / "xs.json").read_text())


def test_format_is_the_released_one(synth_store):
    _, _, data = synth_store
    sid, rec = next(iter(data.items()))
    assert sid.isdigit() and set(rec) == set(XSVIDEO_KEYS)
    for r in data.values():
        assert r["平台"] in PLATFORMS and 0 <= r["影响力等级"] <= 9 and isinstance(r["最终状态"], bool)
        for c in r["评论"].values():
            assert set(c) == {"评论内容", "评论时间"}


def test_store_counts_equal_the_generators(synth_store):
    summary, store, _ = synth_store
    assert store.num_nodes("video") == summary.samples
    assert store.num_nodes("comment") == summary.comments
    assert store.num_nodes("topic") == summary.topics
    assert store.num_edges("has_same_topic_as") == summary.same_topic
    assert store.num_edges("has_same_author_as") == summary.same_author
    assert store.num_edges("is_history_of") == summary.history


def test_calibration_at_scale_0_1(tmp_path):
    d = summary_dict(synthesize(tmp_path / "x.json", scale=0.1, seed=5, progress=False))
    for key, err in d["rel_err_vs_published"].items():
        assert abs(err) < 0.02, (key, err)
    assert abs(d["train_by_post_date"] / (FULL["train"] * 0.1) - 1) < 0.02
    assert abs(d["test_by_post_date"] / (FULL["test"] * 0.1) - 1) < 0.02


def test_marginals_follow_the_published_statistics(synth_store):
    summary, _, data = synth_store
    levels = np.bincount([r["影响力等级"] for r in data.values()], minlength=10)
    assert levels.argmax() == 3
    assert all(np.diff(levels[3:]) <= 0) and all(np.diff(levels[:4]) >= 0), levels  # unimodal
    videos = {r["url"]: r for r in data.values()}
    shares = Counter(r["平台"] for r in videos.values())
    assert shares["抖音"] > len(videos) / 2 and min(shares, key=shares.get) == "哔哩哔哩"
    dur = np.array([r["视频时长（秒）"] for r in videos.values()])
    assert dur.min() >= 1 and dur.max() <= 300
    assert 4 <= np.bincount(dur.astype(int)).argmax() <= 10
    ctimes = [r["当前时间"][:10] for r in data.values()]
    assert min(ctimes) >= "2024-11-25" and max(ctimes) <= "2025-01-02"
    topic_sizes = sorted(Counter(r["话题"] for r in data.values()).values(), reverse=True)
    assert sum(topic_sizes[:20]) > 0.4 * sum(topic_sizes)  # long-tailed popularity


def _day(s: str) -> datetime:
    return datetime.fromisoformat(s[:10])


def test_crawl_rules(synth_store):
    _, _, data = synth_store
    for r in data.values():
        cur = _day(r["当前时间"])
        prev = [_day(data[h]["当前时间"]) for h in r["历史状态"]]
        assert all((cur - p).days >= 2 for p in prev)
        assert all(data[h]["url"] == r["url"] for h in r["历史状态"])
        if r["最终状态"]:
            assert (cur - _day(r["发布时间"])).days >= 14


def test_early_states_informative_not_decisive(synth_store):
    _, _, data = synth_store
    early = [r for r in data.values() if not r["最终状态"]]
    likes = np.log1p([r["当前点赞量"] or 0 for r in early])
    level = np.array([r["影响力等级"] for r in early])
    corr = np.corrcoef(likes, level)[0, 1]
    assert 0.4 < corr < 0.95, corr
    # Even the best monotone map from early likes to a level misses many samples.
    best = sum(np.bincount(level[np.digitize(likes, b) == i]).max()
               for b in [np.quantile(likes, np.linspace(0, 1, 31))] for i in np.unique(np.digitize(likes, b)))
    assert best / len(early) < 0.9


def test_deterministic_per_seed(tmp_path):
    def digest(path):
        return hashlib.sha256(path.read_bytes()).hexdigest()
    synthesize(tmp_path / "a.json", scale=0.003, seed=1, progress=False)
    synthesize(tmp_path / "b.json", scale=0.003, seed=1, progress=False)
    synthesize(tmp_path / "c.json", scale=0.003, seed=2, progress=False)
    assert digest(tmp_path / "a.json") == digest(tmp_path / "b.json") != digest(tmp_path / "c.json")


def test_streamed_writer_keeps_the_files_of_the_whole_array_writer(tmp_path):
    """Below scale 1 the streamed generator writes the bytes the earlier one did (digest taken from that one):
    stores, results and bench figures made before it stay reproducible."""
    synthesize(tmp_path / "a.json", scale=0.002, seed=5, progress=False)
    assert hashlib.sha256((tmp_path / "a.json").read_bytes()).hexdigest() == \
        "1a672d93d6082ec424f8e1994ec2659cb6b39fa6f1debbaf029d33f92abe8b41"


def test_jsonl_and_cli(tmp_path, capsys):
    assert cli_main(["synth", "--scale", "0.003", "--seed", "1", "--out", str(tmp_path / "a.jsonl"),
                     "--format", "jsonl", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    lines = (tmp_path / "a.jsonl").read_text().splitlines()
    assert len(lines) == summary["samples"] and "level" in json.loads(lines[0])
    synthesize(tmp_path / "a.json", scale=0.003, seed=1, progress=False)
    a = GraphStore.open(build_store(tmp_path / "a.jsonl", tmp_path / "sa", featurize=False, progress=False))
    b = GraphStore.open(build_store(tmp_path / "a.json", tmp_path / "sb", featurize=False, progress=False))
    assert a.num_edges("has_same_topic_as") == b.num_edges("has_same_topic_as")
    assert np.array_equal(a.labels(), b.labels())
    assert cli_main(["synth", "--scale", "0", "--out", str(tmp_path / "z.json")]) == 2
    assert not (tmp_path / "z.json").exists()


def test_text_lengths_follow_the_released_file(synth_store):
    """File size extrapolates to the released 702 MB; a sample's JSON is mostly 200-500 tokens, a few thousands."""
    summary, _, data = synth_store
    full_mb = os.path.getsize(summary.path) / summary.samples * FULL["samples"] / 1e6
    assert 600 < full_mb < 800, full_mb
    tokens = np.array([qwen_like_tokens(json.dumps(r, ensure_ascii=False)) for r in data.values()])
    assert 250 <= np.median(tokens) <= 450, np.median(tokens)
    assert ((tokens >= 200) & (tokens <= 500)).mean() > 0.65
    assert 0.01 < (tokens >= 1000).mean() < 0.15 and tokens.max() >= 3000
    comments = np.array([len(r["评论"]) for r in data.values()])
    assert (comments[tokens >= 2000] >= 20).mean() > 0.5  # the longest samples are mostly the much-commented ones


def test_qwen_like_token_estimate():
    assert qwen_like_tokens("2024-12-01") == 8 + 2  # one token a digit, one a punctuation run of 1-2 marks
    assert qwen_like_tokens("短视频传播") == 4  # 5 CJK characters at 1.5 a token
    assert qwen_like_tokens('{"title": "hello"}') == 4 + 2 + 2  # '{"', '":', '"', '"}'; 5 letters are 2 tokens


# --- growth with scale (issue 14) -------------------------------------------------------------------------
def test_growth_rule_functions():
    assert [topics_at(s) for s in (0.01, 0.5, 1.0, 1.0001, 2.0, 10.0)] == [535, 535, 535, 535, 1070, 5350]
    assert np.array_equal(topic_ranks(535), np.arange(535))
    assert np.array_equal(np.bincount(topic_ranks(1070)), np.full(535, 2))  # every published rank shared by 2 topics
    ns = 381_926
    assert same_topic_target(ns, 535) == FULL["same_topic"]  # scale <= 1: the published (quadratic) rule unchanged
    assert same_topic_target(10 * ns, 5350) == pytest.approx(10 * FULL["same_topic"])  # linear beyond
    e = expected_counts(10.0)
    assert e["same_topic"] == pytest.approx(16.56e9, rel=1e-3) and e["same_author"] == pytest.approx(53.7e6, rel=1e-3)
    assert expected_counts(0.5)["same_topic"] == FULL["same_topic"] * 0.25


@pytest.fixture
def mini_published(monkeypatch):
    """The published counts scaled down 50x (topics kept), so that 'scale 2' of this world is a small file."""
    f = 0.02
    for key in ("videos", "samples", "comments", "history", "same_author", "train", "test"):
        monkeypatch.setitem(FULL, key, round(FULL[key] * f))
    monkeypatch.setitem(FULL, "same_topic", round(FULL["same_topic"] * f * f))


def test_growth_rule_beyond_scale_1_end_to_end(tmp_path, mini_published):
    """Above scale 1 topics grow with scale, topic sizes stay, same-topic and same-author edges grow linearly."""
    one = summary_dict(synthesize(tmp_path / "one.json", scale=1.0, seed=0, progress=False))
    two = summary_dict(synthesize(tmp_path / "two.json", scale=2.0, seed=0, progress=False))
    assert one["topics"] <= 535 and two["topics"] > 1000  # 1,070 topics (a few tiny ones may get no video)
    for d in (one, two):
        for key, err in d["rel_err_vs_published"].items():
            assert abs(err) < 0.03, (d["scale"], key, err)
    assert 1.8 < two["same_topic"] / one["same_topic"] < 2.2  # linear, not 4x
    assert 1.8 < two["same_author"] / one["same_author"] < 2.2
    assert 0.9 < (two["samples"] / two["topics"]) / (one["samples"] / one["topics"]) < 1.1  # mean topic size kept


def test_writer_streams_in_blocks(tmp_path, monkeypatch):
    """Records are serialised a block at a time and the latents a block of rows at a time; the bytes do not
    depend on the block sizes (so memory does not depend on the text or the scale, only on the block)."""
    import pyarrow.parquet as pq

    import graphstore.synth.generator as synth

    synthesize(tmp_path / "a.json", scale=0.003, seed=1, progress=False)
    writes: list[int] = []

    class Recording:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            writes.append(len(data))
            return self.f.write(data)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(synth, "open", lambda path, mode: Recording(open(path, mode)), raising=False)
    monkeypatch.setattr(synth, "WRITE_RECORDS", 5)
    monkeypatch.setattr(synth, "LATENT_ROWS", 100)
    summary = synthesize(tmp_path / "b.json", scale=0.003, seed=1, progress=False)
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    a, b = pq.read_table(latents_path(tmp_path / "a.json")), pq.read_table(latents_path(tmp_path / "b.json"))
    assert a.equals(b) and pq.ParquetFile(latents_path(tmp_path / "b.json")).num_row_groups == -(-summary.samples // 100)
    record_writes = writes[1:-1]  # between the opening and the closing brace
    assert len(record_writes) == -(-summary.samples // 5)
    longest_record = max(len(line) for line in (tmp_path / "a.json").read_bytes().splitlines())
    assert max(record_writes) <= 5 * (longest_record + 1)
