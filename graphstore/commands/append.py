"""`graphstore append --store STORE --input FILE`: add samples to a store as a new generation."""
from __future__ import annotations

import argparse

from graphstore.cli import add_store_argument, memory_size, positive_int, store_path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("append", help="add the samples of an XS-Video JSON or JSON Lines file to a store "
                                      "(any dates; equal to a full rebuild; atomic)")
    add_store_argument(p)
    p.add_argument("--input", required=True, help="XS-Video JSON (one object) or JSON Lines file of new samples")
    p.add_argument("--memory-limit", type=memory_size, default="3GB", help="DuckDB memory limit for the staging work")
    p.add_argument("--threads", type=positive_int, default=None, help="thread count of the DuckDB staging work (default: all cores)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from graphstore.append import append_store

    r = append_store(store_path(args), args.input, memory_limit=args.memory_limit, threads=args.threads,
                     progress=not args.no_progress)
    print(f"appended {r.samples:,} samples, {r.comments:,} comments and {r.topics:,} new topics to {r.store} "
          f"in {r.seconds:.1f} s: generation {r.generation}, {r.videos:,} videos, "
          f"{r.touched:,} existing videos with new in-neighbours")
    return 0
