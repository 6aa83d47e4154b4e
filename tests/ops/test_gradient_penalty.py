"""Gradient penalties on the CPU: gp_interpolate, gradient_norm_penalty and gradient_penalty against
eager PyTorch, for the C++ backend (both instruction sets) and the reference path."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from gancore import _ext
from gancore.nn import InstanceNormAct2d
from gancore.ops import (
    BackendUnavailable,
    _dispatch,
    gp_interpolate,
    gradient_norm_penalty,
    gradient_penalty,
    record_backends,
)
from tests.helpers import assert_close

pytestmark = pytest.mark.skipif(not _ext.has("gradient_norm_penalty_forward_cpu"), reason=_ext.LOAD_ERROR or "")

KINDS = ["wgan-gp", "wgan-gp-one-sided", "r1", "r2", "dragan"]


def _batch(shape, dtype=torch.float32, layout="nchw", seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def _eager_penalty(g: torch.Tensor, kind: str, weight: float, center: float, inv_scale: float = 1.0):
    """The textbook formulas, in float64."""
    norm = (g.double() * inv_scale).flatten(1).norm(2, dim=1)
    if kind in ("r1", "r2"):
        return weight / 2 * norm.square().mean()
    d = norm - center
    if kind == "wgan-gp-one-sided":
        d = d.clamp_min(0)
    return weight * d.square().mean()


# ---- gp_interpolate --------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("shape,layout", [((4, 3, 9, 7), "nchw"), ((4, 3, 9, 7), "channels_last"),
                                          ((1, 3, 5, 5), "nchw"), ((3, 40000), "nchw")])
def test_interpolate_matches_eager_forward_and_backward(impl, dtype, shape, layout):
    real = _batch(shape, dtype, layout, seed=0).requires_grad_(True)
    fake = _batch(shape, dtype, layout, seed=1).requires_grad_(True)
    alpha = torch.rand(shape[0], dtype=torch.float64 if dtype == torch.float64 else torch.float32,
                       requires_grad=True)
    grad = _batch(shape, dtype, layout, seed=2)
    with record_backends() as ran:
        out = gp_interpolate(real, fake, alpha, impl=impl)
        grads = torch.autograd.grad(out, (real, fake, alpha), grad)
    assert ran == [("gp_interpolate", impl)] * 2
    assert out.dtype == dtype and out.stride() == real.stride()

    r64, f64, a64 = (t.detach().double().requires_grad_(True) for t in (real, fake, alpha))
    a = a64.view(-1, *([1] * (len(shape) - 1)))
    expected = a * r64 + (1 - a) * f64
    expected_grads = torch.autograd.grad(expected, (r64, f64, a64), grad.double())
    assert_close(out, expected, dtype)
    for got, want, name in zip(grads, expected_grads, ("real", "fake", "alpha")):
        scale = max(1.0, (out[0].numel() ** 0.5) / 8) if name == "alpha" else 1.0
        assert_close(got, want, dtype, scale=scale)


def test_interpolate_requires_grad_and_draws_alpha_from_generator():
    real, fake = _batch((5, 2, 3, 3)), _batch((5, 2, 3, 3), seed=1)
    a = gp_interpolate(real, fake, generator=torch.Generator().manual_seed(7))
    b = gp_interpolate(real, fake, generator=torch.Generator().manual_seed(7))
    assert a.requires_grad and a.is_leaf
    torch.testing.assert_close(a, b)
    alpha = torch.rand(5, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(a, gp_interpolate(real, fake, alpha.view(5, 1, 1, 1)))
    assert (alpha >= 0).all() and (alpha < 1).all()


def test_interpolate_fake_in_another_layout():
    real = _batch((2, 4, 6, 6), layout="channels_last")
    fake = _batch((2, 4, 6, 6), seed=1)
    alpha = torch.tensor([0.25, 0.75])
    out = gp_interpolate(real, fake, alpha)
    assert out.stride() == real.stride()
    torch.testing.assert_close(out, alpha.view(2, 1, 1, 1) * real + (1 - alpha.view(2, 1, 1, 1)) * fake)


def test_interpolate_backward_when_only_alpha_needs_grad(impl):
    real, fake = _batch((3, 2, 4, 4)), _batch((3, 2, 4, 4), seed=1)
    alpha = torch.tensor([0.1, 0.5, 0.9], requires_grad=True)
    grad = _batch((3, 2, 4, 4), seed=2)
    with record_backends() as ran:
        (dalpha,) = torch.autograd.grad(gp_interpolate(real, fake, alpha, impl=impl), alpha, grad)
    assert {backend for _, backend in ran} == {impl} and len(ran) == 2
    torch.testing.assert_close(dalpha, (grad * (real - fake)).flatten(1).sum(1))
    # the registered op's backward, too (it returned one empty tensor for both absent gradients)
    out = torch.ops.gancore.gp_interpolate_fwd(real, fake, alpha, impl)
    (dalpha_op,) = torch.autograd.grad(out, alpha, grad)
    torch.testing.assert_close(dalpha_op, dalpha)


@pytest.mark.parametrize("make_alpha", [lambda n: torch.tensor(0.3).expand(n),
                                        lambda n: torch.rand(2 * n, generator=torch.Generator().manual_seed(3))[::2],
                                        lambda n: torch.rand(n, 2, generator=torch.Generator().manual_seed(4))[:, :1]],
                         ids=["expanded", "strided", "column"])
def test_interpolate_takes_strided_alpha(impl, make_alpha):
    real, fake = _batch((4, 3, 5, 5)), _batch((4, 3, 5, 5), seed=1)
    alpha = make_alpha(4)
    with record_backends() as ran:
        out = gp_interpolate(real, fake, alpha, impl=impl)
    assert ran == [("gp_interpolate", impl)]
    a = alpha.reshape(4, 1, 1, 1)
    torch.testing.assert_close(out, a * real + (1 - a) * fake)


def test_given_alpha_weights_the_real_sample(impl):
    """The one convention (docs/ops.md): x = alpha * real + (1 - alpha) * fake."""
    seen = []

    def critic(x):
        seen.append(x.detach().clone())
        return x.flatten(1).sum(1)

    real, fake = torch.zeros(3, 2), torch.ones(3, 2)
    with record_backends() as ran:
        gradient_penalty(critic, real, fake, alpha=torch.tensor([0.0, 0.25, 1.0]), impl=impl)
    assert {backend for _, backend in ran} == {impl}
    assert torch.equal(seen[0], torch.tensor([[1.0, 1.0], [0.75, 0.75], [0.0, 0.0]]))


def test_penalty_of_a_linear_critic_is_exact_and_trains_only_the_critic(impl):
    w = torch.nn.Parameter(torch.tensor([3.0, 4.0, 0.0, 0.0]))  # |w| = 5: the input gradient everywhere
    real = torch.randn(6, 1, 2, 2, requires_grad=True)
    fake = torch.randn(6, 1, 2, 2, requires_grad=True)
    with record_backends() as ran:
        penalty = gradient_penalty(lambda x: x.flatten(1) @ w, real, fake, weight=10.0, impl=impl)
        penalty.backward()
    assert {backend for _, backend in ran} == {impl}
    torch.testing.assert_close(penalty, torch.tensor(10.0 * (5 - 1) ** 2))
    torch.testing.assert_close(w.grad, 20 * 4 * w.detach() / 5)  # d/dw 10 (|w| - 1)^2
    assert real.grad is None and fake.grad is None


@pytest.mark.parametrize("impl_name", ["cpu", "ref"])
def test_interpolate_gradcheck_and_gradgradcheck(impl_name):
    inputs = tuple(_batch((2, 3, 4, 5), torch.float64, seed=s).requires_grad_(True) for s in range(2))
    alpha = torch.rand(2, dtype=torch.float64, requires_grad=True)

    def fn(real, fake, alpha):
        return gp_interpolate(real, fake, alpha, impl=impl_name)

    assert torch.autograd.gradcheck(fn, (*inputs, alpha))
    assert torch.autograd.gradgradcheck(fn, (*inputs, alpha))


# ---- gradient_norm_penalty -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("shape,layout", [((6, 3, 16, 16), "nchw"), ((6, 3, 16, 16), "channels_last"),
                                          ((1, 1, 3, 3), "nchw"), ((3, 70000), "nchw")])
def test_norm_penalty_matches_eager(impl, kind, dtype, shape, layout):
    # unscaled by inv_scale 1/4, the samples' norms spread over [0.5, 1.5]: both sides of center 1
    base = _batch(shape, torch.float64, layout)
    per_sample = (-1, *([1] * (len(shape) - 1)))
    target_norms = 4 * torch.linspace(0.5, 1.5, shape[0], dtype=torch.float64).view(per_sample)
    g = (base / base.flatten(1).norm(dim=1).view(per_sample) * target_norms).to(dtype)
    if layout == "channels_last":
        g = g.contiguous(memory_format=torch.channels_last)
    g.requires_grad_(True)
    with record_backends() as ran:
        p = gradient_norm_penalty(g, kind=kind, weight=7.0, center=1.0, inv_scale=0.25, impl=impl)
        (dg,) = torch.autograd.grad(p, g, torch.tensor(1.5))
    assert ran == [("gradient_norm_penalty", impl)] * 2
    assert p.dim() == 0 and p.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert dg.dtype == dtype and dg.stride() == g.stride()
    g64 = g.detach().double().requires_grad_(True)
    expected = _eager_penalty(g64, kind, 7.0, 1.0, 0.25)
    (expected_dg,) = torch.autograd.grad(expected, g64, torch.tensor(1.5, dtype=torch.float64))
    # the inputs are rounded to dtype before either side sees them: what differs is the float32 sum
    torch.testing.assert_close(p.double(), expected, rtol=5e-5 if dtype != torch.float64 else 1e-12, atol=1e-6)
    assert_close(dg, expected_dg, dtype)


def test_norm_penalty_zero_gradient_is_finite():
    g = torch.zeros(3, 4, 5, requires_grad=True)
    p = gradient_norm_penalty(g)
    (dg,) = torch.autograd.grad(p, g)
    assert p.item() == pytest.approx(10.0)  # (0 - 1)^2 * weight
    assert torch.isfinite(dg).all() and (dg == 0).all()  # no derivative at ||g|| = 0: 0, like torch's norm


@pytest.mark.parametrize("impl_name", ["cpu", "ref"])
@pytest.mark.parametrize("kind", ["wgan-gp", "wgan-gp-one-sided", "r1"])
def test_norm_penalty_gradcheck_and_gradgradcheck(impl_name, kind):
    g = (_batch((3, 2, 3, 4), torch.float64) * 0.4).requires_grad_(True)

    def fn(g):
        return gradient_norm_penalty(g, kind=kind, weight=3.0, center=0.9, inv_scale=0.5, impl=impl_name)

    with record_backends() as ran:
        assert torch.autograd.gradcheck(fn, (g,))
        assert torch.autograd.gradgradcheck(fn, (g,))
    assert {backend for _, backend in ran} == {impl_name}


def test_norm_penalty_is_deterministic(impl):
    g = _batch((4, 3, 64, 64))
    with record_backends() as ran:
        first = gradient_norm_penalty(g, impl=impl)
        for _ in range(3):
            assert torch.equal(gradient_norm_penalty(g, impl=impl), first)
    assert ran == [("gradient_norm_penalty", impl)] * 4


# ---- gradient_penalty through a critic --------------------------------------------------------------


def _critic(in_channels=3, dtype=torch.float64, affine=True, cond_classes=0):
    torch.manual_seed(0)
    layers = [nn.Conv2d(in_channels, 6, 3, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(6, 8, 3, 1, 1),
              InstanceNormAct2d(8, affine=affine), nn.Conv2d(8, 1, 3, 1, 1)]
    return nn.Sequential(*layers).to(dtype)


def _eager_gradient_penalty(critic, real, fake, kind, weight, center, generator_seed):
    """The textbook WGAN-GP / R1 / R2 / DRAGAN code, with the same random draws as gancore."""
    gen = torch.Generator().manual_seed(generator_seed)
    N = real.shape[0]
    if kind in ("wgan-gp", "wgan-gp-one-sided"):
        alpha = torch.rand(N, generator=gen, dtype=real.dtype).view(N, 1, 1, 1)
        x = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    elif kind == "dragan":
        noise = torch.rand(real.shape, generator=gen, dtype=real.dtype)
        perturbed = real + 0.5 * real.std() * noise
        alpha = torch.rand(N, generator=gen, dtype=real.dtype).view(N, 1, 1, 1)
        x = (alpha * real + (1 - alpha) * perturbed).requires_grad_(True)
    else:
        x = (real if kind == "r1" else fake).clone().requires_grad_(True)
    (g,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
    return _eager_penalty(g, kind, weight, center)


@pytest.mark.parametrize("kind", KINDS)
def test_gradient_penalty_matches_eager_value_and_parameter_gradients(impl, kind):
    critic = _critic()
    real, fake = _batch((3, 3, 8, 8), torch.float64), _batch((3, 3, 8, 8), torch.float64, seed=1)
    with record_backends() as ran:
        p = gradient_penalty(critic, real, fake, kind=kind, weight=5.0, center=0.8,
                             generator=torch.Generator().manual_seed(3), impl=impl)
        grads = torch.autograd.grad(p, list(critic.parameters()), materialize_grads=True)
    assert ("gradient_norm_penalty", impl) in ran
    if kind in ("wgan-gp", "wgan-gp-one-sided", "dragan"):
        assert ("gp_interpolate", impl) in ran
    # the critic's fused instance norm ran its CPU kernels and its double backward
    assert ("instance_norm_act", "cpu") in ran
    expected = _eager_gradient_penalty(critic, real, fake, kind, 5.0, 0.8, 3)
    expected_grads = torch.autograd.grad(expected, list(critic.parameters()), materialize_grads=True)
    torch.testing.assert_close(p, expected, rtol=1e-10, atol=1e-12)
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-10)


def test_gradcheck_and_gradgradcheck_through_a_gancore_critic():
    """The penalty as a function of the critic's parameters, differentiated once and twice."""
    critic = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), InstanceNormAct2d(3, affine=True, negative_slope=0.3),
                           nn.Conv2d(3, 1, 3)).double()
    names = [name for name, _ in critic.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for p in critic.parameters())
    real, fake = _batch((2, 2, 5, 5), torch.float64), _batch((2, 2, 5, 5), torch.float64, seed=1)
    alpha = torch.tensor([0.3, 0.8], dtype=torch.float64)
    x_hat = gp_interpolate(real, fake, alpha)

    def penalty(*params):
        def functional_critic(x):
            return torch.func.functional_call(critic, dict(zip(names, params)), (x,))

        (g,) = torch.autograd.grad(functional_critic(x_hat).sum(), x_hat, create_graph=True)
        return gradient_norm_penalty(g, center=0.5)

    assert torch.autograd.gradcheck(penalty, params)
    assert torch.autograd.gradgradcheck(penalty, params)


