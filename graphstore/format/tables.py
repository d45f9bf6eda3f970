"""The Parquet tables of a store generation: which files hold a table, and reading them."""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from graphstore.errors import UserError
from graphstore.format.damage import damaged

TABLES = ("samples", "comments")


def table_files(data_dir: Path, name: str) -> list[Path]:
    """`<name>.parquet` of a generation: one file (a build), or a directory of parts read in name order."""
    path = Path(data_dir) / f"{name}.parquet"
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix == ".parquet" and not p.name.startswith((".", "_")))
    return [path]


def read_table_files(data: Path, table: str, files: list[Path], columns: Iterable[str] | None) -> pa.Table:
    """`columns` (default: all) of a table's files as one table; StoreDamaged for a file that does not read."""
    cols = list(columns) if columns else None
    tables = []
    for f in files:
        try:
            tables.append(pq.read_table(f, columns=cols))
        except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as e:
            if cols and isinstance(e, pa.ArrowInvalid) and "No match for FieldRef" in str(e):
                raise UserError(f"table {table}: no column among {cols} in {f}") from None
            raise damaged(data, f"table {table}", f, f"unreadable Parquet ({e})") from None
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="default")
