"""Per-call overhead cases: gancore against eager on one thread, interleaved, with a target on the ratio.

Shared by the suites' `overhead` cases so that every op's overhead is measured the same way.
"""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import Callable, Iterator

import torch

from gancore.bench.report import time_target
from gancore.bench.timing import BenchContext, interleaved

TINY_LIMIT = 1.25  # issue 8: at a tiny shape gancore's time is at most 1.25x eager's
MIN_ROUNDS = 15  # these cases are cheap; more rounds steady the ratio on a loaded machine


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def compare(ctx: BenchContext, case: str, eager: Callable[[], object], gancore: Callable[[], object],
            limit: float, note: str = "") -> list[dict]:
    """Rows for eager and gancore in `case`; the gancore row carries time / eager against `limit`.

    The ratio is the median of the rounds' ratios (each round times both back to back), which a
    load change between rounds moves less than a ratio of the two medians.
    """
    timings = interleaved({"eager": eager, "gancore": gancore}, device=ctx.device,
                          rounds=max(ctx.repeats, MIN_ROUNDS), warmup=ctx.warmup)
    ratio = statistics.median(g / e for g, e in zip(timings["gancore"]["round_ms"], timings["eager"]["round_ms"]))
    note = "; ".join(n for n in (note, "1 thread, interleaved, ratio: median of round ratios") if n)
    return [{"case": case, "contender": "eager", **timings["eager"]},
            {"case": case, "contender": "gancore", "note": note, **timings["gancore"], **time_target(ratio, limit)}]


def no_grad(fn: Callable[[], object]) -> Callable[[], object]:
    def run():
        with torch.no_grad():
            return fn()

    return run
