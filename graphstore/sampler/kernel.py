"""What the sampling kernels take: a relation's checked arrays (`KernelRelation`) and the `SamplerBackend` protocol."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from graphstore.errors import SamplerError
from graphstore.sampler import rng

if TYPE_CHECKING:
    from graphstore.topology import Relation


@dataclass
class KernelRelation:
    """A relation's arrays in the dtypes the kernels take (absent arrays: empty)."""

    name: str
    head: str
    index: int
    kind_code: int
    identity: bool
    head_index: np.ndarray
    indptr: np.ndarray
    indices: np.ndarray
    members: np.ndarray
    lo: np.ndarray
    hi: np.ndarray

    @property
    def edge_type(self) -> tuple[str, str, str]:
        return (self.head, self.name, "video")


def kernel_relation(index: int, rel: Relation, num_nodes: Mapping[str, int]) -> KernelRelation:
    """Checks a relation's arrays (shapes, and every head id in range) and casts them for the kernels."""
    if rel.head not in num_nodes:
        raise SamplerError(f"relation {rel.name}: head type {rel.head!r} has no node count")
    a = rel.kernel_arrays(int(num_nodes["video"]), int(num_nodes[rel.head]), rng.MAX_DEGREE)
    return KernelRelation(rel.name, rel.head, index, a.kind_code, a.identity, a.head_index, a.indptr, a.indices,
                          a.members, a.lo, a.hi)


class SamplerBackend(Protocol):
    """A pair of sampling kernels (C++/OpenMP or Numba); both give identical output for the same key."""

    name: str
    num_threads: int

    def draw(self, rel: KernelRelation, frontier: np.ndarray, tail0: int, k: int, replace: bool,
             rel_key: int) -> tuple[np.ndarray, np.ndarray]:
        """(global heads, local tail ids) of one relation over a frontier."""
        ...

    def relabel(self, heads: np.ndarray, node_map: np.ndarray, nodes: np.ndarray, n: int) -> tuple[np.ndarray, int]:
        """(local ids of heads, new node count); n = -1 and the map untouched on an out-of-range head."""
        ...
