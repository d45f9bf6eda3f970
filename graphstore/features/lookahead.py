"""Look-ahead feature cache: Belady/MIN over the exact rows of the next K batches, within a byte budget.

The sampler is deterministic, so a loader that samples K batches ahead knows exactly which rows each
of them will read. Per node type, `RowPlanner` keeps resident the rows whose next use is soonest
(Belady's MIN: on eviction drop the row used furthest in the future, or never within the window),
and `LookaheadCache` moves the data: it reads each batch's missing rows in row-id order with large
coalesced reads (a background thread, while the previous batch is assembled and used), then serves
the batch from resident rows plus those staged reads. Once a batch is served, its admitted rows move
into their slots; the planner chose them as the batch started, so the next batch's plan and reads
need not wait for it. What is kept only changes which
bytes are read from disk, never the values served: batches are bit-identical to an uncached gather.

Budget (`budget_bytes`), never exceeded (`high_water_bytes` records the peak):
  - a staging pool of min(budget / 4, 64 MiB) holds the prefetched rows of the batch being served and
    of the next one (read while this one is assembled) plus two coalescing read buffers (a quarter of
    the pool each, at most 8 MiB: the background reads' and the direct reads'); while residents leave
    more free, a batch may stage up to half of that instead (admission then still fits); misses that
    do not fit are read at gather time straight into the batch (`direct`), never admitted;
  - the rest holds resident rows: narrow or tiny matrices whole first, smallest first, while together
    they take at most half of it (the 2-column counts cost more in per-row bookkeeping than in bytes);
    what remains is split among the other types in proportion to their matrices' sizes, so that their
    hottest rows compete (a wide matrix held whole would spend as much on its cold rows as on its hot).
Not counted: the per-node index of each partially cached type (8 bytes a node: slot map and last
occurrence, like the sampler's own relabel maps), per-slot bookkeeping (24 bytes a slot) and the K
sampled batches the loader holds; `LookaheadCache.stats()` reports them as `index_bytes`.
"""
from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from graphstore.errors import UserError
from graphstore.features.array import FeatureArray

try:
    from graphstore import _gather_cpp
except ImportError:  # NumPy paths serve the cache without the extension
    _gather_cpp = None

NEVER = 1 << 62  # next use unknown within the window (or never); 2 * NEVER + 1 still fits in int64
# staging pool: budget / 4, at most 64 MiB (a batch's misses at scale 1-10 are ~10-25 MB; more of the
# budget in the pool is less for resident rows: 64 instead of 256 MiB cut the missed bytes by 14 % at scale 1, 1/4)
STAGE_SHARE, STAGE_MAX = 4, 64 << 20
SCRATCH_SHARE, SCRATCH_MAX = 4, 8 << 20  # a read buffer: a quarter of the staging pool, at most 8 MiB
PIN_SHARE = 0.5  # whole matrices (smallest first) may take at most this share of the row budget
PIN_ROW_BYTES = 128  # ... and only narrow ones (per-row bookkeeping, 32 bytes, is a large share of a row)
PIN_TINY_SHARE = 1 / 64  # ... or tiny ones (a 64th of the row budget)
# a gap of at most this many bytes (and 64 rows) between two missing rows is read through. Where the page cache
# holds the files, more than a page is memory copied for nothing (scale 1, 1/4: 16 KiB read 3.7x the missed
# bytes; 4 KiB and 1 KiB ran 1.2x faster warm, 1.05-1.15x cold, 0 no faster); where reads go to the disk, each extra
# read brings its own read-ahead (scale 10: 4 KiB read 296 MB from disk a batch, 16 KiB 258, and ran 1.1x slower)
COALESCE_BYTES, COALESCE_DISK_BYTES = 4 << 10, 16 << 10
MAX_GAP_ROWS = 64


# --- policy ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Policy:
    """What a RowPlanner may know: `sees_future` (Belady/MIN) or not (LRU at batch granularity).

    Rows whose next use is unknown are evicted least recently used first under both, so a policy
    that does not see the future is exactly LRU over batches (an ablation of the look-ahead).
    """

    name: str
    sees_future: bool


POLICIES: dict[str, Policy] = {"belady": Policy("belady", True), "lru": Policy("lru", False)}


def policy_of(name: str) -> Policy:
    """The Policy called `name`; UserError naming the known ones otherwise."""
    if name not in POLICIES:
        raise UserError(f"look-ahead policy must be one of {sorted(POLICIES)}, got {name!r}")
    return POLICIES[name]


