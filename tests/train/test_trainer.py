import json
import math
import os

import pytest
import torch
import yaml

from gancore.families.base import ConfigError
from gancore.train import ConfigMismatchError, RunExistsError, Trainer
from gancore.train import checkpoint as ckpt
from gancore.train.ema import EMA
from gancore.train.optimizers import LayoutAwareAdam
from tests.train.trainhelpers import assert_same, parameters, tiny_config, use_sgd


def _train(config, out=None, **kwargs):
    trainer = Trainer(config, out, **kwargs)
    trainer.fit()
    return trainer


def test_one_seed_makes_a_run_reproducible():
    a = parameters(_train(tiny_config("dcgan", "train.seed=5")))
    b = parameters(_train(tiny_config("dcgan", "train.seed=5")))
    c = parameters(_train(tiny_config("dcgan", "train.seed=6")))
    assert_same(a, b)
    assert any(not torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("family, extra", [
    # batch norm buffers, EMA, gradient accumulation, a cosine schedule with warm-up: the schedule spans
    # train.steps, so the first part is a 2N-step run interrupted after N steps
    ("dcgan", ["train.lr_schedule=cosine", "train.warmup_steps=2", "train.accumulate=2"]),
    # a constant rate: N steps, then resumed with --steps 2N; G every n_critic=2 steps, resumed at an
    # odd step; the penalty's random mixing weights
    ("wgan-gp", []),
])
def test_resume_is_bit_identical(tmp_path, family, extra):
    n = 3
    straight = _train(tiny_config(family, *extra, steps=2 * n), str(tmp_path / "straight"))
    interrupted = bool(extra)
    first = Trainer(tiny_config(family, *extra, steps=2 * n if interrupted else n),
                    str(tmp_path / "resumed"))
    first.fit(steps=n)
    assert first.step == n
    second = Trainer(tiny_config(family, *extra, steps=2 * n), str(tmp_path / "resumed"), resume=True)
    assert second.step == n and second.resumed_from.endswith(ckpt.checkpoint_name(n))
    second.fit()
    assert_same(parameters(straight), parameters(second))
    for name in straight.ema:
        assert_same(straight.ema[name].module.state_dict(), second.ema[name].module.state_dict())
    for name in straight.optimizers:
        a, b = straight.optimizers[name].state_dict(), second.optimizers[name].state_dict()
        for index, state in a["state"].items():
            for key, value in state.items():
                assert torch.equal(value, b["state"][index][key]), (name, index, key)
    final_a = ckpt.load_checkpoint(ckpt.latest_checkpoint(str(tmp_path / "straight")))
    final_b = ckpt.load_checkpoint(ckpt.latest_checkpoint(str(tmp_path / "resumed")))
    assert torch.equal(final_a["rng"]["draws"], final_b["rng"]["draws"])


def test_checkpoint_holds_everything_and_loads_weights_only(tmp_path):
    trainer = _train(tiny_config("dcgan", "train.lr_schedule=linear"), str(tmp_path))
    state = torch.load(ckpt.latest_checkpoint(str(tmp_path)), weights_only=True)
    assert {"nets", "ema", "optimizers", "scaler", "schedule", "rng", "config", "step", "images_seen",
            "nonfinite_steps", "data_spec"} <= set(state)
    assert set(state["nets"]) == set(state["optimizers"]) == {"G", "D"} and set(state["ema"]) == {"G"}
    assert state["config"] == trainer.config and state["step"] == 4 and state["images_seen"] == 32
    assert {"torch", "python", "numpy"} <= set(state["rng"]["per_rank"][0])
    assert state["schedule"]["factor"] == trainer._lr_factor(4)


def test_resume_with_another_config_is_refused_unless_forced(tmp_path):
    _train(tiny_config("dcgan", steps=2), str(tmp_path))
    changed = tiny_config("dcgan", "model.lr_d=0.001", "model.betas_d=[0.0, 0.9]", steps=4)
    with pytest.raises(ConfigMismatchError) as err:
        Trainer(changed, str(tmp_path), resume=True)
    assert "model.lr_d: 0.002 -> 0.001" in str(err.value) and "model.betas_d" in str(err.value)
    forced = Trainer(changed, str(tmp_path), resume=True, force=True)
    forced.fit()
    group = forced.optimizers["D"].param_groups[0]
    assert group["lr"] == 0.001 and tuple(group["betas"]) == (0.0, 0.9)  # the new settings apply
    # more steps and other logging are not "another config" (with a constant learning rate)
    Trainer(tiny_config("dcgan", "model.lr_d=0.001", "model.betas_d=[0.0, 0.9]", "log.every=1", steps=8),
            str(tmp_path), resume=True)


def test_more_steps_under_a_decaying_schedule_is_a_difference(tmp_path):
    _train(tiny_config("dcgan", "train.lr_schedule=linear", steps=2), str(tmp_path))
    with pytest.raises(ConfigMismatchError, match="train.steps: 2 -> 4 .the linear learning-rate schedule"):
        Trainer(tiny_config("dcgan", "train.lr_schedule=linear", steps=4), str(tmp_path), resume=True)


def test_resume_refuses_other_networks_and_families(tmp_path):
    _train(tiny_config("dcgan", steps=1), str(tmp_path))
    with pytest.raises(ckpt.CheckpointError, match="does not fit"):
        Trainer(tiny_config("dcgan", "model.g_width=8", steps=2), str(tmp_path), resume=True, force=True)
    with pytest.raises(ConfigMismatchError, match="is a 'dcgan' run"):
        Trainer(tiny_config("wgan-gp", steps=2), str(tmp_path), resume=True, force=True)


def test_an_existing_run_is_not_overwritten(tmp_path):
    _train(tiny_config("dcgan", steps=1), str(tmp_path))
    with pytest.raises(RunExistsError, match="--resume"):
        Trainer(tiny_config("dcgan", steps=2), str(tmp_path)).fit()
    with pytest.raises(ckpt.CheckpointError, match="no checkpoint to resume"):
        Trainer(tiny_config("dcgan", steps=2), str(tmp_path / "fresh"), resume=True)


def test_run_folder_contents(tmp_path):
    config = tiny_config("dcgan", "log.every=2", "log.sample_every=3", "log.checkpoint_every=2", "log.keep=2",
                         "log.tensorboard=true", steps=7)
    trainer = _train(config, str(tmp_path))
    assert yaml.safe_load((tmp_path / "config.yaml").read_text()) == trainer.config
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4, 6, 7]
    for r in records:
        assert {"D/loss", "G/loss", "D/grad_norm", "images_per_s", "sec_per_step", "nonfinite_steps"} \
            <= set(r)
        assert all(math.isfinite(v) for v in r.values())
    assert sorted(os.listdir(tmp_path / "samples")) == ["00000003.png", "00000006.png", "final.png"]
    assert [s for s, _ in ckpt.list_checkpoints(str(tmp_path))] == [6, 7]
    pytest.importorskip("tensorboard")
    assert any(n.startswith("events.out.tfevents") for n in os.listdir(tmp_path / "tb"))


