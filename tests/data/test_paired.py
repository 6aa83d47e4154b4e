"""The aligned (pix2pix) and unaligned (CycleGAN) folders and the reference preprocessing."""

import numpy as np
import pytest
import torch
from PIL import Image

from gancore.data import AlignedImages, DataError, UnalignedImages, build_dataset
from gancore.data.imageio import to_tensor
from gancore.data.paired import Preprocess


def _random_rgb(w, h, seed):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), np.uint8))


def _side_by_side(path, half):
    """An AB file whose A and B halves are the same picture: any shared crop and flip keep them equal."""
    w, h = half.size
    ab = Image.new("RGB", (2 * w, h))
    ab.paste(half, (0, 0))
    ab.paste(half, (w, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    ab.save(path)


def test_aligned_pairs_share_one_crop_and_flip(tmp_path):
    _side_by_side(tmp_path / "train" / "0.png", _random_rgb(30, 30, seed=0))
    ds = AlignedImages(str(tmp_path), load_size=24, crop_size=16)  # reads path/train
    flips = set()
    for seed in range(12):
        s = ds.sample(0, seed)
        assert s["A"].shape == s["B"].shape == (3, 16, 16)
        assert torch.equal(s["A"], s["B"])
        flips.add(ds.transform.draw((15, 30), seed)[2])
    assert flips == {True, False}
    assert torch.equal(ds.sample(0, 5)["A"], ds.sample(0, 5)["A"])  # a function of the seed


def test_resize_and_crop_is_the_reference_transform(tmp_path):
    img = _random_rgb(20, 12, seed=1)
    t = Preprocess("resize_and_crop", load_size=10, crop_size=8, flip=True)
    left, top, flip = t.draw(img.size, seed=3)
    assert 0 <= left <= 2 and 0 <= top <= 2
    expected = img.resize((10, 10), Image.BICUBIC).crop((left, top, left + 8, top + 8))
    if flip:
        expected = expected.transpose(Image.FLIP_LEFT_RIGHT)
    assert np.array_equal(np.asarray(t(img, (left, top, flip))), np.asarray(expected))
    assert Preprocess("resize_and_crop", flip=False).draw((600, 400), seed=0)[2] is False


def test_other_preprocess_modes():
    img = _random_rgb(18, 13, seed=2)
    assert Preprocess("none")(img, (0, 0, False)).size == (16, 12)  # sides rounded to multiples of 4
    assert Preprocess("none")(_random_rgb(16, 12, 0), (0, 0, False)).size == (16, 12)
    assert Preprocess("crop", crop_size=8)(img, (1, 2, False)).size == (8, 8)
    assert Preprocess("scale_width", load_size=36)(img, (0, 0, False)).size == (36, 26)
    assert Preprocess("scale_width_and_crop", load_size=36, crop_size=20)(img, (0, 0, False)).size == (20, 20)


def test_bad_preprocess_options_are_named(tmp_path):
    with pytest.raises(DataError, match="data.preprocess"):
        Preprocess("resize")
    with pytest.raises(DataError, match="crop_size"):
        Preprocess("resize_and_crop", load_size=100, crop_size=128)
    with pytest.raises(DataError, match="smaller than data.crop_size"):
        Preprocess("crop", crop_size=64)(_random_rgb(20, 20, 0), (0, 0, False))


def test_aligned_folders_of_a_and_b(tmp_path):
    a, b = _random_rgb(8, 8, seed=3), _random_rgb(8, 8, seed=4)
    for folder, img in (("A", a), ("B", b)):
        (tmp_path / folder).mkdir()
        img.save(tmp_path / folder / "x.png")
    ds = build_dataset({"name": "aligned", "path": str(tmp_path), "preprocess": "none", "flip": False})
    s = ds[0]
    assert ds.layout == "folders" and torch.equal(s["A"], to_tensor(a)) and torch.equal(s["B"], to_tensor(b))
    with pytest.raises(DataError, match="no such directory"):
        AlignedImages(str(tmp_path / "missing"))


def test_unaligned_domains_draw_their_own_crops(tmp_path):
    same = _random_rgb(12, 12, seed=5)
    for domain in ("trainA", "trainB"):
        (tmp_path / domain).mkdir()
        same.save(tmp_path / domain / "0.png")
    ds = UnalignedImages(str(tmp_path), load_size=12, crop_size=8)
    samples = [ds.sample(0, seed) for seed in range(8)]
    assert all(s["A"].shape == s["B"].shape == (3, 8, 8) for s in samples)
    assert any(not torch.equal(s["A"], s["B"]) for s in samples)  # independent draws for A and B
    assert torch.equal(ds.sample(0, 3)["B"], samples[3]["B"])
    with pytest.raises(DataError, match="testA"):
        UnalignedImages(str(tmp_path), split="test")
