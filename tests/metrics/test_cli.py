"""`gancore fid`: folders and .npz files, --save-stats, unreadable images, empty folders, missing weights."""

import argparse

import numpy as np
import pytest
import torch
from PIL import Image

from gancore.metrics import FeatureStats, frechet_distance
from gancore.metrics.cli import register
from gancore.metrics.extractors import BuiltinExtractor, compute_stats
from gancore.metrics.images import load_image
from gancore.metrics.inception import WEIGHTS_ENV, WEIGHTS_FILE, InceptionV3FID


def fid_cli(*argv):
    parser = argparse.ArgumentParser(prog="gancore")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["fid", *argv])
    return args.func(args)


def write_images(folder, seed, count, size=20, grey_every=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for k in range(count):
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        pixels[: size // 2] //= 2 + seed  # some structure that differs between seeds
        image = Image.fromarray(pixels)
        if grey_every and k % grey_every == 0:
            image = image.convert("L")
        image.save(folder / f"{k:03d}.png")
    return folder


def test_fid_of_two_folders_matches_the_library(tmp_path, capsys):
    a = write_images(tmp_path / "a", 0, 12, grey_every=5)
    write_images(tmp_path / "b" / "nested", 1, 9, size=24)
    (tmp_path / "b" / "notes.txt").write_text("not an image")
    assert fid_cli(str(a), str(tmp_path / "b"), "--extractor", "builtin", "--batch-size", "5",
                   "--device", "cpu") == 0
    printed = capsys.readouterr().out
    extractor = BuiltinExtractor()
    stats = [compute_stats(extractor, torch.stack([load_image(p) for p in sorted(folder.rglob("*.png"))]))
             for folder in (a, tmp_path / "b")]
    expected = frechet_distance(stats[0].mu, stats[0].sigma, stats[1].mu, stats[1].sigma)
    assert printed.startswith("FID: ")
    assert float(printed.split()[1]) == pytest.approx(float(expected), rel=1e-5)


def test_inception_from_a_weights_file(tmp_path, weights_file):
    path, _ = weights_file
    a = write_images(tmp_path / "a", 0, 2)
    assert fid_cli("--save-stats", str(a), str(tmp_path / "a.npz"), "--weights", str(path)) == 0
    saved = FeatureStats.load(tmp_path / "a.npz")
    assert (saved.extractor, saved.dim, saved.count) == (InceptionV3FID.name, 2048, 2)
    assert bool(torch.isfinite(saved.sigma).all())


def test_save_stats_then_compare_against_the_file(tmp_path, capsys):
    a = write_images(tmp_path / "a", 0, 8)
    b = write_images(tmp_path / "b", 2, 8)
    assert fid_cli("--save-stats", str(a), str(tmp_path / "a.npz"), "--extractor", "builtin") == 0
    saved = FeatureStats.load(tmp_path / "a.npz")
    assert saved.count == 8 and saved.extractor == BuiltinExtractor().name
    capsys.readouterr()
    fid_cli(str(a), str(b), "--extractor", "builtin", "--no-progress")
    from_folders = capsys.readouterr().out
    fid_cli(str(tmp_path / "a.npz"), str(b), "--extractor", "builtin")
    assert capsys.readouterr().out == from_folders
    # Two statistics files need no extractor at all (so no weights): pytorch-fid files work too.
    np.savez(tmp_path / "plain.npz", mu=saved.mu.numpy(), sigma=saved.sigma.numpy())
    assert fid_cli(str(tmp_path / "plain.npz"), str(tmp_path / "a.npz")) == 0
    assert float(capsys.readouterr().out.split()[1]) == 0.0


def test_unreadable_images_are_skipped_and_counted(tmp_path, capsys):
    a = write_images(tmp_path / "a", 0, 6)
    (a / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a PNG")
    with open(a / "000.png", "rb") as f:
        head = f.read(60)
    (a / "truncated.png").write_bytes(head)
    assert fid_cli(str(a), str(a), "--extractor", "builtin") == 0
    captured = capsys.readouterr()
    assert "skipped 2 unreadable image(s)" in captured.err
    assert float(captured.out.split()[1]) == 0.0


def test_clear_errors(tmp_path, capsys, monkeypatch):
    (tmp_path / "empty").mkdir()
    write_images(tmp_path / "ok", 0, 3)
    assert fid_cli(str(tmp_path / "empty"), str(tmp_path / "ok"), "--extractor", "builtin") == 2
    assert "contains no images" in capsys.readouterr().err
    assert fid_cli(str(tmp_path / "missing"), str(tmp_path / "ok"), "--extractor", "builtin") == 2
    assert "is not a folder of images" in capsys.readouterr().err
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_text("nope")
    assert fid_cli(str(tmp_path / "bad"), str(tmp_path / "ok"), "--extractor", "builtin") == 2
    assert "none of the 1 images" in capsys.readouterr().err
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert fid_cli(str(tmp_path / "ok"), str(tmp_path / "ok")) == 2
    err = capsys.readouterr().err
    assert WEIGHTS_FILE in err and "--weights" in err
    fid_cli("--save-stats", str(tmp_path / "ok"), str(tmp_path / "ok.npz"), "--extractor", "builtin")
    np.savez(tmp_path / "other.npz", mu=np.zeros(256), sigma=np.eye(256), extractor="something-else")
    assert fid_cli(str(tmp_path / "ok.npz"), str(tmp_path / "other.npz")) == 2
    assert "FID between them means nothing" in capsys.readouterr().err


def test_16_bit_images_score_as_their_8_bit_twins(tmp_path, capsys):
    # pytorch-fid's convert("RGB") clips 16-bit values at 255: the twins used to score FID 1.875
    rng = np.random.default_rng(0)
    (tmp_path / "8").mkdir()
    (tmp_path / "16").mkdir()
    for k in range(6):
        grey = rng.integers(0, 256, (16, 16), dtype=np.uint8)
        Image.fromarray(grey).save(tmp_path / "8" / f"{k}.png")
        Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "16" / f"{k}.png")  # 255 -> 65535
    assert Image.open(tmp_path / "16" / "0.png").mode.startswith("I")
    assert torch.equal(load_image(tmp_path / "8" / "0.png"), load_image(tmp_path / "16" / "0.png"))
    assert fid_cli(str(tmp_path / "8"), str(tmp_path / "16"), "--extractor", "builtin", "--device", "cpu",
                   "--no-progress") == 0
    assert float(capsys.readouterr().out.split()[1]) == pytest.approx(0.0, abs=1e-6)
