"""Streaming parse and validation of XS-Video input files into Parquet staging tables."""
from __future__ import annotations

import calendar
import math
import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any, Callable, Iterator

import ijson
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from graphstore.errors import InputRecordError, UserError
from graphstore.jsonstream import (INT64_TOO_LARGE, JsonLimitError, Where, check_tree, first_value_event, line_value,
                                   object_items, too_long, top_level_value)
from graphstore.schema import (COUNT_FIELDS, MAX_COUNT, MAX_DATE, MAX_ID, MAX_JSON_DEPTH, MAX_NAME_CHARS,
                               MAX_TEXT_CHARS, MIN_DATE, PLATFORM_NAMES_EN, PLATFORMS, XSVIDEO_COMMENT_KEYS,
                               XSVIDEO_KEYS)
from graphstore.sql import literal

REQUIRED_FIELDS = ("level", "platform", "final_state", "post_time", "current_time", "topic", "author_id")
_EN_TO_ZH = {v: k for k, v in XSVIDEO_KEYS.items()}
_PLATFORM_IDS = {name: i for i, name in enumerate(PLATFORMS)}
_PLATFORM_IDS.update({name.lower(): i for i, name in enumerate(PLATFORM_NAMES_EN)})

SAMPLE_SCHEMA = pa.schema([
    ("pos", pa.int64()), ("sample_id", pa.string()), ("url", pa.string()), ("level", pa.int8()),
    ("platform", pa.string()), ("platform_id", pa.int8()), ("final_state", pa.bool_()),
    ("post_time", pa.string()), ("post_ts", pa.int64()), ("description", pa.string()),
    ("title", pa.string()), ("duration_s", pa.float64()), ("current_time", pa.string()),
    ("ctime_ts", pa.int64()), *[(c, pa.int64()) for c in COUNT_FIELDS], ("topic", pa.string()),
    ("history", pa.list_(pa.string())), ("author_id", pa.string()), ("num_comments", pa.int32()),
])
COMMENT_SCHEMA = pa.schema([
    ("pos", pa.int64()), ("cpos", pa.int32()), ("comment_id", pa.string()), ("text", pa.string()),
    ("time", pa.string()), ("timestamp", pa.int64()),
])


@dataclass
class IngestResult:
    """Where the staging tables went and how many rows they hold."""

    samples_path: Path
    comments_path: Path
    num_samples: int
    num_comments: int
    input_format: str


def detect_format(path: Path) -> str:
    """'xsvideo-json' for one JSON object, 'jsonl' for JSON Lines."""
    with open(path, "rb") as f:
        head = f.read(4096).lstrip()
    if not head:
        raise UserError(f"{path}: the input file is empty")
    if head[:1] == b"{":
        first_line = head.split(b"\n", 1)[0].strip()
        try:
            obj = orjson.loads(first_line)
        except orjson.JSONDecodeError:
            # a first line longer than the head, or one with a value orjson refuses (too deep, a big integer):
            # the released file's first value is a record (an object), a JSON Lines record's is a field
            with open(path, "rb") as f:
                return "xsvideo-json" if first_value_event(f) in ("start_map", None) else "jsonl"
        return "jsonl" if isinstance(obj, dict) and ("id" in obj or "level" in obj) else "xsvideo-json"
    raise UserError(f"{path}: not a JSON object or JSON Lines file (starts with {head[:20]!r})")


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


_SKIPPED = object()  # a JSON Lines record another ingest worker parses


def iter_records(path: Path, fmt: str, f: IO[bytes], wanted: Callable[[int], bool] | None = None
                 ) -> Iterator[tuple[Any, Any]]:
    """Yield (sample id as given, raw record) pairs without loading the whole file.

    No record is built past the limits (MAX_JSON_DEPTH nested containers, MAX_TEXT_CHARS a string, 64-bit
    integers): InputRecordError names the sample and the field. With `wanted` (record position -> bool),
    JSON Lines records at other positions are not parsed and come as (None, _SKIPPED); the xsvideo format
    is parsed in full either way (one JSON object).
    """
    if fmt == "jsonl":
        pos = 0
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            if wanted is not None and not wanted(pos):
                pos += 1
                yield None, _SKIPPED
                continue
            pos += 1
            yield _jsonl_record(path, lineno, line)
        return
    where, last = Where(), None
    try:
        for sample_id, rec in object_items(f, where, MAX_JSON_DEPTH, MAX_TEXT_CHARS):
            last = sample_id
            yield sample_id, rec
    except JsonLimitError as exc:
        raise InputRecordError(sample_label(where.sample_id), exc.field, exc.problem) from None
    except ijson.JSONError as exc:
        if where.sample_id is not None and "integer overflow" in str(exc):
            raise InputRecordError(sample_label(where.sample_id), where.field, INT64_TOO_LARGE) from None
        if where.sample_id is not None:
            at = f"in sample {sample_label(where.sample_id)} (field {where.field!r})"
        else:
            at = f"after sample {sample_label(last)}" if last is not None else "before the first sample"
        raise UserError(f"{path}: malformed JSON {at}: {exc}") from None


