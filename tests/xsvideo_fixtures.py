"""Small hand-made XS-Video inputs for build tests (format 1 and JSON Lines)."""
from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import numpy as np

from graphstore.schema import ATTRIBUTE_RELATIONS, PLATFORMS, XSVIDEO_KEYS

_ZH = {v: k for k, v in XSVIDEO_KEYS.items()}


def make_records(n_videos: int = 40, seed: int = 0) -> dict[str, dict]:
    """Random English-keyed records with same-day ties, nulls, comments and history lists."""
    rng = np.random.default_rng(seed)
    records: dict[str, dict] = {}
    sid = 1000
    for v in range(n_videos):
        topic = f"话题{rng.integers(0, 4)}"
        author = f"u{rng.integers(0, 6)}"
        post_day = int(rng.integers(1, 30))
        n_states = int(rng.integers(1, 4))
        days = post_day + np.cumsum(rng.integers(2, 5, size=n_states))
        history: list[str] = []
        for k, day in enumerate(days):
            sid += int(rng.integers(1, 3))
            comments = [
                {"id": f"c{sid}_{j}", "text": f"评论{j}", "time": f"2024-12-{min(28, int(day)):02d} 1{j % 10}:00:00"}
                for j in range(int(rng.integers(0, 3)))
            ]
            records[str(sid)] = {
                "id": str(sid), "url": f"https://v/{v}", "level": int(rng.integers(0, 10)),
                "platform": PLATFORMS[int(rng.integers(0, 5))], "final_state": bool(k == n_states - 1 and rng.random() < 0.5),
                "post_time": f"2024-11-{post_day:02d} 08:00:00" if post_day <= 30 else "2024-12-01 08:00:00",
                "description": f"描述{v}", "title": f"标题{v}", "duration_s": float(rng.integers(1, 300)),
                "comments": comments,
                "current_time": f"2024-12-{min(31, int(day)):02d}" if k % 2 else f"2024-12-{min(31, int(day)):02d} 09:30:00",
                "fans": None if rng.random() < 0.2 else int(rng.integers(0, 10**6)),
                "likes": int(rng.integers(0, 10**4)), "views": None if rng.random() < 0.2 else int(rng.integers(0, 10**7)),
                "shares": int(rng.integers(0, 100)), "collects": int(rng.integers(0, 100)),
                "comment_count": len(comments), "topic": topic, "history": list(history), "author_id": author,
            }
            history.append(str(sid))
    return records


def with_learnable_levels(records: dict[str, dict], seed: int = 0) -> dict[str, dict]:
    """Log-uniform likes and level = int(2 * log10(likes + 1)), in place: labels the likes features determine.

    make_records draws levels uniformly at random, unrelated to any input: a model's training loss
    still falls on them (it fits the mean), so a test of learning needs labels like these.
    """
    rng = np.random.default_rng(seed)
    for r in records.values():
        r["likes"] = int(10 ** rng.uniform(0, 4.9))
        r["level"] = min(9, int(2 * np.log10(r["likes"] + 1)))
    return records


def to_xsvideo(records: dict[str, dict]) -> dict[str, dict]:
    """Format 1: Chinese keys, comments as an object keyed by comment id."""
    out = {}
    for sid, r in records.items():
        zh = {_ZH[k]: v for k, v in r.items() if k not in ("id", "comments")}
        zh[_ZH["comments"]] = {c["id"]: {"评论内容": c["text"], "评论时间": c["time"]} for c in r["comments"]}
        out[sid] = zh
    return out


def write_xsvideo(path: Path, records: dict[str, dict]) -> Path:
    path.write_text(json.dumps(to_xsvideo(records), ensure_ascii=False))
    return path


def write_jsonl(path: Path, records: dict[str, dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records.values()))
    return path


def _ctime_day(text: str) -> int:
    """Calendar day number of a current-time string (a date or a datetime)."""
    return (datetime.fromisoformat(text) - datetime(1970, 1, 1)).days


def brute_force_in_neighbors(records: dict[str, dict]) -> dict[str, dict[str, set[str]]]:
    """relation -> tail sample id -> keys of its in-neighbours, straight from the rules in plain Python.

    Keys name a head by what the input says it is: a sample id (videos, and the per-sample attribute
    nodes), a comment id, a topic text or a platform name. Video-video rules: u -> v iff same topic
    (author) and ctime day of u <= that of v; history: every id in v's history list.
    """
    out: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    day = {sid: _ctime_day(r["current_time"]) for sid, r in records.items()}
    for v, rv in records.items():
        out["is_platform_of"][v].add(rv["platform"])
        out["is_topic_of"][v].add(rv["topic"])
        for rel in ATTRIBUTE_RELATIONS.values():
            out[rel][v].add(v)
        out["is_comment_of"][v].update(c["id"] for c in rv["comments"])
        out["is_history_of"][v].update(rv["history"])
        for u, ru in records.items():
            if day[u] <= day[v]:
                if ru["topic"] == rv["topic"]:
                    out["has_same_topic_as"][v].add(u)
                if ru["author_id"] == rv["author_id"]:
                    out["has_same_author_as"][v].add(u)
    return {rel: dict(by_tail) for rel, by_tail in out.items()}


def head_keys(store) -> dict[str, list[str]]:
    """Node type -> key of every node (as brute_force_in_neighbors names heads), read from the store's tables."""
    sids = store.sample_ids()
    keys = {t: sids for t in ATTRIBUTE_RELATIONS}
    keys["video"] = sids
    keys["comment"] = store.comments_table(["comment_id"]).column(0).to_pylist()
    keys["topic"] = list(store.meta["topics"])
    keys["platform"] = list(store.meta["platforms"])
    return keys


def file_digests(root: Path) -> dict[str, str]:
    """sha256 of every file below `root`, keyed by relative path (to show a directory did not change)."""
    import hashlib

    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(root).rglob("*")) if p.is_file()}


def make_tiny_llm(store: Path, out: Path, **kwargs) -> Path:
    """tools/make_tiny_llm.py's make_tiny_llm (the tool is a script, not a package module)."""
    import importlib.util

    tool = Path(__file__).parents[1] / "tools" / "make_tiny_llm.py"
    spec = importlib.util.spec_from_file_location("make_tiny_llm", tool)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.make_tiny_llm(store, out, **kwargs)
