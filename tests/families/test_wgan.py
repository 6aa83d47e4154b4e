
import pytest
import torch

from gancore.families import get_family
from gancore.families.base import ConfigError, DataSpec
from gancore.models import DCGANDiscriminator, DCGANGenerator, MLPCritic
from gancore.nn import BatchNormAct2d
from gancore.train import Trainer, build_config
from tests.families.classic_helpers import assert_fused_matches_plain, critic_estimate_on_the_ring


def _build(spec, **config):
    family_cls = get_family("wgan")
    family = family_cls(family_cls.Config(**config))
    return family, family.build(spec)


@pytest.mark.parametrize("spec", [DataSpec("image", (3, 32, 32)), DataSpec("x", (2,))])
def test_the_paper_settings(spec):
    family, nets = _build(spec)
    for net in nets.values():
        assert net.optimizer == "rmsprop" and net.lr == 5e-5
    phases = {p.name: p for p in family.phases()}
    assert phases["D"].every == 1 and phases["G"].every == 5 and phases["D"].after_step is not None
    assert family.config.clip == 0.01
    assert isinstance(nets["D"].module, MLPCritic) == (spec.shape == (2,))
    if spec.shape != (2,):  # the DCGAN networks with batch norm in both, fused
        assert isinstance(nets["G"].module, DCGANGenerator) and isinstance(nets["D"].module, DCGANDiscriminator)
        for net in nets.values():
            assert any(isinstance(m, BatchNormAct2d) for m in net.module.modules())


def test_a_critic_step_clips_every_weight_and_logs_the_estimate():
    trainer = Trainer(build_config("wgan", overrides=[
        "model.resolution=16", "model.g_width=4", "model.d_width=4", "model.latent_dim=8", "model.lr_d=0.1",
        "train.batch_size=4", "train.steps=1", "data.size=8", "log.progress=false"]))
    optimizer = trainer.optimizers["D"]
    assert isinstance(optimizer, torch.optim.RMSprop) and isinstance(trainer.optimizers["G"], torch.optim.RMSprop)
    before = {n: p.detach().clone() for n, p in trainer.nets["D"].named_parameters()}
    assert max(float(p.abs().max()) for p in before.values()) > 0.5  # batch-norm scales start near 1
    trainer.train_step()
    params = dict(trainer.nets["D"].named_parameters())
    assert all(float(p.detach().abs().max()) <= 0.01 for p in params.values())
    assert any(not torch.equal(params[n], before[n]) for n in before)
    assert trainer._running["D/wdist"] and "G/loss" not in trainer._running  # G waits for n_critic steps


def test_fused_networks_equal_the_plain_ones_in_float64():
    torch.manual_seed(0)
    assert_fused_matches_plain(DCGANGenerator(8, 16, 3, 4), (torch.randn(4, 8),), fused_norms=2)
    assert_fused_matches_plain(DCGANDiscriminator(16, 3, 4), (torch.randn(4, 3, 16, 16),), fused_norms=1)


def test_bad_settings_are_named():
    with pytest.raises(ConfigError, match="model.clip"):
        get_family("wgan").Config(clip=0)
    with pytest.raises(ConfigError, match="arch=mlp needs vector data"):
        _build(DataSpec("image", (3, 32, 32)), arch="mlp")
    with pytest.raises(ConfigError, match=r"needs images of shape \(3, 32, 32\)"):
        _build(DataSpec("image", (1, 32, 32)), arch="conv")


def test_the_critic_estimate_falls_as_the_generator_learns_the_ring(tmp_path):
    """Weight clipping 0.01, RMSprop, n_critic 5, with a smaller critic (width 128) and lr 1e-4 (twice the
    paper's) to fit 600 steps: the estimate first rises (the critic learns), then falls well below its peak
    as G approaches the ring; an exact W1 against held-out points confirms that G got closer."""
    window, w1_initial, w1_final = critic_estimate_on_the_ring("wgan", [
        "model.mlp_width=128", "model.latent_dim=2", "model.lr_g=1e-4", "model.lr_d=1e-4",
        "train.batch_size=64", "train.steps=600"], str(tmp_path))
    peak = int(window.argmax())
    print(f"wgan ring: D/wdist 100-step means peak {window[peak]:.2e} at window {peak}, last {window[-1]:.2e}; "
          f"W1 {w1_initial:.3f} -> {w1_final:.3f}")
    assert peak < len(window) // 2, window
    assert window[-1] < 0.5 * window[peak], window
    assert w1_final < 0.6 * w1_initial, (w1_initial, w1_final)


