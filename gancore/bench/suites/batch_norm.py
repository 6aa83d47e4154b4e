"""batch_norm_act against eager PyTorch and torch.compile: the batch-normalised layers of the DCGAN,
SRGAN and pix2pix discriminators, in training mode (batch statistics, running-buffer updates).

A case runs every BN + LeakyReLU(0.2) layer of one network on its own activation, forward and
forward+backward (gradients of x, weight and bias). torch.compile gets one compiled function per
case, compiled with fullgraph=True after a dynamo reset, and the suite fails if dynamo ran any frame
uncompiled (no silent eager fallback under the torch.compile label).
Run on a shared machine, the numbers are only comparable as ratios within one run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import nn

from gancore.bench.timing import BenchContext
from gancore.nn import BatchNormAct2d
from gancore.ops import record_backends

BASELINE = "eager"
ALLOC_SENSITIVE = False
SLOPE = 0.2

# (N, C, H, W) of each batch-normalised activation
NETWORKS = {
    "dcgan-D 64x64 b64": [(64, 128, 16, 16), (64, 256, 8, 8), (64, 512, 4, 4)],
    "srgan-D 96x96 b16": [(16, 64, 48, 48), (16, 128, 48, 48), (16, 128, 24, 24), (16, 256, 24, 24),
                          (16, 256, 12, 12), (16, 512, 12, 12), (16, 512, 6, 6)],
    "pix2pix-D 256x256 b1": [(1, 128, 64, 64), (1, 256, 32, 32), (1, 512, 31, 31)],
}
QUICK = ("dcgan-D 64x64 b64",)


def _eager_layers(shapes, device) -> list[nn.Module]:
    return [nn.Sequential(nn.BatchNorm2d(s[1]), nn.LeakyReLU(SLOPE)).to(device) for s in shapes]


def _fused_layers(shapes, device) -> list[nn.Module]:
    return [BatchNormAct2d(s[1], negative_slope=SLOPE).to(device) for s in shapes]


def _network(layers: list[nn.Module]) -> Callable:
    def run(xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [layer(x) for layer, x in zip(layers, xs)]

    return run


def count(ctx: BenchContext) -> int:
    return len(QUICK if ctx.quick else NETWORKS) * 3 * 2


def run(ctx: BenchContext) -> Iterator[dict]:
    for name in QUICK if ctx.quick else NETWORKS:
        yield from _case(ctx, name, NETWORKS[name])


def _compiled(layers: list[nn.Module]) -> Callable:
    torch._dynamo.reset()
    return torch.compile(_network(layers), fullgraph=True, dynamic=False)


def _check_compiled(label: str) -> None:
    """fullgraph=True already raises on a graph break or a recompile limit; this catches the rest (no
    graph captured at all)."""
    from torch._dynamo.utils import counters

    if counters["stats"]["unique_graphs"] < 2:  # the no-grad forward and the training forward
        raise RuntimeError(f"batch_norm suite, {label}: torch.compile captured {counters['stats']['unique_graphs']} "
                           f"graphs, expected 2; it ran eager code")


def _case(ctx: BenchContext, name: str, shapes) -> Iterator[dict]:
    gen = torch.Generator().manual_seed(0)
    xs = [torch.randn(s, generator=gen).to(ctx.device) for s in shapes]
    grads = [torch.randn(s, generator=gen).to(ctx.device) for s in shapes]
    nbytes = sum(x.numel() * x.element_size() for x in xs)
    eager_layers = _eager_layers(shapes, ctx.device)
    contenders = {"eager": (_network(eager_layers), eager_layers),
                  "torch.compile": (_compiled(eager_layers), eager_layers)}
    fused_layers = _fused_layers(shapes, ctx.device)
    contenders["gancore"] = (_network(fused_layers), fused_layers)
    with record_backends() as ran:
        contenders["gancore"][0](xs)
    note = f"backend {ran[0][1]}" if ran else ""

    xgs = [x.detach().clone().requires_grad_(True) for x in xs]
    for contender, (fn, layers) in contenders.items():
        params = [p for layer in layers for p in layer.parameters()]

        def fwd_bwd(fn=fn, params=params):
            return torch.autograd.grad(fn(xgs), xgs + params, grads)

        with torch.no_grad():
            fwd = ctx.time(lambda fn=fn: fn(xs))
        both = ctx.time(fwd_bwd)
        if contender == "torch.compile":
            _check_compiled(name)
        extra = {"note": note} if contender == "gancore" else {}
        yield {"case": f"{name} fwd", "contender": contender, "bytes": 2 * nbytes, **extra, **fwd}
        yield {"case": f"{name} fwd+bwd", "contender": contender, "bytes": 5 * nbytes, **extra, **both}
