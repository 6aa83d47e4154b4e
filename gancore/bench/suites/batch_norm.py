"""batch_norm_act against eager PyTorch and torch.compile: the batch-normalised layers of the DCGAN,
SRGAN and pix2pix discriminators, in training mode (batch statistics, running-buffer updates).

A case runs every BN + LeakyReLU(0.2) layer of one network on its own activation, forward and
forward+backward (gradients of x, weight and bias). torch.compile gets one compiled function per
case, compiled with fullgraph=True after a dynamo reset, and the suite fails if dynamo ran any frame
uncompiled (no silent eager fallback under the torch.compile label). Each contender is timed on its
own, hot; the gancore rows carry the issue's targets as ratios of the medians: forward at least 2x eager,
forward+backward at least 1.5x eager, and each at least 1.2x torch.compile (the "gancore vs
torch.compile" rows). Interleaving the contenders call by call was tried: a call after another
contender's runs slower (torch.compile's DCGAN D forward 1.5 -> 3.2-3.5 ms, gancore's 1.1 -> 1.7-2.2 ms
after eager's), which times every contender cold.

The `overhead` case runs one layer on a tiny tensor, (1, 8, 4, 4), on one thread, gancore and eager
interleaved: the time is the per-call host cost, forward and forward+backward (the same 1.25x-eager
limit as the instance_norm suite's overhead case). It is what a batch-1 pix2pix D pays per layer on
top of its kernels.

End to end: one whole DCGAN train step (the D phase, then the G phase, both with Adam) through gancore's
Trainer, built by the families suite's make_step, at the paper's size (64x64, widths 64/64, batch 64;
quick: 32x32, widths 16, batch 8), fp32, training mode. Contenders: the fused networks (model.fused=true,
batch_norm_act), the same networks in plain torch.nn (eager), and those under torch.compile
(train.compile); the compile row fails unless dynamo captured graphs with no graph break and never fell
back at the recompile limit. The contenders' steps are timed interleaved (ABBA), one step per sample.
Run on a shared machine, the numbers are only comparable as ratios within one run.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterator

import torch
from torch import nn

from gancore.bench.overhead import TINY_LIMIT, compare, no_grad, one_thread
from gancore.bench.report import time_target
from gancore.bench.suites.families import check_compiled, make_step
from gancore.bench.timing import BenchContext, measure
from gancore.families import get_family
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
#: The issue's targets for the network cases, as limits on time / baseline: forward at least 2x eager,
#: forward+backward at least 1.5x eager, and both at least 1.2x torch.compile.
FWD_LIMIT = 1 / 2
FWD_BWD_LIMIT = 1 / 1.5
COMPILE_LIMIT = 1 / 1.2
#: Samples per network case at least: its calls take 0.3-40 ms, and at 15 samples a noisy moment moved a
#: median by 2x (pix2pix D forward 0.31 -> 0.62 ms in one run); these many cost a few seconds a case.
NETWORK_REPEATS = 60
OVERHEAD_TINY = (1, 8, 4, 4)
#: The end-to-end step: the dcgan family's own bench presets (full: the paper's 64x64 and widths 64/64) at
#: the paper's batch 64, quick at batch 8.
E2E_BATCH = {"full": 64, "quick": 8}
E2E_CONTENDERS = ("eager", "gancore", "torch.compile")  # as the families suite names them (CONTENDERS)


def _eager_layers(shapes, device) -> list[nn.Module]:
    return [nn.Sequential(nn.BatchNorm2d(s[1]), nn.LeakyReLU(SLOPE)).to(device) for s in shapes]


def _fused_layers(shapes, device) -> list[nn.Module]:
    return [BatchNormAct2d(s[1], negative_slope=SLOPE).to(device) for s in shapes]


def _network(layers: list[nn.Module]) -> Callable:
    def run(xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [layer(x) for layer, x in zip(layers, xs)]

    return run


def count(ctx: BenchContext) -> int:
    return 2 * 2 + len(QUICK if ctx.quick else NETWORKS) * (3 + 1) * 2 + len(E2E_CONTENDERS)


def run(ctx: BenchContext) -> Iterator[dict]:
    yield from overhead(ctx)
    for name in QUICK if ctx.quick else NETWORKS:
        yield from _case(ctx, name, NETWORKS[name])
    yield from train_step_case(ctx)


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


def overhead(ctx: BenchContext) -> Iterator[dict]:
    x = torch.randn(OVERHEAD_TINY, generator=torch.Generator().manual_seed(0)).to(ctx.device)
    xg = x.clone().requires_grad_(True)
    grad = torch.randn_like(x)
    eager, fused = (layers[0] for layers in (_eager_layers([OVERHEAD_TINY], ctx.device),
                                              _fused_layers([OVERHEAD_TINY], ctx.device)))
    with record_backends() as ran:
        fused(x)
    note = f"backend {ran[0][1] if ran else 'none'}; training mode, gradients of x, weight and bias"
    label = f"overhead tiny {OVERHEAD_TINY}"
    with one_thread():
        yield from compare(ctx, f"{label} fwd", *(no_grad(lambda m=m: m(x)) for m in (eager, fused)), TINY_LIMIT,
                           note)
        fwd_bwd = [lambda m=m: torch.autograd.grad(m(xg), [xg, *m.parameters()], grad) for m in (eager, fused)]
        yield from compare(ctx, f"{label} fwd+bwd", *fwd_bwd, TINY_LIMIT, note)


def _case(ctx: BenchContext, name: str, shapes) -> Iterator[dict]:
    """The network's layers, forward and forward+backward, each contender timed on its own (hot: the
    steady state of repeated calls); the gancore rows carry the issue's targets as ratios of the medians."""
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
    repeats = max(ctx.repeats, NETWORK_REPEATS)
    rows: dict[str, list[dict]] = {"fwd": [], "fwd+bwd": []}
    for contender, (fn, layers) in contenders.items():
        params = [p for layer in layers for p in layer.parameters()]

        def fwd_bwd(fn=fn, params=params):
            return torch.autograd.grad(fn(xgs), xgs + params, grads)

        with torch.no_grad():
            fwd = measure(lambda fn=fn: fn(xs), device=ctx.device, repeats=repeats, warmup=ctx.warmup,
                          max_seconds=ctx.max_seconds)
        both = measure(fwd_bwd, device=ctx.device, repeats=repeats, warmup=ctx.warmup, max_seconds=ctx.max_seconds)
        if contender == "torch.compile":
            _check_compiled(name)
        extra = {"note": note} if contender == "gancore" else {}
        rows["fwd"].append({"case": f"{name} fwd", "contender": contender, "bytes": 2 * nbytes, **extra, **fwd})
        rows["fwd+bwd"].append({"case": f"{name} fwd+bwd", "contender": contender, "bytes": 5 * nbytes, **extra,
                                **both})
    for kind, limit in (("fwd", FWD_LIMIT), ("fwd+bwd", FWD_BWD_LIMIT)):
        ms = {row["contender"]: row["ms"] for row in rows[kind]}
        rows[kind][-1].update(time_target(ms["gancore"] / ms["eager"], limit))
        yield from rows[kind]
        yield {"case": f"{name} {kind}: gancore vs torch.compile", "contender": "gancore", "ms": None,
               "note": "ratio of the medians", **time_target(ms["gancore"] / ms["torch.compile"], COMPILE_LIMIT,
                                                             "torch.compile")}


