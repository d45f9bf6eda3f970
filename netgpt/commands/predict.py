"""`netgpt predict --run RUN STORE (--ids ID ... | --input FILE)`: influence levels from a run's final stage.

The final stage is stage 3 (finetune) when the run finished it, else stage 1 (pretrain). `--input`
scores samples that are not in the store: they are appended to a temporary copy-on-write overlay of
the store (graphstore.append.overlay), or with `--append` to the store itself (a new generation,
committed only once they are scored), their neighbourhoods are sampled there and the final stage
scores them. Output: one line per sample, or one JSON line {id, level, score} per sample (`--json`, `--out`).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

from graphstore.cli import add_store_argument, store_path
from netgpt.identity import add_allow_other_store_argument, check_run_store
from netgpt.run_files import existing_run_dir


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="predicted influence levels of samples in the store (--ids) or of new samples "
                                       "(--input), from the run's final stage")
    p.add_argument("--run", required=True, help="run directory: its finished finetune stage, else its pretrain stage")
    add_store_argument(p, help="the store the run was trained on")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--ids", nargs="+", metavar="ID", help="sample ids in the store")
    which.add_argument("--input", metavar="FILE", help="XS-Video JSON or JSON Lines file of samples not in the store")
    p.add_argument("--append", action="store_true",
                   help="with --input: append the samples to the store (kept) instead of a temporary overlay")
    p.add_argument("--out", metavar="FILE", help="write one JSON line {id, level, score} per sample to FILE")
    p.add_argument("--json", action="store_true", help="print one JSON object per line")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_allow_other_store_argument(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from graphstore.errors import UserError

    from graphstore.outputs import check_output_file

    run_dir, store = existing_run_dir(args.run), store_path(args)
    if args.append and not args.input:
        raise UserError("--append needs --input")
    check_run_store(run_dir, store, args.allow_other_store)
    if args.out:  # before any work: with --append, scores that cannot be written must not follow committed samples
        check_output_file(args.out)
        if args.input and Path(args.out).resolve() == Path(args.input).resolve():
            raise UserError(f"--out {args.out!r} is the --input file; choose another name")
    if args.input:
        ids, scores = predict_input(run_dir, store, args.input, append=args.append, progress=not args.no_progress,
                                    before_commit=(lambda i, s: report(i, s, args.out, args.json)) if args.out else None)
        if not args.out:
            report(ids, scores, args.out, args.json)
    else:
        ids, scores = list(args.ids), predict_ids(run_dir, store, args.ids)
        report(ids, scores, args.out, args.json)
    return 0


def final_stage(run_dir: Path) -> str:
    """'finetune' when the run finished stage 3, else 'pretrain' (UserError when it has neither)."""
    from graphstore.errors import UserError
    from netgpt.llm.stages import FINAL

    if (run_dir / "finetune" / FINAL).is_file():
        return "finetune"
    if (run_dir / "pretrain" / "best.pt").is_file():
        return "pretrain"
    raise UserError(f"{run_dir}: no finished finetune stage and no pretrain/best.pt; train the run first")


def predict_ids(run_dir: Path, store_path: str | Path, ids: list[str]) -> np.ndarray:
    """Scores (continuous levels) of samples already in the store, in the order given."""
    from graphstore.store import GraphStore

    if final_stage(run_dir) == "finetune":
        from netgpt.llm.stages import load_finetuned, predict_nodes

        s = load_finetuned(run_dir, store_path)
        return predict_nodes(s, s.store.video_index(ids))
    store = GraphStore.open(store_path)
    return stage1_scores(run_dir, store, store.video_index(ids))


def predict_input(run_dir: Path, store_path: str | Path, input_path: str | Path, *, append: bool = False,
                  progress: bool = True, before_commit=None) -> tuple[list[str], np.ndarray]:
    """(sample ids in input order, scores) of the samples of `input_path`, scored in the store grown by them.

    `before_commit(ids, scores)` runs once they are scored and, with `append`, before the samples are committed
    (where it fails, the store is left as it was)."""
    from graphstore.append import append_store, overlay

    final_stage(run_dir)  # fail before any work when the run has nothing to score with
    scored: dict = {}

    def score(view, result) -> None:
        scored["ids"], scored["scores"] = result.new_ids, score_new(run_dir, store_path, view, result.new_nodes)
        if before_commit is not None:
            before_commit(scored["ids"], scored["scores"])

    if append:  # scored on the staged generation, which is committed only once that succeeded
        append_store(store_path, input_path, progress=progress, prepare=score)
    else:
        with overlay(store_path, input_path, progress=progress) as (view, result):
            score(view, result)
    return scored["ids"], scored["scores"]


def score_new(run_dir: Path, base_path: str | Path, view, nodes: np.ndarray) -> np.ndarray:
    """Scores of `nodes` of `view`, a store grown from the one at `base_path` that the run was trained on."""
    if final_stage(run_dir) == "pretrain":
        return stage1_scores(run_dir, view, nodes)
    return stage3_scores(run_dir, base_path, view, nodes)


def stage1_scores(run_dir: Path, store, nodes: np.ndarray) -> np.ndarray:
    """The stage-1 model's predictions of `nodes`, in their order (every batch, whatever the run's eval cap)."""
    from netgpt.distributed import DistContext
    from netgpt.embed import load_best
    from netgpt.train_gnn import predict_nodes

    model, cfg, _ = load_best(run_dir, store)
    ctx = DistContext(device=_device())
    got, _, y = predict_nodes(model.to(ctx.device), store, nodes, dataclasses.replace(cfg, max_eval_batches=None), ctx,
                              progress=False)
    return _in_order(got, y, nodes)


def stage3_scores(run_dir: Path, base_path: str | Path, view, nodes: np.ndarray) -> np.ndarray:
    """Stage-3 predictions of new nodes: the model as trained (opened on the base store, whose run
    embeddings it checks), prompts from the grown store and stage-1 embeddings of the new nodes made there."""
    from netgpt.embed import run_embeddings
    from netgpt.llm.stages import for_grown_store, load_finetuned, predict_nodes

    s = load_finetuned(run_dir, base_path)
    new_rows = run_embeddings(run_dir, view, nodes=nodes, progress=False)
    return predict_nodes(for_grown_store(s, view, nodes, new_rows), nodes)


def _in_order(got: np.ndarray, values: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    """`values` (of nodes `got`) reordered to follow `nodes`."""
    where = {int(v): i for i, v in enumerate(got)}
    return np.asarray([values[where[int(v)]] for v in nodes], dtype=np.float64)


def _device():
    import torch

    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def report(ids: list[str], scores: np.ndarray, out: str | None, as_json: bool) -> None:
    """Write `--out` (JSON Lines, atomically) or print one line per sample."""
    from graphstore.atomic import write_text
    from netgpt.metrics import round_levels

    levels = round_levels(scores)
    records = [{"id": sid, "level": int(level), "score": round(float(value), 6)}
               for sid, level, value in zip(ids, levels, scores)]
    if out:
        write_text(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        print(f"wrote {len(records):,} predictions to {out}")
        return
    for r in records:
        print(json.dumps(r, ensure_ascii=False) if as_json else f"{r['id']}\t{r['level']}\t{r['score']:.4f}")
