"""pix2pixHD: the paper's settings, inputs and losses, the coarse-to-fine handover, checkpointing, features and
their clusters, distributed and resumed runs, translate, and that it learns (tiny networks, fixed seeds)."""

import numpy as np
import pytest
import torch
from PIL import Image

from gancore.cli import main
from gancore.data import CityscapesFolders, LabelScenes, build_dataset
from gancore.data.base import DataError
from gancore.families import get_family
from gancore.families.base import ConfigError, PhaseContext
from gancore.families.pix2pixhd import (
    EncodedGenerator,
    edge_map,
    instance_features,
    kmeans,
    linear_decay,
    sample_features,
)
from gancore.losses_perceptual import feature_matching_loss
from gancore.models.pix2pixhd import LocalEnhancer, MultiscaleDiscriminator
from gancore.train import Trainer, build_config
from gancore.train import checkpoint as ckpt
from tests.models import reference_layers as ref
from tests.models.test_vgg import torchvision_features
from tests.train.test_train_distributed import _torchrun
from tests.train.trainhelpers import assert_same, parameters

QUIET = ["log.progress=false", "log.tensorboard=false", "log.sample_n=1"]
# A small global generator: 8 classes, ngf 8, two downsamplings, one residual block, 64x32 scenes.
TINY = ["model.label_nc=8", "model.ngf=8", "model.ndf=8", "model.n_downsample_global=2", "model.n_blocks_global=1",
        "data.width=64", "data.height=32", "data.size=2", "train.batch_size=1"] + QUIET


def tiny(*overrides, steps=2):
    return build_config("pix2pixhd", overrides=TINY + [f"train.steps={steps}", *overrides])


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    """Random weights under torchvision's vgg19 keys (features only)."""
    layers, _ = torchvision_features()
    path = tmp_path_factory.mktemp("vgg") / "vgg19.pth"
    torch.save(ref.random_checkpoint(ref.keys(layers, "features.")), path)
    return path


def test_defaults_are_the_papers():
    c = get_family("pix2pixhd").Config()
    assert (c.netG, c.label_nc, c.ngf, c.n_downsample_global, c.n_blocks_global, c.norm) == (
        "global", 35, 64, 4, 9, "instance")
    assert (c.ndf, c.n_layers_D, c.num_D, c.gan_mode, c.feat_loss, c.lambda_feat, c.lambda_vgg) == (
        64, 3, 2, "lsgan", True, 10.0, 10.0)
    assert (c.lr, c.beta1, c.n_epochs, c.n_epochs_decay, c.feat_num, c.nef, c.n_clusters) == (
        2e-4, 0.5, 100, 100, 3, 16, 10)
    trainer = Trainer(tiny())
    assert [p.name for p in trainer.phases] == ["G", "D"] and not trainer.ema
    assert trainer.train_config.batch_size == 1 and trainer.train_config.channels_last
    for opt in trainer.optimizers.values():
        assert opt.param_groups[0]["lr"] == 2e-4 and tuple(opt.param_groups[0]["betas"]) == (0.5, 0.999)
    # G sees 8 one-hot channels + the edge map; D sees those and the image
    assert trainer.nets["G"].model[1].in_channels == 9
    assert trainer.nets["D"].scale0_layer0[0].in_channels == 12


def test_the_papers_cityscapes_input_gives_the_published_widths():
    family_cls = get_family("pix2pixhd")
    family = family_cls(family_cls.Config(instance_feat=True))
    assert family.input_channels() == (35 + 1 + 3, 35 + 1 + 3)  # G: labels, edges, features; D: labels, edges, image
    assert sum(p.numel() for p in MultiscaleDiscriminator(39, num_D=3, fused=False).parameters()) == 8_404_803


def test_schedule_is_constant_then_linear_to_zero_by_epoch():
    assert [linear_decay(e, 2, 4) for e in range(7)] == [1.0, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0]
    trainer = Trainer(tiny("model.n_epochs=1", "model.n_epochs_decay=2"))
    assert [trainer._lr_factor(s) for s in range(8)] == [1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.0, 0.0]


