"""What the text encoder is asked to do, counted (no timing): rows, distinct texts and padded tokens.

    python bench/text_tokens.py --store STORE [--tokenizer minilm] [--block 4096] [--batch 64] --json-out F

For each text node type (title, description, comment) featurize hands the encoder blocks of
`--block` rows in node order. Per block this counts the rows, the distinct texts among them, and the
token positions the encoder computes (batch rows x the batch's longest text, truncated at 128 tokens)
when batches come in file order with every row (the encoder before this change) and when each
distinct text is encoded once with batches sorted by length (after). Counts, not seconds: they hold
on any machine; the seconds follow from them where the encoder is compute-bound.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from graphstore.atomic import write_json
from graphstore.featurize.text import minilm_dir
from graphstore.store import GraphStore

MAX_LENGTH = 128


def padded_tokens(lengths: np.ndarray, batch: int) -> int:
    """Token positions of batches of `batch` consecutive texts, each padded to its longest."""
    return int(sum(len(lengths[a:a + batch]) * int(lengths[a:a + batch].max()) for a in range(0, len(lengths), batch)))


def count(texts: list[str], tokenizer, block: int, batch: int) -> dict:
    """Rows, distinct texts and padded tokens over blocks of `block` texts, before and after."""
    rows = distinct = before = after = 0
    for a in range(0, len(texts), block):
        part = [t or "" for t in texts[a:a + block]]
        lengths = {t: n for t, n in zip(set(part), map(len, tokenizer(list(set(part)), truncation=True,
                                                                       max_length=MAX_LENGTH)["input_ids"]))}
        rows += len(part)
        distinct += len(lengths)
        before += padded_tokens(np.array([lengths[t] for t in part]), batch)
        after += padded_tokens(np.sort(np.fromiter(lengths.values(), np.int64)), batch)
    return {"rows": rows, "distinct": distinct, "padded_tokens_before": before, "padded_tokens_after": after,
            "token_ratio": round(before / max(1, after), 3)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--tokenizer", default="minilm", help="'minilm' or a local tokenizer directory")
    ap.add_argument("--block", type=int, default=4096, help="rows per encoder call (featurize's WRITE_ROWS)")
    ap.add_argument("--batch", type=int, default=64, help="texts per forward pass (HFTextEncoder.batch_size)")
    ap.add_argument("--json-out", default=None)
    args = ap.parse_args(argv)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(minilm_dir() if args.tokenizer == "minilm" else args.tokenizer))
    store = GraphStore.open(args.store)
    samples = pq.read_table(store.table_files("samples"), columns=["title", "description"])
    comments = pq.read_table(store.table_files("comments"), columns=["text"])
    result = {"command": " ".join(sys.argv), "store": str(Path(args.store).resolve()), "block": args.block,
              "batch": args.batch, "types": {}}
    for name, column in (("title", samples["title"]), ("description", samples["description"]),
                         ("comment", comments["text"])):
        result["types"][name] = count(column.to_pylist(), tokenizer, args.block, args.batch)
        print(name, result["types"][name], flush=True)
    total = {k: sum(t[k] for t in result["types"].values()) for k in ("padded_tokens_before", "padded_tokens_after")}
    result["token_ratio"] = round(total["padded_tokens_before"] / max(1, total["padded_tokens_after"]), 3)
    print("all text types: token positions before / after", result["token_ratio"])
    if args.json_out:
        write_json(args.json_out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
