"""`graphstore append` against full rebuilds, failure and crash safety, and concurrent readers."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from graphstore.append import KILL_ENV, append_store, overlay
from graphstore.build import build_store
from graphstore.cli import main as cli_main
from graphstore.errors import InputRecordError, UserError
from graphstore.schema import XSVIDEO_KEYS
from graphstore.store import GraphStore
from graphstore.synth import synthesize
from tests.xsvideo_fixtures import make_records, write_jsonl, write_xsvideo

ROOT = Path(__file__).resolve().parents[1]
PER_SAMPLE = ("video", "title", "description", "time", "ctime", "video_time", "likes", "collects", "views", "shares",
              "comments", "fans")
SMALL_CHUNKS = {"chunk_bytes": 4096, "raw_chunk_bytes": 8192}  # several chunks per feature array, even in tiny stores


# --- the oracle: a store described by sample ids only (node ids may differ) -------------------------------
def canonical(store: GraphStore) -> dict:
    """Every relation as in-neighbour lists of keys, plus counts, labels, splits, columns and table rows."""
    ids = store.sample_ids()
    samples = store.samples_table().to_pylist()
    comments = store.comments_table().to_pylist()
    ckeys = [(ids[c["video"]], c["comment_id"]) for c in comments]
    keys = {"video": ids, "comment": ckeys, "topic": store.meta["topics"], "platform": store.meta["platforms"]}
    out: dict = {"counts": dict(store.meta["node_types"]), "splits": {}, "columns": {}}
    for rel in store.relations:
        head_keys = keys.get(rel.head, ids)  # attribute nodes belong to their video
        lists = {}
        for v in range(store.num_nodes("video")):
            nbrs = store.in_neighbors(rel.name, v)
            assert store.in_degree(rel.name, v) == len(nbrs) == len(set(nbrs.tolist())), (rel.name, ids[v])
            lists[ids[v]] = sorted(head_keys[u] for u in nbrs)
        out[rel.name] = lists
        out[f"{rel.name}/num_edges"] = store.num_edges(rel.name)
        assert store.num_edges(rel.name) == sum(len(x) for x in lists.values())
    for name in ("train", "val", "test"):
        out["splits"][name] = sorted(ids[v] for v in store.split(name))
    assert sum(len(s) for s in out["splits"].values()) == store.meta["splits"]["train"] + store.meta["splits"]["val"] + \
        store.meta["splits"]["test"]
    authors = {}
    for name in store.root["columns"].array_keys():
        col = store.column(name)
        if name == "topic":
            values = [store.meta["topics"][t] for t in col]
        elif name == "author":  # numbered differently; must be a bijection with the poster ids
            values = [samples[v]["author_id"] for v in range(len(col))]
            for a, s in zip(col.tolist(), values):
                assert authors.setdefault(a, s) == s
        else:
            values = [None if isinstance(x, float) and np.isnan(x) else x for x in col.tolist()]
        out["columns"][name] = dict(zip(ids, values))
    assert len(set(authors.values())) == len(authors)
    out["samples"] = {r["sample_id"]: {k: v for k, v in r.items() if k != "node"} for r in samples}
    out["comments"] = {k: {f: v for f, v in r.items() if f not in ("node", "video")} for k, r in zip(ckeys, comments)}
    return out


def feature_rows(store: GraphStore) -> dict[str, dict]:
    """Every feature row keyed as in `canonical` (float16 bytes, so equality is exact)."""
    ids = store.sample_ids()
    ckeys = [(ids[v], c) for v, c in zip(store.comments_table(["video"]).column(0).to_pylist(),
                                         store.comments_table(["comment_id"]).column(0).to_pylist())]
    keys = {"comment": ckeys, "topic": store.meta["topics"], "platform": store.meta["platforms"]}
    out = {}
    for t in store.meta.get("features", {}):
        x = np.asarray(store.root[f"features/{t}/x"][...])
        out[t] = {k: x[i].tobytes() for i, k in enumerate(keys.get(t, ids))}
    return out


def assert_same(got: GraphStore, want: GraphStore, features: bool = True) -> None:
    a, b = canonical(got), canonical(want)
    assert a.keys() == b.keys()
    for key in b:
        assert a[key] == b[key], key
    if features:
        fa, fb = feature_rows(got), feature_rows(want)
        assert fa.keys() == fb.keys()
        for t in fb:
            assert fa[t] == fb[t], f"features/{t}"
    assert got.verify() == []


# --- inputs --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def synth_records(tmp_path_factory) -> dict[str, dict]:
    """A tiny synthetic XS-Video file (realistic dates: all three splits, multi-state videos), as a dict."""
    path = tmp_path_factory.mktemp("synth") / "xs.json"
    synthesize(path, scale=0.0005, seed=4, progress=False)
    return json.loads(path.read_text())


def _write(path: Path, records: dict[str, dict]) -> Path:
    path.write_text(json.dumps(records, ensure_ascii=False))
    return path


def _build(src: Path, out: Path, features: bool = True) -> GraphStore:
    opts = {"feature_options": SMALL_CHUNKS} if features else {}
    return GraphStore.open(build_store(src, out, featurize=features, progress=False, **opts))


def _split_videos(records: dict[str, dict], seed: int, url_key: str = "url") -> tuple[dict, dict]:
    """Whole videos (every state) at random into base and rest: rest holds dates before, among and after base's."""
    rng = np.random.default_rng(seed)
    urls = sorted({r[url_key] for r in records.values()})
    rest_urls = set(rng.choice(urls, size=max(1, len(urls) // 3), replace=False).tolist())
    base = {k: r for k, r in records.items() if r[url_key] not in rest_urls}
    rest = {k: r for k, r in records.items() if r[url_key] in rest_urls}
    return base, rest


def _split_tail(records: dict[str, dict], time_key: str, share: float = 0.3) -> tuple[dict, dict]:
    """The chronological tail (latest current times) as rest."""
    order = sorted(records, key=lambda k: (records[k][time_key][:10], k))
    cut = int(len(order) * (1 - share))
    return {k: records[k] for k in order[:cut]}, {k: records[k] for k in order[cut:]}


# --- (a) append equals a full build -----------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1])
def test_whole_videos_of_any_date_equal_full_build(tmp_path, synth_records, seed):
    base, rest = _split_videos(synth_records, seed)
    want = _build(_write(tmp_path / "all.json", synth_records), tmp_path / "all")
    store = _build(_write(tmp_path / "base.json", base), tmp_path / "s")
    n = store.num_nodes("video")
    old_ids, old_topics = store.sample_ids(), store.meta["topics"]
    old_rows = {t: np.asarray(store.root[f"features/{t}/x"][...]) for t in ("title", "comment", "topic")}
    result = append_store(tmp_path / "s", _write(tmp_path / "rest.json", rest), progress=False)
    got = GraphStore.open(tmp_path / "s")
    assert result.samples == len(rest) and got.generation == 1 and result.videos == len(synth_records)
    assert_same(got, want)
    # existing nodes keep their ids (and feature rows); new ones come after them, in input order in `new_nodes`
    assert got.sample_ids()[:n] == old_ids and got.meta["topics"][:len(old_topics)] == old_topics
    assert [got.sample_ids()[v] for v in result.new_nodes] == result.new_ids == list(rest)
    for t, rows in old_rows.items():
        np.testing.assert_array_equal(np.asarray(got.root[f"features/{t}/x"][: len(rows)]), rows)


def test_chronological_tail_in_two_appends_and_both_formats(tmp_path, synth_records):
    base, tail = _split_tail(synth_records, "当前时间", share=0.4)
    keys = list(tail)
    first, second = {k: tail[k] for k in keys[: len(keys) // 2]}, {k: tail[k] for k in keys[len(keys) // 2:]}
    want = _build(_write(tmp_path / "all.json", synth_records), tmp_path / "all")
    _build(_write(tmp_path / "base.json", base), tmp_path / "s")
    append_store(tmp_path / "s", _write(tmp_path / "first.json", first), progress=False)
    english = {k: _english(k, r) for k, r in second.items()}
    append_store(tmp_path / "s", write_jsonl(tmp_path / "second.jsonl", english), progress=False)
    got = GraphStore.open(tmp_path / "s")
    assert got.generation == 2
    assert_same(got, want)
    # generation 0 (the build's files next to zarr.json) is gone, generation 1 is kept for open handles
    assert not (tmp_path / "s" / "columns").exists() and (tmp_path / "s" / "gen" / "1").is_dir()


def _english(sid: str, rec: dict) -> dict:
    """A Chinese-keyed record in the JSON Lines format."""
    out = {"id": sid, **{XSVIDEO_KEYS[k]: v for k, v in rec.items() if k != "评论"}}
    out["comments"] = [{"id": c, "text": v["评论内容"], "time": v["评论时间"]} for c, v in (rec.get("评论") or {}).items()]
    return out


def test_same_day_and_earlier_newcomers_join_bucket_prefixes(tmp_path):
    """Hand-made fixture: newcomers on the same and on earlier days than existing members of a bucket."""
    records = make_records(24, seed=5)
    base, rest = _split_videos(records, seed=3)
    want = _build(write_xsvideo(tmp_path / "all.json", records), tmp_path / "all", features=False)
    _build(write_xsvideo(tmp_path / "base.json", base), tmp_path / "s", features=False)
    result = append_store(tmp_path / "s", write_jsonl(tmp_path / "rest.jsonl", rest), progress=False)
    got = GraphStore.open(tmp_path / "s")
    assert_same(got, want, features=False)
    assert result.touched > 0, "the fixture must put newcomers into existing buckets"
    assert got.topology.relations["has_same_topic_as"].members is not None
    cday = got.column("cday")
    for rel, col in (("has_same_topic_as", "topic"), ("has_same_author_as", "author")):
        members = np.asarray(got.topology.relations[rel].members)
        order = np.lexsort((members, cday[members], got.column(col)[members]))
        assert np.array_equal(order, np.arange(len(members))), f"{rel}: members not sorted by (key, day, node)"


def test_graph_derived_video_rows_of_existing_samples_are_recomputed(tmp_path, synth_records):
    """The per-sample video block holds bucket in-degrees: existing rows change when newcomers join, as in a rebuild."""
    base, rest = _split_videos(synth_records, seed=2)
    want = _build(_write(tmp_path / "all.json", synth_records), tmp_path / "all")
    store = _build(_write(tmp_path / "base.json", base), tmp_path / "s")
    before = np.asarray(store.root["features/video/x"][...])
    result = append_store(tmp_path / "s", _write(tmp_path / "rest.json", rest), progress=False)
    got = GraphStore.open(tmp_path / "s")
    after = np.asarray(got.root["features/video/x"][: len(before)])
    changed = np.flatnonzero((after != before).any(axis=1))
    assert result.touched > 0 and changed.size > 0 and changed.size <= result.touched
    assert_same(got, want)


# --- (b) validation, failures and crashes leave the store as it was ---------------------------------------
def _snapshot(path: Path) -> dict[str, tuple[int, int]]:
    """(inode, size) of every file under the store: an unchanged store has the very same files."""
    return {str(p.relative_to(path)): (p.stat().st_ino, p.stat().st_size) for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture
def small(tmp_path) -> tuple[Path, dict, dict]:
    records = make_records(20, seed=7)
    base, rest = _split_videos(records, seed=1)
    _build(write_xsvideo(tmp_path / "base.json", base), tmp_path / "s")
    return tmp_path / "s", base, rest


BAD_APPENDS = {
    "bad level": (lambda base, rest, s: rest[s].update(level=12), "level", "0-9"),
    "id already in the store": (lambda base, rest, s: rest.update({next(iter(base)): rest.pop(s)}), "id", "already in the store"),
    "unknown history id": (lambda base, rest, s: rest[s].update(history=["nope"]), "history", "not a sample in the file or the store"),
    "history names a later stored state": (
        lambda base, rest, s: rest[s].update(history=[max(base, key=lambda k: base[k]["current_time"][:10])],
                                             current_time="2024-11-02 10:00:00"),
        "history", "later state"),
}


@pytest.mark.parametrize("case", sorted(BAD_APPENDS))
def test_bad_append_names_record_and_leaves_store_unchanged(tmp_path, small, case):
    path, base, rest = small
    mutate, field, message = BAD_APPENDS[case]
    sid = next(iter(rest))
    mutate(base, rest, sid)
    before = _snapshot(path)
    src = write_jsonl(tmp_path / "rest.jsonl", {k: {**r, "id": k} for k, r in rest.items()})
    with pytest.raises(InputRecordError) as err:
        append_store(path, src, progress=False)
    assert err.value.field == field and message in str(err.value)
    assert err.value.sample_id == (next(iter(base)) if field == "id" else sid)
    assert _snapshot(path) == before
    assert GraphStore.open(path).verify() == []


def test_verify_names_a_corrupted_grown_array(tmp_path, small):
    path, base, rest = small
    append_store(path, write_jsonl(tmp_path / "rest.jsonl", rest), progress=False)
    store = GraphStore.open(path)
    assert isinstance(store.meta["checksums"]["columns/likes"], list) and store.verify() == []
    chunk = store.path / "topology" / "has_same_author_as" / "lo" / "c" / "0"
    raw = bytearray(chunk.read_bytes())
    raw[-1] ^= 0xFF
    chunk.write_bytes(bytes(raw))
    assert GraphStore.open(path).verify() == ["topology/has_same_author_as/lo"]
    feature = store.path / "features" / "title" / "x"
    # the chunk holding the appended rows, cut in half: it no longer decodes (a flipped byte in a compressed
    # frame can, rarely, decode to the same values)
    array = store.root["features/title/x"]
    chunk = feature / "c" / str((array.shape[0] - 1) // array.chunks[0]) / "0"
    chunk.write_bytes(chunk.read_bytes()[: len(chunk.read_bytes()) // 2])
    assert "features/title/x" in GraphStore.open(path).verify()


def test_store_featurized_before_encoders_were_recorded(tmp_path, small):
    """Older stores have no `encoder` per feature: the hash encoder at the stored width is assumed."""
    from graphstore.format.generations import read_document, write_document

    path, base, rest = small
    meta = read_document(path)
    for info in meta["features"].values():
        del info["encoder"]
    write_document(path, meta)
    append_store(path, write_jsonl(tmp_path / "rest.jsonl", rest), progress=False)
    want = _build(write_xsvideo(tmp_path / "all.json", {**base, **rest}), tmp_path / "all")
    assert_same(GraphStore.open(path), want)


def test_history_may_point_into_the_store(tmp_path, small):
    path, base, rest = small
    listed = {h for r in rest.values() for h in r["history"]}
    sid = next(k for k in rest if k not in listed)  # a latest state: moving it later breaks no other history
    old = min(base, key=lambda k: base[k]["current_time"][:10])
    rest[sid].update(history=rest[sid]["history"] + [old], current_time="2024-12-31 10:00:00")
    append_store(path, write_jsonl(tmp_path / "rest.jsonl", rest), progress=False)
    store = GraphStore.open(path)
    (v,) = store.video_index([sid])
    assert sorted(store.sample_ids()[u] for u in store.in_neighbors("is_history_of", v)) == sorted(rest[sid]["history"])


def test_cli_append_error_exit_status_and_verify(tmp_path, small, capsys):
    path, base, rest = small
    rest[next(iter(rest))]["level"] = "high"
    bad = write_xsvideo(tmp_path / "bad.json", rest)
    assert cli_main(["append", "--store", str(path), "--input", str(bad), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "graphstore append: error: sample" in err and "影响力等级" in err
    assert cli_main(["info", str(path), "--verify"]) == 0


@pytest.mark.parametrize("step", ["ingest", "topology", "features", "commit"])
def test_killed_append_leaves_store_unchanged(tmp_path, small, step):
    path, base, rest = small
    src = write_jsonl(tmp_path / "rest.jsonl", rest)
    before = _snapshot(path)
    cmd = [sys.executable, "-m", "graphstore.cli", "append", "--store", str(path), "--input", str(src), "--no-progress"]
    env = {**os.environ, KILL_ENV: step, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    leftovers = {k for k in _snapshot(path) if k.startswith("gen/")}
    assert {k: v for k, v in _snapshot(path).items() if k not in leftovers} == before
    store = GraphStore.open(path)
    assert store.generation == 0 and store.verify() == []
    # the next append clears what the killed one left and gives the full build's store
    append_store(path, src, progress=False)
    want = _build(write_xsvideo(tmp_path / "all.json", {**base, **rest}), tmp_path / "all")
    assert_same(GraphStore.open(path), want)


# --- concurrent readers -----------------------------------------------------------------------------------
def test_open_handles_keep_their_generation(tmp_path, synth_records):
    base, tail = _split_tail(synth_records, "当前时间")
    keys = list(tail)  # date order: each half holds its samples' earlier states
    half = len(keys) // 2
    _build(_write(tmp_path / "base.json", base), tmp_path / "s")
    old, lazy = GraphStore.open(tmp_path / "s"), GraphStore.open(tmp_path / "s")
    old_title = old.features("title")  # opened lazily: reads its files only on the first gather
    before, title_rows = canonical(old), np.asarray(old.root["features/title/x"][...])
    append_store(tmp_path / "s", _write(tmp_path / "a.json", {k: tail[k] for k in keys[:half]}), progress=False)
    # handles opened before the append read generation 0, whatever they had not read yet
    assert canonical(lazy) == before and lazy.verify() == [] and old.verify() == []
    np.testing.assert_array_equal(old_title[np.arange(len(base))], title_rows)
    new = GraphStore.open(tmp_path / "s")
    assert new.generation == 1 and new.num_nodes("video") == len(base) + len(keys[:half])
    # a second append keeps generation 1 for `new` and removes generation 0
    append_store(tmp_path / "s", _write(tmp_path / "b.json", {k: tail[k] for k in keys[half:]}), progress=False)
    assert new.verify() == [] and canonical(new)["counts"]["video"] == len(base) + len(keys[:half])
    assert GraphStore.open(tmp_path / "s").generation == 2 and not (tmp_path / "s" / "features").exists()


def test_overlay_is_temporary_and_leaves_store_alone(tmp_path, small):
    path, base, rest = small
    before = _snapshot(path)
    with overlay(path, write_jsonl(tmp_path / "rest.jsonl", rest), progress=False) as (view, result):
        assert view.num_nodes("video") == len(base) + len(rest) and view.verify() == []
        assert [view.sample_ids()[v] for v in result.new_nodes] == list(rest)
        where = view.path
    assert not where.exists() and _snapshot(path) == before
    with pytest.raises(UserError, match="not a graphstore"):
        GraphStore.open(tmp_path / "nothing")
