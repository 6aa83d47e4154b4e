"""CycleGAN: the reference losses and image pool, pools in checkpoints, and that it learns to translate."""

import torch
import torch.nn.functional as F
from torch import nn

from gancore.data import ColorDomains
from gancore.families import get_family
from gancore.families.base import PhaseContext
from gancore.families.cyclegan import ImagePool
from gancore.families.pix2pix import gan_loss
from gancore.models.pix2pix import ResnetGenerator
from gancore.train import Trainer, build_config

TINY = ["model.ngf=4", "model.ndf=4", "model.netG=resnet_1blocks", "data.resolution=24", "data.size=16",
        "log.progress=false", "log.tensorboard=false", "log.sample_n=2"]


def test_defaults_are_the_papers():
    c = get_family("cyclegan").Config()
    assert (c.netG, c.norm, c.gan_mode, c.lambda_A, c.lambda_B, c.lambda_identity, c.pool_size) == \
        ("resnet_9blocks", "instance", "lsgan", 10.0, 10.0, 0.5, 50)
    assert (c.lr, c.beta1, c.n_epochs, c.n_epochs_decay, c.fused, c.dropout) == (2e-4, 0.5, 100, 100, True, False)
    trainer = Trainer(build_config("cyclegan", overrides=TINY))
    assert [p.name for p in trainer.phases] == ["G", "D"] and trainer.train_config.batch_size == 1
    assert isinstance(trainer.nets["G"].G_A, ResnetGenerator) and isinstance(trainer.nets["G"].G_B, ResnetGenerator)
    keys = trainer.nets["G"].state_dict()
    assert "G_A.model.1.weight" in keys and "G_B.model.1.weight" in keys  # the reference keys, per member


def test_image_pool_fills_then_swaps_half_the_time():
    torch.manual_seed(0)
    pool = ImagePool(4)
    first = torch.arange(4.0).view(4, 1, 1, 1)
    assert torch.equal(pool.query(first), first) and len(pool.images) == 4
    new = -1.0 - torch.arange(200.0).view(200, 1, 1, 1)
    out = pool.query(new)
    swapped = (out != new).sum().item()
    assert 70 < swapped < 130  # about half come from the pool...
    assert len(pool.images) == 4 and all(float(im) < 0 for im in pool.images)  # ...which the new ones refill
    stored = set(first.flatten().tolist()) | set(new.flatten().tolist())
    assert set(out.flatten().tolist()) <= stored
    assert torch.equal(ImagePool(0).query(new), new)


def _losses_by_hand(nets, a, b, lam=10.0, idt=0.5):
    """The reference CycleGANModel's backward_G and backward_D_basic, call by call."""
    g_a, g_b, d_a, d_b = nets["G"].G_A, nets["G"].G_B, nets["D"].D_A, nets["D"].D_B
    fake_b, fake_a = g_a(a), g_b(b)
    rec_a, rec_b = g_b(fake_b), g_a(fake_a)

    def mse(d, x, target):
        logits = d(x)
        return F.mse_loss(logits, torch.full_like(logits, target))

    loss_g = (mse(d_a, fake_b, 1.0) + mse(d_b, fake_a, 1.0) + lam * F.l1_loss(rec_a, a) + lam * F.l1_loss(rec_b, b)
              + lam * idt * F.l1_loss(g_a(b), b) + lam * idt * F.l1_loss(g_b(a), a))
    loss_d = 0.5 * (mse(d_a, b, 1.0) + mse(d_a, fake_b.detach(), 0.0)) \
        + 0.5 * (mse(d_b, a, 1.0) + mse(d_b, fake_a.detach(), 0.0))
    return loss_g, loss_d


