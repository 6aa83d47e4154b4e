"""Paired, unpaired, attribute, super-resolution and captioned image layouts."""

import numpy as np
import pytest
import torch
from PIL import Image

from gancore.data import (
    AttributeImages,
    CaptionedImages,
    DataError,
    PairedImages,
    SuperResolution,
    UnpairedImages,
)


def test_paired_side_by_side(tmp_path):
    arr = np.zeros((8, 16, 3), np.uint8)
    arr[:, 8:] = 255  # A black, B white
    Image.fromarray(arr).save(tmp_path / "p.png")
    s = PairedImages(str(tmp_path))[0]
    assert s["A"].shape == s["B"].shape == (3, 8, 8)
    assert float(s["A"].max()) == -1.0 and float(s["B"].min()) == 1.0


def test_paired_folders_match_by_name_and_count_orphans(tmp_path, make_image):
    make_image(tmp_path / "A" / "x.png", value=0)
    make_image(tmp_path / "B" / "x.jpg", value=255)  # same stem, other extension
    make_image(tmp_path / "A" / "orphan.png")
    with pytest.warns(UserWarning, match="without a partner"):
        ds = PairedImages(str(tmp_path), resolution=6)
    assert ds.layout == "folders" and len(ds) == 1 and ds.skipped == 1
    s = ds[0]
    assert s["A"].shape == (3, 6, 6) and float(s["A"].mean()) == -1.0 and float(s["B"].mean()) > 0.9


def test_paired_folders_without_matches_is_an_error(tmp_path, make_image):
    make_image(tmp_path / "A" / "a.png")
    make_image(tmp_path / "B" / "b.png")
    with pytest.raises(DataError, match="partner"):
        PairedImages(str(tmp_path), layout="folders")


def test_unpaired_layout_and_random_partner(tmp_path, make_image):
    for i in range(3):
        make_image(tmp_path / "trainA" / f"{i}.png", value=10 * i)
    for i in range(5):
        make_image(tmp_path / "trainB" / f"{i}.png", value=100 + 10 * i)
    ds = UnpairedImages(str(tmp_path), resolution=4)
    assert len(ds) == 5
    partners = {float(ds.sample(0, seed=s)["B"].mean()) for s in range(20)}
    assert len(partners) > 1  # B is not tied to A's index
    assert torch.equal(ds.sample(1, seed=3)["B"], ds.sample(1, seed=3)["B"])
    with pytest.raises(DataError, match="testA"):
        UnpairedImages(str(tmp_path), split="test")


def _celeba(tmp_path, make_image, rows):
    lines = [str(len(rows)), "Smiling Young Male"] + rows
    (tmp_path / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    for row in rows:
        make_image(tmp_path / "img_align_celeba" / row.split()[0])


def test_attribute_list_celeba_style(tmp_path, make_image):
    _celeba(tmp_path, make_image, ["000001.jpg  1 -1  1", "000002.jpg -1  1 -1"])
    ds = AttributeImages(str(tmp_path), resolution=4)
    assert ds.attribute_names == ["Smiling", "Young", "Male"]
    assert ds[0]["attrs"].tolist() == [1.0, 0.0, 1.0] and ds[1]["attrs"].tolist() == [0.0, 1.0, 0.0]
    picked = AttributeImages(str(tmp_path), attributes=["Male"])
    assert picked[0]["attrs"].tolist() == [1.0]


def test_attribute_errors_name_the_problem(tmp_path, make_image):
    _celeba(tmp_path, make_image, ["000001.jpg 1 -1 1"])
    with pytest.raises(DataError, match="Bald"):
        AttributeImages(str(tmp_path), attributes=["Bald"])
    (tmp_path / "list_attr_celeba.txt").write_text("1\nSmiling Young Male\n000001.jpg 1 -1\n")
    with pytest.raises(DataError, match="row 2 has 2 values for 3"):
        AttributeImages(str(tmp_path))


def test_attribute_rows_without_files_are_skipped(tmp_path, make_image):
    _celeba(tmp_path, make_image, ["000001.jpg 1 -1 1"])
    text = (tmp_path / "list_attr_celeba.txt").read_text() + "missing.jpg 1 1 1\n"
    (tmp_path / "list_attr_celeba.txt").write_text(text)
    ds = AttributeImages(str(tmp_path))
    assert len(ds) == 1 and ds.skipped == 1


def test_super_resolution_crops_and_downscales(tmp_path, make_image):
    make_image(tmp_path / "hr.png", size=(40, 30))
    make_image(tmp_path / "small.png", size=(10, 12))  # smaller than the crop: scaled up first
    ds = SuperResolution(str(tmp_path), hr_size=16, scale=4)
    for i in range(len(ds)):
        s = ds.sample(i, seed=5)
        assert s["hr"].shape == (3, 16, 16) and s["lr"].shape == (3, 4, 4)
        # bicubic downscaling keeps the mean colour
        assert torch.allclose(s["lr"].mean(dim=(1, 2)), s["hr"].mean(dim=(1, 2)), atol=0.1)
    crops = {ds.sample(0, seed=s)["hr"].sum().item() for s in range(8)}
    assert len(crops) > 1  # random crops, by the draw seed
    with pytest.raises(DataError, match="multiple of scale"):
        SuperResolution(str(tmp_path), hr_size=10, scale=4)


def test_captions_from_tsv_with_several_per_image(tmp_path, make_image):
    make_image(tmp_path / "imgs" / "a.png")
    make_image(tmp_path / "imgs" / "b.png")
    (tmp_path / "imgs" / "captions.tsv").write_text(
        "a.png\ta red circle\na.png\ta circle in red\nb.png\tblue\n")
    ds = CaptionedImages(str(tmp_path / "imgs"), max_len=6)
    assert len(ds) == 2
    texts = {ds.sample(0, seed=s)["caption"] for s in range(20)}
    assert texts == {"a red circle", "a circle in red"}
    s = ds.sample(1, seed=0)
    assert s["tokens"].shape == (6,) and ds.vocab.decode(s["tokens"]) == ["blue"]


def test_captions_from_sidecar_files_and_missing_ones_counted(tmp_path, make_image):
    make_image(tmp_path / "a.png")
    (tmp_path / "a.txt").write_text("hello world\n")
    make_image(tmp_path / "b.png")  # no caption
    ds = CaptionedImages(str(tmp_path))
    assert len(ds) == 1 and ds.skipped == 1 and ds[0]["caption"] == "hello world"


def test_caption_file_format_error(tmp_path, make_image):
    make_image(tmp_path / "a.png")
    (tmp_path / "captions.txt").write_text("a.png no tab here\n")
    with pytest.raises(DataError, match="line 1 has no tab"):
        CaptionedImages(str(tmp_path))