def _eager_twin(critic):
    """The critic with its InstanceNormAct2d replaced by nn.InstanceNorm2d + LeakyReLU, same weights."""
    twin = copy.deepcopy(critic)
    fused = twin[3]
    norm = nn.InstanceNorm2d(fused.num_features, eps=fused.eps, affine=True).to(fused.weight.dtype)
    norm.load_state_dict({"weight": fused.weight.detach(), "bias": fused.bias.detach()})
    twin[3] = nn.Sequential(norm, nn.LeakyReLU(fused.negative_slope))
    return twin


def _relative_errors(got, want):
    return [float((g.detach().double() - w.detach()).norm() / w.detach().norm().clamp_min(1e-30))
            for g, w in zip(got, want)]


def _penalty_and_grads(critic, real, fake, fused, impl="auto"):
    if fused:
        p = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(0), impl=impl)
    else:
        p = _eager_gradient_penalty(critic, real, fake, "wgan-gp", 10.0, 1.0, 0)
    params = list(critic.parameters())[:-1]  # the last bias does not move the input gradient
    return [p, *torch.autograd.grad(p, params)]


@pytest.mark.parametrize("dtype,layout", [(torch.float32, "channels_last"), (torch.bfloat16, "nchw"),
                                          (torch.float16, "nchw"), (torch.bfloat16, "channels_last")])
