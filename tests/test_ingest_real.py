"""Ingest reads the released file as the reference code does: numeric strings, and the rules it implies."""
from __future__ import annotations

import numpy as np
import pytest

from graphstore.build import build_store
from graphstore.cli import main as cli_main
from graphstore.schema import XSVIDEO_KEYS
from graphstore.store import GraphStore
from tests.xsvideo_fixtures import make_records, write_jsonl, write_xsvideo

WRITERS = {"xs": (write_xsvideo, "xs.json"), "jsonl": (write_jsonl, "xs.jsonl")}


def _field(name: str, fmt: str) -> str:
    """The field name an error message uses: the Chinese key in format 1, the English one in JSON Lines."""
    return {v: k for k, v in XSVIDEO_KEYS.items()}[name] if fmt == "xs" else name


def _write(tmp_path, records, fmt):
    write, name = WRITERS[fmt]
    return write(tmp_path / name, records)


def _build(tmp_path, records, fmt, out="store"):
    return GraphStore.open(build_store(_write(tmp_path, records, fmt), tmp_path / out, featurize=False, progress=False))


STRING_VALUES = {"likes": "123", "views": "12.0", "shares": " 7 ", "collects": "1e3", "fans": "0",
                 "comment_count": "5.000", "duration_s": "7.5", "level": "3"}
EXPECTED = {"likes": 123, "views": 12, "shares": 7, "collects": 1000, "fans": 0, "comment_count": 5,
            "duration": 7.5, "level": 3}


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_numeric_strings_are_stored_as_the_numbers(tmp_path, fmt):
    records = make_records(6, seed=2)
    sid = sorted(records)[2]
    numeric = {k: float(v) if k == "duration_s" else int(float(v)) for k, v in STRING_VALUES.items()}
    records[sid].update(numeric)
    as_numbers = _build(tmp_path, records, fmt, "numbers")
    records[sid].update(STRING_VALUES)
    as_strings = _build(tmp_path, records, fmt, "strings")
    node = int(as_strings.video_index([sid])[0])
    for column, value in EXPECTED.items():
        got = as_strings.labels() if column == "level" else as_strings.column(column)
        want = as_numbers.labels() if column == "level" else as_numbers.column(column)
        np.testing.assert_array_equal(got, want, err_msg=column)
        assert got[node] == value, column
    assert not as_strings.column("likes_missing")[node]


def _set(field: str, value):
    return lambda records, sid: records[sid].update({field: value})


def _first_two_states(records) -> tuple[str, str]:
    """Ids of the first two states (by current time) of a video that has two or more."""
    by_url: dict[str, list[str]] = {}
    for s, r in records.items():
        by_url.setdefault(r["url"], []).append(s)
    states = next(v for v in by_url.values() if len(v) >= 2)
    first, later = sorted(states, key=lambda s: records[s]["current_time"])[:2]
    return first, later


BAD = {
    "count not a number": ("likes", _set("likes", "1.2万"), "not a number"),
    "count boolean": ("likes", _set("likes", True), "expected a number"),
    "count fraction": ("views", _set("views", 12.5), "whole number"),
    "count fraction string": ("views", _set("views", "12.5"), "whole number"),
    "count NaN string": ("shares", _set("shares", "NaN"), "finite"),
    "count infinity string": ("shares", _set("shares", "inf"), "finite"),
    "count negative string": ("fans", _set("fans", "-3"), "negative"),
    "count too large": ("fans", _set("fans", "1e30"), "too large"),
    "count object": ("collects", _set("collects", {"n": 1}), "expected a number"),
    "duration boolean": ("duration_s", _set("duration_s", False), "expected a number"),
    "duration not a number": ("duration_s", _set("duration_s", "15秒"), "not a number"),
    "duration infinity": ("duration_s", _set("duration_s", "Infinity"), "finite"),
    "level fraction": ("level", _set("level", 3.5), "0-9"),
    "level fraction string": ("level", _set("level", "3.5"), "0-9"),
    "level boolean": ("level", _set("level", True), "0-9"),
    "level NaN string": ("level", _set("level", "nan"), "0-9"),
    "level 10 string": ("level", _set("level", "10"), "0-9"),
    "unknown platform": ("platform", _set("platform", "tiktok"), "unknown platform"),
    "platform not a string": ("platform", _set("platform", 1), "unknown platform"),
    "self history": ("history", lambda r, s: r[s].update(history=[s]), "itself"),
}


@pytest.mark.parametrize("fmt", sorted(WRITERS))
@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_values_name_sample_and_field_exit_2(tmp_path, capsys, case, fmt):
    field, mutate, message = BAD[case]
    records = make_records(6, seed=2)
    sid = sorted(records)[1]
    mutate(records, sid)
    src = _write(tmp_path, records, fmt)
    assert cli_main(["build", "--input", str(src), "--out", str(tmp_path / "o"), "--no-features"]) == 2
    err = capsys.readouterr().err
    assert f"sample {sid}: field {_field(field, fmt)!r}" in err and message in err, err
    assert "Traceback" not in err and not (tmp_path / "o").exists()


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_history_naming_a_later_state_is_rejected(tmp_path, capsys, fmt):
    records = make_records(6, seed=2)
    sid, later = _first_two_states(records)
    records[sid]["history"] = [later]
    src = _write(tmp_path, records, fmt)
    assert cli_main(["build", "--input", str(src), "--out", str(tmp_path / "o"), "--no-features"]) == 2
    err = capsys.readouterr().err
    assert f"sample {sid}: field {_field('history', fmt)!r}" in err and f"{later!r} is a later state" in err, err


def test_history_of_earlier_states_is_accepted(tmp_path):
    records = make_records(6, seed=2)
    assert any(r["history"] for r in records.values())
    store = _build(tmp_path, records, "xs")
    assert store.num_edges("is_history_of") == sum(len(r["history"]) for r in records.values())