@pytest.mark.parametrize("name", ["cgan", "lapgan", "vae-gan", "wgan", "wgan-gp"])
def test_bench_presets_build(name):
    """The `gancore bench --suite families` presets of the classic families are valid configs whose networks
    build, fused and plain."""
    family_cls = get_family(name)
    assert set(family_cls.bench_cases) == {"full", "quick"}
    for case in family_cls.bench_cases.values():
        for fused in ("true", "false"):
            config = build_config(name, overrides=[*case.overrides, f"model.fused={fused}"])
            family = family_cls(family_cls.make_config(config["model"]))
            r = family.config.resolution
            nets = family.build(DataSpec("image", (3, r, r), num_classes=4))
            assert all(sum(p.numel() for p in n.module.parameters()) for n in nets.values())


def _critic_updates_per_generator_update(phase, steps):
    """Critic updates before each generator update, counted over `steps` train steps (D runs every step)."""
    counts, since = [], 0
    for step in range(steps):
        since += 1
        if phase.due(step):
            counts.append(since)
            since = 0
    return counts


def test_the_reference_codes_critic_schedule_is_an_option_off_by_default():
    family, _ = _build(DataSpec("x", (2,)))
    g_phase = {p.name: p for p in family.phases()}["G"]
    assert _critic_updates_per_generator_update(g_phase, 100) == [5] * 20  # off: n_critic always
    family, _ = _build(DataSpec("x", (2,)), warmup_critic_steps=100)
    g_phase = {p.name: p for p in family.phases()}["G"]
    counts = _critic_updates_per_generator_update(g_phase, 2500 + 475 * 5 + 100 + 499 * 5 + 100 + 10 * 5)
    # generator updates 0-24, 500 and 1000 get 100 critic updates, the others n_critic
    expected = [100] * 25 + [5] * 475 + [100] + [5] * 499 + [100] + [5] * 10
    assert counts == expected, [i for i, c in enumerate(counts) if c != 5]
    assert g_phase.critic_steps_before(len(counts) - 1) == sum(counts)
    # the dry-run plan says so
    assert g_phase.schedule() == ("after 100 critic steps for the first 25 and every 500th update, "
                                  "else every 5 steps")


@pytest.mark.parametrize("first, every", [(2, 4), (0, 3)])
def test_the_trainer_runs_the_scheduled_critic_updates(monkeypatch, first, every):
    """Count the phases a real (tiny) run calls: boost 3 critic updates for the first `first` generator
    updates and every `every`-th, else n_critic 2."""
    family_cls = get_family("wgan")
    calls = []
    for name in ("loss_d", "loss_g"):
        original = getattr(family_cls, name)
        monkeypatch.setattr(family_cls, name, lambda self, ctx, f=original, n=name: calls.append(n) or f(self, ctx))
    expected = [3 if g < first or g % every == 0 else 2 for g in range(7)]
    trainer = Trainer(build_config("wgan", data="ring", overrides=[
        "model.mlp_width=8", "model.mlp_depth=1", "model.latent_dim=2", "model.n_critic=2",
        "model.warmup_critic_steps=3", f"model.warmup_g_iters={first}", f"model.warmup_every={every}",
        "train.batch_size=4", f"train.steps={sum(expected)}", "data.size=16", "log.progress=false",
        "log.tensorboard=false"]))
    trainer.fit()
    runs = "".join("D" if c == "loss_d" else "G" for c in calls).split("G")
    assert [len(r) for r in runs[:-1]] == expected and runs[-1] == "", runs


def test_bad_schedule_settings_are_named():
    with pytest.raises(ConfigError, match="model.warmup_critic_steps"):
        get_family("wgan").Config(warmup_critic_steps=-1)
    with pytest.raises(ConfigError, match="model.warmup_every"):
        get_family("wgan").Config(warmup_every=-5)
