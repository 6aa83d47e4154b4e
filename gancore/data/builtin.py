"""Built-in data, generated on the fly from a seed so that no run and no test needs a download.

- RingOfGaussians: the 2-D mixture of WGAN-GP's toy experiments (modes on a circle).
- Shapes: procedurally drawn circles, squares, triangles and crosses with their class label and
  edge map; ShapeEdges serves them as aligned pairs (edges -> image) for paired translation.
  `style="simple"` draws them white on black, upright, larger and near the centre: the variant
  that DCGAN's few-minute demo learns to draw with clean outlines.
- ColorDomains: the same kind of shapes in two palettes, drawn independently (unpaired translation).
- OracleSequences: token sequences sampled from a fixed random LSTM, the synthetic benchmark of
  SeqGAN; the oracle stays available to score generated sequences by its likelihood.

Each sample is a pure function of (seed, index) (and, for the unpaired partner, the draw's seed),
so any subset can be regenerated exactly, in any process.
"""

from __future__ import annotations

import colorsys
import math
import random

import torch
import torch.nn.functional as F
from PIL import Image, ImageChops, ImageDraw, ImageFilter
from torch import nn

from gancore.data.base import DataError, GanDataset, draw_generator
from gancore.data.imageio import check_channels, to_tensor

SHAPES = ("circle", "square", "triangle", "cross")

# Palettes as (hue range, saturation range, value range, background grey range), all in [0, 1].
PALETTE_ANY = ((0.0, 1.0), (0.6, 1.0), (0.7, 1.0), (0.0, 0.15))
PALETTE_WARM = ((0.95, 1.12), (0.7, 1.0), (0.75, 1.0), (0.0, 0.15))
PALETTE_COOL = ((0.5, 0.7), (0.7, 1.0), (0.5, 0.8), (0.8, 1.0))
PALETTE_WHITE = ((0.0, 1.0), (0.0, 0.0), (1.0, 1.0), (0.0, 0.0))  # white on black

# Shape radius as a fraction of the image side: (low, high).
RADIUS_ANY = (0.2, 0.34)
RADIUS_SIMPLE = (0.28, 0.4)
# The angle of each upright shape: a square with level sides, a triangle on its base, a plus sign.
_UPRIGHT = {"square": math.pi / 4, "triangle": -math.pi / 2, "cross": 0.0}
#: Shapes' styles: palette, radius range, whether shapes are rotated at random, and the part of the free
#: range around the centre that the shape's centre is drawn from (1: anywhere the shape fits).
STYLES = {"varied": (PALETTE_ANY, RADIUS_ANY, True, 1.0), "simple": (PALETTE_WHITE, RADIUS_SIMPLE, False, 0.25)}
# Binarises an "L" mask at half coverage (a lookup table: point() with a function builds one per call).
_HALF = [0] * 128 + [255] * 128

_SUPERSAMPLE = 4


def _check_size(size: int) -> int:
    if size < 1:
        raise DataError(f"size must be >= 1, got {size}")
    return size


