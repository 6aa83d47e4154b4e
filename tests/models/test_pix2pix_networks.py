"""The pix2pix / CycleGAN networks are the reference ones: published parameter counts, the reference
state_dict keys and shapes (derived here from the published layer lists), strict loading of a
reference-layout checkpoint into the fused and the plain network, and identical outputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gancore.models.pix2pix import (
    NLayerDiscriminator,
    PixelDiscriminator,
    ResnetGenerator,
    UnetGenerator,
    init_weights_,
)
from gancore.nn import InstanceNormAct2d

Shapes = dict[str, tuple[int, ...]]


def _conv(keys: Shapes, name: str, c_out: int, c_in: int, k: int, bias: bool) -> None:
    keys[f"{name}.weight"] = (c_out, c_in, k, k)
    if bias:
        keys[f"{name}.bias"] = (c_out,)


def _norm(keys: Shapes, name: str, c: int, norm: str) -> None:
    if norm == "batch":  # instance norm (affine=False, no running stats) and "none" hold nothing
        keys.update({f"{name}.weight": (c,), f"{name}.bias": (c,), f"{name}.running_mean": (c,),
                     f"{name}.running_var": (c,), f"{name}.num_batches_tracked": ()})


def resnet_keys(n_blocks: int, ngf: int = 64, input_nc: int = 3, output_nc: int = 3, norm: str = "instance",
                use_dropout: bool = False) -> Shapes:
    """Reference layer list: pad, c7s1-ngf, d2ngf, d4ngf, n_blocks x R4ngf, u2ngf, ungf, pad, c7s1-output_nc, tanh;
    each of them conv + norm + ReLU, so layer i of the list sits at index 1 + 3 i; the blocks follow at 10."""
    bias = norm == "instance"
    keys: Shapes = {}
    _conv(keys, "model.1", ngf, input_nc, 7, bias)
    _norm(keys, "model.2", ngf, norm)
    _conv(keys, "model.4", 2 * ngf, ngf, 3, bias)
    _norm(keys, "model.5", 2 * ngf, norm)
    _conv(keys, "model.7", 4 * ngf, 2 * ngf, 3, bias)
    _norm(keys, "model.8", 4 * ngf, norm)
    second = 6 if use_dropout else 5  # pad, conv, norm, relu, [dropout], pad, conv, norm
    for b in range(10, 10 + n_blocks):
        for conv in (1, second):
            _conv(keys, f"model.{b}.conv_block.{conv}", 4 * ngf, 4 * ngf, 3, bias)
            _norm(keys, f"model.{b}.conv_block.{conv + 1}", 4 * ngf, norm)
    up = 10 + n_blocks
    keys[f"model.{up}.weight"] = (4 * ngf, 2 * ngf, 3, 3)  # ConvTranspose2d weights are (in, out, k, k)
    if bias:
        keys[f"model.{up}.bias"] = (2 * ngf,)
    _norm(keys, f"model.{up + 1}", 2 * ngf, norm)
    keys[f"model.{up + 3}.weight"] = (2 * ngf, ngf, 3, 3)
    if bias:
        keys[f"model.{up + 3}.bias"] = (ngf,)
    _norm(keys, f"model.{up + 4}", ngf, norm)
    _conv(keys, f"model.{up + 7}", output_nc, ngf, 7, True)
    return keys


def unet_keys(num_downs: int, ngf: int = 64, input_nc: int = 3, output_nc: int = 3, norm: str = "batch") -> Shapes:
    """Reference layout: nested skip blocks, each `model` a Sequential of
    outermost [downconv, sub, relu, upconv, tanh], middle [lrelu, downconv, norm, sub, relu, upconv, norm],
    innermost [lrelu, downconv, relu, upconv, norm]; widths ngf, 2, 4, 8, 8, ... ngf from the outside in."""
    bias = norm == "instance"
    widths = [ngf, 2 * ngf, 4 * ngf] + [8 * ngf] * (num_downs - 3)  # inner_nc of each level
    keys: Shapes = {}
    _conv(keys, "model.model.0", ngf, input_nc, 4, bias)
    keys["model.model.3.weight"] = (2 * ngf, output_nc, 4, 4)
    keys["model.model.3.bias"] = (output_nc,)
    prefix = "model.model.1.model"
    for level in range(1, num_downs):
        outer, inner = widths[level - 1], widths[level]
        _conv(keys, f"{prefix}.1", inner, outer, 4, bias)
        if level < num_downs - 1:
            _norm(keys, f"{prefix}.2", inner, norm)
            up, up_in = 5, 2 * inner
        else:
            up, up_in = 3, inner
        keys[f"{prefix}.{up}.weight"] = (up_in, outer, 4, 4)
        if bias:
            keys[f"{prefix}.{up}.bias"] = (outer,)
        _norm(keys, f"{prefix}.{up + 1}", outer, norm)
        prefix += ".3.model"
    return keys


def nlayer_keys(input_nc: int = 3, ndf: int = 64, n_layers: int = 3, norm: str = "instance") -> Shapes:
    """C64 (no norm) - C128 - C256 - C512 (stride 1) - conv to 1 channel, each conv + norm + LeakyReLU."""
    bias = norm == "instance"
    keys: Shapes = {}
    _conv(keys, "model.0", ndf, input_nc, 4, True)
    widths = [ndf * min(2 ** n, 8) for n in range(n_layers + 1)]
    for n in range(1, n_layers + 1):
        _conv(keys, f"model.{3 * n - 1}", widths[n], widths[n - 1], 4, bias)
        _norm(keys, f"model.{3 * n}", widths[n], norm)
    _conv(keys, f"model.{3 * n_layers + 2}", 1, widths[-1], 4, True)
    return keys


def _shapes(net: nn.Module) -> Shapes:
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def _count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("make,expected_keys,count", [
    (lambda f: ResnetGenerator(n_blocks=9, fused=f), resnet_keys(9), 11_378_179),
    (lambda f: ResnetGenerator(n_blocks=6, fused=f), resnet_keys(6), 7_837_699),
    (lambda f: UnetGenerator(num_downs=8, norm="batch", fused=f), unet_keys(8), 54_413_955),
    (lambda f: NLayerDiscriminator(3, norm="instance", fused=f), nlayer_keys(3), 2_764_737),
    (lambda f: NLayerDiscriminator(6, norm="batch", fused=f), nlayer_keys(6, norm="batch"), 2_768_705),
], ids=["resnet_9blocks", "resnet_6blocks", "unet_256", "basic_D", "pix2pix_D"])
def test_published_counts_and_keys(make, expected_keys, count, fused):
    with torch.device("meta"):  # full-size networks without allocating their weights
        net = make(fused)
    assert _count(net) == count
    assert _shapes(net) == expected_keys


@pytest.mark.parametrize("kwargs", [dict(norm="batch"), dict(norm="none"), dict(use_dropout=True),
                                    dict(ngf=16, input_nc=1, output_nc=2)])
def test_resnet_variant_keys(kwargs):
    assert _shapes(ResnetGenerator(n_blocks=2, fused=False, **{"ngf": 4, **kwargs})) == \
        resnet_keys(2, **{"ngf": 4, **kwargs})


@pytest.mark.parametrize("norm", ["instance", "none"])
def test_unet_variant_keys(norm):
    assert _shapes(UnetGenerator(num_downs=7, ngf=4, norm=norm, fused=False)) == unet_keys(7, ngf=4, norm=norm)


def test_pixel_discriminator_layout():
    net = PixelDiscriminator(6, ndf=8, norm="batch", fused=False)
    assert [k for k in net.state_dict() if not k.startswith("net.3.")] == ["net.0.weight", "net.0.bias",
                                                                           "net.2.weight", "net.5.weight"]
    fused = PixelDiscriminator(3, ndf=8, norm="instance")
    assert type(fused.net[3]) is InstanceNormAct2d and type(fused.net[4]) is nn.Identity
    assert fused(torch.randn(2, 3, 5, 7)).shape == (2, 1, 5, 7)


def _reference_checkpoint(keys: Shapes, seed: int) -> dict[str, torch.Tensor]:
    """Random weights under the reference key names, as a junyanz checkpoint would hold them (float32)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for k, shape in keys.items():
        if k.endswith("num_batches_tracked"):
            state[k] = torch.tensor(7)
        elif k.endswith("running_var"):
            state[k] = torch.rand(shape, generator=g) + 0.5
        elif k.endswith("weight") and len(shape) == 1:
            state[k] = 1 + 0.1 * torch.randn(shape, generator=g)
        else:
            state[k] = 0.1 * torch.randn(shape, generator=g)
    return state


