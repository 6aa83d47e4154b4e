"""The run report: a static page (index.html + PNGs, no script, no network) to judge a run by looking at it.

`build_report([RUN])` writes RUN/report/: the run's family, config, host, version, progress, images/s and
ETA; its curves (plots.py); its sample pictures over time at fixed inputs, newest first (samples.py); the
non-finite step count and the checkpoints kept. `build_report([RUN_A, RUN_B, ...], out)` overlays several
runs. During training the trainer calls `refresh(trainer)` after each sample picture (log.report).
"""

from __future__ import annotations

import json
import os
import socket
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

from gancore.report.page import compare_page, run_page
from gancore.report.plots import draw_panels
from gancore.report.run import SESSIONS, ReportError, read_run, read_sessions, replace_file, session_record
from gancore.report.samples import (
    SAMPLE_NAME,
    fixed_inputs,
    load_fixed_inputs,
    save_fixed_inputs,
    save_sample_picture,
)

if TYPE_CHECKING:
    from gancore.train.trainer import Trainer

REPORT_DIR = "report"


def _check_out(out: str, runs: Sequence[str]) -> None:
    real = os.path.realpath(out)
    for run in runs:
        if real in (os.path.realpath(run), os.path.realpath(os.path.join(run, "samples"))):
            raise ReportError(f"--out {out!r} is the run folder {run!r} itself (or its samples/); the report "
                              f"needs a folder of its own, e.g. {os.path.join(run, REPORT_DIR)}")
    if os.path.exists(out) and not os.path.isdir(out):
        raise ReportError(f"--out {out!r} is a file, not a folder")
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as err:
        raise ReportError(f"--out {out!r}: cannot create the folder: {err.strerror or err}") from None
    if not os.access(out, os.W_OK):
        raise ReportError(f"--out {out!r} is not writable")


def build_report(runs: Sequence[str], out: str | None = None) -> str:
    """Write the report of the run folder(s) `runs` to `out` and return the path of its index.html.

    One run: its page, by default in RUN/report. Several: their curves overlaid, by default in ./report."""
    if not runs:
        raise ReportError("give at least one run folder")
    if len(set(map(os.path.realpath, runs))) != len(runs):
        raise ReportError("a run folder is given twice")
    out = out if out is not None else (os.path.join(runs[0], REPORT_DIR) if len(runs) == 1 else REPORT_DIR)
    loaded = [read_run(r) for r in runs]
    _check_out(out, runs)
    panels = draw_panels(loaded, out)
    text = run_page(loaded[0], panels, out) if len(loaded) == 1 else compare_page(loaded, panels, out)
    index = os.path.join(out, "index.html")
    replace_file(index, lambda f: f.write(text.encode("utf-8")))
    return index


def record_session(trainer: Trainer) -> None:
    """Append who trains now to the run's sessions.jsonl, once per process and run folder."""
    sessions = read_sessions(trainer.out_dir)
    if sessions and sessions[-1].get("pid") == os.getpid() and sessions[-1].get("host") == socket.gethostname():
        return
    record = session_record(str(trainer.device), trainer.dist.world_size, trainer.resumed_from)
    with open(os.path.join(trainer.out_dir, SESSIONS), "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def start_run(run_dir: str, sample_inputs: dict, *, fresh: bool) -> None:
    """Save the run's sample inputs; a fresh start (not a resumption) first deletes an earlier run's sample
    pictures and sessions, which the report would otherwise show as this run's."""
    if fresh:
        samples = os.path.join(run_dir, "samples")
        for name in os.listdir(samples) if os.path.isdir(samples) else []:
            if SAMPLE_NAME.match(name):
                os.remove(os.path.join(samples, name))
        if os.path.isfile(os.path.join(run_dir, SESSIONS)):
            os.remove(os.path.join(run_dir, SESSIONS))
    save_fixed_inputs(run_dir, sample_inputs)


_refresh_failed: set[str] = set()


def refresh(trainer: Trainer) -> str | None:
    """The live report of a training run, in RUN/report (main process, after each sample picture). A report
    that cannot be written warns (once per run folder) and never stops the training it describes."""
    try:
        record_session(trainer)
        return build_report([trainer.out_dir])
    except Exception as err:  # noqa: BLE001 - an auxiliary page must not cost a run
        if trainer.out_dir not in _refresh_failed:
            _refresh_failed.add(trainer.out_dir)
            warnings.warn(f"log.report: the run report in {os.path.join(trainer.out_dir, REPORT_DIR)} could not "
                          f"be refreshed ({type(err).__name__}: {err}); training goes on", stacklevel=2)
        return None


__all__ = ["REPORT_DIR", "ReportError", "build_report", "fixed_inputs", "load_fixed_inputs", "read_run",
           "refresh", "save_fixed_inputs", "save_sample_picture", "start_run"]
