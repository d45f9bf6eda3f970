"""`netgpt` command line: one sub-command per module in netgpt.commands."""
from __future__ import annotations

import sys

from graphstore.cli import build_parser, run_parser

COMMANDS = ("train", "eval", "embed", "baselines", "predict")
DESCRIPTION = "Train, evaluate and apply NetGPT (graph encoder + language model) on a graphstore."


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `netgpt` command."""
    return run_parser(build_parser("netgpt", "netgpt.commands", COMMANDS, DESCRIPTION), argv)


if __name__ == "__main__":
    sys.exit(main())
