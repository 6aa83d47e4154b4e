"""CycleGAN (Zhu et al., 2017): unpaired translation between domains A and B with cycle consistency.

G_A: A -> B and G_B: B -> A; D_A scores domain B (real B against G_A's fakes), D_B domain A, with
the LSGAN loss. G minimises both adversarial losses + lambda_A * |G_B(G_A(a)) - a| + lambda_B *
|G_A(G_B(b)) - b| (lambda 10) + the identity losses lambda_identity * lambda * |G_A(b) - b| (and for
G_B), all as in the reference (junyanz/pytorch-CycleGAN-and-pix2pix). Each D is trained on a pool of
its 50 last fakes (ImagePool) and its loss is halved. The two generators are one optimised network
("G", submodules G_A and G_B), and so are the two discriminators ("D": D_A, D_B), as the reference
optimises them with one Adam each. Phases in the reference order: G, then D on the fakes G made.

With instance norm (the default) every sample is normalised on its own, so the generators translate
a and b in one batched call each and D scores real and fake in one: the same numbers, fewer calls.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gancore.families import register_family
from gancore.families.base import (
    BenchCase,
    ConfigError,
    DataSpec,
    Network,
    Phase,
    PhaseContext,
    check_choice,
    check_positive,
)
from gancore.families.pix2pix import (
    GAN_MODES,
    NET_D,
    ImageTranslation,
    build_discriminator,
    build_generator,
    check_generator_name,
    check_schedule,
    gan_loss,
    resolve_generator,
)
from gancore.models.pix2pix import NORMS


class ImagePool:
    """The reference's history of generated images (Shrivastava et al., 2017): until `size` images are
    stored, each query stores and returns its images; then each image is swapped, with probability 1/2,
    for a random stored one (which it replaces). size 0 returns the images unchanged. Draws use the
    global torch RNG, which the trainer seeds per process and keeps in its checkpoints."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.images: list[torch.Tensor] = []

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return images
        out = []
        for image in images.detach():
            image = image.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(image)
                out.append(image)
            elif torch.rand(()) < 0.5:
                k = int(torch.randint(self.size, ()))
                out.append(self.images[k])
                self.images[k] = image
            else:
                out.append(image)
        return torch.cat(out)


class NetworkPair(nn.Module):
    """Two networks optimised as one (G_A and G_B, or D_A and D_B). The keys are the reference's under
    the member's name ("G_A.model.0.weight"); forward(x, member) runs one member, so DDP sees the call."""

    def __init__(self, **members: nn.Module) -> None:
        super().__init__()
        for name, module in members.items():
            self.add_module(name, module)

    def forward(self, x: torch.Tensor, member: str) -> torch.Tensor:
        return getattr(self, member)(x)


def _member(pair: nn.Module, member: str) -> nn.Module:
    """A member network itself (for the fused head), unless the pair is DDP-wrapped."""
    return getattr(pair, member) if isinstance(pair, NetworkPair) else _Call(pair, member)


class _Call(nn.Module):
    """pair(x, member) as a module call, for a DDP-wrapped pair."""

    def __init__(self, pair: nn.Module, member: str) -> None:
        super().__init__()
        self.pair, self.member = pair, member

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pair(x, self.member)


@dataclass
class CycleGANConfig:
    netG: str = "resnet_9blocks"  # resnet_9blocks (the paper at 256x256), resnet_6blocks (128x128), unet_<n>
    netD: str = "basic"  # basic (70x70 PatchGAN), n_layers (n_layers_D), pixel (1x1)
    n_layers_D: int = 3
    ngf: int = 64
    ndf: int = 64
    norm: str = "instance"
    dropout: bool = False
    gan_mode: str = "lsgan"
    lambda_A: float = 10.0  # cycle A -> B -> A
    lambda_B: float = 10.0  # cycle B -> A -> B
    lambda_identity: float = 0.5  # identity losses, as a fraction of lambda_A / lambda_B; 0 disables them
    pool_size: int = 50
    lr: float = 2e-4
    beta1: float = 0.5
    n_epochs: int = 100
    n_epochs_decay: int = 100
    fused: bool = True  # gancore's fused ops; false builds the same networks from plain torch.nn

    def __post_init__(self) -> None:
        check_generator_name("model.netG", self.netG)
        check_choice("model.netD", self.netD, NET_D)
        check_choice("model.norm", self.norm, NORMS)
        check_choice("model.gan_mode", self.gan_mode, GAN_MODES)
        for key in ("n_layers_D", "ngf", "ndf"):
            check_positive(f"model.{key}", getattr(self, key))
        for key in ("lambda_A", "lambda_B", "lambda_identity", "pool_size"):
            check_positive(f"model.{key}", getattr(self, key), 0)
        check_schedule(self)


