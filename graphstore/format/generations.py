"""Store generations (format 2): how an append replaces a store's contents atomically.

A built store is generation 0: STORE/zarr.json holds the metadata document and the data lies in
STORE/. An append writes generation k as a complete store in STORE/gen/<k>/ (new files for what
changed, hard links of generation k-1's files for the rest) and then switches STORE/zarr.json, in
one atomic rename, to a pointer {"format": "graphstore", "format_version": 2, "generation": k,
"current": "gen/<k>"}. Nothing is ever modified in place (Zarr writes chunks by rename too), so a
handle opened before the switch keeps reading its generation. Generations older than the previous
one are deleted by the next append. See docs/FORMAT.md.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from graphstore.atomic import sync_file_system, write_json
from graphstore.errors import UserError

GEN_DIR = "gen"
# What a build writes next to zarr.json: the data of generation 0, deleted once it is two appends old.
BUILD_ENTRIES = ("columns", "topology", "splits", "features", "samples.parquet", "comments.parquet")


def read_document(path: Path) -> dict[str, Any]:
    """The `graphstore` attribute of `path/zarr.json` ({} when it has none)."""
    try:
        doc = json.loads((path / "zarr.json").read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: not a graphstore (no zarr.json); build one with `graphstore build`") from None
    meta = doc.get("attributes", {}).get("graphstore")
    return meta if isinstance(meta, dict) else {}


def generation_dir(store: Path, generation: int) -> Path:
    """Where generation `generation` of `store` lives."""
    return store if generation == 0 else store / GEN_DIR / str(generation)


def current(store: Path) -> tuple[Path, int]:
    """(data directory, generation) that `store` points at now."""
    doc = read_document(store)
    if "current" not in doc:
        return store, int(doc.get("generation", 0))
    return store / doc["current"], int(doc["generation"])


def write_document(path: Path, meta: dict[str, Any], durable: bool = False) -> None:
    """Atomically set the `graphstore` attribute of `path/zarr.json` (a Zarr v3 group document)."""
    target = path / "zarr.json"
    doc = json.loads(target.read_text()) if target.is_file() else {"zarr_format": 3, "node_type": "group"}
    doc.setdefault("attributes", {})["graphstore"] = meta
    write_json(target, doc, durable=durable)


def commit(store: Path, generation: int, format_version: int) -> None:
    """Point `store` at `generation` (one atomic rename of zarr.json): the moment a write takes effect.

    The generation's files are flushed to disk first and the pointer after, so that after a power
    loss, too, the store points at a complete generation.
    """
    sync_file_system(store)
    write_document(store, {"format": "graphstore", "format_version": format_version, "generation": generation,
                           "current": f"{GEN_DIR}/{generation}"}, durable=True)


def link_tree(src: Path, dst: Path, skip: tuple[str, ...] = ()) -> None:
    """Mirror `src` into `dst` with hard links (copies across file systems); top-level names in `skip` are left out."""
    dst.mkdir(parents=True, exist_ok=True)
    for entry in os.scandir(src):
        if entry.name in skip or entry.name.endswith(".partial"):
            continue
        target = dst / entry.name
        if entry.is_dir(follow_symlinks=False):
            link_tree(Path(entry.path), target)
        else:
            link_file(Path(entry.path), target)


def link_file(src: Path, dst: Path) -> None:
    """Hard-link `src` as `dst`, or copy it where links are impossible."""
    try:
        os.link(src, dst)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
            raise
        shutil.copy2(src, dst)


def discard_pending(store: Path, generation: int) -> None:
    """Delete generation directories after `generation`: left by an append or featurize that did not commit."""
    for path in _generation_dirs(store):
        if int(path.name) > generation:
            shutil.rmtree(path, ignore_errors=True)
    if generation == 0 and (store / GEN_DIR).is_dir() and not any((store / GEN_DIR).iterdir()):
        (store / GEN_DIR).rmdir()


def collect_garbage(store: Path, generation: int) -> list[str]:
    """Delete generations older than `generation - 1`; handles opened on the previous one keep working."""
    removed = []
    if generation >= 2 and any((store / name).exists() for name in BUILD_ENTRIES):
        for name in BUILD_ENTRIES:
            _remove(store / name)
        removed.append("0")
    for path in _generation_dirs(store):
        if int(path.name) < generation - 1:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
    return removed


def _generation_dirs(store: Path) -> list[Path]:
    root = store / GEN_DIR
    return [p for p in root.iterdir() if p.name.isdigit()] if root.is_dir() else []


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()


@contextmanager
def exclusive(store: Path, busy: str | None = None) -> Iterator[None]:
    """Hold the writer lock of `store` (flock on its directory); a second writer gets a UserError (`busy`)."""
    fd = os.open(store, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(busy or f"{store}: another writer (append, featurize or build --overwrite) is running "
                                    "on this store") from None
        yield
    finally:
        os.close(fd)
