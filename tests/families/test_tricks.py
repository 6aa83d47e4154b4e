"""Each training trick of gancore.families.tricks does what docs/training.md says it does."""

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gancore.families import get_family
from gancore.families.base import ConfigError, DataSpec, PhaseContext
from gancore.families.tricks import (
    FailureMonitor,
    TargetLoss,
    TrainingFailureWarning,
    TrainingTricks,
    add_instance_noise,
    discriminate,
    draw_latents,
    instance_noise_std,
    label_targets,
    phase_latents,
)
from gancore.models import DCGANGenerator
from gancore.models.gan import GANGenerator
from gancore.models.noise import AlwaysDropout, GaussianNoise
from gancore.nn import BatchNormAct2d
from gancore.train import Trainer, build_config

N = 20000


def _rand(seed=0, n=N):
    g = torch.Generator().manual_seed(seed)
    return lambda *shape: torch.rand(n, *shape, generator=g)


def _ctx(n=N, seed=0, nets=None, batch=None, step=0):
    g = torch.Generator().manual_seed(seed)
    draw = {"randn": torch.randn, "rand": torch.rand}
    return PhaseContext(nets or {}, batch or {}, step, n, lambda kind, shape: draw[kind](n, *shape, generator=g))


# 1 ---------------------------------------------------------------------------------------------------------------

def test_unit_range_maps_vector_data_to_minus_one_one_and_g_ends_in_tanh():
    config = build_config("gan", overrides=["model.width=8", "model.depth=1", "model.unit_range=true"])
    trainer = Trainer(config)
    g, d = trainer.nets["G"], trainer.nets["D"]
    points = torch.stack([trainer.dataset[i]["x"] for i in range(4096)])
    unit = d.from_data(points)
    assert torch.allclose(unit.min(0).values, -torch.ones(2)) and torch.allclose(unit.max(0).values, torch.ones(2))
    assert isinstance(g.mlp.out, nn.Tanh)
    z = torch.randn(512, config["model"]["latent_dim"]) * 10  # saturate the tanh: G's samples stay in the range
    with torch.no_grad():
        samples = g(z)
    assert (samples.abs() <= points.abs().max(0).values + 1e-5).all()
    assert torch.allclose(d.from_data(g.to_data(torch.tensor([[-1.0, 1.0]]))), torch.tensor([[-1.0, 1.0]]))
    off = GANGenerator(4, (2,), 8, 1, unit_range=False)
    assert isinstance(off.mlp.out, nn.Identity) and torch.equal(off.to_data.half_range, torch.ones(2))
    assert isinstance(DCGANGenerator(resolution=8, width=4).net[-1], nn.Tanh)
    assert isinstance(DCGANGenerator(resolution=8, width=4, tanh=False).net[-1], nn.Identity)


# 2 ---------------------------------------------------------------------------------------------------------------

def test_nonsaturating_g_loss_is_bce_with_flipped_labels_and_minimax_saturates():
    logits = torch.tensor([-8.0, -2.0, 0.0, 3.0], requires_grad=True)
    nonsat, minimax = TargetLoss("bce", g_loss="nonsaturating"), TargetLoss("bce", g_loss="minimax")
    flipped = F.binary_cross_entropy_with_logits(logits, torch.ones(4))  # "real" labels on fakes
    assert torch.allclose(nonsat.g(logits), flipped)
    assert torch.allclose(minimax.g(logits), torch.log1p(-torch.sigmoid(logits)).mean())
    # Where D rejects a fake confidently (logit -8), log(1 - D) has almost no gradient, -log D a strong one.
    (grad_minimax,) = torch.autograd.grad(minimax.g(logits), logits)
    (grad_nonsat,) = torch.autograd.grad(nonsat.g(logits), logits)
    assert abs(float(grad_minimax[0])) < 1e-3 and abs(float(grad_nonsat[0])) > 0.24


