"""BatchNormAct1d/2d/3d and RunningInstanceNormAct2d against the torch.nn modules they replace (state_dict,
outputs, gradients, running buffers, train and eval), and the fuse() factories."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from gancore import _ext
from gancore.nn import BatchNormAct1d, BatchNormAct2d, BatchNormAct3d, RunningInstanceNormAct2d, fuse
from gancore.nn.batch_norm import PReLUWeight, batch_norm_fusion, running_instance_norm_fusion
from gancore.ops import record_backends

pytestmark = pytest.mark.skipif(not _ext.has("batch_norm_act_forward_cpu"), reason=_ext.LOAD_ERROR or "")


def _randomise(module: nn.Module) -> nn.Module:
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for t in list(module.parameters()) + [b for b in module.buffers() if b.is_floating_point()]:
            t.copy_(torch.rand(t.shape, generator=g, dtype=t.dtype) + 0.5)
    return module


def _run_steps(model: nn.Module, inputs: list[torch.Tensor], train_steps: int):
    """Outputs and input gradients of train_steps training steps, then one eval step."""
    results = []
    for i, x in enumerate(inputs):
        model.train(i < train_steps)
        x = x.clone().requires_grad_(True)
        out = model(x)
        (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view(out.shape)).sum().backward()
        results.append((out.detach(), x.grad))
    return results


def _assert_same_state(a: nn.Module, b: nn.Module, tol=1e-12):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        torch.testing.assert_close(sa[key], sb[key], atol=tol, rtol=tol, msg=key)
    for (na, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, atol=1e-11, rtol=1e-11, msg=na)


ACTS = [("relu", nn.ReLU()), ("leaky_relu", nn.LeakyReLU(0.2)), ("identity", nn.Identity()), ("prelu", nn.PReLU(6))]


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("activation,act", ACTS)
def test_batch_norm_act2d_matches_batch_norm2d_with_its_state_dict(activation, act, momentum):
    eager = _randomise(nn.Sequential(nn.BatchNorm2d(6, momentum=momentum), copy.deepcopy(act)).double())
    fused = nn.Sequential(BatchNormAct2d(6, momentum=momentum, activation=activation, negative_slope=0.2,
                                         num_prelu_parameters=6).double())
    state = eager[0].state_dict()
    if activation == "prelu":
        state["prelu_weight"] = eager[1].weight.detach().clone()
    fused[0].load_state_dict(state, strict=True)
    inputs = [torch.randn(4, 6, 5, 3, dtype=torch.float64) * (i + 1) + i for i in range(4)]
    inputs[1] = inputs[1].to(memory_format=torch.channels_last)
    with record_backends() as ran:
        got = _run_steps(fused, inputs, train_steps=3)
    assert {backend for _, backend in ran} == {"cpu"}
    for (o1, g1), (o2, g2) in zip(got, _run_steps(eager, inputs, train_steps=3)):
        torch.testing.assert_close(o1, o2, atol=1e-12, rtol=1e-12)
        torch.testing.assert_close(g1, g2, atol=1e-11, rtol=1e-11)
    for key, value in eager[0].state_dict().items():
        torch.testing.assert_close(fused[0].state_dict()[key], value, atol=1e-12, rtol=1e-12, msg=key)
    assert int(fused[0].num_batches_tracked) == 3


@pytest.mark.parametrize("track", [True, False])
@pytest.mark.parametrize("shape", [(8, 5), (4, 5, 7)])
def test_batch_norm_act1d_matches_batch_norm1d(shape, track):
    eager = _randomise(nn.Sequential(nn.BatchNorm1d(5, track_running_stats=track), nn.LeakyReLU(0.1)).double())
    fused = nn.Sequential(BatchNormAct1d(5, track_running_stats=track, negative_slope=0.1).double(), nn.Identity())
    fused.load_state_dict(eager.state_dict(), strict=True)
    inputs = [torch.randn(shape, dtype=torch.float64) for _ in range(3)]
    for (o1, g1), (o2, g2) in zip(_run_steps(fused, inputs, 2), _run_steps(eager, inputs, 2)):
        torch.testing.assert_close(o1, o2, atol=1e-12, rtol=1e-12)
        torch.testing.assert_close(g1, g2, atol=1e-11, rtol=1e-11)
    _assert_same_state(fused, eager)


def test_fuse_rewrites_a_3d_block_with_its_keys_and_results():
    """Conv3d -> BatchNorm3d -> ReLU (video and volumetric GANs): fused by fuse(), float64 exact, keys kept."""
    eager = _randomise(nn.Sequential(nn.Conv3d(2, 4, 3, padding=1), nn.BatchNorm3d(4), nn.ReLU(),
                                     nn.Conv3d(4, 1, 1)).double())
    fused = fuse(copy.deepcopy(eager))
    assert isinstance(fused[1], BatchNormAct3d) and isinstance(fused[2], nn.Identity)
    assert list(fused.state_dict()) == list(eager.state_dict())
    inputs = [torch.randn(3, 2, 4, 5, 3, dtype=torch.float64) + i for i in range(3)]
    with record_backends() as ran:
        got = _run_steps(fused, inputs, 2)
    assert {backend for op, backend in ran if op == "batch_norm_act"} == {"cpu"}
    for (o1, g1), (o2, g2) in zip(got, _run_steps(eager, inputs, 2)):
        torch.testing.assert_close(o1, o2, atol=1e-12, rtol=1e-12)
        torch.testing.assert_close(g1, g2, atol=1e-11, rtol=1e-11)
    _assert_same_state(fused, eager)
    with pytest.raises(ValueError, match="expects a 5-D input"):
        fused[1](torch.randn(2, 4, 3, 3))


def test_batch_norm_act_float32_is_no_further_from_float64_than_eager():
    eager64 = _randomise(nn.Sequential(nn.BatchNorm2d(16), nn.LeakyReLU(0.2)).double())
    fused = nn.Sequential(BatchNormAct2d(16), nn.Identity())
    fused.load_state_dict(eager64.state_dict())
    eager32 = copy.deepcopy(eager64).float()
    x = torch.randn(8, 16, 12, 12, dtype=torch.float64) * 2 + 3

    def err(a, b):
        return float((a.detach().double() - b.detach()).norm() / b.detach().norm())

    ref = eager64(x)
    assert err(fused(x.float()), ref) <= 1.5 * err(eager32(x.float()), ref) + 1e-7
    torch.testing.assert_close(fused[0].running_var.double(), eager64[0].running_var, atol=1e-5, rtol=1e-5)


def test_batch_norm_act_rejects_wrong_rank():
    with pytest.raises(ValueError, match="expects a 4-D input"):
        BatchNormAct2d(3)(torch.randn(2, 3, 4))


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("act", [nn.ReLU(), nn.LeakyReLU(0.2), None])
def test_running_instance_norm_matches_instance_norm2d_with_running_stats(act, momentum):
    """StarGAN's norm: InstanceNorm2d(affine=True, track_running_stats=True), in training and in eval."""
    layers = [nn.InstanceNorm2d(6, affine=True, track_running_stats=True, momentum=momentum)]
    eager = _randomise(nn.Sequential(*layers, *([copy.deepcopy(act)] if act is not None else [])).double())
    fused = copy.deepcopy(eager)
    result = running_instance_norm_fusion(fused[0], fused[1] if act is not None else None)
    assert isinstance(result, RunningInstanceNormAct2d)
    fused[0] = result
    if act is not None:
        fused[1] = result.activation_slot
    inputs = [torch.randn(3, 6, 5, 4, dtype=torch.float64) * (i + 1) + i for i in range(4)]
    with record_backends() as ran:
        got = _run_steps(fused, inputs, train_steps=3)
    assert ("instance_norm_act", "cpu") in ran and ("batch_norm_act", "cpu") in ran
    for (o1, g1), (o2, g2) in zip(got, _run_steps(eager, inputs, train_steps=3)):
        torch.testing.assert_close(o1, o2, atol=1e-12, rtol=1e-12)
        torch.testing.assert_close(g1, g2, atol=1e-11, rtol=1e-11)
    _assert_same_state(fused, eager)
    assert int(fused[0].num_batches_tracked) == 0  # nn.InstanceNorm never counts batches


