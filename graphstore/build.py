"""`graphstore build`: staging with DuckDB, then the Zarr store, written atomically."""
from __future__ import annotations

import logging
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import zarr

from graphstore.atomic import sync_file_system
from graphstore.errors import InputRecordError, UserError
from graphstore.featurize import featurize_into
from graphstore.format.generations import exclusive
from graphstore.ingest import ingest
from graphstore.format.integrity import seal
from graphstore.outputs import check_store_output
from graphstore.schema import (
    ATTRIBUTE_RELATIONS, COUNT_FIELDS, DAY, DEFAULT_CUTOFF, DEFAULT_MEMORY_LIMIT, DEFAULT_VAL_DAYS, FORMAT_VERSION,
    NODE_TYPES, PLATFORMS, RELATIONS,
)
from graphstore.sql import literal
from graphstore.topology import bucket_bounds, bucket_order
from graphstore.topology.ops import indptr_from_counts
from graphstore.format.arrays import array_checksum, write_array

log = logging.getLogger(__name__)


def build_store(
    input_path: str | Path,
    store_path: str | Path,
    *,
    overwrite: bool = False,
    cutoff: str = DEFAULT_CUTOFF,
    val_days: int = DEFAULT_VAL_DAYS,
    featurize: bool = True,
    feature_options: dict[str, Any] | None = None,
    memory_limit: str = DEFAULT_MEMORY_LIMIT,
    threads: int | None = None,
    progress: bool = True,
    ingest_workers: int | None = None,
) -> Path:
    """Build a store from an XS-Video JSON or JSON Lines file; returns the store path.

    `memory_limit` bounds DuckDB (it spills beyond it); `ingest_workers` processes parse and validate
    the input (default: the CPUs available, `graphstore.ingest.ingest_workers`).
    """
    input_path, store_path = Path(input_path), Path(store_path)
    options = feature_options or {}
    if store_path.name not in ("", ".", ".."):  # those check_store_output refuses
        _restore_replaced(store_path)
    check_store_output(store_path, overwrite=overwrite,
                       inputs=(input_path, options.get("video_features"), options.get("text_encoder")))
    cutoff_days = cutoff_day(cutoff)
    check_memory_limit(memory_limit)
    tmp = store_path.with_name(f"{store_path.name}.tmp-build")  # not hidden: DuckDB globs skip "." and "_" paths
    with ExitStack() as held:
        if store_path.exists():  # no writer may work on the store while it is replaced
            held.enter_context(exclusive(store_path))
        held.enter_context(_build_directory(tmp))
        _build_into(tmp, store_path, input_path, cutoff, cutoff_days, val_days, featurize, options, memory_limit,
                    threads, progress, ingest_workers)
    return store_path


@contextmanager
def _build_directory(tmp: Path) -> Iterator[None]:
    """Create `tmp` and hold its lock: a second build of the same --out is refused, a dead one's leftover removed."""
    if tmp.exists():
        with exclusive(tmp, f"another build is writing {tmp}"):
            pass
        shutil.rmtree(tmp)
    try:
        tmp.mkdir()
    except FileExistsError:
        raise UserError(f"another build is writing {tmp}") from None
    with exclusive(tmp, f"another build is writing {tmp}"):
        yield


def _aside(store_path: Path) -> Path:
    """Where `_replace` keeps the old store between its two renames."""
    return store_path.with_name(f"{store_path.name}.tmp-old")


def _restore_replaced(store_path: Path) -> None:
    """Put back a store that a build killed inside `_replace` had renamed aside (between its two renames)."""
    old = _aside(store_path)
    if not store_path.exists() and (old / "zarr.json").is_file():
        old.rename(store_path)
        print(f"graphstore: restored {store_path} (an earlier build was killed while replacing it)", file=sys.stderr)


