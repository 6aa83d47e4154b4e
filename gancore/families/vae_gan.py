"""VAE-GAN (Larsen, Sønderby, Larochelle and Winther, 2016): a VAE whose reconstruction error is measured in
the discriminator's features, trained together with a GAN whose generator is the VAE's decoder.

Networks: the encoder E (x -> mu, log variance), the decoder G = DCGAN generator (z -> x) and the
discriminator D, whose `feature_layer`-th convolution block Dis_l gives the learned similarity. With
x~ = G(z), z = mu + sigma * eps the reconstruction and x_p = G(z_p), z_p ~ N(0, I) a prior sample:
- L_prior = KL(q(z|x) || N(0, I)), summed over latent dimensions;
- L_llike = 1/2 ||Dis_l(x) - Dis_l(x~)||^2, summed over features (a unit-variance Gaussian in Dis_l);
- L_GAN = log D(x) + log(1 - D(x~)) + log(1 - D(x_p)).
Each network its own loss, as in the paper's algorithm: E minimises L_prior + L_llike; G minimises
gamma * L_llike - L_GAN (non-saturating: -log D(x~) - log D(x_p)); D maximises L_GAN. All are batch means.
gamma weights reconstruction against fooling D for the decoder: the paper's knob, its value depending on how
L_llike is normalised (here a per-sample sum, as the likelihood of the ELBO).
The default data is the simple style of the built-in shapes (white, upright, near-centred, as DCGAN's demo):
`gancore train vae-gan --steps 400` then samples mostly recognisable circles, squares, triangles and crosses
from the prior, some with noisy edges; on the varied style the same 400 steps gave coloured blobs, a few
of them rounded squares or discs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gancore.families import register_family
from gancore.families.base import (
    BenchCase,
    ConfigError,
    DataSpec,
    Family,
    Network,
    Phase,
    PhaseContext,
    check_choice,
    check_image_spec,
    check_positive,
    check_power_of_two,
)
from gancore.models.dcgan import DCGANGenerator
from gancore.models.vae_gan import VAEEncoder, VAEGANDiscriminator
from gancore.nn import fuse


@dataclass
class VAEGANConfig:
    resolution: int = 32
    channels: int = 3
    latent_dim: int = 64
    e_width: int = 32  # channels of E's first convolution, doubled per layer
    g_width: int = 32  # as in DCGAN
    d_width: int = 32
    hidden: int = 256  # E's and D's fully connected layer
    feature_layer: int = 3  # Dis_l: the paper takes D's third convolution
    gamma: float = 0.01  # decoder: gamma * L_llike - L_GAN
    kl_weight: float = 1.0  # encoder: kl_weight * L_prior + L_llike (1: the paper)
    lr: float = 5e-4
    betas: tuple[float, float] = (0.5, 0.999)
    fused: bool = True  # batch norm + activation through gancore's fused op; false: plain torch.nn

    def __post_init__(self) -> None:
        check_choice("model.channels", self.channels, (1, 3))
        check_power_of_two("model.resolution", self.resolution)
        for key in ("latent_dim", "e_width", "g_width", "d_width", "hidden", "feature_layer"):
            check_positive(f"model.{key}", getattr(self, key))
        for key in ("gamma", "kl_weight"):
            if not getattr(self, key) >= 0:
                raise ConfigError(f"model.{key}: must be >= 0, got {getattr(self, key)!r}")


def kl_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)), summed over dimensions, averaged over the batch."""
    mu, logvar = mu.float(), logvar.float()
    return 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar).sum(1).mean()


def feature_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """1/2 ||a - b||^2 per sample, summed over features, averaged over the batch: -log N(a; b, I) + const."""
    return 0.5 * (a.float() - b.float()).square().flatten(1).sum(1).mean()


