"""patchgan_loss (PatchGAN's last conv + per-patch GAN loss + mean) against eager PyTorch and torch.compile.

Eager is what a pix2pix trainer runs: F.conv2d to one channel, then the loss against a full
target map. Every case is timed forward (no grad) and forward+backward (gradients to h, weight and
bias). Bytes moved are the op's compulsory traffic, the same for every contender: forward reads h,
forward+backward reads h twice and writes dh.

The `overhead` case times a tiny input, (1, 8, 4, 4) with a 4x4 kernel, on one thread, gancore and eager
interleaved; target: gancore's time at most 1.25x eager's, forward and forward+backward.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

from gancore.bench.compiled import StrictCompile
from gancore.bench.overhead import TINY_LIMIT, compare, no_grad, one_thread
from gancore.bench.timing import BenchContext
from gancore.ops import patchgan_loss, record_backends

BASELINE = "eager"
ALLOC_SENSITIVE = False

SHAPES = {
    "pix2pix D": (1, 512, 31, 31),  # the 70x70 PatchGAN's last layer at 256x256 input, batch 1
    "pix2pix D batch 16": (16, 512, 31, 31),
}
QUICK_SHAPES = ("pix2pix D",)
OVERHEAD_TINY = (1, 8, 4, 4)
LOSSES = {"lsgan": lambda z, t: F.mse_loss(z, t), "bce": F.binary_cross_entropy_with_logits}


def _eager(loss: str):
    def run(h, w, b):
        z = F.conv2d(h, w, b, padding=1)
        return LOSSES[loss](z, torch.ones_like(z))

    return run


def _fused(loss: str):
    def run(h, w, b):
        return patchgan_loss(h, w, b, 1.0, loss=loss)

    return run


def run(ctx: BenchContext) -> Iterator[dict]:
    yield from overhead(ctx)
    names = QUICK_SHAPES if ctx.quick else tuple(SHAPES)
    for name in names:
        for layout in (("nchw",) if ctx.quick else ("nchw", "channels_last")):
            for loss in (("lsgan",) if ctx.quick or layout == "channels_last" else tuple(LOSSES)):
                yield from _case(ctx, name, SHAPES[name], layout, loss)


def _inputs(shape, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    h = torch.randn(shape, generator=gen).to(device)
    w = (torch.randn(1, shape[1], 4, 4, generator=gen) / (16 * shape[1]) ** 0.5).to(device)
    return h, w, torch.zeros(1, device=device)


def overhead(ctx: BenchContext) -> Iterator[dict]:
    h, w, b = _inputs(OVERHEAD_TINY, ctx.device)
    leaves = [t.clone().requires_grad_(True) for t in (h, w, b)]
    eager, fused = _eager("lsgan"), _fused("lsgan")
    with record_backends() as ran:
        fused(h, w, b)
    note = f"backend {ran[0][1]}; lsgan" if ran else "lsgan"
    label = f"overhead tiny {OVERHEAD_TINY} lsgan"
    with one_thread():
        yield from compare(ctx, f"{label} fwd", no_grad(lambda: eager(h, w, b)), no_grad(lambda: fused(h, w, b)),
                           TINY_LIMIT, note)
        yield from compare(ctx, f"{label} fwd+bwd", lambda: torch.autograd.grad(eager(*leaves), leaves),
                           lambda: torch.autograd.grad(fused(*leaves), leaves), TINY_LIMIT, note)


def _case(ctx: BenchContext, name: str, shape, layout: str, loss: str) -> Iterator[dict]:
    h, w, b = _inputs(shape, ctx.device)
    if layout == "channels_last":
        h = h.contiguous(memory_format=torch.channels_last)
    nbytes = h.numel() * h.element_size()
    label = f"{name} {tuple(shape)} {loss} {layout}"
    with record_backends() as ran:
        _fused(loss)(h, w, b)
    note = f"backend {ran[0][1]}" if ran else ""

    contenders = {"eager": _eager(loss), "gancore": _fused(loss)}
    if not ctx.quick:
        contenders["torch.compile"] = StrictCompile(_eager(loss), label)  # its own, fresh per case
    leaves = [t.detach().clone().requires_grad_(True) for t in (h, w, b)]
    for contender, fn in contenders.items():
        extra = {"note": note} if contender == "gancore" else {}
        with torch.no_grad():
            yield {"case": f"{label} fwd", "contender": contender, "bytes": nbytes, **extra,
                   **ctx.time(lambda fn=fn: fn(h, w, b))}
        yield {"case": f"{label} fwd+bwd", "contender": contender, "bytes": 3 * nbytes, **extra,
               **ctx.time(lambda fn=fn: torch.autograd.grad(fn(*leaves), leaves))}
    if "torch.compile" in contenders:
        contenders["torch.compile"].check()
