"""`graphstore build`: staging with DuckDB, then the Zarr store, written atomically."""
from __future__ import annotations

import logging
import shutil
import time
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import zarr

from graphstore.errors import InputRecordError, UserError
from graphstore.ingest import ingest
from graphstore.schema import (
    ATTRIBUTE_RELATIONS, COUNT_FIELDS, DAY, DEFAULT_CUTOFF, DEFAULT_VAL_DAYS, FORMAT_VERSION, NODE_TYPES,
    PLATFORMS, RELATIONS,
)
from graphstore.zarr_io import array_checksum, write_array

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
    memory_limit: str = "3GB",
    threads: int | None = None,
    progress: bool = True,
) -> Path:
    """Build a store from an XS-Video JSON or JSON Lines file; returns the store path."""
    input_path, store_path = Path(input_path), Path(store_path)
    if store_path.exists() and not overwrite:
        raise UserError(f"{store_path} exists; pass --overwrite to replace it")
    try:
        cutoff_day = (date.fromisoformat(cutoff) - date(1970, 1, 1)).days
    except ValueError:
        raise UserError(f"--cutoff {cutoff!r} is not a YYYY-MM-DD date") from None
    tmp = store_path.with_name(f"{store_path.name}.tmp-build")  # not hidden: DuckDB globs skip "." and "_" paths
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    started = time.time()
    try:
        root = zarr.open_group(str(tmp), mode="w", zarr_format=3)  # before staging: mode "w" empties the folder
        staged = ingest(input_path, tmp / "staging", progress=progress)
        con = duckdb.connect(str(tmp / "staging" / "build.duckdb"))
        con.execute(f"SET memory_limit='{memory_limit}'")
        con.execute(f"SET temp_directory='{tmp / 'staging' / 'spill'}'")
        con.execute("SET preserve_insertion_order=false")
        if threads:
            con.execute(f"SET threads={int(threads)}")
        meta = _layout(con, root, tmp, staged, cutoff_day, val_days, progress)
        meta["build"] = {
            "input": str(input_path.resolve()), "input_format": staged.input_format, "cutoff": cutoff,
            "val_days": val_days, "memory_limit": memory_limit, "seconds": None,
        }
        con.close()
        shutil.rmtree(tmp / "staging")
        meta["checksums"] = {
            name: array_checksum(root[name]) for g in ("columns", "topology", "splits") for name in _array_paths(root[g], g + "/")
        }
        meta["build"]["seconds"] = round(time.time() - started, 1)
        root.attrs["graphstore"] = meta
        if featurize:
            from graphstore.features import featurize_store

            featurize_store(tmp, **{"progress": progress, **(feature_options or {})})
        if store_path.exists():
            shutil.rmtree(store_path)
        tmp.rename(store_path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return store_path


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


def _layout(con, root, tmp: Path, staged, cutoff_day: int, val_days: int, progress: bool) -> dict:
    s_path, c_path = staged.samples_path.as_posix(), staged.comments_path.as_posix()
    con.execute(f"CREATE VIEW raw AS SELECT * FROM read_parquet('{s_path}')")
    con.execute("CREATE TABLE topics AS SELECT topic, (row_number() OVER (ORDER BY topic) - 1)::INT AS topic_id FROM (SELECT DISTINCT topic FROM raw)")
    con.execute("CREATE TABLE authors AS SELECT author_id, (row_number() OVER (ORDER BY author_id) - 1)::INT AS author FROM (SELECT DISTINCT author_id FROM raw)")
    # Node order (topic, day, input position): each topic is one contiguous day-sorted run.
    con.execute(f"""
        CREATE TABLE s AS
        SELECT (row_number() OVER (ORDER BY t.topic_id, r.ctime_ts // {DAY}, r.pos) - 1)::BIGINT AS node,
               r.*, t.topic_id, a.author, (r.ctime_ts // {DAY})::INT AS cday, (r.post_ts // {DAY})::INT AS pday
        FROM raw r JOIN topics t USING (topic) JOIN authors a USING (author_id)
    """)
    n = con.execute("SELECT count(*) FROM s").fetchone()[0]

    cols = _fetch(con, f"""
        SELECT level, platform_id, topic_id, author, post_ts, ctime_ts, cday, duration_s, final_state, num_comments, pday,
               {', '.join(f'coalesce({c}, 0) AS {c}, {c} IS NULL AS {c}_missing' for c in COUNT_FIELDS)},
               min(node) OVER (PARTITION BY topic_id) AS t_lo, max(node) OVER (PARTITION BY topic_id, cday) + 1 AS t_hi
        FROM s ORDER BY node
    """)
    col_group = root.create_group("columns")
    out_cols = {
        "level": cols["level"].astype(np.int8), "platform": cols["platform_id"].astype(np.int8),
        "topic": cols["topic_id"].astype(np.int32), "author": cols["author"].astype(np.int32),
        "post_time": cols["post_ts"].astype(np.int64), "ctime": cols["ctime_ts"].astype(np.int64),
        "cday": cols["cday"].astype(np.int32),
        "duration": np.where(np.isnan(cols["duration_s"].astype(np.float64)), np.nan, cols["duration_s"]).astype(np.float32),
        "final_state": cols["final_state"].astype(bool), "num_comments": cols["num_comments"].astype(np.int32),
    }
    for c in COUNT_FIELDS:
        out_cols[c] = cols[c].astype(np.int64)
        out_cols[f"{c}_missing"] = cols[f"{c}_missing"].astype(bool)
    for name, arr in out_cols.items():
        write_array(col_group, name, arr, chunk_rows=1 << 16, compress=True)

    topo = root.create_group("topology")
    write_array(topo.require_group("is_platform_of"), "head", out_cols["platform"].astype(np.int32))
    write_array(topo.require_group("is_topic_of"), "head", out_cols["topic"])
    write_array(topo.require_group("has_same_topic_as"), "lo", cols["t_lo"].astype(np.int32))
    write_array(topo.require_group("has_same_topic_as"), "hi", cols["t_hi"].astype(np.int32))

    author = _fetch(con, """
        WITH a AS (SELECT node, author, cday, (row_number() OVER (ORDER BY author, cday, node) - 1)::INT AS apos FROM s)
        SELECT node, apos, min(apos) OVER (PARTITION BY author) AS lo, max(apos) OVER (PARTITION BY author, cday) + 1 AS hi
        FROM a ORDER BY apos
    """)
    members = author["node"].astype(np.int32)
    lo = np.empty(n, np.int32)
    hi = np.empty(n, np.int32)
    lo[members], hi[members] = author["lo"], author["hi"]
    g = topo.require_group("has_same_author_as")
    write_array(g, "members", members)
    write_array(g, "lo", lo)
    write_array(g, "hi", hi)

    # History: every listed id must exist; edges u -> v stored CSC by v, heads ascending.
    _check_history(con, "历史状态" if staged.input_format == "xsvideo-json" else "history")
    hist = _fetch(con, """
        WITH h AS (SELECT s.node AS v, unnest(s.history) AS hid FROM s)
        SELECT DISTINCT h.v, u.node AS u FROM h JOIN s u ON u.sample_id = h.hid ORDER BY h.v, u
    """)
    v_of = hist.get("v", np.zeros(0, np.int64)).astype(np.int64)
    g = topo.require_group("is_history_of")
    write_array(g, "indptr", _indptr(v_of, n))
    write_array(g, "indices", hist.get("u", np.zeros(0, np.int64)).astype(np.int32))

    # Comments sorted by (video node, time, input position); range relation via indptr.
    con.execute(f"""
        CREATE TABLE c AS
        SELECT (row_number() OVER (ORDER BY s.node, cm.timestamp, cm.cpos) - 1)::BIGINT AS node, s.node AS video,
               cm.comment_id, cm.text, cm.time, cm.timestamp
        FROM read_parquet('{c_path}') cm JOIN s USING (pos)
    """)
    cvideo = _fetch(con, "SELECT video FROM c ORDER BY node")["video"].astype(np.int64)
    write_array(topo.require_group("is_comment_of"), "indptr", _indptr(cvideo, n))
    n_comments = len(cvideo)

    # Splits by post date; final states are in the graph but in no split.
    pday, final = cols["pday"].astype(np.int64), out_cols["final_state"]
    test = ~final & (pday > cutoff_day)
    val = ~final & ~test & (pday > cutoff_day - val_days)
    train = ~final & ~test & ~val
    sg = root.create_group("splits")
    splits = {}
    for name, mask in (("train", train), ("val", val), ("test", test)):
        ids = np.flatnonzero(mask).astype(np.int64)
        write_array(sg, name, ids)
        splits[name] = int(len(ids))

    samples_cols = ("node, sample_id, url, platform, topic, author_id, title, description, post_time, current_time, "
                    f"duration_s, {', '.join(COUNT_FIELDS)}, level, final_state, history")
    con.execute(f"COPY (SELECT {samples_cols} FROM s ORDER BY node) TO '{(tmp / 'samples.parquet').as_posix()}' (FORMAT parquet, COMPRESSION zstd)")
    con.execute(f"COPY (SELECT * FROM c ORDER BY node) TO '{(tmp / 'comments.parquet').as_posix()}' (FORMAT parquet, COMPRESSION zstd)")
    topic_names = [r[0] for r in con.execute("SELECT topic FROM topics ORDER BY topic_id").fetchall()]

    num_nodes = {t: n for t in ("video", *ATTRIBUTE_RELATIONS)}
    num_nodes.update(comment=n_comments, topic=len(topic_names), platform=len(PLATFORMS))
    assert set(num_nodes) == set(NODE_TYPES)
    degrees = {
        "is_comment_of": n_comments,
        "has_same_author_as": int((hi.astype(np.int64) - lo).sum()),
        "has_same_topic_as": int((cols["t_hi"].astype(np.int64) - cols["t_lo"]).sum()),
        "is_history_of": int(len(v_of)),
    }
    relations = [
        {"name": name, "head": head, "tail": "video", "kind": kind, "num_edges": degrees.get(name, n)}
        for name, head, kind in RELATIONS
    ]
    return {
        "format": "graphstore", "format_version": FORMAT_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "node_types": num_nodes, "relations": relations, "splits": splits,
        "topics": topic_names, "platforms": list(PLATFORMS),
    }


def _check_history(con: duckdb.DuckDBPyConnection, field: str) -> None:
    """Every history id is a sample of the file, and none is a later state than the sample listing it.

    States are compared by the date of their current time, as the reference code compares times
    (`time.split()[0]`): a date-only and a full time on the same day are not ordered.
    """
    missing = con.execute("""
        WITH h AS (SELECT s.sample_id, unnest(s.history) AS hid FROM s)
        SELECT h.sample_id, h.hid FROM h LEFT JOIN s u ON u.sample_id = h.hid WHERE u.node IS NULL LIMIT 1
    """).fetchone()
    if missing:
        raise InputRecordError(missing[0], field, f"history id {missing[1]!r} is not a sample in the file")
    later = con.execute("""
        WITH h AS (SELECT s.sample_id, s.cday, s.current_time, unnest(s.history) AS hid FROM s)
        SELECT h.sample_id, h.hid, u.current_time, h.current_time FROM h JOIN s u ON u.sample_id = h.hid
        WHERE u.cday > h.cday ORDER BY h.sample_id, h.hid LIMIT 1
    """).fetchone()
    if later:
        raise InputRecordError(later[0], field, f"history id {later[1]!r} is a later state (current time {later[2]!r}, "
                                                f"after this sample's {later[3]!r})")


def _indptr(sorted_tails: np.ndarray, n: int) -> np.ndarray:
    counts = np.bincount(sorted_tails, minlength=n).astype(np.int64)
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