def test_low_precision_and_channels_last_critic_against_float64(impl, dtype, layout):
    """gancore's penalty and its parameter gradients are no further from a float64 eager run than an
    eager critic of the same dtype and layout is, measured norm-wise."""
    memory_format = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    critic = _critic(dtype=dtype).to(memory_format=memory_format)
    real, fake = (_batch((4, 3, 16, 16), seed=s).to(dtype).contiguous(memory_format=memory_format) for s in (0, 1))
    with record_backends() as ran:
        got = _penalty_and_grads(critic, real, fake, fused=True, impl=impl)
    assert ("gradient_norm_penalty", impl) in ran and ("gp_interpolate", impl) in ran
    assert got[0].dtype == torch.float32 and all(g.dtype == dtype for g in got[1:])
    oracle = _penalty_and_grads(_eager_twin(critic).double(), real.double(), fake.double(), fused=False)
    eager = _penalty_and_grads(_eager_twin(critic), real, fake, fused=False)
    ours, theirs = _relative_errors(got, oracle), _relative_errors(eager, oracle)
    for i, (a, b) in enumerate(zip(ours, theirs)):
        assert a <= 2 * b + 1e-6, (i, ours, theirs)


def test_grad_scaler_gradient_is_unscaled_before_the_norm():
    critic = _critic(dtype=torch.float32)
    real, fake = _batch((3, 3, 8, 8)), _batch((3, 3, 8, 8), seed=1)
    plain = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(0))
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    scaled = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(0), scaler=scaler)
    torch.testing.assert_close(scaled, plain, rtol=1e-5, atol=1e-6)
    grads = torch.autograd.grad(scaled, list(critic.parameters()), materialize_grads=True)
    expected = torch.autograd.grad(plain, list(critic.parameters()), materialize_grads=True)
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_conditional_critic_gets_labels():
    class Conditional(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = _critic(dtype=torch.float32)
            self.embed = nn.Embedding(4, 1)

        def forward(self, x, labels, scale=1.0):
            return self.body(x).flatten(1).mean(1) * scale + self.embed(labels).squeeze(1)

    critic = Conditional()
    real, fake = _batch((3, 3, 8, 8)), _batch((3, 3, 8, 8), seed=1)
    labels = torch.tensor([0, 2, 3])
    p = gradient_penalty(critic, real, fake, labels=labels, generator=torch.Generator().manual_seed(0))
    p_tuple = gradient_penalty(critic, real, fake, labels=(labels, 2.0), generator=torch.Generator().manual_seed(0))
    assert p.item() > 0 and p_tuple.item() != p.item()  # the extra argument reached the critic


def test_distributed_data_parallel_critic(tmp_path):
    """The penalty through a DDP-wrapped critic (1-process gloo group) gives the plain critic's gradients."""
    dist = torch.distributed
    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    critic = _critic(dtype=torch.float32)
    real, fake = _batch((3, 3, 8, 8)), _batch((3, 3, 8, 8), seed=1)

    def step(model):
        critic.zero_grad(set_to_none=True)
        loss = model(fake).mean() - model(real).mean() + gradient_penalty(
            model, real, fake, generator=torch.Generator().manual_seed(0))
        loss.backward()
        return [p.grad.clone() for p in critic.parameters()]

    expected = step(critic)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    try:
        got = step(nn.parallel.DistributedDataParallel(critic))
    finally:
        dist.destroy_process_group()
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e)


