"""`featurize_store`: encode every node type into `features/<type>/x` as the store's next generation, resumable."""
from __future__ import annotations

import inspect
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import zarr

from graphstore.format import generations
from graphstore.atomic import write_json
from graphstore.errors import UserError
from graphstore.featurize.encoders import DEFAULT_TIME_ENCODING, TIME_ENCODINGS
from graphstore.featurize.jobs import encoder_record, store_jobs
from graphstore.featurize.per_sample import sample_feature_names
from graphstore.featurize.text import HASH_DIM, make_text_encoder
from graphstore.featurize.writer import (CHUNK_BYTES, CODECS, DTYPES, KILL_ENV, RAW_CHUNK_BYTES, progress_bar,
                                         job_row_bytes, rows_done, write_job)
from graphstore.schema import FORMAT_VERSION
from graphstore.store import GraphStore

log = logging.getLogger(__name__)

PENDING = "featurize.pending.json"  # in an uncommitted generation: the settings of the featurize writing it


class FeaturizeStopped(Exception):
    """`featurize_into` stopped at `stop_after_rows`; `meta` is the features document of the jobs completed."""

    def __init__(self, meta: dict[str, dict]) -> None:
        super().__init__("featurize stopped at stop_after_rows")
        self.meta = meta


def featurize_store(store_path: str | Path, text_encoder: str = "hash", text_dim: int = HASH_DIM,
                    video_features: str | None = None, dtype: str = "float16", progress: bool = True,
                    **options: Any) -> dict[str, dict]:
    """Write `features/<type>/x` for every node type as the store's next generation; resumes an interrupted run.

    Takes the store's writer lock, writes into an uncommitted generation (the unchanged files hard-linked,
    never rewritten) and switches the store to it in one atomic rename, so that a handle opened before,
    an interruption or a crash never sees a half-written array. An interrupted run leaves its generation
    pending; the next run with the same settings on the same generation resumes it, any other discards it.
    A run that changes nothing commits nothing. Options and the returned document are `featurize_into`'s.
    """
    with GraphStore.open_for_writing(store_path) as src:
        location = src.location
        args = {"text_encoder": text_encoder, "text_dim": text_dim, "video_features": video_features, "dtype": dtype,
                **options}
        settings = {"base_generation": src.generation, **_pending_settings(args)}
        generation = src.generation + 1
        dest = generations.generation_dir(location, generation)
        if not _resumable(_read_pending(dest), settings):
            generations.discard_pending(location, src.generation)
            _link_generation(src, dest, args)
            generations.write_document(dest, {**src.meta, "generation": generation})
            write_json(dest / PENDING, settings)
        # the arrays --overwrite replaces were not linked into `dest`: resuming there must not restart them
        try:
            meta = featurize_into(dest, progress=progress, **{**args, "overwrite": False})
        except FeaturizeStopped as stopped:
            return stopped.meta  # stop_after_rows: left pending, as a killed run would
        except UserError:  # a mistake (settings that need --overwrite, a bad encoder): nothing worth resuming
            generations.discard_pending(location, src.generation)
            raise
        if _same_contents(generations.read_document(dest), src.meta):
            generations.discard_pending(location, src.generation)  # nothing changed: no new generation
            return meta
        (dest / PENDING).unlink()
        generations.commit(location, generation, FORMAT_VERSION)
        generations.collect_garbage(location, generation)
    return meta


def _pending_settings(args: dict[str, Any]) -> dict[str, Any]:
    """The run's settings as JSON, defaults filled in (what must match for a pending generation to be resumed)."""
    defaults = {name: p.default for name, p in inspect.signature(featurize_into).parameters.items()
                if p.default is not inspect.Parameter.empty}
    out = {k: v for k, v in {**defaults, **args}.items() if k not in ("progress", "stop_after_rows")}
    if out.get("node_types"):
        out["node_types"] = sorted(out["node_types"])
    return json.loads(json.dumps(out, default=str))


def _resumable(pending: dict | None, settings: dict[str, Any]) -> bool:
    """Whether a pending generation was started on this generation with these settings (None: 'as the store has')."""
    return pending is not None and all(pending.get(k) == v for k, v in settings.items() if v is not None)


def _read_pending(dest: Path) -> dict | None:
    try:
        return json.loads((dest / PENDING).read_text())
    except (OSError, ValueError):
        return None


def _link_generation(src, dest: Path, args: dict[str, Any]) -> None:
    """Hard-link `src` into `dest`, leaving out the feature arrays that this run replaces anyway (--overwrite)."""
    replaced = tuple(args.get("node_types") or src.meta["node_types"]) if args.get("overwrite") else ()
    generations.link_tree(src.path, dest, skip=("zarr.json", generations.GEN_DIR, "features", "staging"))
    if (src.path / "features").is_dir():
        generations.link_tree(src.path / "features", dest / "features", skip=replaced)