def _jsonl_record(path: Path, lineno: int, line: bytes) -> tuple[Any, dict]:
    """(id, record) of one JSON Lines line within the limits; orjson reads it, a slow exact reader explains the rest.

    orjson refuses depths over 1024 like any malformed line: such a line is read again, within the limits,
    so that the error names the sample and the field. orjson reads integers beyond 64 bits as floats, which
    the typed fields then refuse (a float id, a count over 2^53); in keys the schema does not know they pass.
    """
    try:
        rec = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        _check_limits(line, lineno)
        raise UserError(f"{path}: line {lineno}: malformed JSON ({exc})") from None
    if not isinstance(rec, dict) or "id" not in rec:
        raise UserError(f"{path}: line {lineno}: record has no 'id' field")
    # a walk only where a limit could be broken: a line this short holds no string that long, nor this few brackets
    limit = None
    if len(line) > MAX_TEXT_CHARS or line.count(b"[") + line.count(b"{") > MAX_JSON_DEPTH:
        limit = check_tree(rec, MAX_JSON_DEPTH, MAX_TEXT_CHARS)
    if limit is not None:
        raise InputRecordError(sample_label(rec["id"]), limit.field, limit.problem)
    return rec["id"], rec


def _check_limits(line: bytes, lineno: int) -> None:
    """InputRecordError if the JSON on `line` breaks a limit (depth, string length, 64-bit integers)."""
    try:
        line_value(line, Where(), MAX_JSON_DEPTH, MAX_TEXT_CHARS)
    except JsonLimitError as limit:
        sid = top_level_value(line, "id")
        raise InputRecordError(f"on line {lineno}" if sid is None else sample_label(sid), limit.field,
                               limit.problem) from None
    except (ijson.JSONError, UnicodeDecodeError):
        pass


INGEST_BLOCK = 4096  # records: worker k of W validates the blocks b with b % W == k


@dataclass
class _PartResult:
    """What one ingest worker wrote, and the first error it met (position in the file, details)."""

    samples: int
    comments: int
    error_pos: int | None = None
    error: tuple | None = None  # ("record", sample id, field, problem) or ("user", message)


