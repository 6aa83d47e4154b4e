import pytest
import torch

from gancore.data import Shapes
from gancore.families import get_family
from gancore.families.base import ConfigError, DataSpec, PhaseContext
from gancore.metrics import BuiltinExtractor, FeatureStats, frechet_distance
from gancore.models import DCGANDiscriminator, DCGANGenerator
from gancore.train import Trainer, build_config


def _family(**config):
    cls = get_family("lsgan")
    family = cls(cls.Config(resolution=16, g_width=4, d_width=4, latent_dim=8, **config))
    return family, family.build(DataSpec("image", (3, 16, 16)))


@pytest.mark.parametrize("coding, a, b, c", [("0-1-1", 0.0, 1.0, 1.0), ("-1-1-0", -1.0, 1.0, 0.0)])
def test_losses_follow_the_abc_coding(coding, a, b, c):
    family, nets = _family(coding=coding)
    assert isinstance(nets["G"].module, DCGANGenerator) and isinstance(nets["D"].module, DCGANDiscriminator)
    draws = {"randn": torch.randn(6, 8)}
    real = torch.randn(6, 3, 16, 16).clamp(-1, 1)
    modules = {k: v.module for k, v in nets.items()}
    ctx = PhaseContext(modules, {"image": real}, 0, 6, lambda kind, shape: draws[kind])
    out = family.loss_d(ctx)
    fake = modules["G"](draws["randn"])
    d_real, d_fake = modules["D"](real), modules["D"](fake)
    expected_d = 0.5 * (d_real - b).square().mean() + 0.5 * (d_fake - a).square().mean()
    assert torch.allclose(out["loss"], expected_d, rtol=1e-5)
    out = family.loss_g(ctx)
    assert torch.allclose(out["loss"], 0.5 * (modules["D"](modules["G"](draws["randn"])) - c).square().mean(),
                          rtol=1e-5)


def test_label_smoothing_moves_the_real_target_towards_a():
    family, _ = _family(coding="-1-1-0", label_smoothing=0.25)
    scores = torch.zeros(4)
    # unit label 0.75 -> a + 0.75 (b - a) = 0.5 under -1-1-0
    assert torch.allclose(family.loss.term(scores, 0.75), torch.tensor(0.5 * 0.5 ** 2))


def test_coding_is_checked():
    with pytest.raises(ConfigError, match="model.coding"):
        get_family("lsgan").Config(coding="1-0-1")


def _statistics(extractor, images):
    stats = FeatureStats(256)
    with torch.no_grad():
        stats.update(extractor(images))
    return stats.mu, stats.sigma


@pytest.mark.parametrize("coding", ["0-1-1", "-1-1-0"])
def test_lsgan_learns_the_builtin_shapes(coding):
    """The built-in Frechet distance (gancore.metrics' offline extractor) to held-out shapes, against the
    untrained generator: 120 steps of LSGAN at 16x16 with narrow networks must cut it at least in half."""
    held_out = Shapes(size=500, resolution=16, seed=99)
    extractor = BuiltinExtractor().eval()
    real = _statistics(extractor, torch.stack([held_out[i]["image"] for i in range(500)]))
    config = build_config("lsgan", overrides=[
        f"model.coding={coding}", "model.resolution=16", "model.g_width=16", "model.d_width=16",
        "train.batch_size=32", "train.steps=120", "log.progress=false"])
    trainer = Trainer(config)
    latents = trainer.family.make_latents(500, torch.Generator().manual_seed(5), trainer.device)

    def distance():
        return float(frechet_distance(*real, *_statistics(extractor, trainer.generate(latents))))

    initial = distance()
    trainer.fit()
    trained = distance()
    assert trained < 0.5 * initial, (initial, trained)
