import math

import pytest
import torch
import torch.nn.functional as F

from gancore.data import (
    BUILTIN,
    DATASETS,
    ColorDomains,
    DataError,
    OracleSequences,
    RingOfGaussians,
    ShapeEdges,
    Shapes,
    build_dataset,
)
from gancore.data.builtin import SHAPES


def test_ring_points_lie_near_their_modes():
    ring = RingOfGaussians(size=2000, modes=8, radius=2.0, std=0.02, seed=1)
    pts = torch.stack([ring[i]["x"] for i in range(len(ring))])
    assert pts.shape == (2000, 2)
    assert torch.allclose(pts.norm(dim=1), torch.full((2000,), 2.0), atol=0.1)
    nearest = torch.cdist(pts, ring.centers()).argmin(dim=1)
    assert torch.equal(nearest, ring.mode_index)
    assert len(nearest.unique()) == 8
    angles = torch.atan2(ring.centers()[:, 1], ring.centers()[:, 0])
    gaps = (angles.diff() % (2 * math.pi))
    assert torch.allclose(gaps, torch.full_like(gaps, 2 * math.pi / 8), atol=1e-5)


def test_ring_is_a_function_of_its_seed():
    assert torch.equal(RingOfGaussians(size=10, seed=3).points, RingOfGaussians(size=10, seed=3).points)
    assert not torch.equal(RingOfGaussians(size=10, seed=3).points, RingOfGaussians(size=10, seed=4).points)


def test_shapes_are_deterministic_with_labels_and_edges():
    ds = Shapes(size=50, resolution=24, seed=2)
    s = ds[7]
    assert s["image"].shape == (3, 24, 24) and s["edges"].shape == (3, 24, 24)
    assert torch.equal(s["image"], Shapes(size=50, resolution=24, seed=2)[7]["image"])
    assert not torch.equal(s["image"], ds[8]["image"])
    assert {ds[i]["label"] for i in range(50)} == set(range(len(SHAPES)))
    assert set(s["edges"].unique().tolist()) == {-1.0, 1.0}  # binary edge map


def test_edges_outline_the_shape():
    ds = Shapes(size=6, resolution=32)
    for i in range(len(ds)):
        s = ds[i]
        edge = s["edges"][0] > 0
        ground = s["image"][:, 0, 0]  # a corner pixel is background (shapes stay inside the frame)
        shape = (s["image"] - ground[:, None, None]).abs().amax(dim=0) > 0.1
        ys, xs = edge.nonzero(as_tuple=True)
        assert len(ys) > 0 and (shape & ~edge).sum() > 0
        # every edge pixel has shape and background pixels around it (5x5: the shape is antialiased)
        padded = F.pad(shape.float()[None, None], (2, 2, 2, 2), value=0.0)
        spread = F.max_pool2d(padded, 5, 1)[0, 0] + F.max_pool2d(-padded, 5, 1)[0, 0]  # max - min
        assert bool((spread[ys, xs] > 0).all())


def test_shape_edges_and_color_domains_layouts():
    pair = ShapeEdges(size=4, resolution=16)[1]
    full = Shapes(size=4, resolution=16)[1]
    assert torch.equal(pair["A"], full["edges"]) and torch.equal(pair["B"], full["image"])
    domains = ColorDomains(size=20, resolution=16)
    a = torch.stack([domains.sample(i, seed=i)["A"] for i in range(20)])
    b = torch.stack([domains.sample(i, seed=i)["B"] for i in range(20)])
    corner_a, corner_b = a[:, :, 0, 0].mean(), b[:, :, 0, 0].mean()
    assert corner_a < -0.5 < 0.5 < corner_b  # dark grounds in A, light grounds in B
    assert a[:, 0].max() > a[:, 2].max() - 0.1  # warm: red dominates in A's shapes
    assert b[:, 2].mean() > b[:, 0].mean()  # cool: blue dominates in B


def test_oracle_sequences_are_likely_under_their_oracle():
    ds = OracleSequences(size=100, vocab_size=50, length=12, seed=0)
    tokens = torch.stack([ds[i]["tokens"] for i in range(100)])
    assert tokens.shape == (100, 12) and tokens.min() >= 0 and tokens.max() < 50
    assert torch.equal(tokens[3], OracleSequences(size=100, vocab_size=50, length=12, seed=0)[3]["tokens"])
    own = ds.oracle.nll(tokens).mean()
    uniform = ds.oracle.nll(torch.randint(50, (100, 12), generator=torch.Generator().manual_seed(0))).mean()
    assert own < uniform - 0.5


def test_every_builtin_builds_with_defaults_and_no_path():
    for name in BUILTIN:
        options = {"size": 8} if "size" in DATASETS[name].__init__.__code__.co_varnames else {}
        ds = build_dataset({"name": name, **options})
        assert isinstance(ds[0][ds.sample_key], torch.Tensor)


def test_builtin_argument_errors():
    with pytest.raises(DataError, match="size"):
        Shapes(size=0)
    with pytest.raises(DataError, match="modes"):
        RingOfGaussians(modes=0)
    with pytest.raises(DataError, match="channels"):
        Shapes(channels=2)
