"""pix2pixHD networks against NVIDIA/pix2pixHD's layer lists: keys, shapes, counts, strict loading, outputs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gancore.models import Encoder, GlobalGenerator, LocalEnhancer, MultiscaleDiscriminator
from gancore.models.pix2pixhd import NLayerDiscriminator, instance_average
from gancore.nn import InstanceNormAct2d
from gancore.ops import record_backends
from tests.models import reference_layers as ref


# --- networks.py, as layer lists --------------------------------------------------------------------------
def resnet_block(dim: int) -> ref.Layer:
    return ("res", "conv_block", [("pad", 1), ("conv", dim, dim, 3, 1, 0, True), ("in", dim), ("relu",),
                                  ("pad", 1), ("conv", dim, dim, 3, 1, 0, True), ("in", dim)])


def global_layers(input_nc, output_nc, ngf, n_down, n_blocks, *, blocks=True) -> list[ref.Layer]:
    layers = [("pad", 3), ("conv", input_nc, ngf, 7, 1, 0, True), ("in", ngf), ("relu",)]
    for i in range(n_down):
        m = 2 ** i
        layers += [("conv", ngf * m, ngf * m * 2, 3, 2, 1, True), ("in", ngf * m * 2), ("relu",)]
    if blocks:
        layers += [resnet_block(ngf * 2 ** n_down)] * n_blocks
    for i in range(n_down):
        m = 2 ** (n_down - i)
        layers += [("convT", ngf * m, ngf * m // 2, 3, 2, 1, 1, True), ("in", ngf * m // 2), ("relu",)]
    return layers + [("pad", 3), ("conv", ngf, output_nc, 7, 1, 0, True), ("tanh",)]


def local_layers(input_nc, output_nc, ngf, n_down_g, n_blocks_g, n_local, n_blocks_local) -> dict[str, list]:
    parts = {"model": global_layers(input_nc, output_nc, ngf * 2 ** n_local, n_down_g, n_blocks_g)[:-3]}
    for n in range(1, n_local + 1):
        c = ngf * 2 ** (n_local - n)
        parts[f"model{n}_1"] = [("pad", 3), ("conv", input_nc, c, 7, 1, 0, True), ("in", c), ("relu",),
                                ("conv", c, 2 * c, 3, 2, 1, True), ("in", 2 * c), ("relu",)]
        back = [resnet_block(2 * c)] * n_blocks_local
        back += [("convT", 2 * c, c, 3, 2, 1, 1, True), ("in", c), ("relu",)]
        if n == n_local:
            back += [("pad", 3), ("conv", ngf, output_nc, 7, 1, 0, True), ("tanh",)]
        parts[f"model{n}_2"] = back
    return parts


def nlayer_stages(input_nc, ndf, n_layers) -> list[list[ref.Layer]]:
    padw = 2  # ceil((4 - 1) / 2)
    stages = [[("conv", input_nc, ndf, 4, 2, padw, True), ("lrelu", 0.2)]]
    nf = ndf
    for _ in range(1, n_layers):
        nf_prev, nf = nf, min(nf * 2, 512)
        stages.append([("conv", nf_prev, nf, 4, 2, padw, True), ("in", nf), ("lrelu", 0.2)])
    nf_prev, nf = nf, min(nf * 2, 512)
    stages.append([("conv", nf_prev, nf, 4, 1, padw, True), ("in", nf), ("lrelu", 0.2)])
    return stages + [[("conv", nf, 1, 4, 1, padw, True)]]


def multiscale_parts(input_nc, ndf, n_layers, num_d) -> dict[str, list]:
    return {f"scale{i}_layer{j}": stage for i in range(num_d)
            for j, stage in enumerate(nlayer_stages(input_nc, ndf, n_layers))}


def encoder_layers(input_nc, output_nc, ngf, n_down) -> list[ref.Layer]:
    return global_layers(input_nc, output_nc, ngf, n_down, 0, blocks=False)


def parts_keys(parts: dict[str, list]) -> dict[str, tuple[int, ...]]:
    out = {}
    for name, layers in parts.items():
        out.update(ref.keys(layers, f"{name}."))
    return out


# --- the reference forward passes over a checkpoint ----------------------------------------------------------
def _avgpool(x):
    return F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)


def local_forward(parts, n_local, sd, x):
    pyramid = [x]
    for _ in range(n_local):
        pyramid.append(_avgpool(pyramid[-1]))
    out = ref.forward(parts["model"], sd, pyramid[-1], "model.")
    for n in range(1, n_local + 1):
        front = ref.forward(parts[f"model{n}_1"], sd, pyramid[n_local - n], f"model{n}_1.")
        out = ref.forward(parts[f"model{n}_2"], sd, front + out, f"model{n}_2.")
    return out


def multiscale_forward(n_layers, num_d, stages, sd, x):
    results = []
    for i in range(num_d):
        feats, h = [], x
        for j in range(n_layers + 2):
            h = ref.forward(stages[j], sd, h, f"scale{num_d - 1 - i}_layer{j}.")
            feats.append(h)
        results.append(feats)
        x = _avgpool(x)
    return results


# --- parameter counts and keys at the published sizes (meta device: nothing allocated) ------------------------
PUBLISHED = [
    ("global G", lambda f: GlobalGenerator(36, 3, 64, 4, 9, fused=f),
     lambda: {"model": global_layers(36, 3, 64, 4, 9)}, 182_546_755),
    ("local G", lambda f: LocalEnhancer(36, 3, fused=f), lambda: local_layers(36, 3, 32, 4, 9, 1, 3), 182_857_059),
    ("D 2 scales", lambda f: MultiscaleDiscriminator(39, num_D=2, fused=f), lambda: multiscale_parts(39, 64, 3, 2),
     5_603_202),
    ("D 3 scales", lambda f: MultiscaleDiscriminator(39, fused=f), lambda: multiscale_parts(39, 64, 3, 3), 8_404_803),
    ("encoder", lambda f: Encoder(fused=f), lambda: {"model": encoder_layers(3, 3, 16, 4)}, 788_803),
]


@pytest.mark.parametrize("name,build,parts,count", PUBLISHED, ids=[p[0] for p in PUBLISHED])
def test_published_counts_and_keys(name, build, parts, count):
    expected = parts_keys(parts())
    assert ref.n_parameters(expected) == count  # the layer list itself gives the published number
    with torch.device("meta"):
        for fused in (False, True):
            net = build(fused)
            assert sum(p.numel() for p in net.parameters()) == count, (name, fused)
            assert ref.state_shapes(net) == expected, (name, fused)


def test_fused_networks_fuse_every_norm_and_block():
    with torch.device("meta"):
        g = GlobalGenerator(8, 3, 8, 2, 2)
        d = MultiscaleDiscriminator(6, 8, num_D=2)
    kinds = [type(m).__name__ for m in g.model]
    assert "InstanceNorm2d" not in kinds and kinds[2:4] == ["InstanceNormAct2d", "Identity"]
    block = g.model[10].conv_block
    assert block[2].activation == "relu" and block[6].activation == "identity" and type(block[3]).__name__ == "Identity"
    residual = sorted(c.path for c in g.gancore_fused.residual)  # each block's add runs inside its last norm
    assert residual == [f"model.{i}.conv_block.6" for i in (10, 11)] and not g.gancore_fused.unfused
    assert isinstance(d.scale0_layer1[1], InstanceNormAct2d) and d.scale0_layer1[1].activation == "leaky_relu"
    assert d.scale0_layer1[1].negative_slope == 0.2


# --- reference checkpoints load strictly and give the reference outputs (small configs, float64) --------------
SMALL = [
    ("global", lambda f: GlobalGenerator(5, 3, 4, 2, 2, fused=f), lambda: {"model": global_layers(5, 3, 4, 2, 2)},
     (2, 5, 20, 24)),
    ("local", lambda f: LocalEnhancer(5, 3, 4, 2, 1, 1, 2, fused=f), lambda: local_layers(5, 3, 4, 2, 1, 1, 2),
     (1, 5, 24, 32)),
    ("local x2", lambda f: LocalEnhancer(4, 3, 2, 1, 1, 2, 1, fused=f), lambda: local_layers(4, 3, 2, 1, 1, 2, 1),
     (1, 4, 32, 32)),
    ("multiscale D", lambda f: MultiscaleDiscriminator(6, 4, 3, 3, fused=f), lambda: multiscale_parts(6, 4, 3, 3),
     (2, 6, 32, 40)),
    ("encoder", lambda f: Encoder(3, 3, 4, 2, fused=f), lambda: {"model": encoder_layers(3, 3, 4, 2)}, (2, 3, 16, 20)),
]


def _instance_map(shape) -> torch.Tensor:
    inst = torch.zeros(shape[0], 1, *shape[2:])
    inst[:, :, 5:, 3:11] = 1001
    inst[1, :, :, 15:] = 7
    return inst


def _reference_output(name, parts, sd, x):
    if name == "global":
        return ref.forward(parts["model"], sd, x, "model.")
    if name.startswith("local"):
        return local_forward(parts, 1 if name == "local" else 2, sd, x)
    if name == "encoder":
        return _loop_instance_average(ref.forward(parts["model"], sd, x, "model."), _instance_map(x.shape))
    return multiscale_forward(3, 3, [parts[f"scale0_layer{j}"] for j in range(5)], sd, x)


def _flat(out) -> list[torch.Tensor]:
    return [t for scale in out for t in scale] if isinstance(out, list) else [out]


@pytest.mark.parametrize("name,build,parts,shape", SMALL, ids=[s[0] for s in SMALL])
def test_reference_checkpoint_loads_strictly_and_matches_reference_forward(tmp_path, name, build, parts, shape):
    layers = parts()
    path = tmp_path / "latest_net.pth"
    torch.save(ref.random_checkpoint(parts_keys(layers)), path)
    sd = torch.load(path, weights_only=True)
    plain, fused = build(False), build(True)
    plain.load_state_dict(sd, strict=True)
    fused.load_state_dict(sd, strict=True)
    x = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    expected = _flat(_reference_output(name, layers, ref.to_double(sd), x))
    args = (x, _instance_map(shape)) if name == "encoder" else (x,)
    with record_backends() as used:
        got_fused = _flat(fused.double()(*args))
    assert any(op == "instance_norm_act" for op, _ in used)
    got_plain = _flat(plain.double()(*args))
    assert [t.shape for t in got_plain] == [t.shape for t in expected]
    for p, f, e in zip(got_plain, got_fused, expected):
        torch.testing.assert_close(p, e, atol=1e-12, rtol=1e-12)
        torch.testing.assert_close(f, e, atol=1e-12, rtol=1e-12)


def test_global_generator_checkpoint_loads_into_local_enhancer_global_part():
    """pix2pixHD's load_pretrain: a global run (ngf 2k) gives the local enhancer's (ngf k) `model.*`."""
    with torch.device("meta"):
        g, local = GlobalGenerator(5, 3, 8, 2, 2), LocalEnhancer(5, 3, 4, 2, 2)
    global_part = {k: v for k, v in ref.state_shapes(local).items() if k.startswith("model.")}
    last = f"model.{len(g.model) - 2}."  # the final c7s1 conv, which the enhancer drops
    assert global_part == {k: v for k, v in ref.state_shapes(g).items() if not k.startswith(last)}


def test_float32_fused_no_further_from_float64_than_eager():
    torch.manual_seed(0)
    plain = GlobalGenerator(5, 3, 8, 2, 2, fused=False)
    fused = GlobalGenerator(5, 3, 8, 2, 2)
    fused.load_state_dict(plain.state_dict(), strict=True)
    x = torch.randn(2, 5, 32, 32)
    with torch.no_grad():
        oracle = GlobalGenerator(5, 3, 8, 2, 2, fused=False).double()
        oracle.load_state_dict(plain.state_dict())
        y64 = oracle(x.double())
        eager, ours = ref.rel_err(plain(x), y64), ref.rel_err(fused(x), y64)
    assert ours <= 1.5 * eager + 1e-7, (ours, eager)


def test_discriminator_shapes_and_feature_lists():
    d = MultiscaleDiscriminator(6, 4, n_layers=2, num_D=2)
    out = d(torch.randn(2, 6, 32, 32))
    assert [len(s) for s in out] == [4, 4]  # n_layers + 2 stage outputs per scale
    assert [tuple(t.shape) for t in out[0]] == [(2, 4, 17, 17), (2, 8, 9, 9), (2, 16, 10, 10), (2, 1, 11, 11)]
    assert tuple(out[1][-1].shape) == (2, 1, 7, 7)  # 16x16 input at the second scale
    flat = MultiscaleDiscriminator(6, 4, n_layers=2, num_D=2, get_interm_feat=False, fused=False)
    flat_keys = {k.split(".", 1)[0] for k in flat.state_dict()}
    assert flat_keys == {"layer0", "layer1"} and [len(s) for s in flat(torch.randn(1, 6, 32, 32))] == [1, 1]


def test_nlayer_discriminator_layouts():
    stages = nlayer_stages(5, 4, 3)
    interm = NLayerDiscriminator(5, 4, 3, fused=False)
    assert ref.state_shapes(interm) == parts_keys({f"model{j}": s for j, s in enumerate(stages)})
    single = NLayerDiscriminator(5, 4, 3, get_interm_feat=False)
    assert ref.state_shapes(single) == ref.keys([layer for s in stages for layer in s], "model.")
    offsets = [sum(len(s) for s in stages[:j]) for j in range(len(stages))]  # stage j's first index in `model`
    renamed = {}
    for key, value in interm.state_dict().items():
        stage, index, name = key.split(".")
        renamed[f"model.{offsets[int(stage[len('model'):])] + int(index)}.{name}"] = value
    single.load_state_dict(renamed, strict=True)
    x = torch.randn(1, 5, 24, 24)
    feats = interm(x)
    assert len(feats) == 5 and tuple(feats[-1].shape) == (1, 1, 6, 6)
    torch.testing.assert_close(single(x), feats[-1], atol=1e-5, rtol=1e-5)


# --- encoder ----------------------------------------------------------------------------------------------
def _loop_instance_average(features, inst):
    """The reference's loop over instances, images and channels."""
    out = features.clone()
    for i in torch.unique(inst.long()).tolist():
        for b in range(features.shape[0]):
            mask = inst[b, 0].long() == i
            if mask.any():
                for j in range(features.shape[1]):
                    out[b, j][mask] = features[b, j][mask].mean()
    return out


