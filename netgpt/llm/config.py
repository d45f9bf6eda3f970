"""Configuration of NetGPT stages 2 (align) and 3 (finetune); defaults are the paper's values."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graphstore.errors import UserError
from netgpt.config import dataclass_from_dict

ENGINES = ("auto", "torch", "deepspeed")


@dataclass
class LLMConfig:
    """Every number of stages 2 and 3 (reference: ZeRO-2, micro-batch 2, accumulation 32, AdamW 1e-5)."""

    micro_batch: int = 2
    grad_accum: int = 32
    lr: float = 1e-5
    weight_decay: float = 0.0
    warmup_ratio: float = 0.1  # 2,000 warm-up of 20,000 steps in the reference config
    min_lr_ratio: float = 0.0  # cosine decays to lr * min_lr_ratio
    grad_clip: float = 1.0
    epochs: int = 1
    max_steps: int | None = None  # cap on optimiser steps per stage (smoke runs)
    checkpoint_every: int = 50  # optimiser steps between resumable checkpoints
    max_comments: int = 50
    max_prompt_tokens: int = 4000
    prompt_keys: str = "xsvideo"  # JSON keys of the prompt: "xsvideo" (the dataset's Chinese keys) or "english"
    top_layers: int = 4  # stage 3 trains the last `top_layers` decoder layers
    skip_align: bool = False  # ablation: stage 3 starts from a fresh projector
    # stage 3 predicts 9*sigmoid(head(h_last) + stage-1 logit(graph)): the LLM learns a correction of the
    # stage-1 prediction (False: the paper's head on the last hidden state alone)
    residual_prior: bool = True
    eval_batch_size: int = 8
    max_eval_samples: int | None = None  # cap per split (smoke runs)
    engine: str = "auto"  # auto: DeepSpeed ZeRO-2 when it initialises, else plain torch
    bf16: bool | None = None  # None: bf16 on GPU only
    seed: int = 0

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise UserError(f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        for name in ("micro_batch", "grad_accum", "checkpoint_every", "max_comments", "eval_batch_size", "epochs"):
            if getattr(self, name) < 1:
                raise UserError(f"LLM config {name} must be >= 1, got {getattr(self, name)}")
        if self.top_layers < 0:
            raise UserError(f"LLM config top_layers must be >= 0, got {self.top_layers}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LLMConfig":
        """Build from a dict; unknown keys are a UserError."""
        return dataclass_from_dict(cls, data, "LLM")

    @classmethod
    def load(cls, path: str | Path) -> "LLMConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))


# Named settings: the paper's, and one for tiny random models on a CPU (bigger lr, shorter accumulation).
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    # prompts cut to 512 tokens: a sample's JSON is mostly 200-500 tokens, and on 2 CPU cores the long tail
    # (thousands of tokens of comments) would dominate the run time
    "tiny": {"grad_accum": 8, "lr": 1e-3, "checkpoint_every": 10, "engine": "torch", "max_prompt_tokens": 512},
}


def as_config(config: "LLMConfig | dict | str | Path | None", **overrides: Any) -> LLMConfig:
    """An LLMConfig from None, a dict, a preset name, a JSON path or a config; `overrides` (None ignored) applied."""
    if config is None:
        values: dict[str, Any] = {}
    elif isinstance(config, LLMConfig):
        values = config.to_dict()
    elif isinstance(config, dict):
        values = dict(config)
    elif isinstance(config, str) and config in PRESETS:
        values = dict(PRESETS[config])
    else:
        path = Path(config)
        if not path.is_file():
            raise UserError(f"{path}: no such LLM config file (presets: {', '.join(PRESETS)})")
        values = json.loads(path.read_text())
    values.update({k: v for k, v in overrides.items() if v is not None})
    return LLMConfig.from_dict(values)
