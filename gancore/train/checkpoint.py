"""Checkpoint files of a run folder: atomic writes, the `latest` pointer, the last K kept.

A checkpoint is written to a temporary file in the same folder, flushed to disk and renamed over
its final name (os.replace is atomic on POSIX and Windows), and only then does `latest` (a one-line
text file, itself replaced atomically) name it. A run killed at any moment therefore leaves either
the old `latest` or the new one, both complete, or (killed between the two writes of a first
checkpoint) a checkpoint and no `latest`, from which a resume starts. Files hold only tensors and
plain Python values and load with torch.load(weights_only=True): no code runs from a checkpoint file.

What a checkpoint holds is captured from, and restored into, a Trainer by `capture_state` and
`restore_state` below, with each process's RNG states (`capture_rng` / `restore_rng`).

One run at a time writes into a folder: it holds an exclusive lock (flock) on its `.lock` file,
which names its pid. The kernel drops the lock when the process dies, so a stale one never blocks.
"""

from __future__ import annotations

import glob
import os
import random
import re
import warnings
from collections.abc import Mapping
from typing import IO, TYPE_CHECKING, Any

import numpy as np
import torch

from gancore.errors import ConfigError
from gancore.train.config import config_diff
from gancore.train.optimizers import match_state_layouts, optimizer_impl_flags
from gancore.utils.files import atomic_write

if TYPE_CHECKING:
    from gancore.train.trainer import Trainer

try:
    import fcntl
except ImportError:  # Windows: no flock, so no run-folder lock
    fcntl = None

LATEST = "latest"
LOCK = ".lock"
_NAME = re.compile(r"^ckpt-(\d+)\.pt$")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, or does not fit the run."""


class ConfigMismatchError(ConfigError):
    """A run was resumed with a config that differs from the checkpoint's (without force)."""


class RunFolderError(RuntimeError):
    """The run folder cannot be used: it cannot be written, another run holds it, or it holds a run."""


def checkpoint_name(step: int) -> str:
    return f"ckpt-{step:08d}.pt"


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


def holds_run(run_dir: str) -> bool:
    """Whether `run_dir` holds a run's checkpoints (or a `latest` pointer)."""
    return bool(list_checkpoints(run_dir)) or os.path.lexists(os.path.join(run_dir, LATEST))


def remove_run(run_dir: str) -> None:
    """Delete the checkpoints and the `latest` pointer of the run in `run_dir` (a forced fresh start)."""
    for path in [p for _, p in list_checkpoints(run_dir)] + [os.path.join(run_dir, LATEST)]:
        if os.path.lexists(path):
            os.remove(path)


def _first_intact(paths: list[str]) -> tuple[str, dict[str, Any]] | None:
    for path in paths:
        try:
            return path, load_checkpoint(path)
        except CheckpointError:
            continue
    return None


def load_latest(run_dir: str) -> tuple[str, dict[str, Any]]:
    """(path, state) of the checkpoint a run continues from: the one `latest` names, else (no or a
    dangling pointer: the run was killed between writes) the newest readable one, with a warning.

    A damaged checkpoint named by `latest` is an error that names the newest intact older one and how
    to resume from it: damage is not a state a run leaves, so the choice to go back is the user's."""
    found = [path for _, path in reversed(list_checkpoints(run_dir))]
    if not found:
        raise CheckpointError(f"{run_dir!r} holds no checkpoint to resume from")
    try:
        named = latest_checkpoint(run_dir)
    except CheckpointError as err:
        named, reason = None, str(err)
    else:
        reason = f"{run_dir!r} has no {LATEST!r} pointer"
    if named is None:
        intact = _first_intact(found)
        if intact is None:
            raise CheckpointError(f"{reason}, and none of its checkpoints can be read (newest: {found[0]})")
        warnings.warn(f"{reason}; continuing from its newest readable checkpoint {intact[0]}", stacklevel=2)
        return intact
    try:
        return named, load_checkpoint(named)
    except CheckpointError as err:
        older = _first_intact([p for p in found if os.path.abspath(p) != os.path.abspath(named)])
        if older is None:
            raise CheckpointError(f"{err}; the run folder holds no other readable checkpoint") from None
        raise CheckpointError(
            f"{err}. The newest intact checkpoint is {older[0]} (step {older[1]['step']}): to resume from it, "
            f"point the run at it (echo {os.path.basename(older[0])} > {os.path.join(run_dir, LATEST)}) "
            f"and run with --resume again") from None


def load_run_or_checkpoint(run_or_checkpoint: str) -> tuple[str, dict[str, Any]]:
    """(path, state) of a checkpoint file given itself, or of a run folder's latest (see load_latest)."""
    if os.path.isdir(run_or_checkpoint):
        return load_latest(run_or_checkpoint)
    if os.path.isfile(run_or_checkpoint):
        return run_or_checkpoint, load_checkpoint(run_or_checkpoint)
    raise CheckpointError(f"no such run folder or checkpoint file: {run_or_checkpoint!r}")


