"""batch_norm_act on the CPU: the C++ backend and the reference path against eager PyTorch in float64,
running buffers included."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gancore import _ext
from gancore.ops import batch_norm_act, record_backends
from tests.helpers import assert_close

pytestmark = pytest.mark.skipif(not _ext.has("batch_norm_act_forward_cpu"), reason=_ext.LOAD_ERROR or "")

SHAPES = [
    (4, 8, 5, 7),  # odd planes
    (1, 8, 33, 20),  # batch 1 (pix2pix D), plane longer than a statistics chunk
    (3, 5, 1, 1),  # H*W == 1
    (6, 4),  # BatchNorm1d on (N, C)
    (2, 3, 9),  # BatchNorm1d on (N, C, L)
    (2, 3, 2, 3, 4),  # 3-D
    (19, 7, 4, 4),  # small planes: several channel blocks (the last one short) and plane chunks
]


def _layouts(shape):
    return ("nchw", "channels_last") if len(shape) in (4, 5) else ("nchw",)


CASES = [(s, lay) for s in SHAPES for lay in _layouts(s)]


def eager_batch_norm_act(x, weight, bias, running_mean, running_var, *, training, momentum=0.1, eps=1e-5,
                         activation="leaky_relu", negative_slope=0.2, prelu_weight=None, residual=None):
    """The oracle: F.batch_norm + activation + residual, in the inputs' dtype (call it with float64)."""
    y = F.batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps)
    if activation == "leaky_relu":
        y = F.leaky_relu(y, negative_slope)
    elif activation == "relu":
        y = F.relu(y)
    elif activation == "prelu":
        y = F.prelu(y, prelu_weight)
    return y + residual if residual is not None else y


def _inputs(shape, dtype, layout, offset=0.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=g, dtype=torch.float64) * 2 + offset).to(dtype)
    if layout == "channels_last":
        x = x.to(memory_format=torch.channels_last if x.dim() == 4 else torch.channels_last_3d)
    C = shape[1]
    w = (torch.rand(C, generator=g, dtype=torch.float64) + 0.5).to(dtype)
    b = torch.randn(C, generator=g, dtype=torch.float64).to(dtype)
    r = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    rm = torch.randn(C, generator=g, dtype=torch.float64)
    rv = torch.rand(C, generator=g, dtype=torch.float64) + 0.5
    return x, w, b, r, rm, rv


