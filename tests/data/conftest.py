"""Small image files written by the tests themselves (no downloads, no shipped fixtures)."""

import numpy as np
import pytest
from PIL import Image


def write_image(path, size=(12, 10), mode="RGB", value=None, seed=0):
    """An image of `size` (w, h) in PIL `mode`, random content unless `value` is given."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    w, h = size
    if mode == "I;16":
        arr = (np.full((h, w), value, np.uint16) if value is not None
               else rng.integers(0, 65535, (h, w), np.uint16))
        Image.fromarray(arr).save(path)  # uint16 -> a 16-bit PNG
        return path
    channels = {"L": 1, "RGB": 3, "RGBA": 4, "LA": 2}[mode]
    shape = (h, w) if channels == 1 else (h, w, channels)
    arr = np.full(shape, value, np.uint8) if value is not None else rng.integers(0, 256, shape, np.uint8)
    Image.fromarray(arr.squeeze() if channels == 1 else arr).convert(mode).save(path)
    return path


@pytest.fixture
def make_image():
    return write_image