def test_inputs_one_hot_and_edges():
    inst = torch.tensor([[[[1, 1, 2], [1, 1, 2], [3, 3, 3]]]])
    assert edge_map(inst)[0, 0].tolist() == [[0, 1, 1], [1, 1, 1], [1, 1, 1]]
    assert edge_map(torch.full((1, 1, 4, 4), 7)).sum() == 0
    trainer = Trainer(tiny())
    sample = trainer.dataset[0]
    batch = {k: v[None] for k, v in sample.items()}
    x = trainer.family.encode_label(batch)
    assert x.shape == (1, 9, 32, 64)
    assert torch.equal(x[:, :8].argmax(1, keepdim=True), sample["label"][None]) and torch.all(x[:, :8].sum(1) == 1)
    assert torch.equal(x[:, 8:], edge_map(sample["inst"][None]))
    bad = dict(batch, label=torch.full_like(batch["label"], 8))
    with pytest.raises(ConfigError, match="model.label_nc=8"):
        trainer.family.encode_label(bad)


def test_losses_are_the_references():
    trainer = Trainer(tiny("model.num_D=3"))
    family, nets = trainer.family, trainer.nets
    batch = {k: v[None] for k, v in trainer.dataset[1].items()}
    ctx = PhaseContext(nets, batch, 0, 1, lambda kind, shape: None)
    torch.manual_seed(0)
    out_g = family.loss_g(ctx)
    out_d = family.loss_d(ctx)
    label = family.encode_label(batch)
    with torch.no_grad():
        fake = nets["G"](label)
        pred_fake = nets["D"](torch.cat([label, fake], 1))
        pred_real = nets["D"](torch.cat([label, batch["image"]], 1))
    assert len(pred_fake) == 3 and len(pred_fake[0]) == 5  # 3 scales x (n_layers + 2) stages
    gan = sum(((p[-1] - 1) ** 2).mean() for p in pred_fake)
    feat = sum(10 * (1 / 3) * (4 / 4) * (f - r).abs().mean() for pf, pr in zip(pred_fake, pred_real)
               for f, r in zip(pf[:-1], pr[:-1]))
    d = 0.5 * (sum((p[-1] ** 2).mean() for p in pred_fake) + sum(((p[-1] - 1) ** 2).mean() for p in pred_real))
    assert torch.allclose(out_g["gan"], gan, rtol=1e-4) and torch.allclose(out_g["feat"], feat, rtol=1e-4)
    assert torch.allclose(out_g["loss"], gan + feat, rtol=1e-4) and torch.allclose(out_d["loss"], d, rtol=1e-4)
    assert torch.allclose(feature_matching_loss(pred_fake, pred_real, 3) * 10, feat, rtol=1e-5)


def test_proof_at_256x128_three_discriminators_feature_matching_and_vgg(vgg_file):
    """The issue's proof run, as far as CI time allows: two steps of everything at 256x128."""
    trainer = Trainer(build_config("pix2pixhd", overrides=TINY + [
        "data.width=256", "data.height=128", "model.n_downsample_global=3", "model.num_D=3",
        f"model.vgg_weights={vgg_file}"]))
    for _ in range(2):
        assert trainer.train_step() == []  # no phase skipped for a non-finite loss or gradient
    logged = trainer._flush_running()
    for key in ("G/loss", "G/gan", "G/feat", "G/vgg", "G/L1", "D/loss", "D/real", "D/fake"):
        assert np.isfinite(logged[key]) and logged[key] > 0, (key, logged)
    assert trainer.nonfinite_steps == 0


def test_the_generator_learns_the_builtin_scenes():
    """Held-out L1 to the photos after 30 steps (batch 2, 64x32, 3 Ds, feature matching) against the untrained G."""
    held_out = LabelScenes(size=8, width=64, height=32, label_nc=8, seed=123)
    batch = {k: torch.stack([held_out[i][k] for i in range(8)]) for k in ("label", "inst", "image")}
    trainer = Trainer(build_config("pix2pixhd", overrides=TINY + [
        "model.num_D=3", "model.lr=1e-3", "data.size=500", "train.batch_size=2", "train.steps=30"]))

    def held_out_l1():
        g = trainer.nets["G"].eval()
        with torch.no_grad():
            l1 = float((g(trainer.family.encode_label(batch)) - batch["image"]).abs().mean())
        g.train()
        return l1

    untrained = held_out_l1()
    trainer.fit()
    trained = held_out_l1()
    print(f"held-out L1: untrained {untrained:.3f}, trained {trained:.3f}")
    assert trained < 0.8 * untrained, (untrained, trained)


