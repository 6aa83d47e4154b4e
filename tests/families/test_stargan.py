"""StarGAN: the paper's settings, the reference's losses call by call, the mask vector, and that it learns:
a classifier trained here on the built-in attribute data recognises the requested attributes in its
translations, and the reconstruction error falls. Plus joint training and `gancore translate --attrs`."""

import os
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from gancore.cli import main
from gancore.data import AttributeShapes, build_dataset
from gancore.data.attributes import LabelSet
from gancore.families import get_family
from gancore.families.base import ConfigError, DataSpec, PhaseContext
from gancore.families.stargan import LabelLayout, shuffle_within
from gancore.models.stargan import StarGANDiscriminator, StarGANGenerator
from gancore.train import Trainer, build_config

TINY = ["model.resolution=16", "model.g_conv_dim=8", "model.d_conv_dim=8", "model.g_repeat_num=1",
        "model.d_repeat_num=3", "data.size=64", "log.progress=false", "log.tensorboard=false", "log.sample_n=2"]


def _family(dataset, **config):
    family_cls = get_family("stargan")
    family = family_cls(family_cls.Config(**{"resolution": 16, "g_conv_dim": 8, "d_conv_dim": 8, "g_repeat_num": 1,
                                             "d_repeat_num": 3, **config}))
    family.dataset = dataset
    nets = family.build(DataSpec("image", (3, 16, 16)))
    family.spec = DataSpec("image", (3, 16, 16))
    return family, nets


def test_defaults_are_the_papers():
    c = get_family("stargan").Config()
    assert (c.lambda_cls, c.lambda_rec, c.lambda_gp, c.n_critic) == (1.0, 10.0, 10.0, 5)
    assert (c.g_lr, c.d_lr, c.beta1, c.beta2, c.n_epochs, c.n_epochs_decay) == (1e-4, 1e-4, 0.5, 0.999, 10, 10)
    assert (c.resolution, c.g_conv_dim, c.d_conv_dim, c.g_repeat_num, c.d_repeat_num) == (128, 64, 64, 6, 6)
    trainer = Trainer(build_config("stargan", overrides=TINY))
    assert trainer.train_config.batch_size == 16
    assert [(p.name, p.every) for p in trainer.phases] == [("D", 1), ("G", 5)]
    assert trainer.specs["D"].double_backward and not trainer.specs["G"].ema
    assert isinstance(trainer.nets["G"], StarGANGenerator) and isinstance(trainer.nets["D"], StarGANDiscriminator)
    assert trainer.nets["G"].c_dim == 3 and trainer.nets["D"].conv2.out_channels == 3  # Red, Big, Dot
    # the learning rate: constant for n_epochs, then linear towards 0 over n_epochs_decay
    family = trainer.family
    assert [family.lr_factor(e) for e in (0, 9)] == [1.0, 1.0]
    assert family.lr_factor(10) == pytest.approx(10 / 11) and family.lr_factor(19) == pytest.approx(1 / 11)
    with pytest.raises(ConfigError, match="model.resolution: must be a multiple of 4 and of 2\\*\\*d_repeat_num"):
        get_family("stargan").Config(resolution=96)