def _replace(tmp: Path, store_path: Path) -> None:
    """Move the finished build in place; an old store is renamed aside first and deleted only after."""
    old = _aside(store_path)
    if old.exists():
        shutil.rmtree(old)
    sync_file_system(tmp)  # the new store on disk before any rename: a power loss leaves the old or the new one
    if store_path.exists():
        store_path.rename(old)
    try:
        tmp.rename(store_path)
    except BaseException:
        if old.exists() and not store_path.exists():
            old.rename(store_path)  # the old store back, whole
        raise
    shutil.rmtree(old, ignore_errors=True)


def _build_into(tmp: Path, store_path: Path, input_path: Path, cutoff: str, cutoff_days: int, val_days: int,
                featurize: bool, feature_options: dict, memory_limit: str, threads: int | None, progress: bool,
                ingest_workers: int | None) -> None:
    started = time.time()
    try:
        root = zarr.open_group(str(tmp), mode="w", zarr_format=3)  # before staging: mode "w" empties the folder
        staged = ingest(input_path, tmp / "staging", progress=progress, workers=ingest_workers)
        con = connect_staging(tmp / "staging", memory_limit, threads, progress)
        meta = _layout(con, root, tmp, staged, cutoff_days, val_days, progress)
        meta["build"] = {
            "input": str(input_path.resolve()), "input_format": staged.input_format, "cutoff": cutoff,
            "val_days": val_days, "memory_limit": memory_limit, "seconds": None,
        }
        con.close()
        shutil.rmtree(tmp / "staging")
        meta["checksums"] = store_checksums(root)
        seal(tmp, meta)  # the store's identity and its tables' digests (graphstore.format.integrity)
        meta["build"]["seconds"] = round(time.time() - started, 1)
        root.attrs["graphstore"] = meta
        if featurize:
            featurize_into(tmp, **{"progress": progress, **(feature_options or {})})
        _replace(tmp, store_path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _array_paths(group: zarr.Group, prefix: str = "") -> list[str]:
    out = []
    for name, member in sorted(group.members()):
        path = f"{prefix}{name}"
        if isinstance(member, zarr.Group):
            out += _array_paths(member, path + "/")
        else:
            out.append(path)
    return out


def _fetch(con: duckdb.DuckDBPyConnection, sql: str) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in con.execute(sql).fetchnumpy().items()}


def cutoff_day(cutoff: str) -> int:
    """Days since the epoch of a YYYY-MM-DD cutoff; UserError otherwise."""
    try:
        return (date.fromisoformat(cutoff) - date(1970, 1, 1)).days
    except ValueError:
        raise UserError(f"--cutoff {cutoff!r} is not a YYYY-MM-DD date") from None


def connect_staging(staging: Path, memory_limit: str, threads: int | None,
                    progress: bool = True) -> duckdb.DuckDBPyConnection:
    """The DuckDB connection of a build or an append, spilling under `staging` (`progress`: DuckDB's own bar
    on queries that run for seconds, off with the command's other bars)."""
    con = duckdb.connect(str(staging / "build.duckdb"))
    if not progress:
        con.execute("SET enable_progress_bar=false")
    try:
        set_memory_limit(con, memory_limit)
    except UserError:
        con.close()
        raise
    con.execute(f"SET temp_directory={literal(staging / 'spill')}")
    con.execute("SET preserve_insertion_order=false")
    if threads:
        con.execute(f"SET threads={int(threads)}")
    return con


def set_memory_limit(con: duckdb.DuckDBPyConnection, memory_limit: str) -> None:
    """`SET memory_limit`, the value quoted as a literal; UserError for a value DuckDB does not read as a size."""
    try:
        con.execute(f"SET memory_limit={literal(memory_limit)}")
    except (duckdb.Error, ValueError) as exc:
        raise UserError(f"--memory-limit {memory_limit!r} is not a memory size such as 4GB ({exc})") from None


def check_memory_limit(memory_limit: str) -> None:
    """UserError now, before any input is read, for a memory limit `set_memory_limit` would refuse."""
    con = duckdb.connect()
    try:
        set_memory_limit(con, memory_limit)
    finally:
        con.close()


