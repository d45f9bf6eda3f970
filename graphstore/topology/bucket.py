"""Bucket relations (same topic, same author): members sorted by (key, day, node); v's in-neighbours are
members[lo[v]:hi[v]], the nodes of its bucket up to the end of its own day. Nothing per edge is stored.

The one "earlier" rule of every bucket aggregate: a node's in-neighbours are the nodes of its bucket
posted on the same day or before (by post day, not by crawl time), the node itself included. Sums over
them are differences of one prefix sum over the members (`member_prefix_sums`, or `BucketPrefixSums`
where the values are read by range), so every node's aggregate costs O(1) after an O(n) pass."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from graphstore.errors import SamplerError
from graphstore.topology.base import EMPTY32, KernelArrays, Relation, check_ids, kernel_array, register
from graphstore.topology.ops import edge_positions
from graphstore.format.arrays import read_rows


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

    def member_ids(self, n: int) -> np.ndarray:
        """The members in bucket order as int64 node ids (`members`, or 0..n-1 when it is the identity)."""
        return np.arange(n, dtype=np.int64) if self.members is None else np.asarray(self.members, dtype=np.int64)

    def in_neighbor_sums(self, values: np.ndarray) -> np.ndarray:
        """Per node, the sum of `values` (one row per node) over its in-neighbours, the node itself included."""
        sums = member_prefix_sums(self.member_ids(len(values)), values)
        return sums[np.asarray(self.hi, dtype=np.int64)] - sums[np.asarray(self.lo, dtype=np.int64)]

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


def member_prefix_sums(members: np.ndarray, values: np.ndarray) -> np.ndarray:
    """[n + 1, ...] float64: row p is the sum of `values` over members[:p] (row 0 is zero), one cumulative sum."""
    sums = np.zeros((len(members) + 1, *np.shape(values)[1:]))
    np.cumsum(np.asarray(values, dtype=np.float64)[members], axis=0, out=sums[1:])
    return sums


class BucketPrefixSums:
    """`member_prefix_sums` of a bucket relation for a store too large to hold them: kept every `checkpoint`
    member positions, computed in passes of `pass_rows`.

    Position p's sum is the checkpoint before it plus the members since, added in the same order as the
    single cumulative sum of `member_prefix_sums` adds them, so the sums are the same to the last bit.
    """

    def __init__(self, rel: BucketRelation, pick: np.ndarray, n: int, *, pass_rows: int, checkpoint: int) -> None:
        self.rel, self.pick, self.n, self.checkpoint = rel, pick, n, checkpoint
        self.members = None if rel.members is None else read_rows(rel.members, 0, n)  # int32, 4 bytes a video
        self.checkpoints = np.zeros((n // checkpoint + 1, pick.shape[1]))
        carry = None
        for a in range(0, n, pass_rows):
            vals = self._values(np.arange(a, min(n, a + pass_rows)))
            sums = np.cumsum(vals if carry is None else np.concatenate([carry[None], vals]), axis=0)
            if carry is not None:
                sums = sums[1:]
            carry = sums[-1]
            at = np.arange(-(-(a + 1) // checkpoint) * checkpoint, min(n, a + pass_rows) + 1, checkpoint)  # in (a, b]
            self.checkpoints[at // checkpoint] = sums[at - a - 1]

    def _values(self, positions: np.ndarray) -> np.ndarray:
        nodes = positions if self.members is None else self.members[positions]
        return self.pick[nodes]

    def at(self, positions: np.ndarray) -> np.ndarray:
        """Prefix sums (len(positions), columns) at member positions 0..n."""
        step = self.checkpoint
        positions = np.asarray(positions, dtype=np.int64)
        block, offset = positions // step, positions % step
        idx = np.minimum(block[:, None] * step + np.arange(step), self.n - 1) if self.n else \
            np.zeros((len(positions), step), np.int64)
        vals = self._values(idx.ravel()).reshape(len(positions), step, -1) if self.n else \
            np.zeros((len(positions), step, self.pick.shape[1]))
        out = np.empty((len(positions), self.pick.shape[1]))
        first = block == 0  # a single cumulative sum starts with the first value itself, not 0 + it
        if first.any():
            sums = np.concatenate([np.zeros((int(first.sum()), 1, vals.shape[2])), np.cumsum(vals[first], axis=1)], axis=1)
            out[first] = sums[np.arange(len(sums)), offset[first]]
        rest = ~first
        if rest.any():
            sums = np.cumsum(np.concatenate([self.checkpoints[block[rest]][:, None], vals[rest]], axis=1), axis=1)
            out[rest] = sums[np.arange(len(sums)), offset[rest]]
        return out

    def means(self, lo: int, hi: int) -> np.ndarray:
        """Per tail node in [lo, hi), the mean of the columns over its in-neighbours."""
        b_lo = read_rows(self.rel.lo, lo, hi).astype(np.int64)
        b_hi = read_rows(self.rel.hi, lo, hi).astype(np.int64)
        positions, inverse = np.unique(np.concatenate([b_lo, b_hi]), return_inverse=True)
        sums = self.at(positions)
        return (sums[inverse[hi - lo:]] - sums[inverse[:hi - lo]]) / np.maximum(b_hi - b_lo, 1)[:, None]
