"""`graphstore append`: add samples and their comments to a store, exactly as a full rebuild would hold them.

Samples may have any date. Existing nodes keep their ids and new ones are numbered after them
(videos by (topic, day, input position), comments by (video, time, input position), new topics and
authors in sorted order), so features, embeddings and checkpoints keyed by node id stay valid.
The input is validated by the build's code, against the store as well (duplicate ids, history ids
that point into the store). The result is written as a new generation (graphstore.format.generations)
and takes effect in one atomic rename; a failed or killed append leaves the store as it was.
Only the new rows are featurized, with the encoder recorded in the metadata, plus the video rows
whose graph-derived features change (samples whose bucket in-degrees grow).
"""
from __future__ import annotations

import copy
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import zarr

from graphstore.build import (
    ALIGNED_HEADS, BUCKET_KEYS, check_history, check_memory_limit, connect_staging, cutoff_day, history_edges,
    history_field, relation_entries, sample_columns, split_ids, stage_comments, stage_samples, write_tables,
)
from graphstore.errors import InputRecordError, UserError
from graphstore.featurize.jobs import jobs_for_types, recorded_encoder
from graphstore.format.generations import (
    GEN_DIR, collect_garbage, commit, discard_pending, generation_dir, link_file, link_tree, write_document,
)
from graphstore.ingest import ingest
from graphstore.format.integrity import record_tables
from graphstore.schema import ATTRIBUTE_RELATIONS, FORMAT_VERSION
from graphstore.sql import literal_list
from graphstore.store import GraphStore, opened
from graphstore.topology import bucket_bounds, merge_bucket
from graphstore.topology.ops import indptr_from_counts
from graphstore.format.arrays import array_checksum, grow_array, grown_checksum, write_array

KILL_ENV = "GRAPHSTORE_APPEND_KILL_AT"  # tests: SIGKILL the process at this step (ingest, topology, features, commit)
WRITE_ROWS = 4096
PER_SAMPLE_TYPES = ("video", *ATTRIBUTE_RELATIONS)


@dataclass
class AppendResult:
    """What an append added."""

    store: Path
    generation: int
    samples: int
    comments: int
    topics: int
    videos: int  # videos in the store afterwards
    new_ids: list[str]  # the new samples' ids, in input order
    new_nodes: np.ndarray  # their video node ids
    touched: int  # existing videos whose in-neighbours grew
    seconds: float


def append_store(store_path: str | Path, input_path: str | Path, *, memory_limit: str = "3GB",
                 threads: int | None = None, progress: bool = True,
                 prepare: Callable[[GraphStore, AppendResult], None] | None = None) -> AppendResult:
    """Append the samples of `input_path` (either input format) to the store as its next generation.

    `prepare(store, result)` runs on the finished new generation before it is committed (e.g. to
    add embeddings of the new nodes); if it raises, nothing is committed.
    """
    with GraphStore.open_for_writing(store_path) as src:
        location = src.location
        generation = src.generation + 1
        discard_pending(location, src.generation)
        dest = generation_dir(location, generation)
        try:
            staged, result = stage_append(src, input_path, dest, memory_limit=memory_limit, threads=threads,
                                          progress=progress)
            with staged:
                if prepare is not None:
                    prepare(staged, result)
            _kill_point("commit")
            commit(location, generation, FORMAT_VERSION)
        except BaseException:
            shutil.rmtree(dest, ignore_errors=True)
            _remove_if_empty(dest.parent)
            raise
        collect_garbage(location, generation)
    return result