# --- planner: which rows stay resident (no data) ------------------------------------------------------
class RowPlanner:
    """Resident rows of one node type within `capacity` slots, chosen by next use over registered batches.

    Batches are registered (their distinct row ids) when sampled, then served in registration order:
    `plan(b)` says which rows of b are resident (their slots), `finalize(b, staged)` decides, once b is
    served, which rows stay: the `capacity` rows with the soonest next use among the residents and
    b's staged rows (ties: residents stay; unknown next use: least recently used goes first).
    With the whole trace registered this is Belady's MIN, the fewest misses any cache of `capacity`
    rows can have when a batch's rows are read together.
    """

    entry_limit = 2**31 - 1  # entry numbers are int32: rebased (one pass over last_ref) before they overflow

    def __init__(self, num_rows: int, capacity: int, policy: str | Policy = "belady"):
        self.policy = policy if isinstance(policy, Policy) else policy_of(policy)
        self.num_rows, self.capacity = int(num_rows), int(capacity)
        self.slot_of = np.full(self.num_rows, -1, np.int32 if self.capacity < 2**31 else np.int64)
        self.slot_row = np.full(self.capacity, -1, np.int64)
        self.slot_nu = np.full(self.capacity, NEVER, np.int64)  # next use (batch) of the slot's row
        self.slot_last = np.full(self.capacity, -1, np.int64)  # last use (batch)
        self.used = 0  # slots 0..used-1 are occupied (evictions are refilled at once, so no holes)
        # every occurrence of a registered, not yet finalized batch is an "entry" (numbered in order);
        # _nxt[e - _nxt_base] is the batch of the next occurrence of entry e's row (NEVER: none yet)
        self.last_ref = np.full(self.num_rows, -1, np.int32)  # latest entry of each row
        self._nxt = np.empty(0, np.int64)
        self._nxt_base = self.next_entry = self.fin_entry = 0
        self._pending: dict[int, tuple[np.ndarray, int]] = {}  # batch -> (ids, first entry), in order
        # residents whose next use is unknown, oldest last use first: (slots, rows, lasts) arrays,
        # validated lazily (an entry is stale once its slot holds another row, use or next use)
        self._unknown: deque[tuple[np.ndarray, np.ndarray, np.ndarray]] = deque()
        self.hits = self.misses = 0

    @property
    def index_bytes(self) -> int:
        """Bookkeeping bytes: per-node maps plus per-slot arrays."""
        return int(self.slot_of.nbytes + self.last_ref.nbytes + 3 * self.slot_row.nbytes)

    def register(self, batch: int, ids: np.ndarray) -> None:
        """Adds batch `batch` (distinct row ids, any order) to the window; batches come in increasing order."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if self._pending and batch <= next(reversed(self._pending)):
            raise ValueError(f"batch {batch} registered out of order")
        m = ids.shape[0]
        if self.next_entry + m > self.entry_limit:
            self._rebase()
            if self.next_entry + m > self.entry_limit:
                raise ValueError(f"{self.next_entry + m:,} rows pending in the look-ahead window: too many to number")
        base = self.next_entry
        self._grow(m)
        self.next_entry += m
        prev = self.last_ref[ids]
        live = prev >= self.fin_entry
        if self.policy.sees_future:
            self._nxt[prev[live] - self._nxt_base] = batch
            # rows with no pending occurrence: resident ones learn their next use now
            slots = self.slot_of[ids[~live]]
            self.slot_nu[slots[slots >= 0]] = batch
        self.last_ref[ids] = base + np.arange(m, dtype=np.int64)
        self._pending[batch] = (ids, base)

    def plan(self, batch: int) -> np.ndarray:
        """Slot of each row of `batch` (-1: not resident), in the order registered; counts hits and misses."""
        ids, _ = self._pending[batch]
        slots = self.slot_of[ids].astype(np.int64)
        hit = int(np.count_nonzero(slots >= 0))
        self.hits += hit
        self.misses += ids.shape[0] - hit
        return slots

    def finalize(self, batch: int, staged: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """After serving `batch` (the oldest pending): which staged positions to admit into which slots.

        `staged`: positions (into the batch's ids) of non-resident rows whose data is at hand; the
        others cannot be admitted. Returns (positions, slots); the caller copies those rows in.
        """
        first = next(iter(self._pending), None)
        if first != batch:
            raise ValueError(f"finalize({batch}) but the oldest pending batch is {first}")
        ids, base = self._pending.pop(batch)
        m = ids.shape[0]
        lo = base - self._nxt_base
        nu = self._nxt[lo:lo + m].copy() if self.policy.sees_future else np.full(m, NEVER, np.int64)
        self.fin_entry = base + m
        slots = self.slot_of[ids].astype(np.int64)
        hit = slots >= 0
        hs = slots[hit]
        self.slot_nu[hs] = nu[hit]
        self.slot_last[hs] = batch
        gone = hs[nu[hit] == NEVER]  # residents whose future is unknown again: youngest in the LRU order
        self._push_unknown(gone, batch)
        staged = np.asarray(staged, dtype=np.int64)
        cand_nu = nu[staged]
        order = np.argsort(cand_nu, kind="stable")  # soonest next use first
        staged, cand_nu = staged[order], cand_nu[order]
        n_fin = int(np.searchsorted(cand_nu, NEVER))
        admit_pos, admit_slot = self._admit_known(batch, staged[:n_fin], cand_nu[:n_fin])
        pos2, slot2 = self._admit_unknown(batch, staged[n_fin:])
        pos = np.concatenate([admit_pos, pos2])
        slot = np.concatenate([admit_slot, slot2])
        rows = ids[pos]
        self.slot_of[rows] = slot
        self.slot_row[slot] = rows
        self.slot_nu[slot] = nu[pos]
        self.slot_last[slot] = batch
        self._push_unknown(slot[nu[pos] == NEVER], batch)
        return pos, slot

    def reset(self) -> None:
        """Forgets the pending batches (an abandoned epoch); residents stay, their next uses unknown."""
        self._pending.clear()
        self.fin_entry = self.next_entry
        self._nxt, self._nxt_base = np.empty(0, np.int64), self.next_entry
        self.slot_nu[: self.used] = NEVER
        order = np.argsort(self.slot_last[: self.used], kind="stable")
        self._unknown = deque([(order, self.slot_row[order].copy(), self.slot_last[order].copy())]) if order.size \
            else deque()

    # --- internals ----------------------------------------------------------------------------------
    def _rebase(self) -> None:
        """Renumbers entries from the oldest pending one (entries of finalized batches are forgotten)."""
        shift = self.fin_entry
        self.last_ref -= np.int32(shift)  # shift <= entry_limit
        np.maximum(self.last_ref, -1, out=self.last_ref)  # finalized occurrences: none pending
        self._pending = {b: (ids, base - shift) for b, (ids, base) in self._pending.items()}
        self._nxt_base -= shift
        self.fin_entry -= shift
        self.next_entry -= shift

    def _grow(self, m: int) -> None:
        """Room for m more entries in _nxt (NEVER-filled), dropping finalized ones when it moves."""
        lo, hi = self.fin_entry - self._nxt_base, self.next_entry - self._nxt_base
        if hi + m > self._nxt.shape[0]:
            new = np.empty(max(2 * (hi - lo + m), 1024), np.int64)
            new[: hi - lo] = self._nxt[lo:hi]
            self._nxt, self._nxt_base = new, self.fin_entry
            hi -= lo
        self._nxt[hi:hi + m] = NEVER

    def _push_unknown(self, slots: np.ndarray, batch: int) -> None:
        if slots.size:
            self._unknown.append((slots, self.slot_row[slots].copy(), np.full(slots.shape[0], batch, np.int64)))

    def _take_free(self, k: int) -> np.ndarray:
        k = min(k, self.capacity - self.used)
        out = np.arange(self.used, self.used + k, dtype=np.int64)
        self.used += k
        return out

    def _evict_unknown(self, k: int, before: int | None = None) -> np.ndarray:
        """Up to k slots of residents with unknown next use, least recently used first (last use < before)."""
        got: list[np.ndarray] = []
        n = 0
        while n < k and self._unknown:
            s, r, last = self._unknown[0]
            valid = (self.slot_row[s] == r) & (self.slot_nu[s] == NEVER) & (self.slot_last[s] == last)
            stop = s.shape[0]
            if before is not None:
                stop = int(np.searchsorted(last, before))  # lasts are equal within an entry group
            idx = np.flatnonzero(valid[:stop])[: k - n]
            got.append(s[idx])
            n += idx.shape[0]
            if n >= k and idx.size:
                rest = int(idx[-1]) + 1
                self._unknown[0] = (s[rest:], r[rest:], last[rest:])
                if rest >= s.shape[0]:
                    self._unknown.popleft()
                break
            if stop < s.shape[0]:  # the rest were used too recently to give way
                self._unknown[0] = (s[stop:], r[stop:], last[stop:])
                break
            self._unknown.popleft()
        victims = np.concatenate(got) if got else np.zeros(0, np.int64)
        self.slot_of[self.slot_row[victims]] = -1
        self.slot_row[victims] = -1
        return victims

    def _admit_known(self, batch: int, pos: np.ndarray, nu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Slots for candidates with a known next use (sorted soonest first): free, then unknown, then later uses."""
        n = pos.shape[0]
        slots = [self._take_free(n)]
        short = n - slots[0].shape[0]
        if short:
            slots.append(self._evict_unknown(short))
            short -= slots[-1].shape[0]
        if short:  # every resident has a known next use: keep the capacity soonest of residents and candidates
            res = np.flatnonzero(self.slot_row[: self.used] >= 0)
            keys = np.concatenate([self.slot_nu[res] * 2, nu * 2 + 1])  # residents win ties
            keep = np.zeros(keys.shape[0], bool)
            keep[np.argpartition(keys, self.capacity - 1)[: self.capacity]] = True
            victims = res[~keep[: res.shape[0]]]
            keep_cand = keep[res.shape[0]:]
            self.slot_of[self.slot_row[victims]] = -1
            self.slot_row[victims] = -1
            slots.append(victims)
            # with room for all the kept candidates: those not kept are the latest uses
            got = np.concatenate(slots)
            chosen = np.flatnonzero(keep_cand)
            return pos[chosen], got[: chosen.shape[0]]
        return pos, np.concatenate(slots)

    def _admit_unknown(self, batch: int, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Slots for candidates with unknown next use: free ones, then residents unused since an older batch."""
        free = self._take_free(pos.shape[0])
        more = self._evict_unknown(pos.shape[0] - free.shape[0], before=batch)
        slots = np.concatenate([free, more])
        return pos[: slots.shape[0]], slots


def simulate(trace: Sequence[np.ndarray], capacity: int, window: int | None = None,
             policy: str = "belady") -> dict[str, int]:
    """Hits and misses of a RowPlanner on a trace of batches (distinct ids each), every miss admissible.

    `window`: batches registered ahead of the one served (None: the whole trace, i.e. exact MIN).
    """
    n = 1 + max((int(t.max()) for t in trace if len(t)), default=0)
    planner = RowPlanner(n, capacity, policy)
    ahead = len(trace) if window is None else int(window)
    registered = 0
    for b, _ in enumerate(trace):
        while registered < len(trace) and registered <= b + ahead:
            planner.register(registered, np.asarray(trace[registered], dtype=np.int64))
            registered += 1
        slots = planner.plan(b)
        planner.finalize(b, np.flatnonzero(slots < 0))
    return {"hits": planner.hits, "misses": planner.misses}


# --- reading rows ---------------------------------------------------------------------------------------
def mem_available_bytes() -> int:
    """Memory the OS can give without swapping (MemAvailable; 0 where /proc/meminfo is missing)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def spans(ids: np.ndarray, chunk_rows: int, max_gap: int) -> tuple[np.ndarray, np.ndarray]:
    """(start, stop) row ranges over ascending ids; ids at most max_gap rows apart within one chunk share one."""
    if ids.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    brk = (np.diff(ids) > max_gap + 1) | (np.diff(ids // chunk_rows) != 0)
    first = np.concatenate([[0], np.flatnonzero(brk) + 1])
    last = np.concatenate([first[1:] - 1, [ids.shape[0] - 1]])
    return ids[first], ids[last] + 1


class RowReader:
    """Reads ascending row ids of one feature array into a buffer with few, large, sequential reads.

    Raw arrays: ids closer than COALESCE_BYTES (and 64 rows) are read as one range with the gaps,
    through the C++ pread kernel (one pread per run of up to 64 rows, on `threads` threads), or with
    os.preadv per range without it; compressed arrays: one decode per chunk touched.
    """

    def __init__(self, arr: FeatureArray, threads: int = 2, coalesce_bytes: int = COALESCE_BYTES):
        self.arr = arr
        self.row_bytes = arr.layout.row_bytes
        self.threads = max(1, int(threads))
        self.max_gap = max(0, min(MAX_GAP_ROWS, int(coalesce_bytes) // max(1, self.row_bytes)))
        self.mode = "array" if arr.layout.codec != "raw" else ("kernel" if arr.kernel else "python")
        if self.mode == "kernel" and arr.raw_read != "pread":
            arr.raw_read = "pread"  # nothing mapped: the budget bounds what this process holds
            arr.clear_cache()  # reopen with the pread reader
        self.bytes_read = 0
        self.reads = 0
        self._lock = threading.Lock()  # a compressed array's chunk cache serves one thread at a time

    def open(self) -> None:
        """Opens the array's files now, on the calling thread (the background reads and a served
        batch's direct reads may then run at once)."""
        self.arr.gather(np.zeros(0, np.int64))

    def scratch_bytes(self, scratch_rows: int) -> int:
        """In-flight bytes a read with `scratch_rows` rows of scratch holds beyond its output."""
        if self.mode == "array":  # the chunk FeatureArray decodes into
            return self.arr.chunk_rows * self.row_bytes
        return scratch_rows * self.row_bytes

    def read(self, ids: np.ndarray, out: np.ndarray, scratch: np.ndarray) -> None:
        """out[i] = row ids[i] (ids ascending, distinct); `scratch`: a [rows, dim] buffer of the stored dtype."""
        if ids.size == 0:
            return
        if self.mode == "array":
            with self._lock:
                before = self.arr.stats["bytes_read"]
                self.arr.gather(ids, out=out)
                self.reads += int(np.unique(ids // self.arr.chunk_rows).shape[0])
                self.bytes_read += self.arr.stats["bytes_read"] - before
            return
        lo, hi = spans(ids, self.arr.chunk_rows, self.max_gap)
        lengths = hi - lo
        # every row of every range, in order; `want` marks the requested ones
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        expanded = np.repeat(lo - starts, lengths) + np.arange(int(lengths.sum()), dtype=np.int64)
        want = np.searchsorted(expanded, ids)
        cap = scratch.shape[0]
        for start in range(0, expanded.shape[0], cap):
            piece = expanded[start:start + cap]
            buf = scratch[: piece.shape[0]]
            if self.mode == "kernel":
                self.arr.gather(piece, out=buf, num_threads=self.threads)
            else:
                self._pread_python(piece, buf)
            k0, k1 = np.searchsorted(want, [start, start + piece.shape[0]])
            out[k0:k1] = buf[want[k0:k1] - start]
        self.bytes_read += int(expanded.shape[0]) * self.row_bytes
        self.reads += int(lo.shape[0])

    def _pread_python(self, rows: np.ndarray, buf: np.ndarray) -> None:
        """buf[i] = row rows[i] with one os.preadv per run of consecutive ids in one chunk."""
        cr = self.arr.chunk_rows
        lo, hi = spans(rows, cr, 0)
        at = 0
        for a, b in zip(lo.tolist(), hi.tolist()):
            c = a // cr
            path = self.arr.chunk_file(c)
            dst = buf[at:at + b - a]
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:  # it was there when the array was opened
                raise self.arr.damaged(path, "chunk file missing") from None
            try:
                view = dst.reshape(-1).view(np.uint8)
                got = os.preadv(fd, [view], (a - c * cr) * self.row_bytes)
            finally:
                os.close(fd)
            if got != view.nbytes:
                raise self.arr.damaged(path, f"short read ({got:,} of {view.nbytes:,} bytes): the chunk file is truncated")
            at += b - a


# --- the cache ------------------------------------------------------------------------------------------
@dataclass
class _Prepared:
    """One batch's rows of one node type, ready to serve."""

    ids: np.ndarray
    slots: np.ndarray | None = None  # slot per row (-1: not resident); None for whole matrices
    staged_pos: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # ascending row ids
    staging: np.ndarray | None = None  # rows of staged_pos, in that order
    direct_pos: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # read at gather time
    admit: tuple[np.ndarray, np.ndarray] | None = None  # (positions, slots) the planner admitted, not yet copied


def _staging_bytes(prepared: Mapping[str, _Prepared]) -> int:
    """Bytes one batch holds in staging."""
    return sum(p.staging.nbytes for p in prepared.values() if p.staging is not None)


class _TypeCache:
    """Slab and planner of one node type (or a whole matrix held in memory)."""

    def __init__(self, name: str, reader: RowReader, capacity: int, whole: bool, policy: Policy):
        self.name, self.arr, self.whole, self.reader = name, reader.arr, whole, reader
        self.rows, self.dim = self.arr.shape
        self.row_bytes = self.arr.layout.row_bytes
        self.capacity = self.rows if whole else int(capacity)
        self.planner = None if whole else RowPlanner(self.rows, self.capacity, policy)
        self.slab: np.ndarray | None = None  # allocated on first use: pages count in RSS only as rows arrive
        self.direct = 0
        self.served = 0

    def resident_rows(self) -> int:
        if self.whole:
            return self.rows if self.slab is not None else 0
        return self.planner.used


class LookaheadCache:
    """Look-ahead feature cache over the feature arrays of a loader (see the module docstring).

    Use: `s = cache.begin()` once per pass; `s.register(nodes)` for each sampled batch (node ids per
    type), in the order they will be served; `with s.serve(b): ... cache.gather(type, ids) ...`.
    Reads for batch b+1 start in the background as soon as b starts being served. `gather` of ids that are not
    the served batch's (or through a session that a newer `begin` replaced) returns None: the caller
    reads them uncached.
    """

    def __init__(self, arrays: Mapping[str, FeatureArray], budget_bytes: int, policy: str = "belady",
                 read_threads: int | None = None, coalesce_bytes: int | None = None):
        if isinstance(budget_bytes, bool) or not isinstance(budget_bytes, (int, np.integer)):
            raise UserError(f"the look-ahead cache budget must be a whole number of bytes, got {budget_bytes!r}")
        self.budget = int(budget_bytes)
        self.policy = policy_of(policy)
        if not arrays:
            raise UserError("the look-ahead cache needs at least one feature array")
        threads = read_threads if read_threads is not None else min(4, os.cpu_count() or 1)
        if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
            raise UserError(f"read_threads must be a positive int, got {read_threads!r}")
        if coalesce_bytes is None:  # the files' bytes and the budget beside them in memory: page cache, else disk
            files = sum(a.shape[0] * a.layout.row_bytes for a in arrays.values())
            coalesce_bytes = COALESCE_BYTES if files + self.budget <= mem_available_bytes() else COALESCE_DISK_BYTES
        self.coalesce_bytes = int(coalesce_bytes)
        readers = {t: RowReader(a, threads=threads, coalesce_bytes=self.coalesce_bytes) for t, a in arrays.items()}
        # the smallest read: one row of scratch (or a decoded chunk) plus one row of output, in the scratch
        need = max(r.scratch_bytes(1) + r.row_bytes for r in readers.values())
        minimum = max(need, 1) * STAGE_SHARE * 2
        if self.budget < minimum:
            raise UserError(f"feature cache budget of {self.budget:,} bytes is too small for the look-ahead cache: "
                            f"it needs at least {minimum:,} bytes (its staging pool must hold a {need:,}-byte read)")
        self.stage_bytes = min(self.budget // STAGE_SHARE, STAGE_MAX)
        # (a small budget's buffer may take up to half the pool: it then leaves the next batch no pool room)
        self.scratch_bytes = max(need, min(self.stage_bytes // SCRATCH_SHARE, SCRATCH_MAX))
        if need > SCRATCH_MAX:
            raise UserError(f"feature cache budget of {self.budget:,} bytes: a single read needs {need:,} bytes, "
                            f"more than the {SCRATCH_MAX:,}-byte read buffer")
        plan = split_budget({t: (a.shape[0], a.layout.row_bytes) for t, a in arrays.items()},
                            self.budget - self.stage_bytes)
        self.types = {t: _TypeCache(t, readers[t], *plan[t], self.policy) for t in arrays}
        self._lock = threading.Lock()
        self.resident_bytes = self.in_flight_bytes = self.high_water_bytes = 0
        self.staging_waits = 0  # batches whose reads waited for the served batch's staging to be freed
        self._token = 0
        self._next_batch = 0
        self._pool: ThreadPoolExecutor | None = None
        self._pid = -1
        self._reset_state()

    @property
    def node_types(self) -> list[str]:
        return list(self.types)

    # --- sessions -----------------------------------------------------------------------------------
    def begin(self) -> "LookaheadSession":
        """A new pass: forgets batches registered but not served (their staged rows are dropped)."""
        self._ensure_pool()
        self._drain()
        for tc in self.types.values():
            tc.reader.open()
        for tc in self.types.values():
            if tc.planner is not None:
                tc.planner.reset()
        self._forget_batches()
        self._token += 1
        return LookaheadSession(self, self._token)

    def gather(self, node_type: str, ids: np.ndarray, num_threads: int = 1) -> np.ndarray | None:
        """float32 rows `ids` of `node_type` from the batch being served; None when ids are not that batch's."""
        cur = self._serving
        tc = self.types.get(node_type)
        if cur is None or tc is None:
            return None
        prep = self._prepared.get(cur, {}).get(node_type)
        ids = np.asarray(ids, dtype=np.int64)
        if prep is None or not np.array_equal(prep.ids, ids):
            return None
        return self._assemble(tc, prep, num_threads)

    def stats(self) -> dict:
        """Budget, resident and in-flight bytes, their high-water mark, and per-type hits and reads."""
        per = {}
        for t, tc in self.types.items():
            p = tc.planner
            hits = p.hits if p else tc.served
            misses = p.misses if p else 0
            per[t] = {"whole": tc.whole, "capacity_rows": tc.capacity, "resident_rows": tc.resident_rows(),
                      "row_bytes": tc.row_bytes, "hits": hits, "misses": misses, "direct": tc.direct,
                      "hit_ratio": hits / max(1, hits + misses), "bytes_read": tc.reader.bytes_read,
                      "reads": tc.reader.reads}
        hits = sum(v["hits"] for v in per.values())
        total = hits + sum(v["misses"] for v in per.values())
        return {"policy": self.policy.name, "budget_bytes": self.budget, "stage_bytes": self.stage_bytes,
                "coalesce_bytes": self.coalesce_bytes,
                "resident_bytes": self.resident_bytes, "in_flight_bytes": self.in_flight_bytes,
                "high_water_bytes": self.high_water_bytes, "staging_waits": self.staging_waits,
                "index_bytes": sum(tc.planner.index_bytes for tc in self.types.values() if tc.planner),
                "hit_ratio": hits / max(1, total), "rows_requested": total,
                "bytes_read": sum(v["bytes_read"] for v in per.values()), "types": per}

    def close(self) -> None:
        """Waits for background reads, stops the reader thread and frees every resident row and staged
        read, so the budget's memory is returned now rather than whenever the garbage collector finds the
        loader; a later `begin` starts from an empty cache."""
        if self._pool is not None and self._pid == os.getpid():
            self._drain()
            self._pool.shutdown(wait=True)
        self._pool = None
        self._forget_batches()
        for tc in self.types.values():
            tc.slab = None
            if tc.planner is not None:
                tc.planner = RowPlanner(tc.rows, tc.capacity, self.policy)
        with self._lock:
            self.resident_bytes = 0

    def __getstate__(self) -> dict:
        raise TypeError("a LookaheadCache stays in the process that made it (DataLoader workers only sample)")

    # --- internals ----------------------------------------------------------------------------------
    def _forget_batches(self) -> None:
        """Drops every registered and prepared batch, returning their staged reads to the budget (rows
        the planners already admitted are copied into their slots first: the planners count them resident)."""
        for prep in list(self._prepared.values()):
            try:
                self._copy_admitted(prep)
            finally:
                self._release(prep)
        self._reset_state()

    def _reset_state(self) -> None:
        self._registered: dict[int, dict[str, np.ndarray]] = {}
        self._prepared: dict[int, dict[str, _Prepared]] = {}
        self._futures: dict[int, Future] = {}
        self._decided: Future | None = None
        self._copy: Future | None = None
        self._waiting: tuple[int, dict] | None = None  # a planned batch whose reads wait for staging room
        self._last: Future | None = None
        self._serving: int | None = None

    def _ensure_pool(self) -> None:
        if self._pool is None or self._pid != os.getpid():
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="graphstore-lookahead")
            self._pid = os.getpid()

    def _submit(self, fn, *args) -> Future:
        self._last = self._pool.submit(fn, *args)
        return self._last

    def _drain(self) -> None:
        """Waits for every queued job (errors of abandoned work are dropped with it)."""
        for f in [*self._futures.values(), self._last]:
            if f is not None:
                try:
                    f.result()
                except Exception:  # noqa: BLE001 - a new pass starts clean
                    pass

    def _account(self, resident: int = 0, in_flight: int = 0) -> None:
        """Moves the byte counts; the budget is an invariant, so passing it is a bug (AssertionError)."""
        with self._lock:
            self.resident_bytes += resident
            self.in_flight_bytes += in_flight
            now = self.resident_bytes + self.in_flight_bytes
            self.high_water_bytes = max(self.high_water_bytes, now)
        if now > self.budget:
            raise AssertionError(f"look-ahead cache over budget: {now:,} > {self.budget:,} bytes")

    def _register(self, nodes: Mapping[str, np.ndarray]) -> int:
        b = self._next_batch
        self._next_batch += 1
        ids = {t: np.array(nodes[t], dtype=np.int64, copy=True) if t in nodes else np.zeros(0, np.int64)
               for t in self.types}
        self._registered[b] = ids
        self._submit(self._job_register, b, ids)
        return b

    def _job_register(self, b: int, ids: dict[str, np.ndarray]) -> None:
        for tc in self.types.values():
            if tc.planner is not None:
                tc.planner.register(b, ids[tc.name])

    def _prepare_async(self, b: int) -> None:
        if b in self._registered and b not in self._futures:
            self._futures[b] = self._submit(self._job_prepare, b)

    def _job_prepare(self, b: int) -> None:
        """Plans batch b and reads its missing rows, per type in file order, into the staging pool.

        When they do not all fit beside the served batch's staging, the reads wait for it to be freed
        (`_job_copy` does them): a batch that waits is still prefetched whole, not read at gather time.
        """
        ids = self._registered[b]
        prepared: dict[str, _Prepared] = {}
        self._prepared[b] = prepared  # whatever is staged is released with it, even after an error
        for t, tc in self.types.items():
            if tc.whole:
                self._load_whole(tc)
                prepared[t] = _Prepared(ids[t])
        plans = {}
        for t, tc in self.types.items():
            if not tc.whole:
                slots = tc.planner.plan(b)
                miss = np.flatnonzero(slots < 0)
                plans[t] = (slots, miss[np.argsort(ids[t][miss], kind="stable")])  # misses in file order
        held = self._staged_bytes()
        wanted = sum(miss.shape[0] * self.types[t].row_bytes for t, (_, miss) in plans.items())
        if held and wanted > self._staging_room(held):
            self._waiting = (b, plans)
            self.staging_waits += 1
            return
        self._stage(b, plans)

    def _staged_bytes(self) -> int:
        return sum(_staging_bytes(prep) for prep in self._prepared.values())

    def _stage(self, b: int, plans: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> None:
        """Reads the planned misses of batch b into staging, as far as the pool has room; the rest go direct."""
        ids, prepared = self._registered[b], self._prepared[b]
        room = self._staging_room(self._staged_bytes())
        staged_bytes = 0
        for t, (slots, miss) in plans.items():
            tc = self.types[t]
            fit = max(0, (room - staged_bytes) // tc.row_bytes)
            p = _Prepared(ids[t], slots, miss[:fit], None, miss[fit:])
            if p.staged_pos.size:
                p.staging = np.empty((p.staged_pos.shape[0], tc.dim), tc.arr.dtype)
                self._account(in_flight=p.staging.nbytes)
                staged_bytes += p.staging.nbytes
            prepared[t] = p
            if p.staging is not None:
                self._read(tc, ids[t][p.staged_pos], p.staging)

    def _staging_room(self, held: int) -> int:
        """Bytes the next batch may stage while `held` staged bytes of the batch being served are in use:
        what the pool has left, or half of what residents leave free, whichever is more.

        In flight at once: the served batch's staging (`held`), the next one's, a read buffer of the
        background's reads and one of the served batch's direct reads. Safe both ways: residents never
        pass budget - pool; and admission adds at most the staged bytes, so with
        staged <= (budget - resident - held - 2 * scratch) / 2 the budget holds after admission too.
        The second rule lets a cache that is still filling (or whose window touches fewer rows than it
        holds) prefetch more.
        """
        reserved = held + 2 * self.scratch_bytes
        pool = self.stage_bytes - reserved
        borrowed = (self.budget - self.resident_bytes - reserved) // 2
        return max(pool, borrowed, 0)

    def _read(self, tc: _TypeCache, rows: np.ndarray, out: np.ndarray, budget: int | None = None) -> None:
        """Reads ascending rows into out through a scratch buffer counted as in flight."""
        budget = self.scratch_bytes if budget is None else budget
        scratch_rows = max(1, min(rows.shape[0] * (1 + tc.reader.max_gap), budget // tc.row_bytes))
        extra = tc.reader.scratch_bytes(scratch_rows)
        self._account(in_flight=extra)
        try:
            scratch = np.empty((scratch_rows if tc.reader.mode != "array" else 0, tc.dim), tc.arr.dtype)
            tc.reader.read(rows, out, scratch)
        finally:
            self._account(in_flight=-extra)

    def _load_whole(self, tc: _TypeCache) -> None:
        """A small matrix read whole, once, in row order."""
        if tc.slab is not None:
            return
        slab = np.empty((tc.rows, tc.dim), tc.arr.dtype)
        self._account(resident=slab.nbytes)
        try:
            step = max(1, self.scratch_bytes // tc.row_bytes)
            for lo in range(0, tc.rows, step):
                ids = np.arange(lo, min(tc.rows, lo + step), dtype=np.int64)
                self._read(tc, ids, slab[lo:lo + ids.shape[0]])
        except BaseException:
            self._account(resident=-slab.nbytes)
            raise
        tc.slab = slab

    def _job_decide(self, b: int) -> None:
        """As batch b starts being served: the planners pick which of its staged rows stay, and where.

        Only the choice: the rows move into their slots (`_job_copy`) once b is served, since they may
        replace rows b itself reads. The next batch's plan already counts them resident.
        """
        prepared = self._prepared.get(b)
        if prepared is None:
            return
        for tc in self.types.values():
            p = prepared.get(tc.name)
            if tc.planner is None or p is None:
                continue
            before = tc.planner.used
            p.admit = tc.planner.finalize(b, p.staged_pos)
            self._account(resident=(tc.planner.used - before) * tc.row_bytes)

    def _job_copy(self, b: int) -> None:
        """After batch b is served: its admitted rows move from staging into their slots; staging is freed."""
        prepared = self._prepared.pop(b, None)
        self._registered.pop(b, None)
        if prepared is None:
            return
        try:
            self._copy_admitted(prepared)
        finally:
            self._release(prepared)
        waiting, self._waiting = self._waiting, None
        if waiting is not None and waiting[0] in self._prepared:
            self._stage(*waiting)

    def _copy_admitted(self, prepared: Mapping[str, _Prepared]) -> None:
        for t, p in prepared.items():
            if p.admit is None:
                continue
            pos, slots = p.admit
            p.admit = None
            if pos.size:
                tc = self.types[t]
                if tc.slab is None:  # untouched pages: only rows written count in RSS
                    tc.slab = np.empty((tc.capacity, tc.dim), tc.arr.dtype)
                row_of = np.full(p.ids.shape[0], -1, np.int64)  # position in the batch -> staging row
                row_of[p.staged_pos] = np.arange(p.staged_pos.shape[0])
                tc.slab[slots] = p.staging[row_of[pos]]

    def _release(self, prepared: Mapping[str, _Prepared]) -> None:
        freed = _staging_bytes(prepared)
        for p in prepared.values():
            p.staging = None
        if freed:
            self._account(in_flight=-freed)

    def _assemble(self, tc: _TypeCache, p: _Prepared, num_threads: int) -> np.ndarray:
        """float32 rows of one prepared batch: resident slots, staged rows, then direct reads."""
        m = p.ids.shape[0]
        out = np.empty((m, tc.dim), np.float32)
        convert = tc.arr.dtype == np.float16
        kernel = _gather_cpp is not None and (convert or tc.arr.dtype == np.float32)
        if tc.whole:
            tc.served += m
            src, chunk_rows, bases = p.ids, max(1, tc.rows), [tc.slab]
        else:
            src = p.slots.copy()
            chunk_rows = max(1, tc.capacity, p.staged_pos.shape[0])  # slab rows, then staging rows
            src[p.staged_pos] = chunk_rows + np.arange(p.staged_pos.shape[0])
            src[p.direct_pos] = -1
            empty = np.empty((0, tc.dim), tc.arr.dtype)
            bases = [tc.slab if tc.slab is not None else empty, p.staging if p.staging is not None else empty]
        take = np.flatnonzero(src >= 0) if p.direct_pos.size else None
        if kernel:
            addr = np.array([b.ctypes.data for b in bases], dtype=np.uint64)
            dst = out if take is None else np.empty((take.shape[0], tc.dim), np.float32)
            _gather_cpp.gather_rows(addr, chunk_rows, tc.dim, tc.arr.dtype.itemsize,
                                    src if take is None else src[take], dst, int(convert), int(num_threads))
            if take is not None:
                out[take] = dst
        else:
            sel = np.arange(m) if take is None else take
            s = src[sel]
            for k, base in enumerate(bases):
                mine = (s >= k * chunk_rows) & (s < (k + 1) * chunk_rows)
                out[sel[mine]] = base[s[mine] - k * chunk_rows]
        if p.direct_pos.size:
            self._read_direct(tc, p.ids[p.direct_pos], p.direct_pos, out, num_threads)
        return out

    def _read_direct(self, tc: _TypeCache, rows: np.ndarray, pos: np.ndarray, out: np.ndarray,
                     num_threads: int) -> None:
        """Misses the staging pool had no room for: read now, in file order, in pieces of half the read buffer."""
        tc.direct += int(rows.shape[0])
        half = self.scratch_bytes // 2
        kernel = tc.reader.mode == "kernel" and tc.arr.dtype in (np.float16, np.float32)
        # kernel: the pread kernel widens into a float32 piece; else a stored piece through the reader, then a cast
        per_row = tc.dim * 4 if kernel else tc.row_bytes
        step = max(1, half // per_row)
        for k in range(0, rows.shape[0], step):
            r, at = rows[k:k + step], pos[k:k + step]  # rows are ascending: direct_pos is in file order
            tmp = np.empty((r.shape[0], tc.dim), np.float32 if kernel else tc.arr.dtype)
            self._account(in_flight=tmp.nbytes)
            try:
                if kernel:
                    tc.arr.gather(r, dtype=np.float32, out=tmp, num_threads=num_threads)
                    tc.reader.bytes_read += r.shape[0] * tc.row_bytes
                else:
                    self._read(tc, r, tmp, budget=half)
                out[at] = tmp  # exact float16 -> float32, as every other path
            finally:
                self._account(in_flight=-tmp.nbytes)


class LookaheadSession:
    """One pass of a LookaheadCache (see LookaheadCache); stale once a newer pass begins."""

    def __init__(self, cache: LookaheadCache, token: int):
        self.cache, self.token = cache, token

    @property
    def active(self) -> bool:
        return self.cache._token == self.token

    def register(self, nodes: Mapping[str, np.ndarray]) -> int | None:
        """Registers the next batch to be served (node ids per type); its index, None when stale."""
        return self.cache._register(nodes) if self.active else None

    def finish(self) -> None:
        """End of the pass: waits for the background work of the last batch (its staged rows are released)."""
        if self.active:
            f = self.cache._last
            if f is not None:
                f.result()

    @contextmanager
    def serve(self, batch: int | None):
        """Serves `batch` from the cache inside the block; the next batch's reads run meanwhile.

        An error of a background job (reads, admissions) is raised here, and by every later batch of
        the pass: a new pass (`begin`) starts clean.
        """
        c = self.cache
        if batch is None or not self.active:
            yield
            return
        c._prepare_async(batch)
        for f in (c._decided, c._copy):  # the previous batch's admissions: chosen, then in their slots
            if f is not None:
                f.result()  # (and their errors raised here, not lost)
        c._futures.pop(batch).result()
        # while this batch is assembled: the planner's admissions for it, then the next batch's reads
        c._decided = c._submit(c._job_decide, batch)
        c._prepare_async(batch + 1)
        c._serving = batch
        try:
            yield
        finally:
            c._serving = None
            if self.active:
                c._copy = c._submit(c._job_copy, batch)  # slots it read may be overwritten only now


def split_budget(arrays: Mapping[str, tuple[int, int]], row_budget: int) -> dict[str, tuple[int, bool]]:
    """(capacity in rows, whole) per type from (rows, row bytes): small matrices whole, the rest by size.

    Narrow (rows of at most PIN_ROW_BYTES) or tiny (at most PIN_TINY_SHARE of `row_budget`) matrices go
    whole first, smallest first, while together they take at most PIN_SHARE of `row_budget`; the
    remaining bytes are split among the other types in proportion to their sizes. Every matrix goes
    whole when all of them fit in PIN_SHARE of `row_budget`.
    """
    size = {t: rows * rb for t, (rows, rb) in arrays.items()}
    out: dict[str, tuple[int, bool]] = {}
    pinned = 0
    all_fit = sum(size.values()) <= PIN_SHARE * row_budget
    for t in sorted(size, key=lambda t: (size[t], t)):
        narrow_or_tiny = arrays[t][1] <= PIN_ROW_BYTES or size[t] <= PIN_TINY_SHARE * row_budget
        if (all_fit or narrow_or_tiny) and pinned + size[t] <= PIN_SHARE * row_budget:
            pinned += size[t]
            out[t] = (arrays[t][0], True)
    rest = {t: s for t, s in size.items() if t not in out}
    left = row_budget - pinned
    total = sum(rest.values())
    for t, s in rest.items():
        rows, rb = arrays[t]
        out[t] = (min(rows, int(left * s / total) // rb) if total else 0, False)
    return out
