"""Relations stored by offsets: `range` (video v's heads are indptr[v]..indptr[v+1]-1) and `csc` (their ids in `indices`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from graphstore.errors import SamplerError
from graphstore.topology.base import KernelArrays, Relation, check_ids, kernel_array, register
from graphstore.topology.ops import edge_positions
from graphstore.format.arrays import read_rows


@register
@dataclass
class RangeRelation(Relation):
    """Video v's heads are the consecutive ids indptr[v]..indptr[v+1]-1 (heads numbered in video order)."""

    KIND: ClassVar[str] = "range"
    KIND_CODE: ClassVar[int] = 1
    ARRAYS: ClassVar[dict[str, str]] = {"indptr": "indptr"}
    name: str
    head: str
    kind: str = KIND
    tail: str = "video"
    indptr: np.ndarray | None = None

    def in_degrees(self, num_tails: int, lo: int = 0, hi: int | None = None) -> np.ndarray:
        hi = num_tails if hi is None else hi
        return np.diff(read_rows(self.indptr, lo, hi + 1).astype(np.int64))

    def in_degree(self, v: int) -> int:
        return int(self.indptr[v + 1] - self.indptr[v])

    def in_neighbors(self, v: int) -> np.ndarray:
        return np.arange(self.indptr[v], self.indptr[v + 1], dtype=np.int64)

    def num_edges(self, num_tails: int) -> int:
        return int(self.indptr[-1])

    def heads(self, colptr: np.ndarray, deg: np.ndarray) -> np.ndarray:
        return edge_positions(self.indptr[:-1], colptr, deg)

    def kernel_indptr(self, num_tails: int, max_degree: int) -> np.ndarray:
        """`indptr`, checked: starts at 0, non-decreasing, no degree above `max_degree`."""
        indptr = kernel_array(self, self.indptr, np.int64, "indptr", num_tails + 1)
        deg = np.diff(indptr)
        if num_tails and (indptr[0] != 0 or deg.min() < 0 or deg.max() > max_degree):
            raise SamplerError(f"relation {self.name}: indptr must start at 0 and be non-decreasing")
        return indptr

    def kernel_arrays(self, num_tails: int, num_heads: int, max_degree: int) -> KernelArrays:
        indptr = self.kernel_indptr(num_tails, max_degree)
        if num_tails and indptr[-1] > num_heads:
            raise SamplerError(f"relation {self.name}: indptr[-1] = {int(indptr[-1])} heads, but there are "
                               f"{num_heads} {self.head} nodes")
        return KernelArrays(self.KIND_CODE, indptr=indptr)


@register
@dataclass
class CscRelation(RangeRelation):
    """Video v's heads are indices[indptr[v]:indptr[v+1]]."""

    KIND: ClassVar[str] = "csc"
    KIND_CODE: ClassVar[int] = 2
    ARRAYS: ClassVar[dict[str, str]] = {"indptr": "indptr", "indices": "indices"}
    kind: str = KIND
    indices: np.ndarray | None = None

    def in_neighbors(self, v: int) -> np.ndarray:
        return np.asarray(self.indices[self.indptr[v] : self.indptr[v + 1]], dtype=np.int64)

    def latest_in_neighbors(self, key: np.ndarray, lo: int, hi: int) -> np.ndarray:
        """Per tail node in [lo, hi), its in-neighbour of largest `key` (ties: the later edge), or -1; only that
        range of the index arrays is read. For history edges and ctime: a sample's latest earlier state."""
        last = np.full(hi - lo, -1, dtype=np.int64)
        indptr = read_rows(self.indptr, lo, hi + 1).astype(np.int64)
        src = read_rows(self.indices, int(indptr[0]), int(indptr[-1])).astype(np.int64)
        if src.size:
            dst = np.repeat(np.arange(hi - lo), np.diff(indptr))
            order = np.lexsort((key[src], dst))  # per dst ascending key: the last edge of each dst wins
            last[dst[order]] = src[order]
        return last

    def heads(self, colptr: np.ndarray, deg: np.ndarray) -> np.ndarray:
        return np.asarray(self.indices, dtype=np.int64)[edge_positions(self.indptr[:-1], colptr, deg)]

    def kernel_arrays(self, num_tails: int, num_heads: int, max_degree: int) -> KernelArrays:
        indptr = self.kernel_indptr(num_tails, max_degree)
        indices = kernel_array(self, self.indices, np.int32, "indices", int(indptr[-1]) if num_tails else None)
        check_ids(self, "indices", indices, num_heads, self.head)
        return KernelArrays(self.KIND_CODE, indptr=indptr, indices=indices)
