"""`netgpt baselines`: GCN/HAN/HGT/RGCN, LightGBM and train-mean on one test split, one table."""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from netgpt.baselines import ALL_MODELS
    from netgpt.commands.train import add_pretrain_arguments

    p = sub.add_parser("baselines", help="train and compare the graph and tabular baselines (Markdown table)")
    p.add_argument("--out", required=True, help="directory for one run per model and baselines.{json,md}")
    p.add_argument("--models", nargs="+", choices=ALL_MODELS, default=list(ALL_MODELS), metavar="MODEL",
                   help=f"models to train and compare, from {', '.join(ALL_MODELS)} (default: all)")
    add_pretrain_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from graphstore.cli import store_path
    from graphstore.errors import UserError
    from netgpt.baselines import markdown_table, run_baselines
    from netgpt.commands.train import config_from_args

    if (Path(args.out) / "baselines.json").is_file():
        raise UserError(f"{args.out} already holds baselines; choose another --out")
    results = run_baselines(args.out, store_path(args), config_from_args(args), models=tuple(args.models),
                            progress=not args.no_progress)
    print(markdown_table(results), end="")
    return 0
