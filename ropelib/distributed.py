"""Multi-process training: ``torchrun`` sets the environment, this module reads it.

    torchrun --nproc_per_node 4 -m ropelib.train --recipe circular-cifar100

NCCL between GPUs, gloo between CPU processes. Only rank 0 logs and writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Context:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup(device: str = "auto") -> Context:
    """Join the process group started by torchrun (if any) and pick this process's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but no GPU is visible; use --device cpu (or auto)")
    if device not in ("cuda", "cpu"):
        raise ValueError(f"device must be auto, cuda or cpu, got {device!r}")
    torch_device = torch.device("cuda", local_rank) if device == "cuda" else torch.device("cpu")
    if device == "cuda":
        torch.cuda.set_device(torch_device)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device == "cuda" else "gloo")
    return Context(rank, world_size, local_rank, torch_device)


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_sum(values: torch.Tensor, ctx: Context) -> torch.Tensor:
    if ctx.distributed:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def broadcast_flag(flag: bool, ctx: Context) -> bool:
    """Rank 0's decision, shared with every rank (so that all enter a collective together)."""
    if not ctx.distributed:
        return flag
    value = torch.tensor([float(flag)], device=ctx.device)
    dist.broadcast(value, src=0)
    return bool(value.item())


def gather_objects(obj, ctx: Context) -> list:
    if not ctx.distributed:
        return [obj]
    out = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out
