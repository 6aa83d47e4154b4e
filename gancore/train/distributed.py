"""torch.distributed as the trainer uses it: set up from torchrun's environment, reduce, gather.

`torchrun --nproc_per_node=N -m gancore train ...` sets RANK, WORLD_SIZE, LOCAL_RANK and the
rendezvous address; the process group is NCCL on GPUs and gloo on CPUs. Without those variables
everything here is a no-op for a single process.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from gancore.errors import ConfigError

# How long a process that hit an error waits for the others to report in before naming the missing ones.
_ROLL_CALL_MAX_S = 60.0
_PEER_FAILURES = ("gloo", "NCCL", "Timed out", "timed out", "Connection closed", "Connection reset")


class PeerError(RuntimeError):
    """A collective failed because some process stopped answering (stopped, hung or exited)."""


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
    timeout_s: float = 0.0

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

    def missing_peers(self) -> list[int] | None:
        """After a failed collective: the ranks that do not report in within the timeout (at most a
        minute), through the rendezvous store; None when the store itself does not answer.

        Every process that catches an error calls this once, so the healthy ones find each other and
        a stopped, hung or dead one is the one missing."""
        if not self.enabled:
            return []
        grace = min(self.timeout_s, _ROLL_CALL_MAX_S) if self.timeout_s > 0 else _ROLL_CALL_MAX_S
        try:
            store = dist.distributed_c10d._get_default_store()
            store.set_timeout(timedelta(seconds=grace))
            store.set(f"gancore/alive/{self.rank}", "1")
            deadline = time.monotonic() + grace
            pending = [r for r in range(self.world_size) if r != self.rank]
            while pending:
                pending = [r for r in pending if not store.check([f"gancore/alive/{r}"])]
                if not pending or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
        except (RuntimeError, ValueError):  # the store is hosted by a process that is gone or stopped
            return None
        return pending

    def peer_error(self, err: BaseException) -> PeerError | None:
        """For an error raised by a collective: a PeerError naming the processes that stopped answering.
        None when `err` is the process's own error, or all processes are alive."""
        # gloo raises plain RuntimeErrors, so a failed collective is known by its message.
        if not self.enabled or not (isinstance(err, dist.DistError) or any(m in str(err) for m in _PEER_FAILURES)):
            return None
        missing = self.missing_peers()
        if missing == []:
            return None
        who = (f"rank(s) {', '.join(map(str, missing))} did not answer" if missing is not None
               else "the other processes and the rendezvous store did not answer")
        return PeerError(f"rank {self.rank}: {who} within train.dist_timeout={self.timeout_s:g} s (stopped, "
                         f"hung or exited; see their own output); stopping. The collective failed with: "
                         f"{str(err).splitlines()[0] if str(err) else type(err).__name__}")

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def shutdown(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self.owns_group = False


def setup(device_preference: str = "auto", timeout_s: float = 600.0) -> DistEnv:
    """This process's DistEnv; joins the process group when launched by torchrun with WORLD_SIZE > 1.

    `timeout_s` bounds every collective: a process whose peers do not arrive in time gets an error
    (under NCCL, its watchdog aborts it) instead of waiting forever."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = choose_device(device_preference, local_rank)
    owns = False
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timedelta(seconds=timeout_s))
        owns = True
    if dist.is_initialized():
        rank, world_size = dist.get_rank(), dist.get_world_size()
    return DistEnv(rank, world_size, local_rank, device, owns, timeout_s if owns else 0.0)
