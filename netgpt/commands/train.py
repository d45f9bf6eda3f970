"""`netgpt train`: stage 1 (graph pretraining) here; stages 2/3 dispatched to netgpt.llm.stages."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from graphstore.cli import add_fanouts_argument, add_store_argument, non_negative_int, positive_int, random_seed, store_path
from graphstore.errors import UserError
from netgpt.identity import add_allow_other_store_argument, check_run_store

STAGES = ("pretrain", "align", "finetune", "all")


def add_pretrain_arguments(p: argparse.ArgumentParser) -> None:
    """Options of stage-1 pretraining (shared with the baselines command)."""
    from netgpt.config import PRESETS, RELATION_GROUPS

    add_store_argument(p, help="graphstore directory (featurized)")
    p.add_argument("--preset", choices=sorted(PRESETS), default="default",
                   help="stage-1 model and hyper-parameters: default (HeteroSAGE, CPU-sized), paper (the reference RGCN), "
                        "cpu (the reference RGCN at CPU width) (default: %(default)s)")
    p.add_argument("--epochs", type=positive_int, help="override the preset's epoch count")
    p.add_argument("--max-steps", type=positive_int, help="stage 1: cap optimiser steps per epoch (smoke runs)")
    p.add_argument("--max-eval-batches", type=positive_int, help="cap evaluation batches per split (smoke runs)")
    p.add_argument("--batch-size", type=positive_int, help="override the preset's batch size")
    p.add_argument("--d-g", type=positive_int, help="override the hidden width d_g")
    add_fanouts_argument(p, default=None, help="override the preset's per-relation fanout of each hop, "
                                               "e.g. 10,10 or 10 10 (default: the preset's)")
    p.add_argument("--num-workers", type=non_negative_int, help="loader worker processes")
    p.add_argument("--feature-cache-mb", type=positive_int,
                   help="feature memory per process (default 1024): chunk cache plus memory-mapped raw arrays "
                        "that fit; larger arrays are read with pread (raise it to map everything)")
    p.add_argument("--feature-cache", default=None, metavar="READER",
                   help="how features are read within --feature-cache-mb: none (default: raw arrays mapped or "
                        "pread), sieve (chunk cache), lookahead (Belady over the next 16 batches, prefetched; same "
                        "batches), lookahead-lru (docs/FORMAT.md)")
    p.add_argument("--seed", type=random_seed, default=None,
                   help="seed of every random choice (default 0; a resumed run keeps its own)")
    p.add_argument("--no-video-features", action="store_true", help="ablation: zero the video features")
    p.add_argument("--label-inputs", action="store_true",
                   help="video nodes also read the known levels of other train videos, and seeds their author's and "
                        "topic's level statistics (the label trick; never the seed's own video)")
    p.add_argument("--relations-exclude", nargs="+", metavar="GROUP", choices=sorted(RELATION_GROUPS),
                   help="ablation: drop relation groups")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def config_from_args(args: argparse.Namespace, **extra):
    """The PretrainConfig of parsed pretrain arguments."""
    from netgpt.config import exclusion_overrides, preset

    over = dict(epochs=args.epochs, max_steps=args.max_steps, max_eval_batches=args.max_eval_batches,
                batch_size=args.batch_size, d_g=args.d_g, fanouts=args.fanouts, num_workers=args.num_workers,
                feature_cache_mb=args.feature_cache_mb, feature_cache=args.feature_cache, seed=args.seed,
                no_video_features=args.no_video_features or None, label_inputs=args.label_inputs or None,
                **exclusion_overrides(args.relations_exclude), **extra)
    return preset(args.preset, **over)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train a NetGPT stage (pretrain: RGCN; align/finetune/all: LLM stages)",
        epilog="Several processes (DDP; gloo on CPU, NCCL on GPU): "
               "torchrun --nproc-per-node N -m netgpt.cli train --stage pretrain ... ; each rank trains on a disjoint "
               "shard of the train seeds. Early stopping and model selection use the val split, never test.")
    p.add_argument("--stage", choices=STAGES, default=None,
                   help="what to train (default: all with --llm, else pretrain)")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--resume", action="store_true", help="continue from the run directory's last checkpoint")
    p.add_argument("--llm", help="local Hugging Face LLM directory (stages align/finetune/all)")
    p.add_argument("--llm-config", help="LLM-stage settings: a preset ('paper', default; 'tiny' for CPU smoke runs) "
                                        "or a JSON file of netgpt.llm.config.LLMConfig fields")
    p.add_argument("--llm-max-steps", type=positive_int,
                   help="stages 2-3: cap optimiser steps per stage (default: one epoch of the train split)")
    add_allow_other_store_argument(p)
    p.add_argument("--skip-align", action="store_true", help="ablation: skip stage 2 (fine-tune without alignment)")
    add_pretrain_arguments(p)
    p.set_defaults(func=run)


def _pretrain(args: argparse.Namespace) -> dict:
    from netgpt.train_gnn import run_pretrain

    result = run_pretrain(args.out, store_path(args), config_from_args(args), resume=args.resume,
                          progress=not args.no_progress)
    print(json.dumps(result, indent=2))
    return result


def llm_config(args: argparse.Namespace):
    """The LLM-stage config of the arguments, or None on a resume that names none (the stored one is kept)."""
    from netgpt.llm.config import as_config

    if args.resume and args.llm_config is None and not args.skip_align:
        return None
    return as_config(args.llm_config, skip_align=True if args.skip_align else None)


def check_llm_dir(path: str) -> None:
    """UserError unless PATH is a local Hugging Face model directory (checked before any training)."""
    p = Path(path)
    if not (p / "config.json").is_file():
        raise UserError(f"--llm {p}: not a Hugging Face model directory (no config.json); build a tiny one with "
                        "`python3 tools/make_tiny_llm.py --store STORE --out DIR`")
    if not any((p / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")):
        raise UserError(f"--llm {p}: no tokenizer files (tokenizer.json / tokenizer_config.json)")


def run(args: argparse.Namespace) -> int:
    """Stage pretrain here; align/finetune via netgpt.llm.stages; all = pretrain, embed, align, finetune."""
    from netgpt.run_files import check_run_output

    check_run_output(args.out)  # never into a store, a file or somebody else's directory
    if args.resume and not Path(args.out).is_dir():
        raise UserError(f"--resume: {args.out} does not exist, so there is nothing to resume; "
                        "drop --resume to start a new run there")
    stage = args.stage or ("all" if args.llm else "pretrain")
    if stage == "pretrain":
        _pretrain(args)
        return 0
    from netgpt.llm import stages

    if not args.llm:
        raise UserError(f"--stage {stage} needs --llm DIR (a local Hugging Face model directory)")
    check_llm_dir(args.llm)
    check_run_store(args.out, store_path(args), args.allow_other_store)  # stages 2-3: the run's own store
    config = llm_config(args)  # a bad --llm-config fails here, before stage 1 runs
    if stage == "all":
        from graphstore.store import GraphStore
        from netgpt.embed import embeddings_current, run_embed

        if not (Path(args.out) / "pretrain" / "metrics.json").is_file():
            resume = args.resume or (Path(args.out) / "pretrain" / "checkpoint.pt").is_file()
            if "stopped_after_epochs" in _pretrain(argparse.Namespace(**{**vars(args), "resume": resume})):
                return 0
        if not embeddings_current(args.out, GraphStore.open(store_path(args))):
            run_embed(args.out, store_path(args), progress=not args.no_progress)
    kw = dict(max_steps=args.llm_max_steps, resume=args.resume, seed=args.seed, progress=not args.no_progress,
              config=config, allow_other_store=args.allow_other_store)
    skip_align = config.skip_align if config is not None else args.skip_align
    runs = [(name, fn) for name, fn in (("align", stages.run_align), ("finetune", stages.run_finetune))
            if stage in (name, "all") and not (name == "align" and skip_align)]
    for name, fn in runs:
        result = fn(args.out, store_path(args), args.llm, **kw)
        if stages.rank_world()[0] == 0:  # one line per stage, bars or not; only rank 0 speaks
            print(stages.summary_line(name, result), flush=True)
    return 0