def _layout(con, root, tmp: Path, staged, cutoff: int, val_days: int, progress: bool) -> dict:
    stage_samples(con, staged.samples_path)
    n = con.execute("SELECT count(*) FROM s_keys").fetchone()[0]
    out_cols, pday = sample_columns(con)
    col_group = root.create_group("columns")
    for name in list(out_cols):
        write_array(col_group, name, out_cols[name], chunk_rows=COLUMN_CHUNK_ROWS, compress=True)
        if name not in _TOPOLOGY_COLUMNS:
            del out_cols[name]  # written: only the keys of the topology and the splits stay in memory

    topo = root.create_group("topology")
    for rel, col in ALIGNED_HEADS.items():
        write_array(topo.require_group(rel), "head", out_cols[col].astype(np.int32))
    degrees = {}
    for rel, col in BUCKET_KEYS.items():
        g = topo.require_group(rel)
        if rel == "has_same_topic_as":  # node order (topic, day, input position) sorts the buckets: no members array
            members = np.arange(n, dtype=np.int32)
        else:
            members = bucket_order(out_cols[col], out_cols["cday"])
            write_array(g, "members", members)
        lo, hi = bucket_bounds(members, out_cols[col], out_cols["cday"])
        write_array(g, "lo", lo)
        write_array(g, "hi", hi)
        degrees[rel] = int((hi.astype(np.int64) - lo).sum())

    # History: every listed id must exist; edges u -> v stored CSC by v, heads ascending.
    check_history(con, history_field(staged.input_format))
    v_of, u_of = history_edges(con)
    g = topo.require_group("is_history_of")
    write_array(g, "indptr", indptr_of(v_of, n))
    write_array(g, "indices", u_of)
    n_history = int(len(v_of))
    del v_of, u_of

    # Comments sorted by (video node, time, input position); range relation via indptr.
    create_comments_table(con, staged.comments_path)
    comments_indptr = comment_indptr(con, n)
    write_array(topo.require_group("is_comment_of"), "indptr", comments_indptr)
    n_comments = int(comments_indptr[-1])
    del comments_indptr

    sg = root.create_group("splits")
    splits = {}
    for name, ids in split_ids(pday, out_cols["final_state"], cutoff, val_days).items():
        write_array(sg, name, ids)
        splits[name] = int(len(ids))

    write_tables(con, tmp / "samples.parquet", tmp / "comments.parquet")
    topic_names = [r[0] for r in con.execute("SELECT topic FROM topics ORDER BY topic_id").fetchall()]

    num_nodes = {t: n for t in ("video", *ATTRIBUTE_RELATIONS)}
    num_nodes.update(comment=n_comments, topic=len(topic_names), platform=len(PLATFORMS))
    assert set(num_nodes) == set(NODE_TYPES)
    degrees.update(is_comment_of=n_comments, is_history_of=n_history)
    return {
        "format": "graphstore", "format_version": FORMAT_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "node_types": num_nodes, "relations": relation_entries(n, degrees), "splits": splits,
        "topics": topic_names, "platforms": list(PLATFORMS),
    }


# --- steps shared with `graphstore append` (graphstore/append.py) ----------------------------------------
COLUMN_CHUNK_ROWS = 1 << 16
ALIGNED_HEADS = {"is_platform_of": "platform", "is_topic_of": "topic"}  # relation -> column holding its head id
BUCKET_KEYS = {"has_same_topic_as": "topic", "has_same_author_as": "author"}  # relation -> bucket key column
_TOPOLOGY_COLUMNS = {*ALIGNED_HEADS.values(), *BUCKET_KEYS.values(), "cday", "final_state"}
SAMPLE_TABLE_COLUMNS = ("node, sample_id, url, platform, topic, author_id, title, description, post_time, current_time, "
                        f"duration_s, {', '.join(COUNT_FIELDS)}, level, final_state, history")