@contextmanager
def overlay(store_path: GraphStore | str | Path, input_path: str | Path, *, memory_limit: str = "3GB", threads: int | None = None,
            progress: bool = True) -> Iterator[tuple[GraphStore, AppendResult]]:
    """A temporary copy-on-write store holding the store plus the samples of `input_path`; the store is not changed.

    The overlay lies next to the store (hard links need the same file system) and is deleted on exit.
    """
    src = opened(store_path)
    parent = src.location.resolve().parent
    tmp = Path(tempfile.mkdtemp(prefix=f"{src.location.name}.overlay-", dir=parent if os.access(parent, os.W_OK) else None))
    try:
        yield stage_append(src, input_path, tmp, memory_limit=memory_limit, threads=threads, progress=progress)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def stage_append(src: GraphStore, input_path: str | Path, dest: Path, *, memory_limit: str = "3GB",
                 threads: int | None = None, progress: bool = True) -> tuple[GraphStore, AppendResult]:
    """Write into `dest` a complete store, `src` plus the samples of `input_path` (unchanged files hard-linked),
    and open it."""
    started = time.time()
    check_memory_limit(memory_limit)
    generation = src.generation + 1
    link_tree(src.path, dest, skip=("zarr.json", GEN_DIR, "samples.parquet", "comments.parquet", "staging"))
    parts = {t: _link_table_parts(src, dest, t) for t in ("samples", "comments")}
    staging = dest / "staging"
    new = _stage_input(src, Path(input_path), staging, parts, generation, memory_limit, threads, progress)
    _kill_point("ingest")
    meta, touched = _write_graph(src, dest, new)
    meta["generation"] = generation
    write_document(dest, meta)
    _kill_point("topology")
    _grow_features(src, dest, meta, new, staging / "view", touched, progress)
    write_document(dest, meta)
    _kill_point("features")
    shutil.rmtree(staging)
    seconds = round(time.time() - started, 2)
    result = AppendResult(src.location, generation, new.num_samples, len(new.comment_videos), len(new.topics),
                          meta["node_types"]["video"], new.input_ids, new.input_nodes, len(touched), seconds)
    meta.setdefault("appends", []).append({
        "generation": generation, "input": str(Path(input_path).resolve()), "input_format": new.input_format,
        "samples": result.samples, "comments": result.comments, "topics": result.topics, "touched": result.touched,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "seconds": seconds,
    })
    record_tables(dest, meta)  # digests of the new table parts (graphstore.format.integrity)
    write_document(dest, meta)
    return GraphStore.open(dest), result


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


def _kill_point(step: str) -> None:
    """Tests of crash safety: die here, as kill -9 would, when KILL_ENV names this step."""
    if os.environ.get(KILL_ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)


def _link_table_parts(src: GraphStore, dest: Path, table: str) -> Path:
    """`dest/<table>.parquet/` holding links of src's parts (a build's single file becomes part-000000)."""
    folder = dest / f"{table}.parquet"
    folder.mkdir()
    for f in src.table_files(table):
        link_file(f, folder / (f.name if f.parent.name == folder.name else "part-000000.parquet"))
    return folder


# --- staging: the build's ingest and SQL, with the store's samples in view ---------------------------------
@dataclass
class NewSamples:
    """The appended rows, as staged by DuckDB."""

    num_samples: int
    input_format: str
    columns: dict[str, np.ndarray]  # node order, nodes n .. n + m - 1
    pday: np.ndarray
    input_ids: list[str]  # sample ids in input order
    input_nodes: np.ndarray  # their node ids
    history: tuple[np.ndarray, np.ndarray]  # (tails v, heads u) of the new is_history_of edges
    comment_videos: np.ndarray  # video node of each new comment, comment order
    topics: list[str]  # topic texts new to the store, in id order
    samples_part: Path
    comments_part: Path


def _stage_input(src: GraphStore, input_path: Path, staging: Path, parts: dict[str, Path], generation: int,
                 memory_limit: str, threads: int | None, progress: bool) -> NewSamples:
    staged = ingest(input_path, staging, progress=progress)
    con = connect_staging(staging, memory_limit, threads, progress)
    try:
        n = src.num_nodes("video")
        _register_store(con, src)
        _check_new_ids(con, staged.samples_path, src)
        topics = src.meta["topics"]
        known_topics = pa.table({"topic": pa.array(topics, pa.string()), "topic_id": pa.array(range(len(topics)), pa.int32())})
        known_authors = con.sql("SELECT DISTINCT author_id, author FROM stored").to_arrow_table()
        stage_samples(con, staged.samples_path, first_node=n, topics=known_topics, authors=known_authors)
        columns, pday = sample_columns(con)
        con.execute("CREATE VIEW pool AS SELECT sample_id, node, cday, current_time FROM s_keys "
                    "UNION ALL SELECT sample_id, node, cday, current_time FROM stored")
        check_history(con, history_field(staged.input_format), pool="pool", where="the file or the store")
        history = history_edges(con, pool="pool")
        comment_videos = stage_comments(con, staged.comments_path, first_comment=src.num_nodes("comment"))
        name = f"part-{generation:06d}.parquet"
        write_tables(con, parts["samples"] / name, parts["comments"] / name)
        new_topics = [r[0] for r in con.execute(
            "SELECT topic FROM topics WHERE topic_id >= ? ORDER BY topic_id", [len(topics)]).fetchall()]
        order = con.sql("SELECT sample_id, node FROM s_keys ORDER BY pos").fetchnumpy()
        input_ids, input_nodes = [str(x) for x in order["sample_id"]], order["node"].astype(np.int64)
    finally:
        con.close()
    return NewSamples(staged.num_samples, staged.input_format, columns, pday, input_ids, input_nodes, history,
                      comment_videos, new_topics, parts["samples"] / name, parts["comments"] / name)


