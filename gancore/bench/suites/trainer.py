"""Trainer overhead: one DCGAN training step through gancore's Trainer against a hand-written loop.

Both do the same work on the same networks and data: read a batch through a DataLoader, update D
on real images and fresh fakes, then update G through the frozen D with fresh latents, in fp32 or
under bf16 autocast (fp16 with a GradScaler is added on CUDA). The trainer adds what it always does:
phase bookkeeping, finiteness checks of losses and gradients (one sync per phase), per-sample
draws for the global batch and its data stream. EMA and logging are off in both.

The contenders are timed one step at a time, alternating in ABBA order (hand, trainer, trainer,
hand, ...), and each reports the median of its steps: slow changes in the load of a shared machine
then fall on both alike, which a block of repeats per contender would not guarantee.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Callable, Iterable

import torch
from torch.utils.data import DataLoader, TensorDataset

from gancore.bench.timing import BenchContext, measure
from gancore.data.base import GanDataset
from gancore.losses import adversarial_losses
from gancore.models import DCGANDiscriminator, DCGANGenerator
from gancore.train import Trainer, build_config

BASELINE = "hand_loop"
ALLOC_SENSITIVE = True

_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class _Images(GanDataset):
    """Pre-generated images in memory, so both contenders read the same data at no decoding cost."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def sample(self, index: int, seed: int) -> dict:
        return {"image": self.images[index]}


def _hand_loop(images: torch.Tensor, resolution: int, width: int, batch: int, precision: str,
               device: torch.device) -> Callable[[], None]:
    """A step of DCGAN written out by hand, the way a user would without gancore."""
    torch.manual_seed(0)
    g = DCGANGenerator(100, resolution, 3, width).to(device)
    d = DCGANDiscriminator(resolution, 3, width).to(device)
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    d_loss_fn, g_loss_fn = adversarial_losses("bce")
    loader = DataLoader(TensorDataset(images), batch_size=batch, shuffle=True, drop_last=True)
    batches = itertools.chain.from_iterable(itertools.repeat(loader))
    dtype = _DTYPES[precision]
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")

    def autocast():
        return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)

    def step() -> None:
        (real,) = next(batches)
        real = real.to(device, non_blocking=True)
        g.requires_grad_(False)
        d.requires_grad_(True)
        with autocast():
            fake = g(torch.randn(batch, 100, device=device))
            loss_d = d_loss_fn(d(real), d(fake))
        scaler.scale(loss_d).backward()
        scaler.step(opt_d)
        opt_d.zero_grad(set_to_none=True)
        g.requires_grad_(True)
        d.requires_grad_(False)
        with autocast():
            loss_g = g_loss_fn(d(g(torch.randn(batch, 100, device=device))))
        scaler.scale(loss_g).backward()
        scaler.step(opt_g)
        opt_g.zero_grad(set_to_none=True)
        scaler.update()

    return step


def _trainer(images: torch.Tensor, resolution: int, width: int, batch: int, precision: str,
             device: torch.device) -> Callable[[], None]:
    config = build_config("dcgan", overrides=[
        f"model.resolution={resolution}", f"model.g_width={width}", f"model.d_width={width}",
        f"train.batch_size={batch}", f"train.precision={precision}", f"train.device={device}",
        "train.ema_beta=0", "train.num_workers=0", "log.progress=false", "log.tensorboard=false"])
    trainer = Trainer(config, dataset=_Images(images))
    return trainer.train_step


def _precisions(device: torch.device) -> list[str]:
    return ["fp32", "bf16"] + (["fp16"] if device.type == "cuda" else [])


def count(ctx: BenchContext) -> int:
    """Rows that run() yields: two contenders per precision."""
    return 2 * len(_precisions(ctx.device))


def run(ctx: BenchContext) -> Iterable[dict]:
    device = ctx.device
    resolution, width, batch = (32, 16, 16) if ctx.quick else (32, 64, 64)
    precisions = _precisions(device)
    pairs = ctx.repeats if ctx.quick else 2 * ctx.repeats
    images = torch.rand(max(4 * batch, 256), 3, resolution, resolution,
                        generator=torch.Generator().manual_seed(0)) * 2 - 1
    for precision in precisions:
        case = f"dcgan{resolution} w{width} b{batch} {precision}"
        steps = {"hand_loop": _hand_loop(images, resolution, width, batch, precision, device),
                 "trainer": _trainer(images, resolution, width, batch, precision, device)}
        for step in steps.values():
            for _ in range(ctx.warmup):
                step()
        samples: dict[str, list[float]] = {name: [] for name in steps}
        for k in range(pairs):
            for name in (("hand_loop", "trainer") if k % 2 == 0 else ("trainer", "hand_loop")):
                samples[name].append(measure(steps[name], device=device, repeats=1, warmup=0)["ms"])
        medians = {name: statistics.median(times) for name, times in samples.items()}
        overhead = medians["trainer"] / medians["hand_loop"] - 1
        for name, times in samples.items():
            times.sort()
            p10, p90 = times[round(0.1 * (len(times) - 1))], times[round(0.9 * (len(times) - 1))]
            yield {"case": case, "contender": name, "ms": medians[name], "ms_p10": p10, "ms_p90": p90,
                   "note": f"trainer overhead {overhead:+.1%} (medians of {pairs} interleaved steps each)"}
