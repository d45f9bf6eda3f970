"""Optimisation engines of stages 2/3: DeepSpeed ZeRO-2 when it initialises, else a plain torch loop
with the same settings (AdamW, warmup-cosine, accumulation, clipping)."""
from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path
from typing import Any

import torch

from netgpt.llm.config import LLMConfig


def warmup_cosine(iteration: int, total: int, warmup: int, min_ratio: float) -> float:
    """LR multiplier of DeepSpeed's WarmupCosineLR (linear warm-up) after `iteration` + 1 scheduler steps.

    The same numbers as DeepSpeed, so both engines follow one schedule: 0 before the first step, a linear
    ramp over max(2, warmup) iterations, then cosine down to `min_ratio` at `total`."""
    if iteration < 0:
        return 0.0
    warmup = max(2, warmup)
    if iteration < warmup:
        return iteration / warmup
    progress = min(1.0, (iteration - warmup + 1) / max(1, total - warmup))
    return max(0.0, min_ratio + (1.0 - min_ratio) * (1 + math.cos(math.pi * progress)) / 2)


def warmup_steps(cfg: LLMConfig, total_steps: int) -> int:
    """Warm-up optimiser steps (at least 1, as DeepSpeed's WarmupCosineLR requires)."""
    return max(1, int(round(cfg.warmup_ratio * total_steps)))


def use_bf16(cfg: LLMConfig, device: torch.device) -> bool:
    return device.type == "cuda" if cfg.bf16 is None else bool(cfg.bf16)


def bf16_autocast(device_type: str, enabled: bool):
    """bf16 autocast on a device type when `enabled`, else a no-op context."""
    return torch.autocast(device_type, dtype=torch.bfloat16) if enabled else contextlib.nullcontext()


def autocast_context(cfg: LLMConfig, device: torch.device):
    """bf16 autocast on the device when the run uses bf16, else a no-op context."""
    return bf16_autocast(device.type, use_bf16(cfg, device))


def keep_fp32_master(model: torch.nn.Module) -> None:
    """Trainable parameters in float32 (the optimizer updates them there), frozen ones left as loaded.

    A bf16 parameter updated by AdamW at lr 1e-5 loses most updates to rounding (bf16 keeps 8 bits
    of mantissa); autocast runs the matrix products in bf16 while the weights stay float32."""
    for p in model.parameters():
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()


class TorchEngine:
    """Plain torch: loss / accum backward per micro-batch; clip, AdamW and schedule step per boundary."""

    name = "torch"

    def __init__(self, model: torch.nn.Module, cfg: LLMConfig, total_steps: int, bf16: bool = False):
        self.model = model
        self.cfg = cfg
        self.bf16 = bf16
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        warmup = warmup_steps(cfg, total_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: warmup_cosine(s - 1, total_steps, warmup, cfg.min_lr_ratio))

    def autocast(self):
        """bf16 autocast for forward passes when training in bf16 (weights stay float32)."""
        return bf16_autocast(self.device_type(), self.bf16)

    def device_type(self) -> str:
        return next(iter(self.params)).device.type if self.params else "cpu"

    def backward(self, loss: torch.Tensor) -> None:
        (loss / self.cfg.grad_accum).backward()

    def step(self) -> float:
        """One optimiser step at the accumulation boundary; returns the pre-clip gradient norm."""
        norm = torch.nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(norm)

    def lr(self) -> float:
        return float(self.scheduler.get_last_lr()[0])

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])

    def save(self, directory: Path, tag: str) -> None:
        """Nothing beyond state_dict(), which the caller stores in its checkpoint."""

    def load(self, directory: Path, tag: str) -> None:
        """Nothing beyond load_state_dict()."""


def deepspeed_config(cfg: LLMConfig, total_steps: int, bf16: bool) -> dict[str, Any]:
    """The reference ZeRO-2 config (netgpt/llm/ds_zero2.json) filled with this run's numbers."""
    import json

    ds = json.loads((Path(__file__).with_name("ds_zero2.json")).read_text())
    ds["train_micro_batch_size_per_gpu"] = cfg.micro_batch
    ds["gradient_accumulation_steps"] = cfg.grad_accum
    ds["gradient_clipping"] = cfg.grad_clip
    ds["optimizer"]["params"].update(lr=cfg.lr, weight_decay=cfg.weight_decay)
    warmup = warmup_steps(cfg, total_steps)
    ds["scheduler"]["params"].update(total_num_steps=max(total_steps, warmup + 1), warmup_num_steps=warmup,
                                     warmup_min_ratio=0.0, cos_min_ratio=cfg.min_lr_ratio)
    ds["bf16"] = {"enabled": bool(bf16)}
    return ds


def _init_single_process_group() -> None:
    """A one-process gloo group when not launched by deepspeed/torchrun."""
    import torch.distributed as dist

    if dist.is_initialized():
        return
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(29500 + os.getpid() % 1000))
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("LOCAL_RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    dist.init_process_group(backend="gloo", rank=int(os.environ["RANK"]), world_size=int(os.environ["WORLD_SIZE"]))


class DeepSpeedEngine:
    """DeepSpeed ZeRO-2: engine.backward + engine.step every micro-batch (it steps at the boundary)."""

    name = "deepspeed"

    def __init__(self, model: torch.nn.Module, cfg: LLMConfig, total_steps: int, bf16: bool):
        import deepspeed

        _init_single_process_group()
        self.cfg = cfg
        params = [p for p in model.parameters() if p.requires_grad]
        self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=model, model_parameters=params, config=deepspeed_config(cfg, total_steps, bf16))

    def autocast(self):
        """DeepSpeed's bf16 mode casts the module itself and keeps fp32 master weights in its optimizer."""
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor) -> None:
        self.engine.backward(loss)
        self.engine.step()

    def step(self) -> float:
        """The boundary step already ran inside the last backward(); returns the gradient norm."""
        norm = self.engine.get_global_grad_norm()
        return float(norm) if norm is not None else float("nan")

    def lr(self) -> float:
        return float(self.engine.get_lr()[0])

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def save(self, directory: Path, tag: str) -> None:
        """DeepSpeed checkpoint of the trainable parameters, optimizer and scheduler under `directory/tag`.

        Each save gets a new tag (the step): the checkpoint file that names it is written after it, so a
        kill between the two leaves the previous file naming the previous, intact tag."""
        self.engine.save_checkpoint(str(directory), tag=tag, exclude_frozen_parameters=True)

    def load(self, directory: Path, tag: str) -> None:
        path, _ = self.engine.load_checkpoint(str(directory), tag=tag, load_module_strict=False)
        if path is None:
            raise RuntimeError(f"DeepSpeed checkpoint {directory}/{tag} could not be loaded")


def make_engine(model: torch.nn.Module, cfg: LLMConfig, total_steps: int, device: torch.device):
    """DeepSpeed when cfg.engine is deepspeed, or auto and it initialises; else TorchEngine."""
    bf16 = use_bf16(cfg, device)
    if cfg.engine in ("auto", "deepspeed"):
        try:
            return DeepSpeedEngine(model, cfg, total_steps, bf16)
        except Exception as exc:  # noqa: BLE001 - any DeepSpeed set-up failure falls back in auto mode
            if cfg.engine == "deepspeed":
                raise
            import warnings

            warnings.warn(f"DeepSpeed unavailable ({type(exc).__name__}: {exc}); using the plain torch loop")
    if bf16:
        keep_fp32_master(model)
    return TorchEngine(model, cfg, total_steps, bf16)
