import pytest
import torch
from torch.distributions import Normal, kl_divergence

from gancore.families import get_family
from gancore.families.base import ConfigError, DataSpec, PhaseContext
from gancore.families.vae_gan import feature_distance, kl_to_standard_normal
from gancore.metrics import BuiltinExtractor
from gancore.models.dcgan import DCGANGenerator
from gancore.models.vae_gan import VAEEncoder, VAEGANDiscriminator
from gancore.train import Trainer, build_config
from tests.families.classic_helpers import DrawnShapes, assert_fused_matches_plain, frechet

SPEC = DataSpec("image", (3, 16, 16))


def _build(**config):
    family_cls = get_family("vae-gan")
    family = family_cls(family_cls.Config(**{"resolution": 16, "feature_layer": 2, "e_width": 4, "g_width": 4,
                                             "d_width": 4, "hidden": 8, "latent_dim": 6, **config}))
    return family, family.build(SPEC)


def test_three_networks_and_the_feature_layer():
    family, nets = _build()
    assert sorted(nets) == ["D", "E", "G"] and [p.name for p in family.phases()] == ["E", "G", "D"]
    assert isinstance(nets["G"].module, DCGANGenerator) and nets["G"].ema and not nets["E"].ema
    x = torch.randn(3, 3, 16, 16)
    mu, logvar = nets["E"].module(x)
    assert mu.shape == logvar.shape == (3, 6)
    d = nets["D"].module
    assert d.features(x).shape == (3, 8, 4, 4) and d(x).shape == (3,)  # after D's second convolution block
    d.eval()  # the same statistics in every call
    logits, features = d(x, output="both")
    torch.testing.assert_close(logits, d(x))
    torch.testing.assert_close(features, d.features(x))
    torch.testing.assert_close(d(x, output="features"), features)
    with pytest.raises(ValueError, match="output must be 'logits', 'features' or 'both', got 'feature'"):
        d(x, output="feature")
    with pytest.raises(ConfigError, match="model.feature_layer: feature_layer must be at most 2"):
        _build(feature_layer=3)
    with pytest.raises(ConfigError, match="model.gamma"):
        get_family("vae-gan").Config(gamma=-1.0)


def test_the_loss_terms():
    mu, logvar = torch.randn(5, 4), torch.randn(5, 4)
    expected = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(1).mean()
    torch.testing.assert_close(kl_to_standard_normal(mu, logvar), expected)
    a, b = torch.randn(5, 2, 3, 3), torch.randn(5, 2, 3, 3)
    torch.testing.assert_close(feature_distance(a, b), 0.5 * (a - b).square().sum() / 5)


def test_each_network_gets_its_own_loss_and_gamma_weights_the_decoder():
    """E: KL + L_llike; G: gamma * L_llike + the GAN loss on reconstructions and prior samples; D: the GAN loss
    on real, reconstructed and prior images; gamma only enters G's loss."""
    torch.manual_seed(0)
    x = torch.randn(4, 3, 16, 16)
    eps, z_p = torch.randn(4, 6), torch.randn(4, 6)

    def losses(gamma):
        torch.manual_seed(0)
        family, specs = _build(gamma=gamma)
        family.spec = SPEC
        nets = {n: s.module.eval() for n, s in specs.items()}  # eval: the same batch-norm statistics throughout

        def ctx():
            draws = iter([eps, z_p])
            return PhaseContext(nets, {"image": x}, 0, 4, lambda kind, shape: next(draws))

        mu, logvar = nets["E"](x)
        recon = nets["G"](mu + eps * (0.5 * logvar).exp())
        llike = 0.5 * (nets["D"].features(recon) - nets["D"].features(x)).square().sum() / 4
        sp = torch.nn.functional.softplus
        gan_g = sp(-nets["D"](recon)).mean() + sp(-nets["D"](nets["G"](z_p))).mean()
        gan_d = sp(-nets["D"](x)).mean() + sp(nets["D"](recon)).mean() + sp(nets["D"](nets["G"](z_p))).mean()
        out = family.loss_e(ctx()), family.loss_g(ctx()), family.loss_d(ctx())
        torch.testing.assert_close(out[0]["loss"], kl_to_standard_normal(mu, logvar) + llike)
        torch.testing.assert_close(out[1]["loss"], gamma * llike + gan_g)
        torch.testing.assert_close(out[2]["loss"], gan_d)
        return [o["loss"] for o in out]

    low, high = losses(0.01), losses(1.0)
    torch.testing.assert_close(low[0], high[0])
    torch.testing.assert_close(low[2], high[2])
    assert high[1] > low[1]


