"""Bucket relations (same topic, same author): members sorted by (key, day, node); v's in-neighbours are
members[lo[v]:hi[v]], the nodes of its bucket up to the end of its own day. Nothing per edge is stored."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from graphstore.errors import SamplerError
from graphstore.topology.base import EMPTY32, KernelArrays, Relation, check_ids, kernel_array, register
from graphstore.topology.ops import edge_positions
from graphstore.zarr_io import read_rows


@register
@dataclass
class BucketRelation(Relation):
    """v's heads are members[lo[v]:hi[v]] (`members` None: the identity order)."""

    KIND: ClassVar[str] = "bucket"
    KIND_CODE: ClassVar[int] = 3
    ARRAYS: ClassVar[dict[str, str]] = {"members": "members", "lo": "lo", "hi": "hi"}
    name: str
    head: str
    kind: str = KIND
    tail: str = "video"
    members: np.ndarray | None = None
    lo: np.ndarray | None = None  # start of v's bucket
    hi: np.ndarray | None = None  # end of v's day group in its bucket

    def in_degrees(self, num_tails: int, lo: int = 0, hi: int | None = None) -> np.ndarray:
        hi = num_tails if hi is None else hi
        return read_rows(self.hi, lo, hi).astype(np.int64) - read_rows(self.lo, lo, hi).astype(np.int64)

    def in_degree(self, v: int) -> int:
        return int(self.hi[v] - self.lo[v])

    def in_neighbors(self, v: int) -> np.ndarray:
        if self.members is None:
            return np.arange(self.lo[v], self.hi[v], dtype=np.int64)
        return np.asarray(self.members[self.lo[v] : self.hi[v]], dtype=np.int64)

    def heads(self, colptr: np.ndarray, deg: np.ndarray) -> np.ndarray:
        pos = edge_positions(self.lo, colptr, deg)
        return pos if self.members is None else np.asarray(self.members, dtype=np.int64)[pos]

    def kernel_arrays(self, num_tails: int, num_heads: int, max_degree: int) -> KernelArrays:
        n = num_tails
        identity = self.members is None
        members = EMPTY32 if identity else kernel_array(self, self.members, np.int32, "members", n)
        check_ids(self, "members", members, n, "video")
        lo = kernel_array(self, self.lo, np.int32, "lo", n)
        hi = kernel_array(self, self.hi, np.int32, "hi", n)
        if n and (np.any(hi < lo) or lo.min() < 0 or hi.max() > n):
            raise SamplerError(f"relation {self.name}: need 0 <= lo <= hi <= num_videos")
        return KernelArrays(self.KIND_CODE, identity, members=members, lo=lo, hi=hi)


def bucket_order(key: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Node ids sorted by (key, day, node id): a bucket relation's `members` (int32)."""
    n = len(key)
    return np.lexsort((np.arange(n), np.asarray(day), np.asarray(key))).astype(np.int32)


def bucket_bounds(members: np.ndarray, key: np.ndarray, day: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) per node (int32): the start of its bucket in `members` and the end of its day group there."""
    members = np.asarray(members, dtype=np.int64)
    n = len(members)
    k, d = np.asarray(key)[members], np.asarray(day)[members]
    pos = np.arange(n, dtype=np.int64)
    new_key = np.ones(n, dtype=bool)
    new_key[1:] = k[1:] != k[:-1]
    group_end = np.ones(n, dtype=bool)
    group_end[:-1] = new_key[1:] | (d[1:] != d[:-1])
    lo_pos = np.maximum.accumulate(np.where(new_key, pos, 0)) if n else pos
    hi_pos = np.minimum.accumulate(np.where(group_end, pos + 1, n)[::-1])[::-1] if n else pos
    lo, hi = np.empty(n, np.int32), np.empty(n, np.int32)
    lo[members], hi[members] = lo_pos, hi_pos
    return lo, hi


def merge_bucket(members: np.ndarray, key: np.ndarray, day: np.ndarray, first_new: int) -> np.ndarray:
    """`members` of nodes < first_new merged with the nodes from `first_new` on, in (key, day, node) order.

    O(n): the new nodes are sorted among themselves and inserted after the old members of their
    (key, day) group, which hold smaller node ids.
    """
    key, day = np.asarray(key, np.int64), np.asarray(day, np.int64)
    new = first_new + bucket_order(key[first_new:], day[first_new:]).astype(np.int64)
    span = int(day.max() - day.min()) + 1 if len(day) else 1
    rank = key * span + (day - (day.min() if len(day) else 0))  # (key, day) as one sortable int64
    at = np.searchsorted(rank[np.asarray(members, np.int64)], rank[new], side="right")
    return np.insert(np.asarray(members, np.int32), at, new.astype(np.int32))
