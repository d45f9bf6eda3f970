"""`featurize_store`: encode every node type into `features/<type>/x`, chunk by chunk, resumable."""
from __future__ import annotations

import inspect
import json
import logging
import os
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xxhash
import zarr
from zarr.codecs import BloscCodec, BloscShuffle

from graphstore import generations
from graphstore.atomic import write_json
from graphstore.errors import UserError
from graphstore.schema import FORMAT_VERSION
from graphstore.zarr_io import ColumnReader, array_checksum
from graphstore.features.encoders import DEFAULT_TIME_ENCODING, TIME_ENCODINGS, log_count_encoding, time_dim, time_encoding
from graphstore.features.sample import SampleFeatures, sample_feature_names
from graphstore.features.text import HASH_DIM, TextEncoder, make_text_encoder
from graphstore.features.video import open_video_features

log = logging.getLogger(__name__)

DTYPES = ("float16", "float32")
CODECS = ("auto", "none", "lz4", "zstd")
CHUNK_BYTES = 64 << 10  # compressed arrays: small chunks, cached by FeatureArray
RAW_CHUNK_BYTES = 16 << 20  # raw arrays: large chunks, memory-mapped by FeatureArray
WRITE_ROWS = 4096
KILL_ENV = "GRAPHSTORE_FEATURIZE_KILL_AFTER_ROWS"  # tests: SIGKILL the process once this many rows are written
# node type -> (column, missing-mask column or None) for log(v + 1) features
COUNT_TYPES = {
    "video_time": ("duration", None), "likes": ("likes", "likes_missing"),
    "collects": ("collects", "collects_missing"), "views": ("views", "views_missing"),
    "shares": ("shares", "shares_missing"), "comments": ("comment_count", "comment_count_missing"),
    "fans": ("fans", "fans_missing"),
}
TIME_TYPES = {"time": "post_time", "ctime": "ctime"}
TEXT_TYPES = ("title", "description", "topic", "platform")


@dataclass
class FeatureJob:
    """One feature matrix to write: its rows come from `encode(lo, hi)`."""

    node_type: str
    rows: int
    dim: int
    source: str
    encode: Callable[[int, int], np.ndarray]
    report: dict[str, Any] | None = None  # what an import matched, kept in the metadata as "import"
    release: Callable[[], None] | None = None  # frees what `encode` set up, once the matrix is written