def test_registered_ops_pass_opcheck():
    g = _batch((2, 3, 4, 4)).requires_grad_(True)
    coef = torch.rand(2)
    real, fake, alpha = _batch((2, 3, 4, 4)), _batch((2, 3, 4, 4), seed=1), torch.rand(2)
    tests = ("test_schema", "test_autograd_registration", "test_faketensor")
    ops = torch.ops.gancore
    torch.library.opcheck(ops.gradient_norm_penalty_fwd, (g, 0, 1.0, 10.0, 1.0, "cpu"), test_utils=tests)
    torch.library.opcheck(ops.gradient_norm_penalty_bwd, (torch.tensor(1.0), g, coef, 0, 1.0, 10.0, 1.0, "cpu"),
                          test_utils=tests)
    torch.library.opcheck(ops.gp_interpolate_fwd, (real, fake, alpha, "cpu"), test_utils=tests)
    torch.library.opcheck(ops.gp_interpolate_bwd, (g.detach(), real, fake, alpha, True, True, True, "cpu"),
                          test_utils=tests)


# ---- bad input ---------------------------------------------------------------------------------------


def _constant_critic():
    bias = nn.Parameter(torch.ones(1))
    return lambda x: bias.expand(x.shape[0])


@pytest.mark.parametrize("call,error,match", [
    (lambda c: gradient_penalty(c, torch.randn(2, 3, 4, 4), torch.randn(3, 3, 4, 4)), ValueError,
     r"same shape, got \(2, 3, 4, 4\) and \(3, 3, 4, 4\)"),
    (lambda c: gradient_penalty(c, torch.randn(2, 3, 4, 4)), ValueError, "'wgan-gp' needs fake samples"),
    (lambda c: gradient_penalty(c, torch.randint(0, 3, (2, 3, 4, 4)), torch.randn(2, 3, 4, 4)), TypeError,
     "real must be a floating-point tensor, got torch.int64"),
    (lambda c: gradient_penalty(c, torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4).double()), TypeError,
     "same dtype"),
    (lambda c: gradient_penalty(c, torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4), kind="wgan"), ValueError,
     "kind must be one of"),
    (lambda c: gradient_penalty(c, torch.randn(0, 3), torch.randn(0, 3)), ValueError, "N >= 1"),
    (lambda c: gradient_penalty("critic", torch.randn(2, 3), kind="r1"), TypeError, "critic must be callable"),
    (lambda c: gp_interpolate(torch.randn(2, 3), torch.randn(2, 3), torch.rand(3)), ValueError,
     r"alpha must hold one value per sample \(2,\)"),
    (lambda c: gp_interpolate(torch.randn(2, 3), torch.randn(2, 3), torch.tensor([0, 1])), TypeError,
     "alpha must be floating point"),
    (lambda c: gradient_norm_penalty(torch.randn(2, 3), kind="r3"), ValueError, "kind must be one of"),
    (lambda c: gradient_penalty(c, torch.randn(2, 3, 4, 4), kind="r1", alpha=torch.rand(2)), ValueError,
     "alpha applies to interpolating kinds"),
    (lambda c: gradient_penalty(c, torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4), alpha=torch.rand(3)),
     ValueError, r"alpha must hold one value per sample \(2,\)"),
    (lambda c: gradient_norm_penalty(torch.randn(2, 3), inv_scale=0.0), ValueError, "inv_scale must be positive"),
    (lambda c: gradient_norm_penalty(torch.ones(2, 3, dtype=torch.int32)), TypeError, "floating-point"),
])
def test_bad_input_names_the_problem(call, error, match):
    with pytest.raises(error, match=match):
        call(_critic(dtype=torch.float32))


