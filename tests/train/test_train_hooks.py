"""Periodic metric evaluation, against a stand-in for gancore.metrics (built in another issue)."""

import json
import sys
import types

import pytest
import torch

from gancore.train import Trainer
from tests.train.trainhelpers import tiny_config


class _Stats:
    instances = 0

    def __init__(self, dim):
        type(self).instances += 1
        self.rows = []

    def update(self, feats):
        self.rows.append(feats)

    @property
    def mu(self):
        return torch.cat(self.rows).mean(0)

    @property
    def sigma(self):
        return torch.cov(torch.cat(self.rows).T)


class _Extractor(torch.nn.Module):
    def forward(self, images):
        assert images.dim() == 4 and images.shape[1] in (1, 3)
        return images.mean(dim=(2, 3))


def _fake_metrics():
    module = types.ModuleType("gancore.metrics")
    module.FeatureStats = _Stats
    module.BuiltinExtractor = _Extractor
    module.frechet_distance = lambda m1, s1, m2, s2: float((m1 - m2).square().sum() + (s1 - s2).abs().sum())
    return module


def test_fid_is_logged_every_k_steps(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "gancore.metrics", _fake_metrics())
    _Stats.instances = 0
    config = tiny_config("dcgan", "metrics.every=2", "metrics.num_samples=20", "log.every=100", steps=4)
    trainer = Trainer(config, str(tmp_path))
    trainer.fit()
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    fids = [(r["step"], r["metrics/fid"]) for r in records if "metrics/fid" in r]
    assert [s for s, _ in fids] == [2, 4] and all(v >= 0 for _, v in fids)
    assert _Stats.instances == 3  # the real statistics once, the generated ones at each evaluation


def test_missing_metrics_package_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "gancore.metrics", None)  # makes the import fail
    trainer = Trainer(tiny_config("dcgan", "metrics.every=1", "metrics.num_samples=8", steps=1))
    with pytest.raises(RuntimeError, match="needs gancore.metrics"):
        trainer.fit()


def test_fid_needs_images(monkeypatch):
    monkeypatch.setitem(sys.modules, "gancore.metrics", _fake_metrics())
    trainer = Trainer(tiny_config("wgan-gp", "metrics.every=1", "metrics.num_samples=8", steps=1))
    with pytest.raises(ValueError, match="needs images"):
        trainer.fit()


def test_custom_hooks_run_on_schedule(tmp_path):
    class Counter:
        every = 3

        def __init__(self):
            self.steps = []

        def __call__(self, trainer):
            self.steps.append(trainer.step)
            return {"custom/value": float(trainer.step)}

    hook = Counter()
    Trainer(tiny_config("dcgan", steps=7), str(tmp_path), hooks=[hook]).fit()
    assert hook.steps == [3, 6]
    assert '"custom/value": 6.0' in (tmp_path / "log.jsonl").read_text()