def chunk_rows_for(dim: int, dtype: str, chunk_bytes: int = CHUNK_BYTES, max_log2: int = 16) -> int:
    """Rows per chunk: a power of two near `chunk_bytes` per chunk, within 16..2**max_log2."""
    row_bytes = max(1, dim * np.dtype(dtype).itemsize)
    return 1 << max(4, min(max_log2, int(np.log2(max(1, chunk_bytes // row_bytes)))))


def balanced_chunk_rows(rows: int, max_rows: int) -> int:
    """At most `max_rows` rows per chunk, spread evenly (a multiple of 16): Zarr pads the last chunk
    to full size on disk, and a raw memory-mapped array would carry up to a whole chunk of padding."""
    n_chunks = max(1, -(-rows // max_rows))
    per_chunk = -(-rows // n_chunks)
    return max(16, -(-per_chunk // 16) * 16)


AUTO_COMPRESS_MAX_BYTES = 16 << 20  # 'auto' compresses only arrays small enough to sit in the chunk cache


def _codec_for(codec: str, sample: np.ndarray, total_bytes: int = 0) -> list:
    """Compressors for a new array; 'auto' keeps raw unless the array is small and LZ4 shrinks it 4x.

    Measured (bench/gather.py, scale 1.0 title 256-d float16): raw memory-mapped gathers run at
    ~2.4M rows/s, LZ4/Zstd chunks through the cache at 24k/16k rows/s for 2.7x/6.2x less disk,
    so compression is only worth it for small, nearly constant matrices (a 381k-row hash-text
    matrix compresses 4x too, but its random gathers then ran at 40k rows/s instead of millions).
    """
    if codec == "none":
        return []
    if codec in ("lz4", "zstd"):
        return [BloscCodec(cname=codec, clevel=5 if codec == "lz4" else 3, shuffle=BloscShuffle.shuffle)]
    import numcodecs

    raw = np.ascontiguousarray(sample).tobytes()
    if not raw or total_bytes > AUTO_COMPRESS_MAX_BYTES:
        return []
    packed = numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.SHUFFLE).encode(raw)
    return _codec_for("lz4", sample) if len(packed) * 4 <= len(raw) else []


def _with_sample_features(job: FeatureJob, path: Path) -> FeatureJob:
    """The video job with the per-sample numeric features appended to its (visual) columns.

    The per-sample rows are computed by range (`SampleFeatures`), set up at the first rows asked for,
    so a resumed run whose video matrix is complete does not compute them.
    """
    from graphstore.store import GraphStore

    state: dict[str, SampleFeatures] = {}
    visual = job.encode

    def encode(lo: int, hi: int) -> np.ndarray:
        if "rows" not in state:
            state["rows"] = SampleFeatures(GraphStore.open(path))
        return np.concatenate([np.asarray(visual(lo, hi), dtype=np.float64), state["rows"].rows(lo, hi)], axis=1)

    width = len(sample_feature_names())
    return FeatureJob(job.node_type, job.rows, job.dim + width, f"{job.source}+sample:v2", encode, job.report,
                      release=state.clear)


class TableColumn:
    """Rows of one column of a store table (its Parquet file, or the parts of an appended store) by range,
    one row group decoded at a time: the column is never held whole."""

    def __init__(self, files: Sequence[Path], column: str) -> None:
        import pyarrow.parquet as pq

        self.files, self.column = list(files), column
        self.groups: list[tuple[int, int, int, int]] = []  # (first row, end row, file, row group)
        start = 0
        for i, f in enumerate(self.files):
            meta = pq.ParquetFile(f).metadata
            for g in range(meta.num_row_groups):
                rows = meta.row_group(g).num_rows
                self.groups.append((start, start + rows, i, g))
                start += rows
        self.num_rows = start
        self._cached: tuple[int, Any] = (-1, None)

    def __len__(self) -> int:
        return self.num_rows

    def _group(self, k: int):
        import pyarrow.parquet as pq

        if self._cached[0] != k:
            _, _, i, g = self.groups[k]
            self._cached = (k, pq.ParquetFile(self.files[i]).read_row_group(g, columns=[self.column]).column(0))
        return self._cached[1]

    def arrow(self, lo: int, hi: int):
        """Rows [lo, hi) as a pyarrow ChunkedArray."""
        import pyarrow as pa

        parts = []
        for k, (a, b, _, _) in enumerate(self.groups):
            if b > lo and a < hi:
                parts.extend(self._group(k).slice(max(lo, a) - a, min(hi, b) - max(lo, a)).chunks)
        return pa.chunked_array(parts) if parts else pa.chunked_array([], type=self._type())

    def _type(self):
        import pyarrow.parquet as pq

        return pq.read_schema(self.files[0]).field(self.column).type

    def texts(self, lo: int, hi: int) -> list[str]:
        """Rows [lo, hi) as strings (null as '')."""
        return [x or "" for x in self.arrow(lo, hi).to_pylist()]

    def numpy(self, lo: int, hi: int, dtype: type = np.float64) -> np.ndarray:
        """Rows [lo, hi) as a NumPy array."""
        return self.arrow(lo, hi).to_numpy().astype(dtype)


def video_parts(info: dict) -> dict[str, list[int]]:
    """Column ranges [lo, hi) of the video matrix: 'visual' and (stores featurized since sample:v1) 'sample'."""
    if "parts" in info:
        return {k: list(v) for k, v in info["parts"].items()}
    return {"visual": [0, int(info["dim"])]}


def _jobs(root: zarr.Group, path: Path, meta: dict, text: TextEncoder, video_features: str | None,
          video_dim: int | None, time_scheme: str) -> list[FeatureJob]:
    """One job per node type; every job reads its inputs by row range (columns by chunk, text by row group)."""
    from graphstore.store import table_files

    n = {t: int(c) for t, c in meta["node_types"].items()}
    col = lambda name: ColumnReader(root[f"columns/{name}"])  # noqa: E731
    jobs: list[FeatureJob] = []

    if "video" in n:
        if video_features:
            vids = open_video_features(video_features, path, n["video"], video_dim)
            jobs.append(FeatureJob("video", n["video"], vids.dim, f"import:{video_features}", vids.encode, vids.report))
        else:
            d = int(video_dim or 1)
            jobs.append(FeatureJob("video", n["video"], d, "none (zeros)", lambda lo, hi, d=d: np.zeros((hi - lo, d))))
    for t, c in TIME_TYPES.items():
        if t in n:
            jobs.append(FeatureJob(t, n[t], time_dim(time_scheme), f"time-{time_scheme}:{c}",
                                   lambda lo, hi, s=col(c): time_encoding(s.rows(lo, hi), scheme=time_scheme)))
    for t, (c, m) in COUNT_TYPES.items():
        if t in n:
            jobs.append(FeatureJob(t, n[t], 2, f"log1p:{c}+mask", lambda lo, hi, v=col(c), mm=col(m) if m else None:
                                   log_count_encoding(v.rows(lo, hi).astype(np.float64),
                                                      None if mm is None else mm.rows(lo, hi))))
    texts: dict[str, Any] = {}
    if "title" in n or "description" in n:
        files = table_files(path, "samples")
        texts["title"], texts["description"] = TableColumn(files, "title"), TableColumn(files, "description")
    texts["topic"] = list(meta.get("topics", []))
    texts["platform"] = list(meta.get("platforms", []))
    for t in TEXT_TYPES:
        if t in n:
            if len(texts[t]) != n[t]:
                raise UserError(f"{path}: {n[t]} {t} nodes but {len(texts[t])} texts in the store")
            rows = texts[t].texts if isinstance(texts[t], TableColumn) else \
                (lambda lo, hi, s=texts[t]: [x or "" for x in s[lo:hi]])
            jobs.append(FeatureJob(t, n[t], text.dim, f"text:{text.name}", lambda lo, hi, r=rows: text.encode(r(lo, hi))))
    if "comment" in n:
        files = table_files(path, "comments")
        ctext, cts = TableColumn(files, "text"), TableColumn(files, "timestamp")

        def comment(lo: int, hi: int) -> np.ndarray:
            return np.concatenate([text.encode(ctext.texts(lo, hi)),
                                   time_encoding(cts.numpy(lo, hi), scheme=time_scheme)], axis=1)

        jobs.append(FeatureJob("comment", n["comment"], text.dim + time_dim(time_scheme),
                               f"text:{text.name}+time-{time_scheme}:timestamp", comment))
    return [_with_sample_features(j, path) if j.node_type == "video" else j for j in jobs]


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
    from graphstore.store import GraphStore

    location = GraphStore.open(store_path).location  # a UserError for what is not a store, before locking it
    with generations.exclusive(location):
        src = GraphStore.open(location)  # the generation current once the lock is held
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
    jobs = [j for j in _jobs(root, path, meta, text, video_features, video_dim, scheme)
            if not node_types or j.node_type in node_types]
    meta["time_encoding"] = scheme
    fgroup = root.require_group("features")
    done_meta: dict[str, dict] = dict(meta.get("features", {}))
    budget = [stop_after_rows, int(os.environ.get(KILL_ENV, 0)) or None]
    # progress in bytes written (a text row costs more than a count row; bytes are the closer measure),
    # starting at what earlier runs wrote, so that the rate and the ETA count this run's work alone
    done = sum(_rows_done(fgroup, j, dtype, overwrite or j.node_type in reencode) * _row_bytes(j, dtype) for j in jobs)
    bar = _progress_bar(sum(j.rows * _row_bytes(j, dtype) for j in jobs), done, progress)
    try:
        for job in jobs:
            info = _write_job(fgroup, job, dtype, codec, chunk_bytes, raw_chunk_bytes,
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


def _settings(job: FeatureJob, dtype: str) -> dict:
    return {"dim": job.dim, "dtype": dtype, "source": job.source, "rows": job.rows}


def _row_bytes(job: FeatureJob, dtype: str) -> int:
    return job.dim * np.dtype(dtype).itemsize


def _rows_done(fgroup: zarr.Group, job: FeatureJob, dtype: str, overwrite: bool) -> int:
    """Rows of `job` that an earlier run wrote with the same settings (what `_write_job` will skip)."""
    group = fgroup.get(job.node_type)
    if overwrite or group is None or "x" not in group:
        return 0
    state = dict(group["x"].attrs.get("featurize", {}))
    if state.get("settings") != _settings(job, dtype):
        return 0
    return job.rows if state.get("complete") else int(state.get("rows_done", 0))


def _write_job(fgroup: zarr.Group, job: FeatureJob, dtype: str, codec: str, chunk_bytes: int, raw_chunk_bytes: int,
               overwrite: bool, bar, budget: list) -> dict | None:
    """Encode and write one matrix from where a previous run stopped; None when the row budget ran out."""
    want = _settings(job, dtype)
    group = fgroup.require_group(job.node_type)
    arr = group["x"] if "x" in group else None
    state = dict(arr.attrs.get("featurize", {})) if arr is not None else {}
    if arr is not None and (overwrite or state.get("settings") != want):
        if state.get("complete") and not overwrite:
            raise UserError(f"features/{job.node_type}/x exists with other settings ({state.get('settings')}); "
                            "pass --overwrite to re-encode")
        del group["x"]
        arr, state = None, {}
    if arr is not None and state.get("complete"):
        return _info(arr, want)
    start = int(state.get("rows_done", 0))
    if arr is None:
        small = chunk_rows_for(job.dim, dtype, chunk_bytes)
        # the codec choice looks at chunks spread over the rows (neighbouring rows are alike in node order)
        starts = sorted({min(max(0, job.rows - small), (job.rows * k // 4) // small * small) for k in range(4)})
        sample = np.concatenate([job.encode(lo, min(job.rows, lo + small)) for lo in starts]).astype(dtype) \
            if job.rows else np.zeros((0, job.dim), dtype)
        compressors = _codec_for(codec, sample, job.rows * job.dim * np.dtype(dtype).itemsize)
        chunk = small if compressors else balanced_chunk_rows(job.rows, chunk_rows_for(job.dim, dtype, raw_chunk_bytes, 26))
        arr = group.create_array("x", shape=(job.rows, job.dim), dtype=dtype, chunks=(chunk, job.dim),
                                 compressors=compressors, fill_value=0, config={"write_empty_chunks": True})
        arr.attrs["featurize"] = {"settings": want, "rows_done": 0, "complete": False}
    chunk = int(arr.chunks[0])
    step = max(chunk, (WRITE_ROWS // chunk) * chunk)
    row_bytes = _row_bytes(job, dtype)
    # a run that writes the array from its first row hashes it on the way; a resumed one reads it back at the end
    digest = xxhash.xxh64() if start == 0 else None
    lo = start
    while lo < job.rows:
        hi = min(job.rows, lo + step)
        if budget[0] is not None:
            if budget[0] <= 0:
                return None
            hi = min(hi, lo + max(chunk, budget[0] // chunk * chunk))
            budget[0] -= hi - lo
        block = job.encode(lo, hi)
        if block.shape != (hi - lo, job.dim):
            raise UserError(f"{job.node_type}: encoder returned shape {block.shape}, expected {(hi - lo, job.dim)}")
        block = np.ascontiguousarray(block, dtype=np.dtype(dtype).newbyteorder("<"))
        arr[lo:hi] = block
        if digest is not None:
            digest.update(block)
        arr.attrs["featurize"] = {"settings": want, "rows_done": hi, "complete": False}
        if budget[1] is not None:
            budget[1] -= hi - lo
            if budget[1] <= 0:
                os.kill(os.getpid(), signal.SIGKILL)
        if bar is not None:
            bar.update((hi - lo) * row_bytes)
        lo = hi
    # the digest that `graphstore info --verify` checks, over the logical bytes as written
    arr.attrs["featurize"] = {"settings": want, "rows_done": job.rows, "complete": True,
                              "xxh64": digest.hexdigest() if digest is not None else array_checksum(arr)}
    return _info(arr, want)


def _info(arr: zarr.Array, want: dict) -> dict:
    codecs = [c.to_dict()["name"] for c in arr.compressors] if arr.compressors else []
    cname = arr.compressors[0].to_dict().get("configuration", {}).get("cname") if codecs else None
    info = {"name": "x", "dim": want["dim"], "dtype": want["dtype"], "source": want["source"],
            "chunk_rows": int(arr.chunks[0]), "codec": f"blosc-{cname}" if cname else "raw"}
    digest = arr.attrs.get("featurize", {}).get("xxh64")
    if digest:  # arrays featurized before checksums were recorded have none
        info["xxh64"] = digest
    return info


def _progress_bar(total: int, done: int, enabled: bool):
    """A bar over the feature bytes to write; `done` (written by earlier runs) is its start, not counted in the rate."""
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=done, unit="B", unit_scale=True, unit_divisor=1024, desc="featurize",
                smoothing=0.05, mininterval=1.0)


# --- `graphstore append` (issue 13): encode the rows a store grew by as featurize_store encoded the rest ---
def encoder_record(text_encoder: str, text_dim: int, text_kwargs: dict[str, Any] | None, video_features: str | None,
                   video_dim: int | None) -> dict[str, Any]:
    """The encoder settings kept per node type in the metadata (`features.<type>.encoder`), paths made absolute."""
    spec = text_encoder if text_encoder in ("hash", "minilm") else str(Path(text_encoder).resolve())
    return {"text_encoder": spec, "text_dim": int(text_dim), "text_kwargs": dict(text_kwargs or {}),
            "video_features": str(Path(video_features).resolve()) if video_features else None, "video_dim": video_dim}


def recorded_encoder(features_meta: dict[str, dict], node_type: str) -> dict[str, Any]:
    """The encoder that featurized `node_type`: its record, or what the sources imply for stores featurized before records."""
    info = features_meta[node_type]
    if "encoder" in info:
        return dict(info["encoder"])
    text = {t: features_meta[t] for t in TEXT_TYPES if t in features_meta}
    if any(not f["source"].startswith("text:hash") for f in text.values()):
        raise UserError(f"features/{node_type}: featurized without a recorded text encoder; "
                        "run `graphstore featurize --overwrite` once to record it")
    video = features_meta.get("video", {})
    source = video.get("source", "")
    imported = source.split("+")[0][len("import:"):] if source.startswith("import:") else None
    visual_dim = int(video.get("parts", {}).get("visual", [0, video.get("dim", 1)])[1])
    return encoder_record("hash", next(iter(text.values()))["dim"] if text else HASH_DIM, None, imported,
                          None if imported else visual_dim)


def jobs_for_types(root: zarr.Group, path: Path, meta: dict, node_types: Sequence[str],
                   encoder: dict[str, Any]) -> list[FeatureJob]:
    """The FeatureJobs of `node_types` alone, with a recorded encoder; only these types' data is read.

    `root`, `path` and `meta` may describe a part of a store (the rows an append adds), whose
    `meta["node_types"]` gives the rows of each type.
    """
    wanted = {t: int(meta["node_types"][t]) for t in node_types}
    text = make_text_encoder(encoder["text_encoder"], dim=encoder["text_dim"], **encoder.get("text_kwargs", {}))
    jobs = _jobs(root, path, {**meta, "node_types": wanted}, text, encoder["video_features"], encoder["video_dim"],
                 meta.get("time_encoding") or DEFAULT_TIME_ENCODING)
    return [j for j in jobs if j.node_type in wanted]
