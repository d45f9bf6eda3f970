"""The look-ahead (Belady) feature cache: same batches as the plain loader, within its budget, optimal misses."""
from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest
import torch

from graphstore.build import build_store
from graphstore.errors import UserError
from graphstore.features import array as array_module
from graphstore.featurize import featurize_store
from graphstore.features import lookahead as la
from graphstore.features.array import FeatureArray
from graphstore.features.cache import POLICIES
from graphstore.pyg import make_loader
from graphstore.store import GraphStore
from tests.xsvideo_fixtures import make_records, write_xsvideo


@pytest.fixture(scope="module")
def la_store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lookahead")
    src = write_xsvideo(tmp / "xs.json", make_records(80, seed=11))
    path = build_store(src, tmp / "store", featurize=False, progress=False)
    featurize_store(path, progress=False, text_dim=32, time_encoding="paper")  # wide time rows: real misses
    return GraphStore.open(path)


def feature_bytes(store: GraphStore) -> int:
    feats = store.meta["features"]
    return sum(store.num_nodes(t) * f["dim"] * np.dtype(f["dtype"]).itemsize for t, f in feats.items())


def assert_same_batches(a: list, b: list) -> None:
    """Same node ids, edge indices, features (bit for bit), labels and seed counts, batch by batch."""
    assert len(a) == len(b) > 2
    for x, y in zip(a, b):
        assert x.node_types == y.node_types and x.edge_types == y.edge_types
        assert x["video"].batch_size == y["video"].batch_size
        assert torch.equal(x["video"].y, y["video"].y)
        for t in x.node_types:
            assert torch.equal(x[t].n_id, y[t].n_id), t
            assert x[t].x.dtype == y[t].x.dtype == torch.float32
            assert torch.equal(x[t].x.view(torch.int32), y[t].x.view(torch.int32)), t  # bitwise, NaN-safe
        for et in x.edge_types:
            assert torch.equal(x[et].edge_index, y[et].edge_index), et


KW = dict(split="train", fanouts=[4, 4], batch_size=8, shuffle=True, seed=3)


@pytest.mark.parametrize("fraction, window", [(16, 1), (16, 3), (4, 3), (1, 40)])
def test_same_batches_as_the_plain_loader(la_store, fraction, window):
    """Two epochs (the second reshuffled), every window boundary crossed, budgets from tiny to all."""
    plain = make_loader(la_store, **KW)
    budget = feature_bytes(la_store) // fraction
    ours = make_loader(la_store, feature_cache="lookahead", cache_bytes=budget, lookahead_batches=window, **KW)
    assert type(ours).__name__ == "LookaheadNodeLoader"
    for _ in range(2):
        assert_same_batches(list(plain), list(ours))
    stats = ours.data[0].cache.stats()
    assert stats["rows_requested"] > 0 and stats["high_water_bytes"] <= budget
    direct = sum(v["direct"] for v in stats["types"].values())
    if fraction == 16:  # the staging pool overflows: misses read at gather time are served too
        assert direct > 0
    if fraction == 1:  # everything is prefetched, and most rows come from memory
        assert direct == 0 and stats["hit_ratio"] > 0.9
        # some batches' reads had to wait for the served batch's staging (this budget's pool holds one
        # batch's misses, not two): they are still prefetched whole, never read at gather time
        assert stats["staging_waits"] > 0


def test_same_batches_without_the_kernel_and_with_a_worker(la_store, monkeypatch):
    plain = list(make_loader(la_store, **KW))
    monkeypatch.setattr(array_module, "_gather_cpp", None)
    monkeypatch.setattr(la, "_gather_cpp", None)
    budget = feature_bytes(la_store) // 8
    numpy_only = make_loader(la_store, feature_cache="lookahead", cache_bytes=budget, lookahead_batches=2, **KW)
    assert {tc.reader.mode for tc in numpy_only.data[0].cache.types.values()} == {"python"}
    assert_same_batches(plain, list(numpy_only))
    monkeypatch.undo()
    # a DataLoader worker samples, this process gathers; two epochs go through persistent workers' _reset
    plain_worker = make_loader(la_store, num_workers=1, **KW)
    worker = make_loader(la_store, feature_cache="lookahead", cache_bytes=budget, lookahead_batches=2,
                         num_workers=1, **KW)
    for _ in range(2):
        assert_same_batches(list(plain_worker), list(worker))


