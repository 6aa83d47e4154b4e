"""VGG19Features loads a torchvision-layout vgg19 file (random weights written here) and cuts at the named layers."""

from __future__ import annotations

import pytest
import torch

from gancore.models import VGG19Features
from tests.models import reference_layers as ref

BLOCK_CONVS = (2, 2, 4, 4, 4)  # VGG19: convs per block, widths 64, 128, 256, 512, 512
BLOCK_WIDTHS = (64, 128, 256, 512, 512)


def torchvision_features() -> tuple[list[ref.Layer], dict[str, int]]:
    """torchvision's vgg19().features as a layer list, and where each relu{b}_{k} sits in it."""
    layers, where, c_in = [], {}, 3
    for b, (n, width) in enumerate(zip(BLOCK_CONVS, BLOCK_WIDTHS), start=1):
        for k in range(1, n + 1):
            layers.append(("conv", c_in, width, 3, 1, 1, True))
            where[f"relu{b}_{k}"] = len(layers)
            layers.append(("relu",))
            c_in = width
        layers.append(("maxpool",))
    return layers, where


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    """A file shaped like torch.save(torchvision.models.vgg19().state_dict()), classifier shrunk to save space."""
    layers, _ = torchvision_features()
    sd = ref.random_checkpoint(ref.keys(layers, "features."))
    sd |= {"classifier.0.weight": torch.zeros(2, 2), "classifier.0.bias": torch.zeros(2)}
    path = tmp_path_factory.mktemp("vgg") / "vgg19.pth"
    torch.save(sd, path)
    return path, sd


def test_layout_cut_points_and_outputs(vgg_file):
    path, sd = vgg_file
    layers, where = torchvision_features()
    assert [where[n] for n in ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1", "relu5_4")] == \
        [1, 6, 11, 20, 29, 35]  # pix2pixHD's slices end at 2, 7, 12, 21, 30; SRGAN's VGG54 is relu5_4
    vgg = VGG19Features(path)
    assert ref.state_shapes(vgg) == ref.keys(layers, "features.")
    assert all(not p.requires_grad for p in vgg.parameters()) and not vgg.train().training
    x = torch.randn(1, 3, 32, 32, requires_grad=True)
    outs = vgg(x)
    sd64 = ref.to_double(sd)
    assert len(outs) == 5
    for out, name in zip(outs, ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")):
        expected = ref.forward(layers[: where[name] + 1], sd64, x.detach().double(), "features.")
        assert ref.rel_err(out, expected) < 1e-5
    sum(o.sum() for o in outs).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # a perceptual loss differentiates w.r.t. the image


def test_named_layers_any_order_and_conv_outputs_survive_their_relu(vgg_file):
    vgg = VGG19Features(vgg_file[0], layers=("relu5_4", "conv1_2", "relu1_2"))
    x = torch.randn(1, 3, 16, 16)
    deep, conv, relu = vgg(x)
    assert deep.shape == (1, 512, 1, 1) and conv.shape == relu.shape == (1, 64, 16, 16)
    assert (conv < 0).any() and torch.equal(relu, conv.clamp_min(0))


def test_missing_or_wrong_file_names_it(tmp_path, vgg_file):
    missing = tmp_path / "nowhere" / "vgg19.pth"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        VGG19Features(missing)
    wrong = tmp_path / "wrong.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, wrong)
    with pytest.raises(ValueError, match="wrong.pth"):
        VGG19Features(wrong)
    with pytest.raises(ValueError, match="unknown layers"):
        VGG19Features(vgg_file[0], layers=("relu6_1",))
