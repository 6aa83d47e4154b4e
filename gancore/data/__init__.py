"""Datasets (all offline) and `build_dataset`, which turns the `data:` section of a run's config into one.

A config names a dataset type and its options, e.g. {"name": "image-folder", "path": "faces/",
"flip": true}. Families pass hints (resolution, channels) that a dataset takes when it has such an
option and the user did not set it, so the data always matches the networks.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping

from gancore.data.attributes import AttributeShapes, JointLabels, ShapeClasses
from gancore.data.base import DataError, GanDataset
from gancore.data.builtin import (
    ColorDomains,
    OracleLSTM,
    OracleSequences,
    RingOfGaussians,
    ShapeEdges,
    Shapes,
)
from gancore.data.captions import ShapeCaptions
from gancore.data.folders import (
    AttributeImages,
    CaptionedImages,
    ImageFolder,
    PairedImages,
    SuperResolution,
    UnpairedImages,
)
from gancore.data.labelmaps import CityscapesFolders, LabelScenes
from gancore.data.paired import AlignedImages, UnalignedImages
from gancore.data.sr import SRTextures
from gancore.data.text import TextLines, Vocabulary

DATASETS: dict[str, type[GanDataset]] = {
    # read from disk
    "image-folder": ImageFolder,
    "paired": PairedImages,
    "unpaired": UnpairedImages,
    "aligned": AlignedImages,  # pix2pix's layout with the reference preprocessing
    "unaligned": UnalignedImages,  # CycleGAN's
    "attributes": AttributeImages,
    "super-resolution": SuperResolution,
    "captions": CaptionedImages,
    "text": TextLines,
    "label-folders": CityscapesFolders,  # pix2pixHD's {split}_label/, {split}_inst/, {split}_img/
    # built in
    "ring": RingOfGaussians,
    "shapes": Shapes,
    "shapes-edges": ShapeEdges,
    "color-domains": ColorDomains,
    "oracle-sequences": OracleSequences,
    "sr-textures": SRTextures,
    "attribute-shapes": AttributeShapes,
    "shape-classes": ShapeClasses,
    "joint": JointLabels,  # two labelled datasets with StarGAN's mask vector (built in unless its parts are not)
    "label-scenes": LabelScenes,
    "shape-captions": ShapeCaptions,
}

BUILTIN = ("ring", "shapes", "shapes-edges", "color-domains", "oracle-sequences", "sr-textures", "attribute-shapes",
           "shape-classes", "joint", "label-scenes", "shape-captions")


def dataset_options(name: str) -> dict[str, object]:
    """Option -> default (inspect.Parameter.empty when required) of dataset type `name`."""
    cls = _dataset_class(name)
    return {k: p.default for k, p in inspect.signature(cls).parameters.items()}


def _dataset_class(name: str) -> type[GanDataset]:
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(f"data.name: unknown dataset {name!r}; choose from {sorted(DATASETS)}") from None


def build_dataset(config: Mapping[str, object], hints: Mapping[str, object] | None = None) -> GanDataset:
    """The dataset described by `config` ({"name": ..., options...}); `hints` fill options left unset."""
    if "name" not in config:
        raise DataError("data.name: missing (the dataset type, one of " + ", ".join(sorted(DATASETS)) + ")")
    name = str(config["name"])
    options = dataset_options(name)
    kwargs = {k: v for k, v in config.items() if k != "name"}
    unknown = sorted(set(kwargs) - set(options))
    if unknown:
        raise DataError(f"data.{unknown[0]}: dataset {name!r} has no option {unknown[0]!r}; "
                        f"its options: {sorted(options)}")
    missing = [k for k, d in options.items() if d is inspect.Parameter.empty and kwargs.get(k) is None]
    if missing:
        hint = " (or --data PATH)" if missing == ["path"] else ""
        raise DataError(f"data.{missing[0]}: dataset {name!r} needs it{hint}")
    for key, value in (hints or {}).items():
        if key in options and key not in kwargs:
            kwargs[key] = value
    return DATASETS[name](**kwargs)


__all__ = [
    "BUILTIN", "DATASETS", "AlignedImages", "AttributeImages", "CaptionedImages", "ColorDomains", "DataError",
    "GanDataset", "ImageFolder", "OracleLSTM", "OracleSequences", "PairedImages", "RingOfGaussians", "SRTextures",
    "ShapeEdges",
    "Shapes", "SuperResolution", "TextLines", "UnalignedImages", "UnpairedImages", "Vocabulary", "build_dataset",
    "dataset_options",
    "AttributeShapes", "JointLabels", "ShapeClasses",
    "CityscapesFolders", "LabelScenes",  # pix2pixHD's label maps
    "ShapeCaptions",
]
