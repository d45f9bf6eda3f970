"""NeighborSampler against the store's exact in_neighbors, a pure-Python reference, and itself."""
from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from itertools import combinations

import numpy as np
import pytest

from graphstore.build import build_store
from graphstore.cli import main as cli_main
from graphstore.errors import UserError
from graphstore.sampler import NeighborSampler, SampleOutput, SamplerError
from graphstore.sampler import cpp_backend
from tests.reference_sampler import reference_sample
from graphstore.store import GraphStore
from graphstore.topology import Relation, Topology
from tests.forking import run_in_fork
from tests.xsvideo_fixtures import brute_force_in_neighbors, head_keys, make_records, write_xsvideo

BACKENDS = ["numba"] + (["cpp"] if cpp_backend.available() else [])
KINDS = {"aligned": "is_platform_of", "aligned_identity": "is_title_of", "range": "is_comment_of",
         "csc": "is_history_of", "bucket_members": "has_same_author_as", "bucket_identity": "has_same_topic_as"}


@pytest.fixture(scope="session")
def records() -> dict[str, dict]:
    return make_records(120, seed=5)


@pytest.fixture(scope="session")
def store(tmp_path_factory, records) -> GraphStore:
    tmp = tmp_path_factory.mktemp("sampler")
    src = write_xsvideo(tmp / "xs.json", records)
    return GraphStore.open(build_store(src, tmp / "store", featurize=False, progress=False))


