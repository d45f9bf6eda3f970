"""What readers check of what they read, and a store's identity (docs/FORMAT.md, "Integrity").

A damaged file met at run time raises `StoreDamaged`, naming the array or table and the file and
suggesting `graphstore info --verify`. The checks stay off the hot path: an array's chunk files are
checked for presence (and, when uncompressed, for size) once when it is opened, and reading errors
(a chunk that no longer decodes, a short read) are turned into the same error where they happen.
Checksums are recomputed only by `graphstore info --verify`.
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import xxhash

from graphstore.format.damage import damaged, read_document
from graphstore.format.layout import ArrayLayout
from graphstore.format.tables import TABLES, table_files



# --- chunk files: checked once when an array is opened --------------------------------------------------
def chunk_files(meta: dict) -> tuple[list[str], int | None] | None:
    """(relative paths of every chunk file, bytes of each when uncompressed) of an array document;
    None when its chunk layout is not the regular one with default '/' keys (nothing is checked then)."""
    try:
        layout = ArrayLayout.parse(meta)
    except (KeyError, TypeError, ValueError):
        return None
    if not layout.regular_keys:
        return None
    return layout.chunk_keys(), layout.chunk_bytes if layout.uncompressed else None


def check_chunk_files(array_dir: Path, what: str, data_dir: Path, meta: dict | None = None) -> dict:
    """The array document of `array_dir` after checking that every chunk file exists (with the size of
    an uncompressed chunk); StoreDamaged naming the first missing or truncated file."""
    array_dir = Path(array_dir)
    if meta is None:
        meta = read_document(array_dir / "zarr.json", what, data_dir)
    if not isinstance(meta.get("shape"), list) or "chunk_grid" not in meta or "data_type" not in meta:
        raise damaged(data_dir, what, array_dir / "zarr.json", "not a Zarr array document")
    layout = chunk_files(meta)
    if layout is None:
        return meta
    names, size = layout
    for name in names:
        path = array_dir / name
        try:
            got = os.stat(path).st_size
        except FileNotFoundError:
            raise damaged(data_dir, what, path, "chunk file missing") from None
        if size is not None and got != size:
            raise damaged(data_dir, what, path, f"chunk file has {got:,} bytes, expected {size:,}")
    return meta


# --- tables: a digest per Parquet file, recorded at build and at append ---------------------------------
def file_digest(path: Path) -> dict:
    """{"bytes": size, "xxh64": hex} of a file's bytes."""
    h = xxhash.xxh64()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(4 << 20), b""):
            h.update(block)
    return {"bytes": os.path.getsize(path), "xxh64": h.hexdigest()}


def _table_paths(data_dir: Path, table: str) -> list[Path]:
    return [p for p in table_files(data_dir, table) if p.exists()]


def record_tables(data_dir: Path, meta: dict) -> None:
    """Set meta["table_checksums"] to a digest per table file of `data_dir`; files already recorded
    (under their name, or as the build's single file an append links as part-000000) keep their digest,
    so an append hashes only the parts it wrote. A store recorded without digests (built before them)
    stays so: its old parts would have to be read in full."""
    before = meta.get("table_checksums")
    if before is None and meta.get("generation", 0) > 0:
        return
    before = dict(before or {})
    out = {}
    for table in TABLES:
        for path in _table_paths(data_dir, table):
            key = path.relative_to(data_dir).as_posix()
            legacy = f"{table}.parquet" if path.name == "part-000000.parquet" else None
            out[key] = before.get(key) or (before.get(legacy) if legacy else None) or file_digest(path)
    meta["table_checksums"] = out


def check_table_files(data_dir: Path, table: str, files: list[Path], meta: dict) -> None:
    """StoreDamaged when a recorded file of `table` is missing or has another size (a stat per file)."""
    recorded = {k: v for k, v in (meta.get("table_checksums") or {}).items() if k.split("/")[0] == f"{table}.parquet"}
    have = {p.relative_to(data_dir).as_posix(): p for p in files}
    for key, digest in recorded.items():
        path = Path(data_dir) / key
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            raise damaged(data_dir, f"table {table}", path, "file missing") from None
        if size != digest["bytes"]:
            raise damaged(data_dir, f"table {table}", path, f"file has {size:,} bytes, expected {digest['bytes']:,}")
    if not recorded:  # a store built before table digests: the files must at least be there
        for path in files:
            if not path.is_file():
                raise damaged(data_dir, f"table {table}", path, "file missing")
        return
    extra = sorted(set(have) - set(recorded))
    if extra:
        raise damaged(data_dir, f"table {table}", have[extra[0]], "a file the store does not record")


def verify_tables(data_dir: Path, meta: dict) -> dict[str, str]:
    """{file: problem} of every table file that no longer matches its recorded digest (or is not recorded)."""
    recorded = meta.get("table_checksums")
    if recorded is None:
        return {}
    problems = {}
    for key, digest in recorded.items():
        path = Path(data_dir) / key
        if not path.is_file():
            problems[key] = "missing"
        elif file_digest(path) != digest:
            problems[key] = "checksum mismatch"
    for table in TABLES:
        for path in _table_paths(data_dir, table):
            key = path.relative_to(data_dir).as_posix()
            if key not in recorded:
                problems[key] = "not recorded"
    return problems


# --- identity --------------------------------------------------------------------------------------------
def new_store_id() -> str:
    """A fresh store identity (uuid4 hex), made once by a build."""
    return uuid.uuid4().hex


def store_id(meta: dict) -> str | None:
    """The identity of a store: its `store_id`, or for a store built before identities its build stamp
    ('built-<created>'; append keeps both); None when it has neither."""
    if meta.get("store_id"):
        return str(meta["store_id"])
    return f"built-{meta['created']}" if meta.get("created") else None


def seal(data_dir: Path, meta: dict) -> None:
    """What a build records once its tables are written: an identity (unless it has one) and the table digests."""
    meta.setdefault("store_id", new_store_id())
    record_tables(data_dir, meta)