def _ingest_part(path: Path, fmt: str, staging: Path, part: int, parts: int, batch_rows: int,
                 progress: bool, block_records: int = INGEST_BLOCK) -> _PartResult:
    """Validate the records of blocks `part` (mod `parts`) of `block_records` records each and write them to
    staging/{samples,comments}/part-K.parquet.

    Stops at the first bad record, after writing the rows before it, so that the caller can order
    the errors of all workers (and duplicate ids) by position in the file.
    """
    samples_out = staging / "samples" / f"part-{part}.parquet"
    comments_out = staging / "comments" / f"part-{part}.parquet"
    rows: list[dict] = []
    crow: list[dict] = []
    n_samples = n_comments = 0
    error_pos, error = None, None
    size = os.path.getsize(path)
    mine = (lambda pos: (pos // block_records) % parts == part) if parts > 1 else None
    with open(path, "rb") as f, \
            pq.ParquetWriter(samples_out, SAMPLE_SCHEMA) as sw, \
            pq.ParquetWriter(comments_out, COMMENT_SCHEMA) as cw, \
            tqdm(total=size, unit="B", unit_scale=True, desc="ingest", disable=not progress, mininterval=1.0) as bar:
        pos = -1
        try:
            for pos, (sample_id, rec) in enumerate(iter_records(path, fmt, f, mine)):
                if mine is not None and not mine(pos):
                    continue
                try:
                    row, comments = normalize_record(sample_id, rec, english=fmt == "jsonl")
                except InputRecordError as exc:
                    error_pos, error = pos, ("record", exc.sample_id, exc.field, exc.problem)
                    break
                row["pos"] = pos
                rows.append(row)
                for cpos, c in enumerate(comments):
                    c["pos"], c["cpos"] = pos, cpos
                    crow.append(c)
                if len(rows) >= batch_rows:
                    sw.write_table(pa.Table.from_pylist(rows, SAMPLE_SCHEMA))
                    n_samples += len(rows)
                    rows = []
                    bar.update(f.tell() - bar.n)
                if len(crow) >= batch_rows:
                    cw.write_table(pa.Table.from_pylist(crow, COMMENT_SCHEMA))
                    n_comments += len(crow)
                    crow = []
        except InputRecordError as exc:  # a limit, met while reading record pos + 1
            error_pos, error = pos + 1, ("record", exc.sample_id, exc.field, exc.problem)
        except UserError as exc:  # malformed JSON: met while reading record pos + 1
            error_pos, error = pos + 1, ("user", str(exc))
        sw.write_table(pa.Table.from_pylist(rows, SAMPLE_SCHEMA))
        cw.write_table(pa.Table.from_pylist(crow, COMMENT_SCHEMA))
        n_samples += len(rows)
        n_comments += len(crow)
        bar.update(size - bar.n)
    return _PartResult(n_samples, n_comments, error_pos, error)


def ingest_workers() -> int:
    """Default ingest processes: the CPUs this process may run on, at most 4 (parsing is per process)."""
    return max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def ingest(path: Path, staging: Path, *, batch_rows: int = 50_000, progress: bool = True,
           workers: int | None = None, block_records: int = INGEST_BLOCK) -> IngestResult:
    """Validate every record of `path` and write samples/comments Parquet staging tables.

    With several `workers` (default: the CPUs available), each process reads the whole file but
    validates and writes only its share of the records; errors are reported as a single pass would
    report them: the first bad record (or duplicate id) in file order.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such input file")
    fmt = detect_format(path)
    workers = ingest_workers() if workers is None else max(1, int(workers))
    for sub in ("samples", "comments"):
        (staging / sub).mkdir(parents=True, exist_ok=True)
    if workers == 1:
        results = [_ingest_part(path, fmt, staging, 0, 1, batch_rows, progress)]
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_ingest_part, path, fmt, staging, k, workers, batch_rows, progress and k == 0,
                                   block_records) for k in range(workers)]
            results = [fut.result() for fut in futures]
    for sub, rows in (("samples", [r.samples for r in results]), ("comments", [r.comments for r in results])):
        # an empty part would make DuckDB forget that the columns hold no nulls (and write them as nullable)
        for k, n in enumerate(rows):
            if n == 0 and (k > 0 or any(rows)):
                (staging / sub / f"part-{k}.parquet").unlink()
    samples_glob, comments_glob = staging / "samples" / "*.parquet", staging / "comments" / "*.parquet"
    failed = [r for r in results if r.error is not None]
    first = min(failed, key=lambda r: r.error_pos) if failed else None
    _check_duplicate_ids(samples_glob, staging, None if first is None else first.error_pos)
    if first is not None:
        kind, *details = first.error
        raise InputRecordError(*details) if kind == "record" else UserError(details[0])
    n_samples = sum(r.samples for r in results)
    if n_samples == 0:
        raise UserError(f"{path}: the input holds no samples")
    return IngestResult(samples_glob, comments_glob, n_samples, sum(r.comments for r in results), fmt)


def _check_duplicate_ids(samples: Path, staging: Path, before: int | None) -> None:
    """InputRecordError at the first repeated sample id in file order (only among positions < `before`)."""
    import duckdb

    con = duckdb.connect()
    try:
        con.execute("SET memory_limit='1GB'")
        con.execute(f"SET temp_directory={literal(staging / 'spill')}")
        where = "" if before is None else f"WHERE pos < {int(before)}"
        con.execute(f"CREATE VIEW ids AS SELECT sample_id, pos FROM read_parquet({literal(samples)}) {where}")
        if con.execute("SELECT count(*) = count(DISTINCT sample_id) FROM ids").fetchone()[0]:
            return
        dup = con.execute("""
            SELECT sample_id FROM (SELECT sample_id, pos, row_number() OVER (PARTITION BY sample_id ORDER BY pos) AS k FROM ids)
            WHERE k = 2 ORDER BY pos LIMIT 1
        """).fetchone()
    finally:
        con.close()
    raise InputRecordError(dup[0], "id", "duplicate sample id")
