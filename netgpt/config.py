"""Stage-1 (graph pretraining) configuration and its presets `paper` and `cpu`."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from graphstore.atomic import write_json
from graphstore.errors import UserError
from graphstore.schema import (
    COMMENT_RELATIONS,
    INTERACTION_RELATIONS,
    RELATION_NAMES,
    VIDEO_VIDEO_RELATIONS,
)


# --relations-exclude GROUP -> the config switch it sets (the paper's ablations).
RELATION_GROUPS = {"video_video": "no_video_video", "interaction": "no_interaction", "comment": "no_comments"}


def exclusion_overrides(groups: list[str] | None) -> dict[str, bool]:
    """Config overrides of `--relations-exclude` group names; UserError names an unknown group."""
    out = {}
    for g in groups or []:
        if g not in RELATION_GROUPS:
            raise UserError(f"unknown relation group {g!r}; choose from {', '.join(RELATION_GROUPS)}")
        out[RELATION_GROUPS[g]] = True
    return out


def dataclass_from_dict(cls: type, data: dict, what: str):
    """An instance of dataclass `cls` from `data`; unknown keys are a UserError naming them."""
    unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise UserError(f"unknown {what} config keys: {', '.join(unknown)}")
    return cls(**data)


@dataclass
class PretrainConfig:
    """Every number of the RGCN pretraining stage; defaults are the paper's reference values."""

    preset: str = "paper"
    model: str = "rgcn"  # sage (the default preset's) | rgcn (the paper's) | gcn | han | hgt
    d_g: int = 1024  # hidden / embedding width
    num_layers: int = 2
    dropout: float = 0.0
    identity_noise: float = 0.0  # sage: std of Gaussian noise in training on inputs unique to a video (text, post time, duration)
    heads: int = 4  # HAN / HGT baselines only
    fanouts: list[int] = field(default_factory=lambda: [50, 51])  # per relation, per hop
    batch_size: int = 512
    eval_batch_size: int = 512
    lr: float = 1e-5
    optimizer: str = "adam"  # adam (L2 weight decay, the reference code's) | adamw (decoupled weight decay)
    weight_decay: float = 1e-4
    grad_clip: float | None = None  # max gradient norm (None: no clipping, as the reference code)
    ema_epochs: float = 0.0  # > 0: validate and keep an exponential moving average of the weights over ~this many epochs
    warmup_ratio: float = 0.0  # share of the steps with a linear lr warm-up before the cosine decay
    scale_inputs: bool = False  # standardise inputs with train-split statistics (saved in checkpoints)
    numeric_bins: int = 0  # > 0: piecewise-linear encodings of the video's numeric columns at train quantiles
    epochs: int = 100
    patience: int = 10  # epochs without val improvement before stopping
    select_metric: str = "mae"  # val metric for early stopping / model selection (lower is better)
    max_steps: int | None = None  # cap on optimiser steps per epoch (smoke runs, benches)
    max_eval_batches: int | None = None  # cap on evaluation batches per split (smoke runs)
    num_workers: int = 0
    # memory for features per process: chunk cache, and memory maps of the raw arrays that fit in it
    # (larger ones are read with pread); see graphstore.pyg.GraphStoreFeatureStore
    feature_cache_mb: int = 1024
    feature_cache: str = "none"  # none | sieve | lookahead | lookahead-lru (graphstore.pyg.FEATURE_CACHES)
    seed: int = 0
    embed_fanout: int = 200  # per relation neighbours of layer-wise embedding inference
    label_inputs: bool = False  # video nodes also read the known levels of train videos (netgpt.models.labels)
    label_drop: float = 0.0  # in training, the share of those levels hidden at random
    no_video_features: bool = False
    no_video_video: bool = False
    no_interaction: bool = False
    no_comments: bool = False

    def relations(self) -> list[str]:
        """Relations the model sees after the ablation switches."""
        drop: set[str] = set()
        if self.no_video_video:
            drop |= set(VIDEO_VIDEO_RELATIONS)
        if self.no_interaction:
            drop |= set(INTERACTION_RELATIONS)
        if self.no_comments:
            drop |= set(COMMENT_RELATIONS)
        return [r for r in RELATION_NAMES if r not in drop]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        """Write the config as JSON (atomically)."""
        write_json(path, self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> "PretrainConfig":
        return dataclass_from_dict(cls, data, "pretrain")

    @classmethod
    def load(cls, path: str | Path) -> "PretrainConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))


PRESETS: dict[str, dict] = {
    # The project's default: HeteroSAGE with residual self state, train-scaled inputs, warm-up + cosine.
    "default": {"model": "sage", "d_g": 128, "fanouts": [10, 10], "lr": 2e-3, "optimizer": "adamw",
                "weight_decay": 1e-5, "dropout": 0.1, "grad_clip": 1.0, "warmup_ratio": 0.05, "scale_inputs": True,
                "numeric_bins": 16, "identity_noise": 3.0, "ema_epochs": 1.0, "epochs": 12, "patience": 4,
                "eval_batch_size": 1024, "embed_fanout": 20},
    # The reference code's values (paper, GPU).
    "paper": {},
    # The paper's RGCN at a width a 2-core CPU trains in minutes at scale 0.1.
    "cpu": {"d_g": 128, "fanouts": [10, 10], "lr": 3e-4, "grad_clip": 1.0, "epochs": 10, "patience": 3,
            "eval_batch_size": 1024, "embed_fanout": 50},
}


def preset(name: str, **overrides) -> PretrainConfig:
    """The named preset with `overrides` (None values ignored) applied."""
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    values = {"preset": name, **PRESETS[name]}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return PretrainConfig.from_dict(values)