def test_losses_are_the_references_call_by_call():
    """yunjey/stargan solver.py's D and G losses, with the same draws (targets and alpha)."""
    torch.manual_seed(0)
    family, specs = _family(AttributeShapes(size=8, resolution=16))
    nets = {k: v.module for k, v in specs.items()}
    g, d = nets["G"], nets["D"]
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    c = torch.tensor([[1.0, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
    u, alpha = torch.tensor([0.9, 0.1, 0.5, 0.3]), torch.tensor([0.2, 0.7, 0.4, 0.9])
    draws = iter([u, alpha, u])
    ctx = PhaseContext(nets, {"image": x, "attrs": c}, 0, 4, lambda kind, shape: next(draws))
    out_d, out_g = family.loss_d(ctx), family.loss_g(ctx)
    c_trg = c[torch.argsort(u)]  # the batch's labels shuffled: argsort of uniforms is a random permutation

    def cls_loss(logits, target):  # BCE summed over the attributes, averaged over the batch
        return F.binary_cross_entropy_with_logits(logits, target, reduction="sum") / logits.shape[0]

    src_real, cls_real = d(x)
    fake = g(x, c_trg)
    src_fake, _ = d(fake.detach())
    x_hat = (alpha.view(4, 1, 1, 1) * x + (1 - alpha.view(4, 1, 1, 1)) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(d(x_hat)[0].sum(), x_hat)
    gp = ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
    loss_d = -src_real.mean() + src_fake.mean() + cls_loss(cls_real, c) + 10 * gp
    src_g, cls_g = d(fake)
    loss_g = -src_g.mean() + 10 * (x - g(fake, c)).abs().mean() + cls_loss(cls_g, c_trg)
    assert torch.allclose(out_d["loss"], loss_d, rtol=1e-4), (out_d, loss_d)
    assert torch.allclose(out_d["gp"], 10 * gp, rtol=1e-4)
    assert torch.allclose(out_g["loss"], loss_g, rtol=1e-4), (out_g, loss_g)


def test_penalty_under_bf16_autocast_matches_fp32():
    """The bench's bf16 rows compute the same penalty: the D loss under autocast is the fp32 one, to bf16's
    precision (the gradient is taken of float32 scores, the norm in float32)."""
    torch.manual_seed(0)
    family, specs = _family(AttributeShapes(size=8, resolution=16))
    nets = {k: v.module for k, v in specs.items()}
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    batch = {"image": x, "attrs": torch.tensor([[1.0, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]])}
    draws = [torch.tensor([0.9, 0.1, 0.5, 0.3]), torch.tensor([0.2, 0.7, 0.4, 0.9])]
    outs = []
    for autocast in (False, True):
        it = iter(draws)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            outs.append(family.loss_d(PhaseContext(nets, batch, 0, 4, lambda kind, shape, it=it: next(it))))
    fp32, bf16 = outs
    assert bf16["gp"].dtype == torch.float32 and fp32["gp"] > 0.1
    for key in ("gp", "cls"):
        assert abs(bf16[key] - fp32[key]) < 0.05 * abs(fp32[key]) + 1e-3, (key, bf16[key], fp32[key])


def test_targets_are_shuffled_within_each_dataset():
    which = torch.tensor([1, 0, 1, 1, 0, 0, 1])
    for seed in range(5):
        perm = shuffle_within(which, torch.rand(7, generator=torch.Generator().manual_seed(seed)))
        assert sorted(perm.tolist()) == list(range(7)) and torch.equal(which[perm], which)


def test_mask_vector_and_classification_on_known_labels_only():
    layout = LabelLayout([LabelSet("bce", ("Red", "Big", "Dot")), LabelSet("ce", ("circle", "square", "triangle"))])
    assert (layout.d_dim, layout.g_dim) == (6, 8)
    c = torch.tensor([[1.0, 0, 1, 0, 0, 0], [0, 0, 0, 0, 1, 0]])
    which = torch.tensor([0, 1])
    assert layout.generator_input(c, which)[:, 6:].tolist() == [[1, 0], [0, 1]]
    logits = torch.randn(2, 6)
    loss = layout.classification_loss(logits, c, which)
    expected = (F.binary_cross_entropy_with_logits(logits[0, :3], c[0, :3], reduction="sum")
                + F.cross_entropy(logits[1:, 3:], torch.tensor([1]))) / 2
    assert torch.allclose(loss, expected)
    unknown = logits.clone()
    unknown[0, 3:] += 5.0  # the classes of a sample of the attribute dataset are unknown: no loss on them
    unknown[1, :3] -= 5.0
    assert torch.allclose(layout.classification_loss(unknown, c, which), loss)
    names = [name for name, _, _ in layout.single_changes(c)]
    assert names == ["Red", "Big", "Dot", "circle", "square", "triangle"]
    hair = LabelLayout([LabelSet("bce", ("Black_Hair", "Blond_Hair", "Male"))])
    changes = {name: target for name, target, _ in hair.single_changes(torch.tensor([[1.0, 0, 1]]))}
    assert changes["Blond_Hair"].tolist() == [[0, 1, 1]] and changes["Male"].tolist() == [[1, 0, 0]]
    assert hair.parse_targets("Blond_Hair=1, Male=0") == ({1: 1.0, 2: 0.0}, 0)
    assert layout.parse_targets("square") == ({3: 0.0, 4: 1.0, 5: 0.0}, 1)
    for bad, match in [("Bald=1", "'Bald' is no label"), ("Red=2", "needs =0 or =1"),
                       ("Red=1,square", "one label set"), (" ", "at least one")]:
        with pytest.raises(ConfigError, match=match):
            layout.parse_targets(bad)


def test_joint_training_runs_on_the_two_builtin_datasets(tmp_path):
    overrides = TINY + ["data.name=joint", "data.first={name: attribute-shapes, size: 16}",
                        "data.second={name: shape-classes, size: 16}", "train.batch_size=8",
                        "model.n_critic=2", "train.steps=4", "log.checkpoint_every=0"]
    trainer = Trainer(build_config("stargan", overrides=[o for o in overrides if o != "data.size=64"]),
                      str(tmp_path))
    assert trainer.nets["G"].c_dim == 8 and trainer.nets["D"].conv2.out_channels == 6  # 3 + 3 (+ mask 2)
    trainer.fit()
    logged = trainer._flush_running()
    assert all(torch.isfinite(torch.tensor(v)) for v in logged.values())
    with Image.open(tmp_path / "samples" / "final.png") as grid:  # rows: input + 6 single changes
        assert grid.size == (7 * 18 + 2, 2 * 18 + 2)


def _attribute_classifier(images, attrs, steps=120):
    """A small CNN trained on real images to tell the three attributes (the judge of the translations); max
    pooling keeps the one-pixel dot."""
    torch.manual_seed(1)
    clf = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1), nn.LeakyReLU(0.2), nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, 1, 1),
                        nn.LeakyReLU(0.2), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 4 * 4, 3))
    opt = torch.optim.Adam(clf.parameters(), 2e-3)
    for step in range(steps):
        k = (step * 64) % len(images)
        loss = F.binary_cross_entropy_with_logits(clf(images[k:k + 64]), attrs[k:k + 64])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return clf.eval()


