"""Build a small randomly initialised Qwen2 causal LM whose BPE tokenizer is trained on a store's text.

    python tools/make_tiny_llm.py --store STORE --out DIR [--vocab-size 4000 --hidden 64 --layers 4]

Writes a normal Hugging Face directory (config, safetensors weights, tokenizer with a ChatML chat
template) that `netgpt train --llm DIR` loads like any local checkpoint."""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from typing import Iterator

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# Qwen2's ChatML template (system message defaulting to "You are a helpful assistant.").
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


MAX_TEXTS_PER_COLUMN = 20_000  # a seeded sample: BPE word counts over a full-scale store's text need > 20 GB


def store_texts(store_path: str | Path, batch: int = 10_000, seed: int = 0) -> Iterator[list[str]]:
    """Batches of titles, descriptions, topics and comment texts of a store (at most MAX_TEXTS_PER_COLUMN each)."""
    import numpy as np

    from graphstore.store import GraphStore

    store = GraphStore.open(store_path)
    rng = np.random.default_rng(seed)
    samples = store.samples_table(["title", "description", "topic", "platform"])
    comments = store.comments_table(["text"])
    for table in (samples, comments):
        for col in table.column_names:
            column = table.column(col)
            if len(column) > MAX_TEXTS_PER_COLUMN:
                column = column.take(np.sort(rng.choice(len(column), MAX_TEXTS_PER_COLUMN, replace=False)))
            values = [v for v in column.to_pylist() if v]
            for i in range(0, len(values), batch):
                yield values[i:i + batch]
    # digits, punctuation and JSON keys of the prompt, so every sample encodes compactly
    from netgpt.llm.prompt import INSTRUCTION, PROMPT_FIELDS, RESPONSE, SYSTEM

    yield [SYSTEM, INSTRUCTION, RESPONSE, " ".join(k for f in PROMPT_FIELDS for k in f[1:]),
           '{"": [], 0123456789.:-_ ,}', "评论内容 评论时间 评论 comments text time"]


def train_tokenizer(store_path: str | Path, vocab_size: int):
    """A byte-level BPE tokenizer (tokenizers library) wrapped as a PreTrainedTokenizerFast."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(store_texts(store_path), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   additional_special_tokens=SPECIAL_TOKENS[1:])
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_model(tokenizer, hidden: int, layers: int, seed: int):
    """A random Qwen2ForCausalLM sized for the tokenizer."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    heads = max(1, hidden // 16)
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=4 * hidden,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=max(1, heads // 2),
                         max_position_embeddings=8192, tie_word_embeddings=True,
                         bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    return Qwen2ForCausalLM(config)


def make_tiny_llm(store_path: str | Path, out: str | Path, *, vocab_size: int = 4000, hidden: int = 64,
                  layers: int = 4, seed: int = 0) -> Path:
    """Train the tokenizer, build the model, save both to `out` (written to a temporary dir, then renamed)."""
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer = train_tokenizer(store_path, vocab_size)
    model = build_model(tokenizer, hidden, layers, seed)
    tokenizer.save_pretrained(str(tmp))
    model.save_pretrained(str(tmp))
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def main(argv: list[str] | None = None) -> int:
    from graphstore.errors import UserError

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--vocab-size", type=int, default=4000)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        out = make_tiny_llm(args.store, args.out, vocab_size=args.vocab_size, hidden=args.hidden,
                            layers=args.layers, seed=args.seed)
    except UserError as exc:
        print(f"make_tiny_llm: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
