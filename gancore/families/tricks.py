"""The training tricks of the GAN literature as config keys, implemented once for every family that has a
latent-driven G and a D (gan, lsgan, dcgan).

A family's Config inherits `TrainingTricks` (its keys then sit in the `model:` section beside the family's
own), and the family inherits `AdversarialFamily`, whose D and G phases apply them. The numbers follow
docs/training.md ("Training tricks"), which gives each trick's source:

 1 unit_range        data in [-1, 1] and a tanh output (images are in [-1, 1] already; vector data is mapped)
 2 g_loss            nonsaturating: G trains on D's loss with its fakes labelled real; minimax: G maximises D's
 3 latent_dist       gaussian (N(0, 1)) or uniform (U[-1, 1]) latents
 4 separate_batches  D sees all-real and all-fake mini-batches (two calls) instead of one mixed call
 5 label_smoothing   one-sided: D's real target is 1 - s, the fake target stays 0
 6 random_smoothing  real targets drawn from U[0.7, 1.2], fake ones from U[0, 0.3]
 7 label_flip        each of D's labels is swapped (real <-> fake) with this probability
 8 instance_noise    N(0, s^2) added to D's inputs, s falling linearly to 0 over instance_noise_steps
 9 g_noise           Gaussian noise after every hidden layer of G (while training)
10 g_dropout         dropout after every hidden layer of G, at train and at test time
11 optimizer_d       sgd (with momentum_d) for D while G keeps Adam
12 lr_g / lr_d       TTUR: each network its own learning rate (the family's keys)
13 d_steps           D updates per G update
14 critic_norm       WGAN-GP's critic: layer or instance norm instead of batch norm (wgan_gp.py)
15 failure_patience  warn when D's loss stays ~0, or G's falls steadily, for this many steps

Labels are handled in "unit" coordinates, 1 = real and 0 = fake, and each loss maps them to its own targets
(BCE: the probability itself; least squares: a + t (b - a) of LSGAN's a-b-c coding). Random draws come from
the phase's per-sample streams (PhaseContext.rand / randn), so a run on N processes equals one on one.
"""

from __future__ import annotations

import math
import warnings
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gancore.families.base import (
    ConfigError,
    DataSpec,
    Family,
    Network,
    Phase,
    PhaseContext,
    check_choice,
    check_positive,
)

LATENT_DISTRIBUTIONS = ("gaussian", "uniform")
G_LOSSES = ("nonsaturating", "minimax")
D_OPTIMIZERS = ("adam", "sgd")
#: Random label smoothing's ranges (Salimans et al. 2016 as ganhacks gives them).
REAL_LABEL_RANGE = (0.7, 1.2)
FAKE_LABEL_RANGE = (0.0, 0.3)


def _check_fraction(key: str, value: float, high: float = 1.0) -> None:
    if not (isinstance(value, (int, float)) and 0.0 <= value < high):
        raise ConfigError(f"{key}: must be a number in [0, {high:g}), got {value!r}")


@dataclass
class TrainingTricks:
    """The tricks' config keys. Everything off, except tricks 1-4, which are the modern defaults."""

    unit_range: bool = True  # 1
    g_loss: str = "nonsaturating"  # 2: or minimax
    latent_dist: str = "gaussian"  # 3: or uniform
    separate_batches: bool = True  # 4
    label_smoothing: float = 0.0  # 5: one-sided, real target 1 - s (Salimans et al.: 0.1)
    random_smoothing: bool = False  # 6
    label_flip: float = 0.0  # 7: probability of swapping each of D's labels
    instance_noise: float = 0.0  # 8: initial std of the noise on D's inputs
    instance_noise_steps: int = 0  # 8: steps over which it falls linearly to 0 (0: constant)
    g_noise: float = 0.0  # 9: std of the noise after G's hidden layers
    g_dropout: float = 0.0  # 10: dropout probability in G's hidden layers
    optimizer_d: str = "adam"  # 11: or sgd
    momentum_d: float = 0.0  # 11: SGD's momentum
    d_steps: int = 1  # 13
    failure_patience: int = 0  # 15: steps (0: off)
    failure_d_loss: float = 1e-3  # 15: D's loss below this counts as "at 0"

    def __post_init__(self) -> None:
        check_choice("model.g_loss", self.g_loss, G_LOSSES)
        check_choice("model.latent_dist", self.latent_dist, LATENT_DISTRIBUTIONS)
        check_choice("model.optimizer_d", self.optimizer_d, D_OPTIMIZERS)
        _check_fraction("model.label_smoothing", self.label_smoothing, 0.5)
        _check_fraction("model.label_flip", self.label_flip, 0.5)
        _check_fraction("model.g_dropout", self.g_dropout)
        _check_fraction("model.momentum_d", self.momentum_d)
        if self.random_smoothing and self.label_smoothing:
            raise ConfigError("model.random_smoothing and model.label_smoothing are two ways to smooth the labels: "
                              "set one of them")
        for key in ("instance_noise", "g_noise", "failure_d_loss"):
            value = getattr(self, key)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ConfigError(f"model.{key}: must be a finite number >= 0, got {value!r}")
        check_positive("model.d_steps", self.d_steps)
        for key in ("instance_noise_steps", "failure_patience"):
            check_positive(f"model.{key}", getattr(self, key), minimum=0)
        if 0 < self.failure_patience < 8:
            raise ConfigError(f"model.failure_patience: must be 0 (off) or >= 8 steps, got {self.failure_patience}")

    @property
    def soft_labels(self) -> bool:
        """Whether D's targets differ from plain 1 / 0 (tricks 5-7)."""
        return bool(self.label_smoothing or self.random_smoothing or self.label_flip)


