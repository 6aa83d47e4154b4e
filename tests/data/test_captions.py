"""The built-in captioned shapes: every caption names the colour, shape and position that were drawn."""

import colorsys
import random

import pytest
import torch

from gancore.data import BUILTIN, DataError, build_dataset
from gancore.data.builtin import SHAPES
from gancore.data.captions import COLOURS, POSITIONS, WORDS, ShapeCaptions, caption, random_caption


def _foreground(image: torch.Tensor) -> torch.Tensor:
    """(H, W) mask of the shape's pixels: the ground is grey (r = g = b), the shapes saturated."""
    return (image.amax(0) - image.amin(0)) > 0.5


@pytest.mark.parametrize("style", ["varied", "simple"])
def test_captions_name_the_drawn_colour_shape_and_position(style):
    data = ShapeCaptions(size=200, resolution=32, seed=3, style=style)
    hues = list(COLOURS.values())
    far_from_a_border = partial = 0
    for i in range(len(data)):
        s = data[i]
        full = caption(list(COLOURS)[s["colour"]], SHAPES[s["shape"]], POSITIONS[s["position"]])
        short = f"a {list(COLOURS)[s['colour']]} {SHAPES[s['shape']]}"
        assert s["caption"] in (full, short)
        partial += s["caption"] == short
        mask = _foreground(s["image"])
        if style == "simple":  # on black
            assert s["image"][:, ~mask].min() == -1 and s["image"][:, 0, 0].eq(-1).all()
            if SHAPES[s["shape"]] == "square":  # upright: it fills its bounding box
                ys, xs = torch.nonzero(mask, as_tuple=True)
                assert mask.sum() > 0.8 * (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
        rgb = ((s["image"][:, mask].mean(1) + 1) / 2).tolist()
        hue = colorsys.rgb_to_hsv(*rgb)[0]
        distance = [min(abs(hue - h), 1 - abs(hue - h)) for h in hues]
        assert min(range(len(hues)), key=distance.__getitem__) == s["colour"], s["caption"]
        # The position from the drawn pixels agrees wherever the centroid is clear of a cell border.
        ys, xs = torch.nonzero(mask, as_tuple=True)
        centre = ((xs.float().mean() + 0.5) / 32, (ys.float().mean() + 0.5) / 32)
        if all(min(abs(c - 0.4), abs(c - 0.6)) > 0.03 for c in centre):
            far_from_a_border += 1
            cells = [0 if c < 0.4 else (2 if c > 0.6 else 1) for c in centre]
            assert 3 * cells[1] + cells[0] == s["position"], s["caption"]
    # the simple style's larger shapes sit nearer the centre, so more centroids fall near a cell border
    assert far_from_a_border > (100 if style == "varied" else 60)
    assert 25 < partial < 75  # a quarter leave the position out
    counts = torch.bincount(torch.tensor([data[i]["position"] for i in range(len(data))]), minlength=9)
    assert (counts > 0).all()  # every position occurs


def test_a_narrow_spread_draws_every_shape_in_the_center():
    data = ShapeCaptions(size=100, resolution=32, seed=3, style="simple", spread=0.25)
    assert all(data[i]["position"] == POSITIONS.index((None, None)) for i in range(len(data)))
    assert all(data[i]["caption"].endswith(("in the center", "circle", "square", "triangle", "cross"))
               for i in range(len(data)))
    anywhere = ShapeCaptions(size=100, resolution=32, seed=3, style="simple")
    assert [anywhere[i]["shape"] for i in range(100)] == [data[i]["shape"] for i in range(100)]  # the same draws
    assert len({anywhere[i]["position"] for i in range(100)}) == 9


def test_samples_are_a_function_of_seed_and_index():
    a, b = ShapeCaptions(size=4, seed=1), ShapeCaptions(size=4, seed=1)
    assert torch.equal(a[2]["image"], b[2]["image"]) and a[2]["caption"] == b[2]["caption"]
    other = ShapeCaptions(size=4, seed=2)
    assert [a[i]["caption"] for i in range(4)] != [other[i]["caption"] for i in range(4)]


def test_vocabulary_covers_every_caption():
    rng = random.Random(0)
    words = {w for _ in range(500) for w in random_caption(rng).split()}
    assert words <= set(WORDS) and len(set(WORDS)) == len(WORDS)
    data = ShapeCaptions(size=50, resolution=16)
    assert {w for i in range(50) for w in data[i]["caption"].split()} <= set(WORDS)


def test_registered_as_a_builtin_with_the_options_checked():
    assert "shape-captions" in BUILTIN
    data = build_dataset({"name": "shape-captions", "size": 3}, hints={"resolution": 16, "channels": 1})
    assert isinstance(data, ShapeCaptions) and data[0]["image"].shape == (1, 16, 16)
    with pytest.raises(DataError, match="resolution"):
        ShapeCaptions(resolution=4)
    with pytest.raises(DataError, match="style must be one of"):
        ShapeCaptions(style="plain")
    with pytest.raises(DataError, match="partial"):
        ShapeCaptions(partial=1.5)
    for spread in (0, 1.5):
        with pytest.raises(DataError, match="spread must be in"):
            ShapeCaptions(spread=spread)
    assert all(len(ShapeCaptions(size=20, partial=0.0)[i]["caption"].split()) > 3 for i in range(20))
    with pytest.raises(DataError, match="size"):
        ShapeCaptions(size=0)