# 3 ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dist, low, high, var", [("gaussian", None, None, 1.0), ("uniform", -1.0, 1.0, 1 / 3)])
def test_latent_distribution(dist, low, high, var):
    tricks = TrainingTricks(latent_dist=dist)
    for z in (draw_latents(tricks, N, 4, torch.Generator().manual_seed(0), torch.device("cpu")),
              phase_latents(tricks, _ctx(), 4)):
        assert z.shape == (N, 4)
        assert abs(float(z.mean())) < 0.02 and abs(float(z.var()) - var) < 0.03
        if low is not None:
            assert float(z.min()) >= low and float(z.max()) < high
        else:
            assert float(z.min()) < -3.5  # Gaussian tails


# 4 ---------------------------------------------------------------------------------------------------------------

def test_separate_batches_give_batch_norm_pure_batches():
    d = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3), nn.Linear(3, 1), nn.Flatten(0))
    seen = []
    d[1].register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[0]))
    real, fake = torch.randn(8, 2) + 5, torch.randn(8, 2) - 5
    a_real, a_fake = discriminate(d, real, fake, separate=True)
    b_real, b_fake = discriminate(d, real, fake, separate=False)
    assert seen == [8, 8, 16]
    assert a_real.shape == a_fake.shape == b_real.shape == b_fake.shape == (8,)
    # separate: each batch normalised by its own statistics, so the 10-unit shift between them is gone
    assert torch.allclose(a_real, d(real)) and not torch.allclose(a_real, b_real, atol=1e-3)


# 5, 6, 7 ---------------------------------------------------------------------------------------------------------

def test_plain_and_one_sided_smoothed_labels():
    assert label_targets(TrainingTricks(), _rand()) == (1.0, 0.0)
    real, fake = label_targets(TrainingTricks(label_smoothing=0.1), _rand())
    assert real == pytest.approx(0.9) and fake == 0.0  # one-sided: fakes keep 0


def test_random_smoothing_draws_from_the_ranges():
    real, fake = label_targets(TrainingTricks(random_smoothing=True), _rand())
    assert real.shape == fake.shape == (N,)
    assert 0.7 <= float(real.min()) < 0.71 and 1.19 < float(real.max()) <= 1.2
    assert 0.0 <= float(fake.min()) < 0.01 and 0.29 < float(fake.max()) <= 0.3
    assert abs(float(real.mean()) - 0.95) < 0.005 and abs(float(fake.mean()) - 0.15) < 0.005
    assert abs(float(real.std()) - 0.5 / 12 ** 0.5) < 0.005  # uniform, not a few fixed values


def test_label_flips_swap_labels_at_the_rate():
    real, fake = label_targets(TrainingTricks(label_flip=0.2, label_smoothing=0.1), _rand())
    flipped_real, flipped_fake = (real == 0.0).float().mean(), (fake > 0.5).float().mean()
    assert abs(float(flipped_real) - 0.2) < 0.01 and abs(float(flipped_fake) - 0.2) < 0.01
    assert torch.unique(real).tolist() == pytest.approx([0.0, 0.9]) == torch.unique(fake).tolist()
    real, fake = label_targets(TrainingTricks(label_flip=0.2, random_smoothing=True), _rand(1))
    assert abs(float((real < 0.5).float().mean()) - 0.2) < 0.01 and float(real[real < 0.5].max()) <= 0.3


def test_losses_take_the_targets():
    scores = torch.randn(64)
    targets = torch.rand(64)
    bce = TargetLoss("bce")
    assert torch.allclose(bce.term(scores, targets), F.binary_cross_entropy_with_logits(scores, targets))
    assert torch.allclose(bce.term(scores, 0.9), F.binary_cross_entropy_with_logits(scores, torch.full((64,), 0.9)))
    ls = TargetLoss("least_squares", (-1.0, 1.0, 0.0))
    assert torch.allclose(ls.term(scores, targets), 0.5 * (scores - (2 * targets - 1)).square().mean())