def test_lru_ablation_and_sieve_reader_give_the_same_batches(la_store):
    plain = list(make_loader(la_store, **KW))
    budget = feature_bytes(la_store) // 8
    for cache in ("lookahead-lru", "sieve"):
        assert_same_batches(plain, list(make_loader(la_store, feature_cache=cache, cache_bytes=budget, **KW)))


def test_budget_never_exceeded_at_any_step(la_store, monkeypatch):
    """Every change of resident + in-flight bytes is recorded; none passes the budget."""
    seen: list[int] = []
    account = la.LookaheadCache._account

    def recording(self, resident=0, in_flight=0):
        account(self, resident, in_flight)
        with self._lock:  # the reader thread moves the counts too
            seen.append(self.resident_bytes + self.in_flight_bytes)
            assert self.resident_bytes >= 0 and self.in_flight_bytes >= 0

    monkeypatch.setattr(la.LookaheadCache, "_account", recording)
    for fraction in (16, 8, 2):
        budget = feature_bytes(la_store) // fraction
        seen.clear()
        loader = make_loader(la_store, feature_cache="lookahead", cache_bytes=budget, lookahead_batches=4, **KW)
        for _ in range(2):
            for _ in loader:
                stats = loader.data[0].cache.stats()
                assert stats["resident_bytes"] + stats["in_flight_bytes"] <= budget
        cache = loader.data[0].cache
        assert seen and max(seen) <= cache.high_water_bytes <= budget
        assert cache.in_flight_bytes == 0  # every staging buffer was released
        assert max(seen) > budget // 4  # the budget is used, not just respected
        for tc in cache.types.values():
            assert tc.resident_rows() <= tc.capacity


def test_the_budget_guard_fires(la_store, monkeypatch):
    """A split that hands out more rows than the budget holds is caught (the guard can fail)."""
    def greedy(arrays, row_budget):
        return {t: (rows, False) for t, (rows, _) in arrays.items()}

    monkeypatch.setattr(la, "split_budget", greedy)
    loader = make_loader(la_store, feature_cache="lookahead", cache_bytes=feature_bytes(la_store) // 16,
                         lookahead_batches=2, **KW)
    with pytest.raises(AssertionError, match="over budget"):
        for _ in range(2):
            list(loader)


def test_an_error_in_the_admission_step_reaches_the_loop(la_store, monkeypatch):
    """The planner's admissions run in the background while a batch is assembled: their errors still surface."""
    finalize = la.RowPlanner.finalize

    def failing(self, batch, staged):
        if batch == 2:
            raise RuntimeError("planner broke at batch 2")
        return finalize(self, batch, staged)

    monkeypatch.setattr(la.RowPlanner, "finalize", failing)
    loader = make_loader(la_store, feature_cache="lookahead", cache_bytes=feature_bytes(la_store) // 4,
                         lookahead_batches=3, **KW)
    with pytest.raises(RuntimeError, match="planner broke at batch 2"):
        list(loader)


def test_everything_fits_then_nothing_is_read_twice(la_store):
    loader = make_loader(la_store, feature_cache="lookahead", cache_bytes=4 * feature_bytes(la_store), **KW)
    list(loader)
    cache = loader.data[0].cache
    first = cache.stats()
    assert all(tc.whole for tc in cache.types.values())
    list(loader)
    second = cache.stats()
    assert second["bytes_read"] == first["bytes_read"] and second["hit_ratio"] == 1.0


def test_cache_hits_grow_with_the_budget(la_store):
    ratios = []
    for fraction in (16, 4, 1):
        loader = make_loader(la_store, feature_cache="lookahead", cache_bytes=feature_bytes(la_store) // fraction,
                             lookahead_batches=4, **KW)
        for _ in range(2):
            list(loader)
        ratios.append(loader.data[0].cache.stats()["hit_ratio"])
    assert ratios == sorted(ratios) and ratios[-1] > ratios[0]


