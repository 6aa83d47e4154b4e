"""The 'families' bench suite runs whole steps of each contender and reports their breakdown."""

import re
from types import SimpleNamespace

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


def _fake_step(*double_backward: bool):
    def step() -> None:
        pass

    step.trainer = SimpleNamespace(specs={f"N{i}": SimpleNamespace(double_backward=d)
                                          for i, d in enumerate(double_backward)})
    return step


def test_the_compile_check_fails_on_a_graph_break_or_a_network_left_eager():
    from torch._dynamo.utils import counters

    def broken(x):
        x = x + 1
        torch._dynamo.graph_break()
        return x * 2

    torch._dynamo.reset()
    counters.clear()
    torch.compile(broken, backend="eager")(torch.randn(4))
    with pytest.raises(RuntimeError, match="graph break"):
        families.check_compiled("test", _fake_step(False))
    torch._dynamo.reset()
    counters.clear()
    torch.compile(lambda x: x * 2, backend="eager")(torch.randn(4))
    families.check_compiled("test", _fake_step(False))
    families.check_compiled("test", _fake_step(False, True))  # a double-backward network is not compiled
    with pytest.raises(RuntimeError, match="1 graph"):
        families.check_compiled("test", _fake_step(False, False))  # two networks, one graph: one ran eagerly
