"""The three graph tokens: adding them to a tokenizer and sizing the model's embeddings."""
from __future__ import annotations

import logging

from dataclasses import dataclass

import torch

GRAPH_START = "<|graph_start|>"
GRAPH_PAD = "<|graph_pad|>"
GRAPH_END = "<|graph_end|>"
GRAPH_TOKENS = (GRAPH_START, GRAPH_PAD, GRAPH_END)


@dataclass(frozen=True)
class GraphTokenIds:
    """Token ids of <|graph_start|>, <|graph_pad|>, <|graph_end|>."""

    start: int
    pad: int
    end: int


def add_graph_tokens(tokenizer, model=None, *, seed: int = 0) -> GraphTokenIds:
    """Register the graph tokens as special tokens; grow the model's embeddings if needed."""
    missing = [t for t in GRAPH_TOKENS if tokenizer.convert_tokens_to_ids(t) in (None, tokenizer.unk_token_id)]
    if missing:
        tokenizer.add_tokens(list(GRAPH_TOKENS), special_tokens=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    ids = GraphTokenIds(*(int(tokenizer.convert_tokens_to_ids(t)) for t in GRAPH_TOKENS))
    if model is not None:
        rows = model.get_input_embeddings().weight.shape[0]
        # Qwen checkpoints pad the embedding matrix beyond len(tokenizer): only ever grow it.
        if len(tokenizer) > rows:
            # mean resizing of the new rows is deliberate (and seeded): transformers' warning about it is noise
            hf_log = logging.getLogger("transformers.modeling_utils")
            level = hf_log.level
            hf_log.setLevel(logging.ERROR)
            try:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(seed)  # mean_resizing samples the new rows
                    model.resize_token_embeddings(len(tokenizer))
            finally:
                hf_log.setLevel(level)
    return ids
