import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import linalg
from torch import nn

from gancore.data import Shapes
from gancore.families import get_family
from gancore.families.base import ConfigError, DataSpec
from gancore.models import DCGANDiscriminator, DCGANGenerator
from gancore.train import Trainer, build_config


def test_the_paper_networks_at_64x64():
    g, d = DCGANGenerator(), DCGANDiscriminator()
    widths = [m.out_channels for m in g.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert widths == [512, 256, 128, 64, 3]
    assert [m.out_channels for m in d.modules() if isinstance(m, nn.Conv2d)] == [64, 128, 256, 512, 1]
    assert not isinstance(d.net[1], nn.BatchNorm2d)  # no batch norm on D's input layer
    z = torch.randn(2, 100)
    with torch.no_grad():
        images = g(z)
        scores = d(images)
    assert images.shape == (2, 3, 64, 64) and images.abs().max() <= 1 and scores.shape == (2,)


def test_32x32_drops_the_widest_layer():
    g = DCGANGenerator(resolution=32, channels=1, width=8)
    assert [m.out_channels for m in g.modules() if isinstance(m, nn.ConvTranspose2d)] == [32, 16, 8, 1]
    assert g(torch.randn(3, 100)).shape == (3, 1, 32, 32)
    assert DCGANDiscriminator(resolution=32, channels=1, width=8)(torch.randn(3, 1, 32, 32)).shape == (3,)


def test_initialisation_follows_the_paper():
    g = DCGANGenerator(width=16)
    conv = g.net[3].weight
    assert abs(float(conv.mean())) < 0.002 and abs(float(conv.std()) - 0.02) < 0.002
    bn = g.net[1].weight
    assert abs(float(bn.mean()) - 1.0) < 0.01


def test_bad_resolution_and_mismatched_data_are_named():
    with pytest.raises(ValueError, match="power of two"):
        DCGANGenerator(resolution=48)
    family = get_family("dcgan")(get_family("dcgan").Config(resolution=32))
    with pytest.raises(ConfigError, match=r"needs images of shape \(3, 32, 32\).*gives \(2,\)"):
        family.build(DataSpec("x", (2,)))


@pytest.mark.parametrize("overrides, lr, betas", [
    ([], 2e-3, (0.5, 0.99)),  # the demo defaults
    (["model.lr_g=2e-4", "model.lr_d=2e-4", "model.betas_g=[0.5,0.999]", "model.betas_d=[0.5,0.999]"],
     2e-4, (0.5, 0.999)),  # the paper's
])
def test_optimisers_follow_the_config(overrides, lr, betas):
    trainer = Trainer(build_config("dcgan", overrides=["model.g_width=4", "model.d_width=4",
                                                       "model.resolution=8", *overrides]))
    for name in ("G", "D"):
        group = trainer.optimizers[name].param_groups[0]
        assert group["lr"] == lr and tuple(group["betas"]) == betas


def _feature_net():
    """A fixed random CNN: Frechet distances of its pooled features compare image distributions."""
    torch.manual_seed(1234)
    return nn.Sequential(nn.Conv2d(3, 32, 3, 1, 1), nn.ReLU(), nn.AvgPool2d(2), nn.Conv2d(32, 64, 3, 1, 1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()


def _frechet(a, b):
    a, b = a.double().numpy(), b.double().numpy()
    offset = 1e-6 * np.eye(a.shape[1])  # near-constant images (the initial generator) are degenerate
    s1, s2 = np.cov(a, rowvar=False) + offset, np.cov(b, rowvar=False) + offset
    root = linalg.sqrtm(s1 @ s2).real
    return float(np.square(a.mean(0) - b.mean(0)).sum() + np.trace(s1 + s2 - 2 * root))


def test_dcgan_learns_the_builtin_shapes():
    """Frechet distance to held-out shapes, in a fixed random CNN's features, against the random-init
    generator: a few hundred steps of DCGAN (16x16, small widths) must cut it well down."""
    held_out = Shapes(size=2000, resolution=16, seed=99)
    images = torch.stack([held_out[i]["image"] for i in range(2000)])
    features = _feature_net()
    with torch.no_grad():
        real_a, real_b = features(images[:1000]), features(images[1000:])
    floor = _frechet(real_a, real_b)  # two samples of the real distribution

    config = build_config("dcgan", overrides=[
        "data.style=varied", "model.resolution=16", "model.g_width=32", "model.d_width=32", "train.batch_size=64",
        "train.steps=200", "log.progress=false"])
    trainer = Trainer(config)
    latents = trainer.family.make_latents(1000, torch.Generator().manual_seed(5), trainer.device)

    def distance():
        with torch.no_grad():
            return _frechet(features(trainer.generate(latents)), real_a)

    initial = distance()
    trainer.fit()
    trained = distance()
    assert initial > 100 * floor, (initial, floor)
    assert trained < 0.35 * initial, (initial, trained, floor)


def _blur(images, sigma):
    """Each image (N, C, H, W) blurred by a Gaussian of its own width `sigma` (N,), in pixels."""
    n, c, h, w = images.shape
    r = torch.arange(-6, 7, dtype=images.dtype)
    kernel = torch.exp(-r ** 2 / (2 * sigma[:, None] ** 2))
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(c, 0)
    x = images.reshape(1, n * c, h, w)
    x = F.conv2d(F.pad(x, (6, 6, 0, 0), mode="replicate"), kernel.view(n * c, 1, 1, 13), groups=n * c)
    x = F.conv2d(F.pad(x, (0, 0, 6, 6), mode="replicate"), kernel.view(n * c, 1, 13, 1), groups=n * c)
    return x.reshape(n, c, h, w)


def _lumps(n, size, generator):
    """Sharp-edged random lumps near the centre: what a G draws that has learnt 'one white object' but
    no geometry (thresholded smooth noise plus a radial bump of random radius)."""
    noise = _blur(torch.randn(n, 1, size, size, generator=generator), 2 + 2 * torch.rand(n, generator=generator))
    noise = noise / noise.flatten(1).std(1).view(n, 1, 1, 1)
    axis = torch.arange(size) - size / 2 + 0.5
    distance = (axis[:, None] ** 2 + axis[None, :] ** 2).sqrt()
    radius = (0.2 + 0.2 * torch.rand(n, 1, 1, 1, generator=generator)) * size
    return ((noise + 3 * (1 - distance / radius)) > 0).float().expand(-1, 3, -1, -1) * 2 - 1


class _ShapeJudge:
    """A small CNN trained here to tell the demo data's four shapes (classes 0-3) from blurred shapes and
    from sharp lumps (class 4): it counts the generated images that are one clean shape."""

    def __init__(self, resolution, n=1000, steps=250):
        torch.manual_seed(0)
        g = torch.Generator().manual_seed(0)
        data = Shapes(size=n, resolution=resolution, seed=7, style="simple")
        shapes = torch.stack([data[i]["image"] for i in range(n)])
        labels = torch.tensor([data[i]["label"] for i in range(n)])
        self.negatives = lambda images, gen: torch.cat([_blur(images, 0.8 + 1.7 * torch.rand(len(images),
                                                                                              generator=gen)),
                                                        _lumps(len(images), resolution, gen)])
        x = torch.cat([shapes, self.negatives(shapes, g)])
        y = torch.cat([labels, torch.full((2 * n,), 4)])
        self.net = nn.Sequential(nn.Conv2d(1, 8, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, 1, 1),
                                 nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, 1, 1), nn.ReLU(),
                                 nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(32, 5))
        optimizer = torch.optim.Adam(self.net.parameters(), 1e-2)
        grey = x.amax(1, keepdim=True)  # white shapes: the judge sees brightness only
        for _ in range(steps):
            i = torch.randint(len(x), (64,), generator=g)
            loss = F.cross_entropy(self.net(grey[i]), y[i])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        self.net.eval()

    def clean_fractions(self, images):
        """Per shape class, the fraction of `images` judged that shape with probability > 0.9."""
        with torch.no_grad():
            p = F.softmax(self.net(images.amax(1, keepdim=True)), 1)
        confidence, label = p.max(1)
        sure = confidence > 0.9
        return [float(((label == k) & sure).float().mean()) for k in range(4)]


def test_the_readme_demo_draws_recognisable_shapes():
    """The README's first run (`gancore train dcgan --steps 600`) at the family's defaults, cut to 200 steps
    to stay cheap: its EMA generator must draw clean circles, squares, triangles and crosses, as a shape
    judge trained here sees them. Measured (256 samples, one thread): the untrained G 0 clean, the old
    defaults (varied data) 0 after 600 steps, these defaults 0.28 after 200 steps and 0.70 after 600."""
    steps = 200
    config = build_config("dcgan", overrides=[f"train.steps={steps}", "log.progress=false"])
    assert config["model"]["resolution"] == 32 and config["train"]["batch_size"] == 32  # the demo's settings
    assert config["data"] == {"name": "shapes", "style": "simple"}
    judge = _ShapeJudge(32)
    held_out = Shapes(size=300, resolution=32, seed=99, style="simple")
    real = torch.stack([held_out[i]["image"] for i in range(300)])
    assert sum(judge.clean_fractions(real)) > 0.95  # the judge knows the shapes...
    assert sum(judge.clean_fractions(judge.negatives(real, torch.Generator().manual_seed(3)))) < 0.05  # ...and blobs
    trainer = Trainer(config)
    latents = trainer.family.make_latents(256, torch.Generator().manual_seed(5), trainer.device)
    initial = judge.clean_fractions(trainer.generate(latents))
    trainer.fit()
    trained = judge.clean_fractions(trainer.generate(latents))
    assert sum(initial) < 0.02, initial
    assert sum(trained) > 0.12 and min(trained) > 0.015, trained  # every shape drawn, not one mode


@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_fused_networks_equal_the_plain_ones_in_float64(norm):
    """fused=True (the default) swaps norm + activation for gancore's fused op with the same state_dict keys;
    in float64 its outputs and gradients equal the plain torch.nn network's, in training and in eval mode."""
    from gancore.nn import BatchNormAct2d, InstanceNormAct2d

    fused_type = BatchNormAct2d if norm == "batch" else InstanceNormAct2d
    for cls, make_input in ((DCGANGenerator, lambda: torch.randn(6, 16)),
                            (DCGANDiscriminator, lambda: torch.randn(6, 3, 16, 16))):
        kwargs = dict(resolution=16, width=8, norm=norm) | ({"latent_dim": 16} if cls is DCGANGenerator else {})
        plain = cls(**kwargs, fused=False).double()
        fused = cls(**kwargs, fused=True).double()
        assert list(fused.state_dict()) == list(plain.state_dict())
        assert any(isinstance(m, fused_type) for m in fused.modules())
        assert not any(type(m) in (nn.BatchNorm2d, nn.InstanceNorm2d) for m in fused.modules())
        fused.load_state_dict(plain.state_dict(), strict=True)
        x = make_input().double()
        for train in (True, False):
            plain.train(train), fused.train(train)
            a = x.clone().requires_grad_(True)
            b = x.clone().requires_grad_(True)
            out_plain, out_fused = plain(a), fused(b)
            assert torch.allclose(out_fused, out_plain, rtol=0, atol=1e-12)
            (grad_plain,) = torch.autograd.grad(out_plain.square().sum(), a)
            (grad_fused,) = torch.autograd.grad(out_fused.square().sum(), b)
            assert torch.allclose(grad_fused, grad_plain, rtol=0, atol=1e-12)
        for name, buffer in plain.named_buffers():
            assert torch.allclose(dict(fused.named_buffers())[name], buffer, rtol=0, atol=1e-12)  # running stats


def test_the_family_builds_fused_networks_and_takes_the_tricks():
    from gancore.models.noise import AlwaysDropout, GaussianNoise
    from gancore.nn import BatchNormAct2d

    trainer = Trainer(build_config("dcgan", overrides=[
        "model.resolution=8", "model.g_width=4", "model.d_width=4", "model.g_noise=0.1", "model.g_dropout=0.2",
        "model.optimizer_d=sgd", "model.d_steps=2", "model.label_smoothing=0.1", "model.latent_dist=uniform"]))
    g = trainer.nets["G"]
    assert any(isinstance(m, BatchNormAct2d) for m in g.modules())
    assert any(isinstance(m, GaussianNoise) for m in g.modules()) and any(isinstance(m, AlwaysDropout)
                                                                           for m in g.modules())
    assert isinstance(trainer.optimizers["D"], torch.optim.SGD)
    assert {p.name: p.every for p in trainer.phases} == {"D": 1, "G": 2}
    assert float(trainer.sample_latents.min()) >= -1 and float(trainer.sample_latents.max()) <= 1
    plain = Trainer(build_config("dcgan", overrides=["model.resolution=8", "model.g_width=4", "model.d_width=4",
                                                     "model.fused=false"]))
    assert not any(isinstance(m, BatchNormAct2d) for m in plain.nets["G"].modules())
    assert set(get_family("dcgan").bench_cases) == {"full", "quick"}


def test_fused_float32_is_as_close_to_float64_as_eager_float32():
    """Norm-wise ||a - b|| / ||b|| against the float64 plain network, in training mode (batch statistics)."""
    torch.manual_seed(0)
    for cls, x in ((DCGANGenerator, torch.randn(8, 16)), (DCGANDiscriminator, torch.randn(8, 3, 16, 16))):
        kwargs = dict(resolution=16, width=8) | ({"latent_dim": 16} if cls is DCGANGenerator else {})
        plain = cls(**kwargs, fused=False)
        fused = cls(**kwargs, fused=True)
        fused.load_state_dict(plain.state_dict())
        reference = cls(**kwargs, fused=False).double()
        reference.load_state_dict(plain.state_dict())
        with torch.no_grad():
            oracle = reference(x.double())
            errors = [float((net(x).double() - oracle).norm() / oracle.norm()) for net in (plain, fused)]
        assert errors[1] <= 2 * errors[0] + 1e-7, errors


def test_the_demo_data_style_draws_white_upright_shapes_and_is_checked():
    from gancore.data import DataError

    simple = Shapes(size=8, resolution=32, style="simple")
    images = torch.stack([simple[i]["image"] for i in range(8)])
    assert torch.allclose(images[:, 0], images[:, 1]) and torch.allclose(images[:, 0], images[:, 2])  # grey
    assert float(images.amin()) == -1 and float(images.amax()) == 1  # white shapes on black
    assert simple[1]["label"] == 1  # a square: upright, its rows of white have about one length
    widths = (images[1, 0] > 0).sum(1)
    widths = widths[widths > 0][1:-1]
    assert len(widths) >= 8 and int(widths.max() - widths.min()) <= 2, widths  # a diamond: 1 to 2r
    assert "simple" in simple.describe()
    with pytest.raises(DataError, match="style"):
        Shapes(style="fancy")