def _register_store(con: duckdb.DuckDBPyConnection, src: GraphStore) -> None:
    """View `stored`: sample id, node, author id, current time, day and author id number of every stored sample."""
    n = src.num_nodes("video")
    keys = pa.table({"node": pa.array(np.arange(n, dtype=np.int64)), "cday": pa.array(src.column("cday")),
                     "author": pa.array(src.column("author"))})
    con.register("stored_keys", keys)
    con.execute(f"""
        CREATE VIEW stored AS
        SELECT p.sample_id, p.node, p.author_id, p.current_time, k.cday, k.author
        FROM read_parquet({literal_list(src.table_files("samples"))}) p JOIN stored_keys k USING (node)
    """)


def _check_new_ids(con: duckdb.DuckDBPyConnection, samples_path: Path, src: GraphStore) -> None:
    """No new sample id may already be in the store."""
    dup = con.execute("""
        SELECT r.sample_id FROM read_parquet(?) r JOIN stored USING (sample_id)
        ORDER BY r.pos LIMIT 1
    """, [samples_path.as_posix()]).fetchall()
    if dup:
        raise InputRecordError(dup[0][0], "id", f"duplicate sample id: already in the store {src.location}")


# --- topology, columns, splits and metadata of the new generation -----------------------------------------
def _write_graph(src: GraphStore, dest: Path, new: NewSamples) -> tuple[dict, np.ndarray]:
    """Grow columns, rewrite the topology arrays that change, extend the splits; returns (metadata, touched nodes)."""
    n, m = src.num_nodes("video"), new.num_samples
    total = n + m
    meta = copy.deepcopy(src.meta)
    meta["format_version"] = FORMAT_VERSION
    checksums = meta.setdefault("checksums", {})
    full = _grow_columns(src, dest, new.columns, checksums)
    topo = src.topology
    num_edges = {r["name"]: r["num_edges"] for r in src.meta["relations"]}
    for rel, col in ALIGNED_HEADS.items():
        head = np.concatenate([np.asarray(topo.relations[rel].head_index), new.columns[col].astype(np.int32)])
        _rewrite(dest, f"topology/{rel}/head", head.astype(np.int32), checksums)
    touched: list[np.ndarray] = []
    for rel, col in BUCKET_KEYS.items():
        edges, changed = _grow_bucket(dest, topo.relations[rel], full[col], full["cday"], n, checksums)
        num_edges[rel] = edges
        touched.append(changed)
    v, u = new.history
    hist = topo.relations["is_history_of"]
    _rewrite(dest, "topology/is_history_of/indptr", _grown_indptr(hist.indptr, v - n, m), checksums)
    _rewrite(dest, "topology/is_history_of/indices", np.concatenate([np.asarray(hist.indices), u]).astype(np.int32), checksums)
    num_edges["is_history_of"] += len(v)
    comments = topo.relations["is_comment_of"]
    _rewrite(dest, "topology/is_comment_of/indptr", _grown_indptr(comments.indptr, new.comment_videos - n, m), checksums)
    num_edges["is_comment_of"] += len(new.comment_videos)
    for name in num_edges:
        if name not in BUCKET_KEYS and name not in ("is_history_of", "is_comment_of"):
            num_edges[name] = total  # aligned relations: one edge per video
    meta["relations"] = relation_entries(total, num_edges)
    meta["splits"] = _grow_splits(src, dest, new, checksums)
    counts = meta["node_types"]
    for t in PER_SAMPLE_TYPES:
        counts[t] = total
    counts["comment"] = src.num_nodes("comment") + len(new.comment_videos)
    counts["topic"] = src.num_nodes("topic") + len(new.topics)
    meta["topics"] = list(src.meta["topics"]) + new.topics
    return meta, np.unique(np.concatenate(touched))


