"""Ingest, build and featurize at the released file's text length, and the prompt lengths it gives.

    python bench/ingest_real_length.py --scale 1.0 --workdir /tmp/xs_real --json-out bench/results_ingest_real_length_1.0.json

Steps: synthesise (texts of the real length: ~700 MB at scale 1.0) -> `graphstore build --no-features`
(ingest + build) -> `graphstore featurize` with the hash text encoder, each in its own process with
its wall time and peak RSS; then, in this process, the MiniLM text encoder (`--text-encoder minilm`)
on a measured random sample of rows of each text type, extrapolated to every text row at full scale;
and the token lengths of the NetGPT prompt (netgpt/llm/prompt.py) of a random sample of videos under
the tiny tokenizer of tools/make_tiny_llm.py (or `--tokenizer DIR`, e.g. Qwen2-VL's) and under the
Qwen2-VL-like estimate, against the paper's "mostly 200-500 tokens, a few thousands".
Times at a scale below 1 are also given extrapolated linearly to scale 1.0.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from build_full import run_child  # bench/ is on sys.path when this file runs as a script
from graphstore.atomic import write_json
from graphstore.synth import FULL, qwen_like_tokens

ROOT = Path(__file__).resolve().parents[1]
TEXT_ROWS_FULL = {"title": FULL["samples"], "description": FULL["samples"], "comment": FULL["comments"]}
PAPER_RANGE = (200, 500)


def build_steps(scale: float, seed: int, work: Path) -> tuple[Path, dict]:
    """Synthesise, build and hash-featurize in child processes; (store path, timings)."""
    src, store = work / f"xsvideo_{scale}.json", work / f"store_{scale}"
    py, cli = sys.executable, ["-m", "graphstore.cli"]
    steps = {
        "synth": [py, *cli, "synth", "--scale", str(scale), "--seed", str(seed), "--out", str(src), "--overwrite"],
        "ingest_build": [py, *cli, "build", "--input", str(src), "--out", str(store), "--overwrite", "--no-features"],
        "featurize_hash": [py, *cli, "featurize", str(store), "--text-encoder", "hash", "--no-progress"],
    }
    out: dict = {}
    for name, cmd in steps.items():
        wall, rss = run_child(cmd)
        out[name] = {"seconds": wall, "peak_rss_gb": rss, "full_scale_seconds": round(wall / scale, 1)}
        print(f"{name}: {wall:.1f} s, peak RSS {rss:.2f} GB", flush=True)
    out["input_bytes"] = src.stat().st_size
    out["input_bytes_full_scale"] = round(src.stat().st_size / scale)
    return store, out


def text_rows(store_path: Path, n: int, seed: int) -> dict[str, list[str]]:
    """Up to `n` random texts of each text node type (title, description, comment)."""
    from graphstore.store import GraphStore

    store = GraphStore.open(store_path)
    rng = np.random.default_rng(seed)
    samples = store.samples_table(["title", "description"])
    texts = {c: samples.column(c).to_pylist() for c in ("title", "description")}
    texts["comment"] = store.comments_table(["text"]).column(0).to_pylist()
    return {t: [v[i] or "" for i in rng.choice(len(v), size=min(n, len(v)), replace=False)] for t, v in texts.items()}


def encoder_rates(spec: str, texts: dict[str, list[str]]) -> dict[str, float]:
    """Rows per second of one text encoder on each text type's sample (after one warm-up batch)."""
    from graphstore.featurize.text import make_text_encoder

    enc = make_text_encoder(spec)
    enc.encode(texts["title"][:8])
    rates = {}
    for t, rows in texts.items():
        t0 = time.perf_counter()
        enc.encode(rows)
        rates[t] = len(rows) / max(time.perf_counter() - t0, 1e-9)
    return rates


def minilm_estimate(store: Path, rows: int, seed: int, hash_featurize_full_s: float) -> dict:
    """MiniLM on a measured sample, extrapolated: hash featurize at full scale, its text part swapped for MiniLM's."""
    import torch

    texts = text_rows(store, rows, seed)
    minilm, hashed = encoder_rates("minilm", texts), encoder_rates("hash", texts)
    text_s = {name: {t: TEXT_ROWS_FULL[t] / r[t] for t in TEXT_ROWS_FULL} for name, r in (("minilm", minilm), ("hash", hashed))}
    estimate = hash_featurize_full_s - sum(text_s["hash"].values()) + sum(text_s["minilm"].values())
    return {
        "rows_measured": {t: len(v) for t, v in texts.items()}, "torch_threads": torch.get_num_threads(),
        "rows_per_s": {"minilm": _rounded(minilm), "hash": _rounded(hashed)},
        "full_scale_text_seconds": {k: _rounded(v) for k, v in text_s.items()},
        "full_scale_featurize_seconds_estimate": round(estimate, 1),
    }


