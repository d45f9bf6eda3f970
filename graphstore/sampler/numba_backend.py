"""Numba kernels: draw over frontier tails (parallel when large), sequential first-seen relabel."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numba
import numpy as np
from numba import njit, prange

from graphstore.sampler import rng

if TYPE_CHECKING:
    from graphstore.sampler.kernel import KernelRelation

_GOLDEN = np.uint64(rng.GOLDEN)
_MIX1 = np.uint64(rng.MIX1)
_MIX2 = np.uint64(rng.MIX2)
_S30, _S27, _S31, _S32 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(32)
_LOW32 = np.uint64(0xFFFFFFFF)
# Numba's OpenMP/workqueue pools do not survive fork(): a forked child (e.g. a DataLoader worker) that
# opens a parallel region after its parent did aborts or hangs, so children of a fork draw serially.
_LOADED_IN_PID = os.getpid()
_TWO32 = np.uint64(1 << 32)


@njit(inline="always", cache=True)
def _mix64(z):
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


@njit(inline="always", cache=True)
def _bounded(key, ctr, n):
    """(uniform int in [0, n), new counter); n is uint64 < 2**32."""
    while True:
        ctr += np.uint64(1)
        x = _mix64(key + ctr * _GOLDEN) >> _S32
        m = x * n
        low = m & _LOW32
        if low < n:
            if low < (_TWO32 - n) % n:
                continue
        return np.int64(m >> _S32), ctr


@njit(inline="always", cache=True)
def _span(kind, v, indptr, lo, hi):
    """(start, degree) of tail v's in-neighbour list."""
    if kind == 0:
        return np.int64(0), np.int64(1)
    if kind == 1 or kind == 2:
        return np.int64(indptr[v]), np.int64(indptr[v + 1] - indptr[v])
    return np.int64(lo[v]), np.int64(hi[v] - lo[v])


@njit(inline="always", cache=True)
def _count(d, k, replace):
    if d <= 0 or k == 0:
        return np.int64(0)
    if k < 0:
        return d
    if replace:
        return k
    return min(k, d)


PARALLEL_MIN_DRAWS = 1 << 16  # fewer draws run serially: a fork/join costs more than they take


@njit(nogil=True, cache=True)
def _offsets(kind, indptr, lo, hi, frontier, k, replace):
    """Prefix sum of the number of draws per frontier tail (serial: cheap)."""
    n = frontier.shape[0]
    offsets = np.empty(n + 1, np.int64)
    offsets[0] = 0
    for i in range(n):
        start, d = _span(kind, frontier[i], indptr, lo, hi)
        offsets[i + 1] = offsets[i] + _count(d, k, replace)
    return offsets


@njit(nogil=True, cache=True)
def _draw_offsets(heads, o, key, d, k, replace):
    """Offsets into a tail's in-neighbour list written to heads[o:o+count] (see rng.draw_offsets)."""
    ctr = np.uint64(0)
    if replace:
        du = np.uint64(d)
        for j in range(k):
            r, ctr = _bounded(key, ctr, du)
            heads[o + j] = r
    elif 2 * k > d:  # dense: selection sampling (algorithm S), ascending
        m = 0
        for t in range(d):
            r, ctr = _bounded(key, ctr, np.uint64(d - t))
            if r < k - m:
                heads[o + m] = t
                m += 1
                if m == k:
                    break
    else:  # sparse: Floyd's algorithm, insertion order
        m = 0
        for j in range(d - k, d):
            r, ctr = _bounded(key, ctr, np.uint64(j + 1))
            found = False
            for q in range(m):
                if heads[o + q] == r:
                    found = True
                    break
            heads[o + m] = j if found else r
            m += 1


# The two fill loops below are the same code, one with prange: a per-tail helper taking the
# relation's arrays is not inlined by Numba and costs ~100 ns a tail in reference counting.
@njit(parallel=True, nogil=True, cache=True)
def _fill_parallel(kind, identity, head_index, indptr, indices, members, lo, hi,
                   frontier, tail0, k, replace, rel_key, offsets, heads, cols):
    for i in prange(frontier.shape[0]):
        o = offsets[i]
        c = offsets[i + 1] - o
        if c == 0:
            continue
        v = frontier[i]
        start, d = _span(kind, v, indptr, lo, hi)
        if k < 0 or ((not replace) and k >= d):
            for j in range(d):
                heads[o + j] = j
        else:
            _draw_offsets(heads, o, _mix64(rel_key ^ np.uint64(v)), d, k, replace)
        for j in range(c):
            off = heads[o + j]
            if kind == 0:
                h = np.int64(v) if identity else np.int64(head_index[v])
            elif kind == 1:
                h = start + off
            elif kind == 2:
                h = np.int64(indices[start + off])
            elif identity:
                h = start + off
            else:
                h = np.int64(members[start + off])
            heads[o + j] = h
            cols[o + j] = tail0 + i


