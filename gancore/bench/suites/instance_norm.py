"""instance_norm_act against eager PyTorch and torch.compile at pix2pix / CycleGAN / pix2pixHD shapes.

Every case is timed forward and forward+backward, with the floors of any out-of-place op measured
in the same process: a copy into an existing tensor (`copy_`) and `clone()` (allocate + copy).
Bytes moved are the op's compulsory traffic (forward: read x, write out; backward adds read grad,
read x, write dx), the same for every contender, so GB/s compare directly with the floors.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

from gancore.bench.timing import BenchContext
from gancore.ops import instance_norm_act, record_backends

BASELINE = "eager"
ALLOC_SENSITIVE = True

SHAPES = {
    "pix2pix": (8, 64, 128, 128),  # pix2pix/CycleGAN generator, first block at 128x128 crops, batch 8
    "cyclegan-res": (1, 256, 64, 64),  # CycleGAN ResNet block at 256x256 input
    "patchgan": (1, 512, 31, 31),  # PatchGAN discriminator, last normalised layer
    "pix2pixhd": (1, 64, 512, 1024),  # pix2pixHD global generator at 1024x2048 / 2
}
QUICK_SHAPES = ("pix2pix",)
SLOPE = 0.2


def eager(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(F.instance_norm(x), SLOPE)


def fused(x: torch.Tensor) -> torch.Tensor:
    return instance_norm_act(x, negative_slope=SLOPE)


def _fwd_bwd(fn, x: torch.Tensor, grad: torch.Tensor):
    # autograd.grad, not .backward(): no accumulation into x.grad to time as well
    return lambda: torch.autograd.grad(fn(x), x, grad)


def _contenders(device: torch.device, dtype: torch.dtype) -> dict:
    contenders = {"eager": eager, "gancore": fused}
    if dtype == torch.float32:  # torch.compile of bf16 instance norm is not what GAN users run on a CPU
        contenders["torch.compile"] = torch.compile(eager, dynamic=False)
    return contenders


def _plan(ctx: BenchContext) -> list[tuple[str, torch.dtype, str]]:
    names = QUICK_SHAPES if ctx.quick else tuple(SHAPES)
    dtypes = (torch.float32,) if ctx.quick else (torch.float32, torch.bfloat16)
    return [(name, dtype, layout) for name in names for dtype in dtypes for layout in ("nchw", "channels_last")]


def count(ctx: BenchContext) -> int:
    # two floors, then forward and forward+backward for each contender
    return sum(2 + 2 * len(_contenders(ctx.device, dtype)) for _, dtype, _ in _plan(ctx))


def run(ctx: BenchContext) -> Iterator[dict]:
    for name, dtype, layout in _plan(ctx):
        yield from _case(ctx, name, SHAPES[name], dtype, layout)


def _case(ctx: BenchContext, name: str, shape, dtype: torch.dtype, layout: str) -> Iterator[dict]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=gen).to(device=ctx.device, dtype=dtype)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    grad = torch.randn(shape, generator=gen).to(device=ctx.device, dtype=dtype)
    grad = torch.empty_like(x).copy_(grad)
    nbytes = x.numel() * x.element_size()
    label = f"{name} {tuple(shape)} {str(dtype).removeprefix('torch.')} {layout}"

    with record_backends() as ran:
        fused(x)
    backend = ran[0][1] if ran else "none"

    dst = torch.empty_like(x)
    floors = {"floor: copy_": lambda: dst.copy_(x), "floor: clone": lambda: x.clone()}
    for contender, fn in floors.items():
        yield {"case": f"{label} fwd", "contender": contender, "bytes": 2 * nbytes, **ctx.time(fn)}

    xg = x.detach().clone().requires_grad_(True)
    for contender, fn in _contenders(ctx.device, dtype).items():
        note = f"backend {backend}" if contender == "gancore" else ""
        with torch.no_grad():
            yield {"case": f"{label} fwd", "contender": contender, "bytes": 2 * nbytes, "note": note,
                   **ctx.time(lambda fn=fn: fn(x))}
        yield {"case": f"{label} fwd+bwd", "contender": contender, "bytes": 5 * nbytes, "note": note,
               **ctx.time(_fwd_bwd(fn, xg, grad))}