def _seeds(store: GraphStore, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.choice(store.num_nodes("video"), size=n, replace=False).astype(np.int64)


def _assert_same(a: SampleOutput, b: SampleOutput) -> None:
    assert list(a.node) == list(b.node)
    for t in a.node:
        np.testing.assert_array_equal(a.node[t], b.node[t], err_msg=t)
    assert list(a.row) == list(b.row)
    for et in a.row:
        np.testing.assert_array_equal(a.row[et], b.row[et], err_msg=str(et))
        np.testing.assert_array_equal(a.col[et], b.col[et], err_msg=str(et))
    assert a.num_sampled_nodes == b.num_sampled_nodes
    assert a.num_sampled_edges == b.num_sampled_edges


def _edges_by_tail(out: SampleOutput, relation: str) -> dict[int, list[int]]:
    """Global head ids grouped by global tail id for one relation."""
    et = next(et for et in out.row if et[1] == relation)
    groups: dict[int, list[int]] = defaultdict(list)
    for h, t in zip(out.global_row(et).tolist(), out.global_col(et).tolist()):
        groups[t].append(h)
    return groups


def _expanded(out: SampleOutput, num_hops: int) -> np.ndarray:
    """Global ids of the videos expanded (used as tails) over the hops."""
    n = sum(out.num_sampled_nodes["video"][:num_hops])
    return out.node["video"][:n]


# --- every kind: edges exist, no duplicates, count == min(fanout, in-degree) ---------------------
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("k", [1, 2, 3, 5, 40, -1])
def test_sampled_edges_exist_with_exact_counts(store, backend, k):
    topo = store.topology
    sampler = NeighborSampler(store, [k, k], backend=backend, seed=3)
    out = sampler.sample(_seeds(store, 30), batch=1)
    tails = _expanded(out, 2)
    assert len(tails) > 30  # the second hop expanded new videos
    for kind, rel in KINDS.items():
        groups = _edges_by_tail(out, rel)
        assert set(groups) <= set(tails.tolist()), kind
        sampled_any = False
        for v in tails.tolist():
            want = topo.in_neighbors(rel, v).tolist()
            got = groups.get(v, [])
            assert len(got) == len(set(got)), f"{kind}: duplicate heads of tail {v}"
            assert set(got) <= set(want), f"{kind}: tail {v} got heads that are not in-neighbours"
            assert len(got) == (len(want) if k < 0 else min(k, len(want))), f"{kind}: tail {v}"
            if len(want) <= k or k < 0:
                assert sorted(got) == sorted(want), f"{kind}: tail {v} must get all its in-neighbours"
            sampled_any |= 0 < len(got) < len(want)
        if k in (1, 2, 3) and kind.startswith("bucket"):
            assert sampled_any, f"{kind}: no tail had more in-neighbours than the fanout"


@pytest.mark.parametrize("backend", BACKENDS)
def test_with_replacement_draws_exactly_fanout_from_in_neighbors(store, backend):
    topo = store.topology
    out = NeighborSampler(store, [4, 3], replace=True, backend=backend, seed=2).sample(_seeds(store, 25))
    repeats = 0
    for kind, rel in KINDS.items():
        groups = _edges_by_tail(out, rel)
        for hop, tails in enumerate(np.split(_expanded(out, 2), [25])):
            k = (4, 3)[hop]
            for v in tails.tolist():
                want = set(topo.in_neighbors(rel, v).tolist())
                got = groups.get(v, [])
                assert len(got) == (k if want else 0), f"{kind}: tail {v}"
                assert set(got) <= want
                repeats += len(got) - len(set(got))
    assert repeats > 0  # with replacement, small in-degrees must repeat


def test_fanout_dict_skips_and_takes_all(store):
    fan = [{"has_same_topic_as": 2, "is_history_of": -1, "is_comment_of": 1}, {"has_same_author_as": 1}]
    out = NeighborSampler(store, fan, seed=0).sample(_seeds(store, 20))
    topo = store.topology
    for et, per_hop in out.num_sampled_edges.items():
        assert per_hop[0] == 0 if et[1] not in fan[0] else True
        assert per_hop[1] == 0 if et[1] not in fan[1] else True
    hist = _edges_by_tail(out, "is_history_of")
    for v in _expanded(out, 1).tolist():
        assert sorted(hist.get(v, [])) == topo.in_neighbors("is_history_of", v).tolist()
    assert out.num_sampled_edges[("video", "has_same_topic_as", "video")][0] > 0
    assert out.num_sampled_edges[("platform", "is_platform_of", "video")] == [0, 0]


# --- no leakage through time ------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_no_time_leakage_in_bucket_relations(store, backend):
    cday, topic, author = store.column("cday"), store.column("topic"), store.column("author")
    out = NeighborSampler(store, [10, 10], backend=backend, seed=7).sample(_seeds(store, 40), batch=3)
    for rel, key in (("has_same_topic_as", topic), ("has_same_author_as", author)):
        et = ("video", rel, "video")
        heads, tails = out.global_row(et), out.global_col(et)
        assert len(heads) > 0
        assert np.all(cday[heads] <= cday[tails]), f"{rel}: a neighbour is dated after its tail"
        assert np.all(key[heads] == key[tails]), f"{rel}: a neighbour is outside the tail's bucket"
        assert np.any(heads != tails)


# --- uniformity (fixed seeds: deterministic) ------------------------------------------------------
def _chi2_critical(df: int, z: float = 3.09) -> float:
    """Upper 0.1 % point of chi-square(df), Wilson-Hilferty approximation."""
    c = 2.0 / (9.0 * df)
    return df * (1.0 - c + z * math.sqrt(c)) ** 3


def _shared_neighbour_topology(n: int, d: int, seed: int = 0) -> tuple[Topology, list[int]]:
    """Every video has the same d in-neighbours in a bucket, a csc and a range relation."""
    rng = np.random.default_rng(seed)
    hist = np.sort(rng.choice(n, size=d, replace=False)).astype(np.int32)
    rels = {
        "has_same_topic_as": Relation("has_same_topic_as", "video", "bucket",
                                      lo=np.full(n, 5, np.int32), hi=np.full(n, 5 + d, np.int32)),
        "is_history_of": Relation("is_history_of", "video", "csc", indptr=np.arange(n + 1, dtype=np.int64) * d,
                                  indices=np.tile(hist, n)),
        "is_comment_of": Relation("is_comment_of", "comment", "range", indptr=np.arange(n + 1, dtype=np.int64) * d),
    }
    topo = Topology(num_nodes={"video": n, "comment": n * d}, relations=rels)
    return topo, hist.tolist()


@pytest.mark.parametrize("relation", ["has_same_topic_as", "is_history_of"])
@pytest.mark.parametrize("k,replace", [(4, False), (25, False), (6, True)])
def test_chi_square_uniformity(relation, k, replace):
    n, d, batches = 500, 40, 6
    topo, hist = _shared_neighbour_topology(n, d)
    cats = list(range(5, 5 + d)) if relation == "has_same_topic_as" else hist
    sampler = NeighborSampler(topo, [k], relations=[relation], replace=replace, seed=11, backend=BACKENDS[-1])
    counts = Counter()
    for b in range(batches):
        out = sampler.sample(np.arange(n), batch=b)
        counts.update(out.global_row(("video", relation, "video")).tolist())
    assert set(counts) == set(cats)
    draws = n * batches * k
    assert sum(counts.values()) == draws
    expected = draws / d
    stat = sum((counts[c] - expected) ** 2 / expected for c in cats)
    if not replace:  # k of d without replacement: per-category variance shrinks by (1 - k/d)
        stat /= 1.0 - k / d
    assert stat < _chi2_critical(d - 1), f"chi-square {stat:.1f} over {d - 1} df"
    assert stat > 0.2 * (d - 1)  # not suspiciously perfect either (e.g. a round-robin)


@pytest.mark.parametrize("k", [2, 3])  # 2 of 5: Floyd; 3 of 5: selection sampling
def test_every_subset_equally_likely(k):
    n, d = 1000, 5
    topo, _ = _shared_neighbour_topology(n, d)
    sampler = NeighborSampler(topo, [k], relations=["is_comment_of"], seed=5, backend=BACKENDS[-1])
    out = sampler.sample(np.arange(n), batch=0)
    groups = _edges_by_tail(out, "is_comment_of")
    subsets = Counter(tuple(sorted(o % d for o in heads)) for heads in groups.values())
    all_subsets = list(combinations(range(d), k))
    assert set(subsets) == set(all_subsets)
    expected = n / len(all_subsets)
    stat = sum((subsets[s] - expected) ** 2 / expected for s in all_subsets)
    assert stat < _chi2_critical(len(all_subsets) - 1)


# --- backends and threads agree -------------------------------------------------------------------
@pytest.mark.parametrize("fanouts,replace", [
    ([3, 2], False), ([5, 4], True), ([{"has_same_topic_as": -1, "is_history_of": 2, "is_platform_of": 1}, 3], False),
])
def test_backends_match_reference(store, fanouts, replace):
    seeds = _seeds(store, 24, seed=9)
    want = reference_sample(store, fanouts, seeds, replace=replace, seed=4, batch=2)
    for backend in BACKENDS:
        got = NeighborSampler(store, fanouts, replace=replace, seed=4, backend=backend).sample(seeds, batch=2)
        assert got.backend == backend
        _assert_same(got, want)


@pytest.mark.parametrize("k", [3, 30])
def test_backends_match_reference_on_large_degrees(k):
    topo, _ = _shared_neighbour_topology(60, 45, seed=2)
    seeds = np.arange(0, 60, 4)
    want = reference_sample(topo, [k, 2], seeds, seed=8, batch=1)
    for backend in BACKENDS:
        _assert_same(NeighborSampler(topo, [k, 2], seed=8, backend=backend).sample(seeds, batch=1), want)


def _parallel_min_draws(backend: str) -> int:
    """The draw count from which a backend's fill pass runs threaded (read from the code, not restated)."""
    if backend == "cpp":
        from graphstore import _sampler_cpp

        return int(_sampler_cpp.parallel_min_draws)
    from graphstore.sampler.numba_backend import PARALLEL_MIN_DRAWS

    return PARALLEL_MIN_DRAWS


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_and_two_threads_identical(store, backend, monkeypatch):
    from graphstore.sampler import numba_backend

    nv = store.num_nodes("video")
    k = _parallel_min_draws(backend) // nv + 1  # with replacement every video draws k: above the threshold
    seeds = np.arange(nv)
    one = NeighborSampler(store, [k, 0], replace=True, seed=3, backend=backend, num_threads=1)
    two = NeighborSampler(store, [k, 0], replace=True, seed=3, backend=backend, num_threads=2)
    assert two.num_threads == 2  # tests/conftest.py gives Numba two threads even on one core
    threaded = []
    real_fill = numba_backend._fill_parallel
    monkeypatch.setattr(numba_backend, "_fill_parallel", lambda *a: threaded.append(1) or real_fill(*a))
    want = one.sample(seeds, batch=4)
    assert not threaded
    got = two.sample(seeds, batch=4)
    draws = want.num_sampled_edges[("platform", "is_platform_of", "video")][0]
    assert draws == nv * k >= _parallel_min_draws(backend)
    if backend == "numba":
        assert len(threaded) >= len(store.relations) - 2  # every relation but the sparse history/comment ones
    _assert_same(got, want)


@pytest.mark.parametrize("k", [20, 40])  # 20 of 60: Floyd; 40 of 60: selection sampling
def test_parallel_path_matches_serial_and_reference(k):
    from graphstore.sampler.numba_backend import PARALLEL_MIN_DRAWS

    n = 3500
    topo, _ = _shared_neighbour_topology(n, 60, seed=4)
    assert n * k >= PARALLEL_MIN_DRAWS  # the threaded fill pass really runs
    seeds = np.arange(n)
    want = reference_sample(topo, [k], seeds, seed=6, batch=9, relations=["has_same_topic_as", "is_comment_of"])
    for backend in BACKENDS:
        for threads in (1, 2):
            got = NeighborSampler(topo, [k], seed=6, backend=backend, num_threads=threads,
                                  relations=["has_same_topic_as", "is_comment_of"]).sample(seeds, batch=9)
            _assert_same(got, want)


@pytest.mark.parametrize("backend", BACKENDS)
def test_forked_child_samples_after_parent_ran_threads(backend):
    """OpenMP/Numba thread pools do not survive fork(); a forked child (a DataLoader worker) must not hang."""
    n, k = 3500, 20
    topo, _ = _shared_neighbour_topology(n, 60, seed=4)
    sampler = NeighborSampler(topo, [k], seed=6, backend=backend, num_threads=2,
                              relations=["has_same_topic_as", "is_comment_of"])
    seeds = np.arange(n)
    want = sampler.sample(seeds, batch=9)  # the parent's threaded fill pass starts the pool
    _assert_same(run_in_fork(sampler.sample, seeds, 9), want)


def test_seed_and_batch_key_the_sample(store):
    seeds = _seeds(store, 40)
    sampler = NeighborSampler(store, [3, 3], seed=0)
    a, again = sampler.sample(seeds, batch=0), sampler.sample(seeds, batch=0)
    _assert_same(a, again)
    other_batch = sampler.sample(seeds, batch=1)
    other_seed = NeighborSampler(store, [3, 3], seed=1).sample(seeds, batch=0)
    topic = ("video", "has_same_topic_as", "video")
    for b in (other_batch, other_seed):
        assert not np.array_equal(a.global_row(topic), b.global_row(topic))


# --- output shape (the loader's contract) ----------------------------------------------------------
def test_output_contract(store):
    seeds = _seeds(store, 16, seed=3)
    sampler = NeighborSampler(store, [4, 3], seed=1)
    out = sampler.sample(seeds)
    assert sampler.backend == out.backend == ("cpp" if cpp_backend.available() else "numba")
    np.testing.assert_array_equal(out.node["video"][:16], seeds)
    assert set(out.node) == {"video"} | {et[0] for et in out.row}
    assert set(out.row) == {(r.head, r.name, "video") for r in store.relations}
    for t, ids in out.node.items():
        assert ids.dtype == np.int64 and len(np.unique(ids)) == len(ids), t
        assert len(out.num_sampled_nodes[t]) == 3 and sum(out.num_sampled_nodes[t]) == len(ids), t
    bounds = np.cumsum([0] + out.num_sampled_nodes["video"])
    for et, row in out.row.items():
        col = out.col[et]
        assert row.dtype == col.dtype == np.int64 and row.shape == col.shape
        assert len(out.num_sampled_edges[et]) == 2 and sum(out.num_sampled_edges[et]) == len(row)
        assert len(row) == 0 or (row.min() >= 0 and row.max() < len(out.node[et[0]]))
        n1 = out.num_sampled_edges[et][0]
        assert np.all(col[:n1] < bounds[1])  # hop-1 tails are seeds
        assert np.all((col[n1:] >= bounds[1]) & (col[n1:] < bounds[2]))  # hop-2 tails are hop-1 videos
    # first-seen order: in a type with one relation, local ids first appear as 0, 1, 2, ...
    for et, row in out.row.items():
        if et[0] != "video" and len(row):
            assert np.all(np.diff(np.r_[-1, np.maximum.accumulate(row)]) <= 1), et
    assert out.num_edges == sum(len(r) for r in out.row.values())


def test_to_pyg_output(store):
    import torch

    out = NeighborSampler(store, [2], seed=0).sample(_seeds(store, 8)).to_pyg()
    assert all(v.dtype == torch.int64 for v in out.node.values())
    et = ("video", "has_same_topic_as", "video")
    assert out.row[et].shape == out.col[et].shape
    assert out.num_sampled_nodes["video"][0] == 8


def test_empty_seeds(store):
    out = NeighborSampler(store, [3, 3]).sample(np.zeros(0, np.int64))
    assert out.num_edges == 0 and len(out.node["video"]) == 0


# --- user mistakes --------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs", [
    {"fanouts": "50,51"}, {"fanouts": []}, {"fanouts": [-2]}, {"fanouts": [1.5]}, {"fanouts": [{"nope": 1}]},
    {"fanouts": [2], "relations": ["nope"]}, {"fanouts": [2], "backend": "gpu"}, {"fanouts": [2], "num_threads": 0},
])
def test_bad_arguments_raise_user_error(store, kwargs):
    with pytest.raises(UserError):
        NeighborSampler(store, **kwargs)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_seeds_raise_and_sampler_recovers(store, backend):
    sampler = NeighborSampler(store, [3, 2], seed=0, backend=backend)
    seeds = _seeds(store, 10)
    want = sampler.sample(seeds)
    nv = store.num_nodes("video")
    with pytest.raises(UserError, match="distinct"):
        sampler.sample(np.r_[seeds, seeds[:1]])
    with pytest.raises(ValueError, match=rf"seed video id {nv} is out of range \(valid ids: 0\.\.{nv - 1}\)"):
        sampler.sample([nv])
    with pytest.raises(UserError, match="seed video id -1 is out of range"):
        sampler.sample(np.r_[seeds[:3], -1])
    with pytest.raises(UserError, match="integers"):
        sampler.sample([0.5])
    _assert_same(sampler.sample(seeds), want)