_EMPTY_KEYS = {"topic": pa.string(), "author_id": pa.string()}


def history_field(input_format: str) -> str:
    """The name of the history field in an input format (for error messages)."""
    return "历史状态" if input_format == "xsvideo-json" else "history"


def stage_samples(con: duckdb.DuckDBPyConnection, samples_path: Path, *, first_node: int = 0,
                  topics: pa.Table | None = None, authors: pa.Table | None = None) -> None:
    """DuckDB tables `topics`, `authors` and `s`, the staged samples numbered from `first_node` in
    (topic id, ctime day, input position) order: `topics` / `authors` (key, id) keep the `known` pairs
    and number the keys new to them after these, in sorted order."""
    con.execute(f"CREATE VIEW raw AS SELECT * FROM read_parquet({literal(samples_path)})")  # a view takes no parameters
    _number_keys(con, "topics", "topic", "topic_id", topics)
    _number_keys(con, "authors", "author_id", "author", authors)
    # The keys alone are materialised (about 30 bytes a sample); `s` reads the rest from the staged Parquet,
    # so the text never passes through a DuckDB table, only through the final COPY (write_tables).
    con.execute(f"""
        CREATE TABLE s_keys AS
        SELECT r.pos, ({first_node} + row_number() OVER (ORDER BY t.topic_id, r.ctime_ts // {DAY}, r.pos) - 1)::BIGINT AS node,
               t.topic_id, a.author, (r.ctime_ts // {DAY})::INT AS cday, (r.post_ts // {DAY})::INT AS pday,
               r.sample_id, r.current_time, r.history
        FROM raw r JOIN topics t USING (topic) JOIN authors a USING (author_id)
    """)
    # sample id, current time and history (~60 bytes a sample) are kept too: the history checks join on them, and
    # DuckDB 2.0 fails ("dict-surviving join ... not single-source") when a join's build side is itself a join
    con.execute("CREATE VIEW s AS SELECT k.node, r.* REPLACE (k.history AS history), k.topic_id, k.author, k.cday, k.pday "
                "FROM raw r JOIN s_keys k USING (pos)")


def _number_keys(con: duckdb.DuckDBPyConnection, table: str, key: str, id_col: str, known: pa.Table | None) -> None:
    if known is None:
        known = pa.table({key: pa.array([], _EMPTY_KEYS[key]), id_col: pa.array([], pa.int32())})
    first = int(pc.max(known[id_col]).as_py()) + 1 if known.num_rows else 0
    con.register("known_keys", known)
    con.execute(f"""
        CREATE TABLE {table} AS
        SELECT {key}, {id_col}::INT AS {id_col} FROM known_keys
        UNION ALL
        SELECT {key}, ({first} + row_number() OVER (ORDER BY {key}) - 1)::INT
        FROM (SELECT DISTINCT {key} FROM raw WHERE {key} NOT IN (SELECT {key} FROM known_keys))
    """)
    con.unregister("known_keys")


SAMPLE_COLUMN_ROWS = 1 << 18  # rows per batch fetched from DuckDB: the columns come in blocks, not one copy each


def _sample_column_types() -> dict[str, tuple[str, type]]:
    """Output column -> (SQL expression over `s`, dtype) of `sample_columns`, in FORMAT.md order."""
    types = {
        "level": ("level", np.int8), "platform": ("platform_id", np.int8), "topic": ("topic_id", np.int32),
        "author": ("author", np.int32), "post_time": ("post_ts", np.int64), "ctime": ("ctime_ts", np.int64),
        "cday": ("cday", np.int32),
        # a null duration is stored as 0 (as the build always has; docs/FORMAT.md says NaN)
        "duration": ("coalesce(duration_s, 0)", np.float32),
        "final_state": ("final_state", bool), "num_comments": ("num_comments", np.int32),
    }
    for c in COUNT_FIELDS:
        types[c] = (f"coalesce({c}, 0)", np.int64)
        types[f"{c}_missing"] = (f"{c} IS NULL", bool)
    return types


