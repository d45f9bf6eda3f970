"""`graphstore build --input FILE --out STORE`."""
from __future__ import annotations

import argparse
import time

from graphstore.cli import memory_size, non_negative_int, positive_int
from graphstore.commands import VIDEO_FEATURES_HELP, print_video_import
from graphstore.schema import DEFAULT_CUTOFF, DEFAULT_MEMORY_LIMIT, DEFAULT_VAL_DAYS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("build", help="build a store from an XS-Video JSON or JSON Lines file")
    p.add_argument("--input", required=True, help="XS-Video JSON (one object) or JSON Lines file")
    p.add_argument("--out", required=True, help="store directory to create")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store")
    p.add_argument("--cutoff", default=DEFAULT_CUTOFF, help="last post date of the train period")
    p.add_argument("--val-days", type=non_negative_int, default=DEFAULT_VAL_DAYS,
                   help="days before the cutoff held out for validation")
    p.add_argument("--no-features", action="store_true", help="skip feature encoding (run `graphstore featurize` later)")
    p.add_argument("--text-encoder", default="hash", help="'hash', 'minilm', or a local Hugging Face encoder directory")
    p.add_argument("--text-dim", type=positive_int, default=256, help="dimension of the hash text encoder")
    p.add_argument("--video-features", default=None, help=VIDEO_FEATURES_HELP)
    p.add_argument("--dtype", default="float16", choices=("float16", "float32"), help="feature dtype")
    p.add_argument("--time-encoding", choices=("multiscale", "paper"), default="multiscale",
                   help="time features: hours to months (default), or the paper's (time of day only)")
    p.add_argument("--memory-limit", type=memory_size, default=DEFAULT_MEMORY_LIMIT, help="DuckDB memory limit for the staging work (it spills beyond it)")
    p.add_argument("--threads", type=positive_int, default=None, help="thread count of the DuckDB staging work (default: all cores)")
    p.add_argument("--ingest-workers", type=positive_int, default=None,
                   help="processes that parse and validate the input (default: the CPUs available, at most 4)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from graphstore.build import build_store
    from graphstore.store import GraphStore

    started = time.time()
    features = {"text_encoder": args.text_encoder, "text_dim": args.text_dim,
                "video_features": args.video_features, "dtype": args.dtype,
                "time_encoding": args.time_encoding}
    path = build_store(args.input, args.out, overwrite=args.overwrite, cutoff=args.cutoff, val_days=args.val_days,
                       featurize=not args.no_features, feature_options=features, memory_limit=args.memory_limit,
                       threads=args.threads, ingest_workers=args.ingest_workers, progress=not args.no_progress)
    store = GraphStore.open(path)
    print(f"built {path} in {time.time() - started:.1f} s: {store.num_nodes('video'):,} videos, "
          f"{sum(r['num_edges'] for r in store.meta['relations']):,} edges, splits {store.meta['splits']}")
    print_video_import(store.meta.get("features", {}))
    return 0
