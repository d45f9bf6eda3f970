"""Relation index arrays and exact neighbour queries (see docs/FORMAT.md)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from graphstore.errors import UserError, check_node_id

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

    def in_degrees(self, num_tails: int) -> np.ndarray:
        """In-degree of every tail node (int64)."""
        if self.kind == "aligned":
            return np.ones(num_tails, dtype=np.int64)
        if self.kind in ("range", "csc"):
            return np.diff(np.asarray(self.indptr, dtype=np.int64))
        return np.asarray(self.hi, dtype=np.int64) - np.asarray(self.lo, dtype=np.int64)

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
