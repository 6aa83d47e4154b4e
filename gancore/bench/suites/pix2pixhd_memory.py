"""Peak memory of one full pix2pixHD training step (G phase, then D phase, both Adam updates), batch 1,
for the memory work of the family: the reference layout in eager PyTorch, fused, fused + activation
checkpointing of the residual blocks, and that under bf16 autocast.

Each contender runs one step first (Adam's state exists from then on), then one profiled step, whose
time is reported (CPU: with the profiler's overhead, small next to these convolutions; speed itself is
the families suite's). peak_mb = the tensors resident before the step (weights, buffers, Adam state) + the
exact peak of the tensors the step creates (activations, gradients; torch.profiler's memory timeline,
CPU) or the allocator peak (CUDA). Measured at two sizes, the difference gives each contender's
per-pixel slope, and the last rows extrapolate it to 2048x1024 (linear in pixels: every network here is
fully convolutional, and the resident part does not depend on the size).

The full preset is the paper's global generator (4 downsamplings, 9 residual blocks, 35 labels +
instance edges, 2 discriminators, feature matching) at a quarter of its width (ngf = ndf = 16), so that
a CPU runs it in minutes; docs/pix2pixhd.md scales the result to the paper's width.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterable

import torch

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


def resident_mb(trainer: object) -> float:
    """Weights, buffers and optimiser state held between steps, in MB."""
    tensors = [t for m in trainer.nets.values() for t in [*m.parameters(), *m.buffers()]]
    tensors += [v for opt in trainer.optimizers.values() for s in opt.state.values() for v in s.values()
                if isinstance(v, torch.Tensor)]
    return sum(t.numel() * t.element_size() for t in tensors) / 2**20


def measure_step(width: int, height: int, contender: str, overrides: Iterable[str], device: torch.device) -> dict:
    """{ms, peak_mb, resident_mb} of one step of `contender` at width x height."""
    layout, precision, extra = CONTENDERS[contender]
    sets = [*overrides, *extra, f"data.width={width}", f"data.height={height}", "data.size=2"]
    step = make_step("pix2pixhd", sets, 1, precision, layout, device)
    trainer = step.trainer  # type: ignore[attr-defined]
    step()  # Adam's state is allocated in the first step
    resident = resident_mb(trainer)
    started = time.perf_counter()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        step()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak = resident + tensor_memory_mb(step)[0]
    return {"ms": 1e3 * (time.perf_counter() - started), "peak_mb": peak, "resident_mb": resident}


def extrapolate(small: dict, large: dict, sizes: tuple[tuple[int, int], ...],
                target: tuple[int, int]) -> tuple[float, float]:
    """(peak MB at target, slope in MB per megapixel) from the peaks at the two sizes."""
    (w0, h0), (w1, h1) = sizes
    slope = (large["peak_mb"] - small["peak_mb"]) / ((w1 * h1 - w0 * h0) / 1e6)
    return large["peak_mb"] + slope * (target[0] * target[1] - w1 * h1) / 1e6, slope


def count(ctx: BenchContext) -> int:
    return 3 * len(CONTENDERS)


def run(ctx: BenchContext, contenders: Iterable[str] = tuple(CONTENDERS),
        sizes: tuple[tuple[int, int], ...] | None = None) -> Iterable[dict]:
    """Rows per size and contender, then the extrapolation from the last two sizes."""
    preset = "quick" if ctx.quick else "full"
    overrides = QUICK if ctx.quick else FULL
    sizes, target = sizes or SIZES[preset], TARGET[preset]
    results: dict[str, list[dict]] = {}
    for width, height in sizes:
        for name in contenders:
            result = measure_step(width, height, name, overrides, ctx.device)
            results.setdefault(name, []).append(result)
            yield {"case": f"pix2pixhd step {width}x{height} b1", "contender": name, "ms": result["ms"],
                   "peak_mb": result["peak_mb"], "note": f"resident {result['resident_mb']:.0f} MB"}
    for name, measured in results.items():
        if len(measured) < 2:
            continue
        peak, slope = extrapolate(measured[-2], measured[-1], sizes[-2:], target)
        yield {"case": f"pix2pixhd step {target[0]}x{target[1]} b1 (extrapolated)", "contender": name, "ms": None,
               "peak_mb": peak, "note": f"{slope:.0f} MB per megapixel"}


def main(argv: list[str] | None = None) -> None:
    """Print the table (`gancore bench --suite pix2pixhd_memory` writes it with the other suites)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny networks and sizes")
    parser.add_argument("--contender", choices=sorted(CONTENDERS), action="append", help="default: all")
    parser.add_argument("--size", action="append", metavar="WxH", help="sizes to measure (default: the preset's)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    ctx = BenchContext(torch.device(args.device), quick=args.quick)
    sizes = tuple(tuple(int(v) for v in size.lower().split("x")) for size in args.size) if args.size else None
    rows = []
    for row in run(ctx, args.contender or CONTENDERS, sizes):
        rows.append(row)
        ms = f"{row['ms']:.0f}" if row["ms"] is not None else "-"
        print(f"{row['case']:48s} {row['contender']:16s} {ms:>8s} ms  peak {row['peak_mb']:8.0f} MB  {row['note']}",
              flush=True)
    eager = {r["case"]: r["peak_mb"] for r in rows if r["contender"] == "eager"}
    for row in rows:
        if row["case"] in eager:
            print(f"{row['case']:48s} {row['contender']:16s} {row['peak_mb'] / eager[row['case']]:.2f}x eager peak")


if __name__ == "__main__":
    main()
