"""A tensor of more than 2**31 elements: every offset is 64-bit (CPU backend)."""

from __future__ import annotations

import pytest
import torch

from gancore import _ext
from gancore.ops import instance_norm_act, record_backends


def _available_gib() -> float:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 0.0


@pytest.mark.skipif(not _ext.has("instance_norm_act_forward_cpu"), reason=_ext.LOAD_ERROR or "")
@pytest.mark.skipif(_available_gib() < 14, reason="needs ~9 GiB for two bf16 tensors of 2**31+ elements")
def test_more_than_2_pow_31_elements():
    period = 4096
    length = (2**30 // period + 1) * period  # two planes: the second ends past element 2**31
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(period, generator=gen).to(torch.bfloat16)
    x = torch.empty(1, 2, length, dtype=torch.bfloat16)
    x[0, 0] = base.repeat(length // period)
    x[0, 1] = (base.float() * 2 + 5).to(torch.bfloat16).repeat(length // period)
    assert x.numel() > 2**31

    with record_backends() as ran:
        out = instance_norm_act(x, negative_slope=0.2)
    assert ran == [("instance_norm_act", "cpu")]

    # each plane repeats one period exactly, so its statistics are those of one period
    for c in range(2):
        period_values = x[0, c, :period].double()
        mean, var = period_values.mean(), period_values.var(unbiased=False)
        expected = torch.nn.functional.leaky_relu((period_values - mean) / torch.sqrt(var + 1e-5), 0.2)
        for start in (0, length - period):  # the last period sits beyond element 2**31 for c == 1
            got = out[0, c, start:start + period].double()
            torch.testing.assert_close(got, expected, atol=3e-2, rtol=2e-2)
