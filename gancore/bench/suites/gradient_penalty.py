"""A WGAN-GP critic step on a pix2pix-style critic: eager PyTorch against gancore.

The critic is pix2pix's 70x70 PatchGAN (Conv-InstanceNorm-LeakyReLU, 3 downsamplings, a 1-channel
head) on (8, 3, 128, 128). One step is the critic loss mean D(fake) - mean D(real), plus the
two-sided penalty 10 * (||grad D(x_hat)|| - 1)^2 on interpolates, and the backward into the
critic's parameters. Contenders:

  eager            the textbook code, NCHW
  eager cl         the same in channels-last (what the layout alone gives)
  gancore          fuse()d critic (InstanceNormAct2d), PatchGANHead(loss="wgan") for the critic
                   loss, gancore.ops.gradient_penalty (fused interpolation and norm penalty)
  gancore cl       the same in channels-last
  gancore ops      only this issue's ops (PatchGANHead, fused penalty) on the eager critic's norms
  eager 1-fwd      one critic forward over real, fake and interpolates concatenated (exact for an
                   instance-normalised critic), the penalty from that forward's input gradient
  gancore 1-fwd    the same with gancore's critic and ops: against eager 1-fwd it credits the fusion,
                   and eager 1-fwd against eager credits the batching
  torch.compile    the critic's score forwards (D(real), D(fake)) compiled, the penalty eager on the
                   uncompiled critic, as gancore's trainer does (torch.compile has no double backward)

Each is timed with and without the penalty (the penalty's cost is the ratio of the two). The
`overhead` case times the penalty's two ops at a tiny shape on one thread, gancore against the eager
formulas, interleaved; target: gancore's time at most 1.25x eager's. Peak
memory is that of CPU tensors over one step (torch.profiler's memory timeline: what
torch.cuda.max_memory_allocated reports on a GPU), and "held" what a step leaves allocated until the
garbage collector runs. `python -m gancore.bench.suites.gradient_penalty --profile --penalty`
prints where the time goes (torch.profiler).
"""

from __future__ import annotations

import argparse
import copy
import functools
import gc
from collections.abc import Callable, Iterator

import torch
from torch import nn

from gancore.bench.compiled import StrictCompile
from gancore.bench.overhead import TINY_LIMIT, compare, no_grad, one_thread
from gancore.bench.timing import BenchContext, measure
from gancore.nn import PatchGANHead, fuse
from gancore.ops import gp_interpolate, gradient_norm_penalty, gradient_penalty, record_backends

BASELINE = "eager"
ALLOC_SENSITIVE = False

SHAPE = (8, 3, 128, 128)
QUICK_SHAPE = (2, 3, 64, 64)
OVERHEAD_TINY = (2, 3, 8, 8)
WEIGHT = 10.0


def pix2pix_critic() -> nn.Sequential:
    """pix2pix's NLayerDiscriminator (ndf=64, n_layers=3) with instance norm, as its code builds it."""
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Conv2d(3, 64, 4, 2, 1), nn.LeakyReLU(0.2, True)]
    for c_in, c_out, stride in ((64, 128, 2), (128, 256, 2), (256, 512, 1)):
        layers += [nn.Conv2d(c_in, c_out, 4, stride, 1), nn.InstanceNorm2d(c_out), nn.LeakyReLU(0.2, True)]
    layers.append(nn.Conv2d(512, 1, 4, 1, 1))
    return nn.Sequential(*layers)


def gancore_critic(critic: nn.Sequential, fuse_norms: bool = True) -> nn.Sequential:
    """fuse() the norms and activations, and score with a PatchGANHead whose loss is the WGAN critic's."""
    model = fuse(copy.deepcopy(critic)) if fuse_norms else copy.deepcopy(critic)
    model[-1] = PatchGANHead.from_conv(model[-1], loss="wgan")
    return model


# ---- one critic step per contender ----------------------------------------------------------------


