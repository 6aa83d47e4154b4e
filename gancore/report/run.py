"""What a run folder tells about its run, read without loading any checkpoint: its config, the scalars of
log.jsonl as series, its checkpoints, its sample pictures and the sessions that trained it."""

from __future__ import annotations

import json
import math
import os
import socket
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

import yaml

from gancore.report.samples import SampleFile, sample_files
from gancore.train import checkpoint as ckpt

SESSIONS = "sessions.jsonl"


class ReportError(ValueError):
    """A folder the report cannot be built from (no run in it, or an output folder that cannot be used)."""


@dataclass
class Series:
    steps: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)

    def last_finite(self) -> float | None:
        return next((v for v in reversed(self.values) if math.isfinite(v)), None)


@dataclass
class Checkpoint:
    name: str
    step: int
    bytes: int
    latest: bool


@dataclass
class Run:
    path: str
    name: str
    config: dict[str, Any]
    series: dict[str, Series]
    checkpoints: list[Checkpoint]
    samples: list[SampleFile]
    sessions: list[dict[str, Any]]
    updated: float | None  # when log.jsonl was last written (seconds since the epoch)

    @property
    def family(self) -> str:
        return str(self.config.get("family", "?"))

    @property
    def total_steps(self) -> int | None:
        steps = (self.config.get("train") or {}).get("steps")
        return steps if isinstance(steps, int) else None

    @property
    def step(self) -> int:
        """Steps done, as far as the log and the checkpoints know."""
        logged = max((s.steps[-1] for s in self.series.values() if s.steps), default=0)
        return max([logged] + [c.step for c in self.checkpoints])

    def recent(self, key: str, n: int = 5) -> float | None:
        """The median of the last n finite values of a series (a steadier rate than the last alone)."""
        series = self.series.get(key)
        values = [v for v in (series.values if series else []) if math.isfinite(v)][-n:]
        return statistics.median(values) if values else None

    @property
    def finished(self) -> bool:
        return self.total_steps is not None and self.step >= self.total_steps

    def eta_seconds(self) -> float | None:
        seconds = self.recent("sec_per_step")
        if self.total_steps is None or seconds is None:
            return None
        return max(0, self.total_steps - self.step) * seconds

    @property
    def nonfinite_steps(self) -> int:
        series = self.series.get("nonfinite_steps")
        value = series.last_finite() if series else None
        return int(value) if value is not None else 0


def replace_file(path: str, write: Callable[[IO[bytes]], None]) -> None:
    """Write `path` through a temporary file and a rename, so that a browser reloading the page never reads a
    half-written file (without atomic_write's fsyncs: a report is rebuilt, not recovered)."""
    tmp = os.path.join(os.path.dirname(os.path.abspath(path)), f".{os.path.basename(path)}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _read_config(run_dir: str) -> dict[str, Any]:
    path = os.path.join(run_dir, "config.yaml")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
        if isinstance(data, dict):
            return data
    return {}


def _read_series(run_dir: str) -> dict[str, Series]:
    series: dict[str, Series] = {}
    path = os.path.join(run_dir, "log.jsonl")
    if not os.path.isfile(path):
        return series
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:  # a line cut short by a kill
                continue
            step = record.get("step") if isinstance(record, dict) else None
            if not isinstance(step, int):
                continue
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    s = series.setdefault(key, Series())
                    s.steps.append(step)
                    s.values.append(float(value))
    return series


def _read_checkpoints(run_dir: str) -> list[Checkpoint]:
    try:
        latest = ckpt.latest_checkpoint(run_dir)
    except ckpt.CheckpointError:  # a dangling pointer: the list below still shows what is there
        latest = None
    return [Checkpoint(os.path.basename(p), step, os.path.getsize(p),
                       latest is not None and os.path.abspath(p) == os.path.abspath(latest))
            for step, p in ckpt.list_checkpoints(run_dir)]


def read_sessions(run_dir: str) -> list[dict[str, Any]]:
    path = os.path.join(run_dir, SESSIONS)
    if not os.path.isfile(path):
        return []
    sessions = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                sessions.append(record)
    return sessions


def session_record(device: str, processes: int, resumed_from: str | None) -> dict[str, Any]:
    """Who trains now: host, versions and device, as written to the run's sessions.jsonl."""
    import torch

    import gancore

    return {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time(),
            "gancore": gancore.__version__, "torch": torch.__version__,
            "python": sys.version.split()[0], "device": device, "processes": processes,
            "resumed_from": os.path.basename(resumed_from) if resumed_from else None}


def read_run(run_dir: str) -> Run:
    """Everything the report shows of the run in `run_dir`."""
    if not os.path.isdir(run_dir):
        raise ReportError(f"{run_dir!r}: no such run folder")
    config = _read_config(run_dir)
    log = os.path.join(run_dir, "log.jsonl")
    if not config and not os.path.isfile(log):
        raise ReportError(f"{run_dir!r} holds no run (no config.yaml and no log.jsonl)")
    name = os.path.basename(os.path.normpath(os.path.abspath(run_dir)))
    return Run(path=run_dir, name=name, config=config, series=_read_series(run_dir),
               checkpoints=_read_checkpoints(run_dir), samples=sample_files(run_dir),
               sessions=read_sessions(run_dir), updated=os.path.getmtime(log) if os.path.isfile(log) else None)
