"""Known levels of train samples as node inputs (the "label trick" of UniMP, Shi et al. 2021, and of
the OGB node-property leaderboards).

An author's and a topic's other videos carry what a sample's own counts cannot show: how far this
author's and this topic's videos usually spread. Their counts say it only through noisy early
observations; the final levels of the train videos among them say it directly. So every video node
of a batch gets two input columns: its level (scaled to [0, 1]) and a mask that says whether the
level is shown. A level is shown only when the node belongs to a train video that is not one of the
batch's seed videos; the levels of val and test samples, and of final states (in no split), are
never read. Masking by *video* (the connected components of the history relation), not by node,
matters: a video's states share one label, and an earlier state of the seed's own video in its
author bucket would otherwise hand the model its answer.

At evaluation the seeds are val or test samples, whose levels are hidden anyway, and every train
video's level is shown: what a deployed model knows about the past. In training, `drop` also hides
that share of the other train levels at random, so the model learns to use them without relying on
how many there are (recent neighbours of test samples are test samples, whose levels are unknown).

The seeds also get exact statistics of the levels shown in their whole author and topic buckets
(mean and log count over all train in-neighbours, leaving out the seed's own video): the aggregate
that 10 sampled neighbours only estimate. They enter after message passing, added to the seed's
embedding, never as a node input: another node's bucket statistics may count the seed's own level
(an earlier state of the seed's video sits in its bucket prefix), and a seed that is also sampled
as another seed's neighbour is one row of the batch, so as node inputs they would pass one seed's
level to another seed and back to itself in training."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graphstore.store import GraphStore

from .rgcn import MAX_LEVEL

BUCKET_RELATIONS = ("has_same_author_as", "has_same_topic_as")
LABEL_COLUMNS = 2  # per video node: (level / MAX_LEVEL if shown else 0, shown)
LABEL_INPUT = "video_label"  # the x_dict key of these columns (appended to the scaled video inputs)
# per seed and bucket relation: mean shown level / MAX_LEVEL over the bucket's train in-neighbours
# outside the seed's video, log1p(their count)
SEED_STAT_COLUMNS = 2 * len(BUCKET_RELATIONS)
SEED_STAT_INPUT = "seed_label_stats"  # the x_dict key of these [batch_size, SEED_STAT_COLUMNS] rows


def video_components(store: GraphStore) -> np.ndarray:
    """Per video node, an id shared by the states of one video (connected components of is_history_of)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = store.num_nodes("video")
    rels = store.topology.relations
    if "is_history_of" not in rels:
        return np.arange(n, dtype=np.int64)
    rel = rels["is_history_of"]
    indptr, src = np.asarray(rel.indptr, dtype=np.int64), np.asarray(rel.indices, dtype=np.int64)
    dst = np.repeat(np.arange(n, dtype=np.int64), np.diff(indptr))
    graph = coo_matrix((np.ones(src.size, dtype=np.int8), (src, dst)), shape=(n, n))
    return connected_components(graph, directed=False)[1].astype(np.int64)


@dataclass(frozen=True)
class KnownLabels:
    """The train levels a model may read (NaN elsewhere) and each video node's video id."""

    level: np.ndarray  # float32 [num_video]: the level of train samples, NaN for every other node
    video: np.ndarray  # int64 [num_video]: video id (history component)
    bucket_stats: np.ndarray  # float32 [num_video, SEED_STAT_COLUMNS]

    @classmethod
    def of_store(cls, store: GraphStore) -> "KnownLabels":
        """The train split's levels of a store; nothing of val, test or final states."""
        level = np.full(store.num_nodes("video"), np.nan, dtype=np.float32)
        train = store.split("train")
        level[train] = store.labels()[train].astype(np.float32)
        return cls.from_levels(store, level)

    @classmethod
    def from_levels(cls, store: GraphStore, level: np.ndarray, video: np.ndarray | None = None) -> "KnownLabels":
        """KnownLabels showing `level` (NaN: unknown) on the store's graph."""
        level = np.asarray(level, dtype=np.float32)
        video = video_components(store) if video is None else video
        rels = store.topology.relations
        stats = [bucket_level_stats(rels[r], level, video) if r in rels else np.zeros((level.size, 2), np.float32)
                 for r in BUCKET_RELATIONS]
        return cls(level, video, np.concatenate(stats, axis=1))

    def columns(self, n_id: np.ndarray, batch_size: int, drop: float = 0.0,
                rng: np.random.Generator | None = None) -> np.ndarray:
        """[len(n_id), LABEL_COLUMNS] float32 inputs of a batch's video nodes (seeds first): levels of
        train videos other than the seeds' own, each also hidden with probability `drop` (needs rng)."""
        n_id = np.asarray(n_id, dtype=np.int64)
        level = self.level[n_id]
        video = self.video[n_id]
        shown = ~np.isnan(level) & ~np.isin(video, video[:batch_size])
        if drop > 0:
            shown &= rng.random(n_id.size) >= drop
        out = np.zeros((n_id.size, LABEL_COLUMNS), dtype=np.float32)
        out[shown, 0] = level[shown] / MAX_LEVEL
        out[:, 1] = shown
        return out


def bucket_level_stats(rel, level: np.ndarray, video: np.ndarray) -> np.ndarray:
    """[n, 2] float32 per node: mean shown level / MAX_LEVEL and log1p(count) over its in-neighbours in
    bucket relation `rel` whose level is known (not NaN) and whose video is not its own.

    In-neighbours are a prefix of the bucket, so prefix sums give every node's total in O(n); the
    node's own video's states inside that prefix are subtracted with a second prefix sum over the
    members sorted by (video, bucket position)."""
    n = level.size
    lo, hi = np.asarray(rel.lo, dtype=np.int64), np.asarray(rel.hi, dtype=np.int64)
    members = np.arange(n, dtype=np.int64) if rel.members is None else np.asarray(rel.members, dtype=np.int64)
    known = ~np.isnan(level)
    values = np.stack([np.where(known, level, 0.0), known], axis=1).astype(np.float64)
    sums = np.zeros((n + 1, 2))
    np.cumsum(values[members], axis=0, out=sums[1:])
    total = sums[hi] - sums[lo]
    position = np.empty(n, dtype=np.int64)
    position[members] = np.arange(n)
    key = video * (n + 1) + position  # members of one video, in bucket order
    order = np.argsort(key, kind="stable")
    own_sums = np.zeros((n + 1, 2))
    np.cumsum(values[order], axis=0, out=own_sums[1:])
    sorted_key = key[order]
    first = np.searchsorted(sorted_key, video * (n + 1))
    upto = np.searchsorted(sorted_key, video * (n + 1) + hi)  # own-video members before the prefix end
    total -= own_sums[upto] - own_sums[first]
    count = np.maximum(total[:, 1], 0.0)
    mean = np.where(count > 0, total[:, 0] / np.maximum(count, 1.0), 0.0) / MAX_LEVEL
    return np.stack([mean, np.log1p(count)], axis=1).astype(np.float32)


def known_labels(store: GraphStore, enabled: bool) -> KnownLabels | None:
    """The store's KnownLabels when the model reads labels (cfg.label_inputs), else None."""
    return KnownLabels.of_store(store) if enabled else None