def _polygon(kind: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    if kind == "square":
        corners = [(math.cos(angle + k * math.pi / 2), math.sin(angle + k * math.pi / 2)) for k in range(4)]
    elif kind == "triangle":
        corners = [(math.cos(angle + k * 2 * math.pi / 3), math.sin(angle + k * 2 * math.pi / 3))
                   for k in range(3)]
    else:  # cross: a plus sign whose arms are a third of its span
        t = 1 / 3
        outline = [(t, 1), (t, t), (1, t), (1, -t), (t, -t), (t, -1),
                   (-t, -1), (-t, -t), (-1, -t), (-1, t), (-t, t), (-t, 1)]
        c, s = math.cos(angle), math.sin(angle)
        corners = [(x * c - y * s, x * s + y * c) for x, y in outline]
    return [(cx + r * x, cy + r * y) for x, y in corners]


def draw_shape(rng: random.Random, resolution: int, palette: tuple = PALETTE_ANY,
               radius: tuple[float, float] = RADIUS_ANY,
               rotate: bool = True, spread: float = 1.0) -> tuple[Image.Image, Image.Image, int]:
    """One random shape: (RGB image, edge map "L" with white edges on black, shape class index).
    `radius`: its range as a fraction of the side; `rotate=False` draws it upright (the rng then draws
    no angle); `spread` scales the range of its centre around the image's centre (1: anywhere it fits)."""
    (h0, h1), (s0, s1), (v0, v1), (b0, b1) = palette
    label = rng.randrange(len(SHAPES))
    big = resolution * _SUPERSAMPLE
    grey = round(255 * rng.uniform(b0, b1))
    rgb = colorsys.hsv_to_rgb(rng.uniform(h0, h1) % 1.0, rng.uniform(s0, s1), rng.uniform(v0, v1))
    colour = tuple(round(255 * c) for c in rgb)
    r = rng.uniform(*radius) * big
    cx, cy = (big / 2 + spread * (rng.uniform(r, big - r) - big / 2) for _ in range(2))
    mask = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(mask)
    if SHAPES[label] == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
    else:
        angle = rng.uniform(0, 2 * math.pi) if rotate else _UPRIGHT[SHAPES[label]]
        draw.polygon(_polygon(SHAPES[label], cx, cy, r, angle), fill=255)
    mask = mask.resize((resolution, resolution), Image.LANCZOS)
    ground = Image.new("RGB", mask.size, (grey,) * 3)
    image = Image.composite(Image.new("RGB", mask.size, colour), ground, mask)
    hard = mask.point(_HALF)
    edges = ImageChops.subtract(hard, hard.filter(ImageFilter.MinFilter(3)))  # the shape's 1-pixel rim
    return image, edges, label


def _as_channels(img: Image.Image, channels: int) -> torch.Tensor:
    return to_tensor(img.convert("L" if channels == 1 else "RGB"))


class RingOfGaussians(GanDataset):
    """{"x"}: points from `modes` Gaussians (std `std`) evenly spaced on a circle of radius `radius`."""

    sample_key = "x"

    def __init__(self, size: int = 65536, modes: int = 8, radius: float = 2.0, std: float = 0.02,
                 seed: int = 0) -> None:
        if modes < 1:
            raise DataError(f"modes must be >= 1, got {modes}")
        g = torch.Generator().manual_seed(seed)
        self.modes, self.radius, self.std = modes, radius, std
        self.mode_index = torch.randint(modes, (_check_size(size),), generator=g)
        self.points = self.centers()[self.mode_index] + std * torch.randn(size, 2, generator=g)

    def centers(self) -> torch.Tensor:
        """(modes, 2) mode centres."""
        angles = torch.arange(self.modes, dtype=torch.float32) * (2 * math.pi / self.modes)
        return self.radius * torch.stack([angles.cos(), angles.sin()], dim=1)

    def __len__(self) -> int:
        return len(self.points)

    def sample(self, index: int, seed: int) -> dict:
        return {"x": self.points[index].clone()}

    def describe(self) -> str:
        return f"ring of {self.modes} Gaussians (radius {self.radius}, std {self.std}): {len(self)} points"


class Shapes(GanDataset):
    """{"image", "edges", "label"}: one random coloured shape on a dark background per sample.

    `style`: "varied" (any colour, any angle, anywhere, on a dark grey ground) or "simple" (white on black,
    upright, larger, near the centre; see STYLES)."""

    num_classes = len(SHAPES)

    def __init__(self, size: int = 20000, resolution: int = 64, channels: int = 3, seed: int = 0,
                 style: str = "varied") -> None:
        self.size, self.resolution, self.seed = _check_size(size), resolution, seed
        self.channels = check_channels(channels)
        if resolution < 8:
            raise DataError(f"resolution must be >= 8, got {resolution}")
        if style not in STYLES:
            raise DataError(f"style must be one of {sorted(STYLES)}, got {style!r}")
        self.style = style

    def __len__(self) -> int:
        return self.size

    def _draw(self, index: int, palette: tuple | None = None) -> tuple[Image.Image, Image.Image, int]:
        """Sample `index` in this dataset's style; `palette` replaces the style's colours."""
        style_palette, radius, rotate, spread = STYLES[self.style]
        return draw_shape(random.Random(self.seed * 1_000_003 + index), self.resolution, palette or style_palette,
                          radius, rotate, spread)

    def sample(self, index: int, seed: int) -> dict:
        image, edges, label = self._draw(index)
        return {"image": _as_channels(image, self.channels), "edges": _as_channels(edges, self.channels),
                "label": label}

    def describe(self) -> str:
        return (f"{type(self).__name__}: {len(self)} procedural {self.resolution}x{self.resolution} images "
                f"of {', '.join(SHAPES)} ({self.style})")


class ShapeEdges(Shapes):
    """{"A": edge map, "B": image}: Shapes as aligned pairs, the layout of PairedImages."""

    sample_key = "B"

    def sample(self, index: int, seed: int) -> dict:
        image, edges, _ = self._draw(index)
        return {"A": _as_channels(edges, self.channels), "B": _as_channels(image, self.channels)}


class ColorDomains(Shapes):
    """{"A", "B"}: warm shapes on dark grounds (A) and cool shapes on light grounds (B), unpaired:
    B is an independent draw, chosen by the draw's seed, as in UnpairedImages."""

    sample_key = "B"

    def sample(self, index: int, seed: int) -> dict:
        a, _, _ = self._draw(index, PALETTE_WARM)
        partner = random.Random(seed * 7919 + 1).randrange(self.size)
        b, _, _ = self._draw(partner, PALETTE_COOL)
        return {"A": _as_channels(a, self.channels), "B": _as_channels(b, self.channels)}


class OracleLSTM(nn.Module):
    """A fixed, randomly initialised LSTM language model: the 'true' distribution of SeqGAN's
    synthetic experiment. Weights are N(0, 1) from `seed`, which makes its distribution peaked."""

    def __init__(self, vocab_size: int = 5000, hidden: int = 32, embed: int = 32, seed: int = 0) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.embed = nn.Embedding(vocab_size + 1, embed)  # the extra row is the start token
        self.cell = nn.LSTMCell(embed, hidden)
        self.head = nn.Linear(hidden, vocab_size)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))
        self.requires_grad_(False)

    @torch.no_grad()
    def sample(self, n: int, length: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(n, length) token ids drawn autoregressively."""
        token = torch.full((n,), self.vocab_size, dtype=torch.long)
        state, out = None, []
        for _ in range(length):
            state = self.cell(self.embed(token), state)
            # Inverse-CDF sampling: one uniform per row, much faster than multinomial on wide rows.
            cdf = F.softmax(self.head(state[0]), dim=-1).cumsum_(dim=-1)
            u = torch.rand(n, 1, generator=generator) * cdf[:, -1:]
            token = torch.searchsorted(cdf, u)[:, 0].clamp_(max=self.vocab_size - 1)
            out.append(token)
        return torch.stack(out, dim=1)

    @torch.no_grad()
    def nll(self, tokens: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood per token of each sequence, (n,): the oracle NLL metric."""
        previous = torch.full((tokens.shape[0],), self.vocab_size, dtype=torch.long, device=tokens.device)
        state, total = None, torch.zeros(tokens.shape[0], device=tokens.device)
        for t in range(tokens.shape[1]):
            state = self.cell(self.embed(previous), state)
            logp = F.log_softmax(self.head(state[0]), dim=-1)
            total -= logp.gather(1, tokens[:, t:t + 1])[:, 0]
            previous = tokens[:, t]
        return total / tokens.shape[1]


class OracleSequences(GanDataset):
    """{"tokens"}: `size` sequences of `length` tokens sampled from OracleLSTM(seed).

    Sequences are drawn in blocks of BLOCK, block b in one batched call from a generator seeded by
    (seed, b), when one of its sequences is first asked for, and kept: building the dataset costs
    nothing, a pass over it costs one batched draw per block, and any process regenerates the same
    sequence i (row i % BLOCK of block i // BLOCK, whatever the dataset's size)."""

    sample_key = "tokens"
    BLOCK = 1024

    def __init__(self, size: int = 10000, vocab_size: int = 5000, length: int = 20, hidden: int = 32,
                 seed: int = 0) -> None:
        if vocab_size < 2 or length < 1:
            raise DataError(f"vocab_size must be >= 2 and length >= 1, got {vocab_size} and {length}")
        self.size, self.length, self.seed = _check_size(size), length, seed
        self.oracle = OracleLSTM(vocab_size, hidden, hidden, seed)
        self._blocks: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return self.size

    def sample(self, index: int, seed: int) -> dict:
        block, row = divmod(index, self.BLOCK)
        if block not in self._blocks:
            g = draw_generator(self.seed * 1_000_003 + block)
            self._blocks[block] = self.oracle.sample(self.BLOCK, self.length, g)
        return {"tokens": self._blocks[block][row].clone()}

    def describe(self) -> str:
        return (f"oracle LSTM sequences: {len(self)} x {self.length} tokens, "
                f"vocabulary {self.oracle.vocab_size}")
