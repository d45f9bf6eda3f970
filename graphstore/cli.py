"""`graphstore` command line: one sub-command per module in graphstore.commands.

This module is also the runner of the `netgpt` command line, and holds the argument types and
options both share (fanouts, the store, positive counts), so that both read them the same way.
"""
from __future__ import annotations

import argparse
import errno
import importlib
import math
import os
import re
import sys
import traceback
from collections.abc import Sequence
from typing import Any

from graphstore.errors import UserError

COMMANDS = ("synth", "build", "append", "info", "query", "sample", "featurize")
DESCRIPTION = "Build, inspect, query and sample an out-of-core XS-Video graph store."


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends each option's default to its help, unless the help states it or there is none to state."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default is None or action.default is argparse.SUPPRESS or action.nargs == 0:
            return text
        return super()._get_help_string(action)

    def _format_args(self, action: argparse.Action, default_metavar: str) -> str:
        text = super()._format_args(action, default_metavar)
        if not action.option_strings and not action.required and action.nargs is None:
            return f"[{text}]"  # a positional that may come as an option instead (STORE / --store)
        return text


class CommandParser(argparse.ArgumentParser):
    """An ArgumentParser whose help shows defaults; its sub-command parsers are CommandParsers too."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
        # argparse takes only '-1' or '-.5' for a value, so `--fanouts -1,5` (the documented form) read as an
        # unknown option: a word of digits, commas and signs is a value too (no option of ours looks like one)
        self._negative_number_matcher = re.compile(r"^-\d[\d,\s.-]*$|^-\.\d+$")


# --- argument types shared by both command lines ------------------------------------------------
def _int(text: str, lowest: int, what: str) -> int:
    """`text` as an int >= lowest; ArgumentTypeError (argparse's usage error, exit status 2) otherwise."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < lowest:
        raise argparse.ArgumentTypeError(f"{value} is not {what}")
    return value


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    return _int(text, 1, "a positive integer (>= 1)")


def non_negative_int(text: str) -> int:
    """An argparse type: an integer >= 0."""
    return _int(text, 0, "a non-negative integer (>= 0)")


def random_seed(text: str) -> int:
    """An argparse type: a random seed, an integer in 0..2**63-1 (what every generator of ours accepts)."""
    value = _int(text, 0, "a valid seed (an integer >= 0)")
    if value >= 2**63:
        raise argparse.ArgumentTypeError(f"{value} is too large for a seed (at most 2**63-1)")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|[kmgt]i?b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
               "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def memory_size(text: str) -> str:
    """An argparse type: a memory size such as 3GB, 512MiB or 2.5GB (a bare number is bytes), at least 16 MB.

    Returns it in DuckDB's spelling ('3GB', '512MiB', '2500000000B') so it can be handed to SET memory_limit."""
    match = _SIZE.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a memory size (examples: 3GB, 512MiB, 2.5GB)")
    number, unit = match.group(1), (match.group(2) or "b").lower()
    size = float(number) * _SIZE_UNITS[unit]
    if size < 16 * 10**6:
        raise argparse.ArgumentTypeError(f"{text!r} is too small (at least 16MB)")
    if size > 2**60:
        raise argparse.ArgumentTypeError(f"{text!r} is too large")
    return f"{number}{unit.upper().replace('I', 'i')}" if "." not in number else f"{int(size)}B"


def fanout_list(text: str) -> list[int]:
    """An argparse type: '10,10', '10 10' or '10' -> [10, 10] / [10]; each fanout an int >= -1."""
    parts = [p for p in re.split(r"[,\s]+", text.strip()) if p]
    try:
        fanouts = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected integers such as 10,10 or 10 10") from None
    if not fanouts or any(k < -1 for k in fanouts):
        raise argparse.ArgumentTypeError(f"{text!r}: expected one integer >= -1 per hop (0: skip, -1: all)")
    return fanouts


class _JoinFanouts(argparse.Action):
    """Joins the hops of every value given (`--fanouts 10,10` and `--fanouts 10 10` are the same)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        setattr(namespace, self.dest, [k for hops in values for k in hops])


def add_fanouts_argument(parser: argparse.ArgumentParser, default: Sequence[int] | None, help: str) -> None:
    """`--fanouts K [K ...]`: one fanout per hop, comma or space separated (args.fanouts: list[int] or None)."""
    shown = f" (default: {','.join(map(str, default))})" if default else ""
    parser.add_argument("--fanouts", nargs="+", type=fanout_list, action=_JoinFanouts, metavar="K",
                        default=list(default) if default else None,
                        help=f"{help}; one per hop, comma or space separated (10,10 or 10 10; 0: skip, -1: all)"
                             f"{shown}")


def add_store_argument(parser: argparse.ArgumentParser, help: str = "store directory built by `graphstore build`",
                       required: bool = True) -> None:
    """The store, as a positional STORE or as --store STORE (read it with `store_path(args)`)."""
    positional = parser.add_argument("store", metavar="STORE", nargs=None, default=None,
                                     help=f"{help} (or give it as --store STORE)")
    # optional although nargs=None: it then takes exactly one word when present, never an empty match,
    # so options may come before or after it, and the --store form leaves it unset
    positional.required = False
    parser.add_argument("--store", dest="store_flag", metavar="STORE", default=None,
                        help="the store, as an option (same as the positional STORE)")
    parser.set_defaults(store_required=required)


def store_path(args: argparse.Namespace) -> str | None:
    """The store given as STORE or --store; UserError if they differ, or if a required store is missing."""
    positional, flag = getattr(args, "store", None), getattr(args, "store_flag", None)
    if positional is not None and flag is not None and os.path.abspath(positional) != os.path.abspath(flag):
        raise UserError(f"two different stores given: STORE {positional!r} and --store {flag!r}")
    path = positional if positional is not None else flag
    if path is None and getattr(args, "store_required", True):
        raise UserError("no store given: pass STORE or --store STORE")
    return path


# --- the runner ------------------------------------------------------------------------------
def build_parser(prog: str = "graphstore", package: str = "graphstore.commands",
                 commands: Sequence[str] | None = None, description: str | None = DESCRIPTION) -> argparse.ArgumentParser:
    """A parser with one sub-command per module `package.<name>` (each has `register(sub)`)."""
    parser = CommandParser(prog=prog, description=description)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS if commands is None else commands:
        importlib.import_module(f"{package}.{name}").register(sub)
    return parser


def run_parser(parser: argparse.ArgumentParser, argv: list[str] | None) -> int:
    """Run the chosen sub-command; usage errors and UserErrors become one line and exit status 2."""
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2), already printed by argparse
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
    where = f"{parser.prog} {args.command}"
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"{where}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading: not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        return 141
    except Exception as exc:  # noqa: BLE001 - the one place that decides what reaches the user
        fault = environment_fault(exc)
        if fault is not None:
            print(f"{where}: error: {fault}", file=sys.stderr)
            return 1
        traceback.print_exc()
        print(f"{where}: internal error: this is a bug in {parser.prog}, not a mistake of yours; please report it "
              "with the command line and the traceback above", file=sys.stderr)
        return 70  # EX_SOFTWARE


# errno -> what the user should hear about it (the path, when the error names one, is added)
_FAULTS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "the file system is read-only",
    errno.EIO: "input/output error (a failing disk or network file system?)",
    errno.EMFILE: "too many open files (raise `ulimit -n`)",
    errno.ENFILE: "too many open files in the system",
    errno.ENOMEM: "out of memory",
    errno.EFBIG: "file too large for this file system",
    errno.ENAMETOOLONG: "file name too long",
}


def environment_fault(exc: BaseException) -> str | None:
    """A one-line message for a fault of the machine (disk full, permissions, I/O, memory), or None for a bug."""
    for cause in _causes(exc):
        if isinstance(cause, OSError) and cause.errno in _FAULTS:  # also when a library wrapped it in its own error
            exc = cause
            break
    if isinstance(exc, MemoryError):
        return "out of memory; free some memory or work on a smaller input"
    if isinstance(exc, OSError) and exc.errno in _FAULTS:
        path = f": {exc.filename}" if exc.filename else ""
        return f"{_FAULTS[exc.errno]}{path}"
    said = _fault_named_in(exc)  # DuckDB, Arrow and others report the OS error in their own exception's text
    if said is not None:
        return said
    if type(exc).__module__.split(".")[0] in ("duckdb", "_duckdb"):
        name = type(exc).__name__
        if name.startswith("OutOfMemory"):
            return f"DuckDB ran out of memory; raise --memory-limit or free memory ({_first_line(exc)})"
        if name == "IOException":
            return f"DuckDB could not read or write a file: {_first_line(exc)}"
    if type(exc).__name__ == "BrokenProcessPool":  # a worker killed from outside, mostly by the kernel's OOM killer
        return ("a worker process ended abruptly (killed, most often for lack of memory); free memory, or rerun "
                "with fewer workers (e.g. --ingest-workers 1)")
    if isinstance(exc, RuntimeError) and "write failed" in str(exc):  # torch.save on a full disk says only this
        return f"could not write a file (is the disk full?): {_first_line(exc)}"
    return None


def _fault_named_in(exc: BaseException) -> str | None:
    for cause in _causes(exc):
        text = str(cause)
        for code, message in _FAULTS.items():
            if code not in (errno.EPERM, errno.ENOMEM) and os.strerror(code) in text:
                return f"{message} ({_first_line(cause)})"
    return None


def _causes(exc: BaseException, depth: int = 8) -> list[BaseException]:
    chain: list[BaseException] = []
    while exc is not None and len(chain) < depth:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    return chain


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `graphstore` command."""
    return run_parser(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