def _acc(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


@pytest.mark.parametrize("dtype,training", [(torch.float32, True), (torch.float32, False), (torch.float64, True),
                                            (torch.float64, False), (torch.bfloat16, True), (torch.float16, True)])
@pytest.mark.parametrize("shape,layout", CASES)
def test_forward_backward_and_buffers_match_eager(impl, dtype, shape, layout, training):
    x, w, b, r, rm, rv = _inputs(shape, dtype, layout)
    leaves = [t.detach().clone().requires_grad_(True) for t in (x, w, b, r)]
    buffers = [rm.to(_acc(dtype), copy=True), rv.to(_acc(dtype), copy=True)]
    grad = torch.randn(shape, generator=torch.Generator().manual_seed(1)).to(dtype)
    with record_backends() as ran:
        out = batch_norm_act(leaves[0], leaves[1], leaves[2], *buffers, training=training, residual=leaves[3],
                             impl=impl)
        grads = torch.autograd.grad(out, leaves, grad)
    assert {backend for _, backend in ran} == {impl} and len(ran) == 2
    assert out.dtype == dtype and out.shape == x.shape and out.stride() == x.stride()

    leaves64 = [t.detach().double().requires_grad_(True) for t in (x, w, b, r)]
    buffers64 = [rm.clone(), rv.clone()]
    expected = eager_batch_norm_act(leaves64[0], leaves64[1], leaves64[2], *buffers64, training=training,
                                    residual=leaves64[3])
    expected_grads = torch.autograd.grad(expected, leaves64, grad.double())
    assert_close(out, expected, dtype)
    reduce_scale = max(1.0, (x.numel() / x.shape[1]) ** 0.5 / 8)
    for name, got, want in zip(("x", "weight", "bias", "residual"), grads, expected_grads):
        assert got.dtype == dtype, name
        assert_close(got, want, dtype, scale=reduce_scale if name in ("weight", "bias") else 1.0)
    for got, want in zip(buffers, buffers64):
        assert_close(got, want, _acc(dtype))


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("activation,params", [("relu", 0), ("identity", 0), ("leaky_relu", 0), ("prelu", 1),
                                               ("prelu", 6)])
@pytest.mark.parametrize("batch", [3, 1])  # batch 1 in NCHW: the channel-by-channel training forward
def test_activations_including_prelu_gradients(impl, activation, params, layout, training, batch):
    x, w, b, r, rm, rv = _inputs((batch, 6, 5, 4), torch.float64, layout)
    a = torch.linspace(-0.3, 0.4, params, dtype=torch.float64) if params else None
    leaves = [t.clone().requires_grad_(True) for t in (x, w, b) + ((a,) if params else ())]
    grad = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    with record_backends() as ran:
        out = batch_norm_act(leaves[0], leaves[1], leaves[2], rm.clone(), rv.clone(), training=training,
                             activation=activation, negative_slope=0.1, prelu_weight=leaves[3] if params else None,
                             impl=impl)
        grads = torch.autograd.grad(out, leaves, grad)
    assert {backend for _, backend in ran} == {impl}
    expected = eager_batch_norm_act(*leaves[:3], rm.clone(), rv.clone(), training=training, activation=activation,
                                    negative_slope=0.1, prelu_weight=leaves[3] if params else None)
    expected_grads = torch.autograd.grad(expected, leaves, grad)
    torch.testing.assert_close(out, expected, atol=1e-12, rtol=1e-12)
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want, atol=1e-11, rtol=1e-11)


@pytest.mark.parametrize("momentum", [0.1, 0.5, None])
def test_running_buffers_follow_pytorch_over_steps(impl, momentum):
    eager = torch.nn.BatchNorm2d(5, momentum=momentum).double()
    rm, rv, nbt = eager.running_mean.clone(), eager.running_var.clone(), eager.num_batches_tracked.clone()
    for step in range(3):
        x = torch.randn(4, 5, 3, 6, dtype=torch.float64) * (step + 1) + step
        expected = F.relu(eager(x))
        with record_backends() as ran:
            out = batch_norm_act(x, eager.weight, eager.bias, rm, rv, training=True, momentum=momentum,
                                 activation="relu", num_batches_tracked=nbt, impl=impl)
        assert ran == [("batch_norm_act", impl)]
        torch.testing.assert_close(out, expected, atol=1e-12, rtol=1e-12)
        torch.testing.assert_close(rm, eager.running_mean, atol=1e-13, rtol=1e-13)
        torch.testing.assert_close(rv, eager.running_var, atol=1e-13, rtol=1e-13)
        assert int(nbt) == int(eager.num_batches_tracked) == step + 1


