"""GAN-INT-CLS (Reed, Akata, Yan, Logeswaran, Schiele and Lee, "Generative Adversarial Text to Image
Synthesis", ICML 2016): a DCGAN conditioned on a caption.

- The caption's tokens go through a text encoder (model.text_encoder: "word", a word-level GRU, or
  "char-cnn-rnn", the paper's character-level CNN-RNN); G and D each compress the embedding (fully
  connected + leaky ReLU) and condition on it.
- CLS, the matching-aware discriminator: D learns real image + right text as real, and both real image +
  wrong text and fake image + right text as fake (the paper's (log(1 - s_w) + log(1 - s_f)) / 2).
  The wrong text (model.wrong_text) is another sample's caption: the batch rolled by one ("rolled", the
  paper's random mismatch), or the batch's caption that shares the most words with the right one
  ("nearest", a hard negative: D must read every word, not just the one that differs most often).
- INT: G also learns from embeddings interpolated between two captions, beta * t1 + (1 - beta) * t2, for
  which no real image exists (beta = 0.5 in the paper); D never sees them.

How the text encoder learns (model.text_training):
- "joint" (the default): the encoder is part of D (JointTextDiscriminator), so D's matching-aware loss,
  which must tell right from wrong captions, trains it; G reads it frozen. No extra phase, no image
  encoder, nothing to wait for: the right choice on a CPU, where every step counts.
- "pretrain" (the paper): first `pretrain_steps` steps of the symmetric structured loss (Reed et al.
  2016, "Learning deep representations of fine-grained visual descriptions") between the text encoder
  and an image embedder, then the encoder is frozen and G and D train.

The built-in data defaults to upright shapes in the image's center (data.style=simple, data.spread=0.25), whose
captions all say "in the center" or leave the position out: there shape binds (docs/text-to-image.md).

Latents are one tensor, [z | caption token ids], so that the trainer's sample grids, metrics and
`gancore sample` carry the caption along with the noise; `make_latents_from_text` builds them from a
caption (`gancore sample RUN --text "a red circle"`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gancore.data.captions import WORDS, random_caption
from gancore.data.text import Vocabulary, tokenize
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
from gancore.models.dcgan import NORMS
from gancore.models.text_to_image import (
    CharCNNRNN,
    ImageEmbedder,
    JointTextDiscriminator,
    MatchingAwareDiscriminator,
    StructuredEmbedding,
    TextConditionedGenerator,
    WordTextEncoder,
)

TEXT_ENCODERS = ("word", "char-cnn-rnn")
TEXT_TRAINING = ("joint", "pretrain")
WRONG_TEXT = ("rolled", "nearest", "swapped")
#: The char-CNN-RNN's alphabet (captions are lower-cased first).
ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789 ,.;:!?'-"


@dataclass
class GanIntClsConfig:
    # 32x32, width 32, text_dim 128, proj_dim 64: sized for CPU demos (the paper: 64x64, width 64, a
    # 1024-d embedding compressed to 128, lr 2e-4, batch 64).
    resolution: int = 32
    channels: int = 3
    latent_dim: int = 100
    text_encoder: str = "word"
    text_training: str = "joint"
    pretrain_steps: int = 300  # "pretrain" only: structured-loss steps before G and D start
    text_dim: int = 128
    proj_dim: int = 64
    max_len: int | None = None  # token ids per caption incl. <bos>/<eos>; None: 16 words or 64 characters
    vocab: tuple[str, ...] = ()  # the word encoder's words; empty: the built-in captions' (data.captions.WORDS)
    g_width: int = 32
    d_width: int = 32
    norm: str = "batch"
    joint_norm: str = "none"  # after D's 1x1 conv on [image | text]; "batch": the paper's, per caption batch
    cls: bool = True  # the wrong-text term of the matching-aware D (False: GAN-INT without CLS)
    wrong_text: str = "rolled"  # "rolled" (the paper's random mismatch) or "nearest" (a hard negative)
    interpolate: bool = True  # the INT term of G
    int_beta: float = 0.5
    mode_seeking: float = 0.0  # weight of G's mode-seeking term (Mao et al. 2019); 0: the paper's loss alone
    lr_g: float = 2e-3
    lr_d: float = 2e-3
    lr_t: float = 1e-3  # "pretrain": the text encoder and image embedder
    betas: tuple[float, float] = (0.5, 0.99)

    def __post_init__(self) -> None:
        check_choice("model.text_encoder", self.text_encoder, TEXT_ENCODERS)
        check_choice("model.text_training", self.text_training, TEXT_TRAINING)
        check_choice("model.norm", self.norm, NORMS)
        check_choice("model.joint_norm", self.joint_norm, NORMS)
        check_choice("model.wrong_text", self.wrong_text, WRONG_TEXT)
        check_choice("model.channels", self.channels, (1, 3))
        check_power_of_two("model.resolution", self.resolution)
        for key in ("latent_dim", "text_dim", "proj_dim", "g_width", "d_width"):
            check_positive(f"model.{key}", getattr(self, key))
        check_positive("model.pretrain_steps", self.pretrain_steps, 0)
        if self.max_len is not None:
            check_positive("model.max_len", self.max_len, 3)
        if len(set(self.vocab)) != len(self.vocab) or set(self.vocab) & set(Vocabulary.SPECIALS):
            raise ConfigError(f"model.vocab: the words must be unique and none of {list(Vocabulary.SPECIALS)}, "
                              f"got {list(self.vocab)}")
        if not 0.0 <= self.int_beta <= 1.0:
            raise ConfigError(f"model.int_beta: must be in [0, 1], got {self.int_beta!r}")
        check_positive("model.mode_seeking", self.mode_seeking, 0)


@dataclass(frozen=True)
class _StepRange(Phase):
    """A phase due only on steps in [start, stop): the pretraining phase, and G and D after it."""

    start: int = 0
    stop: int | None = None

    def due(self, step: int) -> bool:
        return self.start <= step and (self.stop is None or step < self.stop) and super().due(step)


def structured_loss(image: torch.Tensor, text: torch.Tensor, same: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The symmetric structured hinge loss of Reed et al. (2016) on a batch, and the image-to-text retrieval
    accuracy. Compatibility F(v, t) = image(v) . text(t); each image should score its caption at least 1
    above every caption of another class (same[i, j] false), and each caption its image likewise. The
    hinges are averaged over the other classes in the batch, not only the most violating one (the paper's
    max): the same minimum, with a gradient from every negative, which trains in far fewer steps."""
    scores = image.float() @ text.float().T
    negative = (~same).to(scores.dtype)
    right = scores.diagonal()
    count = negative.sum().clamp(min=1)
    loss = ((F.relu(1 + scores - right[:, None]) * negative).sum()
            + (F.relu(1 + scores - right[None, :]) * negative).sum()) / count
    accuracy = same[torch.arange(len(same)), scores.argmax(1)].float().mean()
    return loss, accuracy


