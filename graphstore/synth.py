"""Synthetic XS-Video in the released file's format, calibrated to the published statistics.

The generative story (per video): a platform, a post time, a topic (long-tailed popularity, with a
latent heat), a poster (long-tailed activity, with a latent reach), a latent appeal and a hidden
late-growth surprise. Interactions grow as 1 - exp(-age / tau) with a per-video tau (flat by about
day 10); the level is computed from the interactions at 14 days, aligned to the reference platform,
with the published thresholds. Early counts are noisy: a sample's observed counts carry a shared
log-normal error whose spread shrinks with the observation age (about 0.8 at a few hours, 0.07
after ten days), as early interaction counts on real platforms are dominated by how the feed
happened to push the video in its first hours.

What the graph adds: the level's log-scale driver is appeal + topic heat + author reach + hidden.
A sample's own counts see their sum through the age-dependent noise; the author's other samples
(same-author edges) and the topic's other samples (same-topic edges) see reach and heat through
many independent noise draws, and earlier states of the same video (history edges) see appeal. Growth speed (tau) is
mostly the author's, so the author's older videos also show how far a young one will grow.
`hidden` (std 0.35) is visible to nobody. `write_latents` stores the latents per sample so that a
benchmark can fit an upper bound on what the graph holds (own features + true heat and reach). Crawl states are at least 2 days apart; the state at 14+ days after
posting is the final state. Count targets (samples, videos, comments, history, same-author and
same-topic edges) are met by bisection on the realised graph, so they hold at every seed.

Growth with scale. `scale` multiplies videos (and so samples, comments, history edges) over the same
39-day window. Up to scale 1 the generator is calibrated on the published counts: 535 topics, and
same-topic edges growing as scale^2 (a sample's in-neighbours are its topic's earlier samples, and
every topic grows with the data). Beyond scale 1 that rule would give 166 billion same-topic edges
at scale 10 from 535 topics of ~7,100 samples each, which describes no real crawl: a larger crawl
(more platforms, regions, a wider net of hashtags) brings more topics, not ten times larger ones.
So above scale 1 (`topics_at`, `topic_ranks`, `same_topic_target`):

- topics grow linearly, round(535 * scale), so the mean topic size stays at the published ~714 samples;
- the topic popularity is the published one, copied: each published popularity rank is shared by
  scale topics, so the distribution of topic sizes (and each sample's same-topic in-degree, ~4,300
  on average) stays as published, and same-topic edges grow linearly: published * scale^2 * 535 /
  topics, 16.6 billion at scale 10;
- authors grow linearly at every scale (0.36 per video, so the mean author activity is the
  published one), and same-author edges linearly: 53.7 million at scale 10.

At scale <= 1 nothing changes (the files are byte for byte those of the earlier generator).
"""
from __future__ import annotations

import calendar
import math
import os
import re
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import orjson
from tqdm import tqdm

from graphstore.errors import UserError
from graphstore.schema import DAY, INTERACTION_THRESHOLDS, PLATFORMS, VIEW_THRESHOLDS, XSVIDEO_KEYS

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
_EN_TO_ZH = {v: k for k, v in XSVIDEO_KEYS.items()}


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


def _start_ts() -> int:
    return calendar.timegm(datetime.fromisoformat(WINDOW_START).timetuple())


