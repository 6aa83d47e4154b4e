"""The sample pictures of a run: its fixed inputs (saved in the run folder), the picture drawn from them,
and the list of pictures (or texts) a run has written under samples/.

The fixed inputs are what the trainer feeds its generator at every sample step (family.make_sample_inputs):
saved once as RUN/sample_inputs.pt, they make a resumed run continue the same sequence of grids even
where a fresh draw would differ (another log.sample_n, other data), and they let `gancore sample` show an
image-to-image run, whose inputs come from training data that a checkpoint does not hold.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from gancore.errors import ConfigError
from gancore.families.base import Family
from gancore.utils.files import atomic_write

FIXED_INPUTS = "sample_inputs.pt"
SAMPLE_NAME = re.compile(r"^(\d+|final)\.(png|txt)$")


def _structure(value: Any) -> Any:
    """The shapes and types of a (nested) inputs value, to tell whether saved inputs fit a run."""
    if isinstance(value, torch.Tensor):
        return ("tensor", tuple(value.shape[1:]), value.dtype)
    if isinstance(value, dict):
        return {k: _structure(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_structure(v) for v in value]
    return type(value).__name__


def _to(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: _to(v, device) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to(v, device) for v in value)
    return value


def load_fixed_inputs(run_dir: str, device: torch.device | str = "cpu") -> dict[str, Any] | None:
    """The sample inputs saved in `run_dir`, or None when it has none."""
    path = os.path.join(run_dir, FIXED_INPUTS)
    if not os.path.isfile(path):
        return None
    try:
        inputs = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # torch raises several types for damaged files
        raise ConfigError(f"{path}: cannot read the run's sample inputs: {err}") from err
    if not isinstance(inputs, dict) or "latents" not in inputs:
        raise ConfigError(f"{path} holds no sample inputs (no 'latents')")
    return inputs


def save_fixed_inputs(run_dir: str, inputs: dict[str, Any]) -> None:
    os.makedirs(run_dir, exist_ok=True)
    atomic_write(os.path.join(run_dir, FIXED_INPUTS), lambda f: torch.save(_to(inputs, torch.device("cpu")), f))


def fixed_inputs(run_dir: str, fresh: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """The sample inputs a resumed run continues with: those saved in `run_dir` when they fit the `fresh`
    ones drawn for its config, else `fresh` (with a warning when saved ones did not fit: the grids start a
    new sequence)."""
    saved = load_fixed_inputs(run_dir, device)
    if saved is None:
        return fresh
    if _structure(saved) != _structure(fresh):
        warnings.warn(f"{os.path.join(run_dir, FIXED_INPUTS)} does not fit this config's sample inputs; the "
                      "sample grids continue from freshly drawn ones", stacklevel=2)
        return fresh
    return saved


def _is_image_batch(x: Any) -> bool:
    return isinstance(x, torch.Tensor) and x.dim() == 4 and x.shape[1] in (1, 3)


def _as_rgb(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    images = images.detach().float().cpu()
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    if tuple(images.shape[2:]) != size:  # e.g. a super-resolution input, shown at the output's size
        images = F.interpolate(images, size=size, mode="nearest")
    return images


def strip_grid(columns: list[torch.Tensor], pad: int = 1, gap: int = 6) -> np.ndarray:
    """Per sample, its images side by side (a strip: input | output | target), strips in a near-square grid
    of uint8 RGB; images in [-1, 1]. `pad` grey pixels inside a strip, `gap` between strips."""
    n, _, h, w = columns[0].shape
    k = len(columns)
    strip_w = k * w + (k - 1) * pad
    per_row = max(1, round(math.sqrt(n * h / strip_w)))
    rows = math.ceil(n / per_row)
    grid = np.full((rows * (h + gap) + gap, per_row * (strip_w + gap) + gap, 3), 255, dtype=np.uint8)
    pixels = [((c.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy() for c in columns]
    for i in range(n):
        r, s = divmod(i, per_row)
        top, left = gap + r * (h + gap), gap + s * (strip_w + gap)
        grid[top:top + h, left:left + strip_w] = 160
        for j, column in enumerate(pixels):
            x = left + j * (w + pad)
            grid[top:top + h, x:x + w] = column[i]
    return grid


def save_sample_picture(family: Family, inputs: dict[str, Any], samples: torch.Tensor, path: str) -> None:
    """The picture of `samples` generated from `inputs`: input | output (| target) strips when the inputs
    hold images to show beside image outputs (image-to-image families), else the family's own picture."""
    from PIL import Image

    shown = [inputs.get("inputs"), samples, inputs.get("targets")]
    if _is_image_batch(samples) and _is_image_batch(shown[0]) and len(shown[0]) == len(samples):
        size = tuple(samples.shape[2:])
        columns = [_as_rgb(x, size) for x in shown if _is_image_batch(x) and len(x) == len(samples)]
        Image.fromarray(strip_grid(columns)).save(path)
        return
    family.save_samples(samples, path)


@dataclass(frozen=True)
class SampleFile:
    """One picture or text of samples/, of `step` (None: the final one of an unknown step)."""

    path: str
    step: int | None
    kind: str  # "image" or "text"
    final: bool = False

    @property
    def label(self) -> str:
        if self.final:
            return "final" + (f", step {self.step}" if self.step is not None else "")
        return f"step {self.step}"


def _same_bytes(a: str, b: str) -> bool:
    if os.path.getsize(a) != os.path.getsize(b):
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        return fa.read() == fb.read()


def sample_files(run_dir: str) -> list[SampleFile]:
    """The sample pictures and texts of a run, newest first. The final one takes the step of the numbered
    one it equals (which is then left out: the trainer writes both at a last step that is a sample step),
    else its place by time (a resumed run's final picture of an earlier session is older than its new
    grids). A .png that is not an image but text (a family that wrote text under the picture's name)
    counts as text."""
    folder = os.path.join(run_dir, "samples")
    numbered: list[SampleFile] = []
    finals: list[SampleFile] = []
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        m = SAMPLE_NAME.match(name)
        if not m:
            continue
        path = os.path.join(folder, name)
        kind = "text" if m.group(2) == "txt" or not _is_png(path) else "image"
        if m.group(1) == "final":
            finals.append(SampleFile(path, None, kind, final=True))
        else:
            numbered.append(SampleFile(path, int(m.group(1)), kind))
    placed: list[tuple[float, SampleFile]] = [(s.step, s) for s in numbered]
    for final in finals:
        twin = next((s for s in numbered if s.kind == final.kind and _same_bytes(s.path, final.path)), None)
        if twin is not None:
            placed.remove((twin.step, twin))
            placed.append((twin.step + 0.5, SampleFile(final.path, twin.step, final.kind, final=True)))
            continue
        older = [s.step for s in numbered if os.path.getmtime(s.path) <= os.path.getmtime(final.path)]
        placed.append((max(older, default=-1) + 0.5, final))
    return [s for _, s in sorted(placed, key=lambda p: (p[0], p[1].kind), reverse=True)]


def _is_png(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(8) == b"\x89PNG\r\n\x1a\n"
