"""Published counts the generator is calibrated on, the crawl window, and how the counts grow with scale."""
from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

import numpy as np


# Published full-scale counts (PAPER_NOTES.md / the store issue).
FULL = {
    "videos": 117_720, "samples": 381_926, "comments": 923_045, "history": 484_364,
    "same_author": 5_372_152, "same_topic": 1_655_971_954, "topics": 535, "train": 304_362, "test": 77_564,
}
WINDOW_START = "2024-11-25"
WINDOW_DAYS = 39  # 2024-11-25 .. 2025-01-02
CUTOFF_DAY = 25  # 2024-12-20: posts on or before it are train
PLATFORM_SHARES = (0.53, 0.12, 0.18, 0.11, 0.06)  # Douyin, Kuaishou, Xigua, Toutiao, Bilibili (videos)
# Raw count = aligned count / factor: Douyin inflates counts, Xigua/Toutiao deflate them (Kuaishou = 1).
PLATFORM_FACTORS = (0.45, 1.0, 2.2, 2.6, 1.5)
AUTHORS_PER_VIDEO = 0.36


@dataclass
class SynthSummary:
    """What a synthesis wrote, with the graph counts implied by the rules of the store."""

    path: str
    scale: float
    seed: int
    videos: int
    samples: int
    comments: int
    history: int
    same_author: int
    same_topic: int
    topics: int
    train_by_post_date: int
    test_by_post_date: int
    final_states: int
    level_counts: list[int]


def start_ts() -> int:
    return calendar.timegm(datetime.fromisoformat(WINDOW_START).timetuple())


def bucket_edges(key: np.ndarray, day: np.ndarray) -> int:
    """Edges of a bucket relation: per key, (m^2 + sum over days of c_d^2) / 2 (self edges once)."""
    _, m = np.unique(key, return_counts=True)
    _, c = np.unique(key.astype(np.int64) * 4096 + day, return_counts=True)
    return int(((m.astype(np.int64) ** 2).sum() + (c.astype(np.int64) ** 2).sum()) // 2)


def bisect(f: Callable[[float], float], target: float, lo: float, hi: float, iters: int = 40) -> float:
    """x in [lo, hi] with f(x) ~ target for an increasing f."""
    for _ in range(iters):
        mid = (lo + hi) / 2
        if f(mid) < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


# --- growth with scale ------------------------------------------------------------------------
def topics_at(scale: float) -> int:
    """Topic count at `scale`: the published 535 up to scale 1, round(535 * scale) beyond (module docstring)."""
    return FULL["topics"] if scale <= 1 else max(FULL["topics"], round(FULL["topics"] * scale))


def topic_ranks(n_topics: int) -> np.ndarray:
    """Published popularity rank (0 = hottest of the 535) of every topic: beyond 535 topics, each rank is
    shared by about n_topics / 535 topics, so the published topic-size distribution is kept, copied."""
    return np.arange(n_topics, dtype=np.int64) * FULL["topics"] // n_topics


def same_topic_target(samples: int, n_topics: int) -> float:
    """Same-topic edges the calibration aims at: the published count times (samples ratio)^2 * 535 / topics."""
    target = FULL["same_topic"] * (samples / FULL["samples"]) ** 2
    if n_topics != FULL["topics"]:
        target *= FULL["topics"] / n_topics
    return target


def expected_counts(scale: float) -> dict[str, float]:
    """The published counts carried to `scale` by the growth rule (what `rel_err_vs_published` compares with)."""
    f = scale
    expected = {k: FULL[k] * f for k in ("videos", "samples", "comments", "history", "same_author")}
    expected["same_topic"] = same_topic_target(expected["samples"], topics_at(scale))
    return expected
