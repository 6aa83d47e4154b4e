import argparse
import os
import subprocess
import sys

import pytest
from PIL import Image

import gancore.cli
from gancore.train import checkpoint as ckpt
from gancore.train.cli import register
from tests.train.trainhelpers import tiny_args


def cli(*argv):
    parser = argparse.ArgumentParser(prog="gancore")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args([str(a) for a in argv])
    return args.func(args)


def test_list(capsys):
    assert cli("train", "--list") == 0
    out = capsys.readouterr().out
    assert "dcgan" in out and "wgan-gp" in out and "[default data: shapes]" in out


@pytest.mark.parametrize("argv, message", [
    (["train"], "FAMILY, --out, --steps required"),
    (["train", "dcgan", "--out", "x"], "--steps required"),
    (["train", "--resume"], "--out required"),  # the family comes from the checkpoint, the folder cannot
    (["train", "dcganx", "--out", "x", "--steps", "1"], "unknown family 'dcganx'; did you mean 'dcgan'"),
    (["train", "dcgan", "--out", "x", "--steps", "1", "--set", "train.lr=1"], "train.lr: unknown key"),
    (["train", "dcgan", "--out", "x", "--steps", "1", "--data", "/no/such/dir"], "no such file or directory"),
])
def test_usage_errors_are_named(argv, message, capsys):
    assert cli(*argv) == 2
    assert message in capsys.readouterr().err


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    paper = ["--set", "model.resolution=64", "--set", "model.g_width=64", "--set", "model.d_width=64"]
    assert cli("train", "dcgan", "--out", out, *paper, "--dry-run") == 0
    plan = capsys.readouterr().out
    assert "DCGANGenerator, 3.577M parameters" in plan  # the paper's 64x64 generator (not the demo default)
    assert "phase      D: optimises D, every step" in plan and "steps      0 -> 10000" in plan
    assert not out.exists()
    assert cli("train", "dcgan", "--dry-run") == 0  # nothing is written, so no folder is needed
    assert "outputs    (none)" in capsys.readouterr().out


def test_train_then_sample_from_run_and_checkpoint(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli("train", "dcgan", "--out", run, "--steps", 3, "--batch-size", 4, "--seed", 1,
               *tiny_args()) == 0
    assert "trained dcgan to step 3" in capsys.readouterr().out
    assert cli("sample", run, "--n", 5, "--out", tmp_path / "grid.png") == 0
    with Image.open(tmp_path / "grid.png") as img:
        assert img.size == (3 * 10 + 2, 2 * 10 + 2)  # five 8x8 samples on a 3x2 grid, 2-pixel gaps
    path = ckpt.latest_checkpoint(str(run))
    assert cli("sample", path, "--n", 4, "--no-ema", "--out", tmp_path / "sub" / "raw.png", "--seed", 3) == 0
    assert "trained weights" in capsys.readouterr().out and (tmp_path / "sub" / "raw.png").exists()
    assert cli("sample", tmp_path / "nothing", "--out", tmp_path / "x.png") == 2
    assert "no such run folder" in capsys.readouterr().err


def test_ring_run_gives_a_scatter_plot(tmp_path):
    run = tmp_path / "run"
    assert cli("train", "wgan-gp", "--out", run, "--steps", 2, "--batch-size", 8, *tiny_args("wgan-gp")) == 0
    assert cli("sample", run, "--n", 100, "--out", tmp_path / "points.png") == 0
    with Image.open(tmp_path / "points.png") as img:
        assert img.size == (384, 384)


def test_resume_from_the_cli(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli("train", "dcgan", "--out", run, "--steps", 2, "--batch-size", 4, *tiny_args()) == 0
    assert cli("train", "dcgan", "--out", run, "--steps", 3, "--batch-size", 4, *tiny_args()) == 2
    assert "already holds a run: pass --resume" in capsys.readouterr().err
    # the run's own settings are the base of a resume: only what is given here may differ
    assert cli("train", "dcgan", "--out", run, "--resume", "--steps", 4) == 0
    assert ckpt.latest_checkpoint(str(run)).endswith(ckpt.checkpoint_name(4))
    assert cli("train", "--out", run, "--resume", "--steps", 5) == 0  # FAMILY is the checkpoint's
    assert ckpt.latest_checkpoint(str(run)).endswith(ckpt.checkpoint_name(5))
    assert cli("train", "--out", run, "--resume", "--steps", 4) == 2  # still every other check: past 5
    assert cli("train", "dcgan", "--out", run, "--resume", "--steps", 6, "--batch-size", 8) == 2
    assert "train.batch_size: 4 -> 8" in capsys.readouterr().err
    assert cli("train", "dcgan", "--out", run, "--resume", "--steps", 6, "--batch-size", 8, "--force") == 0
    assert cli("train", "dcgan", "--out", tmp_path / "new", "--resume") == 2
    assert "holds no checkpoint" in capsys.readouterr().err


def test_tuned_alloc_flag_tunes_the_allocator(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr("gancore.train.trainer.tune_cpu_allocator", lambda: calls.append(1) or True)
    assert cli("train", "dcgan", "--out", tmp_path, "--steps", 1, "--batch-size", 4, "--tuned-alloc",
               *tiny_args()) == 0
    assert calls == [1]


def test_commands_plug_into_the_gancore_cli(monkeypatch, capsys):
    modules = tuple(gancore.cli.COMMAND_MODULES)
    if "gancore.train.cli" not in modules:
        monkeypatch.setattr(gancore.cli, "COMMAND_MODULES", modules + ("gancore.train.cli",))
    assert gancore.cli.main(["train", "--list"]) == 0
    assert "wgan-gp" in capsys.readouterr().out


def test_module_entry_point():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    done = subprocess.run([sys.executable, "-m", "gancore.train", "train", "--list"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "dcgan" in done.stdout
