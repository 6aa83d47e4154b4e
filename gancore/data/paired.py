"""pix2pix's aligned and CycleGAN's unaligned image folders, with the reference preprocessing.

The layouts are those of junyanz/pytorch-CycleGAN-and-pix2pix:
- "aligned" (pix2pix): `path/{split}/` (or `path/` itself) holding files with A and B side by side,
  or folders A/ and B/ with files of matching names (see PairedImages);
- "unaligned" (CycleGAN): `path/{split}A/` and `path/{split}B/` (see UnpairedImages).

The preprocessing is the reference's: "resize_and_crop" scales to load_size x load_size (bicubic),
crops a random crop_size square and flips it horizontally with probability 1/2; "crop" only crops;
"scale_width" / "scale_width_and_crop" scale the width to load_size keeping the aspect ratio (then
crop); "none" keeps the full image, rounding each side to a multiple of 4 (a no-op for images whose
sides already are), which is what the generators' down- and up-sampling need. Aligned pairs share one
crop and flip; unaligned images each draw their own, as in the reference. The draws come from the
sample's seed (GanDataset.sample), so a resumed run reads exactly what a straight one does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from PIL import Image

from gancore.data.base import DataError, draw_generator
from gancore.data.folders import PairedImages, UnpairedImages
from gancore.data.imageio import open_image, to_tensor

PREPROCESS = ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none")

#: The generators halve the resolution twice (ResNet) or more (U-Net): "none" rounds sides to this.
SIDE_MULTIPLE = 4


@dataclass(frozen=True)
class Preprocess:
    """The reference transform: resize (or scale the width), random crop, random horizontal flip."""

    preprocess: str = "resize_and_crop"
    load_size: int = 286
    crop_size: int = 256
    flip: bool = True

    def __post_init__(self) -> None:
        if self.preprocess not in PREPROCESS:
            raise DataError(f"data.preprocess: must be one of {list(PREPROCESS)}, got {self.preprocess!r}")
        if self.load_size < 1 or self.crop_size < 1:
            raise DataError(f"data.load_size and data.crop_size must be >= 1, got {self.load_size} and "
                            f"{self.crop_size}")
        if self.preprocess in ("resize_and_crop", "scale_width_and_crop") and self.crop_size > self.load_size:
            raise DataError(f"data.crop_size ({self.crop_size}) must not exceed data.load_size "
                            f"({self.load_size}) with preprocess={self.preprocess!r}")

    def _resized_size(self, size: tuple[int, int]) -> tuple[int, int]:
        w, h = size
        if self.preprocess == "resize_and_crop":
            return self.load_size, self.load_size
        if self.preprocess.startswith("scale_width"):
            return self.load_size, max(1, self.load_size * h // w)
        return w, h

    def draw(self, size: tuple[int, int], seed: int) -> tuple[int, int, bool]:
        """(left, top, flip) for an image of `size` (w, h): one draw, shared by both halves of a pair."""
        w, h = self._resized_size(size)
        g = draw_generator(seed)
        left = int(torch.randint(max(0, w - self.crop_size) + 1, (1,), generator=g))
        top = int(torch.randint(max(0, h - self.crop_size) + 1, (1,), generator=g))
        flip = self.flip and bool(torch.rand((), generator=g) < 0.5)
        return left, top, flip

    def __call__(self, img: Image.Image, params: tuple[int, int, bool]) -> Image.Image:
        left, top, flip = params
        if self.preprocess == "resize_and_crop":
            img = img.resize((self.load_size, self.load_size), Image.BICUBIC)
        elif self.preprocess.startswith("scale_width") and img.size[0] != self.load_size:
            img = img.resize(self._resized_size(img.size), Image.BICUBIC)
        if self.preprocess.endswith("crop"):
            w, h = img.size
            if w < self.crop_size or h < self.crop_size:
                raise DataError(f"an image of {w}x{h} is smaller than data.crop_size={self.crop_size} "
                                f"(preprocess={self.preprocess!r})")
            img = img.crop((left, top, left + self.crop_size, top + self.crop_size))
        elif self.preprocess == "none":
            w, h = img.size
            rounded = tuple(max(SIDE_MULTIPLE, round(s / SIDE_MULTIPLE) * SIDE_MULTIPLE) for s in (w, h))
            if rounded != (w, h):
                img = img.resize(rounded, Image.BICUBIC)
        return img.transpose(Image.FLIP_LEFT_RIGHT) if flip else img


def _split_root(path: str, split: str) -> str:
    nested = os.path.join(path, split)
    return nested if os.path.isdir(nested) else path


class AlignedImages(PairedImages):
    """Aligned pairs {"A", "B"} (pix2pix), read from `path/{split}` when it exists, else from `path`,
    with the reference preprocessing applied to both images with the same crop and flip."""

    def __init__(self, path: str, split: str = "train", preprocess: str = "resize_and_crop",
                 load_size: int = 286, crop_size: int = 256, flip: bool = True, channels: int = 3,
                 layout: str = "auto", on_error: str = "skip") -> None:
        if not os.path.isdir(path):
            raise DataError(f"data.path: no such directory: {path!r}")
        self.transform = Preprocess(preprocess, load_size, crop_size, flip)
        super().__init__(_split_root(path, split), resolution=None, channels=channels, layout=layout,
                         on_error=on_error)

    def _open_tagged(self, path: str) -> Image.Image:
        try:
            return open_image(path, self.channels)
        except DataError as err:
            err.path = path  # the fallback of _ImageFiles skips this file from now on
            raise

    def _load(self, index: int, seed: int) -> dict:
        a_path, b_path = self.pairs[index]
        if b_path is not None:
            a, b = self._open_tagged(a_path), self._open_tagged(b_path)
        else:
            ab = self._open_tagged(a_path)
            w, h = ab.size
            a, b = ab.crop((0, 0, w // 2, h)), ab.crop((w // 2, 0, 2 * (w // 2), h))
        params = self.transform.draw(a.size, seed)
        return {"A": to_tensor(self.transform(a, params)), "B": to_tensor(self.transform(b, params))}

    def describe(self) -> str:
        t = self.transform
        return (f"aligned pairs {self.root!r} ({self.layout}): {len(self)} pairs, preprocess {t.preprocess} "
                f"(load {t.load_size}, crop {t.crop_size}, flip {t.flip}), {self.skipped} skipped")


class UnalignedImages(UnpairedImages):
    """Two unaligned domains {"A", "B"} (CycleGAN) in `path/{split}A` and `path/{split}B`: A in order,
    B drawn at random per draw, each with its own reference preprocessing draw."""

    def __init__(self, path: str, split: str = "train", preprocess: str = "resize_and_crop",
                 load_size: int = 286, crop_size: int = 256, flip: bool = True, channels: int = 3,
                 on_error: str = "skip") -> None:
        self.transform = Preprocess(preprocess, load_size, crop_size, flip)
        super().__init__(path, resolution=None, channels=channels, split=split, on_error=on_error)

    def _load_transformed(self, path: str, seed: int) -> torch.Tensor:
        try:
            img = open_image(path, self.channels)
        except DataError as err:
            err.path = path
            raise
        return to_tensor(self.transform(img, self.transform.draw(img.size, seed)))

    def _load(self, index: int, seed: int) -> dict:
        b_index = int(torch.randint(len(self.b_files), (1,), generator=draw_generator(seed)))
        a_path = os.path.join(self.a_dir, self.a_files[index % len(self.a_files)])
        b_path = os.path.join(self.b_dir, self.b_files[b_index])
        # Seeds of their own for the two crops, distinct from the one that picked B.
        return {"A": self._load_transformed(a_path, seed * 2 + 1), "B": self._load_transformed(b_path, seed * 2 + 2)}

    def describe(self) -> str:
        t = self.transform
        return (f"unaligned domains {self.a_dir!r} ({len(self.a_files)}) and {self.b_dir!r} "
                f"({len(self.b_files)}), preprocess {t.preprocess} (load {t.load_size}, crop {t.crop_size}, "
                f"flip {t.flip}), {self.skipped} skipped")