@register_family
class VAEGAN(Family):
    name = "vae-gan"
    summary = "VAE-GAN (Larsen et al. 2016): encoder, decoder = G, reconstruction in D's features, gamma weighting"
    Config = VAEGANConfig
    default_data = {"name": "shapes", "style": "simple"}  # see the module doc
    default_train = {"batch_size": 64}  # the paper's
    bench_cases = {"full": BenchCase("32x32", ("model.resolution=32",), (16, 64)),
                   "quick": BenchCase("16x16", ("model.resolution=16", "model.feature_layer=2", "model.e_width=16",
                                                "model.g_width=16", "model.d_width=16"), (8,))}

    def build(self, spec: DataSpec) -> dict[str, Network]:
        c = self.config
        check_image_spec(self.name, spec, c.channels, c.resolution)
        self.spec = spec
        try:
            d = VAEGANDiscriminator(c.resolution, c.channels, c.d_width, c.hidden, c.feature_layer)
        except ValueError as err:
            raise ConfigError(f"model.feature_layer: {err}") from None
        nets = {"E": VAEEncoder(c.latent_dim, c.resolution, c.channels, c.e_width, c.hidden),
                "G": DCGANGenerator(c.latent_dim, c.resolution, c.channels, c.g_width, "batch"), "D": d}
        if c.fused:
            nets = {name: fuse(net) for name, net in nets.items()}
        return {name: Network(net, lr=c.lr, betas=c.betas, ema=name == "G") for name, net in nets.items()}

    def phases(self) -> list[Phase]:
        return [Phase("E", "E", self.loss_e), Phase("G", "G", self.loss_g), Phase("D", "D", self.loss_d)]

    def _reconstruct(self, ctx: PhaseContext) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x, x~, mu, log variance) for this batch, with a fresh eps of the reparameterisation."""
        x = ctx.batch[self.spec.key]
        mu, logvar = ctx.nets["E"](x)
        z = mu + ctx.randn(self.config.latent_dim).to(mu.dtype) * (0.5 * logvar).exp()
        return x, ctx.nets["G"](z), mu, logvar

    def _llike(self, ctx: PhaseContext, x: torch.Tensor, recon_features: torch.Tensor) -> torch.Tensor:
        """The reconstruction loss in D's feature space, against the real batch's features (no gradient)."""
        with torch.no_grad():
            target = ctx.nets["D"](x, output="features")
        return feature_distance(recon_features, target)

    def loss_e(self, ctx: PhaseContext) -> dict[str, torch.Tensor]:
        x, recon, mu, logvar = self._reconstruct(ctx)
        prior = kl_to_standard_normal(mu, logvar)
        llike = self._llike(ctx, x, ctx.nets["D"](recon, output="features"))
        return {"loss": self.config.kl_weight * prior + llike, "kl": prior.detach(), "llike": llike.detach(),
                "pixel_mse": F.mse_loss(recon.detach().float(), x.float())}

    def loss_g(self, ctx: PhaseContext) -> dict[str, torch.Tensor]:
        x, recon, _, _ = self._reconstruct(ctx)
        prior_sample = ctx.nets["G"](ctx.randn(self.config.latent_dim))
        d = ctx.nets["D"]
        recon_logits, recon_features = d(recon, output="both")  # one pass of D serves both losses
        llike = self._llike(ctx, x, recon_features)
        gan = F.softplus(-recon_logits.float()).mean() + F.softplus(-d(prior_sample).float()).mean()
        return {"loss": self.config.gamma * llike + gan, "gan": gan.detach()}

    def loss_d(self, ctx: PhaseContext) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            x, recon, _, _ = self._reconstruct(ctx)
            prior_sample = ctx.nets["G"](ctx.randn(self.config.latent_dim))
        d = ctx.nets["D"]
        real, fake_recon, fake_prior = d(x).float(), d(recon).float(), d(prior_sample).float()
        loss = F.softplus(-real).mean() + F.softplus(fake_recon).mean() + F.softplus(fake_prior).mean()
        return {"loss": loss, "real_score": real.detach().mean(), "recon_score": fake_recon.detach().mean(),
                "prior_score": fake_prior.detach().mean()}

    def reconstruct(self, nets: dict, images: torch.Tensor) -> torch.Tensor:
        """G(mu(x)): the deterministic reconstruction of `images` (use the networks in eval mode)."""
        return nets["G"](nets["E"](images)[0])