def mode_seeking_term(images_a: torch.Tensor, images_b: torch.Tensor, z_a: torch.Tensor,
                      z_b: torch.Tensor) -> torch.Tensor:
    """The mode-seeking regulariser of Mao et al. (2019, MSGAN) for pairs of images generated from one
    caption with two noise draws: the mean over pairs of 1 / (|a - b| / |z_a - z_b| + 1e-5), each distance a
    mean absolute difference. Small when the images differ as much as their noise does; G minimises it, so
    that the noise is not ignored (one image per caption)."""
    ratio = (images_a - images_b).abs().flatten(1).mean(1) / (z_a - z_b).abs().mean(1)
    return (1 / (ratio + 1e-5)).mean()


def nearest_other_caption(tokens: torch.Tensor) -> torch.Tensor:
    """For each caption (row of token ids), the index of the batch's caption that shares the most tokens
    with it in the same places without being equal to it; ties go to the first one after it, cyclically.
    A caption with no different caption in the batch gets its own index."""
    n, index = len(tokens), torch.arange(len(tokens), device=tokens.device)
    shared = (tokens[:, None, :] == tokens[None, :, :]).sum(-1)
    equal = shared == tokens.shape[1]
    after = (index[None, :] - index[:, None]) % n  # 1 for the next one, ..., n - 1 for the one before
    best = (shared * n + (n - after)).masked_fill(equal, -1).argmax(1)
    return torch.where(equal.all(1), index, best)


def swap_one_word(tokens: torch.Tensor, donors: torch.Tensor, draw: torch.Tensor) -> torch.Tensor:
    """Each caption (row of token ids) with one word replaced by the donor caption's word in the same place:
    of the places where both hold a word (not a special token) and the two differ, the one where `draw`
    (uniform, the shape of `tokens`) is largest. A caption with no such place is left as it is."""
    words = (tokens >= len(Vocabulary.SPECIALS)) & (donors >= len(Vocabulary.SPECIALS)) & (tokens != donors)
    place = draw.masked_fill(~words, float("-inf")).argmax(1, keepdim=True)
    swapped = tokens.scatter(1, place, donors.gather(1, place))
    return torch.where(words.any(1, keepdim=True), swapped, tokens)