# -- 2, 5, 6, 7: labels and the losses on them -------------------------------------------------------------------

Rand = Callable[[], torch.Tensor]  # per-sample U[0, 1), shape (N,): PhaseContext.rand


def label_targets(tricks: TrainingTricks, rand: Rand) -> tuple[torch.Tensor | float, torch.Tensor | float]:
    """D's targets for its real and its fake mini-batch, in unit coordinates (1 real, 0 fake): floats, or
    per-sample tensors (N,) where a trick draws them (random smoothing, flips)."""

    def real_value() -> torch.Tensor | float:
        if tricks.random_smoothing:
            return REAL_LABEL_RANGE[0] + (REAL_LABEL_RANGE[1] - REAL_LABEL_RANGE[0]) * rand()
        return 1.0 - tricks.label_smoothing

    def fake_value() -> torch.Tensor | float:
        if tricks.random_smoothing:
            return FAKE_LABEL_RANGE[0] + (FAKE_LABEL_RANGE[1] - FAKE_LABEL_RANGE[0]) * rand()
        return 0.0

    real, fake = real_value(), fake_value()
    if tricks.label_flip:  # a flipped sample takes the other side's label, smoothed alike
        real = torch.where(rand() < tricks.label_flip, fake_value(), real)
        fake = torch.where(rand() < tricks.label_flip, real_value(), fake)
    return real, fake


@dataclass(frozen=True)
class TargetLoss:
    """A D loss on targets in unit coordinates and its G loss: `bce` (on logits, the GAN of Goodfellow et al.)
    or `least_squares` with LSGAN's coding (a fake, b real, c the target G pushes its fakes to)."""

    kind: str = "bce"
    coding: tuple[float, float, float] = (0.0, 1.0, 1.0)
    g_loss: str = "nonsaturating"

    def term(self, scores: torch.Tensor, target: torch.Tensor | float) -> torch.Tensor:
        """Mean loss of D's scores against unit targets, float32."""
        x = scores.float()
        if self.kind == "bce":  # BCE with logits: t softplus(-x) + (1 - t) softplus(x)
            if not isinstance(target, torch.Tensor) and target in (0.0, 1.0):
                return F.softplus(-x if target else x).mean()
            return (target * F.softplus(-x) + (1 - target) * F.softplus(x)).mean()
        a, b, _ = self.coding
        return 0.5 * (x - (a + target * (b - a))).square().mean()

    def d(self, real: torch.Tensor, fake: torch.Tensor, real_target: torch.Tensor | float = 1.0,
          fake_target: torch.Tensor | float = 0.0) -> torch.Tensor:
        return self.term(real, real_target) + self.term(fake, fake_target)

    def g(self, fake: torch.Tensor) -> torch.Tensor:
        """nonsaturating: D's loss with the fakes labelled real (least squares: target c); minimax: minus D's
        loss on the fakes, i.e. G maximises what D minimises."""
        if self.g_loss == "minimax":
            return -self.term(fake, 0.0)
        if self.kind == "bce":
            return self.term(fake, 1.0)
        a, b, c = self.coding
        return 0.5 * (fake.float() - c).square().mean()


