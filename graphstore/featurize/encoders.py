"""Numeric feature encoders: time encodings and log(v + 1) counts with a missing mask."""
from __future__ import annotations

import numpy as np

from graphstore.schema import DAY

TIME_DIM = 512  # the paper's width
MULTISCALE_TIME_DIM = 64
TIME_ENCODINGS = ("multiscale", "paper")
DEFAULT_TIME_ENCODING = "multiscale"
# Reference instant of the multiscale encoding (2024-01-01 UTC): phases and the linear term stay small.
TIME_ORIGIN = 1_704_067_200
HOUR = 3600.0
# Periods of the multiscale encoding: 1 hour to 512 days, geometric.
MIN_PERIOD_S, MAX_PERIOD_S = HOUR, 512 * DAY


def time_encoding(seconds: np.ndarray, dim: int | None = None, scheme: str = DEFAULT_TIME_ENCODING) -> np.ndarray:
    """Encode Unix times (seconds) with `scheme`: 'multiscale' (default) or 'paper'."""
    if scheme == "paper":
        return paper_time_encoding(seconds, TIME_DIM if dim is None else dim)
    if scheme == "multiscale":
        return multiscale_time_encoding(seconds, MULTISCALE_TIME_DIM if dim is None else dim)
    raise ValueError(f"unknown time encoding {scheme!r}; choose one of {', '.join(TIME_ENCODINGS)}")


def time_dim(scheme: str) -> int:
    """Width of a time encoding scheme."""
    return TIME_DIM if scheme == "paper" else MULTISCALE_TIME_DIM


def multiscale_time_encoding(seconds: np.ndarray, dim: int = MULTISCALE_TIME_DIM) -> np.ndarray:
    """sin/cos at periods geometric from 1 hour to 512 days, plus the time in years since 2024.

    The paper's encoding has its longest period near 16.8 hours, so it holds only the time of day;
    this one resolves the hour, the day of the week, the date and, through the linear term, any
    difference of two times (the network can compute an observation age from two of them)."""
    if dim % 2 or dim < 4:
        raise ValueError(f"multiscale time encoding dim must be even and >= 4, got {dim}")
    t = np.asarray(seconds, dtype=np.float64).reshape(-1, 1) - TIME_ORIGIN
    n_freq = (dim - 2) // 2
    periods = np.geomspace(MIN_PERIOD_S, MAX_PERIOD_S, n_freq)
    phase = 2 * np.pi * t / periods[None, :]
    out = np.empty((t.shape[0], dim), dtype=np.float64)
    out[:, 0:2 * n_freq:2] = np.sin(phase)
    out[:, 1:2 * n_freq:2] = np.cos(phase)
    years = t[:, 0] / (365.0 * DAY)
    out[:, -2] = years
    out[:, -1] = np.sign(years) * np.log1p(np.abs(years) * 365.0)  # log days, finer near the origin
    return out


def paper_time_encoding(seconds: np.ndarray, dim: int = TIME_DIM) -> np.ndarray:
    """The paper's encoding: f[2i] = sin(t / 10000^(2i/dim)), f[2i+1] = cos(same), in float64.

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