def test_translations_carry_the_requested_attributes_and_reconstruction_error_falls():
    """Trains a small StarGAN on attribute-shapes (batch 8, n_critic 2, lr 1e-3; the one-pixel dot takes 400 steps:
    at 200 it was at chance on an AVX-512 CPU for four seeds of four, at 400 it is 0.89-1.0 for each), then asks
    it for each attribute flipped on held-out images: a classifier trained on real images must find the
    requested value far above chance (0.5), and G(G(x, c'), c) must be closer to x than before training."""
    held_out = AttributeShapes(size=1024, resolution=16, seed=5)
    images = torch.stack([held_out[i]["image"] for i in range(1024)])
    attrs = torch.stack([held_out[i]["attrs"] for i in range(1024)])
    clf = _attribute_classifier(images[:768], attrs[:768])
    x, c = images[768:], attrs[768:]
    with torch.no_grad():
        real_accuracy = ((clf(x) > 0).float() == c).float().mean(0)
    assert (real_accuracy > 0.9).all(), real_accuracy

    config = build_config("stargan", overrides=TINY + [
        "model.g_conv_dim=16", "model.d_conv_dim=16", "data.size=512", "model.n_critic=2", "model.g_lr=1e-3",
        "model.d_lr=1e-3", "train.steps=400", "train.batch_size=8"])
    trainer = Trainer(config)
    g = trainer.nets["G"]

    def reconstruction_error():
        with torch.no_grad():
            return (g(g(x, 1 - c), c) - x).abs().mean().item()

    before = reconstruction_error()
    trainer.fit()
    after = reconstruction_error()
    accuracy = []
    with torch.no_grad():
        for a in range(3):
            target = c.clone()
            target[:, a] = 1 - target[:, a]
            predicted = (clf(g(x, target)) > 0).float()
            accuracy.append((predicted[:, a] == target[:, a]).float().mean().item())
    print(f"\nrequested-attribute accuracy (Red, Big, Dot): {accuracy}; classifier on real images "
          f"{real_accuracy.tolist()}; reconstruction L1 {before:.3f} -> {after:.3f}")
    assert min(accuracy) > 0.65 and sum(accuracy) / 3 > 0.8, accuracy  # chance: 0.5
    assert after < 0.7 * before, (before, after)


