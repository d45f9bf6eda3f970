"""`graphstore featurize STORE`: encode node features of an existing store (resumable)."""
from __future__ import annotations

import argparse
import time

from graphstore.cli import add_store_argument, positive_int, store_path
from graphstore.commands import VIDEO_FEATURES_HELP, print_video_import


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("featurize", help="encode node features into an existing store (resumes an interrupted run)")
    add_store_argument(p)
    p.add_argument("--text-encoder", default="hash", help="'hash', 'minilm', or a local Hugging Face encoder directory")
    p.add_argument("--text-dim", type=positive_int, default=256, help="dimension of the hash text encoder")
    p.add_argument("--video-features", default=None, help=VIDEO_FEATURES_HELP)
    p.add_argument("--video-dim", type=positive_int, default=None, help="video feature dimension (default: from the vectors)")
    p.add_argument("--dtype", default="float16", choices=("float16", "float32"), help="feature dtype")
    p.add_argument("--codec", default="auto", choices=("auto", "none", "lz4", "zstd"), help="chunk compression")
    p.add_argument("--time-encoding", choices=("multiscale", "paper"), default=None,
                   help="time features: 'multiscale' (hours to months; the default for new stores) or 'paper' "
                        "(the reference 512-d encoding, time of day only); naming another than the store's "
                        "re-encodes the time arrays (default: keep the store's)")
    p.add_argument("--types", default=None, help="comma-separated node types (default: all)")
    p.add_argument("--overwrite", action="store_true", help="re-encode features that exist with other settings")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from graphstore.store import GraphStore

    started = time.time()
    meta = _featurize(store_path(args), args)  # takes the store's writer lock, commits a new generation
    store = GraphStore.open(store_path(args))
    print(f"featurized {store.location} (generation {store.generation}) in {time.time() - started:.1f} s: "
          + ", ".join(f"{t} {m['dim']}-d {m['codec']}" for t, m in meta.items()))
    print_video_import(meta)
    return 0


def _featurize(path, args: argparse.Namespace) -> dict:
    from graphstore.featurize import featurize_store

    return featurize_store(path, text_encoder=args.text_encoder, text_dim=args.text_dim,
                           video_features=args.video_features, dtype=args.dtype, progress=not args.no_progress,
                           video_dim=args.video_dim, codec=args.codec, overwrite=args.overwrite,
                           node_types=args.types.split(",") if args.types else None,
                           time_encoding=args.time_encoding)
