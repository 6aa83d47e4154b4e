"""Standard GAN losses and the WGAN-GP gradient penalty.

Discriminator losses take the raw scores on real and fake samples; generator losses the scores on
fakes. All reduce to a float32 mean, whatever precision the scores were computed in, so a bf16 or
fp16 forward pass does not round the loss itself.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator

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


# The loss scale of an fp16 GradScaler while a phase runs. The inner gradient of a penalty is then
# taken on scaled outputs (so small fp16 gradients do not flush to zero) and unscaled in float32,
# as the PyTorch AMP recipe for gradient penalties does. The trainer sets it; callers need not.
_penalty_grad_scale: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "gancore_penalty_grad_scale", default=None)


@contextlib.contextmanager
def penalty_grad_scale(scale: float | None) -> Iterator[None]:
    """Within this block, gradient penalties scale their inner gradient by `scale` (None: no scaling)."""
    token = _penalty_grad_scale.set(scale)
    try:
        yield
    finally:
        _penalty_grad_scale.reset(token)


def gradient_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor,
                     *, weight: float = 10.0, center: float = 1.0,
                     alpha: torch.Tensor | None = None) -> torch.Tensor:
    """weight * E[(||grad_x critic(x)|| - center)^2] at x on random lines between real and fake samples.

    Gulrajani et al. (2017) with center=1; center=0 gives the zero-centred variant. `alpha` (one
    mixing weight per sample, in [0, 1]) is drawn uniformly when None; the trainer passes its own
    so that N processes draw what one process with the same global batch would. The result is
    differentiable with respect to the critic's parameters (double backward).
    """
    if real.shape != fake.shape:
        raise ValueError(f"real and fake must have the same shape, got {tuple(real.shape)} and "
                         f"{tuple(fake.shape)}")
    n = real.shape[0]
    if alpha is None:
        alpha = torch.rand(n, device=real.device)
    if alpha.numel() != n:
        raise ValueError(f"alpha must hold one weight per sample ({n}), got shape {tuple(alpha.shape)}")
    real = real.detach()
    fake = fake.detach().to(real.dtype)
    alpha = alpha.reshape((n,) + (1,) * (real.dim() - 1)).to(real.dtype)
    mixed = torch.lerp(real, fake, alpha).requires_grad_(True)
    scores = critic(mixed)
    scale = _penalty_grad_scale.get()
    grad_out = torch.ones_like(scores) if scale is None else torch.full_like(scores, scale)
    (grad,) = torch.autograd.grad(scores, mixed, grad_outputs=grad_out, create_graph=True)
    grad = grad.float().flatten(1)
    if scale is not None:
        grad = grad / scale
    # The small constant keeps the square root differentiable where a gradient is exactly zero.
    norm = (grad.square().sum(dim=1) + 1e-12).sqrt()
    return weight * (norm - center).square().mean()
