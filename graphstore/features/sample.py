"""Per-sample numeric features of a video node: its counts, observation age, history and place in
its author's and topic's buckets, as one float matrix in node order.

Every column describes the sample as observed at its own current time (no label, nothing later):
the counts, the age (current time - post time), the time since the video's previous crawled state
and the growth since it, and how many samples of the same author / topic were crawled on or before
its day (the bucket relations' in-degrees)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from graphstore.schema import COUNT_FIELDS, DAY, PLATFORMS

if TYPE_CHECKING:
    from graphstore.store import GraphStore

GROWTH_FIELDS = ("likes", "views", "comment_count")
DEGREE_RELATIONS = ("has_same_author_as", "has_same_topic_as", "is_history_of")


def sample_feature_names() -> list[str]:
    """Column names of `sample_features`, in order."""
    names = [f"log_{c}" for c in COUNT_FIELDS] + [f"{c}_missing" for c in COUNT_FIELDS]
    names += ["age_days", "log_age_days", "has_history", "days_since_history", "log_days_since_history"]
    names += [f"growth_{c}" for c in GROWTH_FIELDS]
    names += [f"log_degree_{r}" for r in DEGREE_RELATIONS]
    names += ["log_duration"] + [f"platform_{i}" for i in range(len(PLATFORMS))]
    return names


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
    return np.stack(cols, axis=1)
