import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from gancore.data import DataError, ImageFolder, build_dataset
from gancore.data.imageio import open_image, to_tensor


def test_folder_is_recursive_and_labels_come_from_subfolders(tmp_path, make_image):
    for i, cls in enumerate(["cat", "dog", "cat"]):
        make_image(tmp_path / cls / "deep" / f"{i}.png", seed=i)
    ds = ImageFolder(str(tmp_path), resolution=8)
    assert len(ds) == 3 and ds.classes == ["cat", "dog"] and ds.num_classes == 2
    labels = sorted(ds[i]["label"] for i in range(3))
    assert labels == [0, 0, 1]
    image = ds[0]["image"]
    assert image.shape == (3, 8, 8) and image.dtype == torch.float32
    assert -1.0 <= image.min() and image.max() <= 1.0


def test_flat_folder_has_no_labels(tmp_path, make_image):
    make_image(tmp_path / "a.png")
    make_image(tmp_path / "b.jpg")
    ds = ImageFolder(str(tmp_path))
    assert len(ds) == 2 and "label" not in ds[0] and ds.num_classes is None


@pytest.mark.parametrize("mode, value, expected", [
    ("L", 255, 1.0),  # grayscale -> replicated to RGB
    ("I;16", 65535, 1.0),  # 16-bit -> 8-bit
    ("I;16", 0, -1.0),
])
def test_modes_are_converted(tmp_path, make_image, mode, value, expected):
    path = make_image(tmp_path / "x.png", mode=mode, value=value)
    t = to_tensor(open_image(str(path), channels=3))
    assert t.shape == (3, 10, 12)
    assert torch.allclose(t, torch.full_like(t, expected))


def test_sixteen_bit_mid_grey_is_scaled_not_clipped(tmp_path, make_image):
    path = make_image(tmp_path / "x.png", mode="I;16", value=32896)  # 32896 / 65535 ~ 0.502
    t = to_tensor(open_image(str(path), channels=1))
    assert t.shape == (1, 10, 12)
    assert abs(float(t.mean())) < 0.01


def test_rgba_is_composited_over_white(tmp_path):
    arr = np.zeros((4, 4, 4), np.uint8)
    arr[..., 0] = 255  # red ...
    arr[:2, :, 3] = 255  # ... opaque in the top half, transparent below
    Image.fromarray(arr, mode="RGBA").save(tmp_path / "x.png")
    t = to_tensor(open_image(str(tmp_path / "x.png"), channels=3))
    assert torch.allclose(t[:, :2], torch.tensor([1.0, -1.0, -1.0])[:, None, None].expand(3, 2, 4))
    assert torch.allclose(t[:, 2:], torch.ones(3, 2, 4))


def test_rgb_to_one_channel(tmp_path, make_image):
    make_image(tmp_path / "x.png")
    assert ImageFolder(str(tmp_path), channels=1)[0]["image"].shape == (1, 10, 12)


def test_resize_keeps_the_centre_square(tmp_path):
    arr = np.zeros((10, 30, 3), np.uint8)
    arr[:, 10:20] = 255  # white centre third of a wide image
    Image.fromarray(arr).save(tmp_path / "wide.png")
    t = ImageFolder(str(tmp_path), resolution=10)[0]["image"]
    assert t.shape == (3, 10, 10) and float(t.mean()) > 0.9


def test_corrupt_files_are_skipped_and_counted(tmp_path, make_image):
    make_image(tmp_path / "good1.png")
    make_image(tmp_path / "good2.png", seed=1)
    (tmp_path / "garbage.png").write_bytes(b"not an image at all")
    good = (tmp_path / "good2.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(good[: len(good) // 2])  # header fine, data cut
    with pytest.warns(UserWarning, match="skipping"):
        ds = ImageFolder(str(tmp_path))
    assert ds.skipped == 1 and len(ds) == 3  # the garbage file is caught by its header
    with pytest.warns(UserWarning, match="truncated.png"):
        items = [ds[i]["image"] for i in range(len(ds))]  # the truncated one only when decoded
    assert ds.skipped == 2 and all(x.shape == (3, 10, 12) for x in items)


def test_corrupt_file_is_an_error_on_request(tmp_path, make_image):
    make_image(tmp_path / "good.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DataError, match="bad.png"):
        ImageFolder(str(tmp_path), on_error="raise")


def test_truncated_file_is_an_error_on_request(tmp_path, make_image):
    good = make_image(tmp_path / "good.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(good[: len(good) // 2])
    ds = ImageFolder(str(tmp_path), on_error="raise")
    with pytest.raises(DataError, match="cut.png"):
        for i in range(len(ds)):
            ds[i]


def test_missing_and_empty_paths_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="no such file or directory"):
        ImageFolder(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match="no image files"):
        ImageFolder(str(tmp_path / "empty"))


def test_all_unreadable_is_an_error(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DataError, match="can be read"):
            ImageFolder(str(tmp_path))


def test_flip_depends_on_the_draw_seed_only(tmp_path):
    arr = np.zeros((4, 4, 3), np.uint8)
    arr[:, :2] = 255
    Image.fromarray(arr).save(tmp_path / "x.png")
    ds = ImageFolder(str(tmp_path), flip=True)
    draws = [ds.sample(0, seed=s)["image"] for s in range(16)]
    flipped = [bool(d[0, 0, 0] < 0) for d in draws]
    assert any(flipped) and not all(flipped)
    assert all(torch.equal(ds.sample(0, seed=s)["image"], draws[s]) for s in range(16))


def test_build_dataset_checks_options(tmp_path, make_image):
    make_image(tmp_path / "a.png")
    ds = build_dataset({"name": "image-folder", "path": str(tmp_path)}, {"resolution": 4, "modes": 3})
    assert ds[0]["image"].shape == (3, 4, 4)  # hint taken; a hint the dataset lacks is ignored
    with pytest.raises(DataError, match="data.flipp"):
        build_dataset({"name": "image-folder", "path": str(tmp_path), "flipp": True})
    with pytest.raises(DataError, match="data.path.*--data PATH"):
        build_dataset({"name": "image-folder"})
    with pytest.raises(DataError, match="unknown dataset 'folder'"):
        build_dataset({"name": "folder"})