def test_sample_grid_is_drawn_at_fixed_latents(tmp_path):
    from PIL import Image

    trainer = _train(tiny_config("dcgan", "log.sample_n=6", steps=1), str(tmp_path))
    first = trainer.generate(trainer.sample_latents)
    assert torch.equal(first, trainer.generate(trainer.sample_latents))
    with Image.open(tmp_path / "samples" / "final.png") as img:
        assert img.size == (3 * (8 + 2) + 2, 2 * (8 + 2) + 2)  # 6 samples of 8x8 on a 3x2 grid


def test_bf16_autocast_runs_on_the_cpu_and_changes_the_numbers():
    fp32 = parameters(_train(tiny_config("dcgan", steps=2)))
    bf16 = parameters(_train(tiny_config("dcgan", "train.precision=bf16", steps=2)))
    assert all(torch.isfinite(v).all() for v in bf16.values())
    assert all(v.dtype == fp32[k].dtype for k, v in bf16.items())  # weights stay float32
    assert any(not torch.equal(fp32[k], bf16[k]) for k in fp32)


def test_fp16_needs_a_gpu():
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        Trainer(tiny_config("dcgan", "train.precision=fp16"))


@pytest.mark.gpu
def test_fp16_with_grad_scaler_and_gradient_penalty_on_the_gpu():
    trainer = _train(tiny_config("wgan-gp", "train.precision=fp16", "train.device=cuda", steps=6))
    assert trainer.scaler.is_enabled() and trainer.nonfinite_steps == 0
    assert all(torch.isfinite(v).all() for v in parameters(trainer).values())