def test_abandoned_epoch_and_foreign_reads(la_store):
    """Breaking out of an epoch leaves nothing staged; ids that are not the batch's are read uncached."""
    plain = make_loader(la_store, **KW)
    ours = make_loader(la_store, feature_cache="lookahead", cache_bytes=feature_bytes(la_store) // 8,
                       lookahead_batches=3, **KW)
    for loader in (plain, ours):  # an abandoned epoch (RandomSampler draws its last permutation only at the end)
        for i, _ in enumerate(loader):
            if i == 2:
                break
    assert_same_batches(list(plain), list(ours))
    assert ours.data[0].cache.in_flight_bytes == 0
    ids = torch.tensor([5, 1, 3])
    x = ours.data[0].get_tensor("comment", "x", index=ids)
    want = la_store.features("comment").gather(ids.numpy()).astype(np.float32)
    np.testing.assert_array_equal(x.numpy(), want)


def test_a_second_iterator_takes_over_the_cache(la_store):
    """An older iterator of the same loader keeps yielding the right batches (read uncached)."""
    plain = list(make_loader(la_store, **KW))
    ours = make_loader(la_store, feature_cache="lookahead", cache_bytes=feature_bytes(la_store) // 8,
                       lookahead_batches=3, **KW)
    first = iter(ours)
    got = [next(first)]
    second = iter(ours)  # begins a new pass: the first iterator's session is stale
    got += list(first)
    assert_same_batches(plain, got)
    next(second)  # and the new pass works
    assert ours.data[0].cache.stats()["high_water_bytes"] <= feature_bytes(la_store) // 8


def test_close_returns_the_budget_and_a_later_pass_is_the_same(la_store):
    """close() frees every resident row at once (a loader left to the garbage collector kept its budget:
    train, val and test loaders then held three budgets, and scale 10 ran out of memory)."""
    plain = make_loader(la_store, **KW)
    ours = make_loader(la_store, feature_cache="lookahead", cache_bytes=feature_bytes(la_store) // 4,
                       lookahead_batches=3, **KW)
    for loader in (plain, ours):  # closed in the middle of a pass, with reads staged
        for i, _ in enumerate(loader):
            if i == 2:
                break
    cache = ours.data[0].cache
    assert cache.resident_bytes > 0
    ours.data[0].close()
    assert cache.resident_bytes == 0 and cache.in_flight_bytes == 0
    assert all(tc.slab is None for tc in cache.types.values())
    assert_same_batches(list(plain), list(ours))  # starts empty, refills, serves the same rows
    assert cache.resident_bytes > 0


def test_netgpt_batches_close_their_loader(la_store, monkeypatch):
    """netgpt's iter_batches frees its loader's feature memory when the caller stops early."""
    from graphstore.pyg import LookaheadFeatureStore
    from netgpt.config import preset
    from netgpt.data import iter_batches

    closed = []
    monkeypatch.setattr(LookaheadFeatureStore, "close", lambda self: closed.append(self))
    cfg = preset("cpu", feature_cache="lookahead", feature_cache_mb=1)
    for i, _ in enumerate(iter_batches(la_store, la_store.split("train"), cfg, batch_size=8)):
        if i == 1:
            break
    assert len(closed) == 1


def test_bad_budgets_and_options_are_clear(la_store):
    for bad in (0, -5, 1.5, True, "1GB"):
        with pytest.raises(UserError, match="budget"):
            make_loader(la_store, feature_cache="lookahead", cache_bytes=bad, **KW)
    with pytest.raises(UserError, match=r"too small for the look-ahead cache: it needs at least [\d,]+ bytes"):
        make_loader(la_store, feature_cache="lookahead", cache_bytes=4096, **KW)
    with pytest.raises(UserError, match="feature_cache must be one of"):
        make_loader(la_store, feature_cache="belady", **KW)
    with pytest.raises(UserError, match="lookahead_batches"):
        make_loader(la_store, feature_cache="lookahead", lookahead_batches=0, **KW)
    with pytest.raises(UserError, match="raw_read='pread' applies to feature_cache='none'"):
        make_loader(la_store, feature_cache="lookahead", raw_read="pread", **KW)
    with pytest.raises(UserError, match="policy"):
        la.RowPlanner(10, 2, "fifo")