def test_encoder_instance_average_matches_reference_loop_and_is_differentiable():
    g = torch.Generator().manual_seed(0)
    features = torch.randn(2, 3, 8, 10, dtype=torch.float64, generator=g)
    inst = torch.randint(0, 4, (2, 1, 8, 10), generator=g).double() * 1000 + 26  # ids like Cityscapes' 26001
    inst[1, 0, :2] = 5.0  # an id that only the second image has
    torch.testing.assert_close(instance_average(features, inst), _loop_instance_average(features, inst),
                               atol=1e-12, rtol=1e-12)
    small = inst[:, :, :3, :4]
    torch.autograd.gradcheck(lambda f: instance_average(f, small), (features[:, :, :3, :4].clone().requires_grad_(),))


def test_encoder_forward_pools_per_instance_and_checks_inst():
    enc = Encoder(3, 3, 4, 2)
    x = torch.randn(1, 3, 16, 16)
    inst = torch.zeros(1, 1, 16, 16)
    inst[..., 8:] = 1
    out = enc(x, inst)
    assert out.shape == (1, 3, 16, 16)
    for region in (out[..., :8], out[..., 8:]):
        assert torch.allclose(region, region[..., :1, :1].expand_as(region))
    with pytest.raises(ValueError, match="inst must have shape"):
        enc(x, torch.zeros(1, 1, 8, 8))


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="norm"):
        GlobalGenerator(3, 3, norm="group")
    with pytest.raises(ValueError, match="n_downsampling"):
        GlobalGenerator(3, 3, n_downsampling=0)
    with pytest.raises(ValueError, match="num_D"):
        MultiscaleDiscriminator(3, num_D=0)
