"""Streaming parse and validation of XS-Video input files into Parquet staging tables."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Iterator

import ijson
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from graphstore.errors import InputRecordError, UserError
from graphstore.jsonstream import (
    INT64_TOO_LARGE, JsonLimitError, Where, check_tree, first_value_event, line_value, object_items, top_level_value,
)
from graphstore.records import normalize_record, sample_label
from graphstore.schema import COUNT_FIELDS, MAX_JSON_DEPTH, MAX_TEXT_CHARS
from graphstore.sql import literal

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
