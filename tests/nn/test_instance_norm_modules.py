"""InstanceNormAct modules and fuse(): drop-in replacements for existing GAN code."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from gancore.nn import InstanceNormAct1d, InstanceNormAct2d, InstanceNormAct3d, fuse
from gancore.ops import record_backends


def _pix2pix_like() -> nn.Sequential:
    """The way pix2pix / CycleGAN / StarGAN code writes its blocks."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 4, 2, 1), nn.InstanceNorm2d(8, affine=True), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(8, 16, 3, 1, 1), nn.InstanceNorm2d(16), nn.ReLU(True),
        nn.Sequential(nn.Conv2d(16, 16, 3, 1, 1), nn.InstanceNorm2d(16, affine=True)),  # lone norm
        nn.Conv2d(16, 1, 3, 1, 1),
    )


def test_module_loads_instance_norm_state_dict_and_matches():
    ref = nn.InstanceNorm2d(6, affine=True)
    with torch.no_grad():
        ref.weight.uniform_(0.5, 1.5)
        ref.bias.normal_()
    fused = InstanceNormAct2d(6, affine=True, activation="relu")
    fused.load_state_dict(ref.state_dict())
    x = torch.randn(2, 6, 10, 10)
    torch.testing.assert_close(fused(x), torch.relu(ref(x)))


@pytest.mark.parametrize("cls,shape", [(InstanceNormAct1d, (2, 4, 9)), (InstanceNormAct2d, (2, 4, 5, 6)),
                                       (InstanceNormAct3d, (1, 4, 3, 4, 5))])
def test_module_ranks(cls, shape):
    m = cls(4, negative_slope=0.1)
    x = torch.randn(shape)
    ref = nn.functional.leaky_relu(nn.functional.instance_norm(x), 0.1)
    torch.testing.assert_close(m(x), ref, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="expects a"):
        m(torch.randn(*shape, 2))


def test_module_residual():
    m = InstanceNormAct2d(4, activation="identity")
    x, r = torch.randn(2, 4, 6, 6), torch.randn(2, 4, 6, 6)
    torch.testing.assert_close(m(x, residual=r), nn.functional.instance_norm(x) + r, atol=1e-5, rtol=1e-5)


def test_fuse_rewrites_and_keeps_outputs_and_gradients():
    original = _pix2pix_like()
    fused = fuse(copy.deepcopy(original))
    kinds = [type(m).__name__ for m in fused]
    assert kinds[:6] == ["Conv2d", "InstanceNormAct2d", "Identity", "Conv2d", "InstanceNormAct2d", "Identity"]
    assert type(fused[6][1]) is InstanceNormAct2d and fused[6][1].activation == "identity"
    assert fused[1].activation == "leaky_relu" and fused[1].negative_slope == 0.2
    assert fused[4].activation == "relu"
    assert len(fused.gancore_fused) == 3
    # same parameters under the same names: checkpoints load both ways
    assert original.state_dict().keys() == fused.state_dict().keys()
    fused.load_state_dict(original.state_dict())

    x = torch.randn(2, 3, 32, 32)
    with record_backends() as ran:
        out = fused(x)
        out.square().mean().backward()
    assert {b for _, b in ran} == {"cpu"} and len(ran) == 6
    ref_out = original(x)
    ref_out.square().mean().backward()
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
    for (name, p), q in zip(fused.named_parameters(), original.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-5, rtol=1e-4, msg=name)


def test_fuse_keeps_training_mode_and_shares_parameters():
    model = _pix2pix_like().eval()
    weight = model[1].weight
    fuse(model)
    assert not model[1].training
    assert model[1].weight is weight  # an optimiser built before fuse() still updates it


def test_fuse_running_stats_norms():
    """InstanceNorm2d(track_running_stats=True) fuses into RunningInstanceNormAct2d; 1-D and 3-D ones stay."""
    from gancore.nn import RunningInstanceNormAct2d

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.InstanceNorm2d(4, track_running_stats=True), nn.ReLU())
    fuse(model)
    assert type(model[1]) is RunningInstanceNormAct2d and type(model[2]) is nn.Identity
    model = nn.Sequential(nn.Conv1d(3, 4, 3), nn.InstanceNorm1d(4, track_running_stats=True), nn.ReLU())
    fuse(model)
    assert type(model[1]) is nn.InstanceNorm1d and type(model[2]) is nn.ReLU
    (entry,) = model.gancore_fused.unfused
    assert entry.path == "1" and "left unfused" in str(entry) and "track_running_stats" in str(entry)


def test_fuse_reports_nothing_for_models_without_norms(capsys):
    model = fuse(nn.Sequential(nn.Linear(3, 3)), verbose=True)
    assert len(model.gancore_fused) == 0
    assert "nothing to fuse" in capsys.readouterr().out


def test_module_rejects_unknown_activation():
    with pytest.raises(ValueError, match="activation must be one of"):
        InstanceNormAct2d(4, activation="gelu")
