"""Checks on output paths, made before any work starts, so that a mistake fails at once and loses nothing."""
from __future__ import annotations

import os
from pathlib import Path

from graphstore.errors import UserError


def check_output_file(path: str | Path, what: str = "--out") -> Path:
    """`path` as a file we may create or replace: its parent exists, is a directory and writable, and
    `path` is not a directory. UserError naming `what` otherwise."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{what} {str(path)!r} is a directory; give a file name")
    check_parent(path, what)
    if path.exists() and not os.access(path, os.W_OK):
        raise UserError(f"{what} {str(path)!r} exists and is not writable")
    return path


def check_parent(path: str | Path, what: str = "--out") -> Path:
    """The parent directory of `path`, checked to exist, be a directory and be writable."""
    parent = Path(path).absolute().parent
    if not parent.exists():
        raise UserError(f"{what} {str(path)!r}: the directory {str(parent)!r} does not exist")
    if not parent.is_dir():
        raise UserError(f"{what} {str(path)!r}: {str(parent)!r} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{what} {str(path)!r}: the directory {str(parent)!r} is not writable")
    return parent