@pytest.mark.parametrize("name,make,keys,shape,instance", [
    ("latest_net_G_A.pth", lambda f: ResnetGenerator(ngf=8, n_blocks=9, fused=f), resnet_keys(9, ngf=8),
     (1, 3, 32, 32), True),
    ("latest_net_G.pth", lambda f: UnetGenerator(num_downs=8, ngf=4, fused=f), unet_keys(8, ngf=4),
     (2, 3, 256, 256), False),
    ("latest_net_G.pth", lambda f: UnetGenerator(num_downs=7, ngf=4, norm="instance", fused=f),
     unet_keys(7, ngf=4, norm="instance"), (1, 3, 128, 128), True),
    ("latest_net_D.pth", lambda f: NLayerDiscriminator(3, ndf=8, fused=f), nlayer_keys(3, ndf=8), (2, 3, 40, 40),
     True),
    ("latest_net_D.pth", lambda f: NLayerDiscriminator(6, ndf=8, norm="batch", fused=f),
     nlayer_keys(6, ndf=8, norm="batch"), (2, 6, 40, 40), False),
], ids=["resnet_9blocks", "unet_256_batch", "unet_128_instance", "basic_D", "pix2pix_D"])
def test_reference_checkpoint_loads_strictly_and_matches(tmp_path, name, make, keys, shape, instance):
    path = tmp_path / name
    torch.save(_reference_checkpoint(keys, seed=1), path)
    state = torch.load(path, weights_only=True)
    plain, fused = make(False), make(True)
    # the fused net really runs fused ops wherever it has instance norms
    assert any(isinstance(m, InstanceNormAct2d) for m in fused.modules()) == instance
    assert not any(type(m) is nn.InstanceNorm2d for m in fused.modules())
    for net in (plain, fused):
        net.load_state_dict(state, strict=True)
        net.double()
    x = torch.randn(shape, dtype=torch.float64)
    for train in (True, False):
        plain.train(train)
        fused.train(train)
        want, got = plain(x.clone()), fused(x.clone())
        torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-10)
    # strict loading into the fused net also catches a wrong shape
    bad = dict(state)
    first = next(iter(bad))
    bad[first] = bad[first][:1]
    with pytest.raises(RuntimeError, match="size mismatch"):
        fused.load_state_dict(bad, strict=True)


