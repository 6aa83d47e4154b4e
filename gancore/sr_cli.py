"""Super-resolution runs at inference: tiled upscaling, `gancore translate` on SR runs, `gancore eval-sr`.

    gancore translate RUN --input lr/ --out sr/      upscale every image (tiled when larger than --tile)
    gancore eval-sr RUN --hr Set5/                   PSNR / SSIM on Y (scale-pixel border) vs bicubic

Large images are upscaled tile by tile: each tile of the LR image is run with `overlap` LR pixels of
context on every side and only its centre is kept, so no activation map of the whole image exists. With
the overlap at least the network's receptive radius (the default), the result equals the untiled one.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

import numpy as np
import torch
from PIL import Image

from gancore.data.base import DataError
from gancore.data.imageio import find_images, open_image, require_dir, to_tensor
from gancore.data.sr import downscale, mod_crop, upscale
from gancore.families.base import ConfigError
from gancore.families.srgan import load_sr_generator
from gancore.metrics.sr import sr_scores
from gancore.models.srgan import SRResNet
from gancore.train import checkpoint as ckpt

DEFAULT_TILE = 256
_USER_ERRORS = (ConfigError, DataError, ckpt.CheckpointError, ValueError)


def receptive_radius(g: SRResNet) -> int:
    """How many LR pixels around a pixel can change its output: the 9x9 input conv, two 3x3 convs per
    residual block, the 3x3 trunk conv, the 3x3 conv of each upsampling stage (at 2^k x LR) and the 9x9
    output conv (at the output resolution)."""
    stages = int(math.log2(g.scale))
    return math.ceil(4 + 2 * len(g.res_blocks) + 1 + sum(0.5 ** k for k in range(stages)) + 4 / g.scale)


def upscale_tiled(g: SRResNet, lr: torch.Tensor, tile: int = DEFAULT_TILE, overlap: int | None = None) -> torch.Tensor:
    """g(lr) for one LR image (1, 3, H, W) on g's device, in tiles of at most `tile` x `tile` LR pixels,
    each with `overlap` LR pixels of context (default: the receptive radius); the result is on the CPU."""
    if lr.dim() != 4 or lr.shape[0] != 1:
        raise ValueError(f"lr must be one image (1, C, H, W), got shape {tuple(lr.shape)}")
    overlap = receptive_radius(g) if overlap is None else overlap
    if not isinstance(overlap, int) or overlap < 0:
        raise ValueError(f"overlap: must be an integer >= 0, got {overlap!r}")
    h, w = lr.shape[-2:]
    device = next(g.parameters()).device
    if not tile or (h <= tile and w <= tile):
        return g(lr.to(device)).float().cpu()
    core = tile - 2 * overlap
    if core < 1:
        raise ValueError(f"tile ({tile}) must exceed twice the overlap ({overlap}) LR pixels")
    s = g.scale
    out = torch.empty(1, 3, h * s, w * s)
    for top in range(0, h, core):
        for left in range(0, w, core):
            bottom, right = min(h, top + core), min(w, left + core)
            y0, x0 = max(0, top - overlap), max(0, left - overlap)
            patch = g(lr[..., y0:min(h, bottom + overlap), x0:min(w, right + overlap)].to(device)).float().cpu()
            out[..., top * s:bottom * s, left * s:right * s] = \
                patch[..., (top - y0) * s:(bottom - y0) * s, (left - x0) * s:(right - x0) * s]
    return out


def _quantise(x: torch.Tensor) -> torch.Tensor:
    """As saved to an 8-bit PNG (SR benchmarks score the saved images)."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1


