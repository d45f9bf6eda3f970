"""The one reader of a Zarr v3 array document (zarr.json) and the one place chunk file names are built."""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class ArrayLayout:
    """What this package's readers need from an array's zarr.json."""

    shape: tuple[int, ...]
    chunk_shape: tuple[int, ...]
    dtype: np.dtype  # little-endian form of the array's data type
    codecs: tuple[str, ...]  # codec names in order; the first is "bytes" for numeric arrays
    little_endian: bool
    regular_keys: bool  # regular chunk grid, default chunk keys with "/" separators: chunk files are c/i/j/..
    fill_value: float

    @classmethod
    def parse(cls, meta: dict) -> ArrayLayout:
        """The layout of an array document; KeyError, TypeError or ValueError when it is not one."""
        shape = tuple(int(s) for s in meta["shape"])
        chunks = tuple(int(c) for c in meta["chunk_grid"]["configuration"]["chunk_shape"])
        codecs = meta.get("codecs", [])
        keys = meta.get("chunk_key_encoding", {"name": "default"})  # zarr's own default
        regular = (meta["chunk_grid"].get("name", "regular") == "regular" and keys.get("name") == "default"
                   and keys.get("configuration", {}).get("separator", "/") == "/" and len(chunks) == len(shape))
        endian = codecs[0].get("configuration", {}).get("endian", "little") if codecs else "little"
        return cls(shape=shape, chunk_shape=chunks, dtype=np.dtype(meta["data_type"]).newbyteorder("<"),
                   codecs=tuple(c["name"] for c in codecs), little_endian=endian == "little",
                   regular_keys=regular, fill_value=float(meta.get("fill_value", 0) or 0))

    @property
    def uncompressed(self) -> bool:
        """Chunk files hold the chunk's bytes as they are (one "bytes" codec)."""
        return self.codecs == ("bytes",)

    @property
    def raw_memory_order(self) -> bool:
        """Chunk files hold little-endian rows that can be read or mapped straight into memory."""
        return self.uncompressed and self.little_endian

    @property
    def chunk_bytes(self) -> int:
        """Bytes of one uncompressed chunk."""
        return int(np.prod(self.chunk_shape, dtype=np.int64)) * self.dtype.itemsize

    @property
    def matrix_shape(self) -> tuple[int, int]:
        """(rows, values per row): a 1-d array is one column."""
        return (self.shape[0], int(np.prod(self.shape[1:], dtype=np.int64)) if len(self.shape) > 1 else 1)

    @property
    def row_chunked(self) -> bool:
        """Chunks split rows only: chunk c holds whole rows [c * chunk_rows, (c + 1) * chunk_rows)."""
        return len(self.chunk_shape) == 1 or tuple(self.chunk_shape[1:]) == tuple(self.shape[1:])

    @property
    def chunk_rows(self) -> int:
        return int(self.chunk_shape[0])

    def chunk_key(self, index: tuple[int, ...] | int) -> str:
        """The chunk file of chunk `index` relative to the array's directory (an int: row chunk `index`)."""
        if isinstance(index, (int, np.integer)):
            index = (int(index), *(0 for _ in self.shape[1:]))
        return "c/" + "/".join(map(str, index)) if index else "c"

    def chunk_file(self, array_dir: Path, index: tuple[int, ...] | int) -> Path:
        """The path of chunk `index`'s file under `array_dir`."""
        return Path(array_dir) / self.chunk_key(index)

    def chunk_keys(self) -> list[str]:
        """Every chunk file of the array in index order (none for an empty array)."""
        if any(s == 0 for s in self.shape):
            return []
        counts = [math.ceil(s / c) for s, c in zip(self.shape, self.chunk_shape)]
        return [self.chunk_key(idx) for idx in itertools.product(*(range(n) for n in counts))]
