"""`netgpt embed`: write a run's stage-1 video embeddings into the run directory (the store is read-only)."""
from __future__ import annotations

import argparse
import json

from graphstore.cli import add_store_argument, positive_int, store_path
from netgpt.identity import add_allow_other_store_argument, check_run_store
from netgpt.run_files import existing_run_dir


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("embed", help="write RUN/embeddings/ (float16, d_g) of a pretrained run; the store is only read")
    p.add_argument("--run", required=True, help="run directory with pretrain/best.pt")
    add_store_argument(p, help="graphstore directory")
    p.add_argument("--fanout", type=positive_int, help="per-relation neighbours per hop (default: the config's embed_fanout)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_allow_other_store_argument(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from netgpt.embed import run_embed

    check_run_store(args.run, store_path(args), args.allow_other_store)
    info = run_embed(existing_run_dir(args.run), store_path(args), fanout=args.fanout, progress=not args.no_progress)
    print(json.dumps(info, indent=2))
    return 0