def _toy_history(indices: list[int]) -> tuple[Topology, np.ndarray]:
    """Three videos; video 0's history (csc) holds `indices`, the others have none."""
    idx = np.asarray(indices, np.int32)
    rel = Relation("is_history_of", "video", "csc", indptr=np.array([0, len(idx), len(idx), len(idx)], np.int64),
                   indices=idx)
    return Topology(num_nodes={"video": 3}, relations={"is_history_of": rel}), idx


@pytest.mark.parametrize("backend", BACKENDS)
def test_error_mid_sample_leaves_next_sample_correct(backend):
    """An out-of-range head met while sampling (arrays changed under the sampler) must not poison the next call."""
    topo, indices = _toy_history([1, 2])
    sampler = NeighborSampler(topo, [-1], backend=backend)
    before = sampler.sample([0])
    assert before.node["video"].tolist() == [0, 1, 2]
    indices[1] = 99  # the kernel's view shares this buffer: head 1 is relabelled, then 99 fails
    with pytest.raises(SamplerError, match=r"relation is_history_of: video id 99 is out of range \(valid ids: 0\.\.2\)"):
        sampler.sample([0])
    indices[1] = 2
    _assert_same(sampler.sample([0]), before)  # the first ever-mapped node (1) was forgotten too


@pytest.mark.parametrize("backend", BACKENDS)
def test_relabel_kernel_is_all_or_nothing(backend):
    kernels = NeighborSampler(_toy_history([1])[0], [1], backend=backend)._backend
    node_map, nodes = np.full(5, -1, np.int32), np.zeros(8, np.int64)
    rows, n = kernels.relabel(np.array([3, 1], np.int64), node_map, nodes, 0)
    assert rows.tolist() == [0, 1] and n == 2
    snapshot = node_map.copy()
    _, n = kernels.relabel(np.array([1, 4, 0, 5, 2], np.int64), node_map, nodes, 2)
    assert n == -1
    np.testing.assert_array_equal(node_map, snapshot)  # 4 and 0 were added before 5 failed: both undone
    rows, n = kernels.relabel(np.array([4, 3], np.int64), node_map, nodes, 2)
    assert rows.tolist() == [2, 0] and n == 3 and nodes[:3].tolist() == [3, 1, 4]


