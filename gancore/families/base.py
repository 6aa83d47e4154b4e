"""The contract between a GAN family and the trainer.

A family declares, and the trainer executes:
- `Config`: a dataclass of the family's hyper-parameters (the `model:` section of a run config);
- `build(spec)`: its networks as `Network`s (module + optimiser settings + EMA / double-backward flags);
- `phases()`: what to optimise and how often, as `Phase`s, e.g. D every step and G every n_critic
  steps, or a lazy regulariser every k steps (the phases of stylegan2-ada's accumulate_gradients);
- `make_latents` / `generate`: how to turn latent inputs into samples, for grids and metrics.

A phase's loss function receives a `PhaseContext` with the networks, this micro-batch and random
draws, and returns {"loss": scalar, other scalars to log...}. The trainer owns everything else:
devices, precision, DDP, gradient accumulation, optimiser steps, EMA, checkpoints and logs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from gancore.errors import ConfigError
from gancore.utils.visual import save_samples


def check_choice(key: str, value: object, choices: tuple) -> None:
    if value not in choices:
        raise ConfigError(f"{key}: must be one of {list(choices)}, got {value!r}")


def check_positive(key: str, value: float, minimum: float = 1) -> None:
    if value < minimum:
        raise ConfigError(f"{key}: must be >= {minimum}, got {value!r}")


def check_power_of_two(key: str, value: int, minimum: int = 8) -> None:
    if not isinstance(value, int) or value < minimum or value & (value - 1):
        raise ConfigError(f"{key}: must be a power of two >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class DataSpec:
    """What the data looks like, as far as building networks is concerned."""

    key: str  # the batch entry a generator learns (dataset.sample_key)
    shape: tuple[int, ...]  # of one sample under `key`
    num_classes: int | None = None

    def as_dict(self) -> dict:
        return {"key": self.key, "shape": list(self.shape), "num_classes": self.num_classes}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DataSpec:
        return cls(str(d["key"]), tuple(int(s) for s in d["shape"]), d.get("num_classes"))


@dataclass(frozen=True)
class BenchCase:
    """A preset of `gancore bench --suite families`: one training step of the family at these settings,
    on its default built-in data (drawn once, before timing)."""

    label: str  # how the case is named in the table, e.g. "256x256"
    overrides: tuple[str, ...] = ()  # KEY=VALUE, as for `gancore train --set`
    batches: tuple[int, ...] = (1,)
    #: Trainer steps per timed sample: n_critic for a family whose G runs every n_critic steps, so that a
    #: sample is one whole round (n_critic D updates and one G update) and not mostly D-only steps.
    steps: int = 1


@dataclass
class Network:
    """A trainable network and how to optimise it (each network its own optimiser and rates: TTUR)."""

    module: nn.Module
    lr: float
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    #: "adam", "rmsprop" (WGAN's weight-clipped critic) or "sgd" (e.g. SGD for D, Adam for G).
    optimizer: str = "adam"
    #: Momentum of "sgd" and "rmsprop" (Adam uses `betas`).
    momentum: float = 0.0
    #: Keep an exponential moving average of the weights (for generators), when train.ema_beta > 0.
    ema: bool = False
    #: Differentiated twice (e.g. a critic under a gradient penalty): never wrapped by torch.compile.
    double_backward: bool = False


@dataclass
class PhaseContext:
    """What a phase's loss function sees for one micro-batch.

    `nets[name]` is the network to call: the one this phase optimises (DDP-wrapped when
    distributed), the others frozen (no parameter gradients). `randn`/`rand` draw per-sample
    tensors for this micro-batch such that N processes draw exactly what one process with the
    same global batch would, which keeps multi-process runs equal to single-process ones.
    `scaler` is the trainer's GradScaler while fp16 loss scaling is on (else None): pass it to
    gancore.ops.gradient_penalty(scaler=) so the inner gradient does not underflow.
    """

    nets: Mapping[str, nn.Module]
    batch: Mapping[str, Any]
    step: int
    batch_size: int
    _draw: Callable[[str, tuple[int, ...]], torch.Tensor]
    scaler: torch.amp.GradScaler | None = None

    def randn(self, *shape: int) -> torch.Tensor:
        """Standard normal, shape (batch_size, *shape)."""
        return self._draw("randn", shape)

    def rand(self, *shape: int) -> torch.Tensor:
        """Uniform on [0, 1), shape (batch_size, *shape)."""
        return self._draw("rand", shape)


def check_image_spec(family: str, spec: DataSpec, channels: int, resolution: int) -> None:
    """Refuse data whose samples are not (channels, resolution, resolution) images, saying what came."""
    want = (channels, resolution, resolution)
    if tuple(spec.shape) != want:
        raise ConfigError(f"{family} needs images of shape {want} under '{spec.key}', but the data gives "
                          f"{tuple(spec.shape)}: pick an image dataset (data.name) or set model.resolution / "
                          f"model.channels to match")


PhaseLoss = Callable[[PhaseContext], dict[str, torch.Tensor]]


@dataclass(frozen=True)
class Phase:
    """Optimise `network` with `loss` on every step where (step + 1) % every == 0.

    With every=n the phase runs after n steps of the others, e.g. G after n_critic D updates.
    A lazy regulariser scales its own loss by its interval, as stylegan2 does.
    """

    name: str
    network: str
    loss: PhaseLoss
    every: int = 1
    #: Called with the optimised (unwrapped) module after each applied update, under no_grad:
    #: e.g. WGAN's weight clipping.
    after_step: Callable[[nn.Module], None] | None = None

    def due(self, step: int) -> bool:
        return (step + 1) % self.every == 0

    def schedule(self) -> str:
        """When the phase runs, in words (the trainer's dry-run plan)."""
        return "every step" if self.every == 1 else f"every {self.every} steps"


class Family:
    """Base class of GAN families. Subclasses set `name`, `summary`, `Config` and the methods below."""

    name: ClassVar[str]
    summary: ClassVar[str]
    Config: ClassVar[type]
    #: The `data:` section used when the user gives none (built-in data, so a bare run works).
    default_data: ClassVar[dict] = {"name": "shapes"}
    #: The dataset type that `--data PATH` reads, unless the config names another file-based one.
    path_data: ClassVar[str] = "image-folder"
    #: `train:` options whose defaults this family changes (e.g. its paper's batch size).
    default_train: ClassVar[dict] = {}
    #: Its presets in `gancore bench --suite families`: {"full": BenchCase, "quick": BenchCase}.
    bench_cases: ClassVar[dict[str, BenchCase]] = {}

    def __init__(self, config: Any) -> None:
        self.config = config
        self.spec: DataSpec | None = None
        #: The training data, set by the trainer before build(); None elsewhere (e.g. `gancore sample`).
        self.dataset: Any = None

    @classmethod
    def make_config(cls, values: Mapping[str, Any] | None = None) -> Any:
        """The family's Config from a dict (types already checked by gancore.train.config)."""
        return cls.Config(**(values or {}))

    def data_hints(self) -> dict:
        """Options passed to the dataset when it has them and the user left them unset: by default the
        config's `resolution` and `channels`, where it has them."""
        return {key: getattr(self.config, key) for key in ("resolution", "channels") if hasattr(self.config, key)}

    def build(self, spec: DataSpec) -> dict[str, Network]:
        raise NotImplementedError

    def phases(self) -> list[Phase]:
        raise NotImplementedError

    def lr_factor(self, epoch: int) -> float:
        """A factor on every learning rate during `epoch` (0-based passes over the data), applied on top
        of train.lr_schedule: the epoch-wise schedules of papers (pix2pix: constant, then linear to 0)."""
        return 1.0

    def state_dict(self) -> dict:
        """Training state the family keeps outside its networks (e.g. CycleGAN's image pools), for checkpoints."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what state_dict() returned."""

    def make_latents(self, n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
        """The inputs of `n` samples: by default Gaussian latents of the config's `latent_dim`."""
        latent_dim = getattr(self.config, "latent_dim", None)
        if latent_dim is None:
            raise NotImplementedError(f"family {self.name!r} has no latent_dim: it must define make_latents")
        return torch.randn(n, latent_dim, generator=generator, device=device)

    def generate(self, nets: Mapping[str, nn.Module], latents: torch.Tensor) -> torch.Tensor:
        """Samples from the inputs make_latents drew: by default the generator "G" applied to them."""
        return nets["G"](latents)

    def make_sample_inputs(self, n: int, generator: torch.Generator, device: torch.device) -> dict[str, Any]:
        """The fixed inputs of the run's sample pictures, saved in its run folder so that a resumed run (and
        `gancore sample`) shows the same ones: "latents" (what generate() takes) and, for image-to-image
        families, "inputs" and "targets": (N, C, H, W) images shown beside each output (input | output |
        target). By default only make_latents()."""
        return {"latents": self.make_latents(n, generator, device)}

    def sample_text(self, samples: torch.Tensor) -> list[str] | None:
        """Samples as text, one string each, for families whose samples are token sequences (SeqGAN); None for
        pictures. With text, save_samples writes them one per line to a .txt file beside its .png path, and
        the run report shows that text."""
        return None

    def save_samples(self, samples: torch.Tensor, path: str) -> None:
        """Write generated samples as a PNG: a grid for images, a scatter plot for 2-D points."""
        text = self.sample_text(samples)
        if text is not None:
            with open(os.path.splitext(path)[0] + ".txt", "w", encoding="utf-8") as f:
                f.write("".join(line.replace("\n", " ") + "\n" for line in text))
            return
        save_samples(samples, path)
