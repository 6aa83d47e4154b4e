"""A user's mistakes in `gancore train | sample | fid`: one clear line on stderr and exit code 2, no traceback.

Every case runs the real command line in-process (gancore.cli.main), on tiny networks and files the
test writes itself. The run and files shared by the cases are made once per module.
"""

import math

import numpy as np
import pytest
import torch

import gancore.cli
from gancore.train import checkpoint as ckpt
from tests.train.trainhelpers import tiny_args

TINY_TRAIN = ["--steps", "1", "--batch-size", "4", *tiny_args()]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A trained tiny run and the broken files derived from it, by name."""
    root = tmp_path_factory.mktemp("mistakes")
    run = root / "run"
    assert gancore.cli.main(["train", "dcgan", "--out", str(run), "--steps", "6", "--batch-size", "4",
                             *tiny_args()]) == 0
    path, state = ckpt.load_latest(str(run))
    wider = {**state, "config": {**state["config"], "model": {**state["config"]["model"], "g_width": 8}}}
    torch.save(wider, root / "wider.pt")
    torch.save({k: v for k, v in state.items() if k != "data_spec"}, root / "nospec.pt")
    nan = {**state, "ema": {}, "nets": {n: {k: torch.full_like(v, math.nan) if v.is_floating_point() else v
                                            for k, v in w.items()} for n, w in state["nets"].items()}}
    torch.save(nan, root / "nan.pt")
    (root / "a_file").write_text("not a folder")
    (root / "logdir" / "log.jsonl").mkdir(parents=True)
    (root / "garbage.npz").write_bytes(b"not a zip at all")
    np.savez(root / "count.npz", mu=np.zeros(3), sigma=np.eye(3), count=np.arange(3))
    np.savez(root / "strmu.npz", mu=np.array(["a", "b", "c"]), sigma=np.eye(3))
    np.savez(root / "ok.npz", mu=np.zeros(3), sigma=np.eye(3))
    (root / "images").mkdir()
    (root / "outdir").mkdir()
    return {"root": root, "run": run, "ckpt": path}


CASES = [
    # train
    (["train", "dcgan", "--out", "{root}/o1", "--set", "model.lr_g=-1", *TINY_TRAIN],
     "train", "learning rate of 'G' must be a positive finite number, got -1"),
    (["train", "dcgan", "--out", "{root}/o2", "--set", "model.lr_g=.nan", *TINY_TRAIN],
     "train", "learning rate of 'G' must be a positive finite number, got nan"),
    (["train", "dcgan", "--out", "{root}/o3", "--set", "model.betas_g=[2.0,0.9]", *TINY_TRAIN],
     "train", "Adam betas of 'G' must be two numbers in [0, 1), got [2.0, 0.9]"),
    (["train", "dcgan", "--out", "{root}/o4", "--set", "train.compile=bogus", *TINY_TRAIN],
     "train", "train.compile: 'bogus' is not a torch.compile backend"),
    (["train", "dcgan", "--out", "{root}/a_file", *TINY_TRAIN], "train", "cannot create the run folder"),
    (["train", "dcgan", "--out", "/dev/null", *TINY_TRAIN], "train", "cannot create the run folder"),
    (["train", "dcgan", "--out", "/proc/gancore-run", *TINY_TRAIN], "train", "cannot create the run folder"),
    (["train", "dcgan", "--out", "{root}/logdir", *TINY_TRAIN], "train", "cannot write the run folder"),
    (["train", "dcgan", "--out", "{run}", "--resume", "--steps", "3"],
     "train", "already at step 6, past --steps 3: nothing to train"),
    # sample
    (["sample", "{root}/wider.pt", "--out", "{root}/s1.png"], "sample", "the weights of 'G' do not fit its config"),
    (["sample", "{root}/nospec.pt", "--out", "{root}/s2.png"], "sample", "is incomplete: it has no 'data_spec'"),
    (["sample", "{run}", "--out", "{root}/outdir"], "sample", "is a directory"),
    (["sample", "{run}", "--out", "{root}/s3.xyz"], "sample", "unknown image extension '.xyz'"),
    (["sample", "{root}/nan.pt", "--out", "{root}/s4.png"], "sample", "the weights of 'G' hold NaN or inf"),
    # fid
    (["fid", "{root}/garbage.npz", "{root}/ok.npz"], "fid", "not a readable .npz statistics file"),
    (["fid", "{root}/count.npz", "{root}/ok.npz"], "fid", "count.npz: not a valid statistics file"),
    (["fid", "{root}/strmu.npz", "{root}/ok.npz"], "fid", "strmu.npz: not a valid statistics file"),
    (["fid", "{root}/ok.npz", "{root}/ok.npz", "--device", "bogus"], "fid", "--device: not a device: 'bogus'"),
    (["fid", "--save-stats", "{root}/images", "{root}/outdir"], "fid", "is a directory; give the .npz file"),
]
if not torch.cuda.is_available():
    CASES.append((["fid", "{root}/ok.npz", "{root}/ok.npz", "--device", "cuda"], "fid",
                  "--device cuda: no CUDA device is available"))


@pytest.mark.parametrize("argv, command, message", CASES, ids=[f"{c[1]}: {c[2][:48]}" for c in CASES])
def test_a_mistake_is_one_line_and_exit_code_2(files, argv, command, message, capsys):
    argv = [a.format(root=files["root"], run=files["run"]) for a in argv]
    capsys.readouterr()
    assert gancore.cli.main(argv) == 2  # returned: no exception escaped
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"gancore {command}: error: "), err
    assert message in lines[0], err
    assert not (files["root"] / "s1.png").exists() and not any(files["root"].glob("s[1-4].*"))


def test_a_resumed_run_at_its_last_step_says_there_is_nothing_to_train(files, capsys):
    capsys.readouterr()
    assert gancore.cli.main(["train", "dcgan", "--out", str(files["run"]), "--resume"]) == 0
    assert "already at step 6 = train.steps: nothing to train" in capsys.readouterr().err