def bucket_edges(key: np.ndarray, day: np.ndarray) -> int:
    """Edges of a bucket relation: per key, (m^2 + sum over days of c_d^2) / 2 (self edges once)."""
    _, m = np.unique(key, return_counts=True)
    _, c = np.unique(key.astype(np.int64) * 4096 + day, return_counts=True)
    return int(((m.astype(np.int64) ** 2).sum() + (c.astype(np.int64) ** 2).sum()) // 2)


def _bisect(f: Callable[[float], float], target: float, lo: float, hi: float, iters: int = 40) -> float:
    """x in [lo, hi] with f(x) ~ target for an increasing f."""
    for _ in range(iters):
        mid = (lo + hi) / 2
        if f(mid) < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


# --- schedule: post times and crawl states ------------------------------------------------
@dataclass
class _Schedule:
    video: np.ndarray  # per state: video index
    day: np.ndarray  # per state: crawl day (0 = window start)
    final: np.ndarray  # per state: final-state flag
    rank: np.ndarray  # per state: index among the video's states


def _post_days(n: int, test_weight: float, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Post time in days from the window start: before the cutoff or (with test_weight) after it."""
    early = -10.0 + u * (CUTOFF_DAY + 1 + 10.0)
    late = (CUTOFF_DAY + 1) + u * (WINDOW_DAYS - CUTOFF_DAY - 1)
    return np.where(v < test_weight, late, early)


def _schedule(post: np.ndarray, k_draw: np.ndarray, r: dict[str, np.ndarray]) -> _Schedule:
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
    return _Schedule(vid[order], d[order], fin[order], rank[order])


def _schedule_randoms(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    return {
        "offset": rng.choice(3, size=n, p=(0.45, 0.35, 0.2)),
        "extra": rng.choice(3, size=n, p=(0.6, 0.3, 0.1)),
        "crawled_to_end": rng.random(n) < 0.9,
        "gaps": rng.choice(np.arange(2, 7), size=(n, 4), p=(0.3, 0.25, 0.2, 0.15, 0.1)),
        "u_post": rng.random(n), "v_post": rng.random(n), "u_k": rng.random((n, 4)),
        "time_of_day": rng.random(n),
    }


def _k_draw(u_k: np.ndarray, p: float) -> np.ndarray:
    """States wanted per video, 2 + Binomial(2, p): tight enough to match the history-edge count."""
    return 2 + (u_k[:, :2] < p).sum(1)


# --- keys: topics and authors ----------------------------------------------------------------
def _topic_of_video(n_videos: int, n_topics: int, s: float, perm: np.ndarray) -> np.ndarray:
    """Topic per video by largest-remainder quotas of a Zipf(s) popularity over the published ranks (`topic_ranks`)."""
    p = (topic_ranks(n_topics) + 1).astype(np.float64) ** -s
    p /= p.sum()
    quota = np.floor(p * n_videos).astype(np.int64)
    rest = n_videos - quota.sum()
    quota[np.argsort(-(p * n_videos - quota), kind="stable")[:rest]] += 1
    return np.repeat(np.arange(n_topics), quota)[perm]


def _author_of_video(z: np.ndarray, sigma: float, u: np.ndarray) -> np.ndarray:
    """Author per video drawn by inverse CDF from lognormal(sigma) activity weights."""
    w = np.exp(sigma * z)
    cdf = np.cumsum(w)
    return np.minimum(np.searchsorted(cdf / cdf[-1], u), len(z) - 1)


# --- interactions and levels ---------------------------------------------------------------
INDICATORS = ("views", "likes", "shares", "collects", "comment_count")


def level_of(views, likes, shares, collects, comments) -> np.ndarray:
    """Vectorised published thresholds (a level k if any indicator exceeds its level-k threshold)."""
    inter = np.maximum.reduce([likes, shares, collects, comments])
    level = np.zeros(len(views), np.int8)
    for k in range(9):
        level = np.where((views > VIEW_THRESHOLDS[k]) | (inter > INTERACTION_THRESHOLDS[k]), k + 1, level)
    return level


def _growth(age: np.ndarray, tau: np.ndarray, boost: np.ndarray) -> np.ndarray:
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


# --- text --------------------------------------------------------------------------------------
_CHARS = ("的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面"
          "而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把"
          "性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质"
          "气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活"
          "设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则")
_HOOKS = ("必看", "震撼", "爆笑", "教程", "揭秘", "第一次", "挑战", "干货", "现场", "独家")


# Text lengths in words of 2-3 characters: lognormal (median, sigma), clipped to [min, max]. Calibrated
# so that the full-scale file is about 702 MB, as the released one, while a sample's JSON stays mostly
# at 200-500 Qwen2-VL-like tokens (`qwen_like_tokens`) with a few in the thousands: most captions and
# comments are short, a long tail of long descriptions and much-commented samples carries the bytes.
TITLE_WORDS = (6.0, 0.45, 2, 30)
DESCRIPTION_WORDS = (20.0, 1.4, 3, 2500)
COMMENT_WORDS = (16.0, 1.2, 1, 400)
COMMENT_CONCENTRATION = 1.5  # comments listed per sample grow as (1 + comment count) ** this
_PUNCTUATION = ("，", "。", "！", "？", "、")
_TOKEN_RUNS = re.compile(r"(\d)|([\u3000-\u9fff\uf900-\ufaff\uff00-\uffef]+)|([A-Za-z]+)|(\s+)|([^\w\s]+)|(.)", re.S)
CJK_CHARS_PER_TOKEN = 1.5


def qwen_like_tokens(text: str) -> int:
    """Approximate Qwen2(-VL) token count: one per digit (its pre-tokenizer splits digits), 1.5 CJK
    characters a token, 4 Latin letters a token, 2 punctuation marks a token, whitespace free."""
    n = 0
    for digit, cjk, latin, _space, punct, other in _TOKEN_RUNS.findall(text):
        if digit or other:
            n += 1
        elif cjk:
            n += math.ceil(len(cjk) / CJK_CHARS_PER_TOKEN)
        elif latin:
            n += math.ceil(len(latin) / 4)
        elif punct:
            n += math.ceil(len(punct) / 2)
    return n


def _vocabulary(rng: np.random.Generator, size: int) -> list[str]:
    chars = np.array(list(_CHARS))
    words = {"".join(rng.choice(chars, size=int(rng.integers(2, 4)))) for _ in range(size * 2)}
    return sorted(words)[:size]


def _prose_vocabulary(vocab: list[str]) -> list[str]:
    """The words plus about one in five followed by a punctuation mark, for running text."""
    return vocab + [w + _PUNCTUATION[i % len(_PUNCTUATION)] for i, w in enumerate(vocab[: len(vocab) // 4])]


def _length(rng: np.random.Generator, spec: tuple[float, float, int, int]) -> int:
    median, sigma, lo, hi = spec
    return int(min(hi, max(lo, round(rng.lognormal(math.log(median), sigma)))))


def _words(rng: np.random.Generator, vocab: list[str], n: int) -> str:
    return "".join(vocab[i] for i in rng.integers(0, len(vocab), n))


def _video_text(rng: np.random.Generator, vocab: list[str], prose: list[str], topic_words: list[int],
                topic_name: str, appeal: float) -> tuple[str, str]:
    """(title, description) of one video: a hook word more likely for appealing videos, topic words, hashtags."""
    hook = _HOOKS[int(rng.integers(len(_HOOKS)))] if appeal + rng.normal(0, 0.8) > 1.0 else ""
    tw = [vocab[i] for i in rng.choice(topic_words, 2, replace=False)]
    title = hook + tw[0] + _words(rng, vocab, _length(rng, TITLE_WORDS)) + tw[1]
    tags = "".join(f"#{_words(rng, vocab, 2)}#" for _ in range(int(rng.integers(0, 4))))
    return title, _words(rng, prose, _length(rng, DESCRIPTION_WORDS)) + f"#{topic_name}#" + tags


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


# --- the generator --------------------------------------------------------------------------
WRITE_RECORDS = 2048  # records serialised per write: the writer holds one block of JSON text at a time
LATENT_ROWS = 1 << 20  # rows per latent-table write (pyarrow's default row group: the same file as one write)


@dataclass
class _Plan:
    """Every per-video and per-sample number of a synthetic file; the text is drawn while writing."""

    seed: int
    ns: int
    vid_of: np.ndarray  # per sample (schedule order): video
    final: np.ndarray  # per sample: final-state flag
    ctime_ts: np.ndarray  # per sample: current time
    counts: dict[str, np.ndarray]  # per sample: fans and INDICATORS
    null_mask: dict[str, np.ndarray]  # per sample: count written as null
    n_comments: np.ndarray  # per sample: comments listed
    sample_ids: np.ndarray  # per sample
    order: np.ndarray  # write order (crawl order) of the samples
    first_state: np.ndarray  # per video: its first sample
    topic_v: np.ndarray
    platform_v: np.ndarray
    author_v: np.ndarray
    appeal_v: np.ndarray
    post_ts_v: np.ndarray
    level_v: np.ndarray
    dur_v: np.ndarray
    author_ids: np.ndarray  # per author
    vocab: list[str]
    topic_words: list[list[int]]
    topic_names: list[str]
    latents_v: dict[str, np.ndarray]  # per video: the latent columns of the side-car
    latents_s: dict[str, np.ndarray]  # per sample: the latent columns of the side-car


def synthesize(out_path: str | Path, scale: float = 0.01, seed: int = 0, fmt: str = "xsvideo",
               progress: bool = True) -> SynthSummary:
    """Write a synthetic XS-Video file (format 'xsvideo' JSON object or 'jsonl') and return its counts.

    Streams: records are serialised and written a block at a time (memory independent of the text);
    what stays in memory is the plan, about 120 bytes per sample and 100 per video.
    """
    if not 0 < scale <= 10:
        raise UserError(f"--scale must be in (0, 10], got {scale}")
    if fmt not in ("xsvideo", "jsonl"):
        raise UserError(f"--format must be 'xsvideo' or 'jsonl', got {fmt!r}")
    out_path = Path(out_path)
    if not out_path.parent.is_dir():
        raise UserError(f"{out_path.parent}: no such directory")
    plan, summary = _plan(out_path, scale, seed)
    tmp = out_path.with_name(out_path.name + ".tmp")
    latents = latents_path(out_path)
    try:
        _write_records(plan, tmp, fmt, progress)
        write_latents(latents, _latent_blocks(plan))
        os.replace(tmp, out_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return summary


def _plan(out_path: Path, scale: float, seed: int) -> tuple[_Plan, SynthSummary]:
    """Draw and calibrate every number of the file (no text); returns the plan and the summary it implies."""
    rng = np.random.default_rng(seed)
    nv = max(20, round(FULL["videos"] * scale))
    target_samples = FULL["samples"] * nv / FULL["videos"]
    target_test = FULL["test"] / FULL["samples"]

    # 1. Schedule: calibrate the test-period post weight and the states-per-video draw.
    r = _schedule_randoms(rng, nv)

    def build(test_w: float, p: float) -> tuple[np.ndarray, _Schedule]:
        post = _post_days(nv, test_w, r["u_post"], r["v_post"])
        return post, _schedule(post, _k_draw(r["u_k"], p), r)

    p_k, test_w = 0.6, 0.2
    for _ in range(3):
        p_k = _bisect(lambda p: len(build(test_w, p)[1].day), target_samples, 0.0, 1.0, iters=25)

        def test_share(w: float) -> float:
            post, sch = build(w, p_k)
            return float((np.floor(post[sch.video]) > CUTOFF_DAY).mean())

        test_w = _bisect(test_share, target_test, 0.0, 1.0, iters=25)
    post, sch = build(test_w, p_k)
    ns = len(sch.day)
    vid_of = sch.video

    # 2. Topics: Zipf exponent calibrated so that same-topic edges match the growth rule's target.
    n_topics = topics_at(scale)
    perm = rng.permutation(nv)
    target_topic = same_topic_target(ns, n_topics)
    s_topic = _bisect(lambda s: bucket_edges(_topic_of_video(nv, n_topics, s, perm)[vid_of], sch.day),
                      target_topic, 0.0, 3.0, iters=30)
    topic_v = _topic_of_video(nv, n_topics, s_topic, perm)
    del perm

    # 3. Authors: activity spread calibrated so that same-author edges match (linear in scale).
    n_auth = max(2, round(nv * AUTHORS_PER_VIDEO))
    z_auth, u_auth = rng.standard_normal(n_auth), rng.random(nv)
    target_author = FULL["same_author"] * ns / FULL["samples"]
    s_auth = _bisect(lambda s: bucket_edges(_author_of_video(z_auth, s, u_auth)[vid_of], sch.day),
                     target_author, 0.0, 4.0, iters=30)
    author_v = _author_of_video(z_auth, s_auth, u_auth)
    del z_auth, u_auth

    # 4. Latents and interactions.
    platform_v = rng.choice(5, size=nv, p=PLATFORM_SHARES)
    heat_t = 0.8 * rng.standard_normal(n_topics) - 0.25 * np.log1p(topic_ranks(n_topics)) / np.log(FULL["topics"])
    reach_a = 1.0 * rng.standard_normal(n_auth)
    appeal_v = 0.5 * rng.standard_normal(nv)
    appeal_v += (rng.random(nv) < 0.03) * rng.normal(2.5, 0.8, nv)  # a few viral videos: the long tail
    hidden_v = 0.35 * rng.standard_normal(nv)  # not visible in early states
    zero_v = rng.random(nv) < 0.006
    log_likes14 = np.log(42.0) + appeal_v + heat_t[topic_v] + reach_a[author_v] + hidden_v
    # growth speed is mostly the author's audience's: the author's other videos show it
    tau_v = np.clip(rng.uniform(1.5, 4.0, n_auth)[author_v] * np.exp(0.15 * rng.standard_normal(nv)), 1.2, 5.0)
    boost_v = np.where(rng.random(nv) < 0.15, np.exp(rng.normal(0.6, 0.4, nv)), 1.0)
    ratios = {
        "likes": np.ones(nv),
        "shares": np.exp(rng.normal(np.log(0.12), 0.7, nv)),
        "collects": np.exp(rng.normal(np.log(0.18), 0.7, nv)),
        "comment_count": np.exp(rng.normal(np.log(0.07), 0.7, nv)),
        "views": np.exp(rng.normal(np.log(45.0), 0.6, nv)),
    }
    aligned14 = {k: np.where(zero_v, 0.0, np.exp(log_likes14) * v) for k, v in ratios.items()}
    del ratios, log_likes14, zero_v
    level_v = level_of(*(aligned14[k] for k in INDICATORS))
    factor_v = np.asarray(PLATFORM_FACTORS)[platform_v]

    start = _start_ts()
    post_ts_v = start + np.round(post * DAY).astype(np.int64)
    ctime_ts = start + sch.day * DAY + np.round(r["time_of_day"][vid_of] * 0.3 * DAY + 8 * 3600).astype(np.int64)
    del r
    ctime_ts = np.maximum(ctime_ts, post_ts_v[vid_of] + 600)
    age = (ctime_ts - post_ts_v[vid_of]) / DAY
    g = _growth(age, tau_v[vid_of], boost_v[vid_of])
    noise = np.exp(rng.normal(0, 0.06, (len(INDICATORS), ns)))
    early_noise = observation_noise(age) * rng.standard_normal(ns)  # shared by the sample's indicators
    counts = {}
    exp_noise, factor_s = np.exp(early_noise), factor_v[vid_of]
    for i, k in enumerate(INDICATORS):
        counts[k] = np.floor(aligned14[k][vid_of] * g * noise[i] * exp_noise / factor_s).astype(np.int64)
    del g, noise, exp_noise, factor_s, aligned14, factor_v
    fans_base = np.exp(np.log(3000.0) + 1.0 * reach_a + 1.2 * rng.standard_normal(n_auth))
    counts["fans"] = np.floor(fans_base[author_v[vid_of]] * (1 + 0.002 * sch.day)).astype(np.int64)
    del fans_base
    null_mask = {k: rng.random(ns) < 0.02 for k in (*INDICATORS, "fans")}
    null_mask["collects"] |= (platform_v[vid_of] == 3) & (rng.random(ns) < 0.3)

    # 5. Comments listed per sample: Poisson, heavier for much-commented samples, mean calibrated.
    w = (1.0 + counts["comment_count"]) ** COMMENT_CONCENTRATION
    lam = np.minimum(w / w.mean() * FULL["comments"] / FULL["samples"], 400.0)
    del w
    lam *= FULL["comments"] / FULL["samples"] / lam.mean()
    n_comments = rng.poisson(lam)
    del lam

    # 6. Durations: a mode near 7 s and a second one near 38 s, 1 s to 5 min.
    dur_v = np.where(rng.random(nv) < 0.62, rng.lognormal(np.log(8.0), 0.45, nv), rng.lognormal(np.log(40.0), 0.55, nv))
    dur_v = np.clip(np.round(dur_v), 1, 300)

    # 7. Identifiers and text.
    sample_ids = 7_300_000_000 + np.cumsum(rng.integers(1, 40, ns))
    sample_ids = sample_ids[rng.permutation(ns)]
    author_ids = 1_000_000_000 + rng.choice(9_000_000_000, size=n_auth, replace=False)
    vocab = _vocabulary(rng, 3000)
    topic_words = [list(rng.choice(len(vocab), 4, replace=False)) for _ in range(n_topics)]
    topic_names = []
    seen = set()
    for t in range(n_topics):
        name = "".join(vocab[i] for i in topic_words[t][:2])
        while name in seen:
            name += vocab[int(rng.integers(len(vocab)))][0]
        seen.add(name)
        topic_names.append(name)

    k_per_video = np.bincount(vid_of, minlength=nv)
    ctime_day = (ctime_ts - start) // DAY  # calendar day of the written current time
    post_day_of_state = np.floor(post[vid_of])
    summary = SynthSummary(
        path=str(out_path), scale=scale, seed=seed, videos=nv, samples=ns, comments=int(n_comments.sum()),
        history=int((k_per_video * (k_per_video - 1) // 2).sum()),
        same_author=bucket_edges(author_v[vid_of], ctime_day), same_topic=bucket_edges(topic_v[vid_of], ctime_day),
        topics=int(len(np.unique(topic_v))), train_by_post_date=int((post_day_of_state <= CUTOFF_DAY).sum()),
        test_by_post_date=int((post_day_of_state > CUTOFF_DAY).sum()), final_states=int(sch.final.sum()),
        level_counts=np.bincount(level_v[vid_of], minlength=10).tolist(),
    )
    del k_per_video, ctime_day, post_day_of_state
    plan = _Plan(
        # index arrays as int32 (4 bytes a sample; values unchanged)
        seed=seed, ns=ns, vid_of=vid_of.astype(np.int32), final=sch.final, ctime_ts=ctime_ts, counts=counts,
        null_mask=null_mask, n_comments=n_comments.astype(np.int32), sample_ids=sample_ids,
        order=np.lexsort((sample_ids, ctime_ts)).astype(np.int32),  # crawl order
        first_state=np.searchsorted(vid_of, np.arange(nv)), topic_v=topic_v, platform_v=platform_v,
        author_v=author_v, appeal_v=appeal_v, post_ts_v=post_ts_v, level_v=level_v, dur_v=dur_v,
        author_ids=author_ids, vocab=vocab, topic_words=topic_words, topic_names=topic_names,
        latents_v={"topic_heat": heat_t[topic_v], "author_reach": reach_a[author_v], "appeal": appeal_v,
                   "hidden": hidden_v, "tau": tau_v, "boost": boost_v},
        latents_s={"early_noise": early_noise, "age_days": age},
    )
    return plan, summary


def _write_records(plan: _Plan, path: Path, fmt: str, progress: bool) -> None:
    """Serialise the samples in crawl order, as a crawler would have appended them, a block at a time."""
    p = plan
    ns, seed = p.ns, p.seed
    comment_id = 90_000_000_000
    text_rng = np.random.default_rng(seed + 1)
    prose = _prose_vocabulary(p.vocab)
    count_keys = ("fans", "likes", "views", "shares", "collects", "comment_count")
    with open(path, "wb") as f, tqdm(total=ns, desc="synth", unit="sample", disable=not progress, mininterval=1.0) as bar:
        f.write(b"{\n" if fmt == "xsvideo" else b"")
        for block_start in range(0, ns, WRITE_RECORDS):
            block = p.order[block_start:block_start + WRITE_RECORDS]
            counts = {k: p.counts[k][block].tolist() for k in count_keys}
            nulls = {k: p.null_mask[k][block].tolist() for k in count_keys}
            parts = []
            for i, s in enumerate(block.tolist()):
                j = block_start + i
                v = int(p.vid_of[s])
                t, pf = int(p.topic_v[v]), int(p.platform_v[v])
                # a video's text is the same in all of its states
                title, desc = _video_text(np.random.default_rng([seed, v]), p.vocab, prose, p.topic_words[t],
                                          p.topic_names[t], float(p.appeal_v[v]))
                cts = []
                lo, hi = int(p.post_ts_v[v]), int(p.ctime_ts[s])
                for c in range(int(p.n_comments[s])):
                    comment_id += int(text_rng.integers(1, 9))
                    when = lo + int(text_rng.random() * max(1, hi - lo))
                    cts.append((str(comment_id), _words(text_rng, prose, _length(text_rng, COMMENT_WORDS)), _fmt_ts(when)))
                history = [str(x) for x in p.sample_ids[int(p.first_state[v]):s].tolist()]
                rec = {
                    "url": _url(pf, v), "level": int(p.level_v[v]), "platform": PLATFORMS[pf],
                    "final_state": bool(p.final[s]), "post_time": _fmt_ts(int(p.post_ts_v[v])), "description": desc,
                    "title": title, "duration_s": int(p.dur_v[v]),
                    "current_time": _fmt_ts(int(p.ctime_ts[s]), date_only=bool(s % 3 == 0)),
                    **{k: (None if nulls[k][i] else counts[k][i]) for k in count_keys},
                    "topic": p.topic_names[t], "history": history, "author_id": str(p.author_ids[p.author_v[v]]),
                }
                sid = str(p.sample_ids[s])
                if fmt == "jsonl":
                    rec = {"id": sid, **rec, "comments": [{"id": a, "text": b, "time": c} for a, b, c in cts]}
                    parts.append(orjson.dumps(rec) + b"\n")
                else:
                    zh = {_EN_TO_ZH[k]: val for k, val in rec.items()}
                    zh[_EN_TO_ZH["comments"]] = {a: {"评论内容": b, "评论时间": c} for a, b, c in cts}
                    parts.append(b'"' + sid.encode() + b'": ' + orjson.dumps(zh) + (b",\n" if j < ns - 1 else b"\n"))
            f.write(b"".join(parts))
            bar.update(len(block))
        f.write(b"}\n" if fmt == "xsvideo" else b"")


def _latent_blocks(plan: _Plan) -> Iterator[dict[str, np.ndarray]]:
    """The side-car's columns in schedule order, LATENT_ROWS samples at a time."""
    for lo in range(0, max(plan.ns, 1), LATENT_ROWS):
        hi = min(plan.ns, lo + LATENT_ROWS)
        vid = plan.vid_of[lo:hi]
        block = {"sample_id": plan.sample_ids[lo:hi].astype(str)}
        block.update({k: v[vid] for k, v in plan.latents_v.items()})
        block.update({k: v[lo:hi] for k, v in plan.latents_s.items()})
        block["level"] = plan.level_v[vid].astype(np.int8)
        yield block


_URL = ("https://www.douyin.com/video/{}", "https://www.kuaishou.com/short-video/{}",
        "https://www.ixigua.com/{}", "https://www.toutiao.com/video/{}", "https://www.bilibili.com/video/av{}")


def _url(platform: int, video: int) -> str:
    return _URL[platform].format(7_400_000_000_000 + video * 7919)


def _fmt_ts(ts: int, date_only: bool = False) -> str:
    dt = datetime.fromtimestamp(ts, tz=timezone.utc)
    return dt.strftime("%Y-%m-%d") if date_only else dt.strftime("%Y-%m-%d %H:%M:%S")


def summary_dict(summary: SynthSummary) -> dict:
    """The summary as a JSON-ready dict with each full-scale target's relative error."""
    d = asdict(summary)
    expected = expected_counts(summary.scale)
    # at tiny scales the file keeps a floor of 20 videos while a target falls to 0: no relative error then
    d["rel_err_vs_published"] = {k: round(d[k] / v - 1, 4) if v > 0 else None for k, v in expected.items()}
    return d
