"""Checkpoint files of a run folder: atomic writes, the `latest` pointer, the last K kept.

A checkpoint is written to a temporary file in the same folder, flushed to disk and renamed over
its final name (os.replace is atomic on POSIX and Windows), and only then does `latest` (a one-line
text file, itself replaced atomically) name it. A run killed at any moment therefore leaves either
the old `latest` or the new one, both complete. Files hold only tensors and plain Python values
and load with torch.load(weights_only=True): no code runs from a checkpoint file.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Callable
from typing import IO, Any

import torch

LATEST = "latest"
_NAME = re.compile(r"^ckpt-(\d+)\.pt$")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, or does not fit the run."""


def checkpoint_name(step: int) -> str:
    return f"ckpt-{step:08d}.pt"


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # not possible on some platforms (Windows); the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str, write: Callable[[IO[bytes]], None]) -> None:
    """Write `path` through a temporary file and a rename, so readers never see a partial file."""
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f".{os.path.basename(path)}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    _fsync_dir(folder)


def list_checkpoints(run_dir: str) -> list[tuple[int, str]]:
    """(step, path) of the checkpoints in `run_dir`, oldest first."""
    found = []
    for path in glob.glob(os.path.join(run_dir, "ckpt-*.pt")):
        m = _NAME.match(os.path.basename(path))
        if m:
            found.append((int(m.group(1)), path))
    return sorted(found)


def save_checkpoint(run_dir: str, state: dict[str, Any], step: int, keep: int) -> str:
    """Write `state` as the checkpoint of `step`, point `latest` at it, delete all but the newest `keep`."""
    path = os.path.join(run_dir, checkpoint_name(step))
    atomic_write(path, lambda f: torch.save(state, f))
    atomic_write(os.path.join(run_dir, LATEST), lambda f: f.write(f"{os.path.basename(path)}\n".encode()))
    for _, old in list_checkpoints(run_dir)[:-keep]:
        if os.path.abspath(old) != os.path.abspath(path):
            os.remove(old)
    return path


def remove_temporaries(run_dir: str) -> None:
    """Delete temporary files left by a process killed while writing."""
    for path in glob.glob(os.path.join(run_dir, ".*.tmp-*")):
        os.remove(path)


def latest_checkpoint(run_dir: str) -> str | None:
    """The checkpoint `latest` names in `run_dir`, or None when the folder has none."""
    pointer = os.path.join(run_dir, LATEST)
    if not os.path.isfile(pointer):
        return None
    with open(pointer, encoding="utf-8") as f:
        name = f.read().strip()
    path = os.path.join(run_dir, name)
    if not _NAME.match(name) or not os.path.isfile(path):
        raise CheckpointError(f"{pointer} names {name!r}, which is not a checkpoint in {run_dir!r}")
    return path


def find_checkpoint(run_or_checkpoint: str) -> str:
    """A checkpoint file given itself or a run folder (then its `latest`)."""
    if os.path.isdir(run_or_checkpoint):
        path = latest_checkpoint(run_or_checkpoint)
        if path is None:
            raise CheckpointError(f"{run_or_checkpoint!r} holds no checkpoint (no 'latest' file)")
        return path
    if os.path.isfile(run_or_checkpoint):
        return run_or_checkpoint
    raise CheckpointError(f"no such run folder or checkpoint file: {run_or_checkpoint!r}")


def load_checkpoint(path: str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load with weights_only=True: tensors and plain containers only."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several types for corrupt or unsafe files
        raise CheckpointError(f"cannot load checkpoint {path!r}: {err}") from err
    if not isinstance(state, dict) or "config" not in state or "step" not in state:
        raise CheckpointError(f"{path!r} is not a gancore checkpoint")
    return state
