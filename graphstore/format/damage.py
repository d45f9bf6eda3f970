"""StoreDamaged: the one error for a missing, truncated or undecodable file of a store, naming it."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from graphstore.errors import UserError


class StoreDamaged(UserError):
    """A file of a store is missing, truncated or does not decode."""


def store_location(data_dir: Path) -> Path:
    """The store directory of a data directory (STORE or STORE/gen/<k>)."""
    data_dir = Path(data_dir)
    return data_dir.parent.parent if data_dir.parent.name == "gen" else data_dir


def damaged(data_dir: Path, what: str, file: Path | str, problem: str, *, verify: bool = True) -> StoreDamaged:
    """The error for a damaged file `file` of array or table `what` of the store at `data_dir`
    (`verify`: suggest `graphstore info --verify`, which needs a readable metadata document)."""
    store = store_location(data_dir)
    store = store if (store / "zarr.json").is_file() else "STORE"
    hint = f"run `graphstore info --verify {store}`, then rebuild or restore it" if verify else "rebuild or restore it"
    err = StoreDamaged(f"{what}: {file}: {problem}; the store is damaged ({hint})")
    err.file, err.problem = str(file), problem
    return err


def read_document(path: Path, what: str, data_dir: Path, *, verify: bool = True) -> dict[str, Any]:
    """A zarr.json parsed, StoreDamaged when it is missing or not a JSON object."""
    try:
        doc = json.loads(Path(path).read_bytes())
    except FileNotFoundError:
        raise damaged(data_dir, what, path, "missing", verify=verify) from None
    except (ValueError, UnicodeDecodeError) as e:
        raise damaged(data_dir, what, path, f"not valid JSON ({e})", verify=verify) from None
    except IsADirectoryError:
        raise damaged(data_dir, what, path, "a directory, not a file", verify=verify) from None
    if not isinstance(doc, dict):
        raise damaged(data_dir, what, path, "not a JSON object", verify=verify)
    return doc
