"""Peak memory and time of one full pix2pixHD training step (G phase, then D phase, both Adam updates),
batch 1: the reference layout in eager PyTorch, fused, fused + activation checkpointing (every stage of G,
every scale of D; gancore.models.pix2pixhd), and that under bf16 autocast.

Memory: each contender runs one step first (Adam's state exists from then on), then one profiled step.
peak_mb = the tensors resident before the step (weights, buffers, Adam state: the same for every contender)
+ the exact peak of the tensors the step creates (activations, gradients, optimiser temporaries;
torch.profiler's memory timeline, CPU) or the allocator peak (CUDA). Measured at two sizes, the difference
gives each contender's per-pixel slope, and the extrapolated rows scale it to 2048x1024 (linear in pixels:
every network here is fully convolutional, and the resident part does not depend on the size). Target:
fused + checkpointing at most 0.6x the eager peak.

Time: the fp32 contenders at the first size, steps timed one at a time in rotating order (slow load changes
on a shared machine fall on all alike); medians of the per-round ratios. Targets: fused at least 1.25x
eager's speed (time / eager <= 0.8), checkpointing at most 1.35x the fused step.

The full preset is the paper's global generator (4 downsamplings, 9 residual blocks, 35 labels + instance
edges, 2 discriminators, feature matching) at a quarter of its width (ngf = ndf = 16), so that a CPU runs it
in minutes; `--set model.ngf=64 --set model.ndf=64` gives the paper's width (docs/pix2pixhd.md has both).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Iterable

import torch

from gancore.bench.report import time_target
from gancore.bench.suites.families import make_step
from gancore.bench.suites.gradient_penalty import tensor_memory_mb
from gancore.bench.timing import BenchContext

BASELINE = "eager"
ALLOC_SENSITIVE = False

#: name -> (families-suite contender: layout and fused option, precision, extra overrides)
CONTENDERS = {"eager": ("eager", "fp32", ()),
              "fused": ("gancore", "fp32", ()),
              "fused+ckpt": ("gancore", "fp32", ("model.checkpoint_activations=true",)),
              "fused+ckpt+bf16": ("gancore", "bf16", ("model.checkpoint_activations=true",))}
FULL = ("model.ngf=16", "model.ndf=16")
QUICK = ("model.ngf=4", "model.ndf=4", "model.label_nc=8", "model.n_downsample_global=2",
         "model.n_blocks_global=3")
#: (width, height) measured, then extrapolated to
SIZES = {"full": ((512, 256), (1024, 512)), "quick": ((64, 32), (128, 64))}
TARGET = {"full": (2048, 1024), "quick": (256, 128)}
#: The contenders timed, and the rounds (one step of each per round)
TIMED = ("eager", "fused", "fused+ckpt")
ROUNDS = {"full": 5, "quick": 3}
MEMORY_LIMIT = 0.6  # fused + checkpointing: peak / eager peak
FUSED_LIMIT = 0.8  # fused: time / eager (at least 1.25x the speed)
CHECKPOINT_LIMIT = 1.35  # fused + checkpointing: time / fused


def resident_mb(trainer: object) -> float:
    """Weights, buffers and optimiser state held between steps, in MB."""
    tensors = [t for m in trainer.nets.values() for t in [*m.parameters(), *m.buffers()]]
    tensors += [v for opt in trainer.optimizers.values() for s in opt.state.values() for v in s.values()
                if isinstance(v, torch.Tensor)]
    return sum(t.numel() * t.element_size() for t in tensors) / 2**20


def _step(width: int, height: int, contender: str, overrides: Iterable[str],
          device: torch.device) -> Callable[[], object]:
    layout, precision, extra = CONTENDERS[contender]
    sets = [*overrides, *extra, f"data.width={width}", f"data.height={height}", "data.size=2"]
    return make_step("pix2pixhd", sets, 1, precision, layout, device)


def measure_step(width: int, height: int, contender: str, overrides: Iterable[str], device: torch.device) -> dict:
    """{peak_mb, resident_mb} of one step of `contender` at width x height."""
    step = _step(width, height, contender, overrides, device)
    trainer = step.trainer  # type: ignore[attr-defined]
    step()  # Adam's state is allocated in the first step
    resident = resident_mb(trainer)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        step()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak = resident + tensor_memory_mb(step)[0]
    return {"peak_mb": peak, "resident_mb": resident}


def step_times(width: int, height: int, contenders: Iterable[str], overrides: Iterable[str], device: torch.device,
               rounds: int) -> dict[str, list[float]]:
    """contender -> ms of each round's step; every round runs one step of each, in rotating order."""
    steps = {name: _step(width, height, name, overrides, device) for name in contenders}
    for step in steps.values():
        step()  # warm-up (Adam's state, first-touch allocations)
    names = list(steps)
    times: dict[str, list[float]] = {name: [0.0] * rounds for name in names}
    for k in range(rounds):
        for name in names[k % len(names):] + names[:k % len(names)]:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            started = time.perf_counter()
            steps[name]()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times[name][k] = 1e3 * (time.perf_counter() - started)
    return times


def round_ratio(times: dict[str, list[float]], name: str, base: str) -> float:
    """Median over rounds of name's time / base's time in the same round."""
    return statistics.median(a / b for a, b in zip(times[name], times[base]))


