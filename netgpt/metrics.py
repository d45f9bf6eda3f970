"""The published SPIR metrics: ACC on rounded predictions, MSE and MAE on the continuous ones."""
from __future__ import annotations

import numpy as np

NUM_LEVELS = 10


def round_levels(y_pred: np.ndarray) -> np.ndarray:
    """Predicted class: round half to even (like torch.round), clipped to 0..9."""
    return np.clip(np.rint(np.asarray(y_pred, dtype=np.float64)), 0, NUM_LEVELS - 1).astype(np.int64)


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """{acc, mse, mae, n} of continuous predictions against integer levels."""
    y_true = np.asarray(y_true, dtype=np.float64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.float64).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has {y_true.size} values, y_pred {y_pred.size}")
    n = int(y_true.size)
    if n == 0:
        return {"acc": float("nan"), "mse": float("nan"), "mae": float("nan"), "n": 0}
    err = y_pred - y_true
    acc = float(np.mean(round_levels(y_pred) == np.rint(y_true).astype(np.int64)))
    return {"acc": acc, "mse": float(np.mean(err**2)), "mae": float(np.mean(np.abs(err))), "n": n}


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """10x10 counts, rows = true level, columns = rounded predicted level."""
    t = np.clip(np.rint(np.asarray(y_true, dtype=np.float64)), 0, NUM_LEVELS - 1).astype(np.int64)
    p = round_levels(y_pred)
    cm = np.zeros((NUM_LEVELS, NUM_LEVELS), dtype=np.int64)
    np.add.at(cm, (t, p), 1)
    return cm
