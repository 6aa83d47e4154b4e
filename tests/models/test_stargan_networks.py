"""StarGAN networks against yunjey/stargan's model.py layer lists: keys, shapes, counts, strict loading, outputs."""

from __future__ import annotations

import pytest
import torch

from gancore.models import StarGANDiscriminator, StarGANGenerator
from tests.models import reference_layers as ref


# --- model.py, as layer lists ------------------------------------------------------------------------------
def generator_layers(conv_dim, c_dim, repeat_num) -> list[ref.Layer]:
    layers = [("conv", 3 + c_dim, conv_dim, 7, 1, 3, False), ("in_rs", conv_dim), ("relu",)]
    dim = conv_dim
    for _ in range(2):
        layers += [("conv", dim, dim * 2, 4, 2, 1, False), ("in_rs", dim * 2), ("relu",)]
        dim *= 2
    block = [("conv", dim, dim, 3, 1, 1, False), ("in_rs", dim), ("relu",), ("conv", dim, dim, 3, 1, 1, False),
             ("in_rs", dim)]
    layers += [("res", "main", block)] * repeat_num
    for _ in range(2):
        layers += [("convT", dim, dim // 2, 4, 2, 1, 0, False), ("in_rs", dim // 2), ("relu",)]
        dim //= 2
    return layers + [("conv", dim, 3, 7, 1, 3, False), ("tanh",)]


def discriminator_parts(image_size, conv_dim, c_dim, repeat_num) -> dict[str, list]:
    main = [("conv", 3, conv_dim, 4, 2, 1, True), ("lrelu", 0.01)]
    dim = conv_dim
    for _ in range(1, repeat_num):
        main += [("conv", dim, dim * 2, 4, 2, 1, True), ("lrelu", 0.01)]
        dim *= 2
    k = image_size // 2 ** repeat_num
    return {"main": main, "conv1": ("conv", dim, 1, 3, 1, 1, False), "conv2": ("conv", dim, c_dim, k, 1, 0, False)}


def discriminator_keys(parts) -> dict[str, tuple[int, ...]]:
    out = ref.keys(parts["main"], "main.")
    for head in ("conv1", "conv2"):  # bare convs, no bias: keys conv1.weight, conv2.weight
        out.update({f"{head}.weight": shape for shape in ref.keys([parts[head]]).values()})
    return out


def reference_g(layers, sd, x, c, training):
    c = c.view(c.size(0), c.size(1), 1, 1).repeat(1, 1, x.size(2), x.size(3))
    return ref.forward(layers, sd, torch.cat([x, c], dim=1), "main.", training=training)


def reference_d(parts, sd, x):
    h = ref.forward(parts["main"], sd, x, "main.")
    src = torch.nn.functional.conv2d(h, sd["conv1.weight"], padding=1)
    cls = torch.nn.functional.conv2d(h, sd["conv2.weight"])
    return src, cls.view(cls.size(0), cls.size(1))


# --- published counts and keys ----------------------------------------------------------------------------
@pytest.mark.parametrize("c_dim,g_count,d_count", [(5, 8_430_528, 44_762_048), (8, 8_439_936, 44_786_624)])
def test_published_counts_and_keys(c_dim, g_count, d_count):
    g_keys = ref.keys(generator_layers(64, c_dim, 6), "main.")
    d_keys = discriminator_keys(discriminator_parts(128, 64, c_dim, 6))
    assert (ref.n_parameters(g_keys), ref.n_parameters(d_keys)) == (g_count, d_count)
    with torch.device("meta"):
        for fused in (False, True):
            g, d = StarGANGenerator(c_dim=c_dim, fused=fused), StarGANDiscriminator(c_dim=c_dim, fused=fused)
            assert sum(p.numel() for p in g.parameters()) == g_count
            assert sum(p.numel() for p in d.parameters()) == d_count
            assert ref.state_shapes(g) == g_keys and ref.state_shapes(d) == d_keys


def test_every_generator_norm_is_affine_with_running_stats():
    g = StarGANGenerator(8, 3, 2, fused=False)
    norms = [m for m in g.modules() if isinstance(m, torch.nn.InstanceNorm2d)]
    assert len(norms) == 3 + 2 * 2 + 2 and all(m.affine and m.track_running_stats for m in norms)


# --- reference checkpoints load strictly and give the reference outputs (small configs, float64) --------------
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_generator_checkpoint_loads_strictly_and_matches_reference(tmp_path, training):
    layers = generator_layers(8, 4, 2)
    path = tmp_path / "200000-G.ckpt"
    torch.save(ref.random_checkpoint(ref.keys(layers, "main.")), path)
    sd = torch.load(path, weights_only=True)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 16, 20, dtype=torch.float64, generator=g)
    c = (torch.rand(2, 4, generator=g) > 0.5).double()
    expected = reference_g(layers, ref.to_double(sd), x, c, training)
    outputs, states = [], []
    for fused in (False, True):
        net = StarGANGenerator(8, 4, 2, fused=fused)
        net.load_state_dict(sd, strict=True)
        net.double().train(training)
        outputs.append(net(x, c))
        states.append(net.state_dict())
    for out in outputs:
        torch.testing.assert_close(out, expected, atol=1e-12, rtol=1e-12)
    # running statistics: fused and plain update them alike (train) or leave them alone (eval)
    for key in states[0]:
        torch.testing.assert_close(states[1][key], states[0][key], atol=1e-12, rtol=1e-12)
    moved = not torch.equal(states[0]["main.1.running_mean"], sd["main.1.running_mean"].double())
    assert moved == training


def test_discriminator_checkpoint_loads_strictly_and_matches_reference(tmp_path):
    parts = discriminator_parts(32, 4, 3, 3)
    path = tmp_path / "200000-D.ckpt"
    torch.save(ref.random_checkpoint(discriminator_keys(parts)), path)
    sd = torch.load(path, weights_only=True)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    src_ref, cls_ref = reference_d(parts, ref.to_double(sd), x)
    for fused in (False, True):
        d = StarGANDiscriminator(32, 4, 3, 3, fused=fused)
        d.load_state_dict(sd, strict=True)
        src, cls = d.double()(x)
        assert src.shape == (2, 1, 4, 4) and cls.shape == (2, 3)
        torch.testing.assert_close(src, src_ref, atol=1e-12, rtol=1e-12)
        torch.testing.assert_close(cls, cls_ref, atol=1e-12, rtol=1e-12)


def test_generator_forward_shape_and_label_check():
    g = StarGANGenerator(8, 5, 1)
    out = g(torch.randn(3, 3, 12, 16), torch.zeros(3, 5))
    assert out.shape == (3, 3, 12, 16) and out.abs().max() <= 1
    with pytest.raises(ValueError, match="c must have shape"):
        g(torch.randn(3, 3, 12, 16), torch.zeros(3, 4))


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="image_size"):
        StarGANDiscriminator(image_size=100)
    with pytest.raises(ValueError, match="c_dim"):
        StarGANGenerator(c_dim=0)
