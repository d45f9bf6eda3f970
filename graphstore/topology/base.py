"""The `Relation` interface: one relation head -> video, one class per kind, chosen by its `kind` name."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from graphstore.errors import SamplerError
from graphstore.topology.ops import indptr_from_counts

KINDS: dict[str, type[Relation]] = {}  # kind name -> class, filled by `register`


def register(cls: type[Relation]) -> type[Relation]:
    """Class decorator: `Relation(..., kind=cls.KIND, ...)` builds a `cls`."""
    KINDS[cls.KIND] = cls
    return cls


class Relation:
    """One relation head -> video. `Relation(name, head, kind, ...)` builds the class registered for `kind`;
    each kind holds its own index arrays (docs/FORMAT.md) and answers the queries below from them."""

    KIND: ClassVar[str]
    KIND_CODE: ClassVar[int]  # the C++ and Numba kernels' switch over kinds
    ARRAYS: ClassVar[dict[str, str]]  # stored array name (topology/<rel>/<name>) -> field
    name: str
    head: str
    kind: str
    tail: str

    def __new__(cls, *args: Any, **kwargs: Any) -> Relation:
        if cls is Relation:
            kind = kwargs["kind"] if "kind" in kwargs else args[2] if len(args) > 2 else None
            if kind not in KINDS:
                name = kwargs.get("name", args[0] if args else "?")
                raise ValueError(f"relation {name}: unknown kind {kind!r}")
            cls = KINDS[kind]
        return object.__new__(cls)

    @classmethod
    def from_arrays(cls, name: str, head: str, kind: str, tail: str, arrays: Mapping[str, Any]) -> Relation:
        """The relation of `kind` over its stored arrays (by stored name; the kind's optional ones may be absent)."""
        if kind not in KINDS:
            raise ValueError(f"relation {name}: unknown kind {kind!r}")
        fields = KINDS[kind].ARRAYS
        return Relation(name, head, kind, tail, **{f: arrays.get(stored) for stored, f in fields.items()})

    def __post_init__(self) -> None:
        if self.kind != self.KIND:
            raise ValueError(f"relation {self.name}: a {type(self).__name__} has kind {self.KIND!r}, not {self.kind!r}")

    @property
    def edge_type(self) -> tuple[str, str, str]:
        return (self.head, self.name, self.tail)

    def in_degrees(self, num_tails: int, lo: int = 0, hi: int | None = None) -> np.ndarray:
        """In-degree (int64) of tail nodes [lo, hi), by default of all `num_tails`; only that range of the
        index arrays is read (a memory-mapped one with a file read, so no page of it stays mapped)."""
        raise NotImplementedError

    def in_degree(self, v: int) -> int:
        """In-degree of tail node v."""
        raise NotImplementedError

    def in_neighbors(self, v: int) -> np.ndarray:
        """Exact global head ids of tail node v (int64)."""
        raise NotImplementedError

    def num_edges(self, num_tails: int) -> int:
        """Logical edge count, implicit edges included."""
        return int(self.in_degrees(num_tails).sum())

    def heads(self, colptr: np.ndarray, deg: np.ndarray) -> np.ndarray:
        """The head of every edge, grouped by tail in in_neighbors order (int64), given the tails' colptr and degrees."""
        raise NotImplementedError

    def csc(self, num_tails: int) -> tuple[np.ndarray, np.ndarray]:
        """(colptr, row): every edge written out, grouped by tail in in_neighbors order (int64, vectorised)."""
        deg = self.in_degrees(num_tails)
        colptr = indptr_from_counts(deg)
        return colptr, self.heads(colptr, deg)

    def edge_index(self, num_tails: int) -> np.ndarray:
        """All (head, tail) pairs as an int64 [2, E] array, grouped by tail."""
        colptr, row = self.csc(num_tails)
        return np.stack([row, np.repeat(np.arange(num_tails, dtype=np.int64), np.diff(colptr))])

    def kernel_arrays(self, num_tails: int, num_heads: int, max_degree: int) -> KernelArrays:
        """The arrays the sampling kernels take, checked (shapes, every head id in range, no degree above
        `max_degree`) and cast; SamplerError if not."""
        raise NotImplementedError


def _readonly(a: np.ndarray) -> np.ndarray:
    """A read-only view: every kernel argument then has one Numba type (fewer compilations)."""
    view = a.view()
    view.flags.writeable = False
    return view


EMPTY32 = _readonly(np.zeros(0, np.int32))
EMPTY64 = _readonly(np.zeros(0, np.int64))


@dataclass
class KernelArrays:
    """A relation's arrays in the dtypes the kernels take (absent arrays: empty)."""

    kind_code: int
    identity: bool = False
    head_index: np.ndarray = field(default_factory=lambda: EMPTY32)
    indptr: np.ndarray = field(default_factory=lambda: EMPTY64)
    indices: np.ndarray = field(default_factory=lambda: EMPTY32)
    members: np.ndarray = field(default_factory=lambda: EMPTY32)
    lo: np.ndarray = field(default_factory=lambda: EMPTY32)
    hi: np.ndarray = field(default_factory=lambda: EMPTY32)


def kernel_array(rel: Relation, a: Any, dtype: type, what: str, length: int | None) -> np.ndarray:
    """`a` as a contiguous read-only 1-d array of `dtype` and `length`; SamplerError naming the relation if not."""
    if a is None:
        raise SamplerError(f"relation {rel.name}: kind needs array {what!r}")
    out = np.ascontiguousarray(a, dtype=dtype)
    if out.ndim != 1 or (length is not None and out.shape[0] != length):
        raise SamplerError(f"relation {rel.name}: {what} has shape {out.shape}, expected ({length},)")
    return _readonly(out)


def check_ids(rel: Relation, what: str, ids: np.ndarray, count: int, node_type: str) -> None:
    """SamplerError naming the first entry of `ids` that is not a `node_type` id (0..count-1)."""
    if ids.size == 0 or (ids.min() >= 0 and ids.max() < count):
        return
    i = int(np.argmax((ids < 0) | (ids >= count)))
    raise SamplerError(f"relation {rel.name}: {what}[{i}] = {int(ids[i])} is not a {node_type} id "
                       f"(valid ids: 0..{count - 1})")

