"""Scale benchmark (issue 14): build at scale (bench/scale_build.py, when present) and the loader under memory budgets.

Usage:
  python bench/scale.py --store STORE --sections loader --json-out bench/results_scale_loader.json
  python bench/scale.py --sections build loader --scale 10 --workdir DIR --json-out FILE   # needs bench/scale_build.py

Sections (`--sections`, run in this order, one JSON with a key per section):
  build   bench/scale_build.py's `build_section(args) -> dict` (synth, build, featurize; its own flags come from
          its optional `add_build_arguments(parser)`; this file owns --scale, --workdir, --seed, --store,
          --json-out). Its dict's "store" is the store the loader section reads when --store is not given.
  loader  `loader_section(store, ...)`: loader batches/s, peak RSS and hit ratios per reader and budget.

Loader section. Budgets are fractions of the feature bytes of the node types the loader reads (default
1/16, 1/8, 1/4). Readers (make_loader's `feature_cache` / `raw_read`):
  lookahead  the look-ahead Belady cache within the budget (graphstore/features/lookahead.py)     [ours]
  sieve      FeatureArray's SIEVE chunk cache within the budget (storage chunks, up to 16 MiB)     [peer]
  pread      plain pread of every raw array, no cache of its own                                  [peer]
  mmap       every raw array memory-mapped (its pages count in RSS), where the features fit in RAM [peer]
  memory     mmap after reading every feature file once: the all-in-memory reference            [ceiling]
  lookahead-lru  the look-ahead prefetch with LRU instead of Belady (ablation; --readers to add it)
pread, mmap and memory have no cache of their own, so they run once per round (with the largest budget
for the small compressed arrays' chunk caches); lookahead and sieve run at every budget.

Every run is a fresh spawned process (so peak RSS is its own): it builds the loader, takes --warmup
batches (timed apart as the cold start; their features are hashed to check that every reader served
the same batches), then times --batches batches. Runs alternate within a round (ours, then the peers,
budget by budget; odd rounds in reverse order); figures are medians over rounds, ratios are also given
per round. Cold/warm state: before each run the page cache of every feature chunk file is dropped
(fsync + posix_fadvise(DONTNEED), bench/gather.py's drop_page_cache; the files' resident bytes are
measured with mincore before and after and recorded), except for `memory`, which reads the files in
first. During a run the OS page cache refills: it is outside every reader's budget, so on a machine
whose RAM holds the features the later batches of pread/mmap/sieve read from memory; bound it for a
strict out-of-core figure, e.g. `systemd-run --scope -p MemoryMax=8G python bench/scale.py ...`
(page cache is charged to the cgroup). --compute-ms adds a sleep per batch (a stand-in for the model's
step) that the look-ahead's background reads can overlap. The hit ratio is the share of requested rows
served from the reader's own memory (lookahead: rows; sieve: storage chunks, FeatureArray.stats);
for every reader disk_read_bytes (/proc/self/io) over requested_bytes tells what came from disk.
"""
from __future__ import annotations

import argparse
import ctypes
import hashlib
import importlib.util
import json
import mmap
import multiprocessing as mp
import os
import resource
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from gather import drop_page_cache  # noqa: E402  (bench helpers, reused)
from loader import endless  # noqa: E402

from graphstore.atomic import write_json  # noqa: E402
from graphstore.features.lookahead import mem_available_bytes  # noqa: E402
from graphstore.cli import add_fanouts_argument  # noqa: E402

# reader -> make_loader options; `budgeted`: its memory is the budget (else one run per round)
READERS: dict[str, dict[str, Any]] = {
    "lookahead": {"feature_cache": "lookahead", "budgeted": True},
    "lookahead-lru": {"feature_cache": "lookahead-lru", "budgeted": True},
    "sieve": {"feature_cache": "sieve", "budgeted": True},
    "pread": {"feature_cache": "none", "raw_read": "pread", "budgeted": False},
    "mmap": {"feature_cache": "none", "raw_read": "mmap", "budgeted": False, "needs_ram": True},
    "memory": {"feature_cache": "none", "raw_read": "mmap", "budgeted": False, "needs_ram": True, "warm": True},
}
DEFAULT_READERS = ("lookahead", "sieve", "pread", "mmap", "memory")
OURS = "lookahead"


# --- page cache ----------------------------------------------------------------------------------------
def feature_files(store_path: Path, node_types: Sequence[str]) -> list[Path]:
    """Every chunk file of the loaded types' feature matrices."""
    out = []
    for t in node_types:
        root = store_path / "features" / t / "x"
        out += sorted(Path(d) / f for d, _, fs in os.walk(root) for f in fs if f != "zarr.json")
    return out


