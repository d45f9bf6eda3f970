"""Interactions, influence levels and the latents side-car (what drives a level, for the quality bounds)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import numpy as np

from graphstore.schema import INTERACTION_THRESHOLDS, VIEW_THRESHOLDS

# --- interactions and levels ---------------------------------------------------------------
INDICATORS = ("views", "likes", "shares", "collects", "comment_count")


def level_of(views, likes, shares, collects, comments) -> np.ndarray:
    """Vectorised published thresholds (a level k if any indicator exceeds its level-k threshold)."""
    inter = np.maximum.reduce([likes, shares, collects, comments])
    level = np.zeros(len(views), np.int8)
    for k in range(9):
        level = np.where((views > VIEW_THRESHOLDS[k]) | (inter > INTERACTION_THRESHOLDS[k]), k + 1, level)
    return level


def growth(age: np.ndarray, tau: np.ndarray, boost: np.ndarray) -> np.ndarray:
    """Share of the 14-day interactions reached at `age` days (flat by ~day 10; boosts come late)."""
    base = 1.0 - np.exp(-np.maximum(age, 0.02) / tau)
    late = 1.0 / (1.0 + np.exp(-(age - 5.0) / 1.2))
    return base * (1.0 + (boost - 1.0) * late) / (1.0 - np.exp(-14.0 / tau)) / boost


def observation_noise(age_days: np.ndarray) -> np.ndarray:
    """Std of the shared log-scale error of a sample's counts at an observation age (days)."""
    return 0.06 + 1.2 * np.exp(-np.asarray(age_days, dtype=np.float64) / 3.0)


# Latents that the graph can reveal (other samples of the same topic / author) and those it cannot.
GRAPH_VISIBLE_LATENTS = ("topic_heat", "author_reach")
OWN_LATENTS = ("appeal", "hidden", "tau", "boost", "early_noise")


def latents_path(out_path: str | Path) -> Path:
    """Side-car of a synthetic file: its per-sample latent variables (Parquet)."""
    out_path = Path(out_path)
    return out_path.with_name(out_path.name + ".latents.parquet")


def write_latents(path: Path, columns: dict[str, np.ndarray] | Iterable[dict[str, np.ndarray]]) -> None:
    """Write the latent table atomically, from one dict of columns or from blocks of them (streamed)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tmp = path.with_name(path.name + ".tmp")
    writer = None
    try:
        for block in [columns] if isinstance(columns, dict) else columns:
            table = pa.table(block)
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema)
            writer.write_table(table)
    except BaseException:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
        raise
    if writer is not None:
        writer.close()
        os.replace(tmp, path)
