"""Pictures of samples: image grids and 2-D scatter plots, with Pillow only."""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image, ImageDraw


def image_grid(images: torch.Tensor, pad: int = 2, cols: int | None = None) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> a uint8 grid of `cols` columns (default: near-square), `pad` black pixels
    around each image."""
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be (N, 1 or 3, H, W), got shape {tuple(images.shape)}")
    n, c, h, w = images.shape
    cols = cols or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / cols)
    pixels = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    grid = np.zeros((rows * (h + pad) + pad, cols * (w + pad) + pad, c), dtype=np.uint8)
    for i in range(n):
        r, k = divmod(i, cols)
        top, left = pad + r * (h + pad), pad + k * (w + pad)
        grid[top:top + h, left:left + w] = pixels[i].permute(1, 2, 0).numpy()
    return grid


def save_image_grid(images: torch.Tensor, path: str, cols: int | None = None) -> None:
    grid = image_grid(images, cols=cols)
    Image.fromarray(grid[:, :, 0] if grid.shape[2] == 1 else grid).save(path)


def save_scatter(points: torch.Tensor, path: str, size: int = 384) -> None:
    """(N, 2) points as dots on a white square, axes through the origin, bounds fitted to the points."""
    pts = points.detach().float().cpu()
    finite = pts[torch.isfinite(pts).all(dim=1)]
    half = float(finite.abs().max()) * 1.1 if len(finite) else 1.0
    half = half if half > 0 else 1.0
    img = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(img)

    def to_px(x: float, y: float) -> tuple[float, float]:
        return (x / half + 1) * size / 2, (1 - y / half) * size / 2

    draw.line([to_px(-half, 0), to_px(half, 0)], fill=(200, 200, 200))
    draw.line([to_px(0, -half), to_px(0, half)], fill=(200, 200, 200))
    for x, y in finite.tolist():
        px, py = to_px(x, y)
        draw.ellipse((px - 1.5, py - 1.5, px + 1.5, py + 1.5), fill=(30, 90, 200))
    img.save(path)


def save_samples(samples: torch.Tensor, path: str) -> None:
    """A grid for image batches, a scatter plot for 2-D points."""
    if samples.dim() == 4:
        save_image_grid(samples, path)
    elif samples.dim() == 2 and samples.shape[1] == 2:
        save_scatter(samples, path)
    else:
        raise ValueError(f"no picture for samples of shape {tuple(samples.shape)}: the family must "
                         "override save_samples")
