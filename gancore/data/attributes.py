"""Labelled images for multi-domain translation (StarGAN): label sets, two built-ins, and the joint set.

A dataset's labels form one or more *label sets*: binary attributes (CelebA's list_attr_celeba.txt, read
by the "attributes" dataset; trained with BCE) or one class per image (RaFD's expressions, one sub-folder
per class, read by "image-folder"; trained with CE). `label_sets_of` tells them apart for any dataset.

Built in, drawn from a seed (no download):
- AttributeShapes ("attribute-shapes"): a disc with three binary attributes, Red (red, else blue),
  Big (large, else small) and Dot (a white mark in its middle), each a fair coin, so that a classifier
  can check whether a translation changed the attribute asked for;
- ShapeClasses ("shape-classes"): a circle, square or triangle of random colour and size, one class per
  image, a label set of its own for the mask-vector joint training.
JointLabels ("joint") serves two such datasets as one, with the label vector of StarGAN's mask vector
scheme: its samples carry {"image", "labels": both sets side by side, the unknown set zero, "dataset"}.
"""

from __future__ import annotations

import colorsys
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from PIL import Image, ImageDraw

from gancore.data.base import DataError, GanDataset
from gancore.data.builtin import _polygon
from gancore.data.imageio import to_tensor

_SUPERSAMPLE = 4
SET_KINDS = ("bce", "ce")


@dataclass(frozen=True)
class LabelSet:
    """One dataset's labels: binary attributes ("bce") or mutually exclusive classes ("ce")."""

    kind: str
    names: tuple[str, ...]

    def as_dict(self) -> dict:
        return {"kind": self.kind, "names": list(self.names)}

    @classmethod
    def from_dict(cls, d: Mapping) -> LabelSet:
        return cls(str(d["kind"]), tuple(str(n) for n in d["names"]))


def label_sets_of(dataset: GanDataset) -> list[LabelSet]:
    """The label sets of `dataset`: its own `label_sets`, else binary attributes ("attrs" samples with
    attribute_names) or classes ("label" samples with classes, e.g. an image folder with class folders)."""
    own = getattr(dataset, "label_sets", None)
    if own is not None:
        return list(own)
    first = dataset[0]
    if "attrs" in first and getattr(dataset, "attribute_names", None):
        return [LabelSet("bce", tuple(dataset.attribute_names))]
    if "label" in first and getattr(dataset, "classes", None):
        return [LabelSet("ce", tuple(dataset.classes))]
    raise DataError(f"{type(dataset).__name__} has no labels to translate between: use binary attributes "
                    "(data.name=attributes, a CelebA-style list file), class sub-folders (data.name=image-folder, "
                    "RaFD-style) or a built-in (attribute-shapes, shape-classes, joint)")