def _same_contents(a: dict, b: dict) -> bool:
    return {k: v for k, v in a.items() if k != "generation"} == {k: v for k, v in b.items() if k != "generation"}


def featurize_into(
    store_path: str | Path,
    text_encoder: str = "hash",
    text_dim: int = HASH_DIM,
    video_features: str | None = None,
    dtype: str = "float16",
    progress: bool = True,
    *,
    video_dim: int | None = None,
    codec: str = "auto",
    chunk_bytes: int = CHUNK_BYTES,
    raw_chunk_bytes: int = RAW_CHUNK_BYTES,
    overwrite: bool = False,
    node_types: Sequence[str] | None = None,
    text_kwargs: dict[str, Any] | None = None,
    stop_after_rows: int | None = None,
    time_encoding: str | None = None,
) -> dict[str, dict]:
    """Write `features/<type>/x` for every node type in place, into a store directory not yet published
    (a build's staging directory or an uncommitted generation); resumes a partial run with the same settings.

    Returns the `features` metadata document, also stored in the store's metadata.
    `time_encoding` ('multiscale' or 'paper'; None: the store's current one, else multiscale) picks the
    time features; naming another than the store's re-encodes the time-derived arrays.
    `stop_after_rows` (tests) stops after writing that many rows in total, as an interruption would,
    raising `FeaturizeStopped`.
    """
    path = Path(store_path)
    if dtype not in DTYPES:
        raise UserError(f"--dtype must be one of {DTYPES}, got {dtype!r}")
    if codec not in CODECS:
        raise UserError(f"codec must be one of {CODECS}, got {codec!r}")
    if not (path / "zarr.json").is_file():
        raise UserError(f"{path}: not a graphstore (no zarr.json)")
    root = zarr.open_group(str(path), mode="r+", zarr_format=3)
    meta = dict(root.attrs.get("graphstore") or {})
    if meta.get("format") != "graphstore":
        raise UserError(f"{path}: not a graphstore (no 'graphstore' metadata)")
    unknown = sorted(set(node_types or ()) - set(meta["node_types"]))
    if unknown:
        raise UserError(f"unknown node type(s) {unknown}; the store has {list(meta['node_types'])}")
    scheme = time_encoding or meta.get("time_encoding") or DEFAULT_TIME_ENCODING
    if scheme not in TIME_ENCODINGS:
        raise UserError(f"--time-encoding must be one of {', '.join(TIME_ENCODINGS)}, got {scheme!r}")
    reencode = {"time", "ctime", "comment"} if time_encoding and time_encoding != meta.get("time_encoding") else set()
    text = make_text_encoder(text_encoder, dim=text_dim, **(text_kwargs or {}))
    encoder = encoder_record(text_encoder, text_dim, text_kwargs, video_features, video_dim)
    jobs = [j for j in store_jobs(root, path, meta, text, video_features, video_dim, scheme)
            if not node_types or j.node_type in node_types]
    meta["time_encoding"] = scheme
    fgroup = root.require_group("features")
    done_meta: dict[str, dict] = dict(meta.get("features", {}))
    budget = [stop_after_rows, int(os.environ.get(KILL_ENV, 0)) or None]
    # progress in bytes written (a text row costs more than a count row; bytes are the closer measure),
    # starting at what earlier runs wrote, so that the rate and the ETA count this run's work alone
    done = sum(rows_done(fgroup, j, dtype, overwrite or j.node_type in reencode) * job_row_bytes(j, dtype) for j in jobs)
    bar = progress_bar(sum(j.rows * job_row_bytes(j, dtype) for j in jobs), done, progress)
    try:
        for job in jobs:
            info = write_job(fgroup, job, dtype, codec, chunk_bytes, raw_chunk_bytes,
                              overwrite or job.node_type in reencode, bar, budget)
            if job.release is not None:
                job.release()
            if info is None:
                raise FeaturizeStopped(done_meta)  # interrupted on purpose (stop_after_rows)
            if job.node_type == "video":
                visual = job.dim - len(sample_feature_names())
                info.update(parts={"visual": [0, visual], "sample": [visual, job.dim]},
                            sample_columns=sample_feature_names())
            if job.report is not None:
                info["import"] = dict(job.report)
            info["encoder"] = encoder
            done_meta[job.node_type] = info
            meta["features"] = done_meta
            root.attrs["graphstore"] = meta
    finally:
        if bar is not None:
            bar.close()
    return done_meta
