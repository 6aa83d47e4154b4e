"""fuse() mechanics: the residual rewrite on the ways GAN code writes its blocks, the fallbacks, the report,
dry runs, the factory table, and that rewritten models copy and pickle."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn

from gancore.models.pix2pix import ResnetBlock, ResnetGenerator
from gancore.nn import FUSERS, FuseReport, InstanceNormAct2d, fuse, register_fuser


def _conv_in(c: int, affine: bool = True) -> list[nn.Module]:
    return [nn.Conv2d(c, c, 3, padding=1, bias=False), nn.InstanceNorm2d(c, affine=affine)]


class StarGANBlock(nn.Module):
    """StarGAN / pix2pixHD style: the residual added to a Sequential ending in an affine instance norm."""

    def __init__(self, c: int = 4, form: str = "x+f") -> None:
        super().__init__()
        self.form = form
        self.main = nn.Sequential(*_conv_in(c), nn.ReLU(inplace=True), *_conv_in(c))

    def forward(self, x):
        f = self.main(x)
        if self.form == "x+f":
            return x + f
        if self.form == "f+x":
            return f + x
        if self.form == "torch.add":
            return torch.add(x, f)
        return f.add(x)


class TorchvisionStyleBlock(nn.Module):
    """Norms called from forward, one ReLU module shared by two calls, the add before the last ReLU."""

    def __init__(self, c: int = 4) -> None:
        super().__init__()
        self.conv1, self.bn1 = _conv_in(c)
        self.conv2, self.bn2 = _conv_in(c)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + x
        return self.relu(out)


class ActThenAddBlock(nn.Module):
    """x + LeakyReLU(IN(conv(x))): the fused op applies the activation before the residual, as here."""

    def __init__(self, c: int = 4) -> None:
        super().__init__()
        self.conv, self.norm = _conv_in(c, affine=False)
        self.act = nn.LeakyReLU(0.1)

    def forward(self, x):
        return x + self.act(self.norm(self.conv(x)))


class DataDependentBlock(nn.Module):
    def __init__(self, c: int = 4) -> None:
        super().__init__()
        self.conv, self.norm = _conv_in(c)

    def forward(self, x):
        if x.mean() > 100:  # fx cannot trace a branch on a tensor value
            return x
        return x + self.norm(self.conv(x))


class ModeDependentBlock(DataDependentBlock):
    def forward(self, x):
        y = self.norm(self.conv(x))
        return x + y if self.training else x + 0.5 * y


def _check_same(plain: nn.Module, fused: nn.Module, shape=(2, 4, 8, 8)) -> None:
    """float64: outputs, input and parameter gradients equal (the fused op runs the same math)."""
    plain, fused = plain.double(), fused.double()
    x = torch.randn(shape, dtype=torch.float64)
    results = []
    for net in (plain, fused):
        xi = x.clone().requires_grad_()
        out = net(xi)
        (out * torch.linspace(-1, 1, out.numel(), dtype=torch.float64).view_as(out)).sum().backward()
        results.append([out, xi.grad] + [p.grad for p in net.parameters()])
    for a, b in zip(*results):
        torch.testing.assert_close(b, a, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("form", ["x+f", "f+x", "torch.add", "method"])
def test_residual_block_forms(form):
    torch.manual_seed(0)
    plain = StarGANBlock(form=form)
    fused = fuse(copy.deepcopy(plain))
    assert isinstance(fused, StarGANBlock) and type(fused) is not StarGANBlock
    (entry,) = fused.gancore_fused.residual
    assert entry.path == "main.4" and "residual add in <root>.forward" in str(entry)
    assert type(fused.main[4]) is InstanceNormAct2d and fused.main[4].activation == "identity"
    assert fused.state_dict().keys() == plain.state_dict().keys()
    in_place = StarGANBlock(form=form)
    weight = in_place.main[4].weight
    fuse(in_place)
    assert in_place.main[4].weight is weight  # an optimiser built before fuse() still updates it
    _check_same(plain, fused)


def test_torchvision_style_block():
    torch.manual_seed(0)
    plain = TorchvisionStyleBlock()
    fused = fuse(copy.deepcopy(plain))
    report = fused.gancore_fused
    assert [c.path for c in report.residual] == ["bn2"]
    assert sorted(c.path for c in report.fused) == ["bn1", "bn2"]
    assert fused.bn1.activation == "relu" and fused.bn2.activation == "identity"
    assert type(fused.relu) is nn.ReLU  # shared by two calls: kept, the call after the add still uses it
    _check_same(plain, fused)


def test_activation_before_residual():
    plain = ActThenAddBlock()
    fused = fuse(copy.deepcopy(plain))
    assert fused.norm.activation == "leaky_relu" and fused.norm.negative_slope == 0.1
    assert type(fused.act) is nn.Identity and len(fused.gancore_fused.residual) == 1
    _check_same(plain, fused)


@pytest.mark.parametrize("cls,reason", [(DataDependentBlock, "not traceable"),
                                        (ModeDependentBlock, "differs between train and eval")])
def test_untraceable_forward_falls_back_to_plain_fusion(cls, reason):
    torch.manual_seed(0)
    plain = cls()
    fused = fuse(copy.deepcopy(plain))
    assert type(fused) is cls  # forward kept
    report = fused.gancore_fused
    assert reason in str(report) and not report.residual
    assert type(fused.norm) is InstanceNormAct2d and fused.norm.activation == "identity"
    for mode in (True, False):
        _check_same(plain.train(mode), fused.train(mode))


def test_running_stats_instance_norm_fuses_with_its_residual():
    """InstanceNorm2d(track_running_stats=True) (StarGAN, early pix2pix) fuses into RunningInstanceNormAct2d,
    residual add included; outputs, gradients and running buffers match in training and in eval."""
    from gancore.nn import RunningInstanceNormAct2d

    block = ResnetBlock(4, "reflect", lambda c: nn.InstanceNorm2d(c, track_running_stats=True), False, True)
    fused = fuse(copy.deepcopy(block))
    assert all(type(fused.conv_block[i]) is RunningInstanceNormAct2d for i in (2, 6))
    assert type(fused.conv_block[3]) is nn.Identity
    report = fused.gancore_fused
    assert not report.unfused and len(report.residual) == 1
    assert fused.state_dict().keys() == block.state_dict().keys()
    for mode in (True, True, False):
        _check_same(block.train(mode), fused.train(mode))
    for key, value in block.state_dict().items():
        torch.testing.assert_close(fused.state_dict()[key], value, atol=1e-12, rtol=1e-12, msg=key)


class _ReversedSequential(nn.Sequential):
    def forward(self, x):
        for m in reversed(self):
            x = m(x)
        return x


def test_sequential_with_its_own_forward_is_fused_by_its_graph():
    """Neighbours in the module list mean nothing here; the traced order (conv, norm, relu) does."""
    plain = _ReversedSequential(nn.ReLU(), nn.InstanceNorm2d(4), nn.Conv2d(4, 4, 1))
    fused = fuse(copy.deepcopy(plain))
    assert isinstance(fused, _ReversedSequential) and type(fused) is not _ReversedSequential
    assert type(fused[0]) is nn.Identity and fused[1].activation == "relu"
    _check_same(plain, fused)
    wrong_way = fuse(_ReversedSequential(nn.InstanceNorm2d(4), nn.ReLU()))  # relu runs before the norm
    assert type(wrong_way[1]) is nn.ReLU and wrong_way[0].activation == "identity"


def test_dry_run_changes_nothing_and_predicts_the_real_run():
    torch.manual_seed(0)
    net = ResnetGenerator(ngf=4, n_blocks=2, fused=False)
    before = copy.deepcopy(net)
    report = fuse(net, dry_run=True)
    assert isinstance(report, FuseReport) and report.dry_run
    assert not hasattr(net, "gancore_fused")
    assert [type(m) for m in net.modules()] == [type(m) for m in before.modules()]
    text = str(report)
    assert text.startswith("fuse (dry run): would fuse 9 norms (2 with their residual add), 0 left unfused")
    assert "model.10.conv_block.6: InstanceNorm2d -> InstanceNormAct2d(identity) + residual add" in text
    real = fuse(net).gancore_fused
    assert real.changes == report.changes and not real.dry_run


def test_fuse_twice_is_a_no_op():
    net = fuse(ResnetGenerator(ngf=4, n_blocks=1, fused=False))
    classes = [type(m) for m in net.modules()]
    fuse(net)
    assert len(net.gancore_fused) == 0 and str(net.gancore_fused) == "fuse: nothing to fuse"
    assert [type(m) for m in net.modules()] == classes


def test_rewritten_model_deepcopies_and_pickles():
    torch.manual_seed(0)
    net = ResnetGenerator(ngf=4, n_blocks=2).double()
    x = torch.randn(1, 3, 16, 16, dtype=torch.float64)
    want = net(x)
    buf = io.BytesIO()
    torch.save(net, buf)
    buf.seek(0)
    for other in (copy.deepcopy(net), torch.load(buf, weights_only=False)):
        block = other.model[10]
        assert isinstance(block, ResnetBlock) and type(block) is not ResnetBlock
        assert "residual = x" in type(block)._gancore_forward[0]
        assert type(block.conv_block[6]) is InstanceNormAct2d
        torch.testing.assert_close(other(x), want, atol=0, rtol=0)


class _ScaleNorm(nn.Module):
    def forward(self, x):
        return x * 2


class _ScaleNormAct(nn.Module):
    def __init__(self, act: str) -> None:
        super().__init__()
        self.act = act

    def forward(self, x, residual=None):
        y = torch.relu(2 * x) if self.act == "relu" else 2 * x
        return y if residual is None else y + residual


def test_register_fuser_drives_the_table(monkeypatch):
    monkeypatch.setitem(FUSERS, _ScaleNorm, lambda norm, act: "no kernel for it")
    net = nn.Sequential(nn.Conv2d(4, 4, 1), _ScaleNorm(), nn.ReLU())
    fuse(net)
    assert type(net[1]) is _ScaleNorm and "no kernel for it" in str(net.gancore_fused.unfused[0])

    register_fuser(_ScaleNorm, lambda norm, act: _ScaleNormAct("relu" if act is not None else "identity"))
    seq = fuse(nn.Sequential(nn.Conv2d(4, 4, 1), _ScaleNorm(), nn.ReLU()))
    assert type(seq[1]) is _ScaleNormAct and seq[1].act == "relu" and type(seq[2]) is nn.Identity

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm = _ScaleNorm()

        def forward(self, x):
            return x + self.norm(x)

    block = fuse(Block())
    assert len(block.gancore_fused.residual) == 1
    x = torch.randn(3)
    torch.testing.assert_close(block(x), 3 * x)


def test_register_fuser_and_fuse_reject_bad_arguments():
    with pytest.raises(TypeError, match="norm_type"):
        register_fuser("InstanceNorm2d", lambda n, a: "x")
    with pytest.raises(TypeError, match="factory"):
        register_fuser(nn.InstanceNorm2d, None)
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        fuse("model")


def test_residual_dtype_promotion_falls_back_to_eager_add():
    m = InstanceNormAct2d(4, activation="identity")
    x, r = torch.randn(2, 4, 5, 5), torch.randn(2, 4, 5, 5, dtype=torch.float64)
    out = m(x, residual=r)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, nn.functional.instance_norm(x).double() + r, atol=1e-6, rtol=1e-5)