def extrapolate(small: dict, large: dict, sizes: tuple[tuple[int, int], ...],
                target: tuple[int, int]) -> tuple[float, float]:
    """(peak MB at target, slope in MB per megapixel) from the peaks at the two sizes."""
    (w0, h0), (w1, h1) = sizes
    slope = (large["peak_mb"] - small["peak_mb"]) / ((w1 * h1 - w0 * h0) / 1e6)
    return large["peak_mb"] + slope * (target[0] * target[1] - w1 * h1) / 1e6, slope


def count(ctx: BenchContext) -> int:
    return 3 * len(CONTENDERS) + len(TIMED) + 1


def run(ctx: BenchContext, contenders: Iterable[str] = tuple(CONTENDERS),
        sizes: tuple[tuple[int, int], ...] | None = None, extra: Iterable[str] = (),
        rounds: int | None = None) -> Iterable[dict]:
    """Memory rows per size and contender, the extrapolation from the last two sizes, then the step times
    at the first size (rounds=0: none)."""
    preset = "quick" if ctx.quick else "full"
    overrides = (*(QUICK if ctx.quick else FULL), *extra)
    sizes, target = sizes or SIZES[preset], TARGET[preset]
    results: dict[str, list[dict]] = {}
    for width, height in sizes:
        case = f"pix2pixhd step {width}x{height} b1 peak memory"
        for name in contenders:
            result = measure_step(width, height, name, overrides, ctx.device)
            results.setdefault(name, []).append(result)
            row = {"case": case, "contender": name, "ms": None, "peak_mb": result["peak_mb"],
                   "note": f"resident (weights, buffers, Adam state) {result['resident_mb']:.0f} MB"}
            if name == "fused+ckpt" and "eager" in results:
                ratio = result["peak_mb"] / results["eager"][-1]["peak_mb"]
                row.update({"target": f"peak / eager <= {MEMORY_LIMIT:g}", "limit": MEMORY_LIMIT, "ratio": ratio,
                            "passed": ratio <= MEMORY_LIMIT})
            yield row
    for name, measured in results.items():
        if len(measured) < 2:
            continue
        peak, slope = extrapolate(measured[-2], measured[-1], sizes[-2:], target)
        yield {"case": f"pix2pixhd step {target[0]}x{target[1]} b1 peak memory (extrapolated)", "contender": name,
               "ms": None, "peak_mb": peak, "note": f"{slope:.0f} MB per megapixel"}
    rounds = ROUNDS[preset] if rounds is None else rounds
    timed = [name for name in TIMED if name in contenders]
    if not rounds or not timed:
        return
    width, height = sizes[0]
    times = step_times(width, height, timed, overrides, ctx.device, rounds)
    case = f"pix2pixhd step {width}x{height} b1 fp32"
    for name, ms in times.items():
        row = {"case": case, "contender": name, "ms": statistics.median(ms), "ms_p10": min(ms), "ms_p90": max(ms),
               "images_per_s": 1e3 / statistics.median(ms), "note": f"{rounds} interleaved rounds"}
        if name == "fused" and "eager" in times:
            row.update(time_target(round_ratio(times, "fused", "eager"), FUSED_LIMIT))
        yield row
    if "fused" in times and "fused+ckpt" in times:
        # Its own case without a time (the suite's speed-ups are against eager): the target is against fused.
        yield {"case": f"{case}: checkpointing vs fused", "contender": "fused+ckpt", "ms": None,
               "note": f"median of {rounds} per-round ratios",
               **time_target(round_ratio(times, "fused+ckpt", "fused"), CHECKPOINT_LIMIT, "fused")}


def main(argv: list[str] | None = None) -> None:
    """Print the table (`gancore bench --suite pix2pixhd_memory` writes it with the other suites)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny networks and sizes")
    parser.add_argument("--contender", choices=sorted(CONTENDERS), action="append", help="default: all")
    parser.add_argument("--size", action="append", metavar="WxH", help="sizes to measure (default: the preset's)")
    parser.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE",
                        help="extra config overrides, e.g. model.ngf=64 (after the preset's)")
    parser.add_argument("--rounds", type=int, help="timed rounds at the first size (0: memory only)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    ctx = BenchContext(torch.device(args.device), quick=args.quick)
    sizes = tuple(tuple(int(v) for v in size.lower().split("x")) for size in args.size) if args.size else None
    rows = []
    for row in run(ctx, args.contender or CONTENDERS, sizes, args.overrides, args.rounds):
        rows.append(row)
        ms = f"{row['ms']:.0f}" if row["ms"] is not None else "-"
        peak = f"peak {row['peak_mb']:8.0f} MB" if row.get("peak_mb") else " " * 16
        target = f"  {row['target']}: {row['ratio']:.3f} {'pass' if row['passed'] else 'FAIL'}" \
            if "target" in row else ""
        print(f"{row['case']:56s} {row['contender']:16s} {ms:>8s} ms  {peak}  {row['note']}{target}", flush=True)
    eager = {r["case"]: r["peak_mb"] for r in rows if r["contender"] == "eager" and r.get("peak_mb")}
    for row in rows:
        if row["case"] in eager:
            print(f"{row['case']:56s} {row['contender']:16s} {row['peak_mb'] / eager[row['case']]:.2f}x eager peak")


if __name__ == "__main__":
    main()