def test_global_run_hands_over_to_the_local_enhancer(tmp_path):
    """A global run loads into netG=local's global part; the frozen epoch keeps it bit-identical while the
    enhancer trains, and the joint epoch changes it."""
    run = tmp_path / "global"
    Trainer(tiny(steps=1), str(run)).fit()
    global_state = ckpt.load_checkpoint(ckpt.latest_checkpoint(str(run)))["nets"]["G"]
    local = Trainer(build_config("pix2pixhd", overrides=TINY + [
        "model.netG=local", "model.ngf=4", "model.n_blocks_local=1", "model.niter_fix_global=1",
        f"model.load_pretrain={run}", "data.width=128", "data.height=64", "train.steps=4"]))
    g = local.nets["G"]
    assert isinstance(g, LocalEnhancer)
    loaded = {k: v.clone() for k, v in g.model.state_dict().items()}
    last = max(int(k.split(".")[1]) for k in global_state)
    assert loaded.keys() == {k[6:] for k in global_state if int(k.split(".")[1]) < last - 1}
    assert all(torch.equal(v, global_state[f"model.{k}"]) for k, v in loaded.items())
    enhancer = {k: v.clone() for k, v in g.state_dict().items() if k.startswith("model1_")}
    local.fit(2)  # epoch 0 (two samples, batch 1): the global part is frozen
    assert_same(loaded, g.model.state_dict())
    assert all(not torch.equal(v, g.state_dict()[k]) for k, v in enhancer.items() if k.endswith("weight"))
    local.fit(4)  # epoch 1: jointly
    changed = [k for k, v in g.model.state_dict().items() if not torch.equal(v, loaded[k])]
    assert len(changed) == len(loaded)


def test_load_pretrain_names_what_does_not_fit(tmp_path):
    run = tmp_path / "global"
    Trainer(tiny(steps=1), str(run)).fit()
    with pytest.raises(ConfigError, match="model.load_pretrain: .* does not fit"):
        Trainer(tiny("model.netG=local", f"model.load_pretrain={run}"))  # ngf 8: its global part has ngf 16
    with pytest.raises(ConfigError, match="model.load_pretrain: no such run"):
        Trainer(tiny(f"model.load_pretrain={tmp_path / 'nothing'}"))


def test_bad_settings_are_refused_with_the_key_named():
    with pytest.raises(ConfigError, match="model.niter_fix_global"):
        build_config("pix2pixhd", overrides=["model.niter_fix_global=2"])
    with pytest.raises(ConfigError, match="multiples of 4"):
        Trainer(tiny("data.width=66"))
    with pytest.raises(DataError, match="label_nc"):
        Trainer(tiny("model.label_nc=5"))  # the built-in scenes have 8 classes
    with pytest.raises(ConfigError, match="model.gan_mode"):
        build_config("pix2pixhd", overrides=["model.gan_mode=hinge"])