def eager_interpolate(real: torch.Tensor, fake: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    alpha = torch.rand(real.shape[0], 1, 1, 1, generator=gen, device=real.device)
    return (alpha * real + (1 - alpha) * fake).requires_grad_(True)


def eager_norm_penalty(g: torch.Tensor) -> torch.Tensor:
    return WEIGHT * (g.flatten(1).norm(2, dim=1) - 1).square().mean()


def eager_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    x_hat = eager_interpolate(real, fake, gen)
    (g,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return eager_norm_penalty(g)


def eager_step(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, penalty: bool,
               gen: torch.Generator, scorer: Callable | None = None) -> None:
    """scorer: what computes D(fake) and D(real) (a compiled critic); the penalty always runs `critic`."""
    scorer = scorer or critic
    critic.zero_grad(set_to_none=True)
    loss = scorer(fake).mean() - scorer(real).mean()
    if penalty:
        loss = loss + eager_penalty(critic, real, fake, gen)
    loss.backward()


def eager_one_forward_step(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, penalty: bool,
                           gen: torch.Generator) -> None:
    critic.zero_grad(set_to_none=True)
    N = real.shape[0]
    if not penalty:
        scores = critic(torch.cat([real, fake]))
        (scores[N:].mean() - scores[:N].mean()).backward()
        return
    x_hat = eager_interpolate(real, fake, gen)
    scores = critic(torch.cat([real, fake, x_hat]))
    (g,) = torch.autograd.grad(scores[2 * N:].sum(), x_hat, create_graph=True)
    (scores[N:2 * N].mean() - scores[:N].mean() + eager_norm_penalty(g)).backward()


def gancore_step(model: nn.Sequential, real: torch.Tensor, fake: torch.Tensor, penalty: bool,
                 gen: torch.Generator) -> None:
    body, head = model[:-1], model[-1]
    model.zero_grad(set_to_none=True)
    loss = head.loss(body(fake), 0.0) + head.loss(body(real), 1.0)  # mean D(fake) - mean D(real), fused
    if penalty:
        loss = loss + gradient_penalty(model, real, fake, weight=WEIGHT, generator=gen)
    loss.backward()


def gancore_one_forward_step(model: nn.Sequential, real: torch.Tensor, fake: torch.Tensor, penalty: bool,
                             gen: torch.Generator) -> None:
    model.zero_grad(set_to_none=True)
    N = real.shape[0]
    if not penalty:
        scores = model(torch.cat([real, fake]))
        (scores[N:].mean() - scores[:N].mean()).backward()
        return
    x_hat = gp_interpolate(real, fake, generator=gen)
    scores = model(torch.cat([real, fake, x_hat]))
    (g,) = torch.autograd.grad(scores[2 * N:].sum(), x_hat, create_graph=True)
    (scores[N:2 * N].mean() - scores[:N].mean() + gradient_norm_penalty(g, weight=WEIGHT)).backward()


def _contenders(quick: bool) -> dict[str, tuple[Callable, str, str]]:
    """name -> (step, model kind, layout)."""
    contenders = {"eager": (eager_step, "eager", "nchw"), "gancore": (gancore_step, "gancore", "nchw")}
    if not quick:
        contenders.update({
            "eager cl": (eager_step, "eager", "channels_last"),
            "gancore cl": (gancore_step, "gancore", "channels_last"),
            "gancore ops": (gancore_step, "gancore ops", "nchw"),
            "eager 1-fwd": (eager_one_forward_step, "eager", "nchw"),
            "gancore 1-fwd": (gancore_one_forward_step, "gancore", "nchw"),
            "torch.compile": (eager_step, "compiled", "nchw"),
        })
    return contenders


def _setup(kind: str, layout: str, shape, device) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    critic = pix2pix_critic()
    model = critic if kind in ("eager", "compiled") else gancore_critic(critic, fuse_norms=kind == "gancore")
    gen = torch.Generator().manual_seed(1)
    real, fake = (torch.randn(shape, generator=gen) for _ in range(2))
    model, real, fake = model.to(device), real.to(device), fake.to(device)
    if layout == "channels_last":
        model = model.to(memory_format=torch.channels_last)
        real, fake = (t.contiguous(memory_format=torch.channels_last) for t in (real, fake))
    return model, real, fake


# ---- the suite -----------------------------------------------------------------------------------------


def run(ctx: BenchContext) -> Iterator[dict]:
    yield from overhead(ctx)
    shape = QUICK_SHAPE if ctx.quick else SHAPE
    label = f"WGAN-GP critic step {tuple(shape)}"
    no_penalty_ms: dict[str, float] = {}
    for penalty in (False, True):
        case = f"{label}{'' if penalty else ' without penalty'}"
        for name, (step, kind, layout) in _contenders(ctx.quick).items():
            model, real, fake = _setup(kind, layout, shape, ctx.device)
            gen = torch.Generator(device=ctx.device).manual_seed(2)
            scorer = None
            if kind == "compiled":  # fresh per case; the same shapes and grad mode: one graph
                scorer = StrictCompile(model, f"{case}: {name}")
                step = functools.partial(step, scorer=scorer)
            with record_backends() as ran:
                step(model, real, fake, penalty, gen)
            timing = measure(functools.partial(step, model, real, fake, penalty, gen), device=ctx.device,
                             repeats=ctx.repeats, warmup=1 if scorer is None else 2,
                             max_seconds=ctx.max_seconds * 3)
            notes = ["scores compiled (fullgraph, dynamic=False), penalty eager"] if scorer else []
            if ran:
                notes.append("ops " + ", ".join(sorted({f"{op}:{impl}" for op, impl in ran})))
            if penalty and name in no_penalty_ms:
                notes.append(f"penalty x{timing['ms'] / no_penalty_ms[name]:.2f} of the step without it")
            else:
                no_penalty_ms[name] = timing["ms"]
            peak = None
            if not ctx.quick and ctx.device.type == "cpu":
                peak, end = tensor_memory_mb(functools.partial(step, model, real, fake, penalty, gen))
                held = end - sum(p.grad.numel() * p.grad.element_size() for p in model.parameters()
                                 if p.grad is not None) / 2**20  # what remains besides the new .grad
                notes.append(f"tensor peak {peak:.0f} MB" + (f", {held:.0f} MB held until gc" if held >= 1 else ""))
            if scorer is not None:
                scorer.check()
            del model
            gc.collect()
            yield {"case": case, "contender": name, "peak_mb": peak, "note": "; ".join(notes), **timing}


def overhead(ctx: BenchContext) -> Iterator[dict]:
    """The penalty's ops at a tiny shape: interpolation (forward) and norm penalty (forward, forward+backward)."""
    gen = torch.Generator().manual_seed(0)
    real, fake, g = (torch.randn(OVERHEAD_TINY, generator=gen).to(ctx.device) for _ in range(3))
    alpha = torch.rand(OVERHEAD_TINY[0], generator=gen).to(ctx.device)
    gg = g.clone().requires_grad_(True)
    a4 = alpha.view(-1, 1, 1, 1)
    with record_backends() as ran:
        gp_interpolate(real, fake, alpha)
        gradient_norm_penalty(g, weight=WEIGHT)
    note = "ops " + ", ".join(sorted({f"{op}:{impl}" for op, impl in ran}))
    label = f"overhead tiny {OVERHEAD_TINY}"
    with one_thread():
        yield from compare(ctx, f"{label} interpolate fwd", no_grad(lambda: a4 * real + (1 - a4) * fake),
                           no_grad(lambda: gp_interpolate(real, fake, alpha)), TINY_LIMIT, note)
        yield from compare(ctx, f"{label} norm penalty fwd", no_grad(lambda: eager_norm_penalty(g)),
                           no_grad(lambda: gradient_norm_penalty(g, weight=WEIGHT)), TINY_LIMIT, note)
        yield from compare(ctx, f"{label} norm penalty fwd+bwd",
                           lambda: torch.autograd.grad(eager_norm_penalty(gg), gg),
                           lambda: torch.autograd.grad(gradient_norm_penalty(gg, weight=WEIGHT), gg), TINY_LIMIT,
                           note)


# ---- peak memory ----------------------------------------------------------------------------------------


def tensor_memory_mb(fn: Callable[[], object]) -> tuple[float, float]:
    """(peak, still allocated at the end) of the CPU tensors fn allocates in one call, in MB.

    From torch.profiler's memory timeline: every tensor allocation and free, in order, so the peak
    is exact (glibc's resident size would mostly show the allocator's caching).
    """
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile
    from torch.profiler._memory_profiler import Action

    gc.collect()
    with torch_profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True,
                       with_stack=True) as prof:
        fn()
    current = peak = 0
    for _, action, (key, _version), size in prof._memory_profile().timeline:
        if key.device.type != "cpu":
            continue
        if action == Action.CREATE:
            current += size
        elif action == Action.DESTROY:
            current -= size
        peak = max(peak, current)
    gc.collect()
    return peak / 2**20, current / 2**20


# ---- where the time goes ----------------------------------------------------------------------------------

_GROUPS = (("convolutions", ("convolution",)), ("instance norm (eager)", ("batch_norm",)),
           ("gancore fused ops", ("gancore::", "GeneratedBackwardFor_gancore")),
           ("elementwise, copies and reductions", ("aten::",)))


def profile(shape=SHAPE, penalty: bool = True) -> None:
    """Prints, for eager and gancore, self CPU time by group and the top operators."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    for name in ("eager", "gancore"):
        step, kind, layout = _contenders(quick=True)[name]
        model, real, fake = _setup(kind, layout, shape, "cpu")
        gen = torch.Generator().manual_seed(2)
        step(model, real, fake, penalty, gen)
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            step(model, real, fake, penalty, gen)
        events = prof.key_averages()
        total = sum(e.self_cpu_time_total for e in events)
        groups = dict.fromkeys([g for g, _ in _GROUPS] + ["other"], 0.0)
        for e in events:
            group = next((g for g, keys in _GROUPS if any(k in e.key for k in keys)), "other")
            groups[group] += e.self_cpu_time_total
        print(f"\n== {name}: {total / 1e3:.0f} ms self CPU time ({torch.get_num_threads()} threads)")
        for group, us in groups.items():
            print(f"  {group:36s} {us / 1e3:9.1f} ms  {100 * us / total:5.1f}%")
        print(events.table(sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=60))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", action="store_true", help="print a torch.profiler breakdown of one step")
    parser.add_argument("--penalty", action="store_true", help="profile the step with the penalty")
    parser.add_argument("--shape", default=",".join(map(str, SHAPE)))
    args = parser.parse_args(argv)
    shape = tuple(int(s) for s in args.shape.split(","))
    if args.profile:
        profile(shape, penalty=args.penalty)
    else:
        parser.print_help()


if __name__ == "__main__":
    main()
