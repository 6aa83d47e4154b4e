"""Timing primitives shared by every suite: medians of repeated runs, CUDA events on a GPU."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass
class BenchContext:
    """What a suite is told: where to run, how long to spend, and which allocator setting is live."""

    device: torch.device
    quick: bool = False
    alloc: str = "default"  # "default" or "tuned" (gancore.tune_cpu_allocator applied)
    repeats: int = 15
    warmup: int = 3
    max_seconds: float = 5.0  # per measurement: huge shapes get fewer samples, never fewer than 3

    def time(self, fn: Callable[[], object]) -> dict:
        return measure(fn, device=self.device, repeats=self.repeats, warmup=self.warmup,
                       max_seconds=self.max_seconds)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(fn: Callable[[], object], *, device: torch.device | str = "cpu", repeats: int = 15,
            warmup: int = 3, max_seconds: float = 20.0) -> dict:
    """Median (and spread) wall time of `fn` in milliseconds; peak memory on CUDA.

    Each call is timed on its own so the median ignores outliers (page-fault storms, other load).
    Stops early once `max_seconds` of measurement have passed, keeping at least 3 samples.
    """
    device = torch.device(device)
    for i in range(warmup):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        if i == 0 and time.perf_counter() - t0 > max_seconds / 10:
            break  # a slow call: one warm-up (compilation, first-touch) is enough
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    samples = []
    started = time.perf_counter()
    for _ in range(repeats):
        if device.type == "cuda":
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            fn()
            end.record()
            end.synchronize()
            samples.append(begin.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - t0) * 1e3)
        if len(samples) >= 3 and time.perf_counter() - started > max_seconds:
            break
    samples.sort()
    result = {
        "ms": statistics.median(samples),
        "ms_p10": samples[round(0.1 * (len(samples) - 1))],
        "ms_p90": samples[round(0.9 * (len(samples) - 1))],
        "samples": len(samples),
    }
    if device.type == "cuda":
        result["peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return result
