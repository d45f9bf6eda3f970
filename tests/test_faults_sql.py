"""No path or option value is pasted raw into DuckDB SQL (issue 24).

The input file, the store (and with it the staging and spill folders under it, the overlay beside it)
and the table parts are quoted or passed as parameters: a folder named `o'brien` works as any other,
and a `--memory-limit` carrying SQL is refused as a bad value instead of being run.
"""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from graphstore.append import overlay
from graphstore.cli import main
from graphstore.store import GraphStore
from tests.test_append import assert_same
from tests.xsvideo_fixtures import make_records, write_jsonl, write_xsvideo

QUOTED = "o'brien"
QUERY = "SELECT count(*) AS n, sum(level) AS l, min(sample_id) AS a, (SELECT count(*) FROM comments) AS c FROM samples"


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def _ok(argv: list[str]) -> str:
    rc, out, err = _run(argv)
    assert rc == 0, (argv, err)
    return out


def _inputs(folder: Path, q: str = "'") -> tuple[Path, Path]:
    """(base file, file of later whole videos) under `folder`, with `q` in their names."""
    records = make_records(40, seed=5)
    urls = sorted({r["url"] for r in records.values()})
    old = set(urls[: 3 * len(urls) // 4])  # whole videos: a history stays within its video
    folder.mkdir(parents=True)
    base = write_xsvideo(folder / f"in{q}put.json", {s: r for s, r in records.items() if r["url"] in old})
    new = write_jsonl(folder / f"new{q}er.jsonl", {s: r for s, r in records.items() if r["url"] not in old})
    return base, new


def _pipeline(folder: Path, q: str) -> dict:
    """build, append, featurize, info, query and sample of one store under `folder` (`q` in all names); their outputs."""
    base, new = _inputs(folder, q)
    store = folder / f"st{q}ore"
    out = {}
    _ok(["build", "--input", str(base), "--out", str(store), "--no-features", "--ingest-workers", "1",
         "--memory-limit", "1GB"])
    _ok(["append", "--store", str(store), "--input", str(new), "--no-progress", "--memory-limit", "1GB"])
    _ok(["featurize", str(store), "--no-progress"])
    info = json.loads(_ok(["info", str(store), "--json"]))
    out["info"] = {k: info[k] for k in ("generation", "nodes", "edges", "splits")}
    out["verify"] = _ok(["info", str(store), "--verify"]).splitlines()[-1]  # "checksums: all ... intact"
    out["query"] = _ok(["query", str(store), QUERY])
    sample = json.loads(_ok(["sample", str(store), "--json", "--batch-size", "4", "--batches", "2", "--warmup", "0",
                             "--threads", "1", "--backend", "numba"]))
    out["sample"] = {k: sample[k] for k in ("edges", "nodes", "batches", "batch_size")}
    out["store"] = store
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[dict, dict]:
    """The same pipeline under a plain folder and under one whose name holds a quote."""
    root = tmp_path_factory.mktemp("sql")
    return _pipeline(root / "plain", ""), _pipeline(root / QUOTED, "'")


def test_quoted_paths_work_as_plain_ones(runs):
    plain, quoted = runs
    for key in ("info", "verify", "query", "sample"):
        assert quoted[key] == plain[key], key
    assert quoted["info"]["generation"] == 2  # the append, then the featurize: each commits a generation
    assert_same(GraphStore.open(quoted["store"]), GraphStore.open(plain["store"]))


def test_overlay_beside_a_quoted_store(runs, tmp_path):
    _, quoted = runs
    store = quoted["store"]
    new_id = {sid: str(int(sid) + 10**6) for sid in make_records(3, seed=11)}  # ids the store does not hold
    extra = {new_id[sid]: {**r, "id": new_id[sid], "history": [new_id[h] for h in r["history"]]}
             for sid, r in make_records(3, seed=11).items()}
    (tmp_path / QUOTED).mkdir()
    src = write_jsonl(tmp_path / QUOTED / "mo're.jsonl", extra)
    before = GraphStore.open(store).num_nodes("video")
    with overlay(store, src, progress=False) as (view, result):
        assert result.samples == len(extra) and view.num_nodes("video") == before + len(extra)
    assert not list(store.parent.glob("st'ore.overlay-*"))


@pytest.mark.parametrize("limit", ["1GB'; DROP TABLE s_keys; --", "1GB' ; SELECT 1; --", "lots", "4GB\x00"])
def test_bad_memory_limit_is_a_clear_error_before_any_work(tmp_path, limit):
    base, new = _inputs(tmp_path / QUOTED)
    out = tmp_path / QUOTED / "s"
    rc, _, err = _run(["build", "--input", str(base), "--out", str(out), "--no-features", "--memory-limit", limit])
    assert rc == 2 and "--memory-limit" in err and "Traceback" not in err, err
    assert sorted(p.name for p in out.parent.iterdir()) == sorted([base.name, new.name])

    _ok(["build", "--input", str(base), "--out", str(out), "--no-features", "--ingest-workers", "1"])
    names = sorted(p.name for p in out.iterdir())
    rc, _, err = _run(["append", "--store", str(out), "--input", str(new), "--no-progress", "--memory-limit", limit])
    assert rc == 2 and "--memory-limit" in err and "Traceback" not in err, err
    assert GraphStore.open(out).generation == 0 and sorted(p.name for p in out.iterdir()) == names


def test_store_moved_under_a_quote_is_queried_and_appended(tmp_path):
    """query's views and append's view of the stored samples name the table parts inside the store."""
    base, new = _inputs(tmp_path / "in", "")
    plain = tmp_path / "s"
    _ok(["build", "--input", str(base), "--out", str(plain), "--no-features", "--ingest-workers", "1"])
    want = _ok(["query", str(plain), QUERY])
    (tmp_path / QUOTED).mkdir()
    store = plain.rename(tmp_path / QUOTED / "s")
    assert _ok(["query", str(store), QUERY]) == want
    _ok(["append", "--store", str(store), "--input", str(new), "--no-progress"])
    n = len(make_records(40, seed=5))
    assert _ok(["query", str(store), "SELECT count(*) AS n FROM samples"]).count(str(n)) == 1
