"""`netgpt eval`: metrics, breakdowns, confusion matrix and plots of a run's predictions."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a run's predictions (JSON, Markdown, PNG into the run directory)")
    p.add_argument("--run", required=True, help="run directory")
    p.add_argument("--split", choices=("val", "test"), default="test")
    p.add_argument("--stage", choices=("pretrain", "finetune"), help="default: the latest stage with predictions")
    p.add_argument("--store", help="graphstore directory (default: the one in RUN/config.json)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from graphstore.errors import UserError
    from netgpt.evaluate import write_eval_report

    store = args.store
    if store is None:
        cfg = Path(args.run) / "config.json"
        if not cfg.is_file():
            raise UserError(f"{args.run}: no config.json; pass --store")
        store = json.loads(cfg.read_text()).get("store")
        if not store:
            raise UserError(f"{cfg}: no 'store' entry; pass --store")
    report = write_eval_report(args.run, args.stage, args.split, store)
    o = report["overall"]
    print(f"{report['stage']} / {args.split}: n={o['n']} ACC {o['acc']:.4f}  MSE {o['mse']:.4f}  MAE {o['mae']:.4f}")
    print(f"written: {Path(args.run) / report['stage'] / ('eval_' + args.split)}.{{json,md}} + {', '.join(report['plots'])}")
    return 0
