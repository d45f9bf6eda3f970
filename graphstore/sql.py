"""Quoting for the few places where DuckDB takes a path or a name inside SQL text.

DuckDB's `read_parquet`, `COPY ... TO` and `SET temp_directory` do not take prepared parameters
everywhere, so paths go in as string literals quoted here, never pasted in raw.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


def literal(value: str | Path) -> str:
    """`value` as a SQL string literal: single-quoted, embedded quotes doubled (`it's` -> `'it''s'`)."""
    text = value.as_posix() if isinstance(value, Path) else str(value)
    if "\x00" in text:
        raise ValueError(f"{text!r}: a NUL byte cannot be quoted into SQL")
    return "'" + text.replace("'", "''") + "'"


def literal_list(values: Iterable[str | Path]) -> str:
    """`[lit, lit, ...]`: a DuckDB list of string literals (for `read_parquet([...])`)."""
    return "[" + ", ".join(literal(v) for v in values) + "]"
