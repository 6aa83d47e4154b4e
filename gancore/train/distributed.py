"""torch.distributed as the trainer uses it: set up from torchrun's environment, reduce, gather.

`torchrun --nproc_per_node=N -m gancore train ...` sets RANK, WORLD_SIZE, LOCAL_RANK and the
rendezvous address; the process group is NCCL on GPUs and gloo on CPUs. Without those variables
everything here is a no-op for a single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from gancore.families.base import ConfigError


def choose_device(preference: str, local_rank: int = 0) -> torch.device:
    """train.device -> torch.device; "auto" and "cuda" mean this process's GPU (LOCAL_RANK)."""
    if preference == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(preference)
    except RuntimeError:
        raise ConfigError(f"train.device: not a device: {preference!r}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"train.device={preference}: no CUDA device is available")
        if device.index is None:
            device = torch.device(f"cuda:{local_rank}")
    return device


@dataclass
class DistEnv:
    """Rank, world size and device of this process."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def all_reduce_mean(self, tensor: torch.Tensor) -> torch.Tensor:
        """Mean over processes, in place (metrics reduced across ranks)."""
        if self.enabled:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
            tensor /= self.world_size
        return tensor

    def all_true(self, flag: torch.Tensor) -> bool:
        """True when `flag` (a boolean scalar tensor) is true on every process; one sync."""
        if self.enabled:
            flag = flag.to(torch.int32)
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        return bool(flag.item())

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every process's `obj`, in rank order, on every process."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def all_gather_rows(self, tensor: torch.Tensor) -> torch.Tensor:
        """Concatenate equally shaped tensors from all processes along dim 0, in rank order."""
        if not self.enabled:
            return tensor
        parts = [torch.empty_like(tensor) for _ in range(self.world_size)]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts)

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def shutdown(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self.owns_group = False


def setup(device_preference: str = "auto") -> DistEnv:
    """This process's DistEnv; joins the process group when launched by torchrun with WORLD_SIZE > 1."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = choose_device(device_preference, local_rank)
    owns = False
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        owns = True
    if dist.is_initialized():
        rank, world_size = dist.get_rank(), dist.get_world_size()
    return DistEnv(rank, world_size, local_rank, device, owns)
