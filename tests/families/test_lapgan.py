import pytest
import torch

from gancore.families import get_family
from gancore.families.base import ConfigError, DataSpec
from gancore.metrics import BuiltinExtractor
from gancore.models.dcgan import DCGANGenerator
from gancore.models.lapgan import (
    LaplacianDiscriminator,
    LaplacianGenerator,
    gaussian_levels,
    laplacian_pyramid,
    reconstruct,
    upsample,
)
from gancore.train import Trainer, build_config
from tests.families.classic_helpers import DrawnShapes, assert_fused_matches_plain, frechet


def test_the_pyramid_inverts_exactly():
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    coarse, residuals = laplacian_pyramid(x, 3)
    assert coarse.shape == (2, 3, 8, 8) and [h.shape[-1] for h in residuals] == [16, 32]
    torch.testing.assert_close(reconstruct(coarse, residuals), x, atol=1e-12, rtol=0)
    levels = gaussian_levels(x, 3)
    torch.testing.assert_close(levels[1], torch.nn.functional.avg_pool2d(x, 2))
    with pytest.raises(ValueError, match="divisible by 2"):
        gaussian_levels(torch.randn(1, 3, 12, 12), 4)


def _family(**config):
    family_cls = get_family("lapgan")
    return family_cls(family_cls.Config(**config))


def test_one_gan_per_level_and_its_phases():
    family = _family(resolution=32, levels=3, g_width=8, d_width=8, coarse_width=8)
    nets = family.build(DataSpec("image", (3, 32, 32)))
    assert sorted(nets) == ["D0", "D1", "D2", "G0", "G1", "G2"]
    assert isinstance(nets["G0"].module, DCGANGenerator)
    assert [p.name for p in family.phases()] == ["D0", "G0", "D1", "G1", "D2", "G2"]
    assert all(p.every == 1 for p in family.phases())
    with pytest.raises(ConfigError, match="model.levels.*at most 3 levels"):
        get_family("lapgan").Config(resolution=32, levels=4)


def test_sampling_runs_coarse_to_fine():
    """With every finer generator answering zero, the sample is the coarsest image up-sampled; with one
    answering a constant, that constant is added at its level."""
    torch.manual_seed(0)
    family = _family(resolution=32, levels=3, g_width=8, d_width=8, coarse_width=8)
    nets = {n: net.module.eval() for n, net in family.build(DataSpec("image", (3, 32, 32))).items()}
    latents = family.make_latents(3, torch.Generator().manual_seed(1), torch.device("cpu"))
    assert latents["z"].shape == (3, 100) and latents["noise2"].shape == (3, 1, 32, 32)
    for k in (1, 2):
        nets[f"G{k}"] = lambda low, noise: torch.zeros_like(low)
    with torch.no_grad():
        coarse = nets["G0"](latents["z"])
        torch.testing.assert_close(family.generate(nets, latents), upsample(upsample(coarse)).clamp(-1, 1))
        assert family.generate(nets, latents, levels=1).shape == (3, 3, 8, 8)
        nets["G2"] = lambda low, noise: torch.full_like(low, 0.25)
        torch.testing.assert_close(family.generate(nets, latents),
                                   (upsample(upsample(coarse).clamp(-1, 1)) + 0.25).clamp(-1, 1))


def test_fused_networks_equal_the_plain_ones_in_float64():
    torch.manual_seed(0)
    low, noise = torch.randn(4, 3, 16, 16), torch.randn(4, 1, 16, 16)
    assert_fused_matches_plain(LaplacianGenerator(3, 4, 3), (low, noise), fused_norms=2)
    assert_fused_matches_plain(LaplacianDiscriminator(16, 3, 4), (torch.randn(4, 3, 16, 16), low), fused_norms=1)


def test_every_level_trains_and_the_full_sampler_improves():
    """3 levels (8 -> 16 -> 32) on the built-in shapes, Frechet distances with the built-in extractor. Each level
    must end nearer its own level of held-out data than untrained: level 0's 8x8 samples (up-sampled to 16x16
    for the extractor) against I_0, and each finer level's residuals G_k(l_k, noise), l_k from the real coarser
    image, against the real residuals h_k (an untrained level adds almost nothing, and the blurred image l_k
    alone is already close to I_k in these features, so the residuals are what show a level's progress).
    The full coarse-to-fine sampler must end nearer the data than untrained."""
    data = DrawnShapes(2000, 32, seed=11)
    held_out = DrawnShapes(500, 32, seed=99).images
    real_levels = gaussian_levels(held_out, 3)
    real_residuals = laplacian_pyramid(held_out, 3)[1]
    extractor = BuiltinExtractor()
    trainer = Trainer(build_config("lapgan", overrides=[
        "model.coarse_width=16", "model.g_width=16", "model.d_width=16", "train.batch_size=32",
        "train.steps=150", "log.progress=false"]), dataset=data)
    family = trainer.family
    latents = family.make_latents(500, torch.Generator().manual_seed(5), trainer.device)

    def distances() -> list[float]:
        nets = {n: (trainer.ema[n].module if n in trainer.ema else m).eval() for n, m in trainer.nets.items()}
        with torch.no_grad():
            out = [frechet(extractor, upsample(nets["G0"](latents["z"])), upsample(real_levels[0]))]
            for k in (1, 2):
                low = upsample(real_levels[k - 1])
                out.append(frechet(extractor, nets[f"G{k}"](low, latents[f"noise{k}"]), real_residuals[k - 1]))
            out.append(frechet(extractor, family.generate(nets, latents), held_out))
        for m in trainer.nets.values():
            m.train()
        return out

    before = distances()
    trainer.fit()
    after = distances()
    print("lapgan Frechet distances (level 0, level 1 residuals, level 2 residuals, full sampler): "
          f"untrained {[round(v, 4) for v in before]} -> trained {[round(v, 4) for v in after]}")
    # measured: level 0 and the full sampler fall to a tenth, the finer levels' residuals to 0.33 and 0.73
    for k, limit in enumerate((0.3, 0.8, 0.8, 0.3)):
        assert after[k] < limit * before[k], (k, before, after)