@pytest.mark.parametrize("kind", ["wgan-gp", "r1"])
def test_critic_independent_of_its_input_is_a_clear_error(kind):
    with pytest.raises(ValueError, match="does not depend on its input"):
        gradient_penalty(_constant_critic(), torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4), kind=kind)


def test_critic_without_gradient_is_a_clear_error():
    critic = _critic(dtype=torch.float32)
    with pytest.raises(ValueError, match="does not depend on its input"):
        gradient_penalty(lambda x: critic(x).detach(), torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8))
    with pytest.raises(TypeError, match="floating-point tensor, got tuple"):
        gradient_penalty(lambda x: (critic(x),), torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8))


def test_cpu_kernels_reject_bad_arguments_without_crashing():
    x = torch.randn(2, 3, 4, 4)
    with pytest.raises(RuntimeError, match="alpha must be a contiguous CPU tensor of 2"):
        _ext._C.gp_interpolate_forward_cpu(x, x, torch.rand(3))
    with pytest.raises(RuntimeError, match="tensors must share shape"):
        _ext._C.gp_interpolate_forward_cpu(x, x.double(), torch.rand(2))
    with pytest.raises(RuntimeError, match="one dense block"):
        _ext._C.gradient_norm_penalty_forward_cpu(x[:, :, ::2], 0, 1.0, 10.0, 1.0)
    with pytest.raises(RuntimeError, match="unknown mode"):
        _ext._C.gradient_norm_penalty_forward_cpu(x, 7, 1.0, 10.0, 1.0)