@njit(nogil=True, cache=True)
def _fill_serial(kind, identity, head_index, indptr, indices, members, lo, hi,
                 frontier, tail0, k, replace, rel_key, offsets, heads, cols):
    for i in range(frontier.shape[0]):
        o = offsets[i]
        c = offsets[i + 1] - o
        if c == 0:
            continue
        v = frontier[i]
        start, d = _span(kind, v, indptr, lo, hi)
        if k < 0 or ((not replace) and k >= d):
            for j in range(d):
                heads[o + j] = j
        else:
            _draw_offsets(heads, o, _mix64(rel_key ^ np.uint64(v)), d, k, replace)
        for j in range(c):
            off = heads[o + j]
            if kind == 0:
                h = np.int64(v) if identity else np.int64(head_index[v])
            elif kind == 1:
                h = start + off
            elif kind == 2:
                h = np.int64(indices[start + off])
            elif identity:
                h = start + off
            else:
                h = np.int64(members[start + off])
            heads[o + j] = h
            cols[o + j] = tail0 + i


def draw(kind, identity, head_index, indptr, indices, members, lo, hi,
         frontier, tail0, k, replace, rel_key, parallel=True):
    """Heads (global ids) and cols (local tail ids) of one relation over a frontier."""
    offsets = _offsets(kind, indptr, lo, hi, frontier, k, replace)
    total = int(offsets[-1])
    heads = np.empty(total, np.int64)
    cols = np.empty(total, np.int64)
    fill = _fill_parallel if parallel and total >= PARALLEL_MIN_DRAWS else _fill_serial
    fill(kind, identity, head_index, indptr, indices, members, lo, hi,
         frontier, tail0, k, replace, rel_key, offsets, heads, cols)
    return heads, cols


@njit(nogil=True, cache=True)
def relabel(heads, node_map, nodes, n):
    """Local ids of heads in first-seen order; new nodes appended to nodes[n:].

    All or nothing: on an id outside the map it undoes its own additions and returns n = -1.
    """
    rows = np.empty(heads.shape[0], np.int64)
    size = node_map.shape[0]
    n0 = n
    for j in range(heads.shape[0]):
        g = heads[j]
        if g < 0 or g >= size:
            for i in range(n0, n):
                node_map[nodes[i]] = -1
            return rows, np.int64(-1)
        loc = node_map[g]
        if loc < 0:
            loc = n
            node_map[g] = n
            nodes[n] = g
            n += 1
        rows[j] = loc
    return rows, n


class NumbaBackend:
    """Kernel pair used by NeighborSampler; threads via numba.set_num_threads."""

    name = "numba"

    def __init__(self, num_threads: int | None) -> None:
        self.num_threads = min(num_threads or numba.config.NUMBA_NUM_THREADS, numba.config.NUMBA_NUM_THREADS)

    def draw(self, rel: KernelRelation, frontier: np.ndarray, tail0: int, k: int, replace: bool,
             rel_key: int) -> tuple[np.ndarray, np.ndarray]:
        """(global heads, local tail ids) of one relation over a frontier."""
        numba.set_num_threads(self.num_threads)
        return draw(rel.kind_code, rel.identity, rel.head_index, rel.indptr, rel.indices, rel.members,
                    rel.lo, rel.hi, frontier, np.int64(tail0), np.int64(k), bool(replace), np.uint64(rel_key),
                    parallel=self.num_threads > 1 and os.getpid() == _LOADED_IN_PID)

    def relabel(self, heads: np.ndarray, node_map: np.ndarray, nodes: np.ndarray, n: int) -> tuple[np.ndarray, int]:
        """(local ids of heads, new node count); n = -1 and the map untouched on an out-of-range head."""
        return relabel(heads, node_map, nodes, np.int64(n))
