"""Zarr v3 array helpers: chunked writes, checksums, and a zero-copy memmap path."""
from __future__ import annotations

import mmap
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import xxhash
import zarr
from zarr.codecs import BloscCodec, BloscShuffle

from graphstore.format.damage import damaged
from graphstore.format.integrity import check_chunk_files
from graphstore.format.layout import ArrayLayout

_COMPRESSOR = BloscCodec(cname="zstd", clevel=3, shuffle=BloscShuffle.shuffle)


def write_array(group: zarr.Group, name: str, data: np.ndarray, *, chunk_rows: int | None = None,
                compress: bool = False) -> zarr.Array:
    """Write a 1-d/2-d array; uncompressed single-chunk arrays can later be memory-mapped."""
    data = np.ascontiguousarray(data)
    rows = data.shape[0]
    chunk = max(1, rows if chunk_rows is None else min(chunk_rows, rows))
    arr = group.create_array(
        name, shape=data.shape, dtype=data.dtype, chunks=(chunk, *data.shape[1:]),
        compressors=[_COMPRESSOR] if compress else None, fill_value=0,
        config={"write_empty_chunks": True},
    )
    if rows:
        arr[...] = data
    return arr


def array_checksum(arr: zarr.Array, lo: int = 0, hi: int | None = None) -> str:
    """xxh64 of the logical little-endian bytes of rows [lo, hi) (default: the whole array)."""
    h = xxhash.xxh64()
    hi = arr.shape[0] if hi is None else hi
    step = max(1, (64 << 20) // max(1, arr.dtype.itemsize * int(np.prod(arr.shape[1:], dtype=np.int64))))
    for start in range(lo, hi, step):
        block = arr[start:min(hi, start + step)]
        h.update(np.ascontiguousarray(block).astype(arr.dtype.newbyteorder("<"), copy=False).tobytes())
    return h.hexdigest()


# A checksum is the xxh64 hex of the whole array, or (arrays grown by `graphstore append`) a list of
# [start, stop, hex] row segments covering it, so that an append hashes only the rows it wrote.
Digest = str | list


def checksum_matches(arr: zarr.Array, digest: Digest) -> bool:
    """Whether an array's bytes still match its recorded checksum (either form)."""
    if isinstance(digest, str):
        return array_checksum(arr) == digest
    if not digest or digest[0][0] != 0 or digest[-1][1] != arr.shape[0]:
        return False
    return all(array_checksum(arr, lo, hi) == h for lo, hi, h in digest)


def grown_checksum(arr: zarr.Array, digest: Digest, old_rows: int, changed: np.ndarray | None = None) -> list:
    """Segments for an array grown from `old_rows` rows whose rows `changed` (< old_rows) were rewritten.

    Untouched segments keep their digests; a segment with a changed row is hashed again, split at
    chunk boundaries so that later appends rehash only the chunks they touch; the new rows get one segment.
    """
    segments = [[0, old_rows, digest]] if isinstance(digest, str) else [list(s) for s in digest]
    changed = np.zeros(0, np.int64) if changed is None else np.asarray(changed, np.int64)
    chunk = int(arr.chunks[0])
    out = []
    for lo, hi, h in segments:
        if lo >= hi:
            continue
        hit = changed[(changed >= lo) & (changed < hi)]
        if not hit.size:
            out.append([lo, hi, h])
            continue
        cuts = [lo, *range((lo // chunk + 1) * chunk, hi, chunk), hi]
        out += [[a, b, array_checksum(arr, a, b)] for a, b in zip(cuts[:-1], cuts[1:])]
    if arr.shape[0] > old_rows:
        out.append([old_rows, int(arr.shape[0]), array_checksum(arr, old_rows)])
    return out


def grow_array(array_dir: Path, rows: int, blocks: Iterable[tuple[int, np.ndarray]]) -> zarr.Array:
    """Resize a chunked array to `rows` rows and write `blocks` (start row, rows) into it.

    Zarr writes every chunk by renaming a new file over it, so an array whose files are hard links
    of another generation's leaves that generation's bytes as they were.
    """
    arr = zarr.open_array(str(array_dir), mode="r+").with_config({"write_empty_chunks": True})
    arr.resize((rows, *arr.shape[1:]))
    for start, block in blocks:
        if len(block):
            arr[start:start + len(block)] = block
    return arr


def read_array(store_path: Path, path: str, *, mmap: bool = True) -> np.ndarray:
    """Read an array; memory-map it when it is one uncompressed little-endian chunk.

    Its chunk files are checked first (present, uncompressed ones of their size), and a chunk that does
    not decode raises StoreDamaged naming the array and the file, never fill values for what is missing.
    """
    array_dir = Path(store_path) / path
    meta = check_chunk_files(array_dir, path, Path(store_path))
    try:
        layout = ArrayLayout.parse(meta)
        chunk_file = layout.chunk_file(array_dir, tuple(0 for _ in layout.shape))
        if mmap and layout.chunk_shape == layout.shape and layout.raw_memory_order and chunk_file.is_file() \
                and layout.shape[0] > 0:
            dtype = zarr.open_array(str(array_dir), mode="r").dtype
            return np.memmap(chunk_file, dtype=np.dtype(dtype).newbyteorder("<"), mode="r", shape=layout.shape)
        return zarr.open_array(str(array_dir), mode="r")[...]
    except (ValueError, TypeError, KeyError, RuntimeError, OSError) as e:
        raise damaged(Path(store_path), path, array_dir, f"does not decode ({type(e).__name__}: {e})") from None


def read_rows(arr: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Rows [lo, hi) of an array; a memory-mapped one is read with a file read, so that no page stays mapped."""
    if isinstance(arr, np.memmap) and isinstance(arr.base, mmap.mmap) and arr.ndim == 1 and arr.filename:
        lo, hi = max(0, lo), min(len(arr), hi)
        return np.fromfile(arr.filename, dtype=arr.dtype, count=max(0, hi - lo), offset=arr.offset + lo * arr.itemsize)
    return np.array(arr[lo:hi])


class ColumnReader:
    """Rows of a chunked 1-d Zarr array by range, decoding each chunk once while reads move forward."""

    def __init__(self, array) -> None:
        self.array, self.chunk = array, int(array.chunks[0])
        self.cached: dict[int, np.ndarray] = {}
        root = getattr(array.store, "root", None)  # a local store: its chunk files are checked once, here
        if root is not None and array.path:
            check_chunk_files(Path(root) / array.path, array.path, Path(root))

    def rows(self, lo: int, hi: int) -> np.ndarray:
        """Values of rows [lo, hi)."""
        if hi <= lo:
            return self.array[0:0]
        parts = []
        for c in range(lo // self.chunk, (hi - 1) // self.chunk + 1):
            if c not in self.cached:
                self.cached = {c: self.array[c * self.chunk:(c + 1) * self.chunk]}  # keep one chunk
            base = c * self.chunk
            parts.append(self.cached[c][max(lo, base) - base:min(hi, base + self.chunk) - base])
        return parts[0] if len(parts) == 1 else np.concatenate(parts)
