"""pix2pix: the paper's settings, the epoch-wise schedule, the fused PatchGAN head, and that it learns."""

import pytest
import torch

from gancore.data import ShapeEdges
from gancore.families import get_family
from gancore.families.base import ConfigError, DataSpec
from gancore.families.pix2pix import build_discriminator, gan_loss, linear_decay, resolve_generator
from gancore.models.pix2pix import UnetGenerator
from gancore.nn import PatchGANHead
from gancore.train import Trainer, build_config

TINY = ["model.ngf=8", "model.ndf=8", "data.resolution=32", "log.progress=false", "log.tensorboard=false",
        "log.sample_n=2"]


def test_defaults_are_the_papers():
    c = get_family("pix2pix").Config()
    assert (c.gan_mode, c.lambda_L1, c.norm, c.netD, c.direction) == ("vanilla", 100.0, "batch", "basic", "AtoB")
    assert (c.lr, c.beta1, c.n_epochs, c.n_epochs_decay, c.fused, c.dropout) == (2e-4, 0.5, 100, 100, True, True)
    trainer = Trainer(build_config("pix2pix", overrides=TINY))
    assert trainer.train_config.batch_size == 1 and trainer.train_config.channels_last
    assert isinstance(trainer.nets["G"], UnetGenerator) and trainer.family.netG == "unet_32"
    assert [p.name for p in trainer.phases] == ["D", "G"] and not trainer.ema
    for opt in trainer.optimizers.values():
        assert opt.param_groups[0]["lr"] == 2e-4 and tuple(opt.param_groups[0]["betas"]) == (0.5, 0.999)
    assert trainer.nets["D"].model[0].in_channels == 6  # D sees cat(A, B)


def test_generator_names_and_sizes():
    assert resolve_generator("auto", 256, 256) == "unet_256" and resolve_generator("auto", 512, 768) == "unet_256"
    assert resolve_generator("auto", 64, 64) == "unet_64"
    with pytest.raises(ConfigError, match="unet_256 needs image sides that are multiples of 256"):
        resolve_generator("unet_256", 64, 64)
    with pytest.raises(ConfigError, match="resnet_9blocks"):
        resolve_generator("auto", 36, 36)
    with pytest.raises(ConfigError, match="model.netG"):
        get_family("pix2pix").Config(netG="unet_100")
    with pytest.raises(ConfigError, match="model.direction"):
        get_family("pix2pix").Config(direction="A2B")


def test_learning_rate_is_constant_then_linear_to_zero_by_epoch():
    assert [linear_decay(e, 2, 3) for e in range(6)] == [1.0, 1.0, 0.75, 0.5, 0.25, 0.0]
    trainer = Trainer(build_config("pix2pix", overrides=TINY + [
        "data.size=4", "train.batch_size=2", "model.n_epochs=1", "model.n_epochs_decay=1"]))
    # two steps an epoch: epoch 0 at the full rate, epoch 1 at 1 - 1/2, then 0
    assert [trainer._lr_factor(s) for s in range(6)] == [1.0, 1.0, 0.5, 0.5, 0.0, 0.0]


@pytest.mark.parametrize("gan_mode", ["vanilla", "lsgan"])
def test_fused_head_keeps_the_keys_and_the_loss(gan_mode):
    torch.manual_seed(0)
    fused = build_discriminator("basic", 6, 8, 3, "batch", gan_mode, fused=True)
    plain = build_discriminator("basic", 6, 8, 3, "batch", gan_mode, fused=False)
    assert isinstance(fused.model[-1], PatchGANHead) and not isinstance(plain.model[-1], PatchGANHead)
    plain.load_state_dict(fused.state_dict(), strict=True)
    x = torch.randn(2, 6, 32, 32)
    for target in (True, False):
        assert torch.allclose(gan_loss(fused, x, target, gan_mode), gan_loss(plain, x, target, gan_mode),
                              rtol=1e-5, atol=1e-6)


def test_direction_b_to_a_swaps_source_and_target():
    family_cls = get_family("pix2pix")
    family = family_cls(family_cls.Config(direction="BtoA", ngf=4, ndf=4))
    family.dataset = ShapeEdges(size=2, resolution=32)
    family.build(DataSpec("B", (3, 32, 32)))
    assert (family.source_key, family.target_key) == ("B", "A")
    assert torch.equal(family.make_latents(1, torch.Generator().manual_seed(0), torch.device("cpu"))[0],
                       family.dataset[0]["B"])


def test_pix2pix_learns_the_builtin_pairs():
    """Held-out L1 to the target after 100 steps (batch 4, 32x32, ngf 8) against the untrained generator's."""
    held_out = ShapeEdges(size=32, resolution=32, seed=123)
    edges = torch.stack([held_out[i]["A"] for i in range(32)]).contiguous(memory_format=torch.channels_last)
    images = torch.stack([held_out[i]["B"] for i in range(32)])
    trainer = Trainer(build_config("pix2pix", overrides=TINY + [
        "data.size=2000", "train.steps=100", "train.batch_size=4"]))

    def held_out_l1():
        g = trainer.nets["G"].eval()
        with torch.no_grad():
            l1 = float((g(edges) - images).abs().mean())
        g.train()
        return l1

    untrained = held_out_l1()
    trainer.fit()
    trained = held_out_l1()
    print(f"held-out L1: untrained {untrained:.3f}, trained {trained:.3f}")
    assert untrained > 0.6 and trained < 0.5 * untrained, (untrained, trained)