def train_step_case(ctx: BenchContext, contenders: tuple[str, ...] = E2E_CONTENDERS) -> Iterator[dict]:
    """One DCGAN train step (D phase + G phase, Adam), fused vs eager vs compiled eager, timed interleaved."""
    from torch._dynamo.utils import counters

    preset = "quick" if ctx.quick else "full"
    case = get_family("dcgan").bench_cases[preset]
    batch = E2E_BATCH[preset]
    label = f"dcgan train step {case.label} b{batch}"
    steps = {}
    for name in contenders:
        if name == "torch.compile":
            torch._dynamo.reset()
            counters.clear()
        steps[name] = make_step("dcgan", case.overrides, batch, "fp32", name, ctx.device)
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    fused_ops: dict[str, set[str]] = {}
    with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True):
        for name in contenders:  # warm-up (the compile contender compiles here)
            with record_backends() as ran:
                for _ in range(max(1, ctx.warmup)):
                    steps[name]()
            fused_ops[name] = {f"{op} ({backend})" for op, backend in ran}
        # Whole steps take seconds: one step per sample, the order rotating from round to round.
        for k in range(ctx.repeats):
            for name in contenders[k % len(contenders):] + contenders[:k % len(contenders)]:
                samples[name].append(measure(steps[name], device=ctx.device, repeats=1, warmup=0)["ms"])
    if "torch.compile" in steps:
        check_compiled(f"batch_norm suite, {label}", steps["torch.compile"])
    for name in contenders:
        times = sorted(samples[name])
        ms = statistics.median(times)
        yield {"case": label, "contender": name, "ms": ms, "ms_p10": times[round(0.1 * (len(times) - 1))],
               "ms_p90": times[round(0.9 * (len(times) - 1))], "samples": len(times),
               "images_per_s": 1e3 * batch / ms, "note": "fused ops: " + (", ".join(sorted(fused_ops[name])) or "none")}