def test_losses_are_the_references_with_batched_calls_and_fused_head():
    family_cls = get_family("cyclegan")
    family = family_cls(family_cls.Config(ngf=4, ndf=4, netG="resnet_1blocks", pool_size=0))
    family.dataset = ColorDomains(size=4, resolution=24)
    torch.manual_seed(0)
    nets = {k: v.module for k, v in family.build(None).items()}
    batch = {"A": torch.rand(2, 3, 24, 24) * 2 - 1, "B": torch.rand(2, 3, 24, 24) * 2 - 1}
    ctx = PhaseContext(nets, batch, 0, 2, lambda kind, shape: None)
    loss_g, loss_d = family.loss_g(ctx)["loss"], family.loss_d(ctx)["loss"]
    expected_g, expected_d = _losses_by_hand(nets, batch["A"], batch["B"])  # one call each, logits + MSE
    assert torch.allclose(loss_g, expected_g, rtol=1e-4), (loss_g, expected_g)
    assert torch.allclose(loss_d, expected_d, rtol=1e-4), (loss_d, expected_d)
    assert gan_loss(nets["D"].D_A, batch["B"], True, "lsgan").dtype == torch.float32


def test_pools_are_kept_in_checkpoints(tmp_path):
    config = build_config("cyclegan", overrides=TINY + ["train.steps=2", "model.pool_size=3"])
    trainer = Trainer(config, str(tmp_path))
    trainer.fit()
    assert len(trainer.family.pools["A"].images) == 2
    resumed = Trainer(config, str(tmp_path), resume=True)
    for domain in "AB":
        saved, loaded = trainer.family.pools[domain].images, resumed.family.pools[domain].images
        assert len(loaded) == 2 and all(torch.equal(x, y) for x, y in zip(saved, loaded))


def _domain_classifier(resolution):
    """A small CNN told warm-on-dark (A, label 0) from cool-on-light (B, label 1) shapes."""
    data = ColorDomains(size=128, resolution=resolution, seed=7)
    x = torch.cat([torch.stack([data[i]["A"] for i in range(128)]),
                   torch.stack([data.sample(i, seed=i)["B"] for i in range(128)])])
    y = torch.cat([torch.zeros(128), torch.ones(128)])
    torch.manual_seed(0)
    clf = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 1))
    opt = torch.optim.Adam(clf.parameters(), lr=1e-2)
    for _ in range(60):
        loss = F.binary_cross_entropy_with_logits(clf(x)[:, 0], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return clf


def test_cyclegan_learns_to_translate_the_builtin_domains():
    """After 40 steps (batch 2, 24x24, ngf 8, 2 residual blocks): the cycle error on held-out images falls,
    and a classifier of the two domains labels the translations as the target domain well above chance."""
    clf = _domain_classifier(24)
    held_out = ColorDomains(size=32, resolution=24, seed=123)
    a = torch.stack([held_out[i]["A"] for i in range(32)])
    b = torch.stack([held_out.sample(i, seed=1000 + i)["B"] for i in range(32)])
    with torch.no_grad():
        assert float((clf(a)[:, 0] < 0).float().mean()) > 0.95 and float((clf(b)[:, 0] > 0).float().mean()) > 0.95
    trainer = Trainer(build_config("cyclegan", overrides=[
        "model.ngf=8", "model.ndf=8", "model.netG=resnet_2blocks", "data.resolution=24", "data.size=2000",
        "train.steps=40", "train.batch_size=2", "log.progress=false", "log.tensorboard=false", "log.sample_n=2"]))

    def evaluate():
        g = trainer.nets["G"]
        with torch.no_grad():
            fake_b, fake_a = g(a, "G_A"), g(b, "G_B")
            cycle = float((g(fake_b, "G_B") - a).abs().mean() + (g(fake_a, "G_A") - b).abs().mean()) / 2
            as_target = float((clf(fake_b)[:, 0] > 0).float().mean() + (clf(fake_a)[:, 0] < 0).float().mean()) / 2
        return cycle, as_target

    cycle_before, target_before = evaluate()
    trainer.fit()
    cycle_after, target_after = evaluate()
    print(f"cycle L1 {cycle_before:.3f} -> {cycle_after:.3f}; labelled as the target domain "
          f"{target_before:.2f} -> {target_after:.2f}")
    assert cycle_after < 0.6 * cycle_before, (cycle_before, cycle_after)
    assert target_after > 0.8, (target_before, target_after)