@pytest.mark.parametrize("relation,match", [
    (Relation("is_history_of", "video", "csc", indptr=np.array([0, 2, 2, 2], np.int64),
              indices=np.array([1, 3], np.int32)), r"indices\[1\] = 3 is not a video id \(valid ids: 0\.\.2\)"),
    (Relation("is_history_of", "video", "csc", indptr=np.array([0, 1, 1, 1], np.int64),
              indices=np.array([-4], np.int32)), r"indices\[0\] = -4 is not a video id"),
    (Relation("is_topic_of", "topic", "aligned", head_index=np.array([0, 2, 1], np.int32)),
     r"head\[1\] = 2 is not a topic id \(valid ids: 0\.\.1\)"),
    (Relation("is_comment_of", "comment", "range", indptr=np.array([0, 1, 2, 3], np.int64)),
     r"indptr\[-1\] = 3 heads, but there are 2 comment nodes"),
    (Relation("has_same_author_as", "video", "bucket", members=np.array([0, 7, 1], np.int32),
              lo=np.zeros(3, np.int32), hi=np.ones(3, np.int32)), r"members\[1\] = 7 is not a video id"),
    (Relation("is_title_of", "title", "aligned"), r"needs 3 title nodes, there are 2"),
])
def test_out_of_range_topology_ids_rejected_when_sampler_is_built(relation, match):
    counts = {"video": 3, "topic": 2, "comment": 2, "title": 2}
    topo = Topology(num_nodes=counts, relations={relation.name: relation})
    with pytest.raises(SamplerError, match=match):
        NeighborSampler(topo, [1])


