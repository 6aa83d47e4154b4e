"""`gancore fid A B`: FID between two image folders or .npz statistics files (pytorch-fid's format).

    gancore fid real/ fake/                      FID of two folders
    gancore fid ref_stats.npz fake/              against saved statistics
    gancore fid --save-stats real/ real.npz      save statistics instead of comparing
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("fid", help="Fréchet Inception Distance of image folders or .npz statistics",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a", metavar="A", help="image folder or .npz statistics file")
    p.add_argument("b", metavar="B", help="image folder or .npz statistics file (with --save-stats: the "
                                          ".npz to write)")
    p.add_argument("--save-stats", action="store_true",
                   help="compute the statistics of folder A and write them to B instead of computing FID")
    p.add_argument("--batch-size", type=int, default=50, help="images per forward pass (default 50)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--weights", default=None,
                   help="the FID Inception weights file pt_inception-2015-12-05-6726825d.pth "
                        "(default: $GANCORE_FID_WEIGHTS, then ~/.cache/gancore/)")
    p.add_argument("--extractor", choices=("inception", "builtin"), default="inception",
                   help="inception: the standard FID network (needs --weights); builtin: gancore's offline "
                        "extractor, for demos and tests (its FIDs are not comparable with Inception FIDs)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except (OSError, ValueError) as exc:  # a user's mistake: one line and exit code 2, as every command
        print(f"gancore fid: error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:

    from gancore.metrics.frechet import frechet_distance
    from gancore.metrics.stats import FeatureStats

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
    device = _device(args.device)
    if args.save_stats:
        _check_stats_output(args.b)
    extractor = None

    def stats_of(source: str):
        nonlocal extractor
        if _is_stats_file(source):
            return _load_stats(source, FeatureStats)
        if extractor is None:
            extractor = _build_extractor(args, device)
        return _folder_stats(source, extractor, args, device)

    if args.save_stats:
        if _is_stats_file(args.a):
            raise ValueError(f"--save-stats needs an image folder as A, got the statistics file {args.a}")
        stats_of(args.a).save(args.b)
        print(f"wrote statistics of {args.a} to {args.b}")
        return 0
    first, second = stats_of(args.a), stats_of(args.b)
    _check_same_extractor(first, args.a, second, args.b)
    value = frechet_distance(first.mu.cpu(), first.sigma.cpu(), second.mu.cpu(), second.sigma.cpu())
    print(f"FID: {float(value):.6f}")
    return 0


def _device(name: str | None):
    import torch

    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device: not a device: {name!r} (use cpu or cuda)") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device: {name!r} is not supported (use cpu or cuda)")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: no CUDA device is available (use --device cpu)")
    return device


def _check_stats_output(path: str) -> None:
    """--save-stats B: refuse what cannot be written before any features are computed."""
    if os.path.isdir(path):
        raise ValueError(f"--save-stats: {path} is a directory; give the .npz file to write")
    if not _is_stats_file(path):
        raise ValueError(f"--save-stats: {path} must end in .npz")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise ValueError(f"--save-stats: cannot write {path}: {folder} is not a writable folder")


def _load_stats(path: str, stats_cls):
    """FeatureStats.load, with any malformed content (a `count` array, string arrays) named as such."""
    try:
        stats = stats_cls.load(path)
    except (TypeError, KeyError, IndexError) as exc:
        raise ValueError(f"{path}: not a valid statistics file ({type(exc).__name__}: {exc})") from None
    return stats


def _is_stats_file(source: str) -> bool:
    return source.lower().endswith(".npz")


def _build_extractor(args: argparse.Namespace, device):
    if args.extractor == "builtin":
        from gancore.metrics.extractors import BuiltinExtractor

        return BuiltinExtractor().to(device)
    from gancore.metrics.inception import load_fid_inception

    return load_fid_inception(args.weights, device=device)


def _folder_stats(folder: str, extractor, args: argparse.Namespace, device):
    from gancore.metrics.extractors import compute_stats
    from gancore.metrics.images import FolderBatches, list_images

    batches = FolderBatches(list_images(folder), args.batch_size, progress=not args.no_progress)
    try:
        stats = compute_stats(extractor, batches, device=device)
    except ValueError as exc:
        if batches.skipped and "no images were given" in str(exc):
            raise ValueError(f"none of the {len(batches.skipped)} images in {folder} could be read "
                             f"(first: {batches.skipped[0][0]}: {batches.skipped[0][1]})") from exc
        raise
    if batches.skipped:
        path, reason = batches.skipped[0]
        print(f"gancore fid: skipped {len(batches.skipped)} unreadable image(s) in {folder} "
              f"(first: {path}: {reason})", file=sys.stderr)
    if stats.count < 2:
        raise ValueError(f"{folder} has {stats.count} readable image; FID needs at least 2")
    return stats


def _check_same_extractor(first, name_a: str, second, name_b: str) -> None:
    if first.extractor and second.extractor and first.extractor != second.extractor:
        raise ValueError(f"{Path(name_a).name} holds {first.extractor} features but {Path(name_b).name} "
                         f"holds {second.extractor} features: FID between them means nothing")
