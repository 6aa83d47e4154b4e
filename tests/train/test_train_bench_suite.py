"""The trainer benchmark suite runs and reports both contenders (a smoke run: nothing is timed here)."""

import torch

from gancore.bench.suites import trainer as suite
from gancore.bench.timing import BenchContext


def test_suite_rows():
    ctx = BenchContext(device=torch.device("cpu"), quick=True, repeats=1, warmup=1)
    rows = list(suite.run(ctx))
    assert len(rows) == suite.count(ctx) == 4 and suite.BASELINE == "hand_loop" and suite.ALLOC_SENSITIVE
    assert {(r["case"].split()[-1], r["contender"]) for r in rows} == {
        (p, c) for p in ("fp32", "bf16") for c in ("hand_loop", "trainer")}
    assert all(r["ms"] > 0 and r["ms_p10"] <= r["ms"] <= r["ms_p90"] and "overhead" in r["note"] for r in rows)
