"""`netgpt predict --run RUN_DIR STORE --ids ID ...`: influence levels from a finished stage 3."""
from __future__ import annotations

import argparse
import json

from graphstore.cli import add_store_argument, store_path
from netgpt.run_files import existing_run_dir


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="print the predicted influence level of given samples (stage-3 model)")
    p.add_argument("--run", required=True, help="run directory with a finished finetune stage")
    add_store_argument(p, help="the store holding the samples and the run's embeddings")
    p.add_argument("--ids", required=True, nargs="+", metavar="ID", help="sample ids")
    p.add_argument("--json", action="store_true", help="print one JSON object per line")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from netgpt.llm.stages import load_finetuned, predict_nodes
    from netgpt.metrics import round_levels

    s = load_finetuned(existing_run_dir(args.run), store_path(args))
    nodes = s.store.video_index(args.ids)
    y = predict_nodes(s, nodes)
    levels = round_levels(y)
    for sid, value, level in zip(args.ids, y, levels):
        if args.json:
            print(json.dumps({"sample_id": sid, "level": int(level), "score": round(float(value), 4)}))
        else:
            print(f"{sid}\t{int(level)}\t{float(value):.4f}")
    return 0
