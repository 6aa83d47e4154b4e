"""The report's curves: one small PNG per panel, drawn with matplotlib's object API (no pyplot state, so it
is safe inside a training process whatever backend the user set).

Panels: one per phase loss (D, G, a regulariser's phase), one per other scalar a family logs (D/wdist,
D/gp, G/cycle_A, ...), one per metric (metrics/fid), then the gradient norms, images/s, and the learning
rate factor and non-finite step count where they say something. Each line is smoothed (a debiased
exponential moving average) with its raw values faint behind; the y axis is logarithmic when every value
is positive and they span more than `LOG_SPAN`. Several runs share the panels, one colour per run.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass

import numpy as np

from gancore.report.run import Run, Series, replace_file

#: max / min of a panel's values above which its y axis is logarithmic.
LOG_SPAN = 30.0
PANEL_SIZE = (4.8, 3.0)  # inches, at 100 dpi: 480 x 300 pixels
_SKIPPED = {"sec_per_step"}  # images_per_s says the same


@dataclass
class Panel:
    title: str
    lines: list[tuple[str, Series]]

    @property
    def filename(self) -> str:
        return "curve-" + re.sub(r"[^A-Za-z0-9]+", "-", self.title).strip("-").lower() + ".png"


def _order(key: str) -> tuple:
    """Phase losses first, then the families' scalars, metrics, gradient norms and the trainer's own."""
    head, _, tail = key.partition("/")
    if key in ("images_per_s", "lr_factor", "nonfinite_steps"):
        return (5, ("images_per_s", "lr_factor", "nonfinite_steps").index(key), key)
    if not tail:
        return (3, 0, key)
    if head == "metrics":
        return (2, 0, key)
    if tail == "loss":
        return (0, 0, key)
    if tail == "grad_norm":
        return (4, 0, key)
    return (1, 0, key)


def _title(key: str) -> str:
    head, _, tail = key.partition("/")
    if tail == "loss":
        return f"{head} loss"
    if tail == "grad_norm":
        return f"{head} gradient norm"
    return {"images_per_s": "images/s", "lr_factor": "learning-rate factor",
            "nonfinite_steps": "steps with non-finite values"}.get(key, key)


def _says_something(key: str, runs: list[Run]) -> bool:
    """The learning-rate factor only when it moves, the non-finite count only when it is not zero."""
    values = [v for run in runs for v in (run.series[key].values if key in run.series else [])]
    if key == "lr_factor":
        return any(v != 1.0 for v in values)
    if key == "nonfinite_steps":
        return any(v != 0 for v in values)
    return True


def panels_of(runs: list[Run]) -> list[Panel]:
    """The panels of one run (its gradient norms in one panel) or of several overlaid (a line per run)."""
    keys = sorted({k for run in runs for k in run.series if k not in _SKIPPED}, key=_order)
    keys = [k for k in keys if _says_something(k, runs)]
    panels: list[Panel] = []
    if len(runs) == 1:
        (run,) = runs
        norms = [k for k in keys if k.endswith("/grad_norm")]
        for key in keys:
            if key in norms:
                if key == norms[0]:
                    panels.append(Panel("gradient norms", [(k.split("/")[0], run.series[k]) for k in norms]))
                continue
            panels.append(Panel(_title(key), [(key, run.series[key])]))
        return panels
    for key in keys:
        panels.append(Panel(_title(key), [(run.name, run.series[key]) for run in runs if key in run.series]))
    return panels


def smooth(values: np.ndarray) -> np.ndarray:
    """A debiased exponential moving average over the finite values (non-finite ones are carried over),
    as TensorBoard draws; its memory grows with the number of points (none for a handful)."""
    beta = min(0.9, max(0.0, 1.0 - 10.0 / max(1, len(values))))
    out = np.empty_like(values)
    mean, weight = 0.0, 0.0
    for i, v in enumerate(values):
        if math.isfinite(v):
            mean, weight = beta * mean + (1 - beta) * v, beta * weight + (1 - beta)
        out[i] = mean / weight if weight else math.nan
    return out


def _log_decades(lines: list[tuple[str, Series]]) -> float | None:
    """The decades a panel's values span when its axis is logarithmic (all positive, a span over LOG_SPAN)."""
    values = np.array([v for _, s in lines for v in s.values if math.isfinite(v)])
    if values.size > 1 and bool((values > 0).all()) and values.max() / values.min() > LOG_SPAN:
        return math.log10(values.max() / values.min())
    return None


def draw(panel: Panel, path: str) -> None:
    """One panel as a PNG, written atomically (a browser reloading the page never sees half a file)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    fig = Figure(figsize=PANEL_SIZE, dpi=100)
    ax = fig.subplots()
    for i, (label, series) in enumerate(panel.lines):
        color = f"C{i % 10}"
        steps, values = np.asarray(series.steps), np.asarray(series.values, dtype=float)
        few = len(values) <= 3
        ax.plot(steps, values, color=color, alpha=1.0 if few else 0.25, lw=1, marker="o" if few else None,
                ms=3, label=label if few else None)
        if not few:
            ax.plot(steps, smooth(values), color=color, lw=1.8, label=label)
    decades = _log_decades(panel.lines)
    if decades is not None:
        ax.set_yscale("log")
        # Plain numbers at 1, 2, 5 x 10^k (at 10^k only over many decades): the default labels every minor tick.
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0) if decades <= 3 else (1.0,)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps
    ax.set_title(panel.title, fontsize=10)
    ax.set_xlabel("step", fontsize=8)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)
    if len(panel.lines) > 1:
        ax.legend(fontsize=7, loc="best")
    fig.subplots_adjust(left=0.14, right=0.97, bottom=0.15, top=0.9)  # fixed: tight_layout doubles the time
    replace_file(path, lambda f: fig.savefig(f, format="png"))


def draw_panels(runs: list[Run], out_dir: str) -> list[Panel] | None:
    """Every panel of `runs` as out_dir/curve-*.png; curves of panels that are gone are deleted. None when
    matplotlib (an optional dependency: pip install gancore[plot]) is missing."""
    try:
        import matplotlib
    except ImportError:
        matplotlib = None
    panels = panels_of(runs) if matplotlib is not None else []
    wanted = {p.filename for p in panels}
    for name in os.listdir(out_dir):
        if name.startswith("curve-") and name.endswith(".png") and name not in wanted:
            os.remove(os.path.join(out_dir, name))
    if matplotlib is None:
        return None
    for panel in panels:
        draw(panel, os.path.join(out_dir, panel.filename))
    return panels
