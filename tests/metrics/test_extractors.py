"""The built-in offline extractor, user callables, and the FID InceptionV3 loaded from a local file."""

import numpy as np
import pytest
import torch

from gancore.metrics import fid_from_features
from gancore.metrics.extractors import BuiltinExtractor, compute_stats
from gancore.metrics.inception import WEIGHTS_ENV, WEIGHTS_FILE, load_fid_inception


def blobs(n, seed, shift=0.0):
    """Procedural images in [-1, 1]: smooth random colour blobs on a gradient."""
    gen = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 24), torch.linspace(-1, 1, 24), indexing="ij")
    centre = torch.rand(n, 2, 1, 1, generator=gen) * 2 - 1
    radius = 0.2 + 0.4 * torch.rand(n, 1, 1, generator=gen)
    colour = torch.rand(n, 3, 1, 1, generator=gen) * 2 - 1
    inside = ((xx - centre[:, 0]) ** 2 + (yy - centre[:, 1]) ** 2 < radius**2).float()[:, None]
    return (inside * colour + (1 - inside) * (xx * 0.5 + shift)).clamp(-1, 1)


def test_builtin_extractor_is_deterministic_and_takes_any_size():
    a, b = BuiltinExtractor(), BuiltinExtractor()
    images = blobs(4, 0)
    assert torch.equal(a(images), b(images))
    assert a(images).shape == (4, BuiltinExtractor.dim)
    assert not torch.equal(BuiltinExtractor(seed=1)(images), a(images))
    grey = torch.rand(2, 1, 17, 45) * 2 - 1
    assert torch.equal(a(grey), a(grey.expand(-1, 3, -1, -1)))
    with pytest.raises(ValueError, match="at least 16 x 16"):
        a(torch.zeros(1, 3, 8, 40))
    with pytest.raises(ValueError, match="C = 1 or 3"):
        a(torch.zeros(1, 2, 32, 32))


def test_builtin_fid_separates_distributions():
    extractor = BuiltinExtractor()
    same_a = compute_stats(extractor, blobs(300, 1), batch_size=100)
    same_b = compute_stats(extractor, blobs(300, 2), batch_size=100)
    shifted = compute_stats(extractor, blobs(300, 3, shift=0.6))
    noise = torch.rand(300, 3, 24, 24, generator=torch.Generator().manual_seed(4)) * 2 - 1
    noise = compute_stats(extractor, noise)
    assert same_a.extractor == "gancore-builtin-v1/seed=0"
    close = float(fid_from_features(same_a, same_b))
    assert float(fid_from_features(same_a, shifted)) > 10 * close
    assert float(fid_from_features(same_a, noise)) > 10 * close


def test_user_callables_and_loaders():
    images = blobs(10, 5)
    flat = lambda x: x.flatten(1)[:, :7] * 3  # noqa: E731
    stats, features = compute_stats(flat, images, batch_size=4, keep_features=True)
    np.testing.assert_allclose(features.numpy(), flat(images).numpy(), rtol=1e-6)
    assert stats.count == 10 and stats.extractor is None
    loader = [(images[:6], torch.zeros(6)), (images[6:], torch.zeros(4))]  # (images, labels) batches
    pooled = compute_stats(lambda x: x.mean((2, 3), keepdim=True), loader)  # (N, D, 1, 1) is accepted
    np.testing.assert_allclose(pooled.mu.numpy(), images.mean((0, 2, 3)).double().numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match=r"must return \(N, D\) features for 10 images"):
        compute_stats(lambda x: x.mean(), images, batch_size=10)
    with pytest.raises(ValueError, match="no images were given"):
        compute_stats(flat, iter([]))


# Shapes of the FID Inception weights file, written out independently of gancore's module: a sample of
# every block type, plus the totals of the file (94 convolutions with batch norm, and the 1008-way fc).
KNOWN_SHAPES = {
    "Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3),
    "Conv2d_4a_3x3.bn.running_var": (192,),
    "Mixed_5b.branch5x5_2.conv.weight": (64, 48, 5, 5),
    "Mixed_5b.branch_pool.conv.weight": (32, 192, 1, 1),
    "Mixed_5d.branch3x3dbl_3.bn.bias": (96,),
    "Mixed_6a.branch3x3.conv.weight": (384, 288, 3, 3),
    "Mixed_6b.branch7x7_2.conv.weight": (128, 128, 1, 7),
    "Mixed_6e.branch7x7dbl_5.conv.weight": (192, 192, 1, 7),
    "Mixed_7a.branch7x7x3_4.conv.weight": (192, 192, 3, 3),
    "Mixed_7b.branch3x3dbl_1.conv.weight": (448, 1280, 1, 1),
    "Mixed_7c.branch3x3_2b.conv.weight": (384, 384, 3, 1),
    "Mixed_7c.branch_pool.conv.weight": (192, 2048, 1, 1),
    "fc.weight": (1008, 2048),
    "fc.bias": (1008,),
}


def test_inception_architecture_has_the_files_keys(weights_file):
    _, state = weights_file
    for key, shape in KNOWN_SHAPES.items():
        assert tuple(state[key].shape) == shape, key
    assert sum(k.endswith(".conv.weight") for k in state) == 94
    assert len(state) == 94 * 5 + 2


def test_inception_loads_the_file_and_runs(weights_file, monkeypatch):
    path, state = weights_file
    model = load_fid_inception(path)
    key = "Mixed_6c.branch7x7dbl_3.conv.weight"
    assert torch.equal(model.get_parameter(key), state[key])
    monkeypatch.setenv(WEIGHTS_ENV, str(path))
    from_env = load_fid_inception()
    assert torch.equal(from_env.fc.bias, state["fc.bias"])
    with torch.no_grad():
        images = blobs(2, 6)  # 24 x 24, resized to 299 x 299
        features = model(images)
        logits = model.logits(images[:1])
    assert features.shape == (2, 2048) and bool(torch.isfinite(features).all())
    assert logits.shape == (1, 1008)
    assert torch.allclose(model.fc(features[:1]), logits, atol=1e-4)


def test_inception_without_weights_says_what_to_get(tmp_path, monkeypatch):
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(FileNotFoundError, match=WEIGHTS_FILE) as info:
        load_fid_inception()
    message = str(info.value)
    assert WEIGHTS_ENV in message and "--weights" in message and str(tmp_path / "gancore") in message
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_fid_inception(tmp_path / "nope.pth")
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "wrong.pth")
    with pytest.raises(ValueError, match="is not the FID Inception state_dict"):
        load_fid_inception(tmp_path / "wrong.pth")
