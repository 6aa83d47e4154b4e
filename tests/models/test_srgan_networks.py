"""SRResNet and the SRGAN discriminator against the paper's layer lists, in gancore's documented key layout."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gancore.models import SRGANDiscriminator, SRResNet
from tests.models import reference_layers as ref


# --- Ledig et al., figure 4, as layer lists ----------------------------------------------------------------
def srresnet_parts(scale, c, n_blocks) -> dict[str, list]:
    block = [("conv", c, c, 3, 1, 1, True), ("bn", c), ("prelu", 1), ("conv", c, c, 3, 1, 1, True), ("bn", c)]
    parts = {"conv_in": [("conv", 3, c, 9, 1, 4, True), ("prelu", 1)],
             "res_blocks": [("res", "body", block)] * n_blocks,
             "conv_mid": [("conv", c, c, 3, 1, 1, True), ("bn", c)]}
    stages = scale.bit_length() - 1
    parts.update({f"upsample.{k}": [("conv", c, 4 * c, 3, 1, 1, True), ("shuffle", 2), ("prelu", 1)]
                  for k in range(stages)})
    return parts


def srresnet_keys(parts, c) -> dict[str, tuple[int, ...]]:
    out = {}
    for name, layers in parts.items():
        out.update(ref.keys(layers, f"{name}."))
    return out | {"conv_out.weight": (3, c, 9, 9), "conv_out.bias": (3,)}


def srresnet_forward(parts, sd, x, training):
    f = lambda name, h: ref.forward(parts[name], sd, h, f"{name}.", training=training)
    h = f("conv_in", x)
    res = f("res_blocks", h)
    h = h + f("conv_mid", res)
    k = 0
    while f"upsample.{k}" in parts:
        h = f(f"upsample.{k}", h)
        k += 1
    return F.conv2d(h, sd["conv_out.weight"], sd["conv_out.bias"], padding=4)


def discriminator_layers(image_size, head) -> dict[str, list]:
    features, c_in = [], 3
    for i, c_out in enumerate((64, 64, 128, 128, 256, 256, 512, 512)):
        features.append(("conv", c_in, c_out, 3, 1 + i % 2, 1, True))
        features += [("bn", c_out)] if i else []
        features.append(("lrelu", 0.2))
        c_in = c_out
    if head == "dense":
        classifier = [("flatten",), ("linear", 512 * (image_size // 16) ** 2, 1024), ("lrelu", 0.2),
                      ("linear", 1024, 1)]
    else:
        classifier = [("gap",), ("conv", 512, 1024, 1, 1, 0, True), ("lrelu", 0.2), ("conv", 1024, 1, 1, 1, 0, True)]
    return {"features": features, "classifier": classifier}


def parts_keys(parts) -> dict[str, tuple[int, ...]]:
    out = {}
    for name, layers in parts.items():
        out.update(ref.keys(layers, f"{name}."))
    return out


# --- counts and keys -------------------------------------------------------------------------------------
def test_srresnet_published_count_and_keys():
    expected = srresnet_keys(srresnet_parts(4, 64, 16), 64)
    assert ref.n_parameters(expected) == 1_549_462
    with torch.device("meta"):
        for fused in (False, True):
            net = SRResNet(fused=fused)
            assert sum(p.numel() for p in net.parameters()) == 1_549_462
            assert ref.state_shapes(net) == expected
            prelus = [m for m in net.modules() if isinstance(m, torch.nn.PReLU)]
            assert len(prelus) == 19 and all(m.num_parameters == 1 for m in prelus)  # one slope each


@pytest.mark.parametrize("scale", [2, 8])
def test_srresnet_scales(scale):
    net = SRResNet(scale, 8, 2)
    assert ref.state_shapes(net) == srresnet_keys(srresnet_parts(scale, 8, 2), 8)
    assert net(torch.randn(1, 3, 5, 6)).shape == (1, 3, 5 * scale, 6 * scale)


@pytest.mark.parametrize("head,size", [("dense", 96), ("pooled", 96), ("dense", 64)])
def test_discriminator_keys_and_counts(head, size):
    expected = parts_keys(discriminator_layers(size, head))
    with torch.device("meta"):
        d = SRGANDiscriminator(size, head=head)
    assert ref.state_shapes(d) == expected
    assert sum(p.numel() for p in d.parameters()) == ref.n_parameters(expected)
    if (head, size) == ("dense", 96):
        assert ref.n_parameters(expected) == 23_565_505  # 4,689,088 in the convs and norms + 18,876,417 dense


# --- checkpoints load strictly; outputs equal the layer lists' (float64) -------------------------------------
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_srresnet_checkpoint_loads_strictly_and_matches_layer_list(tmp_path, training):
    parts = srresnet_parts(4, 8, 3)
    torch.save(ref.random_checkpoint(srresnet_keys(parts, 8)), tmp_path / "srresnet.pth")
    sd = torch.load(tmp_path / "srresnet.pth", weights_only=True)
    x = torch.randn(2, 3, 6, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    expected = srresnet_forward(parts, ref.to_double(sd), x, training)
    for fused in (False, True):
        net = SRResNet(4, 8, 3, fused=fused)
        net.load_state_dict(sd, strict=True)
        out = net.double().train(training)(x)
        assert out.shape == (2, 3, 24, 28)
        torch.testing.assert_close(out, expected, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("head,shape", [("dense", (2, 3, 32, 32)), ("pooled", (2, 3, 40, 56))])
def test_discriminator_checkpoint_loads_strictly_and_matches_layer_list(tmp_path, head, shape):
    parts = discriminator_layers(32, head)
    torch.save(ref.random_checkpoint(parts_keys(parts)), tmp_path / "d.pth")
    sd = torch.load(tmp_path / "d.pth", weights_only=True)
    x = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    sd64 = ref.to_double(sd)
    expected = ref.forward(parts["classifier"], sd64, ref.forward(parts["features"], sd64, x, "features.",
                                                                  training=False), "classifier.").reshape(-1, 1)
    for fused in (False, True):
        d = SRGANDiscriminator(32, head=head, fused=fused)
        d.load_state_dict(sd, strict=True)
        out = d.double().eval()(x)
        assert out.shape == (2, 1)
        torch.testing.assert_close(out, expected, atol=1e-12, rtol=1e-12)


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="scale"):
        SRResNet(scale=3)
    with pytest.raises(ValueError, match="head"):
        SRGANDiscriminator(head="mlp")
    with pytest.raises(ValueError, match="multiple of 16"):
        SRGANDiscriminator(100)
    with pytest.raises(ValueError, match="head='pooled'"):
        SRGANDiscriminator(32, fused=False)(torch.randn(1, 3, 48, 48))
