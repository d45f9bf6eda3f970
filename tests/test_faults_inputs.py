"""Input limits and typed fields of build/append ingest: each bad value names the sample and the field, exit 2.

Both input formats follow the same rules (the released JSON object with Chinese keys, and JSON Lines).
Inputs that used to exhaust memory run in a subprocess under an address-space limit.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from graphstore.build import build_store
from graphstore.cli import main as cli_main
from graphstore.errors import InputRecordError
from graphstore.ingest import ingest
from graphstore.schema import MAX_JSON_DEPTH, MAX_NAME_CHARS, MAX_TEXT_CHARS, XSVIDEO_KEYS
from graphstore.store import GraphStore
from tests.xsvideo_fixtures import file_digests, make_records, to_xsvideo

ROOT = Path(__file__).resolve().parents[1]
_ZH = {v: k for k, v in XSVIDEO_KEYS.items()}
FORMATS = ("xs", "jsonl")
DEEP = "__DEEP__"  # a string value the writer replaces with raw JSON text (json.dumps recurses on deep lists)


def _key(name: str, fmt: str) -> str:
    """The key of English field `name` in a format (an error names the field by it)."""
    return _ZH[name] if fmt == "xs" else name


def _comment_keys(fmt: str) -> tuple[str, str, str]:
    """(comments key, text key, time key) of a format."""
    return ("评论", "评论内容", "评论时间") if fmt == "xs" else ("comments", "text", "time")


def _comment(rec: dict, fmt: str) -> dict:
    """The record's only comment, 'c1' (replacing any others), as the format holds it."""
    field, text, time = _comment_keys(fmt)
    c = {text: "好看", time: "2024-12-01 10:00:00"}
    rec[field] = {"c1": c} if fmt == "xs" else [{"id": "c1", **c}]
    return rec[field]["c1"] if fmt == "xs" else rec[field][0]


def _records(fmt: str, n: int = 6, seed: int = 2) -> dict[str, dict]:
    """Sample id -> record in the format's own shape (Chinese keys and comment objects for xs)."""
    records = make_records(n, seed=seed)
    return to_xsvideo(records) if fmt == "xs" else {k: dict(r) for k, r in records.items()}


def _write(path: Path, data: dict[str, dict], fmt: str, raw: str | None = None) -> Path:
    """Write the records; `raw` JSON text replaces the value DEEP where it occurs."""
    if fmt == "xs":
        text = json.dumps(data, ensure_ascii=False)
    else:
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in data.values())
    if raw is not None:
        text = text.replace(json.dumps(DEEP), raw)
    path.write_text(text)
    return path


def _case(tmp_path: Path, fmt: str, mutate, raw: str | None = None) -> tuple[Path, str]:
    data = _records(fmt)
    sid = sorted(data)[1]
    mutate(data[sid], fmt)
    return _write(tmp_path / f"in.{fmt}", data, fmt, raw), sid


def _ingest_error(src: Path, staging: Path, **kwargs) -> InputRecordError:
    with pytest.raises(InputRecordError) as err:
        ingest(src, staging, progress=False, workers=1, **kwargs)
    return err.value


def _set(name: str, value):
    return lambda rec, fmt: rec.update({_key(name, fmt): value})


def _set_comment(which: int, value):
    """Set the comment's text (0) or time (1)."""
    return lambda rec, fmt: _comment(rec, fmt).update({_comment_keys(fmt)[1 + which]: value})


def _drop_comment_text(rec, fmt):
    del _comment(rec, fmt)[_comment_keys(fmt)[1]]


def _nested(depth: int) -> str:
    """A list nested `depth` levels deep, as JSON text."""
    return "[" * depth + "]" * depth


