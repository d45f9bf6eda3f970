"""Relation index arrays and exact neighbour queries (see docs/FORMAT.md)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from graphstore.errors import UserError, check_node_id
from graphstore.zarr_io import read_rows

RELATION_KINDS = ("aligned", "range", "csc", "bucket")


@dataclass
class Relation:
    """One relation head -> video; which arrays are set depends on `kind`."""

    name: str
    head: str
    kind: str
    tail: str = "video"
    head_index: np.ndarray | None = None  # aligned: head id per tail (None: identity)
    indptr: np.ndarray | None = None  # range, csc
    indices: np.ndarray | None = None  # csc
    members: np.ndarray | None = None  # bucket (None: identity)
    lo: np.ndarray | None = None  # bucket: start of v's bucket
    hi: np.ndarray | None = None  # bucket: end of v's day group in its bucket

    def __post_init__(self) -> None:
        if self.kind not in RELATION_KINDS:
            raise ValueError(f"relation {self.name}: unknown kind {self.kind!r}")

    @property
    def edge_type(self) -> tuple[str, str, str]:
        return (self.head, self.name, self.tail)

    def in_degrees(self, num_tails: int, lo: int = 0, hi: int | None = None) -> np.ndarray:
        """In-degree (int64) of tail nodes [lo, hi), by default of all `num_tails`; only that range of the
        index arrays is read (a memory-mapped one with a file read, so no page of it stays mapped)."""
        hi = num_tails if hi is None else hi
        if self.kind == "aligned":
            return np.ones(hi - lo, dtype=np.int64)
        if self.kind in ("range", "csc"):
            return np.diff(read_rows(self.indptr, lo, hi + 1).astype(np.int64))
        return read_rows(self.hi, lo, hi).astype(np.int64) - read_rows(self.lo, lo, hi).astype(np.int64)

    def in_degree(self, v: int) -> int:
        """In-degree of tail node v."""
        if self.kind == "aligned":
            return 1
        if self.kind in ("range", "csc"):
            return int(self.indptr[v + 1] - self.indptr[v])
        return int(self.hi[v] - self.lo[v])

    def in_neighbors(self, v: int) -> np.ndarray:
        """Exact global head ids of tail node v (int64)."""
        if self.kind == "aligned":
            head = v if self.head_index is None else int(self.head_index[v])
            return np.array([head], dtype=np.int64)
        if self.kind == "range":
            return np.arange(self.indptr[v], self.indptr[v + 1], dtype=np.int64)
        if self.kind == "csc":
            return np.asarray(self.indices[self.indptr[v] : self.indptr[v + 1]], dtype=np.int64)
        if self.members is None:
            return np.arange(self.lo[v], self.hi[v], dtype=np.int64)
        return np.asarray(self.members[self.lo[v] : self.hi[v]], dtype=np.int64)

    def csc(self, num_tails: int) -> tuple[np.ndarray, np.ndarray]:
        """(colptr, row): every edge written out, grouped by tail in in_neighbors order (int64, vectorised)."""
        deg = self.in_degrees(num_tails)
        colptr = np.zeros(num_tails + 1, dtype=np.int64)
        np.cumsum(deg, out=colptr[1:])
        if self.kind == "aligned":
            row = np.arange(num_tails, dtype=np.int64) if self.head_index is None else np.asarray(self.head_index, np.int64)
            return colptr, row
        starts = np.asarray(self.indptr[:-1] if self.kind in ("range", "csc") else self.lo, dtype=np.int64)
        pos = np.arange(int(colptr[-1]), dtype=np.int64) + np.repeat(starts - colptr[:-1], deg)
        if self.kind == "csc":
            return colptr, np.asarray(self.indices, dtype=np.int64)[pos]
        if self.kind == "bucket" and self.members is not None:
            return colptr, np.asarray(self.members, dtype=np.int64)[pos]
        return colptr, pos

    def edge_index(self, num_tails: int) -> np.ndarray:
        """All (head, tail) pairs as an int64 [2, E] array, grouped by tail."""
        colptr, row = self.csc(num_tails)
        return np.stack([row, np.repeat(np.arange(num_tails, dtype=np.int64), np.diff(colptr))])

    def num_edges(self, num_tails: int) -> int:
        """Logical edge count, implicit edges included."""
        if self.kind == "aligned":
            return num_tails
        if self.kind in ("range", "csc"):
            return int(self.indptr[-1])
        return int(self.in_degrees(num_tails).sum())


@dataclass
class Topology:
    """All relations of a store; node counts per type."""

    num_nodes: dict[str, int]
    relations: dict[str, Relation] = field(default_factory=dict)

    @property
    def num_videos(self) -> int:
        return self.num_nodes["video"]

    def count(self, node_type: str) -> int:
        """Number of nodes of a type; UserError naming an unknown type."""
        try:
            return int(self.num_nodes[node_type])
        except KeyError:
            raise UserError(f"unknown node type {node_type!r}; node types: {', '.join(self.num_nodes)}") from None

    def relation(self, name: str) -> Relation:
        """The relation called `name`; UserError naming an unknown one."""
        try:
            return self.relations[name]
        except KeyError:
            raise UserError(f"unknown relation {name!r}; relations: {', '.join(self.relations)}") from None

    def in_neighbors(self, relation: str, v: int) -> np.ndarray:
        """Exact global head ids of tail v's in-neighbours; UserError on an unknown relation or id."""
        rel = self.relation(relation)
        return rel.in_neighbors(check_node_id(v, rel.tail, self.count(rel.tail)))

    def in_degree(self, relation: str, v: int) -> int:
        """In-degree of tail v; UserError on an unknown relation or id."""
        rel = self.relation(relation)
        return rel.in_degree(check_node_id(v, rel.tail, self.count(rel.tail)))


# --- bucket relations: members sorted by (key, day, node); v's in-neighbours are members[lo[v]:hi[v]] -----
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