def _fuse_pair(seq: nn.Sequential, i: int):
    """What fuse() does with a factory's result: the norm's slot gets the module, the activation's its slot."""
    result = batch_norm_fusion(seq[i], seq[i + 1])
    if isinstance(result, str):
        return result
    seq[i], seq[i + 1] = result, result.activation_slot
    return result


@pytest.mark.parametrize("act", [nn.ReLU(), nn.LeakyReLU(0.2), nn.PReLU(), nn.PReLU(8)])
def test_batch_norm_fusion_keeps_keys_and_results(act):
    """DCGAN (BN -> ReLU / LeakyReLU) and SRResNet (BN -> PReLU) blocks."""
    eager = _randomise(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), copy.deepcopy(act),
                                     nn.Conv2d(8, 2, 3)).double())
    fused = copy.deepcopy(eager)
    keys = list(fused.state_dict())
    assert isinstance(_fuse_pair(fused, 1), BatchNormAct2d)
    assert list(fused.state_dict()) == keys
    if isinstance(act, nn.PReLU):
        assert isinstance(fused[2], PReLUWeight) and fused[2].weight is fused[1]._prelu()
    inputs = [torch.randn(4, 3, 6, 6, dtype=torch.float64) for _ in range(3)]
    for (o1, g1), (o2, g2) in zip(_run_steps(fused, inputs, 2), _run_steps(eager, inputs, 2)):
        torch.testing.assert_close(o1, o2, atol=1e-12, rtol=1e-12)
        torch.testing.assert_close(g1, g2, atol=1e-11, rtol=1e-11)
    _assert_same_state(fused, eager)


