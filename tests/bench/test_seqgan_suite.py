"""The 'seqgan' bench suite: one adversarial G step, batched against the prefix loop, and MLE tokens/s."""

import pytest
import torch

from gancore.bench.suites import SUITES, seqgan
from gancore.bench.timing import BenchContext

TINY = {"vocab": 30, "length": 5, "batch": 4, "rollouts": 2, "sizes": (1, 2), "counts": (4, 4)}


def test_suite_is_registered_and_times_both_contenders(monkeypatch):
    assert SUITES["seqgan"] == "gancore.bench.suites.seqgan"
    monkeypatch.setattr(seqgan, "QUICK", TINY)
    ctx = BenchContext(torch.device("cpu"), quick=True, repeats=1, warmup=1)
    rows = list(seqgan.run(ctx))
    assert len(rows) == seqgan.count(ctx)
    assert [(r["case"], r["contender"]) for r in rows] == [
        ("adversarial G step V30 L5 B4 N2", "batched"), ("adversarial G step V30 L5 B4 N2", "prefix loop"),
        ("MLE step V30 L5 B4", "batched")]
    assert all(r["ms"] > 0 for r in rows)
    batched, loop, mle = rows
    assert batched["ratio"] == pytest.approx(batched["ms"] / loop["ms"])
    assert batched["limit"] == seqgan.TARGET and batched["passed"] == (batched["ratio"] <= seqgan.TARGET)
    assert "target" not in loop and "32 completions" in loop["note"]  # (5 - 1) prefixes x 2 rollouts x 4
    assert mle["tokens_per_s"] == pytest.approx(4 * 5 / (mle["ms"] / 1e3))


def test_the_full_preset_is_the_papers_setting():
    assert seqgan.FULL == {"vocab": 5000, "length": 20, "batch": 64, "rollouts": 16, "sizes": None, "counts": None}
