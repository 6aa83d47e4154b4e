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
    assert ckpt.load_run_or_checkpoint(str(tmp_path))[0] == path
    assert ckpt.load_run_or_checkpoint(path)[1]["step"] == 5


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
        ckpt.load_run_or_checkpoint(str(tmp_path / "nope"))
    with pytest.raises(ckpt.CheckpointError, match="holds no checkpoint"):
        ckpt.load_run_or_checkpoint(str(tmp_path))
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


def test_without_a_latest_pointer_the_newest_readable_checkpoint_is_used(tmp_path):
    # a kill between a checkpoint's write and latest's leaves checkpoints and no (or a stale) pointer
    for step in (2, 4):
        ckpt.save_checkpoint(str(tmp_path), _state(step), step, keep=3)
    (tmp_path / "latest").unlink()
    (tmp_path / ckpt.checkpoint_name(6)).write_bytes(b"cut short")
    assert ckpt.holds_run(str(tmp_path))
    with pytest.warns(UserWarning, match="no 'latest' pointer; continuing from its newest readable"):
        path, state = ckpt.load_latest(str(tmp_path))
    assert path.endswith(ckpt.checkpoint_name(4)) and state["step"] == 4


def test_a_damaged_latest_checkpoint_names_the_intact_older_one(tmp_path):
    for step in (2, 4):
        path = ckpt.save_checkpoint(str(tmp_path), _state(step), step, keep=3)
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    with pytest.raises(ckpt.CheckpointError) as err:
        ckpt.load_latest(str(tmp_path))
    message = str(err.value)
    assert f"cannot load checkpoint {path!r}" in message
    assert f"newest intact checkpoint is {tmp_path / ckpt.checkpoint_name(2)} (step 2)" in message
    assert f"echo {ckpt.checkpoint_name(2)} > {tmp_path / 'latest'}" in message and "--resume" in message
    (tmp_path / "latest").write_text(ckpt.checkpoint_name(2) + "\n")  # what the message says to do
    assert ckpt.load_latest(str(tmp_path))[1]["step"] == 2


def test_the_run_folder_lock_is_exclusive_and_dies_with_its_holder(tmp_path):
    held = ckpt.lock_run_dir(str(tmp_path))
    try:
        with pytest.raises(ckpt.RunFolderError, match=rf"in use by another run \(pid {os.getpid()}\)"):
            ckpt.lock_run_dir(str(tmp_path))
    finally:
        held.close()
    # a holder that died: its pid stays in the file but the kernel dropped its lock
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / ckpt.LOCK).write_text(dead.stdout)
    again = ckpt.lock_run_dir(str(tmp_path))
    assert (tmp_path / ckpt.LOCK).read_text() == f"{os.getpid()}\n"
    again.close()
