"""The batch_norm suite's end-to-end case: whole DCGAN train steps, fused against eager (quick preset, once)."""

import pytest
import torch

from gancore.bench.suites import batch_norm
from gancore.bench.timing import BenchContext


def test_the_dcgan_train_step_case_times_fused_and_eager_steps(monkeypatch):
    trainers = {}

    def recording_make_step(family, overrides, batch, precision, contender, device):
        step = make_step(family, overrides, batch, precision, contender, device)
        trainers[contender] = step.trainer
        return step

    make_step = batch_norm.make_step
    monkeypatch.setattr(batch_norm, "make_step", recording_make_step)
    ctx = BenchContext(torch.device("cpu"), quick=True, repeats=1, warmup=1)
    rows = list(batch_norm.train_step_case(ctx, contenders=("eager", "gancore")))
    assert [(r["case"], r["contender"]) for r in rows] == [("dcgan train step 32x32 b8", "eager"),
                                                           ("dcgan train step 32x32 b8", "gancore")]
    for row in rows:
        assert row["ms"] > 0 and row["samples"] == 1 and row["images_per_s"] == pytest.approx(8e3 / row["ms"])
    assert rows[0]["note"] == "fused ops: none" and rows[1]["note"] == "fused ops: batch_norm_act (cpu)"
    for contender, trainer in trainers.items():  # a whole step: both phases, Adam, training mode, 32x32
        assert trainer.config["model"]["fused"] == (contender == "gancore")
        assert {"D/loss", "G/loss"} <= set(trainer._running), sorted(trainer._running)
        assert all(isinstance(o, torch.optim.Adam) for o in trainer.optimizers.values())
        assert all(net.training for net in trainer.nets.values())
        assert trainer.config["train"]["batch_size"] == 8 and trainer.family.config.resolution == 32


def test_a_network_case_carries_the_issues_targets_as_ratios_of_its_medians():
    """Every contender times forward and forward+backward; the gancore rows carry time / eager against the
    2x and 1.5x limits, and a row per kind carries time / torch.compile against the 1.2x limit."""
    ctx = BenchContext(torch.device("cpu"), repeats=3, warmup=1)
    rows = list(batch_norm._case(ctx, "tiny", [(2, 8, 4, 4), (2, 16, 2, 2)]))
    assert [(r["case"], r["contender"]) for r in rows] == [
        ("tiny fwd", "eager"), ("tiny fwd", "torch.compile"), ("tiny fwd", "gancore"),
        ("tiny fwd: gancore vs torch.compile", "gancore"),
        ("tiny fwd+bwd", "eager"), ("tiny fwd+bwd", "torch.compile"), ("tiny fwd+bwd", "gancore"),
        ("tiny fwd+bwd: gancore vs torch.compile", "gancore")]
    for kind, first, limit in (("fwd", 0, batch_norm.FWD_LIMIT), ("fwd+bwd", 4, batch_norm.FWD_BWD_LIMIT)):
        eager, compiled, fused, versus = rows[first:first + 4]
        assert fused["case"] == f"tiny {kind}" and versus["case"] == f"tiny {kind}: gancore vs torch.compile"
        assert "target" not in eager and "target" not in compiled
        assert fused["limit"] == limit and fused["ratio"] == pytest.approx(fused["ms"] / eager["ms"])
        assert fused["passed"] == (fused["ratio"] <= limit) and fused["note"] == "backend cpu"
        assert versus["ms"] is None and versus["target"] == f"time / torch.compile <= {batch_norm.COMPILE_LIMIT:g}"
        assert versus["ratio"] == pytest.approx(fused["ms"] / compiled["ms"])
