"""Reading image files into [-1, 1] tensors, whatever their mode, and finding them on disk.

Every loader goes through `load_image`, so grayscale, palette, RGBA and 16-bit files come out with
the channel count the model was built for. Files that cannot be decoded raise DataError naming the
file, and the folder datasets decide whether that skips the file or stops the run.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable

import numpy as np
import torch
from PIL import Image

from gancore.data.base import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
ON_ERROR = ("skip", "raise")

# Transparent pixels are composited over white, the usual background of icon-like datasets.
_BACKGROUND = (255, 255, 255)


def check_on_error(on_error: str) -> str:
    if on_error not in ON_ERROR:
        raise DataError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
    return on_error


def check_channels(channels: int) -> int:
    if channels not in (1, 3):
        raise DataError(f"channels must be 1 or 3, got {channels}")
    return channels


def require_dir(path: str | os.PathLike, what: str = "data.path") -> str:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataError(f"{what}: no such file or directory: {path!r}")
    if not os.path.isdir(path):
        raise DataError(f"{what}: {path!r} is not a directory")
    return path


def find_images(root: str) -> list[str]:
    """Image files under `root`, recursively, as paths relative to root, sorted for a stable order."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        for name in filenames:
            if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith("."):
                found.append(os.path.relpath(os.path.join(dirpath, name), root))
    found.sort()
    return found


def to_8bit(img: Image.Image) -> Image.Image:
    """16-bit and float images to 8-bit grayscale, scaled (PIL's own convert clips them at 255);
    other modes pass through. The one 16-bit scaling of gancore: training data and `gancore fid`."""
    if img.mode.startswith("I;16") or img.mode == "I":
        arr = np.asarray(img, dtype=np.float64) / 65535.0  # "I" is how PIL holds 16-bit PNGs too
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)  # float images are taken to be in [0, 1]
    else:
        return img
    return Image.fromarray((np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8), mode="L")


def _flatten_alpha(img: Image.Image) -> Image.Image:
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _BACKGROUND + (255,))
        img = Image.alpha_composite(background, rgba)
    return img


def open_image(path: str, channels: int) -> Image.Image:
    """Decode `path` to an 8-bit PIL image with `channels` (1: "L", 3: "RGB") channels."""
    try:
        with Image.open(path) as img:
            img.load()
            img = _flatten_alpha(to_8bit(img))
            return img.convert("L" if channels == 1 else "RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise DataError(f"cannot read image {path!r}: {err}") from err


def is_readable_header(path: str) -> bool:
    """Cheap check (header only) used when a folder is first scanned."""
    try:
        with Image.open(path) as img:
            img.size  # noqa: B018 - the header parse is the check
        return True
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return False


def resize_center_crop(img: Image.Image, size: int) -> Image.Image:
    """Scale the shorter side to `size` (bicubic, antialiased) and crop the centre square."""
    w, h = img.size
    scale = size / min(w, h)
    if scale != 1.0:
        img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC)
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    return img.crop((left, top, left + size, top + size))


def to_tensor(img: Image.Image) -> torch.Tensor:
    """8-bit PIL image -> float32 (C, H, W) in [-1, 1]."""
    arr = np.asarray(img, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(127.5).sub_(1.0)


def screen_files(root: str, files: Iterable[str], on_error: str) -> tuple[list[str], list[str]]:
    """Split files into (readable, bad) by their header; with on_error="raise" a bad file is an error."""
    good, bad = [], []
    for rel in files:
        if is_readable_header(os.path.join(root, rel)):
            good.append(rel)
        elif on_error == "raise":
            raise DataError(f"cannot read image {os.path.join(root, rel)!r} (on_error='raise')")
        else:
            bad.append(rel)
    if bad:
        warnings.warn(f"{root}: skipping {len(bad)} unreadable image file(s), e.g. {bad[0]!r}", stacklevel=3)
    return good, bad
