"""Files every run stage writes: predictions tables and checkpoints (atomically)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from graphstore.atomic import replace_with
from graphstore.errors import UserError


def existing_run_dir(path: str | Path) -> Path:
    """`path` as a Path; UserError when it is not an existing run directory."""
    run_dir = Path(path)
    if not run_dir.exists():
        raise UserError(f"{run_dir}: the run directory does not exist")
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: not a directory (expected a run directory)")
    return run_dir


def write_predictions(path: Path, nodes: np.ndarray, sample_ids: list[str], y_true: np.ndarray,
                      y_pred: np.ndarray) -> None:
    """predictions_<split>.parquet: node, sample_id, y_true, y_pred in node order (atomic)."""
    order = np.argsort(nodes, kind="stable")
    nodes = np.asarray(nodes, dtype=np.int64)[order]
    table = pa.table({"node": pa.array(nodes), "sample_id": pa.array([sample_ids[i] for i in nodes], type=pa.string()),
                      "y_true": pa.array(np.asarray(y_true, np.float64)[order]),
                      "y_pred": pa.array(np.asarray(y_pred, np.float64)[order])})
    replace_with(path, lambda tmp: pq.write_table(table, tmp))


def torch_save(obj: Any, path: Path) -> None:
    """torch.save to a temporary file, then rename."""
    replace_with(path, lambda tmp: torch.save(obj, tmp))
