"""One input record: its fields parsed and checked by the reference code's rules (numbers may be numeric
strings), as a sample row and its comment rows."""
from __future__ import annotations

import calendar
import math
import re
from datetime import datetime, timedelta
from typing import Any

from graphstore.errors import InputRecordError
from graphstore.jsonstream import too_long
from graphstore.schema import (
    COUNT_FIELDS, MAX_COUNT, MAX_DATE, MAX_ID, MAX_NAME_CHARS, MAX_TEXT_CHARS, MIN_DATE, PLATFORM_NAMES_EN,
    PLATFORMS, XSVIDEO_COMMENT_KEYS, XSVIDEO_KEYS,
)

REQUIRED_FIELDS = ("level", "platform", "final_state", "post_time", "current_time", "topic", "author_id")
_EN_TO_ZH = {v: k for k, v in XSVIDEO_KEYS.items()}
_PLATFORM_IDS = {name: i for i, name in enumerate(PLATFORMS)}
_PLATFORM_IDS.update({name.lower(): i for i, name in enumerate(PLATFORM_NAMES_EN)})

_EPOCH, _SECOND = datetime(1970, 1, 1), timedelta(seconds=1)
_MIN_TS, _MAX_TS = ((datetime.fromisoformat(d) - _EPOCH) // _SECOND for d in (MIN_DATE, MAX_DATE))


def show(value: Any, limit: int = 60) -> str:
    """repr(value), cut to about `limit` characters (an error message never quotes a whole huge value)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def parse_time(value: Any, sample_id: str, field: str) -> int:
    """Seconds since the epoch of 'YYYY-MM-DD[ HH:MM[:SS]]' read as UTC, in MIN_DATE <= t < MAX_DATE."""
    if not isinstance(value, str):
        raise InputRecordError(sample_id, field, f"expected a date string, got {show(value)}")
    try:
        dt = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InputRecordError(sample_id, field, f"unparsable date {show(value)}") from None
    # the year first: an offset on 0001-01-01 or 9999-12-31 would overflow the UTC conversion
    if 1999 <= dt.year <= 2100:
        # naive: whole seconds since the epoch (what timegm(dt.timetuple()) gives, without building the tuple)
        ts = calendar.timegm(dt.utctimetuple()) if dt.tzinfo else (dt - _EPOCH) // _SECOND
        if _MIN_TS <= ts < _MAX_TS:
            return ts
    raise InputRecordError(sample_id, field, f"date {show(value)} is outside the plausible range "
                                             f"{MIN_DATE} .. {MAX_DATE} (UTC)")


def parse_number(value: Any, sample_id: str, field: str, *, integral: bool) -> int | float | None:
    """A finite, non-negative JSON number or numeric string, read as the reference code's float() reads it.

    None stays None; booleans, other types, strings float() rejects ("1.2万"), NaN, infinities and
    negative values are errors; with `integral`, so is a fraction (12.0 and "12.0" read as 12).
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InputRecordError(sample_id, field, f"expected a number or numeric string, got {show(value)}")
    number = _from_string(value, sample_id, field) if isinstance(value, str) else value
    if isinstance(number, float) and not math.isfinite(number):
        raise InputRecordError(sample_id, field, f"expected a finite number, got {show(value)}")
    if number < 0:
        raise InputRecordError(sample_id, field, f"must not be negative, got {show(value)}")
    if number > MAX_COUNT:
        raise InputRecordError(sample_id, field, f"value {show(value)} is too large (more than 2^53)")
    if not integral:
        return float(number)
    if number != int(number):
        raise InputRecordError(sample_id, field, f"expected a whole number, got {show(value)}")
    return int(number)


def _from_string(text: str, sample_id: str, field: str) -> int | float:
    """int(text) when it is a whole number written as one (exact beyond 2^53), else float(text)."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise InputRecordError(sample_id, field, f"not a number: {show(text)}") from None


_DECIMAL = re.compile(r"(?:0|[1-9][0-9]{0,18})\Z")  # ASCII digits, no sign, no leading zero, <= 19 digits


def sample_label(value: Any) -> str:
    """How an error names a sample whose id may be bad: the id itself if it is a short string, else a repr."""
    return value if isinstance(value, str) and len(value) <= 40 and value.isprintable() else show(value, 40)


def decimal_id(value: Any) -> str | None:
    """`value` as a canonical decimal id ('0' or digits with no leading zero, at most 2^63 - 1), or None.

    The reference code reads ids with int() and looks them up again as str(int(id)): only this form
    survives both. A JSON integer in range is read as its decimal string.
    """
    if value.__class__ is int:
        return str(value) if 0 <= value <= MAX_ID else None
    if isinstance(value, str) and _DECIMAL.match(value) and int(value) <= MAX_ID:
        return value
    return None


def normalize_record(sample_id: Any, rec: Any, english: bool) -> tuple[dict, list[dict]]:
    """Validate one record; return (sample row, comment rows) with English names."""
    raw_id, sample_id = sample_id, decimal_id(sample_id)
    if sample_id is None:
        raise InputRecordError(sample_label(raw_id), "id", "a sample id must be a decimal string ('0', or digits with "
                                                           f"no leading zero, at most 2^63 - 1), got {show(raw_id)}")
    if not isinstance(rec, dict):
        raise InputRecordError(sample_id, "<record>", f"expected an object, got {type(rec).__name__}")
    if english:
        get = rec.get
        has = rec.__contains__
        name = lambda f: f  # noqa: E731
    else:
        get = lambda f, d=None: rec.get(_EN_TO_ZH[f], d)  # noqa: E731
        has = lambda f: _EN_TO_ZH[f] in rec  # noqa: E731
        name = lambda f: _EN_TO_ZH[f]  # noqa: E731
    for f in REQUIRED_FIELDS:
        if not has(f):
            raise InputRecordError(sample_id, name(f), "missing required key")
    level = _level(get("level"), sample_id, name("level"))
    pid = _platform_id(get("platform"), sample_id, name("platform"))
    final_state = get("final_state")
    if not isinstance(final_state, bool):
        raise InputRecordError(sample_id, name("final_state"), f"expected true/false, got {show(final_state)}")
    post_ts = parse_time(get("post_time"), sample_id, name("post_time"))
    ctime_ts = parse_time(get("current_time"), sample_id, name("current_time"))
    duration = parse_number(get("duration_s"), sample_id, name("duration_s"), integral=False)
    history = _history(get("history"), sample_id, name("history"))
    row = {
        "sample_id": sample_id, "url": _text(get("url"), sample_id, name("url"), MAX_NAME_CHARS),
        "level": int(level), "platform": PLATFORMS[pid], "platform_id": pid, "final_state": final_state,
        "post_time": get("post_time"), "post_ts": post_ts,
        "description": _text(get("description"), sample_id, name("description")),
        "title": _text(get("title"), sample_id, name("title")), "duration_s": duration,
        "current_time": get("current_time"), "ctime_ts": ctime_ts,
        "topic": _string(get("topic"), sample_id, name("topic"), MAX_NAME_CHARS),
        "history": history, "author_id": _name(get("author_id"), sample_id, name("author_id")),
    }
    for f in COUNT_FIELDS:
        row[f] = parse_number(get(f), sample_id, name(f), integral=True)
    comments = _comments(get("comments"), sample_id, name("comments"), english)
    row["num_comments"] = len(comments)
    return row, comments


def _level(value: Any, sample_id: str, field: str) -> int:
    """The label: a whole number 0-9, as a JSON number or a numeric string ("3", "3.0")."""
    try:
        level = parse_number(value, sample_id, field, integral=True)
    except InputRecordError:
        level = None
    if level is None or level > 9:
        raise InputRecordError(sample_id, field, f"level must be an integer 0-9, got {show(value)}")
    return level


def _platform_id(value: Any, sample_id: str, field: str) -> int:
    """Index in PLATFORMS of a Chinese platform name or its English name (any case)."""
    pid = _PLATFORM_IDS.get(value, _PLATFORM_IDS.get(value.lower())) if isinstance(value, str) else None
    if pid is None:
        raise InputRecordError(sample_id, field,
                               f"unknown platform {show(value)} (expected one of {', '.join(PLATFORMS)})")
    return pid


def _history(value: Any, sample_id: str, field: str) -> list[str]:
    """Earlier sample ids of the same video (strings, or JSON integers read as decimal strings); not the sample itself.

    Whether each names a sample is checked by the build (a string that is not a decimal id never does).
    """
    if value is None:
        return []
    if not isinstance(value, list):
        raise InputRecordError(sample_id, field, f"expected a list of sample ids, got {show(value)}")
    history = []
    for h in value:
        hid = decimal_id(h) if h.__class__ is int else h
        if not isinstance(hid, str) or len(hid) > MAX_NAME_CHARS:
            raise InputRecordError(sample_id, field, f"expected a list of sample ids, got an entry {show(h)}")
        history.append(hid)
    if sample_id in history:
        raise InputRecordError(sample_id, field, "the history lists the sample itself")
    return history


def _string(value: Any, sample_id: str, field: str, max_chars: int) -> str:
    """A JSON string of at most `max_chars` characters (never a number, boolean, list or object)."""
    if not isinstance(value, str):
        raise InputRecordError(sample_id, field, f"expected a string, got {show(value)}")
    if len(value) > max_chars:
        raise InputRecordError(sample_id, field, too_long("string", len(value), max_chars))
    return value


def _text(value: Any, sample_id: str, field: str, max_chars: int = MAX_TEXT_CHARS) -> str:
    """An optional text: a string, or null / absent for the empty text."""
    return "" if value is None else _string(value, sample_id, field, max_chars)


def _name(value: Any, sample_id: str, field: str) -> str:
    """An author or comment id: a string, or a whole JSON number 0 .. 2^63 - 1 read as its decimal string."""
    if value.__class__ is int:
        if 0 <= value <= MAX_ID:
            return str(value)
        raise InputRecordError(sample_id, field, f"a numeric id must be 0 .. 2^63 - 1, got {show(value)}")
    if not isinstance(value, str):
        raise InputRecordError(sample_id, field,
                               f"expected a string or a whole number 0 .. 2^63 - 1, got {show(value)}")
    return _string(value, sample_id, field, MAX_NAME_CHARS)


def _comments(raw: Any, sample_id: str, field: str, english: bool) -> list[dict]:
    if raw is None:
        return []
    if english:
        if not isinstance(raw, list):
            raise InputRecordError(sample_id, field, f"expected a list of {{id, text, time}}, got {show(raw)}")
        items = [(c["id"] if isinstance(c, dict) and "id" in c else str(i), c) for i, c in enumerate(raw)]
        text_key, time_key = "text", "time"
    else:
        if not isinstance(raw, dict):
            raise InputRecordError(sample_id, field,
                                   f"expected an object of comment id -> {{评论内容, 评论时间}}, got {show(raw)}")
        items = list(raw.items())
        text_key, time_key = list(XSVIDEO_COMMENT_KEYS)
    out = []
    for i, (cid, c) in enumerate(items):
        where = f"{field}[{cid if isinstance(cid, str) and len(cid) <= 40 else i}]"
        cid = _name(cid, sample_id, f"{where}.id" if english else where)
        if not isinstance(c, dict) or text_key not in c or time_key not in c:
            raise InputRecordError(sample_id, where, f"expected an object with {text_key!r} and {time_key!r}, "
                                                     f"got {show(c)}")
        ts = parse_time(c[time_key], sample_id, f"{where}.{time_key}")
        text = _text(c[text_key], sample_id, f"{where}.{text_key}")
        out.append({"comment_id": cid, "text": text, "time": c[time_key], "timestamp": ts})
    return out
