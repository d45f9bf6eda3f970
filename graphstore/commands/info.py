"""`graphstore info STORE`: nodes, edges and bytes on disk."""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from graphstore.cli import add_store_argument, store_path

if TYPE_CHECKING:
    from graphstore.store import GraphStore


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="print nodes per type, edges per relation and bytes on disk per part")
    add_store_argument(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--verify", action="store_true",
                   help="recompute every array's and table file's checksum; exit 1 naming what is damaged")
    p.set_defaults(func=run)


def disk_usage(path: Path) -> int:
    """Bytes of all files under path."""
    if path.is_file():
        return path.stat().st_size
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def store_info(store: GraphStore) -> dict:
    """Counts and sizes of a store, as a dict."""
    parts = {p.name: disk_usage(p) for p in sorted(store.path.iterdir()) if p.name != "zarr.json"}
    return {
        "path": str(store.location), "format_version": store.meta["format_version"], "generation": store.generation,
        "nodes": store.meta["node_types"], "num_nodes": sum(store.meta["node_types"].values()),
        "edges": {r["name"]: r["num_edges"] for r in store.meta["relations"]},
        "num_edges": sum(r["num_edges"] for r in store.meta["relations"]),
        "kinds": {r["name"]: r["kind"] for r in store.meta["relations"]},
        "splits": store.meta["splits"], "bytes": parts, "total_bytes": sum(parts.values()),
        "store_id": store.store_id,
    }


def run(args: argparse.Namespace) -> int:
    from graphstore.store import GraphStore

    store = GraphStore.open(store_path(args))
    info = store_info(store)
    if args.verify:
        problems = store.verify_problems()
        info["corrupt_arrays"] = list(problems)
        info["problems"] = problems
    if args.json:
        print(json.dumps(info, indent=2, ensure_ascii=False))
        return 1 if info.get("corrupt_arrays") else 0
    print(f"store {info['path']} (format v{info['format_version']}, generation {info['generation']}, "
          f"id {info['store_id'] or 'none'})")
    print(f"\nnodes: {info['num_nodes']:,}")
    for t, n in info["nodes"].items():
        print(f"  {t:<14}{n:>16,}")
    print(f"\nedges: {info['num_edges']:,}")
    for r, n in info["edges"].items():
        print(f"  {r:<22}{info['kinds'][r]:<9}{n:>16,}")
    print(f"\nsplits: {info['splits']}")
    print(f"\nbytes on disk: {info['total_bytes']:,}")
    for p, n in info["bytes"].items():
        print(f"  {p:<18}{n:>16,}")
    if args.verify:
        bad = info["problems"]
        arrays = len(store.meta.get("checksums", {})) + sum(1 for f in store.meta.get("features", {}).values() if f.get("xxh64"))
        tables = store.meta.get("table_checksums")
        checked = f"{arrays} arrays" + (f" and {len(tables)} table files" if tables is not None else
                                         " (tables: no checksums, the store predates them)")
        if not bad:
            print(f"\nchecksums: all {checked} intact")
            return 0
        print(f"\nchecksums: MISMATCH in {', '.join(bad)}")
        for name, problem in bad.items():
            print(f"  {name}: {problem}")
        print("the store is damaged: rebuild it (or restore it from a copy)")
        return 1
    return 0