def test_fusion_refuses_what_it_cannot_match():
    bn = nn.BatchNorm2d(4, track_running_stats=False).eval()
    assert "track_running_stats=False" in batch_norm_fusion(bn, nn.ReLU())
    assert "activation" in batch_norm_fusion(nn.BatchNorm2d(4), nn.GELU())
    shared = nn.BatchNorm2d(4)
    twin = nn.BatchNorm2d(4)
    twin.running_mean = shared.running_mean  # one buffer, two modules
    assert "shared" in batch_norm_fusion(shared, nn.ReLU())
    assert isinstance(batch_norm_fusion(nn.BatchNorm2d(4), nn.ReLU()), BatchNormAct2d)
    assert isinstance(batch_norm_fusion(nn.BatchNorm1d(4), None), BatchNormAct1d)
    assert "track_running_stats=True" in running_instance_norm_fusion(nn.InstanceNorm2d(4), None)
    assert isinstance(running_instance_norm_fusion(nn.InstanceNorm2d(4, track_running_stats=True), nn.ReLU()),
                      RunningInstanceNormAct2d)


@pytest.mark.parametrize("name", ["patchgan_batch", "unet_batch"])
def test_fuse_on_batch_norm_reference_networks(name):
    """pix2pix's defaults (batch norm): every BatchNorm2d fused, keys kept, float64 exact against the plain
    network in training (running buffers included) and in eval."""
    from gancore.models.pix2pix import NLayerDiscriminator, UnetGenerator
    from gancore.nn import fuse

    torch.manual_seed(0)
    if name == "patchgan_batch":
        plain, shape = NLayerDiscriminator(3, ndf=8, norm="batch", fused=False), (2, 3, 32, 32)
    else:
        plain, shape = UnetGenerator(num_downs=5, ngf=8, norm="batch", fused=False), (2, 3, 32, 32)
    plain = plain.double()
    fused = fuse(copy.deepcopy(plain))
    assert not fused.gancore_fused.unfused
    assert not [m for m in fused.modules() if type(m) is nn.BatchNorm2d]
    assert fused.state_dict().keys() == plain.state_dict().keys()
    inputs = [torch.randn(shape, dtype=torch.float64) for _ in range(3)]
    with record_backends() as ran:
        got = _run_steps(fused, inputs, train_steps=2)
    assert {backend for _, backend in ran} == {"cpu"}
    for (o1, g1), (o2, g2) in zip(got, _run_steps(plain, inputs, train_steps=2)):
        torch.testing.assert_close(o1, o2, atol=1e-11, rtol=1e-10)
        torch.testing.assert_close(g1, g2, atol=1e-11, rtol=1e-10)
    _assert_same_state(fused, plain, tol=1e-11)
