"""PatchGANHead and MultiScalePatchGANHead: drop-in for a PatchGAN discriminator's last conv."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gancore.nn import InstanceNormAct2d, MultiScalePatchGANHead, PatchGANHead, fuse
from gancore.ops import record_backends


def _nlayer_discriminator() -> nn.Sequential:
    """pix2pix's NLayerDiscriminator (n_layers=2, ndf=8), written the way its code writes it."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 4, 2, 1), nn.LeakyReLU(0.2, True),
        nn.Conv2d(8, 16, 4, 2, 1), nn.InstanceNorm2d(16), nn.LeakyReLU(0.2, True),
        nn.Conv2d(16, 32, 4, 1, 1), nn.InstanceNorm2d(32), nn.LeakyReLU(0.2, True),
        nn.Conv2d(32, 1, 4, 1, 1),
    )


def test_head_loads_the_conv_state_dict_and_matches_it():
    conv = nn.Conv2d(16, 1, 4, 1, 1)
    head = PatchGANHead(16, loss="bce")
    head.load_state_dict(conv.state_dict())
    h = torch.randn(2, 16, 12, 12)
    torch.testing.assert_close(head(h), conv(h))
    assert set(head.state_dict()) == {"weight", "bias"}
    expected = F.binary_cross_entropy_with_logits(conv(h), torch.full((2, 1, 11, 11), 0.9))
    torch.testing.assert_close(head.loss(h, 0.9), expected)


def test_fresh_head_is_initialised_like_a_conv():
    torch.manual_seed(3)
    head = PatchGANHead(32)
    torch.manual_seed(3)
    conv = nn.Conv2d(32, 1, 4, 1, 1)
    torch.testing.assert_close(head.weight, conv.weight)
    torch.testing.assert_close(head.bias, conv.bias)


def test_swapping_the_last_conv_keeps_outputs_state_dict_and_gradients():
    original = _nlayer_discriminator()
    model = fuse(copy.deepcopy(original))
    model[-1] = PatchGANHead.from_conv(model[-1], loss="lsgan")
    assert original.state_dict().keys() == model.state_dict().keys()
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(model(x), original(x), atol=1e-5, rtol=1e-5)

    with record_backends() as ran:
        loss = model[-1].loss(model[:-1](x), 1.0)
        loss.backward()
    assert ("patchgan_loss", "cpu") in ran and ("instance_norm_act", "cpu") in ran
    expected = F.mse_loss(original(x), torch.ones(2, 1, 6, 6))
    expected.backward()
    torch.testing.assert_close(loss, expected, atol=1e-5, rtol=1e-5)
    for (name, p), q in zip(model.named_parameters(), original.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-5, rtol=1e-4, msg=name)


def test_from_conv_shares_parameters():
    conv = nn.Conv2d(8, 1, 4, 2, 1, bias=False)
    head = PatchGANHead.from_conv(conv, loss="hinge")
    assert head.weight is conv.weight and head.bias is None
    assert (head.stride, head.padding, head.loss_type) == (2, 1, "hinge")
    assert "loss=hinge" in repr(head)


@pytest.mark.parametrize("conv,match", [
    (nn.Conv2d(8, 2, 4), "one output channel, got Conv2d with 2 output channels"),
    (nn.Conv2d(8, 1, (4, 3)), "square kernel"),
    (nn.Conv2d(8, 1, 4, dilation=2), "no dilation"),
    (nn.Conv2d(8, 1, 4, padding=1, padding_mode="reflect"), "zero padding"),
    (nn.Linear(8, 1), "got Linear"),
])
def test_from_conv_rejects_what_it_cannot_fuse(conv, match):
    with pytest.raises(ValueError, match=match):
        PatchGANHead.from_conv(conv)


def test_unknown_loss_is_rejected():
    with pytest.raises(ValueError, match="loss must be one of"):
        PatchGANHead(8, loss="mse")


def test_patch_logits_feed_a_gradient_penalty_on_raw_logits():
    """forward() returns the logits, so R1 on a PatchGAN's raw outputs works through the head."""
    from gancore.ops import gradient_penalty

    body = nn.Sequential(nn.Conv2d(3, 8, 4, 2, 1), InstanceNormAct2d(8, affine=True))
    head = PatchGANHead(8)
    critic = nn.Sequential(body, head)
    penalty = gradient_penalty(critic, torch.randn(2, 3, 16, 16), kind="r1", weight=1.0)
    penalty.backward()
    assert head.weight.grad is not None and torch.isfinite(head.weight.grad).all()


def test_multi_scale_head_scores_all_scales_in_one_call():
    heads = MultiScalePatchGANHead([16, 16, 16], loss="lsgan")
    features = [torch.randn(2, 16, s, s) for s in (31, 15, 7)]
    with record_backends() as ran:
        total = heads.loss(features, 0.0)
    assert ran == [("patchgan_loss", "cpu")] * 3
    expected = sum(F.mse_loss(head(h), torch.zeros_like(head(h))) for head, h in zip(heads, features))
    torch.testing.assert_close(total, expected)
    logits = heads(features)
    assert [tuple(z.shape) for z in logits] == [(2, 1, 30, 30), (2, 1, 14, 14), (2, 1, 6, 6)]
    maps = heads.loss(features, [1.0, 0.0, 1.0], reduction="none")
    assert len(maps) == 3 and maps[1].shape == (2, 1, 14, 14)
    with pytest.raises(ValueError, match="sequence of 3 feature maps, got 2"):
        heads.loss(features[:2], 1.0)
    with pytest.raises(ValueError, match="one target per scale"):
        heads.loss(features, [1.0, 0.0])
