"""Files every run stage writes: predictions tables and checkpoints (atomically)."""
from __future__ import annotations

import os
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


# What a run directory may hold: a directory with none of these and other files is somebody else's.
RUN_ENTRIES = ("config.json", "pretrain", "align", "finetune", "embeddings", ".embeddings.tmp")


def check_run_output(path: str | Path, what: str = "--out", ours=RUN_ENTRIES.__contains__) -> Path:
    """`path` as a directory a run may create or continue: new, empty or already a run (every name in it
    is `ours`); never a graphstore, a directory inside one, a file, or a directory of other files."""
    from graphstore.outputs import check_not_in_store, is_graphstore

    run_dir = Path(path)
    if is_graphstore(run_dir):
        raise UserError(f"{what} {str(path)!r} is a graphstore; a run is written to a directory of its own")
    check_not_in_store(run_dir, what)
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"{what} {str(path)!r} is a file; name a run directory")
    ancestor = next(p for p in (run_dir.absolute(), *run_dir.absolute().parents) if p.exists())
    if not ancestor.is_dir():
        raise UserError(f"{what} {str(path)!r}: {str(ancestor)!r} is a file, not a directory")
    if ancestor == run_dir.absolute():
        others = sorted(e.name for e in run_dir.iterdir() if not ours(e.name))
        if others:
            raise UserError(f"{what} {str(path)!r} is a directory that is not a run (it holds {', '.join(others[:3])}"
                            f"{', ...' if len(others) > 3 else ''}); choose a new or empty directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UserError(f"{what} {str(path)!r}: {str(ancestor)!r} is not writable")
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


def load_checkpoint(path: str | Path, map_location: Any = "cpu", keys: tuple[str, ...] = ()) -> dict:
    """torch.load of a checkpoint written by torch_save; UserError naming the file when it is truncated,
    not a checkpoint, or lacks one of `keys` (never a traceback from the unpickler)."""
    import pickle
    import zipfile

    path = Path(path)
    try:
        ck = torch.load(path, map_location=map_location, weights_only=False)
    except FileNotFoundError:
        raise UserError(f"{path}: the checkpoint does not exist") from None
    except IsADirectoryError:
        raise UserError(f"{path}: a directory, not a checkpoint") from None
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, TypeError,
            AttributeError, ImportError, IndexError, KeyError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not a readable checkpoint (truncated or damaged: {type(e).__name__}: "
                        f"{str(e).split('. ')[0]}); train that stage again") from None
    missing = [k for k in keys if not isinstance(ck, dict) or k not in ck]
    if missing:
        raise UserError(f"{path}: not a checkpoint of this stage (no {', '.join(repr(k) for k in missing)}); "
                        "train that stage again")
    return ck


def torch_save(obj: Any, path: Path) -> None:
    """torch.save to a temporary file, then rename."""
    replace_with(path, lambda tmp: torch.save(obj, tmp))
