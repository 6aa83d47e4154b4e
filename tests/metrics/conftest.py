"""Shared fixtures of the metrics tests, and the checkout's kernels/ importable as gancore.kernels.

setup.py installs kernels/ as the package gancore.kernels; when the tests run from a source tree that
is not installed (PYTHONPATH=.) or is installed from another checkout, the kernels under test must
still be this checkout's.
"""

import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

import gancore
from gancore.metrics.inception import WEIGHTS_FILE, InceptionV3FID

_KERNELS = Path(__file__).resolve().parents[2] / "kernels"


def _use_checkout_kernels() -> None:
    spec = importlib.util.find_spec("gancore.kernels")
    locations = [Path(p).resolve() for p in (spec.submodule_search_locations or [])] if spec else []
    if _KERNELS in locations:
        return
    package = types.ModuleType("gancore.kernels")
    package.__path__ = [str(_KERNELS)]
    sys.modules["gancore.kernels"] = package
    gancore.kernels = package


_use_checkout_kernels()


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def gaussian(rng):
    """gaussian(dim, samples=4 * dim, scale=1.0) -> (mean, covariance, features) of correlated features.

    The covariance is a well-conditioned sample covariance, the kind FID meets in practice.
    """

    def make(dim, samples=None, scale=1.0):
        samples = samples or 4 * dim
        mixing = rng.standard_normal((dim, dim)) / np.sqrt(dim) + np.eye(dim)
        features = rng.standard_normal((samples, dim)) @ mixing * scale
        return features.mean(0), np.atleast_2d(np.cov(features, rowvar=False)), features

    return make


@pytest.fixture(scope="session")
def weights_file(tmp_path_factory):
    """A state_dict with the file's keys and shapes and seeded random values, saved like the real one."""
    gen = torch.Generator().manual_seed(0)
    state = {}
    for key, value in InceptionV3FID().state_dict().items():
        if key.endswith("running_var"):
            state[key] = torch.rand(value.shape, generator=gen) + 0.5
        elif key.endswith("num_batches_tracked"):
            continue
        else:
            state[key] = torch.randn(value.shape, generator=gen) * 0.05
    path = tmp_path_factory.mktemp("weights") / WEIGHTS_FILE
    torch.save(state, path)
    return path, state