def _saved_bytes(fn):
    """fn() and the bytes of the storages autograd keeps for backward outside checkpoint segments (inside one,
    torch.utils.checkpoint's own hooks take them; it passes on a segment's inputs)."""
    sizes = {}

    def pack(t):
        sizes[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, sum(sizes.values())


def _phase_in_float64(trainer, phase, batch):
    """One phase of the family in float64 as the trainer runs it (only its network takes gradients):
    (logged losses, {parameter name: gradient}, bytes kept for backward outside checkpoint segments)."""
    nets = trainer.nets
    for name, net in nets.items():
        net.requires_grad_(name == phase.network)
        net.zero_grad(set_to_none=True)
    ctx = PhaseContext(nets, batch, 0, 1, lambda kind, shape: None)
    out, saved = _saved_bytes(lambda: phase.loss(ctx))
    out["loss"].backward()
    grads = {k: p.grad for k, p in nets[phase.network].named_parameters()}
    return {k: v.detach() for k, v in out.items()}, grads, saved


@pytest.mark.parametrize("settings", [["model.num_D=3", "model.n_blocks_global=2"],
                                      ["model.netG=local", "model.ngf=4", "model.instance_feat=true"]],
                         ids=["global", "local+features"])
def test_checkpointing_keeps_losses_and_every_gradient_in_float64(settings):
    """checkpoint_activations recomputes every stage of G (and E) and every scale of D: a full G phase and
    D phase in float64 give the non-checkpointed losses and parameter gradients (~1e-12), with the same keys,
    and keep a small part of the bytes for backward."""
    plain, recomputed = (Trainer(tiny(*settings, f"model.checkpoint_activations={on}")) for on in ("false", "true"))
    for name, net in plain.nets.items():
        assert net.state_dict().keys() == recomputed.nets[name].state_dict().keys()
        recomputed.nets[name].load_state_dict(net.state_dict())
    sample = plain.dataset[1]
    batch = {k: v[None].double() if v.is_floating_point() else v[None] for k, v in sample.items()}
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # the family's one-hot labels
    try:
        results = {}
        for key, trainer in (("plain", plain), ("recomputed", recomputed)):
            for net in trainer.nets.values():
                net.double()
            results[key] = [_phase_in_float64(trainer, phase, batch) for phase in trainer.phases]
    finally:
        torch.set_default_dtype(default)
    for (losses, grads, saved), (losses_r, grads_r, saved_r) in zip(results["plain"], results["recomputed"]):
        assert losses.keys() == losses_r.keys()
        for k in losses:
            assert torch.allclose(losses_r[k], losses[k], rtol=1e-12, atol=0), (k, losses_r[k], losses[k])
        assert grads.keys() == grads_r.keys()
        # The scale is the network's whole gradient: a conv bias before an instance norm has a zero gradient,
        # in float64 a few 1e-16 of rounding either way.
        scale = torch.stack([g.norm() for g in grads.values()]).norm()
        for k, g in grads.items():
            assert g is not None and g.dtype == torch.float64, k
            assert (grads_r[k] - g).norm() <= 1e-12 * scale, (k, (grads_r[k] - g).norm(), g.norm(), scale)
        assert saved_r < 0.3 * saved, (saved_r, saved)  # measured 0.12-0.2 (the input labels included)
    assert any(g.abs().sum() > 0 for g in results["plain"][0][1].values())


def test_discriminator_parts_must_add_up_to_its_input_channels():
    d = MultiscaleDiscriminator(12, 8, num_D=2, checkpoint_activations=True)
    with pytest.raises(ValueError, match=r"\[9, 2\] channels, together 11; the discriminator takes 12"):
        d([torch.zeros(1, 9, 16, 16), torch.zeros(1, 2, 16, 16)])


def test_one_step_at_1024x512_runs_on_the_cpu():
    trainer = Trainer(build_config("pix2pixhd", overrides=TINY + [
        "model.ngf=4", "model.ndf=4", "model.n_downsample_global=4", "data.width=1024", "data.height=512",
        "data.size=1", "model.checkpoint_activations=true", "train.steps=1"]))
    assert trainer.spec.shape == (3, 512, 1024)
    assert trainer.train_step() == []
    assert all(np.isfinite(v) for v in trainer._flush_running().values())


def test_kmeans_finds_separated_clusters_and_features_are_drawn_from_them():
    g = torch.Generator().manual_seed(0)
    means = torch.tensor([[0.0, 0.0], [5.0, 5.0], [-5.0, 5.0]])
    points = torch.cat([m + 0.1 * torch.randn(50, 2, generator=g) for m in means])
    centres = kmeans(points, 3, g)
    assert torch.cdist(centres, means).min(0).values.max() < 0.1
    assert kmeans(points[:2], 5, g).shape == (2, 2)  # no more centres than points
    inst = torch.tensor([[[[5000, 5000, 3], [5001, 5001, 3]]]])
    clusters = {5: torch.tensor([[1.0, 2.0], [3.0, 4.0]])}
    features = sample_features(clusters, inst, 2, g)
    for instance in (5000, 5001):
        picked = features[0][:, inst[0, 0] == instance]
        assert any(torch.equal(picked, c[:, None].expand_as(picked)) for c in clusters[5])
    assert features[0][:, inst[0, 0] == 3].abs().sum() == 0  # class 3 has no clusters
    by_class = instance_features(torch.arange(4.0).reshape(1, 2, 2).expand(2, 2, 2), inst[0], min_fraction=0.2)
    assert set(by_class) == {3, 5} and by_class[5].shape == (2, 2)


def test_instance_features_train_cluster_and_translate(tmp_path):
    """instance_feat: G is trained with E (keys netG.* / netE.*); translate picks clustered features."""
    run = tmp_path / "feat"
    trainer = Trainer(tiny("model.instance_feat=true", "model.n_downsample_E=2", steps=1), str(run))
    g = trainer.nets["G"]
    assert isinstance(g, EncodedGenerator) and g.netG.model[1].in_channels == 8 + 1 + 3
    assert {k.split(".")[0] for k in g.state_dict()} == {"netG", "netE"}
    trainer.fit()
    clusters = trainer.family.fit_clusters(g.netE, trainer.dataset)
    assert clusters and all(c.shape[1] == 3 for c in clusters.values())
    labels = tmp_path / "labels"
    labels.mkdir()
    Image.fromarray(trainer.dataset[0]["label"][0].numpy().astype(np.uint8)).save(labels / "a.png")
    assert main(["translate", str(run), "--input", str(labels), "--out", str(tmp_path / "out"),
                 "--no-progress"]) == 0
    assert Image.open(tmp_path / "out" / "a.png").size == (64, 32)


def test_translate_label_maps_with_instance_maps(tmp_path, capsys):
    run = tmp_path / "run"
    Trainer(tiny(steps=1), str(run)).fit()
    scenes = LabelScenes(size=2, width=60, height=36, label_nc=8, seed=5)
    (tmp_path / "labels").mkdir()
    (tmp_path / "inst").mkdir()
    for i in range(2):
        s = scenes[i]
        Image.fromarray(s["label"][0].numpy().astype(np.uint8)).save(tmp_path / "labels" / f"{i}.png")
        Image.fromarray(s["inst"][0].numpy().astype(np.uint16)).save(tmp_path / "inst" / f"{i}.png")  # 16-bit ids
    out = tmp_path / "out"
    assert main(["translate", str(run), "--input", str(tmp_path / "labels"), "--inst", str(tmp_path / "inst"),
                 "--out", str(out), "--no-progress"]) == 0
    assert "translated 2 image(s) with pix2pixhd global G" in capsys.readouterr().out
    assert Image.open(out / "0.png").size == (60, 36)  # already multiples of 4
    (tmp_path / "inst" / "1.png").unlink()
    assert main(["translate", str(run), "--input", str(tmp_path / "labels"), "--inst", str(tmp_path / "inst"),
                 "--out", str(out), "--no-progress"]) == 2
    assert "--inst: no instance map named like '1.png'" in capsys.readouterr().err


def test_resume_after_the_run_finished_and_with_more_steps(tmp_path):
    """A finished run resumed does nothing more; resumed with more steps (and more epochs) it continues exactly
    as a straight run (the reference's issue #147: resuming a finished run restarted its schedule)."""
    run = tmp_path / "run"
    Trainer(tiny(steps=2), str(run)).fit()
    finished = Trainer(tiny(steps=2), str(run), resume=True)
    before = parameters(finished)
    assert finished.fit()["step"] == 2
    assert_same(before, parameters(finished))
    longer = Trainer(tiny(steps=4), str(run), resume=True)
    longer.fit()
    straight = Trainer(tiny(steps=4))
    straight.fit()
    assert_same(parameters(straight), parameters(longer))
    more_epochs = Trainer(tiny("model.n_epochs=3", steps=6), str(run), resume=True, force=True)
    assert more_epochs.step == 4 and more_epochs.fit()["step"] == 6
    assert more_epochs._lr_factor(5) == 1.0  # epoch 2 of 3 at the full rate under the new schedule


_RANK_SCRIPT = """
import sys, torch
from tests.families.test_pix2pixhd import tiny
from tests.train.trainhelpers import parameters
from gancore.train import Trainer
trainer = Trainer(tiny(*{sets!r}, steps=3))
trainer.fit()
torch.save(parameters(trainer), sys.argv[1] + f"/rank{{trainer.dist.rank}}.pt")
trainer.close()
"""


def test_two_processes_equal_one_with_a_frozen_then_joint_local_enhancer(tmp_path):
    # netG=local with niter_fix_global=1: DDP all-reduces the zero gradients of the frozen global part
    sets = ["model.netG=local", "model.ngf=4", "model.n_blocks_local=1", "model.niter_fix_global=1",
            "data.size=4", "train.batch_size=2", "data.width=64", "data.height=32"]
    script = tmp_path / "rank.py"
    script.write_text(_RANK_SCRIPT.format(sets=sets))
    _torchrun([str(script), str(tmp_path)], cwd=tmp_path)
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    single = Trainer(tiny(*sets, steps=3))
    single.fit()
    one = parameters(single)
    for key in one:
        assert torch.equal(rank0[key], rank1[key]), key
        # A conv bias before an instance norm has a zero gradient up to rounding, which Adam scales up to
        # lr-sized steps: such biases differ by rounding luck, and the norm cancels them in every output.
        # Weights agree to a tenth of one Adam step (lr 2e-4), where Adam also scales up a tiny gradient.
        if not key.endswith("bias"):
            assert torch.allclose(rank0[key], one[key], rtol=1e-5, atol=2e-5), key
    batch = {k: v[None] for k, v in single.dataset[0].items()}
    x = single.family.encode_label(batch)
    with torch.no_grad():
        expected = single.nets["G"](x)
        single.nets["G"].load_state_dict({k[2:]: v for k, v in rank0.items() if k.startswith("G.")})
        assert torch.allclose(single.nets["G"](x), expected, rtol=1e-4, atol=1e-5)


def test_builtin_scenes_and_cityscapes_folders(tmp_path):
    scenes = LabelScenes(size=3, width=48, height=24, label_nc=10)
    a, b = scenes[2], scenes[2]
    assert all(torch.equal(a[k], b[k]) for k in a)  # a function of (seed, index)
    assert a["label"].shape == (1, 24, 48) and a["label"].dtype == torch.int64 and int(a["label"].max()) < 8
    assert a["image"].shape == (3, 24, 48) and -1 <= float(a["image"].min()) <= float(a["image"].max()) <= 1
    things = a["inst"][a["inst"] >= 1000]
    assert torch.equal(torch.unique(a["label"][a["inst"] >= 1000]), torch.unique(things // 1000))
    assert LabelScenes(size=1, width=16, height=8, label_nc=0)[0]["label"].shape == (3, 8, 16)
    with pytest.raises(DataError, match="label_nc"):
        LabelScenes(label_nc=3)

    root = tmp_path / "city"
    for split in ("label", "inst", "img"):
        (root / f"train_{split}").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(2):
        label = rng.integers(0, 35, (40, 80)).astype(np.uint8)
        Image.fromarray(label).save(root / "train_label" / f"c{i}_labelIds.png")
        Image.fromarray(label.astype(np.uint16) * 1000 + 7).save(root / "train_inst" / f"c{i}_instanceIds.png")
        Image.fromarray(rng.integers(0, 256, (40, 80, 3)).astype(np.uint8)).save(root / "train_img" / f"c{i}.jpg")
    data = build_dataset({"name": "label-folders", "path": str(root), "load_size": 64, "multiple": 16,
                          "flip": False})
    s = data[1]
    assert isinstance(data, CityscapesFolders) and len(data) == 2
    assert s["label"].shape == (1, 32, 64) and s["inst"].shape == (1, 32, 64) and s["image"].shape == (3, 32, 64)
    assert torch.equal(s["inst"] // 1000, s["label"])  # nearest resizing keeps the ids exact and aligned
    flipped = CityscapesFolders(str(root), load_size=64, multiple=16, flip=True)
    draws = [flipped.sample(0, seed) for seed in range(8)]
    assert any(torch.equal(d["label"], data[0]["label"].flip(-1)) and torch.equal(d["image"], data[0]["image"].flip(-1))
               for d in draws)
    with pytest.raises(DataError, match="class id .* >= data.label_nc=20"):
        CityscapesFolders(str(root), label_nc=20)[0]
    (root / "train_img" / "c1.jpg").unlink()
    with pytest.raises(DataError, match="as many files"):
        CityscapesFolders(str(root))
    with pytest.raises(DataError, match="no val_label/ folder"):
        CityscapesFolders(str(root), split="val")
