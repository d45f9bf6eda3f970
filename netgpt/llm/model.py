"""A stock causal LM reading one projected graph embedding at <|graph_pad|> (through inputs_embeds)."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from graphstore.errors import UserError
from netgpt.llm.tokens import GraphTokenIds, add_graph_tokens

STAGES = ("align", "finetune")
MAX_LEVEL = 9.0


def load_llm(llm_dir: str | Path, *, dtype: torch.dtype = torch.float32,
             seed: int = 0, progress: bool = True) -> tuple[Any, Any, GraphTokenIds]:
    """(tokenizer, causal LM, graph token ids) of a local Hugging Face directory, graph tokens added.

    `progress` False hides Hugging Face's weight-loading bar (as --no-progress hides ours)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText, AutoTokenizer
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    path = Path(llm_dir)
    if not (path / "config.json").is_file():
        raise UserError(f"{path}: not a Hugging Face model directory (no config.json); "
                        "build a tiny one with `python tools/make_tiny_llm.py --store STORE --out DIR`")
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    model_type = AutoConfig.from_pretrained(str(path)).model_type
    # Vision-language checkpoints (e.g. Qwen2-VL) are not causal-LM classes: load them whole, use the text path.
    auto = AutoModelForCausalLM if model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES else AutoModelForImageTextToText
    try:
        with _hf_progress_bars(progress):
            lm = auto.from_pretrained(str(path), dtype=dtype)
    except (ValueError, OSError) as exc:  # no weights, or a model type without a causal-LM / image-text class
        raise UserError(f"{path}: model type {model_type!r} cannot be loaded as a causal LM ({exc})") from None
    ids = add_graph_tokens(tokenizer, lm, seed=seed)
    return tokenizer, lm, ids


@contextlib.contextmanager
def _hf_progress_bars(enabled: bool) -> Iterator[None]:
    """Hugging Face's own progress bars off for the block when not `enabled` (its global switch, restored)."""
    from transformers.utils import logging as hf_logging

    hide = not enabled and hf_logging.is_progress_bar_enabled()
    if hide:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if hide:
            hf_logging.enable_progress_bar()


def text_config(lm: nn.Module) -> Any:
    """The language model's config (the text part of multimodal configs such as Qwen2-VL's)."""
    cfg = lm.config
    return cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg


def decoder_layers(lm: nn.Module) -> nn.ModuleList:
    """The language model's list of decoder layers (vision towers skipped)."""
    n = text_config(lm).num_hidden_layers
    for name, module in lm.named_modules():
        if isinstance(module, nn.ModuleList) and name.endswith("layers") and len(module) == n \
                and not any(part in name for part in ("visual", "vision")):
            return module
    raise UserError(f"cannot find the {n} decoder layers of {type(lm).__name__}")