def test_fallback_without_extension_warns_and_is_correct(monkeypatch):
    monkeypatch.setattr(_ext, "_C", None)
    monkeypatch.setattr(_ext, "LOAD_ERROR", "gancore._C did not load (simulated)")
    monkeypatch.setattr(_dispatch._OPS["gradient_norm_penalty"], "warned", set())
    g = _batch((3, 2, 4, 4))
    with pytest.warns(RuntimeWarning, match="gradient_norm_penalty: falling back.*simulated"):
        with record_backends() as ran:
            p = gradient_norm_penalty(g)
    assert ran == [("gradient_norm_penalty", "ref")]
    torch.testing.assert_close(p.double(), _eager_penalty(g, "wgan-gp", 10.0, 1.0))
    monkeypatch.setenv("GANCORE_STRICT", "1")
    with pytest.raises(BackendUnavailable, match="simulated"):
        gp_interpolate(g, g)


def test_backends_report_lists_the_ops():
    report = __import__("gancore").ops.backends()
    for op in ("gp_interpolate", "gradient_norm_penalty"):
        assert report[op]["cpu"]["impl"] == "cpu"
        if not torch.cuda.is_available():
            assert report[op]["cuda"]["impl"] == "ref"



def test_higher_order_gradients_leave_no_reference_cycle():
    """The backward of the backward frees its residuals on return (no garbage for the cyclic gc)."""
    import gc

    g = _batch((3, 2, 4, 4)).requires_grad_(True)
    real = _batch((3, 2, 4, 4), seed=1).requires_grad_(True)

    def higher_order():
        (d,) = torch.autograd.grad(gradient_norm_penalty(g), g, create_graph=True)
        d.square().sum().backward()
        (d,) = torch.autograd.grad(gp_interpolate(real, g.detach()).square().sum(), real, create_graph=True)
        d.sum().backward()

    higher_order()  # first calls create lasting objects (imports, caches)
    gc.collect()
    gc.disable()
    try:
        higher_order()
        assert gc.collect() == 0
    finally:
        gc.enable()
