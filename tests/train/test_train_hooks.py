"""Periodic metric evaluation through the real gancore.metrics, checked against a recomputation."""

import json

import pytest
import torch

from gancore import metrics
from gancore.families.base import ConfigError
from gancore.metrics.inception import InceptionV3FID
from gancore.train import Trainer
from tests.train.trainhelpers import tiny_config


def _records(folder):
    return [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]


def _recomputed(trainer, extractor, n):
    """The Fréchet distance the hook should log, computed here from the same images: the first n training
    images, and the generator's samples at the hook's latents (seed + 3)."""
    real = torch.stack([trainer.dataset[i][trainer.spec.key] for i in range(n)])
    latents = trainer.family.make_latents(n, torch.Generator().manual_seed(trainer.train_config.seed + 3),
                                          trainer.device)
    with torch.no_grad():
        fake = trainer.generate(latents).float()
    real_stats = metrics.compute_stats(extractor, real, batch_size=n)
    fake_stats = metrics.compute_stats(extractor, fake, batch_size=n)
    return float(metrics.frechet_distance(real_stats.mu, real_stats.sigma, fake_stats.mu, fake_stats.sigma))


def test_builtin_frechet_distance_is_logged_under_its_own_name_every_k_steps(tmp_path):
    config = tiny_config("dcgan", "model.resolution=16", "metrics.every=2", "metrics.num_samples=20",
                         "log.every=100", steps=4)
    trainer = Trainer(config, str(tmp_path))
    trainer.fit()
    records = _records(tmp_path)
    logged = [(r["step"], r["metrics/fd_builtin"]) for r in records if "metrics/fd_builtin" in r]
    assert [s for s, _ in logged] == [2, 4] and not any("metrics/fid" in r for r in records)
    expected = _recomputed(trainer, metrics.BuiltinExtractor().eval(), 20)
    assert logged[-1][1] == pytest.approx(expected, rel=1e-4)  # the final evaluation, with the final weights
    assert logged[0][1] != logged[-1][1]


def test_fid_kind_uses_the_inception_weights_file_and_logs_metrics_fid(tmp_path):
    torch.manual_seed(0)
    weights = tmp_path / "pt_inception.pth"
    torch.save(InceptionV3FID().state_dict(), weights)  # random weights under the real keys
    config = tiny_config("dcgan", "metrics.every=1", "metrics.num_samples=4", "metrics.kind=fid",
                         f"metrics.inception_weights={weights}", "log.every=100", steps=1)
    trainer = Trainer(config, str(tmp_path / "run"))
    trainer.fit()
    logged = [r["metrics/fid"] for r in _records(tmp_path / "run") if "metrics/fid" in r]
    inception = metrics.load_fid_inception(weights)
    assert len(logged) == 1 and logged[0] == pytest.approx(_recomputed(trainer, inception, 4), rel=1e-3)


def test_fid_without_weights_fails_at_start_up_naming_the_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("GANCORE_FID_WEIGHTS", str(tmp_path / "absent.pth"))
    with pytest.raises(ConfigError, match="metrics.kind=fid: .*absent.pth.*metrics.inception_weights"):
        Trainer(tiny_config("dcgan", "metrics.every=1", "metrics.kind=fid", steps=1))


def test_metrics_on_data_they_cannot_measure_fail_at_start_up():
    with pytest.raises(ConfigError, match=r"metrics.kind=fd-builtin needs images .*shape \(2,\)"):
        Trainer(tiny_config("wgan-gp", "metrics.every=1", "metrics.num_samples=8", steps=1))
    with pytest.raises(ConfigError, match="at least 16x16; the data's are 8x8"):
        Trainer(tiny_config("dcgan", "metrics.every=1", "metrics.num_samples=8", steps=1))


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
