"""Operations on index arrays that every relation kind and its readers share."""
from __future__ import annotations

import numpy as np


def indptr_from_counts(counts: np.ndarray) -> np.ndarray:
    """The int64 offsets [0, c0, c0 + c1, ...] of consecutive groups of `counts[i]` entries."""
    indptr = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return indptr


def edge_positions(starts: np.ndarray, colptr: np.ndarray, deg: np.ndarray) -> np.ndarray:
    """For every edge, grouped by tail, its position in the kind's array: tail t's edges are starts[t] + 0..deg[t]-1."""
    starts = np.asarray(starts, dtype=np.int64)
    return np.arange(int(colptr[-1]), dtype=np.int64) + np.repeat(starts - colptr[:-1], deg)
