"""pix2pix (Isola et al., 2017): paired image-to-image translation with a conditional PatchGAN.

G(A) -> B; D scores cat(A, B) patch by patch. D minimises the GAN loss (vanilla: BCE with logits,
or lsgan) on real and fake pairs, halved; G minimises the GAN loss of its pairs plus lambda_L1 * L1
to the target (lambda 100). Adam(2e-4, 0.5, 0.999); the learning rate is constant for n_epochs and
then falls linearly to 0 over n_epochs_decay, epoch by epoch, as in the reference
(junyanz/pytorch-CycleGAN-and-pix2pix). Phases in the reference order: D on the current fakes, then G.

The helpers here (networks by reference name, the PatchGAN loss with its fused head, the schedule,
sample inputs read from the data) are CycleGAN's too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

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
    check_positive,
)
from gancore.models.pix2pix import NORMS, NLayerDiscriminator, PixelDiscriminator, ResnetGenerator, UnetGenerator
from gancore.nn import PatchGANHead

GAN_MODES = ("vanilla", "lsgan")
DIRECTIONS = ("AtoB", "BtoA")
NET_D = ("basic", "n_layers", "pixel")
#: The fused PatchGAN head's name for each GAN loss.
_HEAD_LOSS = {"vanilla": "bce", "lsgan": "lsgan"}


def check_generator_name(key: str, name: str) -> None:
    """resnet_<n>blocks, unet_<2^k> (k >= 5; unet_256 and unet_128 are the reference's) or auto."""
    if name == "auto" or _resnet_blocks(name) is not None or _unet_downs(name) is not None:
        return
    raise ConfigError(f"{key}: expected resnet_9blocks, resnet_6blocks (resnet_<n>blocks), unet_256, unet_128 "
                      f"(unet_<power of two >= 32>) or auto, got {name!r}")


def _resnet_blocks(name: str) -> int | None:
    if name.startswith("resnet_") and name.endswith("blocks") and name[7:-6].isdigit():
        return int(name[7:-6])
    return None


def _unet_downs(name: str) -> int | None:
    size = name[5:]
    if name.startswith("unet_") and size.isdigit() and int(size) >= 32 and int(size) & (int(size) - 1) == 0:
        return int(size).bit_length() - 1
    return None


def resolve_generator(name: str, height: int, width: int) -> str:
    """The generator `name` stands for at (height, width), checked against that size. "auto" is the U-Net
    as deep as the image allows, at most unet_256 (the reference's at its 256x256)."""
    if name == "auto":
        levels = min(8, (math.gcd(height, width) & -math.gcd(height, width)).bit_length() - 1)
        if levels < 5:
            raise ConfigError(f"model.netG=auto: {height}x{width} images do not halve 5 times, as a U-Net needs; "
                              f"use model.netG=resnet_9blocks (sides a multiple of 4)")
        return f"unet_{2 ** levels}"
    downs = _unet_downs(name)
    if downs is not None and (height % 2 ** downs or width % 2 ** downs):
        raise ConfigError(f"model.netG={name} needs image sides that are multiples of {2 ** downs}, the data "
                          f"gives {height}x{width}: pick a smaller U-Net (unet_<n>), resnet_9blocks, or crop")
    if downs is None and (height % 4 or width % 4):
        raise ConfigError(f"model.netG={name} needs image sides that are multiples of 4, the data gives "
                          f"{height}x{width} (data.preprocess=none rounds them)")
    return name


def build_generator(name: str, input_nc: int, output_nc: int, ngf: int, norm: str, dropout: bool,
                    fused: bool) -> nn.Module:
    """A reference generator by its reference name (resolved: not "auto")."""
    blocks = _resnet_blocks(name)
    if blocks is not None:
        return ResnetGenerator(input_nc, output_nc, ngf, norm, dropout, n_blocks=blocks, fused=fused)
    return UnetGenerator(input_nc, output_nc, _unet_downs(name), ngf, norm, dropout, fused=fused)


def _patch_layers(d: nn.Module) -> nn.Sequential:
    return d.net if isinstance(d, PixelDiscriminator) else d.model


def build_discriminator(name: str, input_nc: int, ndf: int, n_layers: int, norm: str, gan_mode: str,
                        fused: bool) -> nn.Module:
    """basic (the 70x70 PatchGAN, n_layers=3), n_layers or pixel (1x1). Fused, the last conv becomes a
    PatchGANHead, which scores its patches and reduces the loss in one op (the keys stay the conv's)."""
    if name == "pixel":
        d = PixelDiscriminator(input_nc, ndf, norm, fused=fused)
    else:
        d = NLayerDiscriminator(input_nc, ndf, 3 if name == "basic" else n_layers, norm, fused=fused)
    if fused:
        layers = _patch_layers(d)
        layers[-1] = PatchGANHead.from_conv(layers[-1], loss=_HEAD_LOSS[gan_mode])
    return d


def gan_loss(d: nn.Module, x: torch.Tensor, real: bool | torch.Tensor, gan_mode: str) -> torch.Tensor:
    """The reference GANLoss of D's patch logits on x against target 1 (real) or 0 (fake), or a per-sample
    target tensor (N, 1, 1, 1): mean BCE with logits (vanilla) or mean squared error (lsgan), float32.
    Through the fused head when D has one and is called directly (DDP needs its own forward)."""
    target = float(real) if isinstance(real, bool) else real
    layers = None if isinstance(d, DistributedDataParallel) else _patch_layers(d)
    if layers is not None and isinstance(layers[-1], PatchGANHead):
        return layers[-1].loss(layers[:-1](x), target)
    logits = d(x).float()
    target = torch.as_tensor(target, dtype=logits.dtype, device=logits.device).expand_as(logits)
    if gan_mode == "lsgan":
        return F.mse_loss(logits, target)
    return F.binary_cross_entropy_with_logits(logits, target)


def linear_decay(epoch: int, n_epochs: int, n_epochs_decay: int) -> float:
    """The reference "linear" policy: 1 for epochs 0..n_epochs-1, then 1 - k / (n_epochs_decay + 1) in the
    k-th epoch after, reaching 1 / (n_epochs_decay + 1) in the last; 0 after the schedule's end."""
    return max(0.0, 1.0 - max(0, epoch + 1 - n_epochs) / (n_epochs_decay + 1))


def check_schedule(config: object) -> None:
    check_positive("model.lr", config.lr, 1e-12)
    if not 0.0 <= config.beta1 < 1.0:
        raise ConfigError(f"model.beta1: must be in [0, 1), got {config.beta1}")
    check_positive("model.n_epochs", config.n_epochs, 0)
    check_positive("model.n_epochs_decay", config.n_epochs_decay, 0)


class ImageTranslation(Family):
    """What pix2pix and CycleGAN share: the sample inputs come from the data, the schedule is epoch-wise."""

    default_train = {"batch_size": 1}
    #: Data key of the sample inputs (the generator that makes samples reads it).
    source_key = "A"
    #: Data key of what a sample input should translate to, for paired data (None: unpaired).
    target_key: str | None = None

    def lr_factor(self, epoch: int) -> float:
        return linear_decay(epoch, self.config.n_epochs, self.config.n_epochs_decay)

    def _input_shapes(self, spec: DataSpec) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(shape of A, shape of B), from the data when the trainer gave it, else both the spec's."""
        if self.dataset is None:
            return tuple(spec.shape), tuple(spec.shape)
        first = self.dataset[0]
        missing = [k for k in ("A", "B") if not isinstance(first.get(k), torch.Tensor)]
        if missing:
            raise ConfigError(f"{self.name} needs data with images 'A' and 'B' ({self.path_data} folders or a "
                              f"built-in such as {self.default_data['name']}); the samples have {sorted(first)}")
        return tuple(first["A"].shape), tuple(first["B"].shape)

    def _sample_rows(self, n: int, generator: torch.Generator) -> list[dict]:
        if self.dataset is None:
            raise ConfigError(f"{self.name} translates images, so its samples need input images: use "
                              "`gancore translate RUN --input DIR --out DIR`")
        picks = torch.randint(len(self.dataset), (n,), generator=generator, device=generator.device).tolist()
        return [self.dataset[i] for i in picks]

    def make_latents(self, n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
        """n input images drawn from the training data (the inputs that sample grids and metrics translate)."""
        return torch.stack([row[self.source_key] for row in self._sample_rows(n, generator)]).to(device)

    def make_sample_inputs(self, n: int, generator: torch.Generator, device: torch.device) -> dict[str, Any]:
        """make_latents' images (the same draw), shown beside their translations, with their targets when the
        data is paired."""
        rows = self._sample_rows(n, generator)
        source = torch.stack([row[self.source_key] for row in rows]).to(device)
        out = {"latents": source, "inputs": source}
        if self.target_key is not None:
            out["targets"] = torch.stack([row[self.target_key] for row in rows]).to(device)
        return out


@dataclass
class Pix2PixConfig:
    netG: str = "auto"  # unet_256 (the paper), unet_128, unet_<2^k>, resnet_9blocks, resnet_6blocks; auto: by size
    netD: str = "basic"  # basic (70x70 PatchGAN), n_layers (n_layers_D), pixel (1x1)
    n_layers_D: int = 3
    ngf: int = 64
    ndf: int = 64
    norm: str = "batch"
    dropout: bool = True  # dropout 0.5 in the U-Net's middle decoder blocks (or the ResNet blocks)
    gan_mode: str = "vanilla"
    lambda_L1: float = 100.0
    direction: str = "AtoB"
    lr: float = 2e-4
    beta1: float = 0.5
    n_epochs: int = 100  # epochs at the initial learning rate
    n_epochs_decay: int = 100  # epochs of linear decay to 0 after them
    fused: bool = True  # gancore's fused ops; false builds the same networks from plain torch.nn

    def __post_init__(self) -> None:
        check_generator_name("model.netG", self.netG)
        check_choice("model.netD", self.netD, NET_D)
        check_choice("model.norm", self.norm, NORMS)
        check_choice("model.gan_mode", self.gan_mode, GAN_MODES)
        check_choice("model.direction", self.direction, DIRECTIONS)
        for key in ("n_layers_D", "ngf", "ndf"):
            check_positive(f"model.{key}", getattr(self, key))
        check_positive("model.lambda_L1", self.lambda_L1, 0)
        check_schedule(self)


@register_family
class Pix2Pix(ImageTranslation):
    name = "pix2pix"
    summary = "pix2pix (Isola et al. 2017): U-Net G, conditional 70x70 PatchGAN D, GAN + 100 L1, paired data"
    Config = Pix2PixConfig
    default_data = {"name": "shapes-edges", "resolution": 64}
    path_data = "aligned"
    bench_cases = {"full": BenchCase("256x256", ("data.resolution=256", "model.netG=unet_256"), (1, 4)),
                   "quick": BenchCase("64x64", ("data.resolution=64", "model.netG=unet_64", "model.ngf=16",
                                                "model.ndf=16"), (1, 2))}

    def __init__(self, config: Pix2PixConfig) -> None:
        super().__init__(config)
        self.source_key, self.target_key = ("A", "B") if config.direction == "AtoB" else ("B", "A")

    def build(self, spec: DataSpec) -> dict[str, Network]:
        c = self.config
        shapes = dict(zip("AB", self._input_shapes(spec)))
        source, target = shapes[self.source_key], shapes[self.target_key]
        if len(source) != 3 or len(target) != 3 or source[1:] != target[1:]:
            raise ConfigError(f"pix2pix needs aligned images of one size, got A {shapes['A']} and B {shapes['B']}")
        self.netG = resolve_generator(c.netG, *source[1:])
        self.spec = spec
        betas = (c.beta1, 0.999)
        g = build_generator(self.netG, source[0], target[0], c.ngf, c.norm, c.dropout, c.fused)
        d = build_discriminator(c.netD, source[0] + target[0], c.ndf, c.n_layers_D, c.norm, c.gan_mode, c.fused)
        return {"G": Network(g, lr=c.lr, betas=betas), "D": Network(d, lr=c.lr, betas=betas)}

    def phases(self) -> list[Phase]:
        return [Phase("D", "D", self.loss_d), Phase("G", "G", self.loss_g)]

    def loss_d(self, ctx: PhaseContext) -> dict[str, torch.Tensor]:
        real_a, real_b = ctx.batch[self.source_key], ctx.batch[self.target_key]
        with torch.no_grad():  # G is frozen in this phase: its forward needs no graph
            fake_b = ctx.nets["G"](real_a)
        d, mode = ctx.nets["D"], self.config.gan_mode
        # Two calls, as in the reference: with batch norm, real and fake pairs are normalised apart.
        loss_fake = gan_loss(d, torch.cat([real_a, fake_b.to(real_a.dtype)], 1), False, mode)
        loss_real = gan_loss(d, torch.cat([real_a, real_b], 1), True, mode)
        return {"loss": 0.5 * (loss_fake + loss_real), "real": loss_real.detach(), "fake": loss_fake.detach()}

    def loss_g(self, ctx: PhaseContext) -> dict[str, torch.Tensor]:
        real_a, real_b = ctx.batch[self.source_key], ctx.batch[self.target_key]
        fake_b = ctx.nets["G"](real_a)
        adversarial = gan_loss(ctx.nets["D"], torch.cat([real_a, fake_b.to(real_a.dtype)], 1), True,
                               self.config.gan_mode)
        l1 = F.l1_loss(fake_b.float(), real_b.float()) * self.config.lambda_L1
        return {"loss": adversarial + l1, "gan": adversarial.detach(), "L1": l1.detach()}

    def generate(self, nets: Mapping[str, nn.Module], latents: torch.Tensor) -> torch.Tensor:
        return nets["G"](latents)
