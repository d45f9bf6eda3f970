"""Checks on output paths, made before any work starts, so that a mistake fails at once and loses nothing."""
from __future__ import annotations

import os
from pathlib import Path

from graphstore.errors import UserError


def check_output_file(path: str | Path, what: str = "--out") -> Path:
    """`path` as a file we may create or replace: its parent exists, is a directory and writable, and
    `path` is not a directory. UserError naming `what` otherwise."""
    path = Path(path)
    if str(path) == "-":
        raise UserError(f"{what} '-': standard output is not a file here; give a file name")
    if path.is_symlink():  # the atomic rename would replace the link, not the file it points to
        raise UserError(f"{what} {str(path)!r} is a symbolic link; name the file itself")
    if path.is_dir():
        raise UserError(f"{what} {str(path)!r} is a directory; give a file name")
    if path.exists() and not path.is_file():  # /dev/null, a FIFO, a socket: a rename would replace the node itself
        raise UserError(f"{what} {str(path)!r} is not a regular file; give a file name")
    check_parent(path, what)
    if path.exists() and not os.access(path, os.W_OK):
        raise UserError(f"{what} {str(path)!r} exists and is not writable")
    check_not_in_store(path, what)
    return path


def check_not_in_store(path: str | Path, what: str = "--out") -> None:
    """UserError when `path` lies inside a graphstore (which only graphstore's writers change)."""
    for parent in Path(path).absolute().parents:
        if is_graphstore(parent):
            raise UserError(f"{what} {str(path)!r} lies inside the graphstore {str(parent)!r}; a store is changed "
                            "only by graphstore's own commands (its checksums would no longer match); write it elsewhere")


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


def is_graphstore(path: str | Path) -> bool:
    """Whether `path` is a directory whose zarr.json carries the graphstore metadata document."""
    import json

    try:
        doc = json.loads((Path(path) / "zarr.json").read_text())
    except (OSError, ValueError):
        return False
    meta = doc.get("attributes", {}).get("graphstore") if isinstance(doc, dict) else None
    return isinstance(meta, dict) and meta.get("format") == "graphstore"


def check_store_output(path: str | Path, *, overwrite: bool, inputs: tuple = ()) -> Path:
    """`path` as the directory a build may create, or replace with --overwrite: only a graphstore, never
    `.`, `..`, a root, a symlink, a file, another directory, or one that holds an input of the build."""
    path = Path(path)
    if path.name in ("", ".", "..") or path.resolve() == Path(path.resolve().anchor):
        raise UserError(f"--out {str(path)!r}: name a store directory to create (not '.', '..' or '/')")
    check_parent(path)
    if path.is_symlink():
        raise UserError(f"--out {str(path)!r} is a symbolic link; name the store directory itself")
    if not path.exists():
        return path
    if not overwrite:
        raise UserError(f"{path} exists; pass --overwrite to replace it")
    if not path.is_dir():
        raise UserError(f"--out {str(path)!r} is a file, not a store; --overwrite replaces only a graphstore")
    if not is_graphstore(path):
        raise UserError(f"--out {str(path)!r} is a directory but not a graphstore; --overwrite replaces only a store "
                        "built by `graphstore build`, so nothing was deleted")
    inside = path.resolve()
    for item in inputs:
        if item is not None and Path(item).exists() and Path(item).resolve().is_relative_to(inside):
            raise UserError(f"the input {str(item)!r} lies inside --out {str(path)!r}, which --overwrite would delete")
    return path
