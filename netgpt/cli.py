"""`netgpt` command line: one sub-command per module in netgpt.commands."""
from __future__ import annotations

import sys

from graphstore.cli import build_parser, run_parser

COMMANDS = ("train", "eval", "embed", "baselines", "predict")


def main(argv: list[str] | None = None) -> int:
    return run_parser(build_parser("netgpt", "netgpt.commands", COMMANDS, __doc__), argv)


if __name__ == "__main__":
    sys.exit(main())