def test_fused_networks_equal_the_plain_ones_in_float64():
    torch.manual_seed(0)
    x = torch.randn(4, 3, 16, 16)
    assert_fused_matches_plain(VAEEncoder(6, 16, 3, 4, 8), (x,), call=lambda net, x: torch.cat(net(x), 1),
                               fused_norms=3)
    d = VAEGANDiscriminator(16, 3, 4, 8, feature_layer=2)
    assert_fused_matches_plain(d, (x,), fused_norms=2)
    assert_fused_matches_plain(d, (x,), call=lambda net, x: net.features(x), fused_norms=2)


def test_it_trains_under_torch_compile():
    """Every D call goes through D's compiled forward: an eager features() call beside compiled ones failed
    in backward, the batch norms' running statistics being modified in place."""
    trainer = Trainer(build_config("vae-gan", overrides=[
        "model.resolution=16", "model.feature_layer=2", "model.e_width=4", "model.g_width=4", "model.d_width=4",
        "model.hidden=8", "model.latent_dim=6", "model.fused=false", "train.compile=aot_eager",
        "train.batch_size=4", "train.steps=2", "log.progress=false", "log.tensorboard=false"]))
    trainer.fit()
    assert all(trainer.nets[name]._compiled_call_impl is not None for name in ("E", "G", "D"))
    assert all(torch.isfinite(p).all() for p in trainer.nets["D"].parameters())


def test_reconstructions_improve_and_prior_samples_beat_the_untrained_decoder():
    """16x16 shapes: the deterministic reconstruction G(mu(x)) of held-out images gets closer to them (pixel
    MSE), and prior samples G(z) get nearer the data than the untrained decoder's (Frechet distance with the
    built-in extractor)."""
    data = DrawnShapes(1000, 16, seed=11)
    held_out = DrawnShapes(300, 16, seed=99).images
    extractor = BuiltinExtractor()
    trainer = Trainer(build_config("vae-gan", overrides=[
        "model.resolution=16", "model.feature_layer=2", "model.e_width=16", "model.g_width=32", "model.d_width=16",
        "model.hidden=128", "model.latent_dim=32", "train.batch_size=32", "train.steps=80",
        "log.progress=false"]), dataset=data)
    latents = trainer.family.make_latents(300, torch.Generator().manual_seed(5), trainer.device)

    def measure() -> tuple[float, float]:
        nets = {n: (trainer.ema[n].module if n in trainer.ema else m).eval() for n, m in trainer.nets.items()}
        with torch.no_grad():
            mse = float((trainer.family.reconstruct(nets, held_out) - held_out).square().mean())
        for m in trainer.nets.values():
            m.train()
        return mse, frechet(extractor, trainer.generate(latents), held_out)

    (mse0, fd0) = measure()
    trainer.fit()
    (mse1, fd1) = measure()
    print(f"vae-gan: held-out reconstruction MSE {mse0:.4f} -> {mse1:.4f}; prior-sample Frechet distance "
          f"{fd0:.4f} -> {fd1:.4f} after 80 steps")
    # measured: both fall to 0.64 of their untrained values
    assert mse1 < 0.8 * mse0, (mse0, mse1)
    assert fd1 < 0.8 * fd0, (fd0, fd1)
