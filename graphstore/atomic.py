"""Atomic file writes: write a temporary sibling, then rename it over the target."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable


def replace_with(path: str | Path, write: Callable[[Path], Any], durable: bool = False) -> Path:
    """Call `write(tmp)` on `<path>.tmp`, then rename it to `path` (readers never see a partial file).

    `durable`: the file is on disk before the rename and the rename before returning (fsync of both),
    so that a power loss, too, leaves the old or the new file.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    if durable:
        _fsync(tmp)
    os.replace(tmp, path)
    if durable:
        _fsync(path.parent)
    return path


def write_text(path: str | Path, text: str, durable: bool = False) -> Path:
    """Atomically write `text` to `path`."""
    return replace_with(path, lambda tmp: tmp.write_text(text), durable)


def write_json(path: str | Path, obj: Any, durable: bool = False, **dumps_kwargs: Any) -> Path:
    """Atomically write `obj` as JSON (indent 2 unless told otherwise)."""
    dumps_kwargs.setdefault("indent", 2)
    return write_text(path, json.dumps(obj, **dumps_kwargs), durable)


def sync_file_system(path: str | Path) -> None:
    """Flush every written file of the file system holding `path` to disk (Linux syncfs; elsewhere sync).

    Called before a commit's rename: the files a commit points at must be on disk before the pointer is.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc_syncfs is None or _libc_syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _load_syncfs():
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None


_libc_syncfs = _load_syncfs()


def filter_jsonl(path: str | Path, keep: Callable[[dict], bool]) -> None:
    """Atomically rewrite a JSON Lines file with only the records `keep` accepts; no-op if it is absent."""
    path = Path(path)
    if not path.is_file():
        return
    lines = [ln for ln in path.read_text().splitlines() if ln.strip() and keep(json.loads(ln))]
    write_text(path, "".join(ln + "\n" for ln in lines))
