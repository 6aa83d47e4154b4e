"""instance_norm_act against eager PyTorch and torch.compile at pix2pix / CycleGAN / pix2pixHD shapes.

Every case is timed forward and forward+backward, with the floors of any out-of-place op measured
in the same process: a copy into an existing tensor (`copy_`) and `clone()` (allocate + copy) for the
forward, and `clone()` plus `x + grad` (two fresh tensors, the same bytes) for forward+backward.
Bytes moved are the op's compulsory traffic (forward: read x, write out; backward adds read grad,
read x, write dx), the same for every contender, so GB/s compare directly with the floors.

The `overhead` cases run on one thread with ReLU, gancore and eager interleaved: a tiny tensor,
where the time is the per-call host cost (target: at most 1.25x eager's, forward and
forward+backward), and the instance-norm shapes of the reference networks at their usual crop sizes
(target: forward+backward at least as fast as eager). Their gancore rows carry the target and
whether it was met.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

from gancore.bench.compiled import StrictCompile
from gancore.bench.overhead import TINY_LIMIT, compare, no_grad, one_thread
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

OVERHEAD_TINY = (1, 8, 4, 4)  # target: gancore time / eager time <= TINY_LIMIT, forward and forward+backward
NETWORK_SHAPES = {  # instance norms of the reference networks; target: fwd+bwd time / eager <= 1
    "CycleGAN block, 96x96 crops": (2, 128, 24, 24),
    "ResNet c7s1-64, 48x48 crops": (2, 64, 48, 48),
    "ResNet-9 at 256: c7s1-64": (1, 64, 256, 256),
    "ResNet-9 at 256: d128": (1, 128, 128, 128),
    "ResNet-9 at 256: d256 / res blocks": (1, 256, 64, 64),
}


def eager(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(F.instance_norm(x), SLOPE)


def fused(x: torch.Tensor) -> torch.Tensor:
    return instance_norm_act(x, negative_slope=SLOPE)


def _fwd_bwd(fn, x: torch.Tensor, grad: torch.Tensor):
    # autograd.grad, not .backward(): no accumulation into x.grad to time as well
    return lambda: torch.autograd.grad(fn(x), x, grad)


def _contenders(dtype: torch.dtype, label: str) -> dict:
    contenders = {"eager": eager, "gancore": fused}
    if dtype == torch.float32:  # torch.compile of bf16 instance norm is not what GAN users run on a CPU
        contenders["torch.compile"] = StrictCompile(eager, label)  # its own, fresh per case
    return contenders


def _plan(ctx: BenchContext) -> list[tuple[str, torch.dtype, str]]:
    names = QUICK_SHAPES if ctx.quick else tuple(SHAPES)
    dtypes = (torch.float32,) if ctx.quick else (torch.float32, torch.bfloat16)
    return [(name, dtype, layout) for name in names for dtype in dtypes for layout in ("nchw", "channels_last")]


def count(ctx: BenchContext) -> int:
    # three floors, then forward and forward+backward for each contender; overhead: 2 contenders per row
    per_case = sum(3 + 2 * (3 if dtype == torch.float32 else 2) for _, dtype, _ in _plan(ctx))
    return per_case + 2 * (2 + len(NETWORK_SHAPES))


def run(ctx: BenchContext) -> Iterator[dict]:
    yield from overhead(ctx)
    for name, dtype, layout in _plan(ctx):
        yield from _case(ctx, name, SHAPES[name], dtype, layout)


def overhead(ctx: BenchContext) -> Iterator[dict]:
    with one_thread():
        yield from _overhead_case(ctx, "overhead tiny", OVERHEAD_TINY, ("fwd", "fwd+bwd"), TINY_LIMIT)
        for name, shape in NETWORK_SHAPES.items():
            yield from _overhead_case(ctx, f"overhead {name}", shape, ("fwd+bwd",), 1.0)


def _overhead_case(ctx: BenchContext, name: str, shape, kinds: tuple[str, ...], limit: float) -> Iterator[dict]:
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(ctx.device)
    xg = x.clone().requires_grad_(True)
    grad = torch.randn_like(x)

    def eager_relu(t):
        return F.relu(F.instance_norm(t))

    def fused_relu(t):
        return instance_norm_act(t, activation="relu")

    with record_backends() as ran:
        fused_relu(x)
    note = f"backend {ran[0][1] if ran else 'none'}; relu"
    for kind in kinds:
        if kind == "fwd":
            fns = [no_grad(lambda fn=fn: fn(x)) for fn in (eager_relu, fused_relu)]
        else:
            fns = [_fwd_bwd(fn, xg, grad) for fn in (eager_relu, fused_relu)]
        yield from compare(ctx, f"{name} {tuple(shape)} {kind}", *fns, limit, note)


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
    # forward+backward's floor: the same compulsory traffic into two fresh tensors (out, then dx)
    yield {"case": f"{label} fwd+bwd", "contender": "floor: clone + add", "bytes": 5 * nbytes,
           **ctx.time(lambda: (x.clone(), torch.add(x, grad)))}

    xg = x.detach().clone().requires_grad_(True)
    contenders = _contenders(dtype, label)
    for contender, fn in contenders.items():
        note = f"backend {backend}" if contender == "gancore" else ""
        with torch.no_grad():
            yield {"case": f"{label} fwd", "contender": contender, "bytes": 2 * nbytes, "note": note,
                   **ctx.time(lambda fn=fn: fn(x))}
        yield {"case": f"{label} fwd+bwd", "contender": contender, "bytes": 5 * nbytes, "note": note,
               **ctx.time(_fwd_bwd(fn, xg, grad))}
    if "torch.compile" in contenders:
        contenders["torch.compile"].check()