def sample_columns(con: duckdb.DuckDBPyConnection) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The per-video columns of docs/FORMAT.md for the samples of table `s` (node order), and their post days.

    Streamed from DuckDB in blocks of SAMPLE_COLUMN_ROWS into arrays of their final dtypes (about 100
    bytes a sample in all), so no wider copy of a whole column is ever held.
    """
    types = _sample_column_types()
    n = int(con.execute("SELECT count(*) FROM s_keys").fetchall()[0][0])
    out = {name: np.empty(n, dtype) for name, (_, dtype) in types.items()}
    pday = np.empty(n, np.int64)
    select = ", ".join(f"{expr} AS c{i}" for i, (expr, _) in enumerate(types.values()))
    # con.sql, not con.execute: a DB-API result's Arrow reader does not keep ORDER BY (DuckDB 2.0)
    reader = con.sql(f"SELECT {select}, pday FROM s ORDER BY node").to_arrow_reader(SAMPLE_COLUMN_ROWS)
    at = 0
    for batch in reader:
        m = batch.num_rows
        for i, name in enumerate(types):
            out[name][at:at + m] = batch.column(i).to_numpy(zero_copy_only=False)
        pday[at:at + m] = batch.column(len(types)).to_numpy(zero_copy_only=False)
        at += m
    if at != n:
        raise RuntimeError(f"sample_columns: fetched {at} rows of {n}")
    return out, pday


def check_history(con: duckdb.DuckDBPyConnection, field: str, pool: str = "s_keys", where: str = "the file") -> None:
    """Every history id of the samples in `s_keys` is a sample of `pool` (a table or view with sample_id, node,
    cday, current_time), and none is a later state than the sample listing it.

    States are compared by the date of their current time, as the reference code compares times
    (`time.split()[0]`): a date-only and a full time on the same day are not ordered.
    """
    missing = con.execute(f"""
        WITH h AS (SELECT s.sample_id, unnest(s.history) AS hid FROM s_keys s)
        SELECT h.sample_id, h.hid FROM h LEFT JOIN {pool} u ON u.sample_id = h.hid WHERE u.node IS NULL
        ORDER BY h.sample_id, h.hid LIMIT 1
    """).fetchone()
    if missing:
        raise InputRecordError(missing[0], field, f"history id {missing[1]!r} is not a sample in {where}")
    later = con.execute(f"""
        WITH h AS (SELECT s.sample_id, s.cday, s.current_time, unnest(s.history) AS hid FROM s_keys s)
        SELECT h.sample_id, h.hid, u.current_time, h.current_time FROM h JOIN {pool} u ON u.sample_id = h.hid
        WHERE u.cday > h.cday ORDER BY h.sample_id, h.hid LIMIT 1
    """).fetchone()
    if later:
        raise InputRecordError(later[0], field, f"history id {later[1]!r} is a later state (current time {later[2]!r}, "
                                                f"after this sample's {later[3]!r})")


def history_edges(con: duckdb.DuckDBPyConnection, pool: str = "s_keys") -> tuple[np.ndarray, np.ndarray]:
    """(tails v in `s_keys`, heads u in `pool`) of is_history_of, sorted by (v, u), duplicates dropped."""
    hist = _fetch(con, f"""
        WITH h AS (SELECT s.node AS v, unnest(s.history) AS hid FROM s_keys s)
        SELECT DISTINCT h.v, u.node AS u FROM h JOIN {pool} u ON u.sample_id = h.hid ORDER BY h.v, u
    """)
    return (hist.get("v", np.zeros(0, np.int64)).astype(np.int64),
            hist.get("u", np.zeros(0, np.int64)).astype(np.int32))


def create_comments_table(con: duckdb.DuckDBPyConnection, comments_path: Path, first_comment: int = 0) -> None:
    """DuckDB table `c` (node, video, pos, cpos): the comments of `s` numbered from `first_comment` by (video
    node, time, input position), and view `c_rows`: with their id, text and time, read from the staged Parquet."""
    con.execute(f"""
        CREATE TABLE c AS
        SELECT ({first_comment} + row_number() OVER (ORDER BY k.node, cm.timestamp, cm.cpos) - 1)::BIGINT AS node,
               k.node AS video, cm.pos, cm.cpos
        FROM read_parquet(?) cm JOIN s_keys k USING (pos)
    """, [comments_path.as_posix()])
    con.execute(f"""
        CREATE VIEW c_rows AS
        SELECT c.node, c.video, cm.comment_id, cm.text, cm.time, cm.timestamp
        FROM c JOIN read_parquet({literal(comments_path)}) cm USING (pos, cpos)
    """)


def stage_comments(con: duckdb.DuckDBPyConnection, comments_path: Path, first_comment: int = 0) -> np.ndarray:
    """Table `c` (`create_comments_table`); returns the video node of every comment, in comment order."""
    create_comments_table(con, comments_path, first_comment)
    return _fetch(con, "SELECT video FROM c ORDER BY node")["video"].astype(np.int64)


def comment_indptr(con: duckdb.DuckDBPyConnection, n: int) -> np.ndarray:
    """is_comment_of's indptr [n + 1] from the comment count of every video of table `c` (no per-comment array)."""
    per_video = np.zeros(n, np.int64)
    counts = _fetch(con, "SELECT video AS v, count(*) AS k FROM c GROUP BY video")
    if len(counts.get("v", ())):
        per_video[counts["v"].astype(np.int64)] = counts["k"]
    return indptr_from_counts(per_video)


