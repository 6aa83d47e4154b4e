"""StarGAN (Choi et al., 2018): one generator translating images between many domains, given as labels.

G(x, c) translates image x to the target labels c (replicated over the image); D scores realness patch by
patch and classifies the domain. With the reference's weights (yunjey/stargan, solver.py):
- D: -D_src(x) + D_src(G(x, c')) + lambda_gp * GP (WGAN-GP on interpolates, through gancore.ops) +
  lambda_cls * classification loss of D_cls(x) against x's own labels c;
- G, every n_critic D steps: -D_src(G(x, c')) + lambda_cls * classification loss of D_cls(G(x, c')) against
  c' + lambda_rec * |x - G(G(x, c'), c)| (the cycle back to the own labels, L1);
- classification: binary cross-entropy summed over the attributes of a binary set (CelebA), cross-entropy
  for a class set (RaFD); lambda_cls 1, lambda_rec 10, lambda_gp 10; targets c' are the labels of the batch
  shuffled, as the reference draws them;
- Adam(1e-4, 0.5, 0.999), n_critic 5; the learning rate constant for n_epochs, then falling linearly over
  n_epochs_decay (the paper: 10 + 10 epochs on CelebA), epoch by epoch as pix2pix's schedule.

Joint training on two datasets (data.name=joint) uses the paper's mask vector: G gets both label sets side by
side plus a one-hot dataset indicator, the unknown set zero; D classifies both sets, and the classification
loss of a sample counts only the set of its own dataset. The reference alternates whole batches of each
dataset; here a batch may mix them and each sample is scored on its own set (targets are shuffled within
the samples of one dataset), which is the same loss for a batch drawn from one dataset.

Images are translated as the reference tests them, with training-mode norms (instance statistics); the
sample grids do so on a copy of G, so that sampling leaves the running statistics alone.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gancore.data.attributes import LabelSet, label_sets_of
from gancore.families import register_family
from gancore.families.base import (
    BenchCase,
    ConfigError,
    DataSpec,
    Family,
    Network,
    Phase,
    PhaseContext,
    check_image_spec,
    check_positive,
)
from gancore.families.pix2pix import linear_decay
from gancore.models.stargan import StarGANDiscriminator, StarGANGenerator
from gancore.ops import gradient_penalty
from gancore.utils.visual import save_image_grid

#: CelebA's hair colours are exclusive: setting one to 1 sets the others to 0 (the reference's create_labels).
HAIR_COLOURS = ("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair")


class LabelLayout:
    """The label sets of a model, side by side: D classifies all of them (d_dim outputs); G takes them plus,
    with two or more sets, the mask vector (a one-hot of the set that is known)."""

    def __init__(self, sets: list[LabelSet]) -> None:
        if not sets:
            raise ConfigError("stargan: the data has no label set")
        self.sets = list(sets)
        self.slices: list[slice] = []
        start = 0
        for s in self.sets:
            self.slices.append(slice(start, start + len(s.names)))
            start += len(s.names)
        self.d_dim = start
        self.masked = len(self.sets) > 1
        self.g_dim = self.d_dim + (len(self.sets) if self.masked else 0)

    def from_batch(self, batch: Mapping[str, Any], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(labels (N, d_dim) float, dataset index (N,) long) of a batch of any labelled dataset."""
        if "labels" in batch:
            c, which = batch["labels"].float(), torch.as_tensor(batch["dataset"], device=device).long()
        elif "attrs" in batch:
            c = batch["attrs"].float()
            which = torch.zeros(c.shape[0], dtype=torch.long, device=device)
        else:
            label = torch.as_tensor(batch["label"], device=device).long()
            c, which = F.one_hot(label, self.d_dim).float(), torch.zeros_like(label)
        if c.shape[1] != self.d_dim:
            raise ConfigError(f"stargan: the batch has {c.shape[1]} labels, the model {self.d_dim}")
        return c, which

    def generator_input(self, c: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
        """G's label input: the labels, and the mask vector when there are several sets."""
        if not self.masked:
            return c
        return torch.cat([c, F.one_hot(which, len(self.sets)).to(c.dtype)], dim=1)

    def classification_loss(self, logits: torch.Tensor, c: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
        """Mean over samples of each one's loss on its own set: BCE summed over a binary set's attributes
        (the reference's sum / batch), CE for a class set; float32."""
        logits, per_sample = logits.float(), logits.new_zeros(logits.shape[0], dtype=torch.float32)
        for k, (s, part) in enumerate(zip(self.sets, self.slices)):
            if s.kind == "bce":
                loss = F.binary_cross_entropy_with_logits(logits[:, part], c[:, part], reduction="none").sum(1)
            else:
                loss = F.cross_entropy(logits[:, part], c[:, part].argmax(1), reduction="none")
            per_sample = torch.where(which == k, loss, per_sample)
        return per_sample.mean()

    def estimate(self, logits: torch.Tensor) -> torch.Tensor:
        """D's guess of the labels of every set (the input's own labels, which a folder of images lacks)."""
        out = torch.zeros_like(logits, dtype=torch.float32)
        for s, part in zip(self.sets, self.slices):
            if s.kind == "bce":
                out[:, part] = (logits[:, part] > 0).float()
            else:
                out[:, part] = F.one_hot(logits[:, part].argmax(1), len(s.names)).float()
        return out

    def single_changes(self, c: torch.Tensor) -> list[tuple[str, torch.Tensor, int]]:
        """Every single-attribute change of labels c (N, d_dim), as the paper's figures show them:
        (name, target labels, set index) for each attribute of a binary set (flipped; a hair colour set
        exclusively) and each class of a class set."""
        changes = []
        for k, (s, part) in enumerate(zip(self.sets, self.slices)):
            for j, name in enumerate(s.names):
                target = c.clone()
                column = part.start + j
                if s.kind == "ce":
                    target[:, part] = 0.0
                    target[:, column] = 1.0
                elif name in HAIR_COLOURS:
                    target[:, column] = 1.0 - c[:, column]
                    others = [part.start + i for i, n in enumerate(s.names) if n in HAIR_COLOURS and i != j]
                    target[:, others] = torch.where(target[:, column:column + 1] > 0, 0.0, target[:, others])
                else:
                    target[:, column] = 1.0 - c[:, column]
                changes.append((name, target, k))
        return changes

    def parse_targets(self, spec: str, flag: str = "--attrs") -> tuple[dict[int, float], int]:
        """`--attrs "Black_Hair=1,Male=0"` (binary attributes) or `--attrs happy` (a class) -> ({column:
        value}, set index). The names must come from one set; errors name `flag`."""
        picks: dict[int, float] = {}
        sets = set()
        for item in (p.strip() for p in spec.split(",")):
            if not item:
                continue
            name, _, value = item.partition("=")
            name = name.strip()
            k = next((k for k, s in enumerate(self.sets) if name in s.names), None)
            if k is None:
                known = "; ".join(f"{s.kind} set {', '.join(s.names)}" for s in self.sets)
                raise ConfigError(f"{flag}: {name!r} is no label of this model ({known})")
            sets.add(k)
            s, part = self.sets[k], self.slices[k]
            column = part.start + s.names.index(name)
            if s.kind == "ce":
                if value.strip() not in ("", "1"):
                    raise ConfigError(f"{flag}: {name!r} is a class; name it alone (e.g. {flag} {name})")
                picks.update({i: 0.0 for i in range(part.start, part.stop)})
                picks[column] = 1.0
            elif value.strip() in ("0", "1"):
                picks[column] = float(value)
            else:
                raise ConfigError(f"{flag}: binary attribute {name!r} needs =0 or =1, got {item!r}")
        if not picks:
            raise ConfigError(f"{flag}: name at least one label, e.g. {flag} \"Black_Hair=1,Male=0\"")
        if len(sets) > 1:
            raise ConfigError(f"{flag}: the labels must come from one label set (one dataset of the joint model)")
        return picks, sets.pop()

    def state(self) -> list[dict]:
        return [s.as_dict() for s in self.sets]


def translation_grid(layout: LabelLayout, g: nn.Module, images: torch.Tensor, own: torch.Tensor, *,
                     train_mode: bool = True) -> tuple[list[str], torch.Tensor]:
    """(column names, (N, 1 + changes, C, H, W)): each image and its translation by every single-attribute
    change of its own labels `own` (see LabelLayout.single_changes), by a copy of G with training-mode
    norms (or eval-mode ones: the running statistics), so that G's running statistics stay untouched."""
    g = copy.deepcopy(g).train(train_mode)
    columns, out = ["input"], [images]
    for name, target, k in layout.single_changes(own.expand(images.shape[0], -1)):
        which = torch.full((images.shape[0],), k, dtype=torch.long, device=images.device)
        out.append(g(images, layout.generator_input(target.to(images.dtype), which)))
        columns.append(name)
    return columns, torch.stack(out, dim=1)


@dataclass
class StarGANConfig:
    resolution: int = 128  # the reference's image_size
    g_conv_dim: int = 64
    d_conv_dim: int = 64
    g_repeat_num: int = 6  # residual blocks of G
    d_repeat_num: int = 6  # stride-2 convs of D
    lambda_cls: float = 1.0
    lambda_rec: float = 10.0
    lambda_gp: float = 10.0
    n_critic: int = 5
    g_lr: float = 1e-4
    d_lr: float = 1e-4
    beta1: float = 0.5
    beta2: float = 0.999
    n_epochs: int = 10  # epochs at the initial learning rate
    n_epochs_decay: int = 10  # epochs of linear decay after them
    fused: bool = True  # gancore's fused ops; false builds the same networks from plain torch.nn

    def __post_init__(self) -> None:
        for key in ("resolution", "g_conv_dim", "d_conv_dim", "d_repeat_num", "n_critic"):
            check_positive(f"model.{key}", getattr(self, key))
        for key in ("g_repeat_num", "lambda_cls", "lambda_rec", "lambda_gp", "n_epochs", "n_epochs_decay"):
            check_positive(f"model.{key}", getattr(self, key), 0)
        for key in ("g_lr", "d_lr"):
            check_positive(f"model.{key}", getattr(self, key), 1e-12)
        for key in ("beta1", "beta2"):
            if not 0.0 <= getattr(self, key) < 1.0:
                raise ConfigError(f"model.{key}: must be in [0, 1), got {getattr(self, key)}")
        if self.resolution % 2 ** self.d_repeat_num or self.resolution % 4:
            raise ConfigError(f"model.resolution: must be a multiple of 4 and of 2**d_repeat_num = "
                              f"{2 ** self.d_repeat_num}, got {self.resolution}")


def shuffle_within(which: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """A random permutation (from the uniforms u) that maps each sample to one of the same dataset."""
    n = which.shape[0]
    grouped_random = torch.argsort(which.float() * 2 + u.float())
    grouped_in_order = torch.argsort(which.float() * 2 + torch.arange(n, device=which.device) / n)
    perm = torch.empty_like(grouped_random)
    perm[grouped_in_order] = grouped_random
    return perm


@register_family
class StarGAN(Family):
    name = "stargan"
    summary = ("StarGAN (Choi et al. 2018): one G for many domains, PatchGAN + domain classifier D, WGAN-GP 10 + "
               "cls 1 + rec 10, mask vector for joint data")
    Config = StarGANConfig
    default_data = {"name": "attribute-shapes"}
    path_data = "attributes"
    default_train = {"batch_size": 16}
    bench_cases = {"full": BenchCase("128x128", ("model.resolution=128",), (16,), steps=5),
                   "quick": BenchCase("32x32", ("model.resolution=32", "model.g_conv_dim=16", "model.d_conv_dim=16",
                                                "model.g_repeat_num=2", "model.d_repeat_num=4"), (4,), steps=5)}

    def __init__(self, config: StarGANConfig) -> None:
        super().__init__(config)
        self.layout: LabelLayout | None = None

    def _label_layout(self) -> LabelLayout:
        if self.dataset is not None:
            return LabelLayout(label_sets_of(self.dataset))
        if self.layout is not None:  # restored from a checkpoint (load_state_dict)
            return self.layout
        raise ConfigError("stargan translates labelled images, so it needs its labels: use `gancore translate RUN "
                          "--input DIR --out DIR --attrs NAME=1` (or --grid)")

    def build(self, spec: DataSpec) -> dict[str, Network]:
        c = self.config
        check_image_spec(self.name, spec, 3, c.resolution)
        self.layout = self._label_layout()
        self.spec = spec
        g = StarGANGenerator(c.g_conv_dim, self.layout.g_dim, c.g_repeat_num, fused=c.fused)
        d = StarGANDiscriminator(c.resolution, c.d_conv_dim, self.layout.d_dim, c.d_repeat_num, fused=c.fused)
        betas = (c.beta1, c.beta2)
        return {"G": Network(g, lr=c.g_lr, betas=betas), "D": Network(d, lr=c.d_lr, betas=betas, double_backward=True)}

    def phases(self) -> list[Phase]:
        return [Phase("D", "D", self.loss_d), Phase("G", "G", self.loss_g, every=self.config.n_critic)]

    def lr_factor(self, epoch: int) -> float:
        return linear_decay(epoch, self.config.n_epochs, self.config.n_epochs_decay)

    def _inputs(self, ctx: PhaseContext) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(images, own labels, target labels: the own ones shuffled within each dataset, dataset index)."""
        x = ctx.batch[self.spec.key]
        c, which = self.layout.from_batch(ctx.batch, x.device)
        return x, c, c[shuffle_within(which, ctx.rand())], which

    def loss_d(self, ctx: PhaseContext) -> dict[str, torch.Tensor]:
        cfg, layout = self.config, self.layout
        d = ctx.nets["D"]
        x, c, c_trg, which = self._inputs(ctx)
        fake = ctx.nets["G"](x, layout.generator_input(c_trg, which)).detach().to(x.dtype)
        src, cls = d(torch.cat([x, fake]))  # no norm in D: one call scores both
        src_real, src_fake = src.float().split(x.shape[0])
        adversarial = src_fake.mean() - src_real.mean()
        classification = layout.classification_loss(cls[:x.shape[0]], c, which)
        penalty = gradient_penalty(lambda v: d(v)[0], x, fake, weight=cfg.lambda_gp, alpha=ctx.rand(),
                                   scaler=ctx.scaler)
        loss = adversarial + cfg.lambda_cls * classification + penalty
        return {"loss": loss, "adv": adversarial.detach(), "cls": classification.detach(), "gp": penalty.detach()}

    def loss_g(self, ctx: PhaseContext) -> dict[str, torch.Tensor]:
        cfg, layout = self.config, self.layout
        g = ctx.nets["G"]
        x, c, c_trg, which = self._inputs(ctx)
        fake = g(x, layout.generator_input(c_trg, which))
        src, cls = ctx.nets["D"](fake)
        adversarial = -src.float().mean()
        classification = layout.classification_loss(cls, c_trg, which)
        reconstruction = (g(fake, layout.generator_input(c, which)).float() - x.float()).abs().mean()
        loss = adversarial + cfg.lambda_cls * classification + cfg.lambda_rec * reconstruction
        return {"loss": loss, "adv": adversarial.detach(), "cls": classification.detach(),
                "rec": reconstruction.detach()}

    def state_dict(self) -> dict:
        return {"label_sets": self.layout.state()} if self.layout is not None else {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if "label_sets" in state:
            self.layout = LabelLayout([LabelSet.from_dict(s) for s in state["label_sets"]])

    def make_latents(self, n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
        """n input images drawn from the training data (their labels are D's estimate, as for any image)."""
        if self.dataset is None:
            raise ConfigError("stargan translates images, so its samples need input images: use "
                              "`gancore translate RUN --input DIR --out DIR --grid`")
        picks = torch.randint(len(self.dataset), (n,), generator=generator, device=generator.device).tolist()
        return torch.stack([self.dataset[i][self.spec.key] for i in picks]).to(device)

    def translations(self, nets: Mapping[str, nn.Module], images: torch.Tensor, *, train_mode: bool = True
                     ) -> tuple[list[str], torch.Tensor]:
        """translation_grid of the images from D's estimate of their labels."""
        return translation_grid(self.layout, nets["G"], images, self.layout.estimate(nets["D"](images)[1]),
                                train_mode=train_mode)

    def generate(self, nets: Mapping[str, nn.Module], latents: torch.Tensor) -> torch.Tensor:
        """Rows of [input, its single-attribute translations], stacked: (N * (1 + changes), C, H, W)."""
        _, grid = self.translations(nets, latents)
        return grid.flatten(0, 1)

    def save_samples(self, samples: torch.Tensor, path: str) -> None:
        save_image_grid(samples, path, cols=1 + self.layout.d_dim)
