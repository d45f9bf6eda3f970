"""Per-sample numeric features of a video node: its counts, observation age, history and place in
its author's and topic's buckets, as one float matrix in node order.

Every column describes the sample as observed at its own current time (no label, nothing later):
the counts, the age (current time - post time), the time since the video's previous crawled state
and the growth since it, and how many samples of the same author / topic were crawled on or before
its day (the bucket relations' in-degrees), and the exact means of its author's and its topic's
earlier samples' counts and ages."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from graphstore.schema import COUNT_FIELDS, DAY, PLATFORMS

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


def bucket_prefix_means(rel, values: np.ndarray, num_tails: int) -> np.ndarray:
    """Per tail node, the mean of `values` rows over its in-neighbours in bucket relation `rel`."""
    lo, hi = np.asarray(rel.lo, dtype=np.int64), np.asarray(rel.hi, dtype=np.int64)
    members = np.arange(num_tails) if rel.members is None else np.asarray(rel.members, dtype=np.int64)
    sums = np.zeros((len(members) + 1, values.shape[1]))
    np.cumsum(values[members], axis=0, out=sums[1:])
    return (sums[hi] - sums[lo]) / np.maximum(hi - lo, 1)[:, None]


def latest_history_state(store: "GraphStore", ctime: np.ndarray) -> np.ndarray:
    """Per video node, its latest earlier state (max current time among its history in-neighbours), or -1."""
    n = store.num_nodes("video")
    rel = store.topology.relations["is_history_of"]
    indptr = np.asarray(rel.indptr, dtype=np.int64)
    src = np.asarray(rel.indices, dtype=np.int64)
    dst = np.repeat(np.arange(n), np.diff(indptr))
    last = np.full(n, -1, dtype=np.int64)
    if src.size:
        order = np.lexsort((ctime[src], dst))  # per dst ascending ctime: the last edge of each dst wins
        last[dst[order]] = src[order]
    return last


def sample_features(store: "GraphStore") -> np.ndarray:
    """[num_videos, len(sample_feature_names())] float64 matrix of the store's samples."""
    n = store.num_nodes("video")
    cols = []
    logs = {}
    for c in COUNT_FIELDS:
        v = store.column(c).astype(np.float64)
        logs[c] = np.log1p(np.maximum(v, 0.0))
        cols.append(logs[c])
    cols += [store.column(f"{c}_missing").astype(np.float64) for c in COUNT_FIELDS]
    ctime = store.column("ctime").astype(np.float64)
    age = np.maximum(ctime - store.column("post_time").astype(np.float64), 0.0) / DAY
    cols += [age, np.log1p(age)]
    last = latest_history_state(store, ctime)
    has = last >= 0
    gap = np.where(has, (ctime - ctime[np.maximum(last, 0)]) / DAY, 0.0)
    cols += [has.astype(np.float64), gap, np.log1p(np.maximum(gap, 0.0))]
    cols += [np.where(has, logs[c] - logs[c][np.maximum(last, 0)], 0.0) for c in GROWTH_FIELDS]
    rels = store.topology.relations
    cols += [np.log1p(rels[r].in_degrees(n).astype(np.float64)) if r in rels else np.zeros(n) for r in DEGREE_RELATIONS]
    cols.append(np.log1p(np.maximum(store.column("duration").astype(np.float64), 0.0)))
    platform = store.column("platform").astype(np.int64)
    cols += [(platform == i).astype(np.float64) for i in range(len(PLATFORMS))]
    own = np.stack(cols, axis=1)
    names = sample_feature_names()
    pick = own[:, [names.index(c) for c in MEAN_COLUMNS]]
    means = [bucket_prefix_means(rels[r], pick, n) if r in rels else np.zeros_like(pick) for r in BUCKET_MEANS]
    return np.concatenate([own, *means], axis=1)
