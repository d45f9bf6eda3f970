"""`synthesize`: plan the whole synthetic crawl, then write it in the released format, one block at a time."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import numpy as np
import orjson
from tqdm import tqdm

from graphstore.errors import UserError
from graphstore.schema import DAY, PLATFORMS, XSVIDEO_KEYS
from graphstore.synth.counts import (
    AUTHORS_PER_VIDEO, CUTOFF_DAY, FULL, PLATFORM_FACTORS, PLATFORM_SHARES, SynthSummary, bisect, bucket_edges,
    expected_counts, same_topic_target, start_ts, topic_ranks, topics_at,
)
from graphstore.synth.levels import INDICATORS, growth, latents_path, level_of, observation_noise, write_latents
from graphstore.synth.schedule import (
    Schedule, author_of_video, crawl_schedule, crawl_state_counts, post_days, schedule_randoms, topic_of_video,
)
from graphstore.synth.text import (
    COMMENT_CONCENTRATION, COMMENT_WORDS, join_words, prose_vocabulary, text_length, video_text, vocabulary,
)

_EN_TO_ZH = {v: k for k, v in XSVIDEO_KEYS.items()}


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
    r = schedule_randoms(rng, nv)

    def build(test_w: float, p: float) -> tuple[np.ndarray, Schedule]:
        post = post_days(nv, test_w, r["u_post"], r["v_post"])
        return post, crawl_schedule(post, crawl_state_counts(r["u_k"], p), r)

    p_k, test_w = 0.6, 0.2
    for _ in range(3):
        p_k = bisect(lambda p: len(build(test_w, p)[1].day), target_samples, 0.0, 1.0, iters=25)

        def test_share(w: float) -> float:
            post, sch = build(w, p_k)
            return float((np.floor(post[sch.video]) > CUTOFF_DAY).mean())

        test_w = bisect(test_share, target_test, 0.0, 1.0, iters=25)
    post, sch = build(test_w, p_k)
    ns = len(sch.day)
    vid_of = sch.video

    # 2. Topics: Zipf exponent calibrated so that same-topic edges match the growth rule's target.
    n_topics = topics_at(scale)
    perm = rng.permutation(nv)
    target_topic = same_topic_target(ns, n_topics)
    s_topic = bisect(lambda s: bucket_edges(topic_of_video(nv, n_topics, s, perm)[vid_of], sch.day),
                      target_topic, 0.0, 3.0, iters=30)
    topic_v = topic_of_video(nv, n_topics, s_topic, perm)
    del perm

    # 3. Authors: activity spread calibrated so that same-author edges match (linear in scale).
    n_auth = max(2, round(nv * AUTHORS_PER_VIDEO))
    z_auth, u_auth = rng.standard_normal(n_auth), rng.random(nv)
    target_author = FULL["same_author"] * ns / FULL["samples"]
    s_auth = bisect(lambda s: bucket_edges(author_of_video(z_auth, s, u_auth)[vid_of], sch.day),
                     target_author, 0.0, 4.0, iters=30)
    author_v = author_of_video(z_auth, s_auth, u_auth)
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

    start = start_ts()
    post_ts_v = start + np.round(post * DAY).astype(np.int64)
    ctime_ts = start + sch.day * DAY + np.round(r["time_of_day"][vid_of] * 0.3 * DAY + 8 * 3600).astype(np.int64)
    del r
    ctime_ts = np.maximum(ctime_ts, post_ts_v[vid_of] + 600)
    age = (ctime_ts - post_ts_v[vid_of]) / DAY
    g = growth(age, tau_v[vid_of], boost_v[vid_of])
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
    vocab = vocabulary(rng, 3000)
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
    prose = prose_vocabulary(p.vocab)
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
                title, desc = video_text(np.random.default_rng([seed, v]), p.vocab, prose, p.topic_words[t],
                                          p.topic_names[t], float(p.appeal_v[v]))
                cts = []
                lo, hi = int(p.post_ts_v[v]), int(p.ctime_ts[s])
                for c in range(int(p.n_comments[s])):
                    comment_id += int(text_rng.integers(1, 9))
                    when = lo + int(text_rng.random() * max(1, hi - lo))
                    cts.append((str(comment_id), join_words(text_rng, prose, text_length(text_rng, COMMENT_WORDS)), _fmt_ts(when)))
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