# --- the planner on traces --------------------------------------------------------------------------------
def optimal_misses(trace, capacity: int) -> int:
    """Fewest misses of any cache of `capacity` rows that keeps, after each batch, a subset of what it had and read."""
    batches = [frozenset(int(i) for i in t) for t in trace]

    @functools.lru_cache(maxsize=None)
    def best(b: int, resident: frozenset) -> int:
        if b == len(batches):
            return 0
        pool = sorted(resident | batches[b])
        keep = (frozenset(k) for n in range(min(capacity, len(pool)) + 1) for k in itertools.combinations(pool, n))
        return len(batches[b] - resident) + min(best(b + 1, k) for k in keep)

    return best(0, frozenset())


def sequential_misses(policy: str, trace, capacity: int) -> int:
    """Misses of an online policy of graphstore.features.cache reading each batch's rows one by one."""
    cache, misses = POLICIES[policy](capacity), 0
    for batch in trace:
        for key in batch:
            if cache.lookup(int(key)) < 0:
                misses += 1
                cache.insert(int(key))
    return misses


def test_belady_on_a_hand_made_trace():
    # capacity 2. MIN: batch 0 reads 1, 2, 3 and keeps 1, 2 (next used in batch 1; 3 only in batch 3);
    # batch 1 hits both; batch 2 reads 4 and keeps 2 (4 and 1 are never used again); batch 3 reads 3:
    # 3 + 0 + 1 + 1 = 5 misses. LRU over batches drops 2 after batch 2 (used least recently): 3 + 0 + 1 + 2 = 6.
    # LRU row by row evicts rows of the batch it is reading: 3 + 2 + 2 + 2 = 9.
    trace = [np.array([1, 2, 3]), np.array([1, 2]), np.array([4, 1]), np.array([3, 2])]
    assert optimal_misses(trace, 2) == 5
    assert la.simulate(trace, 2) == {"hits": 4, "misses": 5}
    assert la.simulate(trace, 2, policy="lru")["misses"] == 6
    assert sequential_misses("lru", trace, 2) == 9


def test_belady_matches_the_brute_force_optimum():
    rng = np.random.default_rng(0)
    for _ in range(150):
        n, cap, batches = int(rng.integers(3, 7)), int(rng.integers(1, 4)), int(rng.integers(2, 7))
        trace = [rng.choice(n, size=int(rng.integers(1, min(n, 4) + 1)), replace=False) for _ in range(batches)]
        assert la.simulate(trace, cap)["misses"] == optimal_misses(trace, cap), (trace, cap)


