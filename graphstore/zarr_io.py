"""Zarr v3 array helpers: chunked writes, checksums, and a zero-copy memmap path."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xxhash
import zarr
from zarr.codecs import BloscCodec, BloscShuffle

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


def array_checksum(arr: zarr.Array) -> str:
    """xxh64 of the array's logical little-endian bytes."""
    h = xxhash.xxh64()
    step = max(1, (64 << 20) // max(1, arr.dtype.itemsize * int(np.prod(arr.shape[1:], dtype=np.int64))))
    for start in range(0, arr.shape[0], step):
        h.update(np.ascontiguousarray(arr[start:start + step]).astype(arr.dtype.newbyteorder("<"), copy=False).tobytes())
    return h.hexdigest()


def read_array(store_path: Path, path: str, *, mmap: bool = True) -> np.ndarray:
    """Read an array; memory-map it when it is one uncompressed little-endian chunk."""
    array_dir = Path(store_path) / path
    meta = json.loads((array_dir / "zarr.json").read_text())
    shape = tuple(meta["shape"])
    codecs = meta.get("codecs", [])
    single_chunk = tuple(meta["chunk_grid"]["configuration"]["chunk_shape"]) == shape
    raw = len(codecs) == 1 and codecs[0]["name"] == "bytes" and codecs[0].get("configuration", {}).get("endian", "little") == "little"
    chunk_file = array_dir / "c" / "/".join("0" for _ in shape)
    if mmap and single_chunk and raw and chunk_file.is_file() and shape[0] > 0:
        dtype = zarr.open_array(str(array_dir), mode="r").dtype
        return np.memmap(chunk_file, dtype=np.dtype(dtype).newbyteorder("<"), mode="r", shape=shape)
    return zarr.open_array(str(array_dir), mode="r")[...]
