"""torch.distributed set-up under torchrun (gloo on CPU, NCCL on GPU) and seed sharding."""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


@dataclass
class DistContext:
    """This process's place in the job; world_size 1 when not launched by torchrun."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str | None = None) -> DistContext:
    """Join the torchrun process group when WORLD_SIZE > 1; pick the device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    dev = torch.device(f"cuda:{local}") if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistContext(rank=rank, world_size=world, local_rank=local, device=dev)


def shard_seeds(ids: np.ndarray, epoch: int, seed: int, rank: int, world_size: int) -> np.ndarray:
    """This rank's train seeds for `epoch`: a seeded permutation, then an equal-length slice.

    Every rank gets len(ids) // world_size ids, so all ranks take the same number of steps;
    the remainder (< world_size ids) sits out this epoch (a different one each epoch)."""
    perm = np.random.default_rng([seed, epoch]).permutation(np.asarray(ids, dtype=np.int64))
    per = perm.size // world_size
    return perm[rank * per:(rank + 1) * per]


def gather_arrays(ctx: DistContext, *arrays: np.ndarray) -> list[np.ndarray]:
    """Concatenate each array over ranks (rank order); identity without a process group."""
    if not ctx.enabled:
        return list(arrays)
    out: list = [None] * ctx.world_size
    dist.all_gather_object(out, arrays)
    return [np.concatenate([part[i] for part in out]) for i in range(len(arrays))]


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def broadcast_flag(ctx: DistContext, value: bool) -> bool:
    """Rank 0's boolean, on every rank."""
    if not ctx.enabled:
        return value
    obj = [value]
    dist.broadcast_object_list(obj, src=0)
    return bool(obj[0])


def cleanup(ctx: DistContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()