def test_buffers_in_another_dtype_are_updated_in_their_own():
    x = torch.randn(4, 3, 5, 5)
    rm, rv = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    batch_norm_act(x, None, None, rm, rv, training=True, activation="identity")
    erm, erv = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    F.batch_norm(x.double(), erm, erv, training=True)
    assert rm.dtype == torch.float64
    torch.testing.assert_close(rm, erm, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(rv, erv, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("shape", [(4, 8, 16, 16), (40, 8, 4, 4)])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_large_offset_keeps_statistics_exact(impl, layout, shape):
    x, w, b, _, rm, rv = _inputs(shape, torch.float32, layout, offset=1e4)
    out = batch_norm_act(x, w, b, rm.float(), rv.float(), training=True, impl=impl)
    expected = eager_batch_norm_act(x.double(), w.double(), b.double(), rm.clone(), rv.clone(), training=True)
    # x itself carries 1e4 * 2**-24 ~ 6e-4 of rounding relative to its spread of 2
    torch.testing.assert_close(out.double(), expected, atol=2e-3, rtol=0)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_gradgradcheck_float64(impl, layout, training):
    x, w, b, r, rm, rv = _inputs((3, 2, 3, 2), torch.float64, layout)
    a = torch.tensor([0.1, -0.2], dtype=torch.float64)
    inputs = tuple(t.clone().requires_grad_(True) for t in (x, w, b, a, r))

    def fn(x, w, b, a, r):
        return batch_norm_act(x, w, b, rm.clone(), rv.clone(), training=training, activation="prelu",
                              prelu_weight=a, residual=r, impl=impl)

    with record_backends() as ran:
        assert torch.autograd.gradcheck(fn, inputs)
        assert torch.autograd.gradgradcheck(fn, inputs)
    assert {backend for _, backend in ran} == {impl}


def test_gradgradcheck_leaky_without_affine():
    x = torch.randn(4, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda t: batch_norm_act(t, None, None, None, None, training=True), (x,))


def test_weight_gradient_is_deterministic():
    x, w, b, _, _, _ = _inputs((8, 16, 20, 20), torch.float32, "nchw")
    w.requires_grad_(True)
    grads = [torch.autograd.grad(batch_norm_act(x, w, b, None, None, training=True).square().sum(), w)[0]
             for _ in range(3)]
    assert all(torch.equal(grads[0], g) for g in grads[1:])


# both large enough to be split across threads: per-plane walk (20x20), channel blocks (4x4)
@pytest.mark.parametrize("shape", [(8, 16, 20, 20), (64, 64, 4, 4), (1, 64, 40, 30)])
def test_results_do_not_depend_on_the_thread_count(shape):
    x, w, b, _, _, _ = _inputs(shape, torch.float32, "nchw")
    grad = torch.randn(shape, generator=torch.Generator().manual_seed(3))
    w.requires_grad_(True)
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            xg = x.clone().requires_grad_(True)
            out = batch_norm_act(xg, w, b, None, None, training=True, impl="cpu")
            results.append((out, *torch.autograd.grad(out, (xg, w), grad)))
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(results[0], other))


def test_non_dense_input_is_copied_once_and_correct():
    x = torch.randn(4, 6, 10, 10, dtype=torch.float64)[:, ::2, :, 1:9]
    out = batch_norm_act(x, None, None, None, None, training=True)
    expected = eager_batch_norm_act(x, None, None, None, None, training=True)
    torch.testing.assert_close(out, expected, atol=1e-12, rtol=1e-12)


def test_torch_compile_fullgraph_and_opcheck():
    from gancore.nn import BatchNormAct2d

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), BatchNormAct2d(8), torch.nn.Conv2d(8, 1, 3))
    x = torch.randn(2, 3, 8, 8)
    reference = __import__("copy").deepcopy(model)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    with record_backends() as ran:
        out = compiled(x)
        out.sum().backward()
    assert ("batch_norm_act", "cpu") in ran
    torch.testing.assert_close(out, reference(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model[1].running_var, reference[1].running_var)

    args = (torch.randn(3, 4, 2, 2), torch.rand(4) + 0.5, torch.randn(4), torch.tensor([0.2]), None, torch.zeros(4),
            torch.ones(4), True, 0.1, 1e-5, 0.0, "cpu")
    torch.library.opcheck(torch.ops.gancore.batch_norm_act_fwd, args, test_utils=("test_schema", "test_faketensor"))


BAD_INPUTS = [
    (dict(x=torch.randn(2, 3, 4, 4).int()), TypeError, "x must be a floating-point"),
    (dict(x=torch.randn(3)), ValueError, r"x must be \(N, C\)"),
    (dict(weight=torch.ones(4)), ValueError, r"weight must have shape \(3,\)"),
    (dict(running_mean=torch.zeros(2)), ValueError, r"running_mean must have shape \(3,\)"),
    (dict(running_var=None), ValueError, "given together"),
    (dict(running_mean=None, running_var=None, training=False), ValueError, "running statistics"),
    (dict(x=torch.randn(1, 3, 1, 1)), ValueError, "more than one value per channel"),
    (dict(momentum=1.5), ValueError, "momentum must be"),
    (dict(momentum=None), ValueError, "needs num_batches_tracked"),
    (dict(activation="gelu"), ValueError, "activation must be one of"),
    (dict(activation="prelu"), ValueError, "needs prelu_weight"),
    (dict(activation="prelu", prelu_weight=torch.ones(2)), ValueError, r"prelu_weight must have shape"),
    (dict(prelu_weight=torch.ones(1)), ValueError, "only used with activation='prelu'"),
    (dict(residual=torch.randn(2, 3, 4, 5)), ValueError, "residual must have the shape"),
    (dict(residual=torch.randn(2, 3, 4, 4).double()), TypeError, "residual dtype"),
    (dict(eps=0.0), ValueError, "eps must be positive"),
    (dict(training=1), TypeError, "training must be a bool"),
    (dict(impl="gpu"), ValueError, "impl must be"),
]


@pytest.mark.parametrize("kwargs,error,match", BAD_INPUTS)
def test_bad_input_gives_a_clear_error(kwargs, error, match):
    args = dict(x=torch.randn(2, 3, 4, 4), weight=None, bias=None, running_mean=torch.zeros(3),
                running_var=torch.ones(3), training=True)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        batch_norm_act(**args)


@pytest.mark.parametrize("kwargs,error,match", [case for case in BAD_INPUTS if "running_mean" not in case[0]
                                                 and "running_var" not in case[0]])
def test_bad_input_leaves_the_running_buffers_alone(kwargs, error, match):
    rm, rv, nbt = torch.zeros(3), torch.ones(3), torch.tensor(4)
    args = dict(x=torch.randn(2, 3, 4, 4), weight=torch.ones(3), bias=torch.zeros(3), running_mean=rm,
                running_var=rv, training=True, num_batches_tracked=nbt)
    args.update(kwargs)
    if args.get("momentum", 0.1) is None:
        args["num_batches_tracked"] = None  # its own error: momentum=None needs the count
    with pytest.raises(error, match=match):
        batch_norm_act(**args)
    assert torch.equal(rm, torch.zeros(3)) and torch.equal(rv, torch.ones(3)) and int(nbt) == 4


def _count_full_path_checks(monkeypatch) -> list[int]:
    """Counts the calls that took the full path (its Python checks) rather than the lean CPU one."""
    from gancore.ops import batch_norm as module

    calls, full = [], module._validate

    def counting(*args, **kwargs):
        calls.append(1)
        return full(*args, **kwargs)

    monkeypatch.setattr(module, "_validate", counting)
    return calls


@pytest.mark.parametrize("momentum", [0.1, None])
def test_a_module_training_step_takes_the_lean_cpu_path(monkeypatch, momentum):
    from gancore.nn import BatchNormAct2d

    calls = _count_full_path_checks(monkeypatch)
    fused, eager = BatchNormAct2d(4, momentum=momentum), torch.nn.BatchNorm2d(4, momentum=momentum)
    for step in range(3):
        x = torch.randn(2, 4, 5, 5) * (step + 1) + step
        xf, xe = x.clone().requires_grad_(), x.clone().requires_grad_()
        with record_backends() as ran:
            out = fused(xf)
        expected = F.leaky_relu(eager(xe), 0.2)
        torch.testing.assert_close(out, expected)
        grad = torch.randn_like(out)
        torch.testing.assert_close(torch.autograd.grad(out, xf, grad)[0], torch.autograd.grad(expected, xe, grad)[0])
        assert ran[0] == ("batch_norm_act", "cpu")
    assert calls == []
    torch.testing.assert_close(fused.running_mean, eager.running_mean)
    torch.testing.assert_close(fused.running_var, eager.running_var)
    assert int(fused.num_batches_tracked) == int(eager.num_batches_tracked) == 3


def test_a_call_the_lean_path_refuses_updates_the_buffers_once(monkeypatch):
    """A residual in another layout than x: the lean path hands the call to the full path, which copies it,
    before anything moved; the running buffers and the count then move exactly once."""
    calls = _count_full_path_checks(monkeypatch)
    x, w, b, r, _, _ = _inputs((2, 3, 4, 5), torch.float32, "nchw")
    residual = r.to(memory_format=torch.channels_last)
    rm, rv, nbt = torch.zeros(3), torch.ones(3), torch.tensor(0)
    out = batch_norm_act(x, w, b, rm, rv, training=True, residual=residual, num_batches_tracked=nbt)
    erm, erv = torch.zeros(3), torch.ones(3)
    torch.testing.assert_close(out, eager_batch_norm_act(x, w, b, erm, erv, training=True, residual=r))
    torch.testing.assert_close(rm, erm)
    torch.testing.assert_close(rv, erv)
    assert int(nbt) == 1 and calls == [1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only fallback report")
def test_backends_report():
    report = __import__("gancore").ops.backends()["batch_norm_act"]
    assert report["cpu"]["impl"] == "cpu"
    assert report["cuda"]["impl"] == "ref"


# ---- cross-process statistics: 2 gloo processes against one process holding the whole batch ----------------

_SPLIT = (3, 2)  # uneven halves: the merge must weigh each process by its count


def _ddp_data():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(sum(_SPLIT), 4, 3, 5, generator=g, dtype=torch.float64) * 3 + 1
    w = torch.rand(4, generator=g, dtype=torch.float64) + 0.5
    b = torch.randn(4, generator=g, dtype=torch.float64)
    a = torch.tensor([0.1, -0.2, 0.3, 0.05], dtype=torch.float64)
    grad = torch.randn(x.shape, generator=g, dtype=torch.float64)
    return x, w, b, a, grad


def _ddp_run(x, w, b, a, grad, group):
    leaves = [t.clone().requires_grad_(True) for t in (x, w, b, a)]
    rm, rv = torch.zeros(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64)
    with record_backends() as ran:
        out = batch_norm_act(leaves[0], leaves[1], leaves[2], rm, rv, training=True, activation="prelu",
                             prelu_weight=leaves[3], process_group=group)
        (out * grad).sum().backward()
    return dict(out=out.detach(), grads=[t.grad for t in leaves], rm=rm, rv=rv, ran=ran)


def _ddp_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        x, w, b, a, grad = _ddp_data()
        lo = sum(_SPLIT[:rank])
        part = slice(lo, lo + _SPLIT[rank])
        torch.save(_ddp_run(x[part], w, b, a, grad[part], dist.group.WORLD), f"{out_dir}/{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_synchronised_statistics_over_two_gloo_processes_match_one_process(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"{r}.pt") for r in range(2)]
    whole = _ddp_run(*_ddp_data(), group=None)
    for r in ranks:
        assert {backend for _, backend in r["ran"]} == {"cpu"} and len(r["ran"]) == 2
        torch.testing.assert_close(r["rm"], whole["rm"], atol=1e-12, rtol=1e-12)
        torch.testing.assert_close(r["rv"], whole["rv"], atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(torch.cat([r["out"] for r in ranks]), whole["out"], atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(torch.cat([r["grads"][0] for r in ranks]), whole["grads"][0], atol=1e-12, rtol=1e-12)
    # parameter gradients stay per process; their sum (what DDP's all-reduce forms) is the whole batch's
    for i in (1, 2, 3):
        torch.testing.assert_close(ranks[0]["grads"][i] + ranks[1]["grads"][i], whole["grads"][i], atol=1e-11,
                                   rtol=1e-11)