# (field as a function of the format, mutation, raw text for DEEP, words the error must hold)
TOP = lambda name: lambda fmt: _key(name, fmt)  # noqa: E731
CTEXT = lambda fmt: f"{_comment_keys(fmt)[0]}[c1].{_comment_keys(fmt)[1]}"  # noqa: E731
CTIME = lambda fmt: f"{_comment_keys(fmt)[0]}[c1].{_comment_keys(fmt)[2]}"  # noqa: E731
CASES = {
    # 1. nesting depth: the record is level 1, so a field's value may nest MAX_JSON_DEPTH - 1 containers
    "description nested too deep": (TOP("description"), _set("description", DEEP), _nested(MAX_JSON_DEPTH),
                                    f"nested deeper than {MAX_JSON_DEPTH} levels"),
    "unknown key nested too deep": (lambda fmt: "extra", lambda r, f: r.update(extra=DEEP), _nested(MAX_JSON_DEPTH),
                                    f"nested deeper than {MAX_JSON_DEPTH} levels"),
    # 2. integer size
    "count 2^70": (TOP("likes"), _set("likes", 2**70), None, "too large"),
    "count 2^60": (TOP("views"), _set("views", 2**60), None, "too large"),
    "count 2^60 string": (TOP("fans"), _set("fans", str(2**60)), None, "too large"),
    "duration 1e300": (TOP("duration_s"), _set("duration_s", 1e300), None, "too large"),
    "author id 2^70": (TOP("author_id"), _set("author_id", 2**70), None, "2^63 - 1"),
    # 3. string size
    "description too long": (TOP("description"), _set("description", "长" * (MAX_TEXT_CHARS + 1)), None,
                             "longer than the limit"),
    "title too long": (TOP("title"), _set("title", "x" * (MAX_TEXT_CHARS + 1)), None, "longer than the limit"),
    "topic too long": (TOP("topic"), _set("topic", "t" * (MAX_NAME_CHARS + 1)), None, "longer than the limit"),
    # (any string past MAX_TEXT_CHARS stops the reader: the error names the record's field that holds it)
    "comment text too long": (lambda fmt: _comment_keys(fmt)[0], _set_comment(0, "c" * (MAX_TEXT_CHARS + 1)), None,
                              "longer than the limit"),
    "unknown key too long": (lambda fmt: "extra", lambda r, f: r.update(extra="e" * (MAX_TEXT_CHARS + 1)), None,
                             "longer than the limit"),
    # 4. typed fields
    "title object": (TOP("title"), _set("title", {"zh": "标题"}), None, "expected a string"),
    "description list": (TOP("description"), _set("description", ["描述"]), None, "expected a string"),
    "description number": (TOP("description"), _set("description", 12), None, "expected a string"),
    "topic not a string": (TOP("topic"), [_set("topic", v) for v in (True, 7, None, ["话题"])], None,
                           "expected a string"),
    "url number": (TOP("url"), _set("url", 5), None, "expected a string"),
    "author id not a string or an integer": (
        TOP("author_id"), [_set("author_id", v) for v in (False, 1.5, 5.0, {"id": "u1"}, None)], None,
        "expected a string"),
    "author id negative": (TOP("author_id"), _set("author_id", -3), None, "0 .. 2^63 - 1"),
    "history entry not an id": (
        TOP("history"), [_set("history", v) for v in ([1001.0], [True], [None], [{"id": "1001"}], [-1], "1001")], None,
        "expected a list of sample ids"),
    "comment text number": (CTEXT, _set_comment(0, 42), None, "expected a string"),
    "comment text object": (CTEXT, _set_comment(0, {"t": "x"}), None, "expected a string"),
    "comment without text": (lambda fmt: f"{_comment_keys(fmt)[0]}[c1]", _drop_comment_text, None,
                             "expected an object with"),
    # 5. dates
    "post time year 1": (TOP("post_time"), _set("post_time", "0001-01-01"), None, "plausible range"),
    "post time year 1 with an offset": (TOP("post_time"), _set("post_time", "0001-01-01T00:00:00+01:00"), None,
                                        "plausible range"),
    "post time 1999": (TOP("post_time"), _set("post_time", "1999-12-31 23:59:59"), None, "plausible range"),
    "current time 2100": (TOP("current_time"), _set("current_time", "2100-01-01"), None, "plausible range"),
    "current time 9999": (TOP("current_time"), _set("current_time", "9999-12-31 23:59:59"), None, "plausible range"),
    "comment time 1970": (CTIME, _set_comment(1, "1970-01-01 00:00:00"), None, "plausible range"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_value_names_sample_and_field(tmp_path, case):
    field, mutations, raw, words = CASES[case]
    for k, mutate in enumerate(mutations if isinstance(mutations, list) else [mutations]):
        for fmt in FORMATS:
            src, sid = _case(tmp_path, fmt, mutate, raw)
            err = _ingest_error(src, tmp_path / f"staging-{fmt}-{k}")
            assert (err.sample_id, err.field) == (sid, field(fmt)) and words in err.problem, (fmt, k, err)
            assert len(str(err)) < 300, "the message quotes a huge value"


BAD_IDS = ["abc", "007", "-5", "+5", " 12", "1e3", "12.0", "١٢", "1_000", "9" * 20, str(2**63), ""]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("bad", BAD_IDS)
def test_sample_ids_are_canonical_decimal_strings(tmp_path, fmt, bad):
    data = _records(fmt)
    sid = sorted(data)[1]
    data = {(bad if k == sid else k): ({**r, "id": bad} if k == sid and fmt == "jsonl" else r) for k, r in data.items()}
    err = _ingest_error(_write(tmp_path / f"in.{fmt}", data, fmt), tmp_path / "staging")
    assert err.field == "id" and "decimal string" in err.problem, err
    assert err.sample_id in (bad, repr(bad)), err


@pytest.mark.parametrize("bad", [2**63, -1, 1.5, True, None, {"a": 1}, [1]])
def test_json_lines_id_that_is_not_a_decimal_id(tmp_path, bad):
    data = _records("jsonl")
    data[sorted(data)[1]]["id"] = bad
    err = _ingest_error(_write(tmp_path / "in.jsonl", data, "jsonl"), tmp_path / "staging")
    assert err.field == "id" and ("decimal string" in err.problem or "too large" in err.problem), err


@pytest.mark.parametrize("fmt", FORMATS)
def test_values_at_the_limits_and_numeric_ids_are_accepted(tmp_path, fmt):
    """What the rules admit builds, and one step past each bound does not."""
    records = make_records(6, seed=2)
    ids = sorted(records)
    listed = {h for r in records.values() for h in r["history"]}
    later = next(s for s in ids if records[s]["history"] and s not in listed)  # a last state
    first = next(s for s in ids if s != later)
    records[first].update(description="长" * MAX_TEXT_CHARS, topic="t" * MAX_NAME_CHARS, title=None,
                          post_time="2000-01-01", author_id=int(records[first]["author_id"][1:]))
    records[later].update(history=[int(h) for h in records[later]["history"]], current_time="2099-12-31 23:59:59")

    def write(name: str, depth: int) -> Path:
        data = to_xsvideo(records) if fmt == "xs" else {k: dict(r) for k, r in records.items()}
        data[later]["extra"] = DEEP  # an unknown key, nested as deep as a record may be
        if fmt == "jsonl":
            data[later]["id"] = int(later)  # a JSON integer id is its decimal string
        return _write(tmp_path / f"{name}.{fmt}", data, fmt, _nested(depth))

    store = GraphStore.open(build_store(write("ok", MAX_JSON_DEPTH - 1), tmp_path / "store", featurize=False,
                                        progress=False))
    row = {r["sample_id"]: r for r in store.samples_table().to_pylist()}
    assert set(row) == set(ids)
    assert len(row[first]["description"]) == MAX_TEXT_CHARS and row[first]["title"] == ""
    assert row[first]["author_id"] == records[first]["author_id"].__str__()
    assert row[later]["history"] == [str(h) for h in records[later]["history"]]
    # one step past each bound
    err = _ingest_error(write("deep", MAX_JSON_DEPTH), tmp_path / "s1")
    assert (err.sample_id, err.field) == (later, "extra"), err
    records[first]["post_time"] = "1999-12-31 23:59:59"
    err = _ingest_error(write("early", MAX_JSON_DEPTH - 1), tmp_path / "s2")
    assert (err.sample_id, err.field) == (first, _key("post_time", fmt)), err


def test_numeric_author_id_is_the_same_author_as_its_string(tmp_path):
    records = make_records(8, seed=3)
    as_strings = GraphStore.open(build_store(_write(tmp_path / "a.jsonl", records, "jsonl"), tmp_path / "a",
                                             featurize=False, progress=False))
    for r in records.values():
        r["author_id"] = int(r["author_id"][1:])
        r["history"] = [int(h) for h in r["history"]]
    as_numbers = GraphStore.open(build_store(_write(tmp_path / "b.jsonl", records, "jsonl"), tmp_path / "b",
                                             featurize=False, progress=False))
    for rel in ("has_same_author_as", "is_history_of"):
        assert as_numbers.num_edges(rel) == as_strings.num_edges(rel), rel
    assert as_numbers.samples_table(["author_id"]).column(0).to_pylist()[0].isdigit()
    # a float that equals an integer is not an id
    records[next(iter(records))]["author_id"] = 5.0
    assert _ingest_error(_write(tmp_path / "c.jsonl", records, "jsonl"), tmp_path / "c").field == "author_id"


def test_json_lines_first_line_longer_than_the_format_probe(tmp_path):
    """A JSON Lines file whose first record is longer than the 4 KB head is still JSON Lines."""
    records = make_records(4, seed=1)
    records[next(iter(records))]["description"] = "描" * 5000
    store = GraphStore.open(build_store(_write(tmp_path / "long.jsonl", records, "jsonl"), tmp_path / "s",
                                        featurize=False, progress=False))
    assert sorted(store.sample_ids()) == sorted(records)


def test_limit_errors_come_in_file_order_with_parallel_workers(tmp_path):
    """Worker k of 2 reads blocks of 3: a depth error at position 4 comes before a bad level at 7 or a duplicate."""
    data = _records("jsonl", n=8, seed=5)
    ids = list(data)
    rows = [dict(data[s]) for s in ids]
    rows[4]["description"] = DEEP
    rows[7]["level"] = 42
    src = tmp_path / "a.jsonl"
    write = lambda: _write(src, {str(k): r for k, r in enumerate(rows)}, "jsonl", _nested(40))  # noqa: E731
    write()
    with pytest.raises(InputRecordError) as err:
        ingest(src, tmp_path / "a", progress=False, workers=2, block_records=3)
    assert (err.value.sample_id, err.value.field) == (ids[4], "description"), err.value
    rows[2] = dict(rows[1])  # a duplicate before the depth error wins
    write()
    with pytest.raises(InputRecordError, match="duplicate sample id"):
        ingest(src, tmp_path / "b", progress=False, workers=2, block_records=3)


def test_staging_path_with_a_quote(tmp_path):
    """The duplicate-id query reads the staging tables through quoted SQL literals."""
    data = _records("xs")
    staged = ingest(_write(tmp_path / "in.json", data, "xs"), tmp_path / "it's" / "staging", progress=False, workers=1)
    assert staged.num_samples == len(data)


@pytest.mark.parametrize("fmt", FORMATS)
def test_cli_exit_2_and_nothing_written(tmp_path, capsys, fmt):
    src, sid = _case(tmp_path, fmt, _set("topic", False))
    assert cli_main(["build", "--input", str(src), "--out", str(tmp_path / "o"), "--no-features"]) == 2
    err = capsys.readouterr().err
    assert f"sample {sid}: field {_key('topic', fmt)!r}: expected a string" in err and "Traceback" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == [src.name]


def test_append_refuses_a_typed_field_and_leaves_the_store(tmp_path):
    from graphstore.append import append_store

    records = make_records(12, seed=4)
    urls = sorted({r["url"] for r in records.values()})
    old = set(urls[: len(urls) // 2])  # whole videos: history stays within a video
    base = {s: r for s, r in records.items() if r["url"] in old}
    rest = {s: r for s, r in records.items() if r["url"] not in old}
    build_store(_write(tmp_path / "base.jsonl", base, "jsonl"), tmp_path / "s", featurize=False, progress=False)
    before = file_digests(tmp_path / "s")
    sid = sorted(rest)[0]
    rest[sid]["title"] = {"zh": "标题"}
    with pytest.raises(InputRecordError) as err:
        append_store(tmp_path / "s", _write(tmp_path / "rest.jsonl", rest, "jsonl"), progress=False)
    assert (err.value.sample_id, err.value.field) == (sid, "title")
    assert file_digests(tmp_path / "s") == before


# --- inputs that used to exhaust memory or the stack: a subprocess under an address-space limit ------------
MEMORY_LIMIT = 3 * 2**30


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


@pytest.mark.skipif(not hasattr(resource, "RLIMIT_AS"), reason="needs RLIMIT_AS")
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("depth", [20_000, 100_000])
def test_deeply_nested_input_fails_fast_in_bounded_memory(tmp_path, fmt, depth):
    src, sid = _case(tmp_path, fmt, _set("description", DEEP), _nested(depth))
    assert src.stat().st_size > 2 * depth
    out = tmp_path / "o"
    proc = subprocess.run([sys.executable, "-m", "graphstore.cli", "build", "--input", str(src), "--out", str(out),
                           "--no-features"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          preexec_fn=_limited, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2, proc.stderr[-2000:]
    want = f"sample {sid}: field {_key('description', fmt)!r}: nested deeper than {MAX_JSON_DEPTH} levels"
    assert want in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert not out.exists() and not any(p.name.startswith("o.") for p in tmp_path.iterdir())
