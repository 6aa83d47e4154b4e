"""fuse(): a forward+backward step of each reference pix2pix / CycleGAN network, as built from plain torch.nn
("original") against the same network after gancore.nn.fuse ("fused"), with the same weights and input.

The step is zero_grad, forward, mean-square loss, backward. The contenders are timed one step at a time in
ABBA order, so that the load of a shared machine falls on both alike. Memory: peak allocated MB on CUDA; on
the CPU (no allocator statistics) the MB of tensors autograd saves for the backward, counted once per storage.
"""

from __future__ import annotations

import copy
import statistics
from collections.abc import Callable, Iterator

import torch
from torch import nn

from gancore.bench.timing import BenchContext, measure
from gancore.models.pix2pix import NLayerDiscriminator, ResnetGenerator, UnetGenerator
from gancore.nn import fuse

BASELINE = "original"
ALLOC_SENSITIVE = False


def _networks(size: int, width: int) -> dict[str, Callable[[], nn.Module]]:
    """The reference networks at their usual widths (a quick run narrows them); the U-Net's depth follows
    the image size (unet_256 at 256, unet_128 at 128) so that its innermost map is 1x1."""
    downs = size.bit_length() - 1
    return {
        "resnet_9blocks G": lambda: ResnetGenerator(ngf=width, n_blocks=9, fused=False),
        "resnet_6blocks G": lambda: ResnetGenerator(ngf=width, n_blocks=6, fused=False),
        f"unet_{size} G instance": lambda: UnetGenerator(num_downs=downs, ngf=width, norm="instance", fused=False),
        f"unet_{size} G batch": lambda: UnetGenerator(num_downs=downs, ngf=width, norm="batch", fused=False),
        "basic D (70x70)": lambda: NLayerDiscriminator(3, ndf=width, fused=False),
    }


def _configs(quick: bool) -> list[tuple[int, int, int]]:
    """(image size, batch, width)"""
    return [(64, 1, 16), (32, 4, 16)] if quick else [(256, 1, 64), (128, 4, 64)]


def count(ctx: BenchContext) -> int:
    return sum(2 * len(_networks(size, width)) for size, _, width in _configs(ctx.quick))


def _step(net: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        net.zero_grad(set_to_none=True)
        net(x).square().mean().backward()

    return step


def _saved_mb(net: nn.Module, x: torch.Tensor) -> float:
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = net(x).square().mean()
    del loss
    return sum(storages.values()) / 2**20


def run(ctx: BenchContext) -> Iterator[dict]:
    for size, batch, width in _configs(ctx.quick):
        x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0)).to(ctx.device)
        for name, make in _networks(size, width).items():
            torch.manual_seed(0)
            original = make().to(ctx.device)
            nets = {"original": original, "fused": fuse(copy.deepcopy(original))}
            report = nets["fused"].gancore_fused
            steps = {k: _step(net, x) for k, net in nets.items()}
            for step in steps.values():
                for _ in range(ctx.warmup):
                    step()
            samples: dict[str, list[float]] = {k: [] for k in steps}
            peaks: dict[str, list[float]] = {k: [] for k in steps}
            for i in range(max(ctx.repeats // 2, 3)):
                for k in (("original", "fused") if i % 2 == 0 else ("fused", "original")):
                    result = measure(steps[k], device=ctx.device, repeats=1, warmup=0)
                    samples[k].append(result["ms"])
                    if "peak_mb" in result:
                        peaks[k].append(result["peak_mb"])
            case = f"{name} {size}x{size} b{batch} fwd+bwd"
            for k, times in samples.items():
                times.sort()
                row = {"case": case, "contender": k, "ms": statistics.median(times),
                       "ms_p10": times[round(0.1 * (len(times) - 1))], "ms_p90": times[round(0.9 * (len(times) - 1))]}
                if peaks[k]:
                    row["peak_mb"] = max(peaks[k])
                else:
                    row["saved_mb"] = _saved_mb(nets[k], x)
                note = f"saved for backward {row['saved_mb']:.1f} MB" if "saved_mb" in row else ""
                if k == "fused":
                    note = "; ".join(filter(None, [note, f"{len(report.fused)} norms fused "
                                                         f"({len(report.residual)} with the residual add), "
                                                         f"{len(report.unfused)} not"]))
                row["note"] = note
                yield row
