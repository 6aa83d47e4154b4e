"""Standard GAN losses (the gradient penalties are fused ops: gancore.ops.gradient_penalty).

Discriminator losses take the raw scores on real and fake samples; generator losses the scores on
fakes. All reduce to a float32 mean, whatever precision the scores were computed in, so a bf16 or
fp16 forward pass does not round the loss itself.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

LossFn = Callable[..., torch.Tensor]


def d_nonsaturating(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy on logits: -log sigmoid(real) - log(1 - sigmoid(fake))."""
    return F.softplus(-real.float()).mean() + F.softplus(fake.float()).mean()


def g_nonsaturating(fake: torch.Tensor) -> torch.Tensor:
    """-log sigmoid(fake): the generator loss of Goodfellow et al. that does not saturate early."""
    return F.softplus(-fake.float()).mean()


def d_hinge(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    return F.relu(1.0 - real.float()).mean() + F.relu(1.0 + fake.float()).mean()


def g_hinge(fake: torch.Tensor) -> torch.Tensor:
    return -fake.float().mean()


def d_least_squares(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """LSGAN with targets 1 (real) and 0 (fake)."""
    return 0.5 * ((real.float() - 1.0).square().mean() + fake.float().square().mean())


def g_least_squares(fake: torch.Tensor) -> torch.Tensor:
    return 0.5 * (fake.float() - 1.0).square().mean()


def d_wasserstein(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """The critic minimises E[D(fake)] - E[D(real)], i.e. maximises the Wasserstein estimate."""
    return fake.float().mean() - real.float().mean()


def g_wasserstein(fake: torch.Tensor) -> torch.Tensor:
    return -fake.float().mean()


ADVERSARIAL_LOSSES: dict[str, tuple[LossFn, LossFn]] = {
    "bce": (d_nonsaturating, g_nonsaturating),
    "hinge": (d_hinge, g_hinge),
    "lsgan": (d_least_squares, g_least_squares),
    "wasserstein": (d_wasserstein, g_wasserstein),
}


def adversarial_losses(kind: str) -> tuple[LossFn, LossFn]:
    """(discriminator loss, generator loss) for `kind`, one of ADVERSARIAL_LOSSES."""
    try:
        return ADVERSARIAL_LOSSES[kind]
    except KeyError:
        raise ValueError(f"loss must be one of {sorted(ADVERSARIAL_LOSSES)}, got {kind!r}") from None
