"""Aligned relations: exactly one head per video, `head_index[v]` (absent: head v of video v)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from graphstore.errors import SamplerError
from graphstore.topology.base import EMPTY32, KernelArrays, Relation, check_ids, kernel_array, register


@register
@dataclass
class AlignedRelation(Relation):
    """One head per video: `head_index[v]`, or v itself when `head_index` is None."""

    KIND: ClassVar[str] = "aligned"
    KIND_CODE: ClassVar[int] = 0
    ARRAYS: ClassVar[dict[str, str]] = {"head": "head_index"}
    name: str
    head: str
    kind: str = KIND
    tail: str = "video"
    head_index: np.ndarray | None = None

    def in_degrees(self, num_tails: int, lo: int = 0, hi: int | None = None) -> np.ndarray:
        hi = num_tails if hi is None else hi
        return np.ones(hi - lo, dtype=np.int64)

    def in_degree(self, v: int) -> int:
        return 1

    def in_neighbors(self, v: int) -> np.ndarray:
        head = v if self.head_index is None else int(self.head_index[v])
        return np.array([head], dtype=np.int64)

    def num_edges(self, num_tails: int) -> int:
        return num_tails

    def heads(self, colptr: np.ndarray, deg: np.ndarray) -> np.ndarray:
        n = len(deg)
        return np.arange(n, dtype=np.int64) if self.head_index is None else np.asarray(self.head_index, np.int64)

    def kernel_arrays(self, num_tails: int, num_heads: int, max_degree: int) -> KernelArrays:
        identity = self.head_index is None
        if identity and num_tails > num_heads:
            raise SamplerError(f"relation {self.name}: head i of video i needs {num_tails} {self.head} nodes, "
                               f"there are {num_heads}")
        head_index = EMPTY32 if identity else kernel_array(self, self.head_index, np.int32, "head", num_tails)
        check_ids(self, "head", head_index, num_heads, self.head)
        return KernelArrays(self.KIND_CODE, identity, head_index=head_index)
