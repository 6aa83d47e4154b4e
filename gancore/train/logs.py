"""What a run writes while it trains: a JSONL log, TensorBoard events (when installed), a progress bar."""

from __future__ import annotations

import json
import os
import sys
import warnings
from collections.abc import Mapping

from tqdm import tqdm

from gancore.utils.files import atomic_write


class RunLog:
    """Records go to `log.jsonl` (one JSON object per line, appended across resumes) and to
    TensorBoard under `tb/`; the progress bar shows steps, ETA, losses and images/s. Only the
    main process writes; on the others every method is a no-op.

    A run starting at `start_step` first drops the records of later steps: a run killed after its
    last checkpoint logged steps that its resumption trains and logs again."""

    def __init__(self, run_dir: str | None, *, total_steps: int, start_step: int, tensorboard: bool,
                 progress: bool, enabled: bool = True) -> None:
        self.enabled = enabled
        self._jsonl = None
        self._tb = None
        if enabled and run_dir is not None:
            path = os.path.join(run_dir, "log.jsonl")
            _truncate_jsonl(path, start_step)
            self._jsonl = open(path, "a", encoding="utf-8")
            if tensorboard:
                self._tb = _summary_writer(os.path.join(run_dir, "tb"), purge_step=start_step + 1)
        self._bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True,
                         disable=not (enabled and progress), file=sys.stderr, mininterval=0.5)

    def record(self, step: int, values: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        if self._jsonl is not None:
            self._jsonl.write(json.dumps({"step": step, **values}) + "\n")
            self._jsonl.flush()
        if self._tb is not None:
            for key, value in values.items():
                self._tb.add_scalar(key, value, step)
            self._tb.flush()

    def advance(self, steps: int = 1) -> None:
        self._bar.update(steps)

    def show(self, values: Mapping[str, float]) -> None:
        self._bar.set_postfix({k: f"{v:.3g}" for k, v in values.items()}, refresh=False)

    def write(self, message: str) -> None:
        """A line above the progress bar (main process only)."""
        if self.enabled:
            self._bar.write(message, file=sys.stderr)

    def close(self) -> None:
        self._bar.close()
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def _step_of(line: str) -> int | None:
    try:
        record = json.loads(line)
    except ValueError:  # a line cut short by a kill
        return None
    step = record.get("step") if isinstance(record, dict) else None
    return step if isinstance(step, int) else None


def _truncate_jsonl(path: str, last_step: int) -> None:
    """Keep only the records of steps up to `last_step` (atomically rewritten, when any is dropped)."""
    if not os.path.exists(path):
        return
    with open(path, encoding="utf-8") as f:
        lines = f.readlines()
    kept = [line for line in lines if (step := _step_of(line)) is not None and step <= last_step]
    if len(kept) != len(lines):
        atomic_write(path, lambda f: f.write("".join(kept).encode("utf-8")))


def _summary_writer(path: str, purge_step: int):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return SummaryWriter(path, purge_step=purge_step)
