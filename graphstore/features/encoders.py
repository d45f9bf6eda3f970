"""Numeric feature encoders: sinusoidal time encoding and log(v + 1) counts with a missing mask."""
from __future__ import annotations

import numpy as np

TIME_DIM = 512


def time_encoding(seconds: np.ndarray, dim: int = TIME_DIM) -> np.ndarray:
    """Sinusoidal encoding: f[2i] = sin(t / 10000^(2i/dim)), f[2i+1] = cos(same), in float64.

    t is seconds since the epoch (~1.7e9). The phases are computed in float64, whose 53-bit
    mantissa resolves t / 10000^0 to ~2e-7 rad; only the encoded values (in [-1, 1]) are then
    rounded to the storage dtype (float16: ~5e-4 absolute error per component).
    """
    if dim % 2:
        raise ValueError(f"time encoding dim must be even, got {dim}")
    t = np.asarray(seconds, dtype=np.float64).reshape(-1, 1)
    inv_freq = 1.0 / np.power(10000.0, np.arange(0, dim, 2, dtype=np.float64) / dim)
    phase = t * inv_freq[None, :]
    out = np.empty((t.shape[0], dim), dtype=np.float64)
    out[:, 0::2] = np.sin(phase)
    out[:, 1::2] = np.cos(phase)
    return out


def log_count_encoding(values: np.ndarray, missing: np.ndarray | None = None) -> np.ndarray:
    """[log(v + 1), missing] per row (float64 [n, 2]); missing or NaN values encode as 0 with mask 1."""
    v = np.asarray(values, dtype=np.float64)
    miss = np.isnan(v) if missing is None else (np.asarray(missing, dtype=bool) | np.isnan(v))
    out = np.zeros((v.shape[0], 2), dtype=np.float64)
    ok = ~miss
    out[ok, 0] = np.log1p(np.maximum(v[ok], 0.0))
    out[:, 1] = miss
    return out
