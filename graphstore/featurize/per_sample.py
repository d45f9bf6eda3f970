"""Per-sample numeric features of a video node: its counts, observation age, history and place in
its author's and topic's buckets, as one float matrix in node order.

Every column describes the sample as observed at its own current time (no label, nothing later):
the counts, the age (current time - post time), the time since the video's previous crawled state
and the growth since it, and how many samples of the same author / topic were crawled on or before
its day (the bucket relations' in-degrees), and the exact means of its author's and its topic's
earlier samples' counts and ages.

`SampleFeatures` computes any row range of the matrix with the memory of a block of rows plus about
100 bytes per video (the 10 averaged columns of every sample, its current time, the `members` of a
bucket relation, and prefix-sum checkpoints), so the matrix of a scale-10 store (3.8 M samples) is
never held whole; its rows equal those of computing the whole matrix at once, bit for bit."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from graphstore.schema import COUNT_FIELDS, DAY, PLATFORMS
from graphstore.topology.bucket import BucketPrefixSums
from graphstore.format.arrays import ColumnReader

if TYPE_CHECKING:
    from graphstore.store import GraphStore

GROWTH_FIELDS = ("likes", "views", "comment_count")
DEGREE_RELATIONS = ("has_same_author_as", "has_same_topic_as", "is_history_of")
# Exact means over ALL in-neighbours of the bucket relations (the author's and the topic's samples
# crawled on or before this one's day). A node's in-neighbours are a prefix of its bucket, so one
# prefix sum per bucket gives every node's mean in O(n): the full-neighbourhood aggregate that a
# sampled mean of 10 neighbours only estimates, at no sampling noise and no cost per batch.
BUCKET_MEANS = {"has_same_author_as": "author", "has_same_topic_as": "topic"}
MEAN_COLUMNS = ("log_fans", "log_likes", "log_views", "log_shares", "log_collects", "log_comment_count",
                "age_days", "log_age_days", "growth_likes", "growth_views")
PASS_ROWS = 1 << 16  # rows per step of the passes over the whole store
BLOCK_ROWS = 8192  # rows per step of `SampleFeatures.rows` (bounds its temporaries, about 25 MB)
CHECKPOINT = 16  # a bucket relation's prefix sum is kept at every 16th member position


def sample_feature_names() -> list[str]:
    """Column names of `sample_features`, in order."""
    names = [f"log_{c}" for c in COUNT_FIELDS] + [f"{c}_missing" for c in COUNT_FIELDS]
    names += ["age_days", "log_age_days", "has_history", "days_since_history", "log_days_since_history"]
    names += [f"growth_{c}" for c in GROWTH_FIELDS]
    names += [f"log_degree_{r}" for r in DEGREE_RELATIONS]
    names += ["log_duration"] + [f"platform_{i}" for i in range(len(PLATFORMS))]
    return names + bucket_mean_names()


def bucket_mean_names() -> list[str]:
    """Names of the neighbourhood-mean columns (the last ones of `sample_features`)."""
    return [f"{short}_mean_{c}" for short in BUCKET_MEANS.values() for c in MEAN_COLUMNS]


def sample_features(store: "GraphStore") -> np.ndarray:
    """[num_videos, len(sample_feature_names())] float64 matrix of the store's samples (all rows at once)."""
    return SampleFeatures(store).rows(0, store.num_nodes("video"))


