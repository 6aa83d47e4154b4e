"""Backend selection: auto picks, forced backends, loud fallbacks, strict mode, bad input."""

from __future__ import annotations

import pytest
import torch

import gancore
from gancore import _ext
from gancore.ops import BackendUnavailable, _dispatch, instance_norm_act, record_backends


@pytest.fixture
def no_extension(monkeypatch):
    """As if gancore._C had not been built."""
    monkeypatch.setattr(_ext, "_C", None)
    monkeypatch.setattr(_ext, "LOAD_ERROR", "gancore._C did not load (simulated)")
    monkeypatch.setattr(_dispatch._OPS["instance_norm_act"], "warned", set())


def test_auto_picks_the_cpu_kernel():
    if not _ext.has("instance_norm_act_forward_cpu"):
        pytest.skip(_ext.LOAD_ERROR)
    with record_backends() as ran:
        instance_norm_act(torch.randn(2, 3, 4, 4))
    assert ran == [("instance_norm_act", "cpu")]


def test_env_forces_a_backend(monkeypatch):
    monkeypatch.setenv("GANCORE_IMPL", "ref")
    with record_backends() as ran:
        instance_norm_act(torch.randn(2, 3, 4, 4))
    assert ran == [("instance_norm_act", "ref")]


def test_fallback_warns_once_and_is_correct(no_extension):
    x = torch.randn(2, 3, 4, 4)
    with pytest.warns(RuntimeWarning, match="falling back to the reference PyTorch path.*simulated"):
        with record_backends() as ran:
            out = instance_norm_act(x)
    assert ran == [("instance_norm_act", "ref")]
    torch.testing.assert_close(out, torch.nn.functional.leaky_relu(torch.nn.functional.instance_norm(x), 0.2))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        instance_norm_act(x)  # the same reason is not repeated


def test_strict_mode_turns_fallback_into_error(no_extension, monkeypatch):
    monkeypatch.setenv("GANCORE_STRICT", "1")
    with pytest.raises(BackendUnavailable, match="simulated"):
        instance_norm_act(torch.randn(2, 3, 4, 4))


def test_explicit_backend_that_cannot_run_is_an_error(no_extension):
    with pytest.raises(BackendUnavailable, match="'cpu' cannot run"):
        instance_norm_act(torch.randn(2, 3, 4, 4), impl="cpu")
    with pytest.raises(BackendUnavailable, match="cuda"):
        instance_norm_act(torch.randn(2, 3, 4, 4), impl="cuda")
    with pytest.raises(ValueError, match="impl must be"):
        instance_norm_act(torch.randn(2, 3, 4, 4), impl="fastest")


def test_backends_report_covers_every_op_and_device():
    report = gancore.ops.backends()
    assert set(report["instance_norm_act"]) == {"cpu", "cuda"}
    for entry in report["instance_norm_act"].values():
        assert entry["impl"] in _dispatch.IMPLS and entry["reason"]


@pytest.mark.parametrize("args,kwargs,error,match", [
    ((torch.randn(2, 3),), {}, ValueError, r"\(N, C, \*spatial\).*shape \(2, 3\)"),
    ((torch.randn(1, 2, 3, 4, 5, 6),), {}, ValueError, "1 to 3 spatial dims"),
    ((torch.randint(0, 5, (2, 3, 4, 4)),), {}, TypeError, "floating-point.*torch.int64"),
    ((torch.randn(2, 3, 4, 4), torch.ones(4)), {}, ValueError, r"weight must have shape \(3,\).*got \(4,\)"),
    ((torch.randn(2, 3, 4, 4), None, torch.ones(2)), {}, ValueError, r"bias must have shape \(3,\)"),
    ((torch.randn(2, 3, 4, 4),), {"residual": torch.randn(2, 3, 4, 5)}, ValueError, "residual must have the shape"),
    ((torch.randn(2, 3, 4, 4),), {"residual": torch.randn(2, 3, 4, 4).double()}, TypeError, "residual dtype"),
    ((torch.randn(2, 3, 4, 4),), {"activation": "tanh"}, ValueError, "activation must be one of"),
    ((torch.randn(2, 3, 4, 4),), {"eps": 0.0}, ValueError, "eps must be positive"),
    ((torch.randn(2, 3, 4, 4),), {"eps": "1e-5"}, TypeError, "eps must be a number, got str '1e-5'"),
    ((torch.randn(2, 3, 4, 4),), {"eps": float("nan")}, ValueError, "eps must be positive and finite"),
    ((torch.randn(2, 3, 4, 4),), {"negative_slope": float("nan")}, ValueError, "negative_slope must be finite"),
    ((torch.randn(2, 3, 4, 4),), {"negative_slope": "0.2"}, TypeError, "negative_slope must be a number"),
    ((torch.randn(2, 0, 4, 4),), {}, ValueError, "at least one channel"),
    ((torch.randn(2, 3, 4, 4), torch.ones(3, device="meta")), {}, ValueError, "weight is on meta but x is on cpu"),
    ((torch.randn(2, 3, 4, 4),), {"residual": torch.randn(2, 3, 4, 4, device="meta")}, ValueError,
     "residual is on meta"),
])
def test_bad_input_names_the_problem(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        instance_norm_act(*args, **kwargs)


def test_cpu_kernel_rejects_bad_arguments_without_crashing():
    """Called directly, the C++ entry point raises Python errors instead of crashing."""
    if not _ext.has("instance_norm_act_forward_cpu"):
        pytest.skip(_ext.LOAD_ERROR)
    x = torch.randn(2, 3, 4, 4)
    with pytest.raises(RuntimeError, match="weight must be a contiguous 1-D tensor of 3"):
        _ext._C.instance_norm_act_forward_cpu(x, torch.ones(5), None, None, 1e-5, 0.2)
    with pytest.raises(RuntimeError, match="expected a contiguous or channels-last"):
        _ext._C.instance_norm_act_forward_cpu(x[:, :, ::2], None, None, None, 1e-5, 0.2)
    with pytest.raises(RuntimeError, match="residual must match x"):
        _ext._C.instance_norm_act_forward_cpu(x, None, None, torch.randn(2, 3, 4, 5), 1e-5, 0.2)


@pytest.mark.parametrize("variable,value,match", [
    ("GANCORE_CPU_ISA", "bogus", r"GANCORE_CPU_ISA must be one of \('avx2', 'baseline'\).*'bogus'"),
    ("GANCORE_IMPL", "fastest", r"GANCORE_IMPL must be 'auto' or one of \('ref', 'cpu', 'triton', 'cuda'\)"),
])
def test_bad_environment_value_names_the_valid_ones(monkeypatch, variable, value, match):
    instance_norm_act(torch.randn(2, 3, 4, 4))  # a cached backend choice must not hide the new value
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=match):
        instance_norm_act(torch.randn(2, 3, 4, 4))


def test_backend_choice_follows_the_environment_after_caching(monkeypatch):
    x = torch.randn(2, 3, 4, 4)
    with record_backends() as ran:
        instance_norm_act(x)
        monkeypatch.setenv("GANCORE_IMPL", "ref")
        instance_norm_act(x)
        monkeypatch.delenv("GANCORE_IMPL")
        instance_norm_act(x)
    expected = "cpu" if _ext.has("instance_norm_act_forward_cpu") else "ref"
    assert [impl for _, impl in ran] == [expected, "ref", expected]