@dataclass(frozen=True)
class PairLoss:
    """A loss given as (d(real, fake), g(fake)) functions, e.g. hinge or Wasserstein: no label targets."""

    d_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    g_fn: Callable[[torch.Tensor], torch.Tensor]

    def d(self, real: torch.Tensor, fake: torch.Tensor, real_target: Any = 1.0, fake_target: Any = 0.0) -> torch.Tensor:
        return self.d_fn(real, fake)

    def g(self, fake: torch.Tensor) -> torch.Tensor:
        return self.g_fn(fake)


def check_label_tricks(tricks: TrainingTricks, loss: str, target_losses: tuple[str, ...]) -> None:
    """Refuse label tricks (2's minimax, 5-7) with a loss that has no label targets, naming the keys."""
    if loss in target_losses:
        return
    used = [key for key, on in (("g_loss=minimax", tricks.g_loss == "minimax"),
                                ("label_smoothing", tricks.label_smoothing), ("random_smoothing",
                                                                               tricks.random_smoothing),
                                ("label_flip", tricks.label_flip)) if on]
    if used:
        raise ConfigError(f"model.{used[0]}: works on label targets, which model.loss={loss} has none of; use "
                          f"loss {' or '.join(target_losses)}")


# -- 3: latents --------------------------------------------------------------------------------------------------


def phase_latents(tricks: TrainingTricks, ctx: PhaseContext, latent_dim: int) -> torch.Tensor:
    """A phase's latents (N, latent_dim): N(0, 1), or U[-1, 1)."""
    if tricks.latent_dist == "uniform":
        return ctx.rand(latent_dim) * 2 - 1
    return ctx.randn(latent_dim)


def draw_latents(tricks: TrainingTricks, n: int, latent_dim: int, generator: torch.Generator,
                 device: torch.device) -> torch.Tensor:
    """Latents for samples and metrics, from the same distribution as training's."""
    if tricks.latent_dist == "uniform":
        return torch.rand(n, latent_dim, generator=generator, device=device) * 2 - 1
    return torch.randn(n, latent_dim, generator=generator, device=device)


# -- 8: instance noise -------------------------------------------------------------------------------------------


def instance_noise_std(tricks: TrainingTricks, step: int) -> float:
    """The noise's std at `step` (0-based): instance_noise, falling linearly to 0 at instance_noise_steps."""
    if not tricks.instance_noise_steps:
        return float(tricks.instance_noise)
    return float(tricks.instance_noise) * max(0.0, 1.0 - step / tricks.instance_noise_steps)


def add_instance_noise(x: torch.Tensor, std: float, randn: Callable[..., torch.Tensor]) -> torch.Tensor:
    """x + std * N(0, 1), drawn per sample through `randn(*sample_shape)` (PhaseContext.randn)."""
    if std == 0:
        return x
    return x + std * randn(*x.shape[1:]).to(x.dtype)


# -- 4: D's mini-batches -----------------------------------------------------------------------------------------