def test_channels_last_gives_the_same_training():
    plain = parameters(_train(tiny_config("dcgan", steps=2)))
    trainer = _train(tiny_config("dcgan", "train.channels_last=true", steps=2))
    conv = trainer.nets["D"].net[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    for key, value in parameters(trainer).items():
        assert torch.allclose(value, plain[key], atol=1e-5), key


def test_to_channels_last_keeps_large_convolutions_nchw():
    from gancore.utils.layout import NCHW_WEIGHTS_FROM, to_channels_last

    torch.manual_seed(0)
    big_in = NCHW_WEIGHTS_FROM // (128 * 16)  # a 4x4 convolution with exactly NCHW_WEIGHTS_FROM weights
    net = torch.nn.Sequential(torch.nn.Conv2d(3, big_in, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(big_in, 128, 4, stride=2, padding=1), torch.nn.ReLU(),
                              torch.nn.ConvTranspose2d(128, 8, 4, stride=2, padding=1))
    x = torch.randn(2, 3, 8, 8)
    want = net(x)
    keys = list(net.state_dict())
    assert to_channels_last(net) == ["2"]
    assert to_channels_last(net) == ["2"] and len(net[2]._forward_pre_hooks) == 1  # idempotent
    assert list(net.state_dict()) == keys
    assert net[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert net[4].weight.is_contiguous(memory_format=torch.channels_last)
    assert net[2].weight.is_contiguous()
    seen = []
    net[2].register_forward_hook(lambda m, args, out: seen.append((args[0].is_contiguous(), out.is_contiguous())))
    out = net(x.contiguous(memory_format=torch.channels_last))
    assert seen == [(True, True)]  # the kept convolution ran NCHW, on a channels_last input
    assert out.is_contiguous(memory_format=torch.channels_last)  # and the next one returned to channels_last
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-5)


def test_convolutions_kept_nchw_train_like_channels_last_ones(monkeypatch):
    from gancore.utils import layout

    plain = parameters(_train(tiny_config("dcgan", steps=2)))
    monkeypatch.setattr(layout, "NCHW_WEIGHTS_FROM", 150)  # the tiny G's convolutions and D's first one
    trainer = _train(tiny_config("dcgan", "train.channels_last=true", steps=2))
    kept = trainer.nchw_convs["D"]
    assert kept == ["net.0"] and len(trainer.nchw_convs["G"]) == 2
    assert f"{len(kept)} large convolution(s) kept NCHW" in trainer.plan()
    for name in kept:
        weight = trainer.nets["D"].get_submodule(name).weight
        assert weight.is_contiguous()
        assert all(v.is_contiguous() for v in trainer.optimizers["D"].state[weight].values() if v.dim() == 4)
    assert trainer.nets["D"].net[2].weight.is_contiguous(memory_format=torch.channels_last)
    assert trainer.ema["G"].module.net[0].weight.is_contiguous()
    for key, value in parameters(trainer).items():
        assert torch.allclose(value, plain[key], atol=1e-5), key


def test_a_resume_in_another_layout_gives_the_moments_the_parameters_layout(tmp_path, monkeypatch):
    """A run saved with channels_last weights, resumed where they are NCHW: PyTorch's fused Adam would mix up
    elements of moments whose strides differ from the parameter's, so the resume gives them its strides."""
    from gancore.utils import layout

    straight = parameters(_train(tiny_config("dcgan", "train.channels_last=true", steps=4)))
    monkeypatch.setattr(layout, "NCHW_WEIGHTS_FROM", 1 << 40)  # every weight channels_last
    first = Trainer(tiny_config("dcgan", "train.channels_last=true", steps=4), str(tmp_path))
    first.fit(steps=2)
    monkeypatch.setattr(layout, "NCHW_WEIGHTS_FROM", 150)  # a later version keeps some NCHW
    second = Trainer(tiny_config("dcgan", "train.channels_last=true", steps=4), str(tmp_path), resume=True)
    assert second.nchw_convs["D"]
    for optimizer in second.optimizers.values():
        for param, state in optimizer.state.items():
            assert all(v.stride() == param.stride() for v in state.values() if v.dim() == 4)
    second.fit()
    for key, value in parameters(second).items():
        assert torch.allclose(value, straight[key], atol=1e-5), key


@pytest.mark.parametrize("isa, nhwc", [("AVX2", False), ("AVX512", True), ("DEFAULT", False)])
def test_channels_last_auto_follows_the_cpu(monkeypatch, isa, nhwc):
    from gancore.utils import layout

    monkeypatch.setattr(layout, "cpu_capability", lambda: isa)
    trainer = Trainer(tiny_config("dcgan", "train.channels_last=auto", steps=1))
    assert trainer.channels_last is nhwc
    conv = trainer.nets["D"].net[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last) is nhwc
    assert f"channels_last {nhwc} (auto)" in trainer.plan()
    assert Trainer(tiny_config("dcgan", steps=1)).channels_last is nhwc  # auto is the default
    assert Trainer(tiny_config("dcgan", "model.fused=false", steps=1)).channels_last is False  # eager: NCHW
    assert Trainer(tiny_config("gan", steps=1)).channels_last is False  # no fused networks
    with pytest.raises(ConfigError, match="train.channels_last"):
        Trainer(tiny_config("dcgan", "train.channels_last=maybe", steps=1))


def test_compile_skips_networks_differentiated_twice():
    trainer = _train(tiny_config("wgan-gp", "train.compile=eager", steps=3))
    assert trainer.nets["G"]._compiled_call_impl is not None
    assert trainer.nets["D"]._compiled_call_impl is None  # the critic is under a gradient penalty
    assert all(torch.isfinite(v).all() for v in parameters(trainer).values())


def test_gradient_accumulation_matches_one_big_batch():
    # SGD, so that a wrong scale on the summed gradients (which Adam would hide) moves the weights differently
    sgd = ["model.lr_g=0.05", "model.lr_d=0.05"]

    def train(*sets):
        trainer = use_sgd(Trainer(tiny_config("wgan-gp", *sgd, *sets, steps=4, batch_size=8)))
        start = parameters(trainer)
        trainer.fit()
        return trainer, {k: v - start[k] for k, v in parameters(trainer).items()}

    _, one = train()
    for rounds in (2, 4):
        trainer, moved = train(f"train.accumulate={rounds}")
        assert trainer.draws.rows == 8 // rounds
        for key, delta in moved.items():  # the same samples and draws, summed in rounds
            assert delta.abs().max() > 0 or one[key].abs().max() == 0, key
            assert torch.allclose(one[key], delta, rtol=1e-4, atol=1e-7), key


def test_batch_must_split_evenly():
    with pytest.raises(ConfigError, match="divisible by processes"):
        Trainer(tiny_config("dcgan", "train.accumulate=3", batch_size=8))


@pytest.mark.parametrize("schedule, warmup, expected", [
    ("constant", 0, [1.0, 1.0, 1.0]),
    ("constant", 4, [0.25, 0.75, 1.0]),
    ("linear", 0, [1.0, 0.5, 0.0]),
    ("cosine", 0, [1.0, 0.5, 0.0]),
])
def test_learning_rate_schedules(schedule, warmup, expected):
    trainer = Trainer(tiny_config("dcgan", f"train.lr_schedule={schedule}", f"train.warmup_steps={warmup}",
                                  steps=4))
    assert [pytest.approx(trainer._lr_factor(s)) for s in (0, 2, 4)] == expected
    trainer.train_step()
    base_lr = trainer.config["model"]["lr_g"]
    assert trainer.optimizers["G"].param_groups[0]["lr"] == pytest.approx(base_lr * trainer._lr_factor(0))


def test_ema_follows_the_weights_with_a_ramped_decay():
    net = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        net.weight.zero_()
    ema = EMA(net, beta=0.9)
    with torch.no_grad():
        net.weight.fill_(1.0)
    ema.update(net)  # decay min(0.9, 1/10) = 0.1
    assert torch.allclose(ema.module.weight, torch.full((1, 2), 0.9))
    for _ in range(200):
        ema.update(net)
    assert torch.allclose(ema.module.weight, torch.ones(1, 2), atol=1e-6)
    restored = EMA(net, beta=0.9)
    restored.load_state_dict(ema.state_dict())
    assert restored.updates == 201 and torch.equal(restored.module.weight, ema.module.weight)


def test_training_updates_the_ema_generator():
    trainer = _train(tiny_config("dcgan", steps=3))
    assert trainer.ema["G"].updates == 3
    g, ema = trainer.nets["G"].state_dict(), trainer.ema["G"].module.state_dict()
    assert any(not torch.equal(g[k], ema[k]) for k in g if g[k].is_floating_point())
    ema_module = trainer.ema["G"].module
    assert not ema_module.training and not any(p.requires_grad for p in ema_module.parameters())


def test_plan_describes_the_run():
    plan = Trainer(tiny_config("wgan-gp", "train.compile=true")).plan()
    assert "phase      G: optimises G, every 2 steps" in plan
    assert "compiled" in plan.splitlines()[3] and "double backward" in plan.splitlines()[4]
    assert "ring of 8 Gaussians" in plan and "global batch 8 = 1 process(es) x 8 x 1" in plan


def test_a_second_run_into_a_locked_folder_is_refused(tmp_path):
    held = ckpt.lock_run_dir(str(tmp_path))  # another run, writing into the folder
    try:
        with pytest.raises(ckpt.RunFolderError, match=rf"in use by another run \(pid {os.getpid()}\)"):
            Trainer(tiny_config("dcgan", steps=1), str(tmp_path)).fit()
    finally:
        held.close()
    assert not (tmp_path / "config.yaml").exists() and not ckpt.holds_run(str(tmp_path))
    _train(tiny_config("dcgan", steps=1), str(tmp_path))  # the lock died with its holder


def test_checkpoints_without_latest_are_a_run_resumable_and_not_overwritten(tmp_path):
    first = _train(tiny_config("dcgan", "log.checkpoint_every=1", steps=2), str(tmp_path))
    (tmp_path / "latest").unlink()  # killed between the checkpoint and the pointer
    with pytest.raises(RunExistsError, match="--resume"):
        Trainer(tiny_config("dcgan", steps=2), str(tmp_path)).fit()
    assert [s for s, _ in ckpt.list_checkpoints(str(tmp_path))] == [1, 2]
    with pytest.warns(UserWarning, match="newest readable checkpoint"):
        resumed = Trainer(tiny_config("dcgan", "log.checkpoint_every=1", steps=3), str(tmp_path), resume=True)
    assert resumed.step == 2
    assert_same(parameters(resumed), parameters(first))
    fresh = _train(tiny_config("dcgan", steps=1), str(tmp_path), force=True)  # --force: start afresh
    assert fresh.step == 1 and [s for s, _ in ckpt.list_checkpoints(str(tmp_path))] == [1]
    assert [json.loads(line)["step"] for line in (tmp_path / "log.jsonl").read_text().splitlines()] == [1]


def test_a_resumed_run_does_not_log_steps_twice(tmp_path):
    config = tiny_config("dcgan", "log.every=1", "log.checkpoint_every=2", "log.tensorboard=true", steps=3)
    _train(config, str(tmp_path))
    # as if killed after logging step 3 and before its checkpoint: the resumption trains step 3 again
    os.remove(tmp_path / ckpt.checkpoint_name(3))
    (tmp_path / "latest").write_text(ckpt.checkpoint_name(2) + "\n")
    _train(tiny_config("dcgan", "log.every=1", "log.checkpoint_every=2", "log.tensorboard=true", steps=4),
           str(tmp_path), resume=True)
    steps = [json.loads(line)["step"] for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


class _FailAt:
    every = 1

    def __init__(self, step):
        self.step = step

    def __call__(self, trainer):
        if trainer.step == self.step:
            raise RuntimeError("the run failed")


def test_a_failed_forced_resume_keeps_config_yaml_matching_the_checkpoint(tmp_path):
    _train(tiny_config("dcgan", steps=2), str(tmp_path))
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    forced = Trainer(tiny_config("dcgan", "train.ema_beta=0.5", steps=6), str(tmp_path), resume=True,
                     force=True, hooks=[_FailAt(3)])
    with pytest.raises(RuntimeError, match="the run failed"):
        forced.fit()
    assert ckpt.load_latest(str(tmp_path))[1]["config"] == saved
    assert yaml.safe_load((tmp_path / "config.yaml").read_text()) == saved
    _train(tiny_config("dcgan", "train.ema_beta=0.5", steps=4), str(tmp_path), resume=True, force=True)
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["train"]["ema_beta"] == 0.5


@pytest.mark.parametrize("family, optimizer", [("dcgan", LayoutAwareAdam), ("wgan", torch.optim.RMSprop)])
def test_optimizer_impls_make_the_same_training(family, optimizer):
    """train.optimizer_impl picks PyTorch's fused, foreach or for-loop kernels: same update, other rounding."""
    runs = {}
    for impl in ("fused", "foreach", "for-loop"):
        trainer = _train(tiny_config(family, f"train.optimizer_impl={impl}", steps=3))
        for opt in trainer.optimizers.values():
            assert type(opt) is optimizer
            group = opt.param_groups[0]
            assert group["foreach"] == (impl == "foreach" or (impl == "fused" and optimizer is torch.optim.RMSprop))
            assert group.get("fused", False) == (impl == "fused" and optimizer is not torch.optim.RMSprop)
        runs[impl] = parameters(trainer)
    for impl in ("foreach", "for-loop"):
        for key, value in runs[impl].items():
            torch.testing.assert_close(value, runs["fused"][key], atol=1e-5, rtol=1e-4, msg=f"{impl} {key}")


def test_sgd_runs_fused_too():
    from gancore.families.base import Network
    from gancore.train.optimizers import make_optimizer

    module = torch.nn.Linear(3, 2)
    opt = make_optimizer(module, Network(module, lr=0.1, optimizer="sgd", momentum=0.9), "fused")
    assert isinstance(opt, torch.optim.SGD) and opt.param_groups[0]["fused"]
    module(torch.randn(4, 3)).sum().backward()
    before = module.weight.detach().clone()
    opt.step()
    assert not torch.equal(before, module.weight)


def test_a_resume_may_change_the_optimizer_impl_and_gets_the_new_one(tmp_path):
    first = Trainer(tiny_config("dcgan", "train.optimizer_impl=for-loop", steps=4), str(tmp_path))
    first.fit(steps=2)
    second = Trainer(tiny_config("dcgan", steps=4), str(tmp_path), resume=True)  # the default: fused
    assert second.step == 2
    for opt in second.optimizers.values():
        assert all(g["fused"] and not g["foreach"] for g in opt.param_groups)
    second.fit()
    assert second.step == 4


def test_an_unknown_optimizer_impl_is_a_config_error():
    with pytest.raises(ConfigError, match="train.optimizer_impl"):
        tiny_config("dcgan", "train.optimizer_impl=apex")


def test_layout_aware_adam_steps_channels_last_tensors_in_place():
    """Same update as PyTorch's for-loop Adam, layouts kept, and no copy inside the fused step (PyTorch's own
    fused Adam copies a channels_last tensor to a contiguous one and back)."""
    from torch.profiler import profile

    torch.manual_seed(0)
    shapes = [(8, 4, 3, 3), (16, 8, 1, 1), (5,), (6, 2)]
    start = [torch.randn(s) for s in shapes]
    grads = [[torch.randn(s) for s in shapes] for _ in range(3)]

    def run(cls, channels_last, **flags):
        params = [torch.nn.Parameter(t.clone().contiguous(memory_format=torch.channels_last)
                                     if channels_last and t.dim() == 4 else t.clone()) for t in start]
        opt = cls(params, lr=0.1, betas=(0.5, 0.9), weight_decay=0.01, **flags)
        copies = 0
        for step_grads in grads:
            for p, g in zip(params, step_grads):
                p.grad = g.clone().contiguous(memory_format=torch.channels_last) if g.dim() == 4 else g.clone()
            with profile() as prof:
                opt.step()
            copies += sum(e.name == "aten::clone" for e in prof.events())  # (the step counters copy scalars)
        return params, opt, copies

    want, _, _ = run(torch.optim.Adam, False, foreach=False)
    _, _, torch_copies = run(torch.optim.Adam, True, fused=True)
    assert torch_copies > 0  # the cost this class removes
    for amsgrad in (False, True):
        got, opt, copies = run(LayoutAwareAdam, True, fused=True, amsgrad=amsgrad)
        assert copies == 0
        assert got[0].is_contiguous(memory_format=torch.channels_last) and not got[0].is_contiguous()
        assert all(v.is_contiguous(memory_format=torch.channels_last) for v in opt.state[got[0]].values()
                   if v.dim() == 4)
        if not amsgrad:
            for a, b in zip(got, want):
                torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    ref, _, _ = run(torch.optim.Adam, False, foreach=False, amsgrad=True)
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