# --- CLI ------------------------------------------------------------------------------------------
@pytest.fixture
def only_sample_command(monkeypatch):
    """graphstore.cli.main with just the `sample` sub-command (independent of the other commands)."""
    import graphstore.cli

    monkeypatch.setattr(graphstore.cli, "COMMANDS", ("sample",))


@pytest.mark.usefixtures("only_sample_command")
def test_cli_sample_json(store, capsys):
    code = cli_main(["sample", "--store", str(store.path), "--batch-size", "16", "--fanouts", "3,2",
                     "--batches", "3", "--threads", "1", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["batches"] == 3 and report["batch_size"] == 16 and report["fanouts"] == [3, 2]
    assert report["backend"] in BACKENDS and report["threads"] == 1
    assert report["edges"] > 0 and report["seps"] > 0 and report["nodes_per_s"] > 0
    assert 0 < report["latency_p50_ms"] <= report["latency_p95_ms"]
    assert report["peak_rss_mb"] > 0


@pytest.mark.usefixtures("only_sample_command")
def test_cli_sample_text_and_errors(store, tmp_path, capsys):
    assert cli_main(["sample", "--store", str(store.path), "--batch-size", "8", "--batches", "2",
                     "--fanouts", "2", "--backend", "numba"]) == 0
    text = capsys.readouterr().out
    assert "SEPS" in text and "backend numba" in text
    assert cli_main(["sample", "--store", str(tmp_path / "missing"), "--batches", "1"]) == 2
    assert cli_main(["sample", "--store", str(store.path), "--fanouts", "3,x"]) == 2
    assert cli_main(["sample", "--store", str(store.path), "--split", "nope"]) == 2
    assert "error" in capsys.readouterr().err


# --- the PyG comparison samples the same graph --------------------------------------------------
@pytest.fixture(scope="session")
def bench_module():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "sample_vs_pyg.py"
    spec = importlib.util.spec_from_file_location("sample_vs_pyg", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_materialises_every_edge(store, bench_module):
    nv = store.num_nodes("video")
    for rel in store.relations:
        ei = bench_module.edge_index(rel, nv)
        want = sorted((int(h), v) for v in range(nv) for h in rel.in_neighbors(v).tolist())
        assert sorted(zip(ei[0].tolist(), ei[1].tolist())) == want, rel.name
        assert ei.shape[1] == store.num_edges(rel.name)


def _brute_force_expansion(expected: dict[str, dict[str, set[str]]], seeds: list[str],
                           hops: int) -> tuple[dict[str, set[tuple[str, str]]], set[str]]:
    """Full-fanout edges (head key, tail sample id) per relation and the videos reached, hop by hop."""
    edges: dict[str, set[tuple[str, str]]] = {rel: set() for rel in expected}
    reached, frontier = set(seeds), set(seeds)
    for _ in range(hops):
        new = set()
        for rel, by_tail in expected.items():
            for tail in frontier:
                heads = by_tail.get(tail, set())
                edges[rel] |= {(h, tail) for h in heads}
                if rel in ("has_same_topic_as", "has_same_author_as", "is_history_of"):
                    new |= heads - reached
        reached |= new
        frontier = new
    return edges, reached


@pytest.mark.parametrize("backend", BACKENDS)
def test_full_neighbourhood_equals_brute_force_from_input(store, records, backend):
    """The always-running external oracle: in-neighbour sets computed from the raw records in plain Python."""
    keys = head_keys(store)
    seeds = _seeds(store, 12, seed=2)
    want_edges, want_videos = _brute_force_expansion(brute_force_in_neighbors(records),
                                                     [keys["video"][v] for v in seeds.tolist()], hops=2)
    out = NeighborSampler(store, [-1, -1], backend=backend).sample(seeds)
    assert {keys["video"][v] for v in out.node["video"].tolist()} == want_videos
    for et in out.row:
        pairs = list(zip(out.global_row(et).tolist(), out.global_col(et).tolist()))
        assert len(pairs) == len(set(pairs)), f"{et}: an edge sampled twice"
        got = {(keys[et[0]][h], keys["video"][t]) for h, t in pairs}
        assert got == want_edges[et[1]], et
        assert {keys[et[0]][n] for n in out.node[et[0]].tolist()} >= {h for h, _ in got}
    assert sum(len(e) for e in want_edges.values()) > 100  # the oracle is not vacuous


def test_full_neighbourhood_equals_pyg(store, bench_module):
    if bench_module.pyg_backend() is None:  # optional (`.[bench]`); the brute-force oracle above always runs
        pytest.skip("PyG cannot sample here (neither pyg-lib nor torch-sparse)")
    import torch
    from torch_geometric.sampler import NeighborSampler as PygSampler, NodeSamplerInput

    seeds = _seeds(store, 12, seed=2)
    data = bench_module.materialise(store)
    pyg = PygSampler(data, num_neighbors={et: [-1, -1] for et in data.edge_types})
    theirs = pyg.sample_from_nodes(NodeSamplerInput(input_id=None, node=torch.from_numpy(seeds), input_type="video"))
    ours = NeighborSampler(store, [-1, -1]).sample(seeds)
    for et in ours.row:
        mine = set(zip(ours.global_row(et).tolist(), ours.global_col(et).tolist()))
        src, dst = theirs.node[et[0]][theirs.row[et]], theirs.node[et[2]][theirs.col[et]]
        assert mine == set(zip(src.tolist(), dst.tolist())), et
    for t in ours.node:
        assert set(ours.node[t].tolist()) == set(theirs.node[t].tolist()), t