def _grow_columns(src: GraphStore, dest: Path, new_cols: dict[str, np.ndarray], checksums: dict) -> dict[str, np.ndarray]:
    """Append the new rows to every column; returns the grown key columns the topology needs."""
    n = src.num_nodes("video")
    stored = set(src.root["columns"].array_keys())
    if stored != set(new_cols):
        raise UserError(f"{src.location}: columns {sorted(stored ^ set(new_cols))} differ from what this version "
                        "builds; rebuild the store")
    full = {}
    for name, values in new_cols.items():
        arr = grow_array(dest / "columns" / name, n + len(values), [(n, values)])
        key = f"columns/{name}"
        if key in checksums:
            checksums[key] = grown_checksum(arr, checksums[key], n)
        if name in ("topic", "author", "cday"):
            full[name] = np.concatenate([src.column(name), values])
    return full


def _rewrite(dest: Path, path: str, data: np.ndarray, checksums: dict) -> None:
    """Replace the single-chunk array at `path` (a new file: the linked one of the previous generation stays)."""
    folder, name = path.rsplit("/", 1)
    target = dest / path
    if target.exists():
        shutil.rmtree(target)
    arr = write_array(zarr.open_group(str(dest / folder), mode="r+", zarr_format=3), name, data)
    checksums[path] = array_checksum(arr)


def _grow_bucket(dest: Path, rel, key: np.ndarray, day: np.ndarray, n: int, checksums: dict) -> tuple[int, np.ndarray]:
    """New members/lo/hi of a bucket relation; returns (edges, old nodes whose in-degree grew)."""
    members = np.arange(n, dtype=np.int32) if rel.members is None else np.asarray(rel.members)
    members = merge_bucket(members, key, day, n)
    lo, hi = bucket_bounds(members, key, day)
    for name, data in (("members", members), ("lo", lo), ("hi", hi)):
        _rewrite(dest, f"topology/{rel.name}/{name}", data, checksums)
    degree = hi.astype(np.int64) - lo
    old_degree = np.asarray(rel.hi, np.int64) - np.asarray(rel.lo, np.int64)
    return int(degree.sum()), np.flatnonzero(degree[:n] != old_degree)


def _grown_indptr(indptr: np.ndarray, local_tails: np.ndarray, m: int) -> np.ndarray:
    """An indptr over n tails extended by m tails whose entries (sorted tails - n) follow the old ones."""
    indptr = np.asarray(indptr, np.int64)
    counts = np.bincount(local_tails.astype(np.int64), minlength=m)[:m]
    return np.concatenate([indptr, indptr[-1] + indptr_from_counts(counts)[1:]])


def _grow_splits(src: GraphStore, dest: Path, new: NewSamples, checksums: dict) -> dict[str, int]:
    """Each split extended by the new samples the build's rule puts in it."""
    build = src.meta.get("build", {})
    cutoff = cutoff_day(build.get("cutoff", "2024-12-20"))
    added = split_ids(new.pday, new.columns["final_state"], cutoff, int(build.get("val_days", 7)),
                      first_node=src.num_nodes("video"))
    counts = {}
    for name, ids in added.items():
        old = src.split(name)
        if len(ids):
            _rewrite(dest, f"splits/{name}", np.concatenate([old, ids]), checksums)
        counts[name] = int(len(old) + len(ids))
    return counts


# --- features: new rows with the recorded encoder, and the video rows whose graph features changed ---------
def _grow_features(src: GraphStore, dest: Path, meta: dict, new: NewSamples, view_dir: Path, touched: np.ndarray,
                   progress: bool) -> None:
    """Encode the rows each featurized type grew by (and `touched` video rows) into its grown array."""
    feats = meta.get("features", {})
    old = src.meta["node_types"]
    grow = [t for t in feats if meta["node_types"][t] > old[t] or (t == "video" and touched.size)]
    if not grow:
        return
    view = _tail_view(view_dir, meta, new, {t: meta["node_types"][t] - old[t] for t in feats})
    bar = _bar(sum(meta["node_types"][t] - old[t] for t in grow) + (touched.size if "video" in grow else 0), progress)
    for t in grow:
        encoder = recorded_encoder(feats, t)
        if t == "video":  # graph-derived features read the whole grown store
            job = jobs_for_types(zarr.open_group(str(dest), mode="r"), dest, meta, ["video"], encoder)[0]
            shift, rewrite = 0, touched
        else:
            job = jobs_for_types(view.root, view_dir, view.meta, [t], encoder)[0]
            shift, rewrite = old[t], np.zeros(0, np.int64)
        feats[t] = _grow_feature(dest / "features" / t / feats[t]["name"], feats[t], job, old[t], meta["node_types"][t],
                                 shift, rewrite, bar)
    if bar is not None:
        bar.close()