class GraphLLM(nn.Module):
    """Causal LM + projector (d_g -> hidden) + trainable graph_start/graph_end rows + regression head.

    Three choices keep the graph signal from being lost on the way to the head (the reason a first
    version collapsed to predicting one level): the graph embedding is standardised with train
    statistics and the projector is scaled so that the graph token has the norm of an ordinary token
    embedding; the head starts at zero, so the first prediction is the prior rather than noise; and,
    with `prior` (the frozen stage-1 predictor, a logit), the head learns a correction on top of the
    stage-1 prediction: pred = 9 * sigmoid(head(h_last) + prior(graph))."""

    def __init__(self, lm: nn.Module, d_g: int, graph_ids: GraphTokenIds, *, seed: int = 0,
                 graph_stats: tuple[torch.Tensor, torch.Tensor] | None = None, prior: nn.Module | None = None,
                 train_mean_level: float | None = None):
        super().__init__()
        self.lm = lm
        self.graph_ids = graph_ids
        hidden = int(text_config(lm).hidden_size)
        emb = lm.get_input_embeddings().weight
        mean, std = graph_stats if graph_stats is not None else (torch.zeros(d_g), torch.ones(d_g))
        self.register_buffer("graph_mean", mean.float().clone())
        self.register_buffer("graph_std", std.float().clone())
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.projector = nn.Linear(d_g, hidden)
            self.head = nn.Linear(hidden, 1)
        with torch.no_grad():
            # unit-variance inputs give outputs of RMS ~ sqrt(1/3); match the LM's token embeddings' RMS
            token_rms = float(emb.detach().float().pow(2).mean().sqrt())
            self.projector.weight.mul_(token_rms / (1 / 3) ** 0.5)
            self.projector.bias.zero_()
            self.head.weight.zero_()
            p = min(max((train_mean_level or 4.5) / MAX_LEVEL, 1e-3), 1 - 1e-3)
            self.head.bias.fill_(0.0 if prior is not None else float(torch.logit(torch.tensor(p))))
        self.prior = prior
        if prior is not None:
            for q in prior.parameters():
                q.requires_grad_(False)
        # graph_start / graph_end live outside the (frozen) embedding matrix: only these two rows train.
        self.graph_tokens = nn.Parameter(emb.detach()[[graph_ids.start, graph_ids.end]].clone().float())

    @property
    def embed_dtype(self) -> torch.dtype:
        return self.lm.get_input_embeddings().weight.dtype

    def inputs_embeds(self, input_ids: torch.Tensor, graph: torch.Tensor) -> torch.Tensor:
        """Token embeddings with <|graph_pad|> replaced by projector(graph) and start/end by graph_tokens."""
        e = self.lm.get_input_embeddings()(input_ids)
        z = (graph.float() - self.graph_mean) / self.graph_std
        proj = self.projector(z.to(self.projector.weight.dtype)).to(e.dtype)[:, None, :]
        g = self.graph_ids
        e = torch.where((input_ids == g.pad)[..., None], proj, e)
        tok = self.graph_tokens.to(e.dtype)
        e = torch.where((input_ids == g.start)[..., None], tok[0], e)
        return torch.where((input_ids == g.end)[..., None], tok[1], e)

    def lm_loss(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor,
                graph: torch.Tensor) -> torch.Tensor:
        """Stage 2: mean cross-entropy over the response tokens (labels -100 elsewhere).

        Logits are computed only from the first response position on (`logits_to_keep`), not over the
        whole 4,000-token prompt times the vocabulary."""
        width = labels.shape[1]
        has = labels != -100
        first = int(torch.where(has.any(dim=1), has.float().argmax(dim=1), width).min())
        keep = max(1, width - first + 1)
        out = self.lm(inputs_embeds=self.inputs_embeds(input_ids, graph), attention_mask=attention_mask,
                      logits_to_keep=keep)
        logits = out.logits[:, -keep:-1] if keep > 1 else out.logits[:, :0]
        target = labels[:, width - keep + 1:]
        return nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), target.reshape(-1),
                                           ignore_index=-100)

    def predict(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, graph: torch.Tensor) -> torch.Tensor:
        """Stage 3: 9 * sigmoid(W h + b [+ prior(graph)]) on the last non-pad token's final hidden state."""
        out = self.lm.base_model(inputs_embeds=self.inputs_embeds(input_ids, graph), attention_mask=attention_mask)
        h = out.last_hidden_state
        last = attention_mask.long().sum(dim=1) - 1  # right padding: the last real token
        h_last = h[torch.arange(h.shape[0], device=h.device), last]
        logit = self.head(h_last.to(self.head.weight.dtype)).squeeze(-1)
        if self.prior is not None:
            p = next(self.prior.parameters())
            logit = logit + self.prior(graph.to(p.dtype)).squeeze(-1).to(logit.dtype)
        return MAX_LEVEL * torch.sigmoid(logit)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, graph: torch.Tensor,
                labels: torch.Tensor | None = None) -> torch.Tensor:
        """lm_loss with labels (stage 2), else predict (stage 3); lets DeepSpeed's engine wrap the module."""
        if labels is not None:
            return self.lm_loss(input_ids, attention_mask, labels, graph)
        return self.predict(input_ids, attention_mask, graph)

    def set_trainable(self, stage: str, top_layers: int = 4) -> list[str]:
        """Freeze all but the stage's parameters; returns the trainable parameter names.

        align: projector + graph_start/graph_end. finetune: head + projector + last `top_layers` decoder
        layers. Lower layers get no parameter gradients; autograd skips them entirely when nothing below
        them is trainable (e.g. a frozen projector)."""
        if stage not in STAGES:
            raise UserError(f"stage must be one of {', '.join(STAGES)}, got {stage!r}")
        for p in self.parameters():
            p.requires_grad_(False)
        keep: list[nn.Module | nn.Parameter] = [self.projector]
        if stage == "align":
            keep.append(self.graph_tokens)
        else:
            layers = decoder_layers(self.lm)
            if top_layers > len(layers):
                raise UserError(f"top_layers {top_layers} > the model's {len(layers)} decoder layers")
            keep += [self.head, *list(layers)[len(layers) - top_layers:]]
        for item in keep:
            for p in ([item] if isinstance(item, nn.Parameter) else item.parameters()):
                p.requires_grad_(True)
        return [n for n, p in self.named_parameters() if p.requires_grad]

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """State of the parameters that any stage trains (what checkpoints hold)."""
        layers = {id(p) for p in decoder_layers(self.lm).parameters()}
        return {n: p.detach().cpu().clone() for n, p in self.named_parameters()
                if not n.startswith("lm.") or id(p) in layers and p.requires_grad}

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        """Load a trainable_state(); unknown names are an error."""
        params = dict(self.named_parameters())
        unknown = sorted(set(state) - set(params))
        if unknown:
            raise UserError(f"checkpoint has parameters this model lacks: {', '.join(unknown[:5])}")
        with torch.no_grad():
            for name, value in state.items():
                if params[name].shape != value.shape:
                    raise UserError(f"checkpoint parameter {name} has shape {tuple(value.shape)}, "
                                    f"the model {tuple(params[name].shape)} (another LLM or d_g?)")
                params[name].copy_(value.to(params[name].dtype))
