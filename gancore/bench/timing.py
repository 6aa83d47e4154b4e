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


def _batch_ms(fn: Callable[[], object], calls: int, device: torch.device) -> float:
    """Milliseconds per call of `calls` back-to-back calls (CUDA events on a GPU)."""
    if device.type == "cuda":
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        for _ in range(calls):
            fn()
        end.record()
        end.synchronize()
        return begin.elapsed_time(end) / calls
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) * 1e3 / calls


def interleaved(fns: dict[str, Callable[[], object]], *, device: torch.device | str = "cpu", rounds: int = 15,
                warmup: int = 3, min_sample_ms: float = 2.0) -> dict[str, dict]:
    """Per-call median time of each contender, sampled in alternating (ABBA) order.

    For calls of a few microseconds: each sample is a batch of calls, sized once so that the fastest
    contender's batch takes `min_sample_ms`, and the same batch size is used for every contender.
    Alternating the order spreads the slow drifts of a shared machine over all contenders alike;
    "round_ms" keeps each round's time in order, so that ratios can be taken round by round.
    """
    device = torch.device(device)
    names = list(fns)
    for name in names:
        for _ in range(warmup):
            fns[name]()
        _sync(device)
    fastest = min(_batch_ms(fns[name], 10, device) for name in names)
    calls = max(1, int(min_sample_ms / max(fastest, 1e-6)))
    samples: dict[str, list[float]] = {name: [] for name in names}
    for k in range(max(rounds, 3)):
        for name in names if k % 2 == 0 else reversed(names):
            samples[name].append(_batch_ms(fns[name], calls, device))
    out = {}
    for name, rounds_ms in samples.items():
        times = sorted(rounds_ms)
        out[name] = {"ms": statistics.median(times), "ms_p10": times[round(0.1 * (len(times) - 1))],
                     "ms_p90": times[round(0.9 * (len(times) - 1))], "samples": len(times),
                     "calls_per_sample": calls, "round_ms": rounds_ms}
    return out
