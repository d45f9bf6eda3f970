"""Atomic file writes: write a temporary sibling, then rename it over the target."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable


def replace_with(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Call `write(tmp)` on `<path>.tmp`, then rename it to `path` (readers never see a partial file)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Atomically write `text` to `path`."""
    return replace_with(path, lambda tmp: tmp.write_text(text))


def write_json(path: str | Path, obj: Any, **dumps_kwargs: Any) -> Path:
    """Atomically write `obj` as JSON (indent 2 unless told otherwise)."""
    dumps_kwargs.setdefault("indent", 2)
    return write_text(path, json.dumps(obj, **dumps_kwargs))


def filter_jsonl(path: str | Path, keep: Callable[[dict], bool]) -> None:
    """Atomically rewrite a JSON Lines file with only the records `keep` accepts; no-op if it is absent."""
    path = Path(path)
    if not path.is_file():
        return
    lines = [ln for ln in path.read_text().splitlines() if ln.strip() and keep(json.loads(ln))]
    write_text(path, "".join(ln + "\n" for ln in lines))