def _to_pil(x: torch.Tensor) -> Image.Image:
    return Image.fromarray(((x[0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy())


def _check_tiling(tile: int, overlap: int | None) -> None:
    if tile < 0:
        raise ConfigError(f"--tile: must be >= 0 (0: never tile), got {tile}")
    if overlap is not None and overlap < 0:
        raise ConfigError(f"--tile-overlap: must be >= 0, got {overlap}")
    if tile and overlap is not None and tile <= 2 * overlap:
        raise ConfigError(f"--tile ({tile}) must exceed twice --tile-overlap ({overlap})")


def translate_sr_folder(g: SRResNet, input_dir: str, out_dir: str, *, tile: int = DEFAULT_TILE,
                        overlap: int | None = None, device: torch.device | str = "cpu",
                        progress: bool = True) -> list[str]:
    """Upscale every image under `input_dir` into `out_dir`/<same relative name>.png (eval mode)."""
    from tqdm import tqdm

    _check_tiling(tile, overlap)
    files = find_images(require_dir(input_dir, "--input"))
    if not files:
        raise DataError(f"--input: no image files under {input_dir!r} (looked for .png, .jpg, .webp, ...)")
    g = g.to(device).eval()
    written = []
    with torch.no_grad():
        for rel in tqdm(files, desc="upscale", unit="img", disable=not progress, file=sys.stderr):
            lr = to_tensor(open_image(os.path.join(input_dir, rel), 3)).unsqueeze(0)
            out = os.path.join(out_dir, os.path.splitext(rel)[0] + ".png")
            os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
            _to_pil(upscale_tiled(g, lr, tile, overlap)).save(out)
            written.append(out)
    return written


def evaluate_sr(g: SRResNet, hr_dir: str, *, tile: int = DEFAULT_TILE, overlap: int | None = None,
                device: torch.device | str = "cpu", progress: bool = True) -> list[dict]:
    """Per HR image under `hr_dir`: {"name", "psnr", "ssim", "bicubic_psnr", "bicubic_ssim", and the
    "lr", "bicubic", "sr", "hr" tensors}. Each image is cropped to a multiple of the scale, downscaled
    bicubically, upscaled by g (8-bit quantised) and by bicubic, and scored on Y with a scale-pixel border."""
    from tqdm import tqdm

    _check_tiling(tile, overlap)
    files = find_images(require_dir(hr_dir, "--hr"))
    if not files:
        raise DataError(f"--hr: no image files under {hr_dir!r}")
    s = g.scale
    g = g.to(device).eval()
    rows = []
    with torch.no_grad():
        for rel in tqdm(files, desc="eval-sr", unit="img", disable=not progress, file=sys.stderr):
            hr_img = mod_crop(open_image(os.path.join(hr_dir, rel), 3), s)
            if min(hr_img.size) < 11 + 2 * s:
                raise DataError(f"--hr: {rel} is {hr_img.size[0]}x{hr_img.size[1]}; scoring needs at least "
                                f"{11 + 2 * s} pixels a side (an 11x11 SSIM window inside the {s}-pixel border)")
            lr_img = downscale(hr_img, s)
            lr, hr = to_tensor(lr_img).unsqueeze(0), to_tensor(hr_img).unsqueeze(0)
            bicubic = to_tensor(upscale(lr_img, s)).unsqueeze(0)
            sr = _quantise(upscale_tiled(g, lr, tile, overlap))
            ours, base = sr_scores(sr, hr, s), sr_scores(bicubic, hr, s)
            rows.append({"name": rel, "psnr": float(ours["psnr"][0]), "ssim": float(ours["ssim"][0]),
                         "bicubic_psnr": float(base["psnr"][0]), "bicubic_ssim": float(base["ssim"][0]),
                         "lr": lr, "bicubic": bicubic, "sr": sr, "hr": hr})
    return rows


def save_comparison_grid(rows: list[dict], path: str, size: int = 128, pad: int = 2) -> None:
    """One row per image (at most 8): LR (nearest, enlarged) | bicubic | SR | HR, centre crops of `size`."""
    picked = rows[:8]
    if not picked:
        raise ValueError("no images to put in the grid")
    s = picked[0]["hr"].shape[-1] // picked[0]["lr"].shape[-1]
    side = min(size, *(min(r["hr"].shape[-2:]) for r in picked)) // s * s
    cells = []
    for r in picked:
        lr_big = torch.nn.functional.interpolate(r["lr"], scale_factor=s, mode="nearest")
        row = []
        for img in (lr_big, r["bicubic"], r["sr"], r["hr"]):
            h, w = img.shape[-2:]
            top, left = (h - side) // 2 // s * s, (w - side) // 2 // s * s
            row.append(img[0, :, top:top + side, left:left + side])
        cells.append(row)
    grid = np.zeros((len(cells) * (side + pad) + pad, 4 * (side + pad) + pad, 3), np.uint8)
    for i, row in enumerate(cells):
        for j, img in enumerate(row):
            y, x = pad + i * (side + pad), pad + j * (side + pad)
            grid[y:y + side, x:x + side] = ((img.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    Image.fromarray(grid).save(path)


def load_sr_run(path: str, fused: bool = True) -> tuple[SRResNet, str]:
    """(generator, description) of an srresnet / srgan run folder or checkpoint."""
    path, state = ckpt.load_run_or_checkpoint(path)
    g = load_sr_generator(state, fused)
    return g, f"{state['config']['family']} G (x{g.scale}) from {path}"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval-sr", help="PSNR / SSIM of an SRResNet / SRGAN run on a folder of HR images, against bicubic",
        description="Crop each HR image under --hr to a multiple of the scale, make its LR by bicubic "
                    "downscaling, upscale it with the run's generator and with bicubic, and report PSNR and "
                    "SSIM on the Y channel with a scale-pixel border cropped, as SR papers do.")
    p.add_argument("model", metavar="RUN_OR_CHECKPOINT", help="an srresnet or srgan run folder or checkpoint")
    p.add_argument("--hr", required=True, metavar="DIR", help="folder of HR images (searched recursively)")
    add_tiling_args(p)
    p.add_argument("--grid", metavar="PNG", default=None, help="also write LR | bicubic | SR | HR crops here")
    p.add_argument("--per-image", action="store_true", help="a line per image, not only the means")
    p.add_argument("--plain", action="store_true", help="plain torch.nn network instead of the fused one")
    p.add_argument("--device", default="auto", help="auto (default: CUDA when available), cpu, cuda or cuda:N")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_eval)


def add_tiling_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tile", type=int, default=DEFAULT_TILE, metavar="N",
                   help=f"SR runs: upscale images larger than NxN LR pixels in tiles (default {DEFAULT_TILE}; "
                        "0: never)")
    p.add_argument("--tile-overlap", type=int, default=None, metavar="N",
                   help="SR runs: LR pixels of context around each tile (default: the network's receptive "
                        "radius, which makes tiled output equal to untiled)")


def run_eval(args: argparse.Namespace) -> int:
    from gancore.train.distributed import choose_device

    try:
        device = choose_device(args.device)
        g, what = load_sr_run(args.model, fused=not args.plain)
        rows = evaluate_sr(g, args.hr, tile=args.tile, overlap=args.tile_overlap, device=device,
                           progress=not args.no_progress)
        if args.grid:
            save_comparison_grid(rows, args.grid)
    except _USER_ERRORS as err:
        print(f"gancore eval-sr: error: {err}", file=sys.stderr)
        return 2
    print(f"{what}: {len(rows)} image(s) of {args.hr}, Y channel, {g.scale}-pixel border cropped")
    width = max(12, *(len(r["name"]) for r in rows)) if args.per_image else 12
    print(f"{'image':<{width}}  {'bicubic PSNR':>12} {'SSIM':>7}  {'model PSNR':>10} {'SSIM':>7}")
    lines = rows if args.per_image else []
    for r in lines:
        print(f"{r['name']:<{width}}  {r['bicubic_psnr']:12.2f} {r['bicubic_ssim']:7.4f}  {r['psnr']:10.2f} "
              f"{r['ssim']:7.4f}")
    mean = {k: sum(r[k] for r in rows) / len(rows) for k in ("psnr", "ssim", "bicubic_psnr", "bicubic_ssim")}
    print(f"{'mean':<{width}}  {mean['bicubic_psnr']:12.2f} {mean['bicubic_ssim']:7.4f}  {mean['psnr']:10.2f} "
          f"{mean['ssim']:7.4f}")
    if args.grid:
        print(f"wrote {args.grid}")
    return 0


def translate_sr(g: SRResNet, args: argparse.Namespace, device: torch.device) -> list[str]:
    """`gancore translate` on an SR run: the options that do not apply are refused, not ignored."""
    for flag, value in (("--size", args.size), ("--direction", args.direction)):
        if value is not None:
            raise ConfigError(f"{flag}: does not apply to srresnet / srgan runs (they upscale each image as "
                              "it is)")
    return translate_sr_folder(g, args.input, args.out, tile=args.tile, overlap=args.tile_overlap, device=device,
                               progress=not args.no_progress)
