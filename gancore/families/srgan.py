"""SRResNet and SRGAN (Ledig et al., 2017): single-image super-resolution, two families.

- `srresnet`: the generator alone with the MSE loss, Adam(1e-4). The paper trains it at a constant rate
  (10^6 updates); `train.lr_schedule=step` gives the SRGAN schedule here too.
- `srgan`: the same generator, initialised from an SRResNet run (`model.init_from`), against the SRGAN
  discriminator: content loss plus 1e-3 x the non-saturating adversarial loss, Adam(1e-4) with a step to
  1e-5 halfway (`train.lr_schedule=step`, its default). The content loss is VGG54 by default: the MSE
  between the relu5_4 feature maps (4th conv of the 5th block, after its ReLU) of SR and HR, each
  rescaled by 1/12.75 as in the paper; vgg22 (relu2_2) and mse (SRGAN-MSE) are the paper's other variants.
  The VGG19 weights come from a file the user names (`model.vgg_weights`, torchvision's layout).

Data: 96x96 HR crops and their bicubic downscale, made on the fly ("super-resolution" folders, or the
built-in "sr-textures"). Images stay in gancore's [-1, 1] for both LR and HR (the paper fed LR in [0, 1]);
VGG sees them mapped to [0, 1] and normalised with ImageNet's statistics, as torchvision's weights expect.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

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
    check_power_of_two,
)
from gancore.losses import d_nonsaturating, g_nonsaturating
from gancore.models.srgan import SR_HEADS, SRGANDiscriminator, SRResNet
from gancore.models.vgg import VGG19Features
from gancore.train import checkpoint as ckpt

SR_FAMILIES = ("srresnet", "srgan")
#: Content losses of the paper: the VGG feature map each compares, or plain pixel MSE.
CONTENT_LAYERS = {"vgg54": "relu5_4", "vgg22": "relu2_2", "mse": None}
#: The paper's rescaling of VGG feature maps, which brings the VGG loss to the scale of the pixel MSE.
VGG_RESCALE = 1 / 12.75
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class SRResNetConfig:
    scale: int = 4  # upscaling factor, a power of two
    width: int = 64  # channels of the residual trunk
    n_blocks: int = 16
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    fused: bool = True  # fused batch norm + PReLU; false builds the same network from plain torch.nn

    def __post_init__(self) -> None:
        check_power_of_two("model.scale", self.scale, minimum=2)
        check_positive("model.width", self.width)
        check_positive("model.n_blocks", self.n_blocks, 0)
        check_positive("model.lr", self.lr, 1e-12)


@dataclass
class SRGANConfig(SRResNetConfig):
    init_from: str | None = None  # an srresnet run folder or checkpoint whose G starts the training
    content_loss: str = "vgg54"  # vgg54, vgg22 or mse
    vgg_weights: str | None = None  # torchvision vgg19 state_dict file, for the vgg content losses
    adversarial_weight: float = 1e-3
    d_head: str = "dense"  # dense (the paper's, needs square HR crops, a multiple of 16) or pooled (any size)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("model.content_loss", self.content_loss, tuple(CONTENT_LAYERS))
        check_choice("model.d_head", self.d_head, SR_HEADS)
        check_positive("model.adversarial_weight", self.adversarial_weight, 0)


def load_sr_generator(state: Mapping, fused: bool = True) -> SRResNet:
    """The SRResNet of an srresnet / srgan checkpoint (as loaded), with its weights (strictly)."""
    config = state.get("config", {})
    if config.get("family") not in SR_FAMILIES:
        raise ConfigError(f"the checkpoint is a {config.get('family')!r} run, not an srresnet or srgan run")
    c = SRResNetConfig(**{k: v for k, v in config["model"].items() if k in ("scale", "width", "n_blocks")})
    g = SRResNet(c.scale, c.width, c.n_blocks, fused=fused)
    try:
        g.load_state_dict(state["nets"]["G"], strict=True)
    except RuntimeError as err:
        raise ckpt.CheckpointError(f"the checkpoint's G does not fit its own config: {str(err).splitlines()[0]}") \
            from None
    return g


class _SuperResolution(Family):
    """What both families share: LR -> HR data, the generator, sample inputs drawn from the data."""

    path_data = "super-resolution"
    default_data = {"name": "sr-textures"}

    def data_hints(self) -> dict:
        return {"scale": self.config.scale}

    def _check_data(self, spec: DataSpec) -> tuple[int, int]:
        """(HR height, width), checked: 3-channel HR images under "hr" and their LR under "lr"."""
        s = self.config.scale
        if spec.key != "hr" or len(spec.shape) != 3 or spec.shape[0] != 3:
            raise ConfigError(f"{self.name} needs RGB HR images under 'hr' (data.name=super-resolution or "
                              f"sr-textures); the data gives {tuple(spec.shape)} under {spec.key!r}")
        h, w = spec.shape[1:]
        if self.dataset is not None:
            lr = self.dataset[0].get("lr")
            want = (3, h // s, w // s)
            if not isinstance(lr, torch.Tensor) or tuple(lr.shape) != want or h % s or w % s:
                got = tuple(lr.shape) if isinstance(lr, torch.Tensor) else None
                raise ConfigError(f"{self.name}: model.scale={s} needs LR images {want} under 'lr' for HR "
                                  f"{tuple(spec.shape)}, the data gives {got}: set data.scale to the same "
                                  "factor")
        return h, w

    def _generator(self) -> SRResNet:
        c = self.config
        return SRResNet(c.scale, c.width, c.n_blocks, fused=c.fused)

    def make_latents(self, n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
        """n LR images drawn from the training data (what sample grids and metrics upscale)."""
        if self.dataset is None:
            raise ConfigError(f"{self.name} upscales images: use `gancore translate RUN --input DIR --out DIR`")
        picks = torch.randint(len(self.dataset), (n,), generator=generator, device=generator.device).tolist()
        return torch.stack([self.dataset[i]["lr"] for i in picks]).to(device)

    def loss_mse(self, ctx: PhaseContext) -> dict[str, torch.Tensor]:
        mse = F.mse_loss(ctx.nets["G"](ctx.batch["lr"]).float(), ctx.batch["hr"].float())
        return {"loss": mse}


@register_family
class SRResNetFamily(_SuperResolution):
    name = "srresnet"
    summary = "SRResNet (Ledig et al. 2017): 16 residual blocks, BN + PReLU, sub-pixel x4 upscaling, MSE"
    Config = SRResNetConfig
    default_train = {"batch_size": 16, "ema_beta": 0.0}
    bench_cases = {"full": BenchCase("96x96 HR", ("data.hr_size=96",), (16,)),
                   "quick": BenchCase("32x32 HR", ("data.hr_size=32", "model.width=16", "model.n_blocks=2"), (4,))}

    def build(self, spec: DataSpec) -> dict[str, Network]:
        self._check_data(spec)
        self.spec = spec
        c = self.config
        return {"G": Network(self._generator(), lr=c.lr, betas=tuple(c.betas))}

    def phases(self) -> list[Phase]:
        return [Phase("G", "G", self.loss_mse)]


class VGGContent(nn.Module):
    """MSE between VGG19 feature maps of SR and HR images in [-1, 1], each rescaled by 1/12.75."""

    def __init__(self, weights: str, layer: str) -> None:
        super().__init__()
        self.vgg = VGG19Features(weights, layers=(layer,))
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.vgg(((x + 1) / 2 - self.mean) / self.std)[0] * VGG_RESCALE

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = self.features(hr)
        return F.mse_loss(self.features(sr).float(), target.float())


@register_family
class SRGANFamily(_SuperResolution):
    name = "srgan"
    summary = ("SRGAN (Ledig et al. 2017): SRResNet G from an srresnet run, 8-conv D, VGG54 content "
               "+ 1e-3 adversarial")
    Config = SRGANConfig
    default_train = {"batch_size": 16, "ema_beta": 0.0, "lr_schedule": "step"}
    # No VGG19 file can be assumed on a bench machine: the cases time SRGAN-MSE (G, D and both losses).
    bench_cases = {"full": BenchCase("96x96 HR, MSE content", ("data.hr_size=96", "model.content_loss=mse"), (16,)),
                   "quick": BenchCase("32x32 HR, MSE content", ("data.hr_size=32", "model.width=16",
                                                                "model.n_blocks=2", "model.content_loss=mse"), (4,))}

    def build(self, spec: DataSpec) -> dict[str, Network]:
        c = self.config
        layer = CONTENT_LAYERS[c.content_loss]
        if layer and c.vgg_weights is None:
            raise ConfigError(f"model.vgg_weights: content_loss={c.content_loss} needs the VGG19 weights file "
                              "(torchvision's vgg19 state_dict, keys features.N.weight); nothing is downloaded. "
                              "Or use model.content_loss=mse")
        h, w = self._check_data(spec)
        self.spec = spec
        g = self._generator()
        if c.init_from is not None:
            self._init_generator(g)
        try:
            d = SRGANDiscriminator(h, 3, c.d_head, fused=c.fused)
        except ValueError as err:
            raise ConfigError(f"model.d_head={c.d_head}: {err}") from None
        if c.d_head == "dense" and h != w:
            raise ConfigError(f"model.d_head=dense needs square HR crops, the data gives {h}x{w}; "
                              "use model.d_head=pooled")
        self.content = VGGContent(c.vgg_weights, layer) if layer else None
        betas = tuple(c.betas)
        return {"G": Network(g, lr=c.lr, betas=betas), "D": Network(d, lr=c.lr, betas=betas)}

    def _init_generator(self, g: SRResNet) -> None:
        try:
            path, state = ckpt.load_run_or_checkpoint(self.config.init_from)
        except ckpt.CheckpointError as err:
            raise ConfigError(f"model.init_from: {err}") from None
        family = state.get("config", {}).get("family")
        if family not in SR_FAMILIES:
            raise ConfigError(f"model.init_from: {path} is a {family!r} run, not an srresnet or srgan run")
        try:
            g.load_state_dict(state["nets"]["G"], strict=True)
        except RuntimeError as err:
            raise ConfigError(f"model.init_from: the generator of {path} does not fit model.scale / width / "
                              f"n_blocks of this config: {str(err).splitlines()[0]}") from None

    def phases(self) -> list[Phase]:
        return [Phase("D", "D", self.loss_d), Phase("G", "G", self.loss_g)]

    def loss_d(self, ctx: PhaseContext) -> dict[str, torch.Tensor]:
        with torch.no_grad():  # G is frozen in this phase
            sr = ctx.nets["G"](ctx.batch["lr"])
        real, fake = ctx.nets["D"](ctx.batch["hr"]), ctx.nets["D"](sr.to(ctx.batch["hr"].dtype))
        return {"loss": d_nonsaturating(real, fake), "real_score": real.detach().float().mean(),
                "fake_score": fake.detach().float().mean()}

    def loss_g(self, ctx: PhaseContext) -> dict[str, torch.Tensor]:
        sr, hr = ctx.nets["G"](ctx.batch["lr"]), ctx.batch["hr"]
        mse = F.mse_loss(sr.float(), hr.float())
        if self.content is None:
            content = mse
        else:
            self.content.to(sr.device)
            content = self.content(sr, hr)
        adversarial = g_nonsaturating(ctx.nets["D"](sr))
        return {"loss": content + self.config.adversarial_weight * adversarial, "content": content.detach(),
                "adversarial": adversarial.detach(), "mse": mse.detach()}
