"""Cache eviction policies over fixed slots: SIEVE (used by gather), LRU and S3-FIFO (for comparison)."""
from __future__ import annotations

from collections import OrderedDict, deque
from typing import Hashable, Iterable

import numpy as np


class SieveSlots:
    """SIEVE (Zhang et al., NSDI'24) over `capacity` slots: key -> slot, with a visited bit per slot.

    Hits only set a bit (vectorisable: `visited[slots] = True`); a miss moves the hand from the
    oldest entry towards the newest, clearing bits, and evicts the first unvisited entry.
    """

    def __init__(self, capacity: int):
        self.capacity = int(capacity)
        self.visited = np.zeros(self.capacity, dtype=bool)
        self._key = [None] * self.capacity
        self._prev = [-1] * self.capacity  # towards the newest
        self._next = [-1] * self.capacity  # towards the oldest
        self._head = self._tail = self._hand = -1
        self._used = 0
        self.slot_of: dict[Hashable, int] = {}

    def lookup(self, key: Hashable) -> int:
        """Slot of `key` (marking it visited), or -1."""
        s = self.slot_of.get(key, -1)
        if s >= 0:
            self.visited[s] = True
        return s

    def insert(self, key: Hashable) -> tuple[int, Hashable | None]:
        """Place `key` at the head; returns (slot, evicted key or None)."""
        evicted = None
        if self._used < self.capacity:
            s = self._used
            self._used += 1
        else:
            s = self._evict_slot()
            evicted = self._key[s]
            del self.slot_of[evicted]
        self._key[s] = key
        self.visited[s] = False
        self._prev[s], self._next[s] = -1, self._head
        if self._head >= 0:
            self._prev[self._head] = s
        self._head = s
        if self._tail < 0:
            self._tail = s
        self.slot_of[key] = s
        return s, evicted

    def _evict_slot(self) -> int:
        p = self._hand if self._hand >= 0 else self._tail
        while self.visited[p]:
            self.visited[p] = False
            p = self._prev[p] if self._prev[p] >= 0 else self._tail
        self._hand = self._prev[p]
        prev, nxt = self._prev[p], self._next[p]
        if prev >= 0:
            self._next[prev] = nxt
        else:
            self._head = nxt
        if nxt >= 0:
            self._prev[nxt] = prev
        else:
            self._tail = prev
        return p


class LruSlots:
    """Least-recently-used over `capacity` slots (same interface as SieveSlots)."""

    def __init__(self, capacity: int):
        self.capacity = int(capacity)
        self._order: OrderedDict[Hashable, int] = OrderedDict()

    @property
    def slot_of(self) -> dict:
        return self._order

    def lookup(self, key: Hashable) -> int:
        s = self._order.get(key, -1)
        if s >= 0:
            self._order.move_to_end(key)
        return s

    def insert(self, key: Hashable) -> tuple[int, Hashable | None]:
        if len(self._order) < self.capacity:
            s, evicted = len(self._order), None
        else:
            evicted, s = self._order.popitem(last=False)
        self._order[key] = s
        return s, evicted


class S3FifoSlots:
    """S3-FIFO (Yang et al., SOSP'23): 10% probationary FIFO, 90% main FIFO with reinsertion, ghost FIFO."""

    def __init__(self, capacity: int):
        self.capacity = int(capacity)
        self.small_cap = max(1, self.capacity // 10)
        self.small: deque = deque()
        self.main: deque = deque()
        self.ghost: OrderedDict = OrderedDict()
        self.freq: dict = {}
        self.slot_of: dict = {}
        self._free = list(range(self.capacity - 1, -1, -1))

    def lookup(self, key: Hashable) -> int:
        s = self.slot_of.get(key, -1)
        if s >= 0:
            self.freq[key] = min(3, self.freq[key] + 1)
        return s

    def insert(self, key: Hashable) -> tuple[int, Hashable | None]:
        evicted = None
        if not self._free:
            evicted = self._evict()
        s = self._free.pop()
        self.slot_of[key] = s
        self.freq[key] = 0
        if key in self.ghost:
            del self.ghost[key]
            self.main.append(key)
        else:
            self.small.append(key)
        return s, evicted

    def _drop(self, key: Hashable) -> Hashable:
        self._free.append(self.slot_of.pop(key))
        del self.freq[key]
        return key

    def _evict(self) -> Hashable:
        while True:
            if len(self.small) >= self.small_cap or not self.main:
                key = self.small.popleft()
                if self.freq[key] > 0:
                    self.main.append(key)
                    continue
                self.ghost[key] = None
                if len(self.ghost) > self.capacity:
                    self.ghost.popitem(last=False)
                return self._drop(key)
            key = self.main.popleft()
            if self.freq[key] > 0:
                self.freq[key] -= 1
                self.main.append(key)
                continue
            return self._drop(key)


POLICIES = {"sieve": SieveSlots, "lru": LruSlots, "s3fifo": S3FifoSlots}


def hit_ratio(policy: str, capacity: int, trace: Iterable[Hashable]) -> float:
    """Fraction of hits of `policy` with `capacity` entries on a key trace."""
    cache = POLICIES[policy](capacity)
    hits = total = 0
    for key in trace:
        total += 1
        if cache.lookup(key) >= 0:
            hits += 1
        else:
            cache.insert(key)
    return hits / max(1, total)
