"""The builder against a brute-force materialisation of the relation rules."""
from __future__ import annotations

import json

import numpy as np
import pytest

from graphstore.build import build_store
from graphstore.cli import main as cli_main
from graphstore.errors import InputRecordError, UserError
from graphstore.schema import RELATION_NAMES
from graphstore.store import GraphStore
from tests.xsvideo_fixtures import brute_force_in_neighbors, head_keys, make_records, write_jsonl, write_xsvideo


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("build")
    records = make_records(60, seed=1)
    src = write_xsvideo(tmp / "xs.json", records)
    store = GraphStore.open(build_store(src, tmp / "store", featurize=False, progress=False))
    return records, store


def test_every_relation_matches_brute_force(built):
    records, store = built
    ids = store.sample_ids()
    expected = brute_force_in_neighbors(records)
    assert set(expected) == set(RELATION_NAMES)
    keys = head_keys(store)
    for rel in store.relations:
        for v, sid in enumerate(ids):
            nbrs = store.in_neighbors(rel.name, v).tolist()
            got = [keys[rel.head][u] for u in nbrs]
            assert len(got) == len(set(got)), f"{rel.name}: duplicate neighbours of {sid}"
            assert store.in_degree(rel.name, v) == len(nbrs)
            assert set(got) == expected[rel.name].get(sid, set()), f"{rel.name}: in-neighbours of {sid}"
        # the logical edge count is the oracle's, not merely plausible
        assert store.num_edges(rel.name) == sum(len(h) for h in expected[rel.name].values()), rel.name
    # self edges are present exactly once and same-day ties go both ways
    assert all(s in expected["has_same_topic_as"][s] for s in records)


def test_attribute_comment_and_shared_relations(built):
    records, store = built
    ids = store.sample_ids()
    topics = store.meta["topics"]
    comments = store.comments_table().to_pylist()
    for v, sid in enumerate(ids):
        r = records[sid]
        assert topics[store.in_neighbors("is_topic_of", v)[0]] == r["topic"]
        assert store.meta["platforms"][store.in_neighbors("is_platform_of", v)[0]] == r["platform"]
        assert store.in_neighbors("is_title_of", v).tolist() == [v]
        got = sorted(comments[c]["comment_id"] for c in store.in_neighbors("is_comment_of", v))
        assert got == sorted(c["id"] for c in r["comments"])
        assert all(comments[c]["video"] == v for c in store.in_neighbors("is_comment_of", v))
    n = len(records)
    assert store.num_edges("is_comment_of") == sum(len(r["comments"]) for r in records.values())
    assert store.num_nodes("comment") == store.num_edges("is_comment_of")
    assert all(store.num_edges(rel) == n for rel in ("is_title_of", "is_fans_of", "is_platform_of"))


def test_columns_labels_nulls_and_splits(built):
    records, store = built
    ids = store.sample_ids()
    level, fans, fans_missing = store.labels(), store.column("fans"), store.column("fans_missing")
    for v, sid in enumerate(ids):
        r = records[sid]
        assert level[v] == r["level"]
        assert bool(fans_missing[v]) == (r["fans"] is None)
        assert fans[v] == (0 if r["fans"] is None else r["fans"])
    splits = {name: set(store.split(name).tolist()) for name in ("train", "val", "test")}
    assert not (splits["train"] & splits["val"]) and not (splits["val"] & splits["test"])
    for v, sid in enumerate(ids):
        r = records[sid]
        post = r["post_time"][:10]
        if r["final_state"]:
            want = None
        elif post > "2024-12-20":
            want = "test"
        elif post > "2024-12-13":
            want = "val"
        else:
            want = "train"
        got = next((k for k, s in splits.items() if v in s), None)
        assert got == want, sid


def test_node_order_and_video_index(built):
    _, store = built
    topic, cday = store.column("topic"), store.column("cday")
    key = topic.astype(np.int64) * 100_000 + cday
    assert np.all(np.diff(key) >= 0), "videos must be sorted by (topic, day)"
    ids = store.sample_ids()
    assert store.video_index(ids[3:6]).tolist() == [3, 4, 5]
    with pytest.raises(UserError, match="sample nope"):
        store.video_index(["nope"])