def _draw_figure(rng: random.Random, resolution: int, kind: str, hue: float, radius: float,
                 dot: bool) -> Image.Image:
    """A `kind` (circle, square, triangle) of `hue` and `radius` (a fraction of the side) at a random place
    on a dark grey ground, with a white dot in its middle when `dot`; drawn larger (4x up to 64 pixels, then
    at least 256: smooth edges without slowing down large images) and downscaled."""
    supersample = max(1, min(_SUPERSAMPLE, 256 // resolution))
    big = resolution * supersample
    r = radius * big
    cx, cy = rng.uniform(r, big - r), rng.uniform(r, big - r)
    grey = round(255 * rng.uniform(0.05, 0.2))
    rgb = colorsys.hsv_to_rgb(hue % 1.0, rng.uniform(0.75, 1.0), rng.uniform(0.8, 1.0))
    img = Image.new("RGB", (big, big), (grey,) * 3)
    draw = ImageDraw.Draw(img)
    colour = tuple(round(255 * c) for c in rgb)
    if kind == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
    else:
        draw.polygon(_polygon(kind, cx, cy, r, rng.uniform(0, 2 * math.pi)), fill=colour)
    if dot:
        d = max(0.3 * r, 1.5 * supersample)
        draw.ellipse((cx - d, cy - d, cx + d, cy + d), fill=(255, 255, 255))
    return img.resize((resolution, resolution), Image.LANCZOS)


class _Figures(GanDataset):
    def __init__(self, size: int, resolution: int, seed: int) -> None:
        if size < 1:
            raise DataError(f"size must be >= 1, got {size}")
        if resolution < 8:
            raise DataError(f"resolution must be >= 8, got {resolution}")
        self.size, self.resolution, self.seed = size, resolution, seed

    def __len__(self) -> int:
        return self.size

    def _rng(self, index: int) -> random.Random:
        return random.Random(self.seed * 1_000_003 + index)


class AttributeShapes(_Figures):
    """{"image", "attrs"}: a disc with the binary attributes Red, Big and Dot (float 0/1 in that order)."""

    attribute_names = ("Red", "Big", "Dot")

    def __init__(self, size: int = 20000, resolution: int = 64, seed: int = 0) -> None:
        super().__init__(size, resolution, seed)
        self.label_sets = [LabelSet("bce", self.attribute_names)]

    def attributes(self, index: int) -> tuple[bool, bool, bool]:
        rng = self._rng(index)
        return rng.random() < 0.5, rng.random() < 0.5, rng.random() < 0.5

    def sample(self, index: int, seed: int) -> dict:
        red, large, dot = self.attributes(index)
        rng = self._rng(index + 7_777_777)
        hue = rng.uniform(-0.03, 0.03) if red else rng.uniform(0.58, 0.64)
        radius = rng.uniform(0.36, 0.42) if large else rng.uniform(0.18, 0.22)
        image = _draw_figure(rng, self.resolution, "circle", hue, radius, dot)
        return {"image": to_tensor(image), "attrs": torch.tensor([red, large, dot], dtype=torch.float32)}

    def describe(self) -> str:
        return (f"attribute shapes: {len(self)} procedural {self.resolution}x{self.resolution} discs with binary "
                f"attributes {', '.join(self.attribute_names)}")


class ShapeClasses(_Figures):
    """{"image", "label"}: a circle, square or triangle (the class) of random colour and size."""

    classes = ("circle", "square", "triangle")
    num_classes = len(classes)

    def __init__(self, size: int = 20000, resolution: int = 64, seed: int = 1) -> None:
        super().__init__(size, resolution, seed)
        self.label_sets = [LabelSet("ce", self.classes)]

    def sample(self, index: int, seed: int) -> dict:
        rng = self._rng(index)
        label = rng.randrange(len(self.classes))
        image = _draw_figure(rng, self.resolution, self.classes[label], rng.random(), rng.uniform(0.22, 0.36),
                             dot=False)
        return {"image": to_tensor(image), "label": label}

    def describe(self) -> str:
        return (f"shape classes: {len(self)} procedural {self.resolution}x{self.resolution} images of "
                f"{', '.join(self.classes)}")


def _label_vector(sample: Mapping, label_set: LabelSet) -> torch.Tensor:
    if label_set.kind == "bce":
        return sample["attrs"].float()
    return torch.nn.functional.one_hot(torch.as_tensor(sample["label"]), len(label_set.names)).float()


class JointLabels(GanDataset):
    """Two labelled datasets as one (StarGAN's joint CelebA + RaFD training): samples of `first` come first,
    then those of `second`; each carries "labels", the two label sets side by side (a class set one-hot)
    with the other dataset's part zero, and "dataset" (0 or 1), the mask vector's one-hot index.

    `first` and `second` are data sections ({"name": ..., options}); `resolution` is passed to both when
    they take it and leave it unset. Both must give images of the same shape."""

    def __init__(self, first: Mapping | None = None, second: Mapping | None = None,
                 resolution: int | None = None) -> None:
        from gancore.data import build_dataset

        sections = {"first": first or {"name": "attribute-shapes"}, "second": second or {"name": "shape-classes"}}
        hints = {} if resolution is None else {"resolution": resolution}
        self.parts: list[GanDataset] = []
        self.label_sets: list[LabelSet] = []
        for key, section in sections.items():
            if not isinstance(section, Mapping):
                raise DataError(f"data.{key}: expected a data section (a mapping with a name), got {section!r}")
            if section.get("name") == "joint":
                raise DataError(f"data.{key}: a joint dataset joins two plain datasets, not another joint one")
            dataset = build_dataset(section, hints)
            sets = label_sets_of(dataset)
            if len(sets) != 1:
                raise DataError(f"data.{key}: needs one label set, {type(dataset).__name__} has {len(sets)}")
            self.parts.append(dataset)
            self.label_sets.append(sets[0])
        shapes = [tuple(part[0]["image"].shape) for part in self.parts]
        if shapes[0] != shapes[1]:
            raise DataError(f"data.first and data.second must give images of one shape, got {shapes[0]} and "
                            f"{shapes[1]}: set data.resolution")
        self.offsets = [0, len(self.label_sets[0].names)]

    def __len__(self) -> int:
        return len(self.parts[0]) + len(self.parts[1])

    def sample(self, index: int, seed: int) -> dict:
        which = 0 if index < len(self.parts[0]) else 1
        inner = self.parts[which].sample(index - which * len(self.parts[0]), seed)
        labels = torch.zeros(sum(len(s.names) for s in self.label_sets))
        vector = _label_vector(inner, self.label_sets[which])
        labels[self.offsets[which]:self.offsets[which] + len(vector)] = vector
        return {"image": inner["image"], "labels": labels, "dataset": which}

    def describe(self) -> str:
        return " + ".join(part.describe() for part in self.parts) + " (joint, mask vector)"
