import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from gancore.train import checkpoint as ckpt


def _state(step, size=4):
    return {"step": step, "config": {"family": "x"}, "w": torch.full((size,), float(step)),
            "t": (1, 2.5, None)}


def test_save_points_latest_and_keeps_the_last_k(tmp_path):
    for step in range(1, 6):
        path = ckpt.save_checkpoint(str(tmp_path), _state(step), step, keep=2)
    assert [s for s, _ in ckpt.list_checkpoints(str(tmp_path))] == [4, 5]
    assert ckpt.latest_checkpoint(str(tmp_path)) == path
    state = torch.load(path, weights_only=True)
    assert state["step"] == 5 and state["t"] == (1, 2.5, None)
    assert torch.equal(state["w"], torch.full((4,), 5.0))
    assert ckpt.find_checkpoint(str(tmp_path)) == path and ckpt.find_checkpoint(path) == path


def test_a_save_that_fails_leaves_latest_intact(tmp_path, monkeypatch):
    good = ckpt.save_checkpoint(str(tmp_path), _state(1), 1, keep=3)

    def crash(src, dst):  # the process "dies" after writing the temporary file, before renaming it
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(str(tmp_path), _state(2), 2, keep=3)
    monkeypatch.undo()
    assert ckpt.latest_checkpoint(str(tmp_path)) == good
    assert ckpt.load_checkpoint(good)["step"] == 1
    assert not [n for n in os.listdir(tmp_path) if ".tmp-" in n]  # the temporary was removed


def test_leftover_temporaries_are_cleaned(tmp_path):
    ckpt.save_checkpoint(str(tmp_path), _state(1), 1, keep=3)
    (tmp_path / ".ckpt-00000002.pt.tmp-123").write_bytes(b"half a checkpoint")
    ckpt.remove_temporaries(str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == ["ckpt-00000001.pt", "latest"]


_WRITER = """
import sys, torch
from gancore.train import checkpoint as ckpt
run = sys.argv[1]
step = 0
while True:
    step += 1
    state = {"step": step, "config": {}, "w": torch.full((2_000_000,), float(step))}
    ckpt.save_checkpoint(run, state, step, 2)
"""


def test_killed_while_saving_never_corrupts_latest(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    for delay in (0.05, 0.23):
        run = tmp_path / f"run{delay}"
        run.mkdir()
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(run)], env=env)
        try:
            deadline = time.time() + 60
            while not (run / "latest").exists() and time.time() < deadline:
                time.sleep(0.01)
            time.sleep(delay)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        path = ckpt.latest_checkpoint(str(run))
        state = ckpt.load_checkpoint(path)
        assert torch.equal(state["w"], torch.full((2_000_000,), float(state["step"])))


def test_load_errors_are_clear(tmp_path):
    with pytest.raises(ckpt.CheckpointError, match="no such run folder"):
        ckpt.find_checkpoint(str(tmp_path / "nope"))
    with pytest.raises(ckpt.CheckpointError, match="holds no checkpoint"):
        ckpt.find_checkpoint(str(tmp_path))
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ckpt.CheckpointError, match="cannot load"):
        ckpt.load_checkpoint(str(tmp_path / "junk.pt"))
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ckpt.CheckpointError, match="not a gancore checkpoint"):
        ckpt.load_checkpoint(str(tmp_path / "other.pt"))
    (tmp_path / "latest").write_text("ckpt-00000009.pt\n")
    with pytest.raises(ckpt.CheckpointError, match="names 'ckpt-00000009.pt'"):
        ckpt.latest_checkpoint(str(tmp_path))


class _Evil:
    def __reduce__(self):
        return (print, ("code ran",))


def test_checkpoints_with_code_are_refused(tmp_path):
    torch.save({"step": 1, "config": {}, "x": _Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ckpt.CheckpointError, match="cannot load"):
        ckpt.load_checkpoint(str(tmp_path / "evil.pt"))
