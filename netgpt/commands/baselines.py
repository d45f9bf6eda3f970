"""`netgpt baselines`: GCN/HAN/HGT/RGCN, LightGBM and train-mean on one test split, one table."""
from __future__ import annotations

import argparse
import re

from graphstore.cli import random_seed


def register(sub: argparse._SubParsersAction) -> None:
    from netgpt.baselines import ALL_MODELS, DEFAULT_MODELS
    from netgpt.commands.train import add_pretrain_arguments

    p = sub.add_parser("baselines", help="train and compare the graph and tabular baselines (Markdown table)")
    p.add_argument("--out", required=True, help="directory for one run per model and baselines.{json,md}")
    p.add_argument("--models", nargs="+", choices=ALL_MODELS, default=list(DEFAULT_MODELS), metavar="MODEL",
                   help=f"models to train and compare, from {', '.join(ALL_MODELS)} (default: %(default)s)")
    p.add_argument("--seeds", nargs="+", type=random_seed, default=None,
                   help="train every model once per seed and report mean ± std (default: --seed alone)")
    add_pretrain_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from graphstore.cli import store_path
    from graphstore.errors import UserError
    from netgpt.baselines import markdown_table, run_baselines
    from netgpt.commands.train import config_from_args
    from netgpt.run_files import check_run_output

    check_run_output(args.out, ours=lambda name: name in ("baselines.json", "baselines.md")
                     or re.fullmatch(r"\w+_seed\d+", name) is not None)  # what run_baselines writes
    if (Path(args.out) / "baselines.json").is_file():
        raise UserError(f"{args.out} already holds baselines; choose another --out")
    cfg = config_from_args(args)
    results = run_baselines(args.out, store_path(args), cfg, models=tuple(args.models),
                            seeds=tuple(args.seeds) if args.seeds else (cfg.seed,), progress=not args.no_progress)
    print(markdown_table(results), end="")
    return 0
