"""Image folders as batches for the feature extractors: decoding, skipping unreadable files, counting."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from gancore.data.imageio import IMAGE_EXTENSIONS, find_images, to_8bit


def list_images(folder: str | os.PathLike) -> list[Path]:
    """The image files under `folder` (recursively, the training loader's extensions), sorted; none is
    an error."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder of images (nor an .npz statistics file)")
    files = [root / rel for rel in find_images(str(root))]
    if not files:
        raise ValueError(f"{root} contains no images (looked for {', '.join(IMAGE_EXTENSIONS)} files, "
                         "in subfolders too)")
    return files


def pytorch_fid_rgb(image) -> np.ndarray:
    """An 8-bit PIL image as pytorch-fid decodes it, (H, W, 3) uint8: PIL's convert("RGB"), so grey is
    repeated and alpha is dropped (not composited over a background, as the training loader does).
    FIDs comparable with published ones need exactly this; keep it the only place that decides it."""
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def load_image(path: Path) -> torch.Tensor:
    """(3, H, W) float32 in [-1, 1], decoded as pytorch-fid does (pytorch_fid_rgb), except that 16-bit
    and float images are first scaled to 8 bits as the training loader does (gancore.data.imageio):
    pytorch-fid's convert("RGB") clips them, so a 16-bit image would score against its 8-bit twin."""
    from PIL import Image

    with Image.open(path) as image:
        rgb = pytorch_fid_rgb(to_8bit(image))
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1).float() / 127.5 - 1.0


@dataclass
class FolderBatches:
    """Iterates over the images of a list of files in batches of equal-sized images.

    A batch ends early when the next image has another size, so each batch can be stacked and the
    extractor resizes it exactly as it would resize one image. Files that cannot be decoded are skipped
    and recorded in `skipped` as (path, reason).
    """

    files: list[Path]
    batch_size: int
    progress: bool = True
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def __iter__(self) -> Iterator[torch.Tensor]:
        from PIL import Image
        from tqdm import tqdm

        batch: list[torch.Tensor] = []
        for path in tqdm(self.files, desc="features", unit="img", disable=not self.progress, leave=False):
            try:
                image = load_image(path)
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
                self.skipped.append((path, f"{type(exc).__name__}: {exc}"))
                continue
            if batch and (image.shape != batch[0].shape or len(batch) == self.batch_size):
                yield torch.stack(batch)
                batch = []
            batch.append(image)
        if batch:
            yield torch.stack(batch)
