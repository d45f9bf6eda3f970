"""Gather throughput: FeatureArray (cold/warm, per codec and cache policy) vs np.memmap and in-memory NumPy.

Usage: python bench/gather.py --store STORE [--type comment] [--batches 50] [--json-out FILE]
Writes copies of one feature matrix with each codec into --workdir, then times gathers of
uniform random ids and of sampler-driven ids (the node ids a NeighborSampler batch touches).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import zarr
from zarr.codecs import BloscCodec, BloscShuffle

from graphstore.cli import add_fanouts_argument
from graphstore.features import array as array_module
from graphstore.features.array import FeatureArray
from graphstore.store import GraphStore


def drop_page_cache(path: Path) -> None:
    """Best effort: ask the kernel to forget the files' pages (fsync, then posix_fadvise DONTNEED)."""
    path = Path(path)
    files = [path] if path.is_file() else [Path(d) / f for d, _, fs in os.walk(path) for f in fs]
    if not files:
        raise FileNotFoundError(path)
    for f in files:
        fd = os.open(f, os.O_RDONLY)
        try:
            os.fsync(fd)  # dirty pages (a file just written) would survive DONTNEED
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def write_copy(src: np.ndarray, out: Path, codec: str, chunk_rows: int) -> float:
    """One copy of the matrix with a codec; returns bytes on disk."""
    shutil.rmtree(out, ignore_errors=True)
    comp = {"raw": None, "lz4": [BloscCodec(cname="lz4", clevel=5, shuffle=BloscShuffle.shuffle)],
            "zstd": [BloscCodec(cname="zstd", clevel=3, shuffle=BloscShuffle.shuffle)]}[codec]
    arr = zarr.create_array(str(out), shape=src.shape, dtype=src.dtype, chunks=(chunk_rows, src.shape[1]),
                            compressors=comp, fill_value=0, config={"write_empty_chunks": True})
    arr[...] = src
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(out) for f in fs)


def timed(fn, batches) -> float:
    t = time.perf_counter()
    rows = 0
    for ids in batches:
        rows += len(fn(ids))
    return rows / (time.perf_counter() - t)