def test_label_tricks_need_a_loss_with_targets():
    with pytest.raises(ConfigError, match="model.label_flip: works on label targets.*loss=hinge"):
        get_family("dcgan").Config(loss="hinge", label_flip=0.1)
    with pytest.raises(ConfigError, match="model.g_loss=minimax"):
        get_family("dcgan").Config(loss="wasserstein", g_loss="minimax")
    with pytest.raises(ConfigError, match="set one of them"):
        TrainingTricks(label_smoothing=0.1, random_smoothing=True)
    for key, value in (("label_flip", 0.7), ("g_dropout", 1.0), ("instance_noise", -1.0), ("d_steps", 0),
                       ("latent_dist", "cauchy"), ("optimizer_d", "lbfgs"), ("failure_patience", 3)):
        with pytest.raises(ConfigError, match=f"model.{key}"):
            TrainingTricks(**{key: value})


# 8 ---------------------------------------------------------------------------------------------------------------

def test_instance_noise_anneals_linearly_to_zero():
    tricks = TrainingTricks(instance_noise=0.4, instance_noise_steps=100)
    assert [instance_noise_std(tricks, s) for s in (0, 25, 50, 100, 500)] == pytest.approx([0.4, 0.3, 0.2, 0, 0])
    assert instance_noise_std(TrainingTricks(instance_noise=0.3), 10_000) == 0.3  # no schedule: constant
    x = torch.zeros(N, 3)
    noisy = add_instance_noise(x, instance_noise_std(tricks, 50), _ctx().randn)
    assert abs(float(noisy.std()) - 0.2) < 0.005 and add_instance_noise(x, 0.0, None) is x


def test_d_sees_noisy_inputs_in_both_phases():
    family_cls = get_family("gan")
    family = family_cls(family_cls.Config(width=8, depth=1, latent_dim=2, instance_noise=0.5,
                                          instance_noise_steps=10))
    nets = {k: v.module for k, v in family.build(DataSpec("x", (2,))).items()}
    inputs = []
    nets["D"].register_forward_pre_hook(lambda m, args: inputs.append(args[0].detach().clone()))
    real = torch.zeros(N, 2)
    family.loss_d(_ctx(nets=nets, batch={"x": real}, step=5))
    assert abs(float(inputs[0].std()) - 0.25) < 0.01  # the real batch, at half the schedule
    family.loss_g(_ctx(nets=nets, step=5))
    with torch.no_grad():
        clean = nets["G"](_ctx().randn(2))
    assert abs(float((inputs[-1] - clean).std()) - 0.25) < 0.01
    inputs.clear()
    family.loss_d(_ctx(nets=nets, batch={"x": real}, step=10))
    assert float(inputs[0].abs().max()) == 0.0  # annealed away


# 9, 10 -----------------------------------------------------------------------------------------------------------

def test_noise_in_every_g_layer_while_training_keeps_keys_and_fusion():
    plain = DCGANGenerator(16, resolution=16, width=4, fused=True)
    noisy = DCGANGenerator(16, resolution=16, width=4, fused=True, noise_std=0.1)
    assert list(plain.state_dict()) == list(noisy.state_dict())
    noises = [m for m in noisy.modules() if isinstance(m, GaussianNoise)]
    assert len(noises) == 2 and all(isinstance(m, BatchNormAct2d) for m in (noisy.net[1], noisy.net[4]))
    noisy.load_state_dict(plain.state_dict())
    z = torch.randn(4, 16)
    noisy.eval(), plain.eval()
    assert torch.equal(noisy(z), noisy(z)) and torch.allclose(noisy(z), plain(z))  # eval: no noise
    noisy.train()
    assert not torch.equal(noisy(z), noisy(z))
    layer = GaussianNoise(0.3).train()
    assert abs(float((layer(torch.zeros(N)) - 0).std()) - 0.3) < 0.01


