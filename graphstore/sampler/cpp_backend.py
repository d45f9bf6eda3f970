"""The C++/OpenMP kernels (graphstore._sampler_cpp, built from csrc/sampler.cpp)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from graphstore.sampler.kernel import KernelRelation

try:
    from graphstore import _sampler_cpp
except ImportError as exc:  # the Numba backend is the fallback
    _sampler_cpp = None
    IMPORT_ERROR: str | None = str(exc)
else:
    IMPORT_ERROR = None


def available() -> bool:
    """Whether the extension imported."""
    return _sampler_cpp is not None


class CppBackend:
    """Kernel pair used by NeighborSampler; OpenMP threads per call."""

    name = "cpp"

    def __init__(self, num_threads: int | None) -> None:
        if _sampler_cpp is None:
            raise ImportError(f"graphstore._sampler_cpp is not built ({IMPORT_ERROR}); "
                              "run `python setup.py build_ext --inplace` or use backend='numba'")
        self.num_threads = int(num_threads or _sampler_cpp.max_threads())

    def draw(self, rel: KernelRelation, frontier: np.ndarray, tail0: int, k: int, replace: bool,
             rel_key: int) -> tuple[np.ndarray, np.ndarray]:
        """(global heads, local tail ids) of one relation over a frontier."""
        return _sampler_cpp.draw(rel.kind_code, rel.identity, rel.head_index, rel.indptr, rel.indices,
                                 rel.members, rel.lo, rel.hi, frontier, int(tail0), int(k), bool(replace),
                                 int(rel_key), self.num_threads)

    def relabel(self, heads: np.ndarray, node_map: np.ndarray, nodes: np.ndarray, n: int) -> tuple[np.ndarray, int]:
        """(local ids of heads, new node count); n = -1 and the map untouched on an out-of-range head."""
        rows, n = _sampler_cpp.relabel(heads, node_map, nodes, int(n))
        return rows, n
