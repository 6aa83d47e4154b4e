"""Built-in captioned images for text-to-image GANs: the shapes of gancore.data.builtin, each drawn in a
named colour, with a caption naming its colour, shape and position, e.g. "a red circle at the top left".

The drawing is builtin.draw_shape with a palette narrowed to the named hue, in one of two styles:
builtin.STYLES' "varied" (the default: rotated shapes on a dark grey ground) or "simple" (upright
shapes of the simple shapes' size on black), with the named hue instead of the style's colours and the
shape anywhere in the image (the position words need every position). The position words come from
where the shape landed (the centroid of its edge map on a 3x3 grid), so caption and picture agree by
construction. `spread` (1: the default) narrows the range of the shape's centre around the image's centre,
as builtin.draw_shape's does; at 0.25 every shape is drawn in the center cell. One template, so two full
captions are equal exactly when they name the same (colour, shape, position): a family may compare
captions to tell matching from mismatching pairs. A fraction `partial` of the captions leave the position
out ("a red circle"), so that a model also learns captions that say less than the picture shows.
"""

from __future__ import annotations

import random

import numpy as np

from gancore.data.base import DataError, GanDataset
from gancore.data.builtin import SHAPES, STYLES, _as_channels, _check_size, draw_shape
from gancore.data.imageio import check_channels

#: Named colours and their hues (HSV, in [0, 1]): six well-separated hues, 60 degrees apart.
COLOURS = {"red": 0.0, "yellow": 1 / 6, "green": 2 / 6, "cyan": 3 / 6, "blue": 4 / 6, "magenta": 5 / 6}
_HUE_SPREAD = 0.03
#: Rows and columns of the 3x3 position grid; None is the middle one, which the caption leaves unsaid.
ROWS = ("top", None, "bottom")
COLUMNS = ("left", None, "right")
POSITIONS = tuple((r, c) for r in ROWS for c in COLUMNS)
#: Every word a built-in caption uses, in a fixed order (a word-level encoder's vocabulary).
WORDS = ("a", "at", "the", "in", "center", *COLOURS, *SHAPES, "top", "bottom", "left", "right")


def position_phrase(row: str | None, column: str | None) -> str:
    """'at the top left', 'at the top', 'at the left' or 'in the center'."""
    words = [w for w in (row, column) if w]
    return "at the " + " ".join(words) if words else "in the center"


def caption(colour: str, shape: str, position: tuple[str | None, str | None]) -> str:
    return f"a {colour} {shape} {position_phrase(*position)}"


def random_caption(rng: random.Random) -> str:
    """A caption of the built-in data's kind, uniformly over colours, shapes and positions."""
    return caption(rng.choice(list(COLOURS)), rng.choice(SHAPES), rng.choice(POSITIONS))


def _grid_cell(coordinate: float) -> int:
    """0, 1 or 2 for a centroid coordinate in [0, 1]. Shape centres fall in about [0.2, 0.8], so the middle
    band (0.4, 0.6) holds about 40% of them and each outer band about 30%."""
    return 0 if coordinate < 0.4 else (2 if coordinate > 0.6 else 1)


class ShapeCaptions(GanDataset):
    """{"image", "caption", "colour", "shape", "position"}: a shape in one of COLOURS on a dark ground, its
    caption (without the position for a fraction `partial` of the samples), and the indices of its colour
    (in COLOURS), shape (in SHAPES) and position (in POSITIONS). `style`: "varied" or "simple" (builtin.STYLES).
    `spread` in (0, 1]: the part of the free range around the image's centre that the shape's centre is drawn
    from (1: anywhere the shape fits; small values keep every shape in the center cell)."""

    def __init__(self, size: int = 20000, resolution: int = 32, channels: int = 3, partial: float = 0.25,
                 seed: int = 0, style: str = "varied", spread: float = 1.0) -> None:
        self.size, self.resolution, self.seed = _check_size(size), resolution, seed
        self.channels = check_channels(channels)
        if resolution < 8:
            raise DataError(f"resolution must be >= 8, got {resolution}")
        if not 0.0 <= partial <= 1.0:
            raise DataError(f"partial must be in [0, 1], got {partial}")
        self.partial = partial
        if style not in STYLES:
            raise DataError(f"style must be one of {sorted(STYLES)}, got {style!r}")
        self.style = style
        if not (isinstance(spread, (int, float)) and 0.0 < spread <= 1.0):
            raise DataError(f"spread must be in (0, 1], got {spread!r}")
        self.spread = float(spread)

    def __len__(self) -> int:
        return self.size

    def sample(self, index: int, seed: int) -> dict:
        rng = random.Random(self.seed * 1_000_003 + index)
        colour = rng.randrange(len(COLOURS))
        hue = list(COLOURS.values())[colour]
        # draw_shape takes hue ranges modulo 1, so red's range may straddle 0.
        style_palette, radius, rotate, _ = STYLES[self.style]  # the style's ground, size and angle
        palette = ((hue - _HUE_SPREAD, hue + _HUE_SPREAD), (0.8, 1.0), (0.8, 1.0), style_palette[3])
        image, edges, shape = draw_shape(rng, self.resolution, palette, radius, rotate, self.spread)
        rim = np.asarray(edges, dtype=np.float64)
        ys, xs = np.nonzero(rim)
        if len(xs):
            cx, cy = (xs.mean() + 0.5) / self.resolution, (ys.mean() + 0.5) / self.resolution
        else:  # a shape too small to leave a rim: call it central
            cx = cy = 0.5
        position = 3 * _grid_cell(cy) + _grid_cell(cx)
        text = caption(list(COLOURS)[colour], SHAPES[shape], POSITIONS[position])
        if rng.random() < self.partial:
            text = text.split(" at ")[0].split(" in ")[0]
        return {"image": _as_channels(image, self.channels), "caption": text,
                "colour": colour, "shape": shape, "position": position}

    def describe(self) -> str:
        where = "" if self.spread == 1.0 else f", spread {self.spread:g}"
        return (f"shape captions ({self.style}{where}): {len(self)} procedural {self.resolution}x{self.resolution} "
                f"images of {len(COLOURS)} colours x {len(SHAPES)} shapes x {len(POSITIONS)} positions, captioned")


__all__ = ["COLOURS", "POSITIONS", "WORDS", "ShapeCaptions", "caption", "position_phrase", "random_caption"]