def test_checksums_detect_corruption(tmp_path):
    src = write_xsvideo(tmp_path / "xs.json", make_records(8))
    store = GraphStore.open(build_store(src, tmp_path / "s", featurize=False, progress=False))
    assert store.verify() == []
    chunk = tmp_path / "s" / "topology" / "has_same_author_as" / "members" / "c" / "0"
    raw = bytearray(chunk.read_bytes())
    raw[0] ^= 0xFF
    chunk.write_bytes(bytes(raw))
    assert GraphStore.open(tmp_path / "s").verify() == ["topology/has_same_author_as/members"]


def test_jsonl_builds_same_graph(tmp_path, built):
    records, store = built
    other = GraphStore.open(build_store(write_jsonl(tmp_path / "x.jsonl", records), tmp_path / "s2", featurize=False, progress=False))
    assert other.sample_ids() == store.sample_ids()
    for r in other.meta["relations"]:
        assert r["num_edges"] == store.num_edges(r["name"])


def test_refuses_existing_store_without_overwrite(tmp_path):
    src = write_xsvideo(tmp_path / "xs.json", make_records(5))
    build_store(src, tmp_path / "s", featurize=False, progress=False)
    with pytest.raises(UserError, match="--overwrite"):
        build_store(src, tmp_path / "s", featurize=False, progress=False)
    build_store(src, tmp_path / "s", overwrite=True, featurize=False, progress=False)


def _broken(tmp_path, mutate, fmt="xs"):
    records = make_records(6, seed=2)
    sid = next(iter(records))
    mutate(records, sid)
    if fmt == "xs":
        return write_xsvideo(tmp_path / "bad.json", records), sid
    return write_jsonl(tmp_path / "bad.jsonl", records), sid


