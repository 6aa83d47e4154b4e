"""Whole training steps of pix2pix and CycleGAN: fused networks against the same networks in plain torch.nn.

One step is everything the trainer does for the family (CycleGAN: G_A, G_B, D_A and D_B with all their
losses, the image pools and both Adam steps; pix2pix: D, then G), through gancore's Trainer, on
in-memory pairs. Contenders, all with the same weights' layout and keys:
- "eager": model.fused=false, NCHW (what the reference code runs);
- "gancore": model.fused=true (fused norm + activation, the fused PatchGAN head), channels_last,
  the families' default on the CPU;
- "torch.compile": the eager networks under torch.compile (train.compile), where it compiles.
Each in fp32 and under bf16 autocast (the same autocast for every contender). Steps are timed one at a
time in rotating order (slow load changes on a shared machine fall on all alike); each row is the median.
Rows carry images/s, peak memory (CUDA: allocator peak; CPU: exact tensor peak from the profiler's
memory timeline) and a profiler breakdown of one step's self time: conv, norm, loss, optimiser, other.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable, Iterable

import torch

from gancore.bench.timing import BenchContext, measure
from gancore.data.base import GanDataset
from gancore.train import Trainer, build_config

BASELINE = "eager"
ALLOC_SENSITIVE = False

#: family -> (resolution, model overrides); the papers' networks at 256x256.
CONFIGS = {"cyclegan": (256, ["model.netG=resnet_9blocks"]), "pix2pix": (256, ["model.netG=unet_256"])}
QUICK_CONFIGS = {"cyclegan": (64, ["model.netG=resnet_6blocks", "model.ngf=16", "model.ndf=16"]),
                 "pix2pix": (64, ["model.netG=unet_64", "model.ngf=16", "model.ndf=16"])}
BATCHES, QUICK_BATCHES = (1, 4), (1, 2)
PRECISIONS = ("fp32", "bf16")
CONTENDERS = {"eager": ["model.fused=false", "train.channels_last=false"],
              "gancore": ["model.fused=true", "train.channels_last=true"],
              "torch.compile": ["model.fused=false", "train.channels_last=false", "train.compile=true"]}


class _Pairs(GanDataset):
    """Random images A and B in [-1, 1], pre-made so that no step pays for decoding."""

    sample_key = "B"

    def __init__(self, n: int, resolution: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.a = torch.rand(n, 3, resolution, resolution, generator=g) * 2 - 1
        self.b = torch.rand(n, 3, resolution, resolution, generator=g) * 2 - 1

    def __len__(self) -> int:
        return len(self.a)

    def sample(self, index: int, seed: int) -> dict:
        return {"A": self.a[index], "B": self.b[index]}


def make_step(family: str, resolution: int, overrides: list[str], batch: int, precision: str, contender: str,
              device: torch.device) -> Callable[[], None]:
    """Trainer.train_step of `family` as `contender` would run it."""
    config = build_config(family, overrides=overrides + CONTENDERS[contender] + [
        f"train.batch_size={batch}", f"train.precision={precision}", f"train.device={device}",
        "train.num_workers=0",
        "log.progress=false", "log.tensorboard=false", "log.sample_n=1"])
    trainer = Trainer(config, dataset=_Pairs(max(8, 2 * batch), resolution))
    return trainer.train_step


#: Profiler operator names -> group (first match wins); the optimiser is its step's whole time.
_GROUPS = (("conv", ("conv",)), ("norm", ("norm", "instance_norm_act")),
           ("loss", ("mse", "l1_loss", "binary_cross_entropy", "patchgan", "softplus")))


def breakdown(step: Callable[[], None]) -> dict[str, float]:
    """Fractions of one step's self CPU time (CUDA time on a GPU) by group."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities) as prof:
        step()
    cuda = torch.cuda.is_available()
    events = prof.key_averages()

    def self_time(e) -> float:
        return e.self_device_time_total if cuda else e.self_cpu_time_total

    total = sum(self_time(e) for e in events) or 1.0
    groups = dict.fromkeys(["conv", "norm", "loss", "optimiser", "other"], 0.0)
    optimiser_events = [e for e in events if e.key.startswith("Optimizer.step#")]
    if cuda:
        groups["optimiser"] = sum(e.device_time_total for e in optimiser_events)
    else:
        groups["optimiser"] = sum(e.cpu_time_total for e in optimiser_events)
    for e in events:
        if e.key.startswith("Optimizer."):
            continue
        group = next((g for g, keys in _GROUPS if any(k in e.key for k in keys)), None)
        if group is not None:
            groups[group] += self_time(e)
    groups["other"] = max(0.0, total - sum(groups.values()))
    return {k: v / total for k, v in groups.items()}