def cold_alternating(full: np.ndarray, work: Path, chunk_rows: int, mm_path: Path, uniform, sampled,
                     rounds: int) -> dict:
    """Cold gathers, np.memmap and ours taking turns, the page cache dropped before every run."""
    path = work / "x_cold"
    write_copy(full, path, "raw", chunk_rows)
    rates: dict = {}
    for trace_name, trace in (("uniform", uniform), ("sampler", sampled)):
        for r in range(rounds):
            for reader in ("np.memmap", "FeatureArray"):
                drop_page_cache(mm_path if reader == "np.memmap" else path)
                src = np.load(mm_path, mmap_mode="r") if reader == "np.memmap" else FeatureArray(path, map_raw=True)
                fn = src.__getitem__ if reader == "np.memmap" else src.gather
                rates.setdefault(trace_name, {}).setdefault(reader, []).append(timed(fn, trace))
                del src, fn  # unmapped, so that the next drop really empties the cache
        ours, theirs = rates[trace_name]["FeatureArray"], rates[trace_name]["np.memmap"]
        rates[trace_name]["ratio_of_medians"] = float(np.median(ours) / np.median(theirs))
        print(f"cold {trace_name}: ours {np.median(ours):,.0f} rows/s, np.memmap {np.median(theirs):,.0f} rows/s "
              f"({rates[trace_name]['ratio_of_medians']:.2f}x; rounds {[f'{a / b:.2f}' for a, b in zip(ours, theirs)]})")
    return rates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--store", required=True)
    ap.add_argument("--type", default="comment")
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--batch-rows", type=int, default=4096, help="ids per uniform gather")
    add_fanouts_argument(ap, default=[10, 10], help="neighbours per relation and hop")
    ap.add_argument("--cache-mb", type=int, default=64)
    ap.add_argument("--workdir", default="/tmp/gather_bench")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--codecs", default="raw-mapped,raw,lz4,zstd",
                    help="copies to time: raw-mapped (large memory-mapped chunks), raw/lz4/zstd (small cached chunks)")
    ap.add_argument("--cold-rounds", type=int, default=5, help="alternating cold rounds, np.memmap vs ours (0: skip)")
    ap.add_argument("--json-out", default=None)
    args = ap.parse_args()

    store = GraphStore.open(args.store)
    src_arr = store.features(args.type)
    n, dim = src_arr.shape
    full = src_arr.gather(np.arange(n))
    rng = np.random.default_rng(args.seed)
    uniform = [rng.integers(0, n, args.batch_rows) for _ in range(args.batches)]
    from graphstore.sampler import NeighborSampler

    sampler = NeighborSampler(store, args.fanouts, seed=args.seed)
    train = store.split("train")
    sampled = []
    for b in range(args.batches):
        out = sampler.sample(rng.choice(train, 512, replace=False), batch=b)
        if args.type in out.node:
            sampled.append(out.node[args.type])
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    row_bytes = full.dtype.itemsize * dim
    results = {"store": str(store.path), "type": args.type, "shape": [n, dim], "dtype": str(full.dtype),
               "chunk_rows": src_arr.chunk_rows, "cache_mb": args.cache_mb, "runs": []}
    mm_path = work / "memmap.npy"
    np.save(mm_path, full)
    for trace_name, trace in (("uniform", uniform), ("sampler", sampled)):
        if not trace:
            continue
        rows_per_batch = float(np.mean([len(t) for t in trace]))
        results["runs"].append({"trace": trace_name, "reader": "numpy in-memory", "rows_per_s": timed(lambda i: full[i], trace),
                                "rows_per_batch": rows_per_batch})
        full_t = torch.from_numpy(full)  # torch's index_select is threaded: the fairer ceiling for a threaded kernel
        results["runs"].append({"trace": trace_name, "reader": "torch index_select in-memory",
                                "rows_per_s": timed(lambda i: full_t.index_select(0, torch.from_numpy(i)), trace)})
        drop_page_cache(mm_path)  # a fresh map: pages still mapped by an older one would not be dropped
        mm = np.load(mm_path, mmap_mode="r")
        results["runs"].append({"trace": trace_name, "reader": "np.memmap cold", "rows_per_s": timed(lambda i: mm[i], trace)})
        results["runs"].append({"trace": trace_name, "reader": "np.memmap warm", "rows_per_s": timed(lambda i: mm[i], trace)})
        results["runs"].append({"trace": trace_name, "reader": "np.memmap warm + astype(float32)",
                                "rows_per_s": timed(lambda i: mm[i].astype(np.float32), trace)})
        mm = None  # unmap before the next cold run
    from graphstore.featurize.writer import RAW_CHUNK_BYTES, chunk_rows_for

    small = chunk_rows_for(dim, str(full.dtype))
    big = min(n, chunk_rows_for(dim, str(full.dtype), RAW_CHUNK_BYTES, 26))
    kernel_built = array_module._gather_cpp is not None
    results["kernel_built"] = kernel_built
    if args.cold_rounds:
        results["cold_alternating"] = cold_alternating(full, work, big, mm_path, uniform, sampled, args.cold_rounds)

    results["chunk_rows"] = {"small": small, "raw_mapped": big}
    for codec in args.codecs.split(","):
        path = work / f"x_{codec}"
        size = write_copy(full, path, codec.replace("-mapped", ""), big if codec == "raw-mapped" else small)
        results.setdefault("bytes", {})[codec] = size
        if codec == "raw-mapped":
            for trace_name, trace in (("uniform", uniform), ("sampler", sampled)):
                if not trace:
                    continue
                for label, kernel, how in (("C++ kernel", True, "mmap"), ("C++ kernel", True, "pread"),
                                           ("NumPy", False, "mmap")):
                    if kernel and not kernel_built:
                        continue
                    arr = FeatureArray(path, map_raw=True, kernel=kernel, raw_read=how)
                    drop_page_cache(path)
                    cold = timed(arr.gather, trace)
                    results["runs"].append({"trace": trace_name, "reader": f"FeatureArray raw {how}, {label}",
                                            "cold_rows_per_s": cold, "warm_rows_per_s": timed(arr.gather, trace)})
                    as_f32 = lambda i: arr.gather(i, dtype=np.float32)  # noqa: E731 (what the PyG loader asks for)
                    results["runs"].append({"trace": trace_name, "reader": f"FeatureArray raw {how}, {label}, float32 out",
                                            "warm_rows_per_s": timed(as_f32, trace)})
                    del arr
            continue
        for trace_name, trace in (("uniform", uniform), ("sampler", sampled)):
            if not trace:
                continue
            for policy in (("sieve", "lru", "s3fifo") if codec == "raw" else ("sieve",)):
                arr = FeatureArray(path, cache_bytes=args.cache_mb << 20, policy=policy, map_raw=False)
                assert np.array_equal(arr.gather(trace[0]), full[trace[0]])
                arr.clear_cache()
                drop_page_cache(path)
                cold = timed(arr.gather, trace)
                hits0 = dict(arr.stats)
                warm = timed(arr.gather, trace)
                hr = (arr.stats["hits"] - hits0["hits"]) / max(1, arr.stats["hits"] + arr.stats["misses"] - hits0["hits"] - hits0["misses"])
                results["runs"].append({"trace": trace_name, "reader": f"FeatureArray {codec} {policy}",
                                        "cold_rows_per_s": cold, "warm_rows_per_s": warm, "warm_chunk_hit_ratio": hr})
            nocache = FeatureArray(path, cache_bytes=0, map_raw=False)
            results["runs"].append({"trace": trace_name, "reader": f"FeatureArray {codec} no cache",
                                    "rows_per_s": timed(nocache.gather, trace)})
    for r in results["runs"]:
        line = f"{r['trace']:<8} {r['reader']:<30}"
        for k in ("rows_per_s", "cold_rows_per_s", "warm_rows_per_s"):
            if k in r:
                line += f" {k.replace('_rows_per_s', '').replace('rows_per_s', 'rate')}={r[k]:>12,.0f} rows/s ({r[k] * row_bytes / 1e6:,.0f} MB/s)"
        if "warm_chunk_hit_ratio" in r:
            line += f" hit={r['warm_chunk_hit_ratio']:.2f}"
        print(line)
    print("bytes on disk:", results.get("bytes"))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
