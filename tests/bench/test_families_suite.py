"""The 'families' bench suite runs whole steps of each contender and reports their breakdown."""

import re

import pytest
import torch

from gancore.bench.suites import families
from gancore.bench.timing import BenchContext
from gancore.families import BenchCase

TINY = {"cyclegan": BenchCase("24x24", ("data.resolution=24", "model.netG=resnet_1blocks", "model.ngf=4",
                                        "model.ndf=4", "model.pool_size=2"), (1,))}


@pytest.fixture
def fp32_only(monkeypatch):
    monkeypatch.setattr(families, "PRECISIONS", ("fp32",))  # bf16 is emulated, slowly, on CPUs without it


def test_every_family_with_presets_is_in_the_suite():
    for quick in (False, True):
        chosen = families.presets(quick)
        assert {"pix2pix", "cyclegan"} <= set(chosen)
        assert all(isinstance(case, BenchCase) and case.batches for case in chosen.values())


def test_suite_times_eager_and_fused_steps(fp32_only):
    ctx = BenchContext(torch.device("cpu"), quick=True, repeats=1, warmup=1)
    rows = list(families.run(ctx, contenders=("eager", "gancore"), selected=TINY))
    assert [(r["case"], r["contender"]) for r in rows] == [
        ("cyclegan 24x24 b1 fp32", c) for c in ("eager", "gancore")]
    for row in rows:
        assert row["ms"] > 0 and row["images_per_s"] == pytest.approx(1e3 / row["ms"]) and row["peak_mb"] > 0
        shares = dict((g, int(v)) for g, v in re.findall(r"(\w+) (\d+)%", row["note"]))
        assert set(shares) == {"conv", "norm", "loss", "optimiser", "other"}
        assert 95 <= sum(shares.values()) <= 105 and shares["conv"] > 0 and shares["optimiser"] > 0
    assert families.contenders_of("cyclegan", families.CONTENDERS) == list(families.CONTENDERS)
    assert families.contenders_of("gan", families.CONTENDERS) == ["eager", "torch.compile"]  # no fused option