def discriminate(d: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                 separate: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """D's scores on real and fake: two calls, so batch norm sees all-real and all-fake batches (separate),
    or one call on the concatenated batch, whose statistics then mix both."""
    if separate:
        return d(real), d(fake)
    scores = d(torch.cat([real, fake.to(real.dtype)]))
    return scores[:real.shape[0]], scores[real.shape[0]:]


# -- 15: early failure -------------------------------------------------------------------------------------------


class TrainingFailureWarning(UserWarning):
    """A GAN run shows a known sign of failure (trick 15)."""


class FailureMonitor:
    """Watches the losses of D and G, one value per step, and warns (TrainingFailureWarning, once per kind)
    when, over the last `patience` steps, D's loss stayed below `d_floor` (D wins: G gets no gradient), or
    G's loss fell steadily: each quarter of the window has a lower mean than the one before, by more than noise
    in all (G is fooling D, usually with garbage). Losses are kept as tensors and read every patience // 4
    steps, not every step."""

    def __init__(self, patience: int, d_floor: float = 1e-3) -> None:
        if patience < 8:
            raise ValueError(f"patience must be >= 8 steps, got {patience}")
        self.patience, self.d_floor = patience, d_floor
        self.check_every = patience // 4
        self._values: dict[str, deque] = {"D": deque(maxlen=patience), "G": deque(maxlen=patience)}
        self._last_step: dict[str, int | None] = {"D": None, "G": None}
        self._since_check = {"D": 0, "G": 0}
        self.fired: set[str] = set()

    def observe(self, network: str, step: int, loss: torch.Tensor | float) -> None:
        """Record this step's loss of "D" or "G" (several calls in one step, e.g. accumulation rounds: the last)."""
        values = self._values[network]
        value = loss.detach().float().reshape(()) if isinstance(loss, torch.Tensor) else torch.tensor(float(loss))
        if self._last_step[network] == step:
            values[-1] = value
            return
        self._last_step[network] = step
        values.append(value)
        self._since_check[network] += 1
        if len(values) == self.patience and self._since_check[network] >= self.check_every:
            self._since_check[network] = 0
            self._check(network, torch.stack(list(values)).cpu())

    def _check(self, network: str, window: torch.Tensor) -> None:
        if network in self.fired:
            return
        if network == "D" and bool((window < self.d_floor).all()):
            message = (f"D's loss has stayed below {self.d_floor:g} for {self.patience} steps: D wins and G gets "
                       f"no useful gradient (try label smoothing, instance noise, or a lower lr_d)")
        elif network == "G" and self._falling(window):
            message = (f"G's loss has fallen steadily for {self.patience} steps ({float(window[0]):.4g} -> "
                       f"{float(window[-1]):.4g}): G may be fooling D with garbage; look at the samples")
        else:
            return
        self.fired.add(network)
        warnings.warn(message, TrainingFailureWarning, stacklevel=2)

    @staticmethod
    def _falling(window: torch.Tensor) -> bool:
        """Each quarter's mean below the one before, and the fall from the first to the last quarter more
        than 3 standard errors of that difference, so that noise around a flat loss does not count."""
        chunks = window.chunk(4)
        means = torch.stack([chunk.mean() for chunk in chunks])
        spread = torch.stack([chunk.var() for chunk in chunks]).mean().sqrt()
        standard_error = spread * (2 / len(chunks[0])) ** 0.5
        return bool((means[1:] < means[:-1]).all() and means[0] - means[-1] > 3 * standard_error)


# -- the family ---------------------------------------------------------------------------------------------------


class AdversarialFamily(Family):
    """A family of a G from latents and a D, trained by a D phase every step and a G phase every d_steps, with
    the tricks of its Config (a TrainingTricks) applied. Subclasses give `networks(spec)` and `make_loss()`;
    their Config also has latent_dim, lr_g, lr_d, betas_g and betas_d."""

    def networks(self, spec: DataSpec) -> tuple[nn.Module, nn.Module]:
        """(G, D) for this data, with tricks 1, 9 and 10 built in."""
        raise NotImplementedError

    def make_loss(self) -> TargetLoss | PairLoss:
        raise NotImplementedError

    def build(self, spec: DataSpec) -> dict[str, Network]:
        c = self.config
        g, d = self.networks(spec)
        self.spec = spec
        self.loss = self.make_loss()
        self.monitor = FailureMonitor(c.failure_patience, c.failure_d_loss) if c.failure_patience else None
        return {"G": Network(g, lr=c.lr_g, betas=c.betas_g, ema=True),
                "D": Network(d, lr=c.lr_d, betas=c.betas_d, optimizer=c.optimizer_d, momentum=c.momentum_d)}

    def phases(self) -> list[Phase]:
        return [Phase("D", "D", self.loss_d), Phase("G", "G", self.loss_g, every=self.config.d_steps)]

    def make_latents(self, n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
        return draw_latents(self.config, n, self.config.latent_dim, generator, device)

    def _observe(self, network: str, ctx: PhaseContext, loss: torch.Tensor) -> None:
        if self.monitor is not None:
            self.monitor.observe(network, ctx.step, loss)

    def loss_d(self, ctx: PhaseContext) -> dict[str, torch.Tensor]:
        c = self.config
        real = ctx.batch[self.spec.key]
        fake = ctx.nets["G"](phase_latents(c, ctx, c.latent_dim)).detach()
        std = instance_noise_std(c, ctx.step)
        real, fake = add_instance_noise(real, std, ctx.randn), add_instance_noise(fake, std, ctx.randn)
        real_score, fake_score = discriminate(ctx.nets["D"], real, fake, c.separate_batches)
        real_target, fake_target = label_targets(c, ctx.rand)
        loss = self.loss.d(real_score, fake_score, real_target, fake_target)
        self._observe("D", ctx, loss)
        return {"loss": loss, "real_score": real_score.detach().float().mean(),
                "fake_score": fake_score.detach().float().mean()}

    def loss_g(self, ctx: PhaseContext) -> dict[str, torch.Tensor]:
        c = self.config
        fake = ctx.nets["G"](phase_latents(c, ctx, c.latent_dim))
        fake = add_instance_noise(fake, instance_noise_std(c, ctx.step), ctx.randn)
        loss = self.loss.g(ctx.nets["D"](fake))
        self._observe("G", ctx, loss)
        return {"loss": loss}