def test_translate_writes_requested_labels_and_the_grid(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "stargan", "--out", str(run), "--steps", "2"] + [f"--set={o}" for o in TINY]) == 0
    inputs = tmp_path / "in"
    inputs.mkdir()
    data = build_dataset({"name": "attribute-shapes", "size": 3, "resolution": 16})
    for i in range(3):
        arr = ((data[i]["image"] + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
        Image.fromarray(arr).save(inputs / f"{i}.png")
    out = tmp_path / "out"
    assert main(["translate", str(run), "--input", str(inputs), "--out", str(out), "--attrs", "Red=1,Dot=0",
                 "--grid", "--no-progress"]) == 0
    assert "grid columns: input, Red, Big, Dot" in capsys.readouterr().out
    for i in range(3):
        with Image.open(out / f"{i}.png") as img:
            assert img.size == (16, 16)
    with Image.open(out / "grid.png") as grid:
        assert grid.size == (4 * 18 + 2, 3 * 18 + 2)
    for args, message in [(["--attrs", "Bald=1"], "'Bald' is no label"), ([], "pass --attrs"),
                          (["--attrs", "Red=1", "--size", "32"], "--size")]:
        assert main(["translate", str(run), "--input", str(inputs), "--out", str(out)] + args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err


def test_bench_cases_time_whole_rounds_of_n_critic_d_steps_and_one_g_step(monkeypatch):
    from gancore.bench.suites import families

    family_cls = get_family("stargan")
    assert {case.steps for case in family_cls.bench_cases.values()} == {family_cls.Config().n_critic}
    assert family_cls.bench_cases["full"].label == "128x128" and family_cls.bench_cases["full"].batches == (16,)
    phases = []

    class Counting(Trainer):
        def _run_phase(self, phase, rounds):
            phases.append((self.step, phase.name))
            return super()._run_phase(phase, rounds)

    monkeypatch.setattr(families, "Trainer", Counting)
    step = families.make_step("stargan", TINY, 2, "fp32", "eager", torch.device("cpu"), steps=5)
    step()
    assert phases == [(0, "D"), (1, "D"), (2, "D"), (3, "D"), (4, "D"), (4, "G")]


# --- yunjey/stargan's bare N-G.ckpt / N-D.ckpt files ---------------------------------------------------------
def _reference_files(folder, with_d=True, c_dim=5):
    """Random-weight G (conv_dim 8, 2 blocks) and D (16x16, conv_dim 8, 3 convs) under the reference keys,
    saved as yunjey's solver does (torch.save of each state_dict), and three 16x16 input PNGs."""
    from tests.models import reference_layers as ref
    from tests.models.test_stargan_networks import discriminator_keys, discriminator_parts, generator_layers

    layers, parts = generator_layers(8, c_dim, 2), discriminator_parts(16, 8, c_dim, 3)
    sd_g = ref.random_checkpoint(ref.keys(layers, "main."), seed=3)
    sd_d = ref.random_checkpoint(discriminator_keys(parts), seed=4)
    (folder / "models").mkdir()
    torch.save(sd_g, folder / "models" / "200000-G.ckpt")
    if with_d:
        torch.save(sd_d, folder / "models" / "200000-D.ckpt")
    (folder / "in").mkdir()
    images = torch.randint(0, 256, (3, 16, 16, 3), generator=torch.Generator().manual_seed(5), dtype=torch.uint8)
    for i, arr in enumerate(images):
        Image.fromarray(arr.numpy()).save(folder / "in" / f"{i}.png")
    x = images.permute(0, 3, 1, 2).double() / 127.5 - 1
    return str(folder / "models" / "200000-G.ckpt"), layers, parts, sd_g, sd_d, x


def _reference_output(layers, sd_g, x, target):
    """The reference network (its layer list, float64, training mode as yunjey's test runs it) on x."""
    from tests.models import reference_layers as ref
    from tests.models.test_stargan_networks import reference_g

    return reference_g(layers, ref.to_double(sd_g), x, target, training=True)


def _reference_pngs(layers, sd_g, x, target):
    """_reference_output as the PNG's 8-bit values."""
    return ((_reference_output(layers, sd_g, x, target).clamp(-1, 1) + 1) * 127.5).round()


def _translated(out):
    return torch.stack([torch.from_numpy(np.asarray(Image.open(out / f"{i}.png"), dtype=np.float64)).permute(2, 0, 1)
                        for i in range(3)])


def test_a_reference_g_with_its_d_beside_translates_as_the_reference_network(tmp_path, capsys):
    from tests.models import reference_layers as ref
    from tests.models.test_stargan_networks import reference_d

    g_path, layers, parts, sd_g, sd_d, x = _reference_files(tmp_path)
    # the input's own labels: D's estimate (logit > 0); then Black_Hair (column 0) = 1 and Male (3) = 0
    own = (reference_d(parts, ref.to_double(sd_d), x)[1] > 0).double()
    assert 0 < own.mean() < 1  # the estimate varies, so the unnamed labels matter
    target = own.clone()
    target[:, 0], target[:, 3] = 1.0, 0.0
    expected = _reference_pngs(layers, sd_g, x, target)
    for plain in ([], ["--plain"]):
        out = tmp_path / f"out{len(plain)}"
        assert main(["translate", g_path, "--input", str(tmp_path / "in"), "--out", str(out), "--attrs",
                     "Black_Hair=1,Male=0", "--no-progress"] + plain) == 0
        assert "input labels estimated by 200000-D.ckpt" in capsys.readouterr().out
        diff = (_translated(out) - expected).abs()
        assert diff.max() <= 1 and diff.mean() < 0.01, (plain, diff.max(), diff.mean())  # uint8 rounding only
    # the networks the command loads: fused and plain G equal to float tolerance, D's estimate as the reference's
    from gancore.translate import load_stargan

    fused, plain = load_stargan(g_path), load_stargan(g_path, fused=False)
    assert set(fused.nets) == {"G", "D"} and fused.resolution == 16 and fused.layout.d_dim == 5
    with torch.no_grad():
        assert torch.equal(fused.layout.estimate(fused.nets["D"](x.float())[1]), own.float())
        a, b = fused.nets["G"](x.float(), target.float()), plain.nets["G"](x.float(), target.float())
        exact = _reference_output(layers, sd_g, x, target)
    err_fused = float((a.double() - exact).norm() / exact.norm())
    err_plain = float((b.double() - exact).norm() / exact.norm())
    assert err_fused <= 2 * err_plain + 1e-6 and float((a - b).norm() / b.norm()) < 1e-5, (err_fused, err_plain)


def test_a_reference_g_alone_takes_the_source_labels(tmp_path, capsys):
    g_path, layers, _, sd_g, _, x = _reference_files(tmp_path, with_d=False)
    inputs = str(tmp_path / "in")  # no D to say the size: --size (default the reference's 128)
    # own labels Black_Hair, Young; target Male=1 -> [1, 0, 0, 1, 1] for every image
    assert main(["translate", g_path, "--input", inputs, "--out", str(tmp_path / "a"), "--attrs", "Male=1",
                 "--source-attrs", "Black_Hair=1,Young=1", "--no-progress", "--grid", "--size", "16"]) == 0
    target = torch.tensor([[1.0, 0, 0, 1, 1]], dtype=torch.float64).expand(3, -1)
    assert (_translated(tmp_path / "a") - _reference_pngs(layers, sd_g, x, target)).abs().max() <= 1
    with Image.open(tmp_path / "a" / "grid.png") as grid:
        assert grid.size == (6 * 18 + 2, 3 * 18 + 2)  # input + five single changes
    # every label named: no source labels needed; other names for the attributes
    assert main(["translate", g_path, "--input", inputs, "--out", str(tmp_path / "b"), "--selected-attrs",
                 "a,b,c,d,e", "--attrs", "a=0,b=1,c=0,d=0,e=1", "--no-progress", "--size", "16"]) == 0
    target = torch.tensor([[0.0, 1, 0, 0, 1]], dtype=torch.float64).expand(3, -1)
    assert (_translated(tmp_path / "b") - _reference_pngs(layers, sd_g, x, target)).abs().max() <= 1
    assert "reference StarGAN G from 200000-G.ckpt" in capsys.readouterr().out


def test_a_reference_rafd_g_translates_to_a_class(tmp_path):
    g_path, layers, _, sd_g, _, x = _reference_files(tmp_path, with_d=False, c_dim=3)
    assert main(["translate", g_path, "--input", str(tmp_path / "in"), "--out", str(tmp_path / "out"),
                 "--classes", "happy,sad,neutral", "--attrs", "sad", "--no-progress", "--size", "16"]) == 0
    target = torch.tensor([[0.0, 1, 0]], dtype=torch.float64).expand(3, -1)
    assert (_translated(tmp_path / "out") - _reference_pngs(layers, sd_g, x, target)).abs().max() <= 1


def test_bad_reference_checkpoints_and_labels_exit_2_with_one_line(tmp_path, capsys):
    g_path, *_ = _reference_files(tmp_path)
    (tmp_path / "other").mkdir()  # a G of c_dim 4 beside a D of c_dim 5
    _reference_files(tmp_path / "other", c_dim=4)
    shutil.copy(tmp_path / "models" / "200000-D.ckpt", tmp_path / "other" / "models" / "200000-D.ckpt")
    wrong = tmp_path / "latest_net_G.pth"
    torch.save({"model.1.weight": torch.zeros(8, 3, 7, 7)}, wrong)
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    cases = [
        ([str(wrong), "--attrs", "Male=1"], "is not a StarGAN generator checkpoint"),
        ([str(tmp_path / "notes.txt"), "--attrs", "Male=1"], "cannot load"),
        ([g_path, "--attrs", "Male=1", "--selected-attrs", "Male,Young,Smiling"], "c_dim 5"),
        ([g_path, "--attrs", "Bald=1"], "'Bald' is no label"),
        ([g_path, "--attrs", "Male=1", "--source-attrs", "Male=2"], "--source-attrs: binary attribute"),
        ([g_path, "--attrs", "Male=1", "--size", "32"], "--size"),
        ([g_path, "--attrs", "Male=1", "--selected-attrs", "Male,Male,A,B,C"], "unique"),
        ([g_path, "--attrs", "sad", "--classes", "happy,sad"], "c_dim 5"),
        ([str(tmp_path / "other" / "models" / "200000-G.ckpt"), "--attrs", "A=1", "--selected-attrs", "A,B,C,D"],
         "classifies 5 labels"),
    ]
    for args, message in cases:
        assert main(["translate", args[0], "--input", str(tmp_path / "in"), "--out", str(tmp_path / "out"),
                     "--no-progress"] + args[1:]) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (args, err)
    os.remove(tmp_path / "models" / "200000-D.ckpt")  # G alone: the own labels must be given
    assert main(["translate", g_path, "--input", str(tmp_path / "in"), "--out", str(tmp_path / "out"),
                 "--attrs", "Male=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--source-attrs" in err[0] and "-D.ckpt" in err[0], err
