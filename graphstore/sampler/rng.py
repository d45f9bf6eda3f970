"""Counter-based RNG and the k-of-d draw shared (bit for bit) by every sampler backend.

Every tail node gets its own stream, keyed by (seed, batch, hop, relation index, tail id):
    key  = mix64(relation_key(seed, batch, hop, rel) ^ tail)
    x_j  = mix64(key + j * GOLDEN)            j = 1, 2, ...   (SplitMix64 outputs)
so a sample does not depend on the thread count or on which backend ran. Bounded integers
use Lemire's multiply-shift on the top 32 bits with exact rejection, so they are exactly
uniform for any n < 2**32. This module is the pure-Python (int) statement of the algorithm;
numba_backend.py and csrc/sampler.cpp implement the same arithmetic on uint64.
"""
from __future__ import annotations

MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
MIX1 = 0xBF58476D1CE4E5B9
MIX2 = 0x94D049BB133111EB
SEED_SALT = 0x5851F42D4C957F2D
MAX_DEGREE = (1 << 32) - 1


def mix64(z: int) -> int:
    """SplitMix64 finaliser on a 64-bit unsigned int."""
    z &= MASK64
    z = ((z ^ (z >> 30)) * MIX1) & MASK64
    z = ((z ^ (z >> 27)) * MIX2) & MASK64
    return z ^ (z >> 31)


def relation_key(seed: int, batch: int, hop: int, rel: int) -> int:
    """Key of one (seed, batch, hop, relation index); tail streams derive from it."""
    h = mix64((seed & MASK64) ^ SEED_SALT)
    h = mix64(h ^ (batch & MASK64))
    h = mix64(h ^ (hop & MASK64))
    return mix64(h ^ (((rel + 1) * GOLDEN) & MASK64))


def node_key(rel_key: int, tail: int) -> int:
    """Stream key of one tail node under a relation key."""
    return mix64(rel_key ^ (tail & MASK64))


class Stream:
    """The counter-based stream of one tail node (pure Python)."""

    __slots__ = ("key", "ctr")

    def __init__(self, key: int):
        self.key, self.ctr = key, 0

    def bounded(self, n: int) -> int:
        """Uniform integer in [0, n), 1 <= n < 2**32 (Lemire with exact rejection)."""
        while True:
            self.ctr += 1
            x = mix64(self.key + self.ctr * GOLDEN) >> 32
            m = x * n
            low = m & 0xFFFFFFFF
            if low < n and low < ((1 << 32) - n) % n:
                continue
            return m >> 32


def count(degree: int, k: int, replace: bool) -> int:
    """Number of in-neighbours drawn from a tail of this in-degree (k = -1: all)."""
    if degree <= 0 or k == 0:
        return 0
    if k < 0:
        return degree
    return k if replace else min(k, degree)


def draw_offsets(key: int, degree: int, k: int, replace: bool) -> list[int]:
    """Offsets into a tail's in-neighbour list: all, with replacement, selection or Floyd."""
    c = count(degree, k, replace)
    if c == 0:
        return []
    if k < 0 or (not replace and k >= degree):
        return list(range(degree))
    s = Stream(key)
    if replace:
        return [s.bounded(degree) for _ in range(k)]
    if 2 * k > degree:  # dense: selection sampling (Knuth's algorithm S), ascending
        out: list[int] = []
        for i in range(degree):
            if s.bounded(degree - i) < k - len(out):
                out.append(i)
                if len(out) == k:
                    break
        return out
    out = []  # sparse: Floyd's algorithm, insertion order
    for j in range(degree - k, degree):
        t = s.bounded(j + 1)
        out.append(j if t in out else t)
    return out
