"""Semantic label maps with instance maps and their photos, for pix2pixHD: Cityscapes-style folders, and
built-in street scenes drawn procedurally (no download).

A sample is {"label", "inst", "image"}:
- "label": (1, H, W) int64 class ids in [0, label_nc), or with label_nc=0 an RGB image (3, H, W) in [-1, 1]
  (pix2pixHD's RGB-input mode);
- "inst": (1, H, W) int64 instance ids, Cityscapes' convention: a "thing" instance is class * 1000 + k,
  a "stuff" region carries its class id; absent when there are no instance maps;
- "image": (3, H, W) in [-1, 1], the photo the generator learns.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch
from PIL import Image, ImageDraw

from gancore.data.base import DataError, GanDataset, draw_generator
from gancore.data.imageio import find_images, open_image, require_dir, to_tensor

#: The built-in scenes' classes, in id order; the last three are "things" with instances.
SCENE_CLASSES = ("sky", "road", "sidewalk", "building", "vegetation", "car", "person", "pole")
THINGS = (5, 6, 7)
# Base colours (RGB 0..255) of each class in the rendered photos and in the RGB label maps.
_PHOTO = np.array([(120, 170, 230), (80, 80, 85), (170, 160, 150), (150, 110, 90), (60, 130, 50),
                   (200, 30, 40), (220, 180, 140), (200, 200, 60)], dtype=np.float32)
_LABEL_COLOURS = np.array([(70, 130, 180), (128, 64, 128), (244, 35, 232), (70, 70, 70), (107, 142, 35),
                           (0, 0, 142), (220, 20, 60), (153, 153, 153)], dtype=np.uint8)


def _check_label_nc(label_nc: int, minimum: int) -> int:
    if not isinstance(label_nc, int) or (label_nc != 0 and label_nc < minimum):
        raise DataError(f"data.label_nc (set from model.label_nc): must be 0 (RGB label maps) or >= {minimum} "
                        f"(the data's classes), got {label_nc!r}")
    return label_nc


def colourise(label: np.ndarray) -> np.ndarray:
    """(H, W) scene class ids -> (H, W, 3) uint8 colours (Cityscapes' palette for the same classes)."""
    return _LABEL_COLOURS[label]


def draw_scene(rng: random.Random, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """One street scene: (class ids (H, W) uint8, instance ids (H, W) int64)."""
    label = Image.new("L", (width, height), 0)
    inst = Image.new("I", (width, height), 0)
    dl, di = ImageDraw.Draw(label), ImageDraw.Draw(inst)

    def paint(kind: int, shape: str, box: list[float], instance: int) -> None:
        for draw, value in ((dl, kind), (di, instance)):
            getattr(draw, shape)(box, fill=value)

    horizon = rng.uniform(0.35, 0.55) * height
    paint(1, "rectangle", [0, horizon, width, height], 1)
    walk = rng.uniform(0.05, 0.12) * height
    paint(2, "rectangle", [0, horizon, width, horizon + walk], 2)
    x = 0.0
    while x < width:  # a row of buildings and trees behind the sidewalk
        w = rng.uniform(0.08, 0.25) * width
        if rng.random() < 0.7:
            paint(3, "rectangle", [x, rng.uniform(0.05, 0.8) * horizon, x + w, horizon], 3)
        else:
            r = w / 2
            paint(4, "ellipse", [x, horizon - 2.2 * r, x + w, horizon + 0.2 * r], 4)
        x += w
    things = [(7, k) for k in range(rng.randint(0, 2))] + [(6, k) for k in range(rng.randint(0, 3))] \
        + [(5, k) for k in range(rng.randint(1, 4))]
    for kind, k in things:  # poles far, people then cars near: later ones occlude earlier ones
        depth = rng.uniform(0.2, 1.0)
        base = horizon + depth * (height - horizon) * 0.9
        cx = rng.uniform(0, width)
        instance = kind * 1000 + k
        if kind == 5:
            w, h = 0.25 * width * depth + 4, 0.12 * height * depth + 3
            paint(kind, "rounded_rectangle" if w > 8 else "rectangle", [cx - w / 2, base - h, cx + w / 2, base],
                  instance)
        elif kind == 6:
            w, h = 0.03 * width * depth + 2, 0.25 * height * depth + 4
            paint(kind, "ellipse", [cx - w / 2, base - h, cx + w / 2, base], instance)
        else:
            w, h = 0.01 * width + 1, 0.6 * horizon + depth * 0.2 * height
            paint(kind, "rectangle", [cx - w / 2, base - h, cx + w / 2, base], instance)
    return np.asarray(label, dtype=np.uint8), np.asarray(inst, dtype=np.int64)


def render_photo(rng: random.Random, label: np.ndarray, inst: np.ndarray) -> np.ndarray:
    """A photo of the scene, (H, W, 3) float32 in [0, 1]: class colours, a colour per car, daylight that
    varies per scene, shading that darkens towards the bottom of each region, windows on buildings."""
    h, w = label.shape
    photo = _PHOTO[label].copy()
    for instance in np.unique(inst[label == 5]):
        hue = np.array([rng.uniform(0.2, 1.0) for _ in range(3)], dtype=np.float32) * 255
        photo[inst == instance] = hue
    rows = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
    photo[label == 0] *= (1.1 - 0.3 * rows.repeat(w, 1))[label == 0, None]  # sky: lighter at the top
    ys, xs = np.mgrid[0:h, 0:w]
    windows = (label == 3) & ((ys // 4) % 3 == 0) & ((xs // 4) % 3 == 0)
    photo[windows] = (230, 220, 150)
    photo *= rng.uniform(0.7, 1.1)
    return np.clip(photo / 255.0, 0.0, 1.0)


def _label_tensor(label: np.ndarray, label_nc: int) -> torch.Tensor:
    if label_nc == 0:  # RGB input: the colourised label map
        rgb = colourise(label)
        return torch.from_numpy(rgb.astype(np.float32) / 127.5 - 1.0).permute(2, 0, 1).contiguous()
    return torch.from_numpy(label.astype(np.int64))[None]


class LabelScenes(GanDataset):
    """Built-in street scenes {"label", "inst", "image"} of width x height, one per (seed, index).

    label_nc >= 8 gives class ids (the scenes use ids 0..7; more classes are allowed and stay unused,
    as Cityscapes' unused ids), label_nc = 0 the colourised label map as RGB input. flip mirrors the
    scene horizontally with probability 1/2 per draw.
    """

    sample_key = "image"

    def __init__(self, size: int = 2000, width: int = 256, height: int = 128, label_nc: int = 8,
                 instances: bool = True, flip: bool = False, seed: int = 0) -> None:
        if size < 1:
            raise DataError(f"size must be >= 1, got {size}")
        if width < 8 or height < 8:
            raise DataError(f"width and height must be >= 8, got {width}x{height}")
        self.size, self.width, self.height, self.seed = size, width, height, seed
        self.label_nc = _check_label_nc(label_nc, len(SCENE_CLASSES))
        self.num_classes = label_nc or None
        self.instances, self.flip = instances, flip

    def __len__(self) -> int:
        return self.size

    def sample(self, index: int, seed: int) -> dict:
        rng = random.Random(self.seed * 1_000_003 + index)
        label, inst = draw_scene(rng, self.width, self.height)
        photo = render_photo(rng, label, inst)
        if self.flip and bool(torch.rand((), generator=draw_generator(seed)) < 0.5):
            label, inst, photo = label[:, ::-1], inst[:, ::-1], photo[:, ::-1]
        out = {"label": _label_tensor(np.ascontiguousarray(label), self.label_nc),
               "image": torch.from_numpy(np.ascontiguousarray(photo) * 2.0 - 1.0).permute(2, 0, 1).contiguous()}
        if self.instances:
            out["inst"] = torch.from_numpy(np.ascontiguousarray(inst))[None]
        return out

    def describe(self) -> str:
        return (f"built-in street scenes: {len(self)} label maps of {self.width}x{self.height} "
                f"({', '.join(SCENE_CLASSES)}), instances {self.instances}")


def read_id_map(path: str) -> np.ndarray:
    """An integer map (label or instance ids) from a PNG, exact: 8-bit, palette (indices) or 16/32-bit."""
    try:
        with Image.open(path) as img:
            if img.mode not in ("L", "P", "I", "I;16", "I;16B", "I;16L"):
                raise DataError(f"{path}: an id map must be a one-channel integer image (mode L, P, I or I;16), "
                                f"got mode {img.mode}")
            return np.asarray(img).astype(np.int64)
    except OSError as err:
        raise DataError(f"{path}: cannot read the id map: {err}") from None


class CityscapesFolders(GanDataset):
    """pix2pixHD's folder layout: `path/{split}_label/` (class ids), `path/{split}_img/` (photos) and,
    when present, `path/{split}_inst/` (instance ids), paired by sorted file order as in the reference.

    Preprocessing as the reference's default "scale_width": every map is scaled to `load_size` pixels wide
    keeping the aspect ratio (label and instance maps nearest, photos bicubic; 0 keeps the size), with
    sides rounded down to a multiple of `multiple` (the generator's total downsampling), and flipped
    horizontally with probability 1/2 per draw when `flip`. label_nc=0 reads {split}_label as RGB images.
    """

    sample_key = "image"

    def __init__(self, path: str, split: str = "train", label_nc: int = 35, load_size: int = 0, multiple: int = 32,
                 flip: bool = True, instances: bool = True) -> None:
        root = require_dir(path)
        self.label_nc = _check_label_nc(label_nc, 1)
        self.num_classes = label_nc or None
        if load_size < 0 or multiple < 1:
            raise DataError(f"load_size must be >= 0 and multiple >= 1, got {load_size} and {multiple}")
        self.load_size, self.multiple, self.flip = load_size, multiple, flip
        self.dirs = {k: os.path.join(root, f"{split}_{k}") for k in ("label", "img", "inst")}
        for key in ("label", "img"):
            if not os.path.isdir(self.dirs[key]):
                raise DataError(f"data.path: {root!r} has no {split}_{key}/ folder (pix2pixHD's layout: "
                                f"{split}_label/, {split}_img/ and optionally {split}_inst/)")
        self.instances = instances and os.path.isdir(self.dirs["inst"])
        self.files = {k: find_images(self.dirs[k]) for k in (("label", "img", "inst") if self.instances
                                                              else ("label", "img"))}
        counts = {k: len(v) for k, v in self.files.items()}
        if not counts["label"] or len(set(counts.values())) != 1:
            raise DataError(f"data.path: {root!r} needs as many files in each folder, and at least one; "
                            f"found {counts}")

    def __len__(self) -> int:
        return len(self.files["label"])

    def _size(self, w: int, h: int) -> tuple[int, int]:
        if self.load_size:
            w, h = self.load_size, max(1, round(self.load_size * h / w))
        m = self.multiple
        if w < m or h < m:
            raise DataError(f"an image of {w}x{h} is smaller than data.multiple={m}")
        return w // m * m, h // m * m

    def _ids(self, key: str, index: int, size: tuple[int, int]) -> np.ndarray:
        path = os.path.join(self.dirs[key], self.files[key][index])
        ids = read_id_map(path)
        if key == "label" and self.label_nc and ids.max() >= self.label_nc:
            raise DataError(f"{path}: class id {int(ids.max())} >= data.label_nc={self.label_nc} "
                            f"(set model.label_nc to the number of classes)")
        img = Image.fromarray(ids.astype(np.int32), mode="I")
        return np.asarray(img.resize(size, Image.NEAREST)).astype(np.int64)

    def sample(self, index: int, seed: int) -> dict:
        photo = open_image(os.path.join(self.dirs["img"], self.files["img"][index]), 3)
        size = self._size(*photo.size)
        flip = self.flip and bool(torch.rand((), generator=draw_generator(seed)) < 0.5)
        image = to_tensor(photo.resize(size, Image.BICUBIC))
        if self.label_nc == 0:
            rgb = open_image(os.path.join(self.dirs["label"], self.files["label"][index]), 3)
            label = to_tensor(rgb.resize(size, Image.NEAREST))
        else:
            label = torch.from_numpy(self._ids("label", index, size))[None]
        out = {"label": label, "image": image}
        if self.instances:
            out["inst"] = torch.from_numpy(self._ids("inst", index, size))[None]
        if flip:
            out = {k: v.flip(-1) for k, v in out.items()}
        return out

    def describe(self) -> str:
        return (f"pix2pixHD folders {os.path.dirname(self.dirs['label'])!r}: {len(self)} label maps, "
                f"instances {self.instances}, load_size {self.load_size or 'as stored'}, flip {self.flip}")
