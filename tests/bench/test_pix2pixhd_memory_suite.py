"""The pix2pixhd_memory bench suite is registered and extrapolates linearly in pixels."""

import pytest

from gancore.bench.suites import SUITES, pix2pixhd_memory


def test_extrapolation_is_linear_in_pixels():
    assert SUITES["pix2pixhd_memory"] == "gancore.bench.suites.pix2pixhd_memory"
    small, large = {"peak_mb": 100.0}, {"peak_mb": 160.0}
    peak, slope = pix2pixhd_memory.extrapolate(small, large, ((100, 100), (200, 200)), (400, 400))
    assert slope == pytest.approx(60 / 0.03)  # MB per megapixel
    assert peak == pytest.approx(160 + slope * 0.12)