class SampleFeatures:
    """Rows of the per-sample feature matrix of a store, computed by range (see the module docstring)."""

    def __init__(self, store: "GraphStore") -> None:
        self.n = n = store.num_nodes("video")
        self.columns = {name: ColumnReader(store.root[f"columns/{name}"]) for name in store.root["columns"].array_keys()}
        self.rels = store.topology.relations
        self.ctime = store.column("ctime").astype(np.float64)
        self.pick = np.empty((n, len(MEAN_COLUMNS)))
        log_at = {c: MEAN_COLUMNS.index(f"log_{c}") for c in COUNT_FIELDS}
        for a in range(0, n, PASS_ROWS):  # the columns that depend on the sample alone
            b = min(n, a + PASS_ROWS)
            for c in COUNT_FIELDS:
                self.pick[a:b, log_at[c]] = self._log_count(c, a, b)
            age = self._age(a, b)
            self.pick[a:b, MEAN_COLUMNS.index("age_days")] = age
            self.pick[a:b, MEAN_COLUMNS.index("log_age_days")] = np.log1p(age)
        for a in range(0, n, PASS_ROWS):  # growth since the previous state, which may be any node
            b = min(n, a + PASS_ROWS)
            last = self._last_state(a, b)
            for c in ("likes", "views"):
                self.pick[a:b, MEAN_COLUMNS.index(f"growth_{c}")] = self._growth(c, last, a, b)
        self.prefix = {r: BucketPrefixSums(self.rels[r], self.pick, n, pass_rows=PASS_ROWS, checkpoint=CHECKPOINT)
                       for r in BUCKET_MEANS if r in self.rels}

    def _log_count(self, c: str, lo: int, hi: int) -> np.ndarray:
        return np.log1p(np.maximum(self.columns[c].rows(lo, hi).astype(np.float64), 0.0))

    def _age(self, lo: int, hi: int) -> np.ndarray:
        return np.maximum(self.ctime[lo:hi] - self.columns["post_time"].rows(lo, hi).astype(np.float64), 0.0) / DAY

    def _last_state(self, lo: int, hi: int) -> np.ndarray:
        """Per video node in [lo, hi), its latest earlier state (max current time among its history in-neighbours), or -1."""
        rel = self.rels.get("is_history_of")
        if rel is None:
            return np.full(hi - lo, -1, dtype=np.int64)
        return rel.latest_in_neighbors(self.ctime, lo, hi)

    def _growth(self, c: str, last: np.ndarray, lo: int, hi: int) -> np.ndarray:
        logs = self.pick[:, MEAN_COLUMNS.index(f"log_{c}")]
        return np.where(last >= 0, logs[lo:hi] - logs[np.maximum(last, 0)], 0.0)

    def _degree(self, r: str, lo: int, hi: int) -> np.ndarray:
        rel = self.rels.get(r)
        if rel is None:
            return np.zeros(hi - lo)
        return np.log1p(rel.in_degrees(self.n, lo, hi).astype(np.float64))

    def rows(self, lo: int, hi: int) -> np.ndarray:
        """Rows [lo, hi) of the matrix ([hi - lo, len(sample_feature_names())] float64)."""
        lo, hi = max(0, int(lo)), min(self.n, int(hi))
        parts = [self._block(a, min(hi, a + BLOCK_ROWS)) for a in range(lo, hi, BLOCK_ROWS)]
        return np.concatenate(parts) if parts else np.zeros((0, len(sample_feature_names())))

    def _block(self, lo: int, hi: int) -> np.ndarray:
        pick = self.pick[lo:hi]
        cols = [pick[:, MEAN_COLUMNS.index(f"log_{c}")] for c in COUNT_FIELDS]
        cols += [self.columns[f"{c}_missing"].rows(lo, hi).astype(np.float64) for c in COUNT_FIELDS]
        cols += [pick[:, MEAN_COLUMNS.index("age_days")], pick[:, MEAN_COLUMNS.index("log_age_days")]]
        last = self._last_state(lo, hi)
        has = last >= 0
        gap = np.where(has, (self.ctime[lo:hi] - self.ctime[np.maximum(last, 0)]) / DAY, 0.0)
        cols += [has.astype(np.float64), gap, np.log1p(np.maximum(gap, 0.0))]
        cols += [pick[:, MEAN_COLUMNS.index(f"growth_{c}")] if f"growth_{c}" in MEAN_COLUMNS else
                 self._growth(c, last, lo, hi) for c in GROWTH_FIELDS]
        cols += [self._degree(r, lo, hi) for r in DEGREE_RELATIONS]
        cols.append(np.log1p(np.maximum(self.columns["duration"].rows(lo, hi).astype(np.float64), 0.0)))
        platform = self.columns["platform"].rows(lo, hi).astype(np.int64)
        cols += [(platform == i).astype(np.float64) for i in range(len(PLATFORMS))]
        own = np.stack(cols, axis=1)
        means = [self.prefix[r].means(lo, hi) if r in self.prefix else np.zeros_like(pick) for r in BUCKET_MEANS]
        return np.concatenate([own, *means], axis=1)