def split_ids(pday: np.ndarray, final: np.ndarray, cutoff: int, val_days: int, first_node: int = 0) -> dict[str, np.ndarray]:
    """Node ids (ascending, from `first_node`) per split by post day; final states are in no split."""
    test = ~final & (pday > cutoff)
    val = ~final & ~test & (pday > cutoff - val_days)
    train = ~final & ~test & ~val
    return {name: first_node + np.flatnonzero(mask).astype(np.int64)
            for name, mask in (("train", train), ("val", val), ("test", test))}


def write_tables(con: duckdb.DuckDBPyConnection, samples_out: Path, comments_out: Path) -> None:
    """The sample and comment rows of `s` and `c_rows` as Parquet files, in node order (DuckDB sorts, spilling)."""
    # quoted, not a parameter: DuckDB 1.1 does not parse `COPY ... TO ?`
    con.execute(f"COPY (SELECT {SAMPLE_TABLE_COLUMNS} FROM s ORDER BY node) TO {literal(samples_out)} "
                "(FORMAT parquet, COMPRESSION zstd)")
    con.execute(f"COPY (SELECT * FROM c_rows ORDER BY node) TO {literal(comments_out)} (FORMAT parquet, COMPRESSION zstd)")


def relation_entries(n_videos: int, num_edges: dict[str, int]) -> list[dict]:
    """The metadata document's `relations` list; relations not in `num_edges` have one edge per video."""
    return [{"name": name, "head": head, "tail": "video", "kind": kind, "num_edges": num_edges.get(name, n_videos)}
            for name, head, kind in RELATIONS]


def store_checksums(root: zarr.Group) -> dict[str, str]:
    """xxh64 of every column, topology and split array of a store."""
    return {name: array_checksum(root[name]) for g in ("columns", "topology", "splits") for name in _array_paths(root[g], g + "/")}


def indptr_of(sorted_tails: np.ndarray, n: int) -> np.ndarray:
    """CSR-style offsets [n + 1] of tails sorted ascending."""
    return indptr_from_counts(np.bincount(sorted_tails, minlength=n).astype(np.int64))
