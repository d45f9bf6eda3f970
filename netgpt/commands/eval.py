"""`netgpt eval`: metrics, breakdowns, confusion matrix and plots of a run's predictions."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from graphstore.cli import add_store_argument, store_path
from graphstore.errors import UserError
from netgpt.identity import add_allow_other_store_argument, check_run_store
from netgpt.run_files import existing_run_dir


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a run's predictions (JSON, Markdown, PNG into the run directory)")
    p.add_argument("--run", required=True, help="run directory")
    p.add_argument("--split", choices=("val", "test"), default="test", help="split whose predictions to evaluate")
    p.add_argument("--stage", choices=("pretrain", "finetune"), help="default: the latest stage with predictions")
    add_store_argument(p, help="graphstore directory (default: the one in RUN/config.json)", required=False)
    add_allow_other_store_argument(p)
    p.set_defaults(func=run)


def run_store(run_dir: Path) -> str:
    """The store a run was trained on, from RUN/config.json; UserError naming what is missing."""
    cfg = run_dir / "config.json"
    if not cfg.is_file():
        raise UserError(f"{run_dir}: no config.json to name the store; pass STORE or --store STORE")
    store = json.loads(cfg.read_text()).get("store")
    if not store:
        raise UserError(f"{cfg}: no 'store' entry; pass STORE or --store STORE")
    return store


def run(args: argparse.Namespace) -> int:
    from netgpt.evaluate import write_eval_report

    run_dir = existing_run_dir(args.run)
    store = store_path(args) or run_store(run_dir)
    check_run_store(run_dir, store, args.allow_other_store)
    report = write_eval_report(run_dir, args.stage, args.split, store)
    o = report["overall"]
    print(f"{report['stage']} / {args.split}: n={o['n']} ACC {o['acc']:.4f}  MSE {o['mse']:.4f}  MAE {o['mae']:.4f}")
    print(f"written: {run_dir / report['stage'] / ('eval_' + args.split)}.{{json,md}} + {', '.join(report['plots'])}")
    return 0