BAD_INPUTS = {
    "missing key": (lambda r, s: r[s].pop("topic"), "话题", "missing required key"),
    "level out of range": (lambda r, s: r[s].update(level=11), "影响力等级", "0-9"),
    "unparsable date": (lambda r, s: r[s].update(post_time="2024-13-45 99:00"), "发布时间", "unparsable date"),
    "negative count": (lambda r, s: r[s].update(likes=-5), "当前点赞量", "must not be negative"),
    "unknown history id": (lambda r, s: r[s].update(history=["999999"]), "历史状态", "999999"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_names_sample_and_field(tmp_path, case):
    mutate, field, message = BAD_INPUTS[case]
    src, sid = _broken(tmp_path, mutate)
    with pytest.raises(InputRecordError) as err:
        build_store(src, tmp_path / "out", featurize=False, progress=False)
    assert err.value.sample_id == sid and err.value.field == field and message in str(err.value)
    assert not any(p.name.startswith(("out", ".out")) for p in tmp_path.iterdir()), "a failed build left files behind"


def test_malformed_json_and_duplicate_id(tmp_path, capsys):
    src = write_xsvideo(tmp_path / "xs.json", make_records(4))
    text = src.read_text()
    (tmp_path / "trunc.json").write_text(text[: len(text) // 2])
    assert cli_main(["build", "--input", str(tmp_path / "trunc.json"), "--out", str(tmp_path / "o"), "--no-features"]) == 2
    assert "malformed JSON" in capsys.readouterr().err
    first_id, first = next(iter(json.loads(text).items()))
    dup = text.rstrip()[:-1] + f', "{first_id}": ' + json.dumps(first, ensure_ascii=False) + "}"
    (tmp_path / "dup.json").write_text(dup)
    assert cli_main(["build", "--input", str(tmp_path / "dup.json"), "--out", str(tmp_path / "o"), "--no-features"]) == 2
    err = capsys.readouterr().err
    assert f"sample {first_id}" in err and "duplicate" in err
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.tmp-build").exists()


def test_jsonl_bad_record_names_english_field(tmp_path):
    src, sid = _broken(tmp_path, lambda r, s: r[s].update(current_time="yesterday"), fmt="jsonl")
    with pytest.raises(InputRecordError, match=f"sample {sid}: field 'current_time'"):
        build_store(src, tmp_path / "out", featurize=False, progress=False)


def test_info_and_query_cli(built, capsys):
    _, store = built
    assert cli_main(["info", str(store.path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["nodes"]["video"] == store.num_nodes("video")
    assert info["edges"]["has_same_topic_as"] == store.num_edges("has_same_topic_as")
    assert cli_main(["query", str(store.path), "SELECT count(*) AS n FROM samples"]) == 0
    assert str(store.num_nodes("video")) in capsys.readouterr().out
    assert cli_main(["query", str(store.path), "SELECT nope FROM samples"]) == 2
    assert "SQL failed" in capsys.readouterr().err


# --- parallel ingest (issue 14): the same staged rows and the same first error as one pass ------------------
def _staged(staging):
    import pyarrow.parquet as pq

    out = {}
    for name, keys in (("samples", ["pos"]), ("comments", ["pos", "cpos"])):
        table = pa_concat([pq.read_table(f) for f in sorted((staging / name).glob("*.parquet"))])
        out[name] = table.sort_by([(k, "ascending") for k in keys])
    return out


def pa_concat(tables):
    import pyarrow as pa

    return pa.concat_tables(tables)


@pytest.mark.parametrize("fmt", ["xs", "jsonl"])
def test_parallel_ingest_stages_the_same_rows(tmp_path, fmt):
    from graphstore.ingest import ingest

    records = make_records(12, seed=4)
    src = (write_xsvideo if fmt == "xs" else write_jsonl)(tmp_path / f"in.{fmt}", records)
    one = ingest(src, tmp_path / "one", progress=False, workers=1)
    two = ingest(src, tmp_path / "two", progress=False, workers=2, block_records=3)
    assert (one.num_samples, one.num_comments) == (two.num_samples, two.num_comments) == (len(records), one.num_comments)
    assert len(list((tmp_path / "two" / "samples").glob("*.parquet"))) == 2
    a, b = _staged(tmp_path / "one"), _staged(tmp_path / "two")
    assert a["samples"].equals(b["samples"]) and a["comments"].equals(b["comments"])


def _jsonl_lines(path, records, order, mutate=None):
    rows = [dict(records[sid]) for sid in order]
    if mutate:
        mutate(rows)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("workers", [1, 2])
def test_ingest_reports_the_first_bad_record_or_duplicate_in_file_order(tmp_path, workers):
    from graphstore.ingest import ingest

    records = make_records(8, seed=5)
    ids = list(records)
    # positions 0-2 go to worker 0, 3-5 to worker 1, 6-8 to worker 0 ... (blocks of 3)
    bad_at = lambda k: lambda rows: rows[k].update(level=42)  # noqa: E731
    cases = [  # (file order of the ids, mutation, expected sample id, expected text)
        (ids, lambda rows: (bad_at(4)(rows), bad_at(7)(rows)), ids[4], "0-9"),
        (ids, lambda rows: (bad_at(7)(rows), bad_at(4)(rows)), ids[4], "0-9"),
        (ids[:5] + [ids[1]] + ids[5:], bad_at(8), ids[1], "duplicate sample id"),  # duplicate at 5, bad at 8
        (ids[:5] + [ids[1]] + ids[5:], bad_at(2), ids[2], "0-9"),  # bad at 2 before the duplicate at 5
    ]
    for i, (order, mutate, sid, text) in enumerate(cases):
        src = _jsonl_lines(tmp_path / f"c{i}.jsonl", records, order, mutate)
        with pytest.raises(InputRecordError, match=text) as err:
            ingest(src, tmp_path / f"stage{i}", progress=False, workers=workers, block_records=3)
        assert err.value.sample_id == sid, (i, err.value)


def test_build_with_two_ingest_workers_is_the_same_store(tmp_path, built):
    records, store = built
    src = write_xsvideo(tmp_path / "xs.json", records)
    other = GraphStore.open(build_store(src, tmp_path / "s2", featurize=False, progress=False, ingest_workers=2))
    assert other.meta["checksums"] == store.meta["checksums"]
    assert other.samples_table().equals(store.samples_table()) and other.comments_table().equals(store.comments_table())
