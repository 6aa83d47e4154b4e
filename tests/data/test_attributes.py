"""Labelled data for StarGAN: the built-in attribute shapes draw what their labels say, the class shapes, the
joint dataset's mask-vector labels, and the label sets of the CelebA- and RaFD-style folders."""

import pytest
import torch

from gancore.data import DataError, build_dataset
from gancore.data.attributes import AttributeShapes, JointLabels, LabelSet, ShapeClasses, label_sets_of


def test_attribute_shapes_are_seeded_balanced_and_draw_their_attributes():
    ds = AttributeShapes(size=400, resolution=32)
    assert torch.equal(ds[3]["image"], AttributeShapes(size=400, resolution=32)[3]["image"])
    assert not torch.equal(ds[3]["image"], AttributeShapes(size=400, resolution=32, seed=1)[3]["image"])
    samples = [ds[i] for i in range(400)]
    images = torch.stack([s["image"] for s in samples])
    attrs = torch.stack([s["attrs"] for s in samples])
    assert images.shape == (400, 3, 32, 32) and images.min() >= -1 and images.max() <= 1
    assert set(attrs.unique().tolist()) == {0.0, 1.0} and (attrs.mean(0) - 0.5).abs().max() < 0.1
    red, big, dot = attrs.T.bool()
    # Red: the figure's red channel beats its blue one; Big: more of the image is figure; Dot: a white mark.
    figure = (images.max(dim=1).values > -0.3).float()  # the ground is dark grey, the figure bright
    redness = ((images[:, 0] - images[:, 2]) * figure).sum((1, 2)) / figure.sum((1, 2))
    assert bool((redness[red] > 0.3).all()) and bool((redness[~red] < -0.3).all())
    area = figure.mean((1, 2))
    assert area[big].min() > area[~big].max()
    whiteness = images.min(dim=1).values.flatten(1).max(1).values  # brightest pixel in all channels
    assert bool((whiteness[dot] > 0.5).all()) and bool((whiteness[~dot] < 0.5).all())


def test_shape_classes_label_one_class_per_image():
    ds = ShapeClasses(size=60, resolution=16)
    labels = [ds[i]["label"] for i in range(60)]
    assert set(labels) == {0, 1, 2} and ds.num_classes == 3 and ds[0]["image"].shape == (3, 16, 16)
    assert label_sets_of(ds) == [LabelSet("ce", ("circle", "square", "triangle"))]


def test_joint_labels_put_each_set_in_its_place_and_zero_the_other():
    ds = build_dataset({"name": "joint", "first": {"name": "attribute-shapes", "size": 5},
                        "second": {"name": "shape-classes", "size": 4}}, {"resolution": 16})
    assert len(ds) == 9 and [s.kind for s in ds.label_sets] == ["bce", "ce"]
    first, second = ds[2], ds[7]
    assert first["dataset"] == 0 and second["dataset"] == 1 and first["image"].shape == (3, 16, 16)
    assert torch.equal(first["labels"][:3], ds.parts[0][2]["attrs"]) and not first["labels"][3:].any()
    assert not second["labels"][:3].any() and second["labels"][3:].sum() == 1
    assert second["labels"][3 + ds.parts[1][2]["label"]] == 1
    assert ds.describe().endswith("(joint, mask vector)")


def test_joint_labels_refuse_what_cannot_be_joined():
    with pytest.raises(DataError, match="same shape|one shape"):
        JointLabels({"name": "attribute-shapes", "resolution": 16}, {"name": "shape-classes", "resolution": 24})
    with pytest.raises(DataError, match="data.second: a joint dataset joins two plain"):
        JointLabels(None, {"name": "joint"})
    with pytest.raises(DataError, match="data.first: expected a data section"):
        JointLabels("attribute-shapes", None)


def test_celeba_and_rafd_layouts_give_their_label_sets(tmp_path, make_image):
    celeba = tmp_path / "celeba"
    (celeba / "img_align_celeba").mkdir(parents=True)
    rows = ["000001.jpg 1 -1 1", "000002.jpg -1 1 -1"]
    (celeba / "list_attr_celeba.txt").write_text("\n".join(["2", "Black_Hair Blond_Hair Male"] + rows) + "\n")
    for row in rows:
        make_image(celeba / "img_align_celeba" / row.split()[0], size=(20, 24))
    picked = build_dataset({"name": "attributes", "path": str(celeba), "attributes": ["Male", "Black_Hair"]},
                           {"resolution": 16})
    assert label_sets_of(picked) == [LabelSet("bce", ("Male", "Black_Hair"))]
    assert picked[0]["attrs"].tolist() == [1.0, 1.0] and picked[0]["image"].shape == (3, 16, 16)
    rafd = tmp_path / "rafd"
    for i, expression in enumerate(("angry", "happy", "neutral")):
        make_image(rafd / expression / f"{i}.png", size=(16, 16), seed=i)
    folders = build_dataset({"name": "image-folder", "path": str(rafd)})
    assert label_sets_of(folders) == [LabelSet("ce", ("angry", "happy", "neutral"))]
    joint = JointLabels({"name": "attributes", "path": str(celeba)}, {"name": "image-folder", "path": str(rafd)},
                        resolution=16)
    assert len(joint) == 5 and joint[4]["labels"].tolist() == [0, 0, 0, 0, 0, 1]


def test_unlabelled_data_is_refused_with_the_layouts_to_use(tmp_path, make_image):
    make_image(tmp_path / "a.png")
    with pytest.raises(DataError, match="no labels to translate between.*attributes.*image-folder"):
        label_sets_of(build_dataset({"name": "image-folder", "path": str(tmp_path)}))