@register_family
class GanIntCls(Family):
    name = "gan-int-cls"
    summary = ("GAN-INT-CLS (Reed et al. 2016): text-to-image DCGAN, matching-aware D, interpolated "
               "captions; built-in captioned shapes")
    Config = GanIntClsConfig
    # Upright shapes in the image's center: a 32x32 DCGAN G draws these within a CPU run, and then binds each
    # caption's shape as well as its colour; shapes anywhere in the image (data.spread=1) it draws as blobs,
    # conditioned or not (docs/text-to-image.md). The paper's birds and flowers are centred objects too.
    default_data = {"name": "shape-captions", "style": "simple", "spread": 0.25}
    path_data = "captions"
    default_train = {"batch_size": 32}
    bench_cases = {"full": BenchCase("32x32", (), (64,)),
                   "quick": BenchCase("32x32 width 16", ("model.g_width=16", "model.d_width=16"), (16,))}

    def __init__(self, config: GanIntClsConfig) -> None:
        super().__init__(config)
        c = config
        if c.text_encoder == "word":
            self.vocab = Vocabulary(c.vocab or WORDS)
            self.max_len = c.max_len or 16
        else:
            self.vocab = Vocabulary(ALPHABET)
            self.max_len = c.max_len or 64
        #: The captions of the rows of the last generate() call, for save_samples' labels.
        self.last_captions: list[str] = []

    # -- text --------------------------------------------------------------------------------------

    def _tokens(self, text: str) -> list[str]:
        return tokenize(text.lower(), "word" if self.config.text_encoder == "word" else "char")

    def unknown_tokens(self, text: str) -> list[str]:
        """The words (or characters) of `text` outside the encoder's vocabulary."""
        return sorted({t for t in self._tokens(text) if t not in self.vocab.stoi})

    def encode(self, texts: Sequence[str], device: torch.device | str = "cpu") -> torch.Tensor:
        """(len(texts), max_len) token ids; unknown words become <unk>, long captions are cut."""
        return torch.stack([self.vocab.encode(self._tokens(t), self.max_len) for t in texts]).to(device)

    def decode(self, ids: torch.Tensor) -> list[str]:
        sep = " " if self.config.text_encoder == "word" else ""
        return [sep.join(self.vocab.decode(row.tolist())) for row in ids]

    # -- networks ----------------------------------------------------------------------------------

    def _check_captions(self) -> None:
        """The training data has caption strings, in the word encoder's vocabulary."""
        first = self.dataset[0]
        if not isinstance(first.get("caption"), str):
            raise ConfigError(f"{self.name} needs captioned images (samples with a 'caption' string: the "
                              f"built-in shape-captions, or --data DIR of captioned images); the samples have "
                              f"{sorted(first)}")
        picks = random.Random(0).sample(range(len(self.dataset)), min(64, len(self.dataset)))
        unknown = sorted({w for i in picks for w in self.unknown_tokens(self.dataset[i]["caption"])})
        if unknown:
            raise ConfigError(f"model.vocab: the captions use tokens outside the text encoder's vocabulary, e.g. "
                              f"{unknown[:5]}; list the words in model.vocab, or use "
                              f"model.text_encoder=char-cnn-rnn")

    def build(self, spec: DataSpec) -> dict[str, Network]:
        c = self.config
        check_image_spec(self.name, spec, c.channels, c.resolution)
        if self.dataset is not None:
            self._check_captions()
        self.spec = spec
        if c.text_encoder == "word":
            text = WordTextEncoder(len(self.vocab), c.text_dim)
        else:
            text = CharCNNRNN(len(self.vocab), c.text_dim)
        critic = MatchingAwareDiscriminator(c.text_dim, c.proj_dim, c.resolution, c.channels, c.d_width, c.norm,
                                            c.joint_norm)
        nets = {"G": Network(TextConditionedGenerator(c.latent_dim, c.text_dim, c.proj_dim, c.resolution,
                                                      c.channels, c.g_width, c.norm),
                             lr=c.lr_g, betas=c.betas, ema=True)}
        if c.text_training == "joint":
            nets["D"] = Network(JointTextDiscriminator(text, critic), lr=c.lr_d, betas=c.betas)
        else:
            nets["D"] = Network(critic, lr=c.lr_d, betas=c.betas)
            nets["T"] = Network(StructuredEmbedding(text, ImageEmbedder(c.text_dim, c.resolution, c.channels)),
                                lr=c.lr_t, betas=c.betas)
        return nets

    def phases(self) -> list[Phase]:
        if self.config.text_training == "joint":
            return [Phase("D", "D", self.loss_d), Phase("G", "G", self.loss_g)]
        start = self.config.pretrain_steps
        return [_StepRange("T", "T", self.loss_t, stop=start), _StepRange("D", "D", self.loss_d, start=start),
                _StepRange("G", "G", self.loss_g, start=start)]

    def _text_encoder(self, nets: Mapping[str, nn.Module]) -> nn.Module:
        """The text encoder, from a frozen (unwrapped) network: D's in joint mode, T's after pretraining."""
        owner = nets["D"] if self.config.text_training == "joint" else nets["T"]
        owner = getattr(owner, "module", owner)  # DDP
        return owner.encoder if self.config.text_training == "joint" else owner.text

    def _critic(self, nets: Mapping[str, nn.Module]) -> nn.Module:
        """D as a function of (images, embeddings...), for phases where D is frozen (not DDP-wrapped)."""
        return nets["D"].critic if self.config.text_training == "joint" else nets["D"]

    # -- losses ------------------------------------------------------------------------------------

    def _captions(self, ctx: PhaseContext) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Right tokens, wrong tokens (another sample's caption, by model.wrong_text), and where the
        wrong caption really differs from the right one."""
        right = self.encode(ctx.batch["caption"], ctx.batch[self.spec.key].device)
        if self.config.wrong_text == "rolled":
            wrong = right.roll(1, 0)
        elif self.config.wrong_text == "nearest":
            wrong = right[nearest_other_caption(right)]
        else:
            wrong = swap_one_word(right, right.roll(1, 0), ctx.rand(right.shape[1]).to(right.device))
        return right, wrong, (wrong != right).any(1)

    def loss_d(self, ctx: PhaseContext) -> dict[str, torch.Tensor]:
        real = ctx.batch[self.spec.key]
        right, wrong, differs = self._captions(ctx)
        with torch.no_grad():
            encoder = self._text_encoder(ctx.nets)
            fake = ctx.nets["G"](ctx.randn(self.config.latent_dim), encoder(right))
        if self.config.text_training == "joint":
            real_scores, fake_score = ctx.nets["D"](real, right, wrong), ctx.nets["D"](fake, right)[0]
        else:
            with torch.no_grad():
                e_right, e_wrong = encoder(right), encoder(wrong)
            real_scores, fake_score = ctx.nets["D"](real, e_right, e_wrong), ctx.nets["D"](fake, e_right)[0]
        right_score, wrong_score = real_scores[0], real_scores[1]
        loss_fake = F.softplus(fake_score.float()).mean()
        if self.config.cls:
            weights = differs.float()
            loss_wrong = (F.softplus(wrong_score.float()) * weights).sum() / weights.sum().clamp(min=1)
            loss = F.softplus(-right_score.float()).mean() + 0.5 * (loss_wrong + loss_fake)
        else:
            loss = F.softplus(-right_score.float()).mean() + loss_fake
        return {"loss": loss, "right_score": right_score.detach().float().mean(),
                "wrong_score": wrong_score.detach().float().mean(),
                "fake_score": fake_score.detach().float().mean()}

    def loss_g(self, ctx: PhaseContext) -> dict[str, torch.Tensor]:
        """One G and one D pass over the right captions, [the right captions again with other noise, when
        mode seeking], [the interpolated captions, when INT], each block with its own noise. The right
        captions' adversarial term is averaged over their noise draws."""
        c = self.config
        right, _, _ = self._captions(ctx)
        text = self._text_encoder(ctx.nets)(right)
        n = len(right)
        draws = 2 if c.mode_seeking > 0 else 1
        texts = [text] * draws
        if c.interpolate:
            texts.append(c.int_beta * text + (1 - c.int_beta) * text.roll(1, 0))
        z = torch.cat([ctx.randn(c.latent_dim) for _ in texts])
        texts = torch.cat(texts)
        fakes = ctx.nets["G"](z, texts)
        scores = self._critic(ctx.nets)(fakes, texts)[0].float()
        loss = F.softplus(-scores[:draws * n]).mean()
        out = {}
        if c.interpolate:
            loss_int = F.softplus(-scores[draws * n:]).mean()
            loss = loss + loss_int
            out["int_loss"] = loss_int.detach()
        if draws == 2:
            term = mode_seeking_term(fakes[:n].float(), fakes[n:2 * n].float(), z[:n].float(), z[n:2 * n].float())
            loss = loss + c.mode_seeking * term
            out["mode_seeking"] = term.detach()
        return {"loss": loss, **out}

    def loss_t(self, ctx: PhaseContext) -> dict[str, torch.Tensor]:
        right, _, _ = self._captions(ctx)
        text, image = ctx.nets["T"](right, ctx.batch[self.spec.key])
        same = (right[:, None, :] == right[None, :, :]).all(-1)
        loss, accuracy = structured_loss(image, text, same)
        return {"loss": loss, "retrieval_accuracy": accuracy}

    # -- sampling ----------------------------------------------------------------------------------

    def _latents(self, captions: Sequence[str], generator: torch.Generator, device: torch.device) -> torch.Tensor:
        z = torch.randn(len(captions), self.config.latent_dim, generator=generator, device=generator.device)
        return torch.cat([z.to(device), self.encode(captions, device).float()], dim=1)

    def make_latents(self, n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
        """n inputs in grid rows (as many columns as utils.visual's grid has), one caption per row: the
        training data's captions when there is data, else random built-in ones."""
        cols = max(1, math.ceil(math.sqrt(n)))
        rows = math.ceil(n / cols)
        picks = torch.randint(1 << 30, (rows,), generator=generator, device=generator.device).tolist()
        if self.dataset is not None:
            row_captions = [self.dataset[p % len(self.dataset)]["caption"] for p in picks]
        elif self.config.text_encoder == "char-cnn-rnn" or not self.config.vocab:
            row_captions = [random_caption(random.Random(p)) for p in picks]
        else:
            raise ConfigError(f"{self.name}: without its training data this run has no captions to draw; give "
                              "one with --text")
        return self._latents([row_captions[i // cols] for i in range(n)], generator, device)

    def make_latents_from_text(self, text: str, n: int, generator: torch.Generator,
                               device: torch.device) -> torch.Tensor:
        """n inputs for one caption (`gancore sample RUN --text ...`): fresh noise, the same caption."""
        if not self._tokens(text):
            raise ConfigError("--text: the caption is empty")
        unknown = self.unknown_tokens(text)
        if unknown:
            kind = "word" if self.config.text_encoder == "word" else "character"
            known = " ".join(self.vocab.itos[len(Vocabulary.SPECIALS):])
            raise ConfigError(f"--text: unknown {kind}(s) {', '.join(map(repr, unknown))} in {text!r}; "
                              f"the model knows: {known}")
        if len(self._tokens(text)) + 2 > self.max_len:
            raise ConfigError(f"--text: the caption has {len(self._tokens(text))} tokens, more than the "
                              f"model's {self.max_len - 2} (model.max_len minus <bos> and <eos>)")
        return self._latents([text] * n, generator, device)

    def generate(self, nets: Mapping[str, nn.Module], latents: torch.Tensor) -> torch.Tensor:
        z, ids = latents[:, :self.config.latent_dim], latents[:, self.config.latent_dim:].round().long()
        self.last_captions = self.decode(ids)
        return nets["G"](z, self._text_encoder(nets)(ids))

    def save_samples(self, samples: torch.Tensor, path: str) -> None:
        """The image grid, enlarged, with each row's caption on its left (from the last generate call)."""
        captions = self.last_captions if len(self.last_captions) == len(samples) else None
        save_captioned_grid(samples, captions, path)


def save_captioned_grid(images: torch.Tensor, captions: Sequence[str] | None, path: str, scale: int = 3) -> None:
    """utils.visual's image grid scaled up `scale` times, with a strip on its left that names each row's
    caption (that of the row's first image); without captions, the grid alone."""
    from PIL import Image, ImageDraw

    from gancore.utils.visual import image_grid

    grid = image_grid(images)
    picture = Image.fromarray(grid[:, :, 0] if grid.shape[2] == 1 else grid).convert("RGB")
    picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    if captions:
        cols = max(1, math.ceil(math.sqrt(len(images))))
        rows = math.ceil(len(images) / cols)
        labels = [captions[r * cols] for r in range(rows)]
        draw = ImageDraw.Draw(picture)
        strip = max(int(draw.textlength(label)) for label in labels) + 12
        canvas = Image.new("RGB", (picture.width + strip, picture.height), (255, 255, 255))
        canvas.paste(picture, (strip, 0))
        draw = ImageDraw.Draw(canvas)
        row_height = picture.height / rows
        for r, label in enumerate(labels):
            draw.text((6, (r + 0.5) * row_height), label, fill=(0, 0, 0), anchor="lm")
        picture = canvas
    picture.save(path)
