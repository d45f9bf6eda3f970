"""Post times and crawl states of the synthetic videos, and their topics and authors (the bucket keys)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graphstore.synth.counts import CUTOFF_DAY, WINDOW_DAYS, topic_ranks

# --- schedule: post times and crawl states ------------------------------------------------
@dataclass
class Schedule:
    video: np.ndarray  # per state: video index
    day: np.ndarray  # per state: crawl day (0 = window start)
    final: np.ndarray  # per state: final-state flag
    rank: np.ndarray  # per state: index among the video's states


def post_days(n: int, test_weight: float, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Post time in days from the window start: before the cutoff or (with test_weight) after it."""
    early = -10.0 + u * (CUTOFF_DAY + 1 + 10.0)
    late = (CUTOFF_DAY + 1) + u * (WINDOW_DAYS - CUTOFF_DAY - 1)
    return np.where(v < test_weight, late, early)


def crawl_schedule(post: np.ndarray, k_draw: np.ndarray, r: dict[str, np.ndarray]) -> Schedule:
    """Crawl days per video: >= 2 days apart, the last one 14+ days after posting when in the window."""
    n = len(post)
    c0 = np.floor(post).astype(np.int64)
    first = np.maximum(0, c0 + r["offset"])
    final_day = c0 + 14 + r["extra"]
    complete = (final_day <= WINDOW_DAYS - 1) & r["crawled_to_end"]
    gaps = r["gaps"]  # (n, 4) in 2..6
    days = np.concatenate([first[:, None], first[:, None] + np.cumsum(gaps, axis=1)], axis=1)  # (n, 5)
    limit = np.where(complete, final_day - 2, np.minimum(WINDOW_DAYS - 1, c0 + 13))
    slot = np.arange(5)[None, :]
    n_early = np.where(complete, k_draw - 1, k_draw)
    valid = (days <= limit[:, None]) & (slot < n_early[:, None])
    # A video is crawled at least once: a late poster's single state is its first crawl day.
    valid[:, 0] |= ~complete & (valid.sum(1) == 0)
    days = np.minimum(days, WINDOW_DAYS - 1)
    vid = np.repeat(np.arange(n), valid.sum(1))
    d = days[valid]
    fin = np.zeros(len(d), bool)
    per_video = valid.sum(1)
    rank = np.arange(int(per_video.sum()), dtype=np.int64) - np.repeat(np.cumsum(per_video) - per_video, per_video)
    # Append final states.
    fv = np.flatnonzero(complete)
    vid = np.concatenate([vid, fv])
    d = np.concatenate([d, final_day[fv]])
    fin = np.concatenate([fin, np.ones(len(fv), bool)])
    rank = np.concatenate([rank, valid.sum(1)[fv]])
    order = np.lexsort((rank, vid))
    return Schedule(vid[order], d[order], fin[order], rank[order])


def schedule_randoms(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    return {
        "offset": rng.choice(3, size=n, p=(0.45, 0.35, 0.2)),
        "extra": rng.choice(3, size=n, p=(0.6, 0.3, 0.1)),
        "crawled_to_end": rng.random(n) < 0.9,
        "gaps": rng.choice(np.arange(2, 7), size=(n, 4), p=(0.3, 0.25, 0.2, 0.15, 0.1)),
        "u_post": rng.random(n), "v_post": rng.random(n), "u_k": rng.random((n, 4)),
        "time_of_day": rng.random(n),
    }


def crawl_state_counts(u_k: np.ndarray, p: float) -> np.ndarray:
    """States wanted per video, 2 + Binomial(2, p): tight enough to match the history-edge count."""
    return 2 + (u_k[:, :2] < p).sum(1)


# --- keys: topics and authors ----------------------------------------------------------------
def topic_of_video(n_videos: int, n_topics: int, s: float, perm: np.ndarray) -> np.ndarray:
    """Topic per video by largest-remainder quotas of a Zipf(s) popularity over the published ranks (`topic_ranks`)."""
    p = (topic_ranks(n_topics) + 1).astype(np.float64) ** -s
    p /= p.sum()
    quota = np.floor(p * n_videos).astype(np.int64)
    rest = n_videos - quota.sum()
    quota[np.argsort(-(p * n_videos - quota), kind="stable")[:rest]] += 1
    return np.repeat(np.arange(n_topics), quota)[perm]


def author_of_video(z: np.ndarray, sigma: float, u: np.ndarray) -> np.ndarray:
    """Author per video drawn by inverse CDF from lognormal(sigma) activity weights."""
    w = np.exp(sigma * z)
    cdf = np.cumsum(w)
    return np.minimum(np.searchsorted(cdf / cdf[-1], u), len(z) - 1)