def lock_run_dir(run_dir: str) -> IO[str] | None:
    """Take the run folder's exclusive lock and write this pid into it; keep the returned file open
    while writing (closing it releases the lock). A folder another live process holds is refused."""
    if fcntl is None:
        return None
    path = os.path.join(run_dir, LOCK)
    try:
        handle = open(path, "a+", encoding="utf-8")  # not "w": the holder's pid must stay readable
    except OSError as err:
        raise RunFolderError(f"{run_dir!r}: cannot create its lock file: {err.strerror or err}") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise RunFolderError(f"{run_dir!r} is in use by another run (pid {holder}): wait for it to end, "
                             "or choose another --out") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def load_checkpoint(path: str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load with weights_only=True: tensors and plain containers only."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several types for corrupt or unsafe files
        raise CheckpointError(f"cannot load checkpoint {path!r}: {err}") from err
    if not isinstance(state, dict) or "config" not in state or "step" not in state:
        raise CheckpointError(f"{path!r} is not a gancore checkpoint")
    return state


# -- a trainer's state -----------------------------------------------------------------------------

def capture_rng(device: torch.device) -> dict:
    """This process's torch, Python, NumPy (and CUDA) generator states."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": [py_version, list(py_state), py_gauss],
        "numpy": {"name": np_name, "keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
                  "has_gauss": int(np_has_gauss), "gauss": float(np_gauss)},
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(state: Mapping, device: torch.device) -> None:
    """Undo capture_rng."""
    torch.set_rng_state(state["torch"].cpu())
    version, py_state, gauss = state["python"]
    random.setstate((version, tuple(py_state), gauss))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].cpu().numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["gauss"]))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


def capture_state(trainer: Trainer) -> dict:
    """Everything needed to continue `trainer` exactly. Call on every process (RNG states are gathered)."""
    return {
        "format": 1,
        "step": trainer.step,
        "images_seen": trainer.images_seen,
        "nonfinite_steps": trainer.nonfinite_steps,
        "config": trainer.config,
        "data_spec": trainer.spec.as_dict(),
        "nets": {n: m.state_dict() for n, m in trainer.nets.items()},
        "ema": {n: e.state_dict() for n, e in trainer.ema.items()},
        "optimizers": {n: o.state_dict() for n, o in trainer.optimizers.items()},
        "scaler": trainer.scaler.state_dict(),
        "family": trainer.family.state_dict(),
        # The learning-rate schedule is a function of the step and the config above.
        "schedule": {"kind": trainer.train_config.lr_schedule, "steps": trainer.train_config.steps,
                     "warmup_steps": trainer.train_config.warmup_steps,
                     "factor": trainer._lr_factor(trainer.step)},
        "rng": {"per_rank": trainer.dist.gather_objects(capture_rng(trainer.device)),
                "draws": trainer.draws.generator.get_state()},
    }

def restore_state(trainer: Trainer, path: str, state: Mapping[str, Any], *, force: bool = False) -> None:
    """Continue `trainer` from the loaded checkpoint `state` of `path`; refuses a different config unless
    `force`."""
    saved = state["config"]
    if saved.get("family") != trainer.config["family"]:
        raise ConfigMismatchError(f"{path} is a {saved.get('family')!r} run, not "
                                  f"{trainer.config['family']!r}")
    diff = config_diff(saved, trainer.config)
    if trainer.train_config.lr_schedule != "constant" and saved["train"]["steps"] != trainer.train_config.steps:
        diff.append(f"train.steps: {saved['train']['steps']} -> {trainer.train_config.steps} (the "
                    f"{trainer.train_config.lr_schedule} learning-rate schedule spans train.steps)")
    if diff and not force:
        raise ConfigMismatchError(
            f"the config differs from the one of {path}:\n  " + "\n  ".join(diff)
            + "\nresume with the same settings, or force it (--force) to accept these changes")
    try:
        for n, module in trainer.nets.items():
            module.load_state_dict(state["nets"][n])
        for n, ema in trainer.ema.items():
            if n in state["ema"]:
                ema.load_state_dict(state["ema"][n])
            else:
                ema.module.load_state_dict(state["nets"][n])
        for n, optimizer in trainer.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][n])
            match_state_layouts(optimizer)
            spec = trainer.specs[n]  # hyper-parameters come from the current config (they may be forced)
            impl = optimizer_impl_flags(spec.optimizer, trainer.train_config.optimizer_impl)
            for group in optimizer.param_groups:
                group.update(betas=spec.betas, weight_decay=spec.weight_decay, **impl)
    except (KeyError, RuntimeError) as err:
        raise CheckpointError(f"{path} does not fit the networks of this config: {err}") from err
    trainer.scaler.load_state_dict(state["scaler"])
    trainer.family.load_state_dict(state.get("family", {}))
    trainer.step = int(state["step"])
    trainer.images_seen = int(state["images_seen"])
    trainer.nonfinite_steps = int(state["nonfinite_steps"])
    per_rank = state["rng"]["per_rank"]
    if len(per_rank) == trainer.dist.world_size:
        restore_rng(per_rank[trainer.dist.rank], trainer.device)
    else:
        warnings.warn(f"{path} was written by {len(per_rank)} processes, this run has "
                      f"{trainer.dist.world_size}: per-process RNG streams start afresh", stacklevel=2)
    trainer.draws.generator.set_state(state["rng"]["draws"].cpu())
    trainer.resumed_from = trainer.last_checkpoint = path
    trainer.checkpointed_step = trainer.step
