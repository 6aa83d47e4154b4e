"""What a run writes while it trains: a JSONL log, TensorBoard events (when installed), a progress bar."""

from __future__ import annotations

import json
import os
import sys
import warnings
from collections.abc import Mapping

from tqdm import tqdm


class RunLog:
    """Records go to `log.jsonl` (one JSON object per line, appended across resumes) and to
    TensorBoard under `tb/`; the progress bar shows steps, ETA, losses and images/s. Only the
    main process writes; on the others every method is a no-op."""

    def __init__(self, run_dir: str | None, *, total_steps: int, start_step: int, tensorboard: bool,
                 progress: bool, enabled: bool = True) -> None:
        self.enabled = enabled
        self._jsonl = None
        self._tb = None
        if enabled and run_dir is not None:
            self._jsonl = open(os.path.join(run_dir, "log.jsonl"), "a", encoding="utf-8")
            if tensorboard:
                self._tb = _summary_writer(os.path.join(run_dir, "tb"))
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


def _summary_writer(path: str):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return SummaryWriter(path)
