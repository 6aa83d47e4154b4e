"""FeatureStats: streaming, merging, distributed combination and .npz files."""

import warnings

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import gancore.ops
from gancore.metrics import FeatureStats
from gancore.metrics.stats import batch_moments
from gancore.ops import record_backends


def two_pass(features):
    x = np.asarray(features, dtype=np.float64)
    return x.mean(0), np.cov(x, rowvar=False)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_streaming_equals_two_pass_on_uneven_batches(rng, dtype):
    features = torch.from_numpy(rng.standard_normal((301, 19)) * 3 + 1).to(dtype)
    stats = FeatureStats(19)
    for batch in torch.split(features, [1, 100, 7, 0, 193]):
        stats.update(batch)
    mu, sigma = two_pass(features.double())
    assert stats.count == 301
    np.testing.assert_allclose(stats.mu.numpy(), mu, rtol=0, atol=1e-12)
    np.testing.assert_allclose(stats.sigma.numpy(), sigma, rtol=0, atol=1e-12)


def test_large_offset_loses_no_precision(rng):
    # A raw sum of squares would cancel catastrophically at this offset (1e8 squared against 1).
    features = rng.standard_normal((1000, 5)) + 1e4
    stats = FeatureStats(5)
    for batch in np.array_split(features, 10):
        stats.update(batch)
    mu, sigma = two_pass(features)
    np.testing.assert_allclose(stats.sigma.numpy(), sigma, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(stats.mu.numpy(), mu, rtol=1e-14)


def test_merge_equals_one_stream(rng):
    features = rng.standard_normal((90, 6))
    whole = FeatureStats(6).update(features)
    parts = [FeatureStats(6).update(chunk) for chunk in (features[:10], features[10:11], features[11:])]
    merged = FeatureStats(6)
    for part in parts:
        merged.merge(part)
    merged.merge(FeatureStats(6))  # an empty one changes nothing
    assert merged.count == 90
    np.testing.assert_allclose(merged.mu.numpy(), whole.mu.numpy(), atol=1e-14)
    np.testing.assert_allclose(merged.sigma.numpy(), whole.sigma.numpy(), atol=1e-14)


def test_batch_moments_equal_per_set_statistics(rng):
    sets = torch.from_numpy(rng.standard_normal((4, 30, 7)))
    mean, cov = batch_moments(sets)
    for k in range(4):
        mu, sigma = two_pass(sets[k])
        np.testing.assert_allclose(mean[k].numpy(), mu, atol=1e-14)
        np.testing.assert_allclose(cov[k].numpy(), sigma, atol=1e-13)


def test_save_and_load_round_trip(rng, tmp_path):
    stats = FeatureStats(4, extractor="builtin-v1").update(rng.standard_normal((20, 4)))
    path = tmp_path / "stats.npz"
    stats.save(path)
    loaded = FeatureStats.load(path)
    assert (loaded.count, loaded.extractor) == (20, "builtin-v1")
    np.testing.assert_array_equal(loaded.mu.numpy(), stats.mu.numpy())
    np.testing.assert_allclose(loaded.sigma.numpy(), stats.sigma.numpy(), rtol=1e-15)
    loaded.update(rng.standard_normal((3, 4)))  # a count was saved, so it can go on streaming
    assert loaded.count == 23
    with np.load(path) as data:  # what pytorch-fid reads
        np.testing.assert_array_equal(data["mu"], stats.mu.numpy())
        assert data["sigma"].shape == (4, 4)


def test_reads_pytorch_fid_files(rng, tmp_path):
    mu, sigma = two_pass(rng.standard_normal((10, 3)))
    path = tmp_path / "ref.npz"
    np.savez(path, mu=mu, sigma=sigma)
    stats = FeatureStats.load(path)
    assert stats.count is None
    np.testing.assert_array_equal(stats.sigma.numpy(), sigma)
    with pytest.raises(ValueError, match="without a sample count cannot be merged"):
        FeatureStats(3).update(rng.standard_normal((4, 3))).merge(stats)
    np.savez(tmp_path / "bad.npz", mean=mu)
    with pytest.raises(ValueError, match="need the keys 'mu' and 'sigma'; missing"):
        FeatureStats.load(tmp_path / "bad.npz")
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(ValueError, match="not a readable .npz"):
        FeatureStats.load(tmp_path / "junk.npz")


@pytest.mark.parametrize("forced, expected", [(None, "cpu"), ("cpu", "cpu"), ("ref", "ref")])
def test_cpu_runs_the_torch_path_without_a_fallback_warning(monkeypatch, forced, expected):
    if forced is None:
        monkeypatch.delenv("GANCORE_IMPL", raising=False)
    else:
        monkeypatch.setenv("GANCORE_IMPL", forced)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with record_backends() as ran:
            FeatureStats(3).update(np.ones((4, 3)))
    assert ran == [("fid_scatter", expected)]
    report = gancore.ops.backends()  # registered by gancore.ops itself, like every other op
    assert report["fid_scatter"]["cpu"]["impl"] == "cpu"
    assert report["fid_newton_schulz"]["cpu"]["impl"] == "cpu"


def test_bad_batches_are_named(rng):
    stats = FeatureStats(3)
    with pytest.raises(ValueError, match=r"features must have shape \(N, 3\), got \(4, 2\)"):
        stats.update(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="features has 1 NaN"):
        stats.update(np.array([[0.0, np.nan, 1.0]]))
    with pytest.raises(TypeError, match="features must be floating point"):
        stats.update(np.zeros((2, 3), dtype=np.int64))
    with pytest.raises(ValueError, match="at least 2 samples, got 1"):
        _ = stats.update(np.zeros((1, 3))).sigma
    with pytest.raises(ValueError, match="dim must be a positive int"):
        FeatureStats(0)


def _all_reduce_worker(rank, world, init_file, chunks, out):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        stats = FeatureStats(chunks[0].shape[1])
        if len(chunks[rank]):  # rank 2 has no samples at all
            stats.update(chunks[rank])
        stats.all_reduce()
        torch.save({"count": stats.count, "mu": stats.mu, "sigma": stats.sigma}, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def test_all_reduce_combines_ranks_exactly(rng, tmp_path):
    features = rng.standard_normal((50, 5)) * 2 + 1e3
    chunks = [features[:7], features[7:], features[:0]]
    out = str(tmp_path / "result")
    mp.spawn(_all_reduce_worker, args=(3, str(tmp_path / "init"), chunks, out), nprocs=3)
    mu, sigma = two_pass(features)
    results = [torch.load(f"{out}.{rank}") for rank in range(3)]
    for result in results:
        assert result["count"] == 50
        np.testing.assert_allclose(result["mu"].numpy(), mu, rtol=1e-15)
        np.testing.assert_allclose(result["sigma"].numpy(), sigma, rtol=1e-12, atol=1e-12)
        assert torch.equal(result["sigma"], results[0]["sigma"])  # every rank holds the same numbers


@pytest.mark.gpu
def test_cuda_statistics_match_cpu(rng):
    features = torch.from_numpy(rng.standard_normal((500, 70))).float()
    cpu = FeatureStats(70).update(features)
    gpu = FeatureStats(70)
    with record_backends() as ran:
        for batch in features.cuda().split(128):
            gpu.update(batch)
    assert set(ran) == {("fid_scatter", "triton")}
    assert torch.allclose(gpu.sigma.cpu(), cpu.sigma, atol=1e-10)
