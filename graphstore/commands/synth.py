"""`graphstore synth --scale S --seed N --out FILE`: synthetic XS-Video in the released format."""
from __future__ import annotations

import argparse
import json
import sys

from graphstore.cli import positive_float, random_seed


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="write a synthetic XS-Video file calibrated to the published statistics")
    p.add_argument("--scale", type=positive_float, default=0.01, help="1.0 = full size (117,720 videos)")
    p.add_argument("--seed", type=random_seed, default=0,
                   help="seed of every random choice of the generator: one seed and scale, one file")
    p.add_argument("--out", required=True, help="output file")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out if it is a file written by `graphstore synth` (never any other file)")
    p.add_argument("--format", default="xsvideo", choices=("xsvideo", "jsonl"),
                   help="xsvideo: the released JSON object with Chinese keys; jsonl: JSON Lines, English keys")
    p.add_argument("--json", action="store_true", help="print the counts as one JSON object")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (there is none unless stderr is a terminal)")
    p.set_defaults(func=run)


def check_synth_output(path: str, overwrite: bool) -> None:
    """UserError unless `path` may be written: new, or (with --overwrite) a file synth wrote before."""
    from graphstore.errors import UserError
    from graphstore.outputs import check_output_file
    from graphstore.synth import latents_path

    out = check_output_file(path)
    if not out.exists():
        return
    if not overwrite:
        raise UserError(f"{out} exists; pass --overwrite to replace it")
    if not latents_path(out).is_file():  # synth writes its side-car beside every file it makes
        raise UserError(f"--out {path!r} was not written by `graphstore synth` (no {latents_path(out).name} beside it); "
                        "--overwrite replaces only synth's own files, so nothing was changed")


def run(args: argparse.Namespace) -> int:
    from graphstore.synth import summary_dict, synthesize

    check_synth_output(args.out, args.overwrite)
    summary = summary_dict(synthesize(args.out, scale=args.scale, seed=args.seed, fmt=args.format,
                                      progress=sys.stderr.isatty() and not args.no_progress))
    if args.json:
        print(json.dumps(summary))
        return 0
    print(f"wrote {summary['path']}: {summary['samples']:,} samples of {summary['videos']:,} videos, "
          f"{summary['comments']:,} comments, {summary['topics']} topics")
    print(f"edges implied: same-topic {summary['same_topic']:,}, same-author {summary['same_author']:,}, "
          f"history {summary['history']:,}")
    return 0