def test_dropout_in_g_at_train_and_test_time():
    g = DCGANGenerator(16, resolution=8, width=4, dropout=0.5).eval()
    z = torch.randn(4, 16)
    assert not torch.equal(g(z), g(z))  # still random in eval mode
    drop = AlwaysDropout(0.3).eval()
    out = drop(torch.ones(N))
    kept = out != 0
    assert abs(float(kept.float().mean()) - 0.7) < 0.01
    assert torch.allclose(out[kept], torch.full((int(kept.sum()),), 1 / 0.7))  # rescaled as in training


# 11, 12, 13 ------------------------------------------------------------------------------------------------------

def test_sgd_for_d_ttur_and_d_steps_in_a_run():
    config = build_config("gan", overrides=[
        "model.width=8", "model.depth=1", "model.optimizer_d=sgd", "model.momentum_d=0.9", "model.lr_d=4e-4",
        "model.lr_g=1e-4", "model.d_steps=3", "train.batch_size=16", "train.steps=6", "log.progress=false"])
    trainer = Trainer(config)
    d_opt, g_opt = trainer.optimizers["D"], trainer.optimizers["G"]
    assert isinstance(d_opt, torch.optim.SGD) and isinstance(g_opt, torch.optim.Adam)
    assert d_opt.param_groups[0]["momentum"] == 0.9
    assert d_opt.param_groups[0]["lr"] == 4e-4 and g_opt.param_groups[0]["lr"] == 1e-4  # TTUR
    g_updates = []
    trainer.nets["G"].register_full_backward_hook(lambda *a: g_updates.append(trainer.step))
    trainer.fit()
    assert g_updates == [2, 5]  # G after every 3 D steps
    assert int(g_opt.state[next(iter(trainer.nets["G"].parameters()))]["step"]) == 2


# 15 --------------------------------------------------------------------------------------------------------------

def _feed(monitor, network, series):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step, value in enumerate(series):
            monitor.observe(network, step, torch.tensor(value))
    return [w for w in caught if issubclass(w.category, TrainingFailureWarning)]


def test_failure_warning_when_d_loss_sits_at_zero():
    g = torch.Generator().manual_seed(0)
    healthy = (1.2 + 0.1 * torch.randn(400, generator=g)).tolist()
    assert _feed(FailureMonitor(100), "D", healthy) == []
    collapsed = healthy[:150] + (1e-5 * torch.rand(200, generator=g)).tolist()
    caught = _feed(FailureMonitor(100), "D", collapsed)
    assert len(caught) == 1 and "below 0.001 for 100 steps" in str(caught[0].message)
    brief = healthy[:150] + [1e-5] * 60 + healthy[:150]  # fewer steps at 0 than the patience
    assert _feed(FailureMonitor(100), "D", brief) == []


def test_failure_warning_when_g_loss_falls_steadily():
    g = torch.Generator().manual_seed(0)
    flat = (2.0 + 0.3 * torch.randn(600, generator=g)).tolist()
    assert _feed(FailureMonitor(200), "G", flat) == []
    falling = flat[:100] + (torch.linspace(2.0, 0.5, 300) + 0.3 * torch.randn(300, generator=g)).tolist()
    caught = _feed(FailureMonitor(200), "G", falling)
    assert len(caught) == 1 and "fallen steadily for 200 steps" in str(caught[0].message)


def test_failure_monitor_is_wired_into_training():
    config = build_config("gan", overrides=["model.width=8", "model.depth=1", "model.failure_patience=8",
                                            "model.failure_d_loss=100", "train.batch_size=16", "train.steps=12",
                                            "log.progress=false"])
    trainer = Trainer(config)
    with pytest.warns(TrainingFailureWarning, match="D's loss has stayed below 100"):
        trainer.fit()  # every D loss is "below 100": the warning must come from the run itself