_libc = ctypes.CDLL(None, use_errno=True)


def resident_bytes(files: Sequence[Path]) -> int:
    """Bytes of `files` in the OS page cache (mincore over a fresh read-only map; faults nothing in)."""
    page = mmap.PAGESIZE
    total = 0
    for f in files:
        size = f.stat().st_size
        if size == 0:
            continue
        with open(f, "rb") as fh, mmap.mmap(fh.fileno(), size, access=mmap.ACCESS_READ) as mm:
            pages = (size + page - 1) // page
            vec = np.zeros(pages, np.uint8)
            addr = ctypes.c_void_p(np.frombuffer(mm, np.uint8).ctypes.data)
            if _libc.mincore(addr, ctypes.c_size_t(size), vec.ctypes.data_as(ctypes.c_void_p)) != 0:
                raise OSError(ctypes.get_errno(), f"mincore failed on {f}")
            total += int(np.count_nonzero(vec & 1)) * page
            del addr
    return min(total, sum(f.stat().st_size for f in files))


def warm_page_cache(files: Sequence[Path]) -> None:
    """Reads every file once, sequentially (the page cache then holds them if RAM allows)."""
    buf = bytearray(8 << 20)
    for f in files:
        with open(f, "rb", buffering=0) as fh:
            while fh.readinto(buf):
                pass


def read_bytes_now() -> int:
    """Bytes this process has caused to be read from storage (/proc/self/io read_bytes; -1 if unavailable)."""
    try:
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("read_bytes:"):
                return int(line.split()[1])
    except OSError:
        pass
    return -1


def rss_gb() -> float:
    """Current resident set size of this process in GB."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * mmap.PAGESIZE / 1e9


# --- one run (a fresh process) ------------------------------------------------------------------------
def _cache_counts(loader) -> tuple[int, int]:
    """(hits, lookups) of the reader's own memory: rows for the look-ahead cache, chunks for FeatureArray caches."""
    store = loader.data[0]
    cache = getattr(store, "cache", None)
    if cache is not None:
        s = cache.stats()
        return s["rows_requested"] - sum(v["misses"] for v in s["types"].values()), s["rows_requested"]
    hits = sum(a.stats["hits"] for a in store.arrays.values())
    return hits, hits + sum(a.stats["misses"] for a in store.arrays.values())


def run_one(spec: dict) -> dict:
    """One reader at one budget: cold start, then timed batches; in its own process."""
    import torch

    from graphstore.pyg import make_loader
    from graphstore.store import GraphStore

    torch.set_num_threads(spec["threads"])
    store = GraphStore.open(spec["store"])
    files = [Path(f) for f in spec["files"]]
    reader = READERS[spec["reader"]]
    cache_state = {"resident_before_bytes": resident_bytes(files)}
    if reader.get("warm"):
        warm_page_cache(files)
        cache_state["action"] = "read every feature file first"
    elif spec["drop"]:
        drop_page_cache_files(files)
        cache_state["action"] = "dropped (fsync + posix_fadvise DONTNEED)"
    else:
        cache_state["action"] = "left as it was (--no-drop)"
    cache_state["resident_at_start_bytes"] = resident_bytes(files)
    opts = {k: v for k, v in reader.items() if k in ("feature_cache", "raw_read")}
    loader = make_loader(store, spec["split"], fanouts=spec["fanouts"], batch_size=spec["batch_size"], shuffle=True,
                         seed=spec["seed"], cache_bytes=spec["budget_bytes"], lookahead_batches=spec["lookahead"],
                         **opts)
    row_bytes = {t: a.layout.row_bytes for t, a in loader.data[0].arrays.items()}
    rss_setup = rss_gb()
    it = endless(loader)
    digest = hashlib.blake2b(digest_size=16)
    sleep = spec["compute_ms"] / 1e3
    t0 = time.perf_counter()
    for _ in range(spec["warmup"]):
        b = next(it)
        for t in sorted(b.node_types):
            digest.update(b[t].n_id.numpy().tobytes())
            digest.update(b[t].x.numpy().tobytes())
        if sleep:
            time.sleep(sleep)
    cold_s = time.perf_counter() - t0
    hits0, lookups0 = _cache_counts(loader)
    disk0 = read_bytes_now()
    nodes = edges = requested = 0
    t0 = time.perf_counter()
    for _ in range(spec["batches"]):
        b = next(it)
        for t in b.node_types:
            n = b[t].num_nodes
            nodes += n
            requested += n * row_bytes.get(t, 0)
        edges += sum(b[et].edge_index.shape[1] for et in b.edge_types)
        if sleep:
            time.sleep(sleep)
    dt = time.perf_counter() - t0
    disk = read_bytes_now() - disk0 if disk0 >= 0 else None
    hits, lookups = _cache_counts(loader)
    own = loader.data[0]
    # the reader's own memory: look-ahead rows, SIEVE chunks; pread/mmap have none (the page cache is the OS's)
    unit = "rows" if getattr(own, "cache", None) is not None else ("chunks" if spec["reader"] == "sieve" else None)
    out = {
        "reader": spec["reader"], "round": spec["round"], "budget": spec["budget_label"],
        "budget_bytes": spec["budget_bytes"], "batches": spec["batches"], "seconds": dt,
        "batches_per_s": spec["batches"] / dt, "cold_batches": spec["warmup"], "cold_seconds": cold_s,
        "nodes_per_batch": nodes / spec["batches"], "edges_per_batch": edges / spec["batches"],
        "requested_bytes": requested, "disk_read_bytes": disk,
        "hit_ratio": (hits - hits0) / max(1, lookups - lookups0) if unit else None, "hit_unit": unit,
        "rss_after_setup_gb": rss_setup, "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
        "page_cache": cache_state, "warmup_digest": digest.hexdigest(), "raw_read": dict(own.raw_read),
    }
    if getattr(own, "cache", None) is not None:
        s = own.cache.stats()
        out["cache"] = {k: s[k] for k in ("policy", "budget_bytes", "stage_bytes", "coalesce_bytes", "high_water_bytes",
                                         "resident_bytes", "index_bytes", "bytes_read")}
        out["cache"]["whole_types"] = sorted(t for t, v in s["types"].items() if v["whole"])
    return out