def _rounded(d: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 1) for k, v in d.items()}


def load_tokenizer(store: Path, tokenizer_dir: str | None, vocab_size: int):
    """A local tokenizer directory, or the tiny BPE tokenizer of tools/make_tiny_llm.py trained on the store."""
    if tokenizer_dir:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)
    sys.path.insert(0, str(ROOT / "tools"))
    from make_tiny_llm import train_tokenizer

    return train_tokenizer(store, vocab_size)


def prompt_lengths(store_path: Path, n: int, seed: int, tokenizer) -> dict:
    """Token lengths of the sample JSON and of the whole prompt for `n` random videos."""
    from graphstore.store import GraphStore
    from netgpt.llm.data import SampleTexts
    from netgpt.llm.prompt import PromptEncoder
    from netgpt.llm.tokens import add_graph_tokens

    store = GraphStore.open(store_path)
    texts = SampleTexts(store)
    encoder = PromptEncoder(tokenizer, add_graph_tokens(tokenizer))
    nodes = np.random.default_rng(seed).choice(len(texts), size=min(n, len(texts)), replace=False)
    json_texts = [texts.text(int(v)) for v in nodes]
    body = np.array([len(tokenizer(t, add_special_tokens=False, split_special_tokens=True)["input_ids"]) for t in json_texts])
    prompt = np.array([len(encoder.encode(t).input_ids) for t in json_texts])
    estimate = np.array([qwen_like_tokens(t) for t in json_texts])
    return {"samples": len(nodes), "template_tokens": len(encoder.prefix_ids) + len(encoder.suffix_ids),
            "sample_json_tiny_tokenizer": _distribution(body), "prompt_tiny_tokenizer": _distribution(prompt),
            "sample_json_qwen_like": _distribution(estimate)}


def _distribution(x: np.ndarray) -> dict:
    lo, hi = PAPER_RANGE
    pct = (5, 25, 50, 75, 90, 95, 99)
    return {"percentiles": {f"p{p}": int(v) for p, v in zip(pct, np.percentile(x, pct))}, "max": int(x.max()),
            "mean": round(float(x.mean()), 1), f"share_in_{lo}_{hi}": round(float(((x >= lo) & (x <= hi)).mean()), 3),
            "share_ge_1000": round(float((x >= 1000).mean()), 4)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", default="/tmp/xs_real_length")
    p.add_argument("--minilm-rows", type=int, default=2000, help="rows of each text type encoded with MiniLM")
    p.add_argument("--token-samples", type=int, default=5000, help="videos whose prompt is tokenized")
    p.add_argument("--tokenizer", default=None, help="a local tokenizer directory instead of the tiny one")
    p.add_argument("--vocab-size", type=int, default=4000, help="vocabulary of the tiny tokenizer")
    p.add_argument("--json-out", default=None)
    args = p.parse_args(argv)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)

    store, steps = build_steps(args.scale, args.seed, work)
    result = {"scale": args.scale, "seed": args.seed, "cpu_count": os.cpu_count(), "steps": steps}
    result["minilm"] = minilm_estimate(store, args.minilm_rows, args.seed, steps["featurize_hash"]["full_scale_seconds"])
    print(f"minilm: {result['minilm']['rows_per_s']['minilm']} rows/s; full-scale featurize estimate "
          f"{result['minilm']['full_scale_featurize_seconds_estimate']:.0f} s", flush=True)
    tokenizer = load_tokenizer(store, args.tokenizer, args.vocab_size)
    result["tokenizer"] = args.tokenizer or f"tiny BPE (tools/make_tiny_llm.py, vocab {args.vocab_size})"
    result["tokens"] = prompt_lengths(store, args.token_samples, args.seed, tokenizer)
    result["paper_tokens"] = "sample JSON (Qwen2-VL tokenizer): mostly 200-500, a few thousands"
    print(json.dumps(result, indent=2, ensure_ascii=False))
    if args.json_out:
        write_json(args.json_out, result, ensure_ascii=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