@dataclass
class _View:
    root: zarr.Group
    meta: dict


def _tail_view(view_dir: Path, meta: dict, new: NewSamples, rows: dict[str, int]) -> _View:
    """A store-shaped view of the new rows alone (columns, sample and comment tables, new topics) for the
    featurize job builders: row i of a type in the view is row old_rows + i of the grown store."""
    root = zarr.open_group(str(view_dir), mode="w", zarr_format=3)
    group = root.create_group("columns")
    for name, values in new.columns.items():
        write_array(group, name, values)
    link_file(new.samples_part, view_dir / "samples.parquet")
    link_file(new.comments_part, view_dir / "comments.parquet")
    return _View(root, {**meta, "node_types": rows, "topics": new.topics})


def _grow_feature(folder: Path, info: dict, job, old_rows: int, new_rows: int, shift: int, rewrite: np.ndarray,
                  bar) -> dict:
    """Write rows [old_rows, new_rows) and rewrite rows `rewrite` of a feature array, row r from the
    job's row r - shift; returns the type's metadata entry."""
    arr = zarr.open_array(str(folder), mode="r")
    state = dict(arr.attrs.get("featurize", {}))
    where = f"features/{folder.parent.name}/{folder.name}"
    if not state.get("complete"):
        raise UserError(f"{where} is not complete; finish `graphstore featurize` before appending")
    settings = state.get("settings", {})
    if job.dim != arr.shape[1] or job.source != settings.get("source", job.source):
        raise UserError(f"{where}: the recorded encoder gives {job.dim}-d '{job.source}' rows, the array holds "
                        f"{arr.shape[1]}-d '{settings.get('source')}'; re-run `graphstore featurize --overwrite`")

    def encode(lo: int, hi: int) -> np.ndarray:
        block = np.asarray(job.encode(lo - shift, hi - shift))
        if block.shape != (hi - lo, job.dim):
            raise UserError(f"{where}: encoder returned shape {block.shape}, expected {(hi - lo, job.dim)}")
        if bar is not None:
            bar.update(hi - lo)
        return block.astype(arr.dtype)

    arr = grow_array(folder, new_rows, ((lo, encode(lo, min(new_rows, lo + WRITE_ROWS)))
                                        for lo in range(old_rows, new_rows, WRITE_ROWS)))
    _rewrite_rows(arr, rewrite, encode)
    state["settings"] = {**settings, "rows": new_rows}
    state.update(rows_done=new_rows, complete=True)
    info = dict(info)
    if state.get("xxh64"):
        state["xxh64"] = info["xxh64"] = grown_checksum(arr, state["xxh64"], old_rows, rewrite)
    arr.attrs["featurize"] = state
    if job.report is not None:
        info["import"] = dict(job.report)
    return info


def _rewrite_rows(arr: zarr.Array, rows: np.ndarray, encode: Callable[[int, int], np.ndarray]) -> None:
    """Re-encode `rows` (sorted), one read-modify-write per chunk they fall in."""
    if not rows.size:
        return
    chunk = int(arr.chunks[0])
    breaks = np.flatnonzero((np.diff(rows) != 1) | (np.diff(rows // chunk) != 0)) + 1
    runs = np.split(rows, breaks)
    by_chunk: dict[int, list[np.ndarray]] = {}
    for run in runs:
        by_chunk.setdefault(int(run[0]) // chunk, []).append(run)
    for c, chunk_runs in by_chunk.items():
        lo, hi = c * chunk, min(arr.shape[0], (c + 1) * chunk)
        block = arr[lo:hi]
        for run in chunk_runs:
            a, b = int(run[0]), int(run[-1]) + 1
            block[a - lo:b - lo] = encode(a, b)
        arr[lo:hi] = block


def _bar(total: int, enabled: bool):
    if not enabled or not total:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="row", unit_scale=True, desc="featurize new rows", smoothing=0.05)