@register_family
class CycleGAN(ImageTranslation):
    name = "cyclegan"
    summary = "CycleGAN (Zhu et al. 2017): two ResNet Gs, two PatchGAN Ds, LSGAN + cycle 10 + identity 5, pools"
    Config = CycleGANConfig
    default_data = {"name": "color-domains", "resolution": 64}
    path_data = "unaligned"
    bench_cases = {"full": BenchCase("256x256", ("data.resolution=256", "model.netG=resnet_9blocks"), (1, 4)),
                   "quick": BenchCase("64x64", ("data.resolution=64", "model.netG=resnet_6blocks", "model.ngf=16",
                                                "model.ndf=16"), (1, 2))}

    def __init__(self, config: CycleGANConfig) -> None:
        super().__init__(config)
        self.pools = {"A": ImagePool(config.pool_size), "B": ImagePool(config.pool_size)}
        self._fakes: list[tuple[torch.Tensor, torch.Tensor]] = []  # from the G phase, per round, for D's

    def build(self, spec: DataSpec) -> dict[str, Network]:
        c = self.config
        shape_a, shape_b = self._input_shapes(spec)
        if len(shape_a) != 3 or len(shape_b) != 3:
            raise ConfigError(f"cyclegan needs images, got A {shape_a} and B {shape_b}")
        if c.lambda_identity > 0 and shape_a[0] != shape_b[0]:
            raise ConfigError(f"model.lambda_identity > 0 needs domains with equal channels, got A {shape_a[0]} "
                              f"and B {shape_b[0]}; set it to 0")
        self.netG = resolve_generator(c.netG, *shape_a[1:])
        resolve_generator(c.netG, *shape_b[1:])
        self.spec = spec
        # Per-sample norms allow translating the real and identity inputs of a generator in one call.
        self.batched = c.norm != "batch"
        betas = (c.beta1, 0.999)
        (ca, cb), net = (shape_a[0], shape_b[0]), self.netG
        g = NetworkPair(G_A=build_generator(net, ca, cb, c.ngf, c.norm, c.dropout, c.fused),
                        G_B=build_generator(net, cb, ca, c.ngf, c.norm, c.dropout, c.fused))
        d = NetworkPair(D_A=build_discriminator(c.netD, cb, c.ndf, c.n_layers_D, c.norm, c.gan_mode, c.fused),
                        D_B=build_discriminator(c.netD, ca, c.ndf, c.n_layers_D, c.norm, c.gan_mode, c.fused))
        return {"G": Network(g, lr=c.lr, betas=betas), "D": Network(d, lr=c.lr, betas=betas)}

    def phases(self) -> list[Phase]:
        return [Phase("G", "G", self.loss_g), Phase("D", "D", self.loss_d)]

    def _translate_with_identity(self, g: nn.Module, member: str, x: torch.Tensor,
                                 same: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(member(x), member(same)): the identity input rides in the same call when norms allow it."""
        if same is None:
            return g(x, member), None
        if self.batched:
            out = g(torch.cat([x, same]), member)
            return out[:x.shape[0]], out[x.shape[0]:]
        return g(x, member), g(same, member)

    def loss_g(self, ctx: PhaseContext) -> dict[str, torch.Tensor]:
        c = self.config
        g, d = ctx.nets["G"], ctx.nets["D"]
        real_a, real_b = ctx.batch["A"], ctx.batch["B"]
        identity = c.lambda_identity > 0
        fake_b, idt_a = self._translate_with_identity(g, "G_A", real_a, real_b if identity else None)
        fake_a, idt_b = self._translate_with_identity(g, "G_B", real_b, real_a if identity else None)
        rec_a, rec_b = g(fake_b, "G_B"), g(fake_a, "G_A")
        out = {"G_A": gan_loss(_member(d, "D_A"), fake_b, True, c.gan_mode),
               "G_B": gan_loss(_member(d, "D_B"), fake_a, True, c.gan_mode),
               "cycle_A": F.l1_loss(rec_a.float(), real_a.float()) * c.lambda_A,
               "cycle_B": F.l1_loss(rec_b.float(), real_b.float()) * c.lambda_B}
        if identity:
            out["idt_A"] = F.l1_loss(idt_a.float(), real_b.float()) * c.lambda_B * c.lambda_identity
            out["idt_B"] = F.l1_loss(idt_b.float(), real_a.float()) * c.lambda_A * c.lambda_identity
        self._fakes.append((fake_b.detach(), fake_a.detach()))
        loss = torch.stack(list(out.values())).sum()
        return {"loss": loss, **{k: v.detach() for k, v in out.items()}}

    def _d_loss(self, d: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """0.5 * (loss on real + loss on fake), the reference's; one call for both when norms allow it
        (the mean over both halves of equal size is that half-sum)."""
        mode = self.config.gan_mode
        fake = fake.to(real.dtype)
        if self.batched and real.shape == fake.shape:
            n = real.shape[0]
            target = torch.cat([real.new_ones(n, 1, 1, 1), real.new_zeros(n, 1, 1, 1)]).float()
            return gan_loss(d, torch.cat([real, fake]), target, mode)
        return 0.5 * (gan_loss(d, real, True, mode) + gan_loss(d, fake, False, mode))

    def loss_d(self, ctx: PhaseContext) -> dict[str, torch.Tensor]:
        if not self._fakes:
            raise RuntimeError("cyclegan: the D phase runs on the fakes of the G phase, which has not run")
        fake_b, fake_a = self._fakes.pop(0)
        d = ctx.nets["D"]
        loss_a = self._d_loss(_member(d, "D_A"), ctx.batch["B"], self.pools["B"].query(fake_b))
        loss_b = self._d_loss(_member(d, "D_B"), ctx.batch["A"], self.pools["A"].query(fake_a))
        return {"loss": loss_a + loss_b, "D_A": loss_a.detach(), "D_B": loss_b.detach()}

    def state_dict(self) -> dict:
        return {"pools": {k: list(p.images) for k, p in self.pools.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for k, images in state.get("pools", {}).items():
            self.pools[k].images = list(images)

    def generate(self, nets: Mapping[str, nn.Module], latents: torch.Tensor) -> torch.Tensor:
        return nets["G"](latents, "G_A")