def drop_page_cache_files(files: Sequence[Path]) -> None:
    """drop_page_cache (bench/gather.py) of each file."""
    for f in files:
        drop_page_cache(f)


def _child(spec: dict, conn) -> None:
    try:
        conn.send(("ok", run_one(spec)))
    except BaseException as exc:  # noqa: BLE001 - reported by the parent
        import traceback

        conn.send(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
    finally:
        conn.close()


def run_in_child(spec: dict) -> dict:
    """run_one in a fresh spawned process (its own peak RSS, its own maps)."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(spec, child))
    proc.start()
    child.close()
    try:
        status, payload = parent.recv()
    except EOFError:
        status, payload = "error", "the run process died"
    proc.join()
    if status == "error" and proc.exitcode:
        payload += f" (exit code {proc.exitcode})"
    if status != "ok":
        raise RuntimeError(f"{spec['reader']} at budget {spec['budget_label']}: {payload}")
    return payload


# --- the section -----------------------------------------------------------------------------------------
def loader_node_types(store) -> list[str]:
    """Node types make_loader reads with every relation: video and the heads of all relations."""
    return store.topology.node_types_reached()


def schedule(budgets: Sequence[int], readers: Sequence[str], rounds: int) -> list[tuple[int, str, int | None]]:
    """(round, reader, budget divisor or None) in run order: ours then peers per budget, odd rounds reversed."""
    out = []
    for r in range(rounds):
        runs = [(r, name, d) for d in budgets for name in readers if READERS[name]["budgeted"]]
        runs += [(r, name, None) for name in readers if not READERS[name]["budgeted"]]
        out += runs if r % 2 == 0 else runs[::-1]
    return out


def summarise(runs: list[dict], budgets: Sequence[int], readers: Sequence[str]) -> dict:
    """Median batches/s, peak RSS and hit ratio per (budget, reader), and our ratios to each peer."""
    def med(xs):
        xs = [x for x in xs if x is not None]
        return float(np.median(xs)) if xs else None

    def cell(name: str, label: str) -> dict | None:
        mine = [r for r in runs if r["reader"] == name and r["budget"] == label]
        if not mine:
            return None
        return {"batches_per_s": med([r["batches_per_s"] for r in mine]),
                "rounds_batches_per_s": [r["batches_per_s"] for r in mine],
                "cold_batches_per_s": med([r["cold_batches"] / r["cold_seconds"] for r in mine]),
                "peak_rss_gb": med([r["peak_rss_gb"] for r in mine]),
                "hit_ratio": med([r["hit_ratio"] for r in mine]), "hit_unit": mine[0]["hit_unit"],
                "disk_read_per_requested": med([r["disk_read_bytes"] / r["requested_bytes"]
                                                for r in mine if r["disk_read_bytes"] is not None])}

    table: dict[str, dict] = {}
    free = [n for n in readers if not READERS[n]["budgeted"]]
    for d in budgets:
        label = f"1/{d}"
        row = {n: cell(n, label) for n in readers if READERS[n]["budgeted"]}
        row.update({n: cell(n, "none") for n in free})
        ratios = {}
        ours = [r for r in runs if r["reader"] == OURS and r["budget"] == label]
        for peer, c in row.items():
            if peer == OURS or c is None or row.get(OURS) is None:
                continue
            peer_label = label if READERS[peer]["budgeted"] else "none"
            per_round = [o["batches_per_s"] / p["batches_per_s"] for o in ours for p in runs
                         if p["reader"] == peer and p["budget"] == peer_label and p["round"] == o["round"]]
            ratios[f"{OURS}/{peer}"] = {"of_medians": row[OURS]["batches_per_s"] / c["batches_per_s"],
                                        "per_round": per_round}
        table[label] = {"readers": row, "ratios": ratios}
    return table


def loader_section(store: str | Path, budgets: Sequence[int] = (16, 8, 4), readers: Sequence[str] = DEFAULT_READERS,
                   rounds: int = 2, warmup: int = 5, batches: int = 30, batch_size: int = 512,
                   fanouts: Sequence[int] = (10, 10), lookahead: int = 16, compute_ms: float = 0.0,
                   threads: int = 2, seed: int = 0, split: str = "train", drop: bool = True,
                   log: Callable[[str], None] = print) -> dict:
    """Loader batches/s, peak RSS and hit ratios of each reader at budgets of feature_bytes / d for d in budgets."""
    from graphstore.errors import UserError
    from graphstore.store import GraphStore

    unknown = [r for r in readers if r not in READERS]
    if unknown:
        raise UserError(f"unknown reader(s) {unknown}; readers: {', '.join(READERS)}")
    if OURS not in readers:
        raise UserError(f"the loader section compares {OURS!r} with its peers: include it in --readers")
    gs = GraphStore.open(store)
    types = loader_node_types(gs)
    feats = gs.meta.get("features", {})
    missing = [t for t in types if t not in feats]
    if missing:
        raise UserError(f"{gs.path}: no features for {missing}; run `graphstore featurize {gs.path}`")
    sizes = {t: gs.num_nodes(t) * feats[t]["dim"] * np.dtype(feats[t]["dtype"]).itemsize for t in types}
    total = sum(sizes.values())
    files = feature_files(gs.path, types)
    avail = mem_available_bytes()
    skipped = {}
    chosen = list(readers)
    for name in readers:
        if READERS[name].get("needs_ram") and total > 0.8 * avail:
            skipped[name] = f"features ({total / 1e9:.1f} GB) do not fit in 80 % of MemAvailable ({avail / 1e9:.1f} GB)"
            chosen.remove(name)
    res: dict[str, Any] = {
        "store": str(gs.path), "videos": gs.num_nodes("video"), "node_types": types,
        "feature_bytes": total, "feature_bytes_per_type": sizes, "mem_available_bytes": avail,
        "settings": {"budgets": [f"1/{d}" for d in budgets], "readers": chosen, "rounds": rounds, "warmup": warmup,
                     "batches": batches, "batch_size": batch_size, "fanouts": list(fanouts), "lookahead": lookahead,
                     "compute_ms": compute_ms, "threads": threads, "seed": seed, "split": split,
                     "cpu_affinity": sorted(os.sched_getaffinity(0)), "nice": os.nice(0)},
        "page_cache": {"method": "fsync + posix_fadvise(POSIX_FADV_DONTNEED) on every feature chunk file before "
                                 "each run (not before 'memory', which reads them in first); residency measured "
                                 "with mincore",
                       "dropped": drop},
        "skipped": skipped, "runs": [],
    }
    for r, name, d in schedule(budgets, chosen, rounds):
        budget = total // (d if d is not None else min(budgets))  # readers without a cache: the largest budget
        spec = {"store": str(gs.path), "files": [str(f) for f in files], "reader": name, "round": r,
                "budget_label": f"1/{d}" if d is not None else "none", "budget_bytes": int(budget),
                "split": split, "fanouts": list(fanouts), "batch_size": batch_size, "seed": seed,
                "lookahead": lookahead, "warmup": warmup, "batches": batches, "compute_ms": compute_ms,
                "threads": threads, "drop": drop}
        out = run_in_child(spec)
        res["runs"].append(out)
        log(f"round {r} {name:<13} budget {out['budget']:>5}: {out['batches_per_s']:7.2f} batches/s, "
            f"peak RSS {out['peak_rss_gb']:.2f} GB, hit ratio "
            f"{'-' if out['hit_ratio'] is None else format(out['hit_ratio'], '.3f')}, "
            f"page cache at start {out['page_cache']['resident_at_start_bytes'] / 1e6:.1f} MB")
    digests = {r["warmup_digest"] for r in res["runs"]}
    res["same_batches"] = len(digests) == 1
    if not res["same_batches"]:
        raise RuntimeError("readers served different batches (warm-up digests differ): " + json.dumps(
            {f"{r['reader']}@{r['budget']}#{r['round']}": r["warmup_digest"] for r in res["runs"]}))
    res["summary"] = summarise(res["runs"], budgets, chosen)
    for label, row in res["summary"].items():
        log(f"budget {label}: " + ", ".join(f"{k} {v['of_medians']:.2f}x" for k, v in row["ratios"].items()))
    return res


# --- main --------------------------------------------------------------------------------------------------
def _build_module():
    """bench/scale_build.py as a module, or None when it is not there (another engineer's section)."""
    path = BENCH / "scale_build.py"
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location("scale_build", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def parse_budgets(text: str) -> list[int]:
    """'16,8,4' -> [16, 8, 4]: each budget is the feature bytes divided by one of these."""
    try:
        out = [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(f"budgets must be whole divisors like 16,8,4, got {text!r}") from None
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"budgets must be whole divisors >= 1 like 16,8,4, got {text!r}")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    build = _build_module()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sections", nargs="+", choices=("build", "loader"), default=["loader"],
                    help="what to run, in this order (default: loader)")
    ap.add_argument("--store", help="featurized store for the loader section (default: the build section's)")
    ap.add_argument("--scale", type=float, default=10.0, help="synthetic scale of the build section")
    ap.add_argument("--workdir", default="/tmp/scale_bench", help="where the build section writes")
    ap.add_argument("--seed", type=int, default=0, help="seed of every random choice (data, shuffle, sampler)")
    ap.add_argument("--json-out", help="write every section's results here (atomically)")
    g = ap.add_argument_group("loader section")
    g.add_argument("--budgets", type=parse_budgets, default=[16, 8, 4],
                   help="budgets as divisors of the feature bytes (default: 16,8,4 = 1/16, 1/8, 1/4)")
    g.add_argument("--readers", nargs="+", choices=sorted(READERS), default=list(DEFAULT_READERS))
    g.add_argument("--rounds", type=int, default=2, help="alternating rounds (default: 2)")
    g.add_argument("--warmup", type=int, default=5, help="untimed cold-start batches per run (default: 5)")
    g.add_argument("--batches", type=int, default=30, help="timed batches per run (default: 30)")
    g.add_argument("--batch-size", type=int, default=512)
    add_fanouts_argument(g, default=[10, 10], help="neighbours per relation and hop")
    g.add_argument("--lookahead", type=int, default=16, help="batches the look-ahead cache samples ahead")
    g.add_argument("--compute-ms", type=float, default=0.0, help="sleep per batch, standing in for a training step")
    g.add_argument("--threads", type=int, default=2, help="torch threads per run")
    g.add_argument("--split", default="train")
    g.add_argument("--no-drop", action="store_true", help="do not drop the page cache before each run")
    if build is not None and hasattr(build, "add_build_arguments"):
        build.add_build_arguments(ap.add_argument_group("build section (bench/scale_build.py)"))
    args = ap.parse_args(argv)
    for name in ("rounds", "batches", "batch_size", "lookahead", "threads"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.warmup < 1:
        ap.error("--warmup must be >= 1 (its batches are hashed to check that the readers agree)")
    results: dict[str, Any] = {"argv": list(sys.argv if argv is None else argv),
                               "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    store = args.store
    if "build" in args.sections:
        if build is None or not hasattr(build, "build_section"):
            ap.error("--sections build needs bench/scale_build.py with build_section(args) (not in this checkout)")
        results["build"] = build.build_section(args)
        store = store or results["build"].get("store")
    if "loader" in args.sections:
        if not store:
            ap.error("the loader section needs --store (or the build section's store)")
        results["loader"] = loader_section(store, budgets=args.budgets, readers=args.readers, rounds=args.rounds,
                                           warmup=args.warmup, batches=args.batches, batch_size=args.batch_size,
                                           fanouts=args.fanouts, lookahead=args.lookahead,
                                           compute_ms=args.compute_ms, threads=args.threads, seed=args.seed,
                                           split=args.split, drop=not args.no_drop)
    if args.json_out:
        write_json(args.json_out, results)
        print(f"wrote {args.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
