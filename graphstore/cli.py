"""`graphstore` command line: one sub-command per module in graphstore.commands."""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from graphstore.errors import UserError

COMMANDS = ("synth", "build", "info", "query", "sample", "featurize")


def build_parser(prog: str = "graphstore", package: str = "graphstore.commands",
                 commands: Sequence[str] | None = None, description: str | None = __doc__) -> argparse.ArgumentParser:
    """A parser with one sub-command per module `package.<name>` (each has `register(sub)`)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS if commands is None else commands:
        importlib.import_module(f"{package}.{name}").register(sub)
    return parser


def run_parser(parser: argparse.ArgumentParser, argv: list[str] | None) -> int:
    """Run the chosen sub-command; a UserError becomes a one-line message and exit status 2."""
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"{parser.prog} {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading: not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        return 141


def main(argv: list[str] | None = None) -> int:
    return run_parser(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
