"""Datasets read from image folders: plain (with class sub-folders), paired, unpaired, attribute lists,
super-resolution pairs and captioned images. All offline, all through `imageio.open_image`.

Bad files: a folder is screened by header when the dataset is built (unreadable files are counted
in `skipped` and warned about once), and a file that fails later, while decoding, is skipped the
same way for the rest of the run, with the next file served in its place. `on_error="raise"` turns
both into a DataError naming the file.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable

import torch
from PIL import Image

from gancore.data.base import DataError, GanDataset, draw_generator
from gancore.data.imageio import (
    check_channels,
    check_on_error,
    find_images,
    open_image,
    require_dir,
    resize_center_crop,
    screen_files,
    to_tensor,
)
from gancore.data.sr import downscale
from gancore.data.text import Vocabulary, tokenize


class _ImageFiles(GanDataset):
    """Shared plumbing: root checks, file screening, load-time fallback and the skip count."""

    def __init__(self, path: str, channels: int, on_error: str) -> None:
        self.root = require_dir(path)
        self.channels = check_channels(channels)
        self.on_error = check_on_error(on_error)
        self._bad: dict[str, str] = {}

    @property
    def skipped(self) -> int:
        """Files skipped as unreadable so far (at the scan, and while loading in this process)."""
        return len(self._bad)

    def _scan(self, root: str, what: str = "data.path") -> list[str]:
        files = find_images(require_dir(root, what))
        if not files:
            raise DataError(f"{what}: no image files under {root!r} (looked for .png, .jpg, .webp, ...)")
        good, bad = screen_files(root, files, self.on_error)
        for rel in bad:
            self._bad[os.path.join(root, rel)] = "unreadable header"
        if not good:
            raise DataError(f"{what}: none of the {len(files)} image files under {root!r} can be read")
        return good

    def _open(self, path: str, size: int | None) -> Image.Image:
        img = open_image(path, self.channels)
        return resize_center_crop(img, size) if size else img

    def _with_fallback(self, index: int, seed: int, load: Callable[[int, int], dict]) -> dict:
        """load(index, seed), moving on to the next index when a file turns out to be unreadable."""
        for attempt in range(len(self)):
            try:
                return load((index + attempt) % len(self), seed + attempt)
            except DataError as err:
                if self.on_error == "raise":
                    raise
                path = getattr(err, "path", str(err))
                if path not in self._bad:
                    self._bad[path] = str(err)
                    warnings.warn(f"skipping unreadable file: {err}", stacklevel=2)
        raise DataError(f"{self.root}: no readable sample left ({self.skipped} files skipped)")

    def _load_file(self, path: str, size: int | None) -> torch.Tensor:
        try:
            return to_tensor(self._open(path, size))
        except DataError as err:
            err.path = path
            raise

    def sample(self, index: int, seed: int) -> dict:
        return self._with_fallback(index, seed, self._load)

    def _load(self, index: int, seed: int) -> dict:
        raise NotImplementedError


def _maybe_flip(t: torch.Tensor, flip: bool, seed: int) -> torch.Tensor:
    if flip and torch.randint(2, (1,), generator=draw_generator(seed)).item():
        return t.flip(-1)
    return t


class ImageFolder(_ImageFiles):
    """Every image under `path`, recursively. When all images sit in sub-folders, the first-level
    sub-folder names are the classes (sorted) and samples carry an integer "label"."""

    def __init__(self, path: str, resolution: int | None = None, channels: int = 3, flip: bool = False,
                 on_error: str = "skip") -> None:
        super().__init__(path, channels, on_error)
        self.resolution, self.flip = resolution, flip
        self.files = self._scan(self.root)
        parts = [f.split(os.sep) for f in self.files]
        if all(len(p) > 1 for p in parts):
            self.classes = sorted({p[0] for p in parts})
            index = {c: i for i, c in enumerate(self.classes)}
            self.labels: list[int] | None = [index[p[0]] for p in parts]
            self.num_classes = len(self.classes)
        else:
            self.classes, self.labels = [], None

    def __len__(self) -> int:
        return len(self.files)

    def _load(self, index: int, seed: int) -> dict:
        image = self._load_file(os.path.join(self.root, self.files[index]), self.resolution)
        out = {"image": _maybe_flip(image, self.flip, seed)}
        if self.labels is not None:
            out["label"] = self.labels[index]
        return out

    def describe(self) -> str:
        classes = f", {len(self.classes)} classes" if self.classes else ""
        return f"image folder {self.root!r}: {len(self)} images{classes}, {self.skipped} skipped"


class PairedImages(_ImageFiles):
    """Aligned pairs {"A", "B"}: pix2pix files holding A and B side by side (layout "ab"), or folders
    A/ and B/ with files of matching names (layout "folders"); "auto" picks folders when both exist."""

    sample_key = "B"

    def __init__(self, path: str, resolution: int | None = None, channels: int = 3, layout: str = "auto",
                 on_error: str = "skip") -> None:
        super().__init__(path, channels, on_error)
        if layout not in ("auto", "ab", "folders"):
            raise DataError(f"layout must be 'auto', 'ab' or 'folders', got {layout!r}")
        a_dir, b_dir = os.path.join(self.root, "A"), os.path.join(self.root, "B")
        if layout == "auto":
            layout = "folders" if os.path.isdir(a_dir) and os.path.isdir(b_dir) else "ab"
        self.layout, self.resolution = layout, resolution
        if layout == "ab":
            self.pairs = [(os.path.join(self.root, f), None) for f in self._scan(self.root)]
            return
        b_by_stem = {os.path.splitext(f)[0]: f for f in self._scan(b_dir, "data.path/B")}
        self.pairs = []
        for f in self._scan(a_dir, "data.path/A"):
            match = b_by_stem.get(os.path.splitext(f)[0])
            if match is None:
                self._bad[os.path.join(a_dir, f)] = "no file of the same name in B/"
            else:
                self.pairs.append((os.path.join(a_dir, f), os.path.join(b_dir, match)))
        if not self.pairs:
            raise DataError(f"data.path: no file in {a_dir!r} has a partner of the same name in {b_dir!r}")
        if self.skipped:
            warnings.warn(f"{self.root}: skipping {self.skipped} file(s) without a partner or unreadable",
                          stacklevel=2)

    def __len__(self) -> int:
        return len(self.pairs)

    def _load(self, index: int, seed: int) -> dict:
        a_path, b_path = self.pairs[index]
        if b_path is not None:
            return {"A": self._load_file(a_path, self.resolution),
                    "B": self._load_file(b_path, self.resolution)}
        try:
            img = open_image(a_path, self.channels)
        except DataError as err:
            err.path = a_path
            raise
        w, h = img.size
        halves = img.crop((0, 0, w // 2, h)), img.crop((w // 2, 0, 2 * (w // 2), h))
        if self.resolution:
            halves = tuple(resize_center_crop(x, self.resolution) for x in halves)
        return {"A": to_tensor(halves[0]), "B": to_tensor(halves[1])}


class UnpairedImages(_ImageFiles):
    """Two unaligned domains {"A", "B"} in the CycleGAN layout `path/{split}A` and `path/{split}B`.

    The epoch length is the larger domain; A is indexed in order and B drawn at random per draw."""

    sample_key = "B"

    def __init__(self, path: str, resolution: int | None = None, channels: int = 3, split: str = "train",
                 on_error: str = "skip") -> None:
        super().__init__(path, channels, on_error)
        self.resolution = resolution
        self.a_dir = os.path.join(self.root, f"{split}A")
        self.b_dir = os.path.join(self.root, f"{split}B")
        self.a_files = self._scan(self.a_dir, f"data.path/{split}A")
        self.b_files = self._scan(self.b_dir, f"data.path/{split}B")

    def __len__(self) -> int:
        return max(len(self.a_files), len(self.b_files))

    def _load(self, index: int, seed: int) -> dict:
        b_index = int(torch.randint(len(self.b_files), (1,), generator=draw_generator(seed)))
        return {
            "A": self._load_file(os.path.join(self.a_dir, self.a_files[index % len(self.a_files)]),
                                 self.resolution),
            "B": self._load_file(os.path.join(self.b_dir, self.b_files[b_index]), self.resolution),
        }


def _parse_attribute_file(path: str) -> tuple[list[str], list[tuple[str, list[float]]]]:
    """CelebA's list_attr_celeba.txt: an optional count line, the attribute names, then
    `filename v1 v2 ...` rows with values -1/1 (or 0/1). Returns names and rows with values in {0, 1}."""
    with open(path, encoding="utf-8") as f:
        lines = [ln.split() for ln in f if ln.strip()]
    if lines and len(lines[0]) == 1 and lines[0][0].isdigit():
        lines = lines[1:]
    if len(lines) < 2:
        raise DataError(f"data.attr_file: {path!r} holds no attribute names and rows")
    names, rows = lines[0], []
    for lineno, row in enumerate(lines[1:], start=2):
        if len(row) != len(names) + 1:
            raise DataError(f"data.attr_file: {path!r} row {lineno} has {len(row) - 1} values for "
                            f"{len(names)} attributes")
        try:
            rows.append((row[0], [1.0 if float(v) > 0 else 0.0 for v in row[1:]]))
        except ValueError:
            raise DataError(f"data.attr_file: {path!r} row {lineno} has a non-numeric value") from None
    return names, rows


class AttributeImages(_ImageFiles):
    """Images with binary attributes {"image", "attrs"} (StarGAN/CelebA style).

    `attr_file` defaults to list_attr_celeba.txt or attributes.txt in `path`; images are looked up in
    `path/img_align_celeba` when that folder exists, else in `path`. `attributes` picks a subset."""

    def __init__(self, path: str, attr_file: str | None = None, attributes: list[str] | None = None,
                 resolution: int | None = None, channels: int = 3, on_error: str = "skip") -> None:
        super().__init__(path, channels, on_error)
        self.resolution = resolution
        if attr_file is None:
            candidates = [os.path.join(self.root, n) for n in ("list_attr_celeba.txt", "attributes.txt")]
            attr_file = next((c for c in candidates if os.path.isfile(c)), None)
            if attr_file is None:
                raise DataError(f"data.attr_file: none given and no list_attr_celeba.txt or attributes.txt "
                                f"in {self.root!r}")
        elif not os.path.isfile(attr_file):
            raise DataError(f"data.attr_file: no such file: {attr_file!r}")
        names, rows = _parse_attribute_file(attr_file)
        picked = list(range(len(names)))
        if attributes is not None:
            unknown = [a for a in attributes if a not in names]
            if unknown:
                raise DataError(f"data.attributes: {unknown} not in {attr_file!r} (it has {names})")
            picked = [names.index(a) for a in attributes]
        self.attribute_names = [names[i] for i in picked]
        nested = os.path.join(self.root, "img_align_celeba")
        self.image_dir = nested if os.path.isdir(nested) else self.root
        self.items = []
        for fname, values in rows:
            full = os.path.join(self.image_dir, fname)
            if os.path.isfile(full):
                self.items.append((full, torch.tensor([values[i] for i in picked])))
            elif self.on_error == "raise":
                raise DataError(f"data.attr_file lists {fname!r}, which is not in {self.image_dir!r}")
            else:
                self._bad[full] = "listed but missing"
        if not self.items:
            raise DataError(f"data.path: none of the files listed in {attr_file!r} exist in "
                            f"{self.image_dir!r}")

    def __len__(self) -> int:
        return len(self.items)

    def _load(self, index: int, seed: int) -> dict:
        path, attrs = self.items[index]
        return {"image": self._load_file(path, self.resolution), "attrs": attrs.clone()}


class SuperResolution(_ImageFiles):
    """{"lr", "hr"}: a random `hr_size` crop of each high-resolution image and its bicubic downscale
    by `scale`, made on the fly. Images smaller than the crop are first scaled up to fit it."""

    sample_key = "hr"

    def __init__(self, path: str, hr_size: int = 96, scale: int = 4, channels: int = 3,
                 on_error: str = "skip") -> None:
        super().__init__(path, channels, on_error)
        if scale < 1 or hr_size % scale:
            raise DataError(f"hr_size ({hr_size}) must be a multiple of scale ({scale}), scale >= 1")
        self.hr_size, self.scale = hr_size, scale
        self.files = self._scan(self.root)

    def __len__(self) -> int:
        return len(self.files)

    def _load(self, index: int, seed: int) -> dict:
        path = os.path.join(self.root, self.files[index])
        try:
            img = open_image(path, self.channels)
        except DataError as err:
            err.path = path
            raise
        w, h = img.size
        if min(w, h) < self.hr_size:
            up = self.hr_size / min(w, h)
            img = img.resize((max(self.hr_size, round(w * up)), max(self.hr_size, round(h * up))),
                             Image.BICUBIC)
            w, h = img.size
        g = draw_generator(seed)
        left = int(torch.randint(w - self.hr_size + 1, (1,), generator=g))
        top = int(torch.randint(h - self.hr_size + 1, (1,), generator=g))
        hr = img.crop((left, top, left + self.hr_size, top + self.hr_size))
        lr = downscale(hr, self.scale)
        return {"lr": to_tensor(lr), "hr": to_tensor(hr)}


class CaptionedImages(_ImageFiles):
    """{"image", "caption", "tokens"}: images with one or more captions each.

    Captions come from `captions_file` (or captions.tsv / captions.txt in `path`): lines of
    `relative/path.png<TAB>caption`, one image may have several lines; otherwise from a sidecar
    text file per image (cat.png + cat.txt, one caption a line). Each draw picks one caption.
    Tokens are word-level over a vocabulary built from all captions, padded to `max_len`."""

    def __init__(self, path: str, captions_file: str | None = None, resolution: int | None = None,
                 channels: int = 3, max_len: int = 32, on_error: str = "skip") -> None:
        super().__init__(path, channels, on_error)
        self.resolution, self.max_len = resolution, max_len
        if captions_file is None:
            candidates = [os.path.join(self.root, n) for n in ("captions.tsv", "captions.txt")]
            captions_file = next((c for c in candidates if os.path.isfile(c)), None)
        files = self._scan(self.root)
        captions: dict[str, list[str]] = {}
        if captions_file is not None:
            if not os.path.isfile(captions_file):
                raise DataError(f"data.captions_file: no such file: {captions_file!r}")
            with open(captions_file, encoding="utf-8", errors="replace") as f:
                for lineno, line in enumerate(f, start=1):
                    if not line.strip():
                        continue
                    if "\t" not in line:
                        raise DataError(f"data.captions_file: {captions_file!r} line {lineno} has no tab "
                                        "between file name and caption")
                    name, text = line.rstrip("\n").split("\t", 1)
                    captions.setdefault(os.path.normpath(name), []).append(text.strip())
        else:
            for rel in files:
                sidecar = os.path.join(self.root, os.path.splitext(rel)[0] + ".txt")
                if os.path.isfile(sidecar):
                    with open(sidecar, encoding="utf-8", errors="replace") as f:
                        captions[rel] = [ln.strip() for ln in f if ln.strip()]
        self.items = []
        for rel in files:
            texts = captions.get(rel)
            if texts:
                self.items.append((rel, texts))
            else:
                self._bad[os.path.join(self.root, rel)] = "no caption"
        if not self.items:
            raise DataError(f"data.path: no image under {self.root!r} has a caption")
        self.vocab = Vocabulary.build(tokenize(t, "word") for _, texts in self.items for t in texts)

    def __len__(self) -> int:
        return len(self.items)

    def _load(self, index: int, seed: int) -> dict:
        rel, texts = self.items[index]
        text = texts[int(torch.randint(len(texts), (1,), generator=draw_generator(seed)))]
        return {"image": self._load_file(os.path.join(self.root, rel), self.resolution), "caption": text,
                "tokens": self.vocab.encode(tokenize(text, "word"), self.max_len)}