def test_belady_never_misses_more_than_online_policies():
    rng = np.random.default_rng(1)
    for _ in range(60):
        n = int(rng.integers(20, 300))
        weights = 1.0 / np.arange(1, n + 1) ** rng.uniform(0.5, 1.5)  # skewed, like neighbour sampling
        weights /= weights.sum()
        trace = [np.unique(rng.choice(n, size=int(rng.integers(1, 25)), p=weights)) for _ in range(40)]
        cap = int(rng.integers(1, n // 2))
        ours = la.simulate(trace, cap)["misses"]
        for policy in ("sieve", "lru", "s3fifo"):
            assert ours <= sequential_misses(policy, trace, cap), policy
        assert ours <= la.simulate(trace, cap, policy="lru")["misses"]
        assert ours <= la.simulate(trace, cap, window=3)["misses"]  # a shorter look-ahead knows less


def test_entry_numbers_are_rebased_before_they_overflow(monkeypatch):
    """With a tiny int32 limit the planner renumbers often and still makes exactly the same choices."""
    rng = np.random.default_rng(4)
    trace = [rng.choice(60, size=int(rng.integers(1, 12)), replace=False) for _ in range(80)]
    want = [la.simulate(trace, 9, window=w) for w in (1, 5)]
    rebases = []
    monkeypatch.setattr(la.RowPlanner, "entry_limit", 70)
    real = la.RowPlanner._rebase
    monkeypatch.setattr(la.RowPlanner, "_rebase", lambda self: (rebases.append(1), real(self)))
    assert [la.simulate(trace, 9, window=w) for w in (1, 5)] == want
    assert len(rebases) > 5
    with pytest.raises(ValueError, match="too many to number"):
        la.simulate(trace, 9)  # the whole trace pending at once does not fit 70 entries


def test_planner_keeps_capacity_and_survives_reset():
    rng = np.random.default_rng(2)
    planner = la.RowPlanner(50, 7)
    for b in range(30):
        planner.register(b, rng.choice(50, size=6, replace=False))
        if b >= 3:
            k = b - 3
            slots = planner.plan(k)
            planner.finalize(k, np.flatnonzero(slots < 0))
            assert planner.used <= 7
            resident = np.flatnonzero(planner.slot_of >= 0)
            assert len(resident) == planner.used
            np.testing.assert_array_equal(planner.slot_row[planner.slot_of[resident]], resident)
        if b == 15:
            planner.reset()  # pending batches dropped: serving restarts with newly registered ones
            for j in range(16, 19):
                planner.register(j, rng.choice(50, size=6, replace=False))
            break
    for k in range(16, 19):
        slots = planner.plan(k)
        planner.finalize(k, np.flatnonzero(slots < 0))
        assert planner.used <= 7


# --- reading rows ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["kernel", "python"])
def test_row_reader_reads_exact_rows(la_store, mode):
    arr = FeatureArray(la_store.path / "features" / "comment" / "x", cache_bytes=0, raw_read="pread",
                       kernel=mode == "kernel")
    if mode == "kernel" and not arr.kernel:
        pytest.skip("C++ gather kernel not built")
    reader = la.RowReader(arr, threads=2)
    assert reader.mode == mode
    rng = np.random.default_rng(3)
    ids = np.sort(rng.choice(arr.shape[0], size=40, replace=False))
    out = np.empty((ids.shape[0], arr.shape[1]), arr.dtype)
    reader.read(ids, out, np.empty((7, arr.shape[1]), arr.dtype))  # a scratch smaller than one read
    np.testing.assert_array_equal(out, la_store.features("comment").gather(ids))
    assert reader.reads < ids.shape[0]  # neighbours were coalesced into shared reads


def test_gaps_read_through_are_wider_when_the_files_are_on_disk(la_store, monkeypatch):
    """Files that fit beside the budget in memory are re-read from the page cache: short gaps; else long ones."""
    arrays = {"comment": FeatureArray(la_store.path / "features" / "comment" / "x", cache_bytes=0)}
    files = arrays["comment"].shape[0] * arrays["comment"].layout.row_bytes
    budget = 1 << 20
    monkeypatch.setattr(la, "mem_available_bytes", lambda: files + budget)
    in_memory = la.LookaheadCache(arrays, budget)
    monkeypatch.setattr(la, "mem_available_bytes", lambda: files + budget - 1)
    on_disk = la.LookaheadCache(arrays, budget)
    assert in_memory.stats()["coalesce_bytes"] == la.COALESCE_BYTES < la.COALESCE_DISK_BYTES
    assert on_disk.stats()["coalesce_bytes"] == la.COALESCE_DISK_BYTES
    row = arrays["comment"].layout.row_bytes
    for cache in (in_memory, on_disk):  # the readers read through the chosen gap
        assert cache.types["comment"].reader.max_gap == min(la.MAX_GAP_ROWS, cache.coalesce_bytes // row)
    assert la.LookaheadCache(arrays, budget, coalesce_bytes=0).types["comment"].reader.max_gap == 0


def test_spans_group_near_rows_within_a_chunk():
    lo, hi = la.spans(np.array([0, 1, 5, 30, 31, 64, 65]), chunk_rows=64, max_gap=4)
    assert lo.tolist() == [0, 30, 64] and hi.tolist() == [6, 32, 66]


def test_split_budget_holds_only_narrow_or_tiny_matrices_whole():
    """Wide matrices compete row by row (their hot rows), narrow ones are held whole; all whole when all fit."""
    arrays = {"counts": (1000, 8), "wide_a": (1000, 512), "wide_b": (1000, 512), "small_wide": (10, 512)}
    plan = la.split_budget(arrays, row_budget=600_000)
    assert plan["counts"] == (1000, True) and plan["small_wide"] == (10, True)
    assert not plan["wide_a"][1] and not plan["wide_b"][1]
    assert plan["wide_a"][0] == plan["wide_b"][0] > 0  # equal sizes, equal shares
    used = sum(rows * arrays[t][1] for t, (rows, _) in plan.items())
    assert used <= 600_000
    assert all(whole for _, whole in la.split_budget(arrays, row_budget=10 * 1_100_000).values())