def _peak_mb(step: Callable[[], None], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) / 2**20
    from gancore.bench.suites.gradient_penalty import tensor_memory_mb

    return tensor_memory_mb(step)[0]


def _cases(ctx: BenchContext) -> list[tuple[str, int, list[str], int, str]]:
    configs, batches = (QUICK_CONFIGS, QUICK_BATCHES) if ctx.quick else (CONFIGS, BATCHES)
    return [(family, res, overrides, batch, precision) for family, (res, overrides) in configs.items()
            for batch in batches for precision in PRECISIONS]


def count(ctx: BenchContext) -> int:
    return len(_cases(ctx)) * len(CONTENDERS)


def run(ctx: BenchContext, contenders: Iterable[str] = tuple(CONTENDERS)) -> Iterable[dict]:
    contenders = list(contenders)
    for family, res, overrides, batch, precision in _cases(ctx):
        case = f"{family} {res}x{res} b{batch} {precision}"
        steps, failed = {}, {}
        for name in contenders:
            try:
                steps[name] = make_step(family, res, overrides, batch, precision, name, ctx.device)
                for _ in range(max(1, ctx.warmup)):
                    steps[name]()
            except Exception as err:  # torch.compile may not handle every op; report it, time the rest
                if name != "torch.compile":
                    raise
                failed[name] = f"{type(err).__name__}: {str(err).splitlines()[0][:120]}"
                steps.pop(name, None)
        samples: dict[str, list[float]] = {name: [] for name in steps}
        names = list(steps)
        for k in range(ctx.repeats):
            for name in names[k % len(names):] + names[:k % len(names)]:
                samples[name].append(measure(steps[name], device=ctx.device, repeats=1, warmup=0)["ms"])
        for name, times in samples.items():
            ms = statistics.median(times)
            parts = breakdown(steps[name])
            times.sort()
            yield {"case": case, "contender": name, "ms": ms, "ms_p10": times[round(0.1 * (len(times) - 1))],
                   "ms_p90": times[round(0.9 * (len(times) - 1))], "images_per_s": 1e3 * batch / ms,
                   "peak_mb": _peak_mb(steps[name], ctx.device),
                   "note": ", ".join(f"{g} {100 * f:.0f}%" for g, f in parts.items())}
        for name, why in failed.items():
            yield {"case": case, "contender": name, "ms": None, "note": f"did not compile: {why}"}


def main(argv: list[str] | None = None) -> None:
    """Run the suite at a chosen size and print its rows (`gancore bench --suite families` runs the presets)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", choices=sorted(CONFIGS), action="append")
    parser.add_argument("--resolution", type=int, default=None)
    parser.add_argument("--ngf", type=int, default=None, help="generator and discriminator width")
    parser.add_argument("--netG", default=None)
    parser.add_argument("--batch", type=int, action="append")
    parser.add_argument("--contender", choices=sorted(CONTENDERS), action="append")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    global BATCHES
    for family in list(CONFIGS):
        res, overrides = CONFIGS[family]
        if args.family and family not in args.family:
            del CONFIGS[family]
            continue
        extra = [f"model.ngf={args.ngf}", f"model.ndf={args.ngf}"] if args.ngf else []
        extra += [f"model.netG={args.netG}"] if args.netG else []
        CONFIGS[family] = (args.resolution or res, overrides + extra)
    BATCHES = tuple(args.batch or BATCHES)
    ctx = BenchContext(torch.device(args.device), repeats=args.repeats, warmup=1)
    rows = []
    for row in run(ctx, args.contender or CONTENDERS):
        rows.append(row)
        ms = f"{row['ms']:.1f}" if row["ms"] is not None else "-"
        print(f"{row['case']:32s} {row['contender']:14s} {ms:>9s} ms  peak {row.get('peak_mb') or 0:8.0f} MB  "
              f"{row['note']}", flush=True)
    by_case: dict[str, dict[str, float]] = {}
    for row in rows:
        if row["ms"] is not None:
            by_case.setdefault(row["case"], {})[row["contender"]] = row["ms"]
    for case, times in by_case.items():
        if "eager" in times:
            print(f"{case:32s} " + "  ".join(f"{n} {times['eager'] / t:.2f}x" for n, t in times.items()))


if __name__ == "__main__":
    main()
