"""Super-resolution data: the one bicubic downscale of gancore, and built-in textured images.

`downscale` makes every low-resolution input in gancore (training crops, `gancore eval-sr`, the
built-in data): PIL's bicubic resize, which widens its kernel by the factor when shrinking (an
antialiased bicubic, like MATLAB's imresize that SR benchmarks use).

SRTextures draws images with what an SR network has to learn to restore: sharp antialiased edges of
shapes and lines, fine stripes near the LR Nyquist limit, and smooth gradients, on the fly from
(seed, index), so no download is needed and held-out images are another seed.
"""

from __future__ import annotations

import colorsys
import math
import random

import numpy as np
from PIL import Image, ImageDraw

from gancore.data.base import DataError, GanDataset
from gancore.data.imageio import check_channels, to_tensor

_SUPERSAMPLE = 4


def check_scale(hr_size: int, scale: int) -> None:
    if not isinstance(scale, int) or scale < 1:
        raise DataError(f"scale must be an integer >= 1, got {scale!r}")
    if not isinstance(hr_size, int) or hr_size < scale or hr_size % scale:
        raise DataError(f"hr_size ({hr_size!r}) must be a positive multiple of scale ({scale})")


def mod_crop(img: Image.Image, scale: int) -> Image.Image:
    """Crop the right and bottom so both sides are multiples of `scale` (as SR evaluations do)."""
    w, h = img.size
    if w < scale or h < scale:
        raise DataError(f"a {w}x{h} image is smaller than the scale factor {scale}")
    return img.crop((0, 0, w - w % scale, h - h % scale))


def downscale(img: Image.Image, scale: int) -> Image.Image:
    """The LR image of `img` (sides multiples of `scale`): bicubic, antialiased."""
    w, h = img.size
    if w % scale or h % scale:
        raise DataError(f"image sides {w}x{h} must be multiples of the scale factor {scale} (mod_crop first)")
    return img.resize((w // scale, h // scale), Image.BICUBIC)


def upscale(img: Image.Image, scale: int) -> Image.Image:
    """Bicubic upscaling by `scale`: the baseline that SR tables list as "bicubic"."""
    return img.resize((img.width * scale, img.height * scale), Image.BICUBIC)


def _colour(rng: random.Random) -> tuple[int, int, int]:
    rgb = colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.3, 1.0), rng.uniform(0.2, 1.0))
    return tuple(round(255 * c) for c in rgb)


def _background(rng: random.Random, size: int) -> Image.Image:
    """A linear gradient between two colours with a sinusoidal grating (period 3 to 12 HR pixels) on top."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / size
    angle = rng.uniform(0, math.pi)
    ramp = (np.cos(angle) * xx + np.sin(angle) * yy)
    ramp = (ramp - ramp.min()) / max(ramp.max() - ramp.min(), 1e-9)
    a, b = np.array(_colour(rng), np.float64), np.array(_colour(rng), np.float64)
    img = a + ramp[..., None] * (b - a)
    period, theta = rng.uniform(3.0, 12.0) / size, rng.uniform(0, math.pi)
    wave = np.sin(2 * math.pi * (np.cos(theta) * xx + np.sin(theta) * yy) / period + rng.uniform(0, 2 * math.pi))
    img += rng.uniform(10, 50) * wave[..., None]
    return Image.fromarray(np.clip(img, 0, 255).round().astype(np.uint8), "RGB")


def draw_texture(rng: random.Random, size: int) -> Image.Image:
    """One RGB image of `size` x `size`: gradient and grating, then shapes and lines drawn supersampled."""
    big = size * _SUPERSAMPLE
    layer = _background(rng, size).resize((big, big), Image.BICUBIC)
    draw = ImageDraw.Draw(layer)
    for _ in range(rng.randint(3, 7)):
        r = rng.uniform(0.06, 0.3) * big
        cx, cy = rng.uniform(0, big), rng.uniform(0, big)
        kind = rng.randrange(3)
        if kind == 0:
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=_colour(rng))
        elif kind == 1:
            sides, turn = rng.randint(3, 6), rng.uniform(0, 2 * math.pi)
            draw.polygon([(cx + r * math.cos(turn + 2 * math.pi * k / sides),
                           cy + r * math.sin(turn + 2 * math.pi * k / sides)) for k in range(sides)],
                         fill=_colour(rng))
        else:  # a bundle of parallel lines, 1 to 3 HR pixels wide
            width = rng.randint(1, 3) * _SUPERSAMPLE
            step, turn, colour = width * rng.uniform(2.0, 4.0), rng.uniform(0, math.pi), _colour(rng)
            dx, dy = math.cos(turn) * r, math.sin(turn) * r
            for k in range(-3, 4):
                ox, oy = -math.sin(turn) * k * step, math.cos(turn) * k * step
                draw.line((cx + ox - dx, cy + oy - dy, cx + ox + dx, cy + oy + dy), fill=colour, width=width)
    return layer.resize((size, size), Image.LANCZOS)


class SRTextures(GanDataset):
    """{"lr", "hr"}: built-in textured `hr_size` images and their bicubic downscale by `scale`."""

    sample_key = "hr"

    def __init__(self, size: int = 10000, hr_size: int = 96, scale: int = 4, channels: int = 3,
                 seed: int = 0) -> None:
        if size < 1:
            raise DataError(f"size must be >= 1, got {size}")
        check_scale(hr_size, scale)
        self.size, self.hr_size, self.scale, self.seed = size, hr_size, scale, seed
        self.channels = check_channels(channels)

    def __len__(self) -> int:
        return self.size

    def image(self, index: int) -> Image.Image:
        """The HR image `index` as a PIL image."""
        img = draw_texture(random.Random(self.seed * 1_000_003 + index), self.hr_size)
        return img.convert("L") if self.channels == 1 else img

    def sample(self, index: int, seed: int) -> dict:
        hr = self.image(index)
        return {"lr": to_tensor(downscale(hr, self.scale)), "hr": to_tensor(hr)}

    def describe(self) -> str:
        return (f"SRTextures: {len(self)} procedural {self.hr_size}x{self.hr_size} images (shapes, lines, "
                f"stripes, gradients), LR x1/{self.scale} bicubic")
