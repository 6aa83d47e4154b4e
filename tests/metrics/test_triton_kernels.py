"""The Triton kernels of the GPU path, run on CPU tensors by Triton's interpreter (TRITON_INTERPRET=1)."""

import os

import pytest
import torch

from gancore.metrics import FeatureStats, frechet_distance
from gancore.metrics.stats import batch_moments
from gancore.ops import fid as fid_ops
from gancore.ops import record_backends

pytest.importorskip("triton")
needs_interpreter = pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1",
                                       reason="Triton runs CPU tensors only under TRITON_INTERPRET=1")


@needs_interpreter
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64])
@pytest.mark.parametrize("fp64_products", [True, False])
def test_scatter_update_matches_torch(dtype, fp64_products):
    gen = torch.Generator().manual_seed(0)
    count, n, dim = 2, 37, 45  # neither a multiple of the 32-wide tiles
    x = (torch.randn(count, n, dim, generator=gen) * 3 + 100).to(dtype)
    mean = x.mean(1, dtype=torch.float64)
    delta = torch.randn(count, dim, generator=gen, dtype=torch.float64)
    coef = torch.tensor([0.5, 2.0], dtype=torch.float64)
    start = torch.randn(count, dim, dim, generator=gen, dtype=torch.float64)
    start = start + start.transpose(1, 2)
    results = {}
    for impl in ("ref", "triton"):
        scatter = start.clone()
        with record_backends() as ran:
            fid_ops.scatter_update(scatter, x, mean, delta, coef, impl=impl, fp64_products=fp64_products)
        assert ran == [("fid_scatter", impl)]
        results[impl] = fid_ops.symmetrize(scatter)
    centred = x.double() - mean[:, None]
    between = coef[:, None, None] * delta[:, :, None] * delta[:, None]
    expected = start + centred.transpose(1, 2) @ centred + between
    tol = 1e-12 if fp64_products else 1e-5
    for impl, got in results.items():
        assert torch.allclose(got, expected, rtol=tol, atol=tol * expected.abs().max()), impl


@needs_interpreter
def test_scatter_kernel_reads_strided_features():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(40, 3, 33, generator=gen).transpose(0, 1)  # (3, 40, 33), non-contiguous
    with record_backends() as ran:
        mean, cov = batch_moments(x, impl="triton")
    assert ran == [("fid_scatter", "triton")]
    for k in range(3):
        assert torch.allclose(cov[k], torch.cov(x[k].double().T), atol=1e-12)
        assert torch.allclose(mean[k], x[k].double().mean(0))


@needs_interpreter
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-4)])
def test_newton_schulz_triton_matches_eigvalsh(dtype, tol):
    gen = torch.Generator().manual_seed(2)
    dim = 36
    features = torch.randn(2, 4 * dim, dim, generator=gen, dtype=torch.float64)
    matrices = features.transpose(1, 2) @ features / (4 * dim)
    expected = torch.linalg.eigvalsh(matrices).clamp_min(0).sqrt().sum(-1)
    with record_backends() as ran:
        got, converged = fid_ops.newton_schulz_trace_sqrt(matrices.to(dtype), impl="triton")
    assert ran == [("fid_newton_schulz", "triton")]
    assert bool(converged.all())
    assert torch.allclose(got.double(), expected, rtol=tol)


@needs_interpreter
def test_feature_stats_and_frechet_distance_through_triton():
    gen = torch.Generator().manual_seed(3)
    features = torch.randn(90, 20, generator=gen) * 2 + 50
    with record_backends() as ran:
        stats = FeatureStats(20, impl="triton")
        for batch in features.split(40):
            stats.update(batch.half())
    assert set(ran) == {("fid_scatter", "triton")}
    expected = FeatureStats(20).update(features.half())
    assert torch.allclose(stats.sigma, expected.sigma, atol=1e-12)
    other = FeatureStats(20).update(torch.randn(100, 20, generator=gen, dtype=torch.float64))
    moments = (stats.mu, stats.sigma, other.mu, other.sigma)
    with record_backends() as ran:
        got = frechet_distance(*moments, method="newton_schulz", impl="triton")
    assert ran == [("fid_newton_schulz", "triton")]
    eigh = frechet_distance(*moments, method="eigh")
    assert float(got) == pytest.approx(float(eigh), rel=1e-10)


def test_compile_cases_describe_every_argument():
    # The sm_80/sm_90 code-generation check compiles these; a missing or misspelt argument would
    # only show there, so check the table against the kernels' own signatures here.
    from gancore.kernels import fid as kernels

    names = [case["name"] for case in kernels.COMPILE_CASES]
    assert len(names) == len(set(names))
    launched = {kernels.scatter_update_kernel, kernels.newton_schulz_t_kernel,
                kernels.newton_schulz_yz_kernel}
    assert {case["fn"] for case in kernels.COMPILE_CASES} == launched
    for case in kernels.COMPILE_CASES:
        assert list(case["signature"]) == case["fn"].arg_names, case["name"]
        constexprs = {k for k, v in case["signature"].items() if v == "constexpr"}
        assert constexprs == set(case["constexprs"]), case["name"]
