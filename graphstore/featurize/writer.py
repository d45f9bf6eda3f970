"""How featurize writes one matrix: chunk sizes, codecs, resumable block writes with their digest, and progress."""
from __future__ import annotations

import os
import signal

import numpy as np
import xxhash
import zarr
from zarr.codecs import BloscCodec, BloscShuffle

from graphstore.errors import UserError
from graphstore.featurize.jobs import FeatureJob
from graphstore.format.arrays import array_checksum

DTYPES = ("float16", "float32")
CODECS = ("auto", "none", "lz4", "zstd")
CHUNK_BYTES = 64 << 10  # compressed arrays: small chunks, cached by FeatureArray
RAW_CHUNK_BYTES = 16 << 20  # raw arrays: large chunks, memory-mapped by FeatureArray
WRITE_ROWS = 4096
KILL_ENV = "GRAPHSTORE_FEATURIZE_KILL_AFTER_ROWS"  # tests: SIGKILL the process once this many rows are written


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


def _settings(job: FeatureJob, dtype: str) -> dict:
    return {"dim": job.dim, "dtype": dtype, "source": job.source, "rows": job.rows}


def job_row_bytes(job: FeatureJob, dtype: str) -> int:
    return job.dim * np.dtype(dtype).itemsize


def rows_done(fgroup: zarr.Group, job: FeatureJob, dtype: str, overwrite: bool) -> int:
    """Rows of `job` that an earlier run wrote with the same settings (what `write_job` will skip)."""
    group = fgroup.get(job.node_type)
    if overwrite or group is None or "x" not in group:
        return 0
    state = dict(group["x"].attrs.get("featurize", {}))
    if state.get("settings") != _settings(job, dtype):
        return 0
    return job.rows if state.get("complete") else int(state.get("rows_done", 0))


def write_job(fgroup: zarr.Group, job: FeatureJob, dtype: str, codec: str, chunk_bytes: int, raw_chunk_bytes: int,
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
    row_bytes = job_row_bytes(job, dtype)
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


def progress_bar(total: int, done: int, enabled: bool):
    """A bar over the feature bytes to write; `done` (written by earlier runs) is its start, not counted in the rate."""
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=done, unit="B", unit_scale=True, unit_divisor=1024, desc="featurize",
                smoothing=0.05, mininterval=1.0)