def test_init_weights():
    torch.manual_seed(0)
    net = UnetGenerator(num_downs=5, ngf=16, fused=False)
    convs = torch.cat([m.weight.flatten() for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))])
    scales = torch.cat([m.weight for m in net.modules() if isinstance(m, nn.BatchNorm2d)])
    assert abs(convs.mean()) < 1e-3 and abs(convs.std() - 0.02) < 1e-3
    assert abs(scales.mean() - 1) < 5e-3 and abs(scales.std() - 0.02) < 5e-3
    assert all(not m.bias.any() for m in net.modules() if getattr(m, "bias", None) is not None)
    lin = init_weights_(nn.Linear(200, 300), gain=0.5)
    assert abs(lin.weight.std() - 0.5) < 0.02


def test_unet_dropout_and_dropout_at_test():
    x = torch.randn(1, 3, 64, 64)
    torch.manual_seed(0)
    net = UnetGenerator(num_downs=6, ngf=4, norm="instance", use_dropout=True).eval()
    assert sum(isinstance(m, nn.Dropout) for m in net.modules()) == 1  # num_downs - 5 middle blocks
    torch.testing.assert_close(net(x), net(x))  # deterministic in eval
    torch.manual_seed(0)
    noisy = UnetGenerator(num_downs=6, ngf=4, norm="instance", use_dropout=True, dropout_at_test=True).eval()
    assert noisy.state_dict().keys() == net.state_dict().keys()
    assert not torch.allclose(noisy(x), noisy(x))


def test_resnet_dropout_and_padding_types():
    net = ResnetGenerator(ngf=4, n_blocks=1, use_dropout=True, padding_type="zero", fused=False)
    block = net.model[10].conv_block
    assert [type(m) for m in block] == [nn.Conv2d, nn.InstanceNorm2d, nn.ReLU, nn.Dropout, nn.Conv2d, nn.InstanceNorm2d]
    assert block[0].padding == (1, 1)
    rep = ResnetGenerator(ngf=4, n_blocks=1, padding_type="replicate", fused=False).model[10].conv_block
    assert type(rep[0]) is nn.ReplicationPad2d and type(rep[4]) is nn.ReplicationPad2d


@pytest.mark.parametrize("make,match", [
    (lambda: ResnetGenerator(norm="group"), "norm must be one of"),
    (lambda: ResnetGenerator(padding_type="circular"), "padding_type must be one of"),
    (lambda: ResnetGenerator(n_blocks=-1), "n_blocks"),
    (lambda: UnetGenerator(num_downs=4), "num_downs"),
    (lambda: NLayerDiscriminator(n_layers=0), "n_layers"),
    (lambda: PixelDiscriminator(norm="layer"), "norm must be one of"),
])
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()
