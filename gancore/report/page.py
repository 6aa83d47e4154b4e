"""The report's index.html: plain HTML and CSS (no script, no network), every file it shows beside it."""

from __future__ import annotations

import html
import os
import shutil
import time

import yaml

from gancore.report.plots import Panel
from gancore.report.run import Run
from gancore.report.samples import SAMPLE_NAME, SampleFile, load_fixed_inputs

#: Sample grids narrower than this are shown scaled up by a whole factor (pixelated), so small ones stay visible.
MIN_GRID_WIDTH = 256
#: Lines of a text sample shown on the page.
TEXT_LINES = 40
#: matplotlib's default colour cycle ("C0", "C1", ...), for run names to match their curves.
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
          "#17becf")
#: Seconds after which a page of an unfinished run reloads itself (a meta refresh: no script).
RELOAD_SECONDS = 60

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 16px 24px; color: #222; background: #fff; }
h1 { font-size: 22px; margin: 0 0 8px; } h1 small { color: #666; font-weight: normal; }
h2 { font-size: 17px; margin: 22px 0 8px; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; } td, th { padding: 2px 10px 2px 0; text-align: left; vertical-align: top; }
th { color: #555; font-weight: 600; } .num { text-align: right; font-variant-numeric: tabular-nums; }
.curves { display: grid; grid-template-columns: repeat(auto-fill, minmax(360px, 1fr)); gap: 8px; }
.curves img { width: 100%; max-width: 480px; }
.samples { display: flex; flex-wrap: wrap; gap: 14px; align-items: flex-start; }
figure { margin: 0; } figcaption { color: #555; font-size: 12px; }
.samples img { image-rendering: pixelated; max-width: 100%; border: 1px solid #ccc; }
pre { background: #f6f6f6; padding: 6px 8px; overflow-x: auto; font-size: 12px; margin: 0; }
details { margin: 8px 0; } summary { cursor: pointer; color: #246; }
.note { color: #666; font-size: 12px; }
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, s = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {s:02d} s"
    hours, m = divmod(minutes, 60)
    return f"{hours} h {m:02d} min"


def _size(n: float) -> str:
    unit = "B"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            break
        n /= 1024
    return f"{n:.0f} B" if unit == "B" else f"{n:.1f} {unit}"


def _when(seconds: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds)) if seconds else "-"


def _family_summary(name: str) -> str:
    from gancore.families import get_family

    try:
        return get_family(name).summary
    except ValueError:  # a family this installation does not have
        return ""


def facts(run: Run) -> list[tuple[str, str]]:
    """The header of a run: what it is, how far it is, where it ran."""
    total = run.total_steps
    done = f"{run.step}" + (f" / {total} ({100 * run.step / total:.0f}%)" if total else "")
    rate = run.recent("images_per_s")
    eta = run.eta_seconds()
    session = run.sessions[-1] if run.sessions else {}
    hosts = sorted({s.get("host", "?") for s in run.sessions})
    rows = [("family", f"{run.family}" + (f": {_family_summary(run.family)}" if run.family != "?" else "")),
            ("steps", done),
            ("images/s", f"{rate:.3g}" if rate is not None else "-"),
            ("ETA", "finished" if run.finished else (duration(eta) if eta is not None else "-")),
            ("non-finite steps", str(run.nonfinite_steps)),
            ("host", ", ".join(hosts) if hosts else "not recorded"),
            ("gancore", str(session.get("gancore", "-"))
             + (f" (torch {session['torch']}, python {session.get('python', '?')})" if "torch" in session else "")),
            ("device", f"{session['device']} x {session.get('processes', 1)} process(es)" if "device" in session
             else "-"),
            ("sessions", str(len(run.sessions)) + (f", last resumed from {session['resumed_from']}"
                                                   if session.get("resumed_from") else "")),
            ("last log record", _when(run.updated))]
    return rows


def _facts_table(rows: list[tuple[str, str]]) -> str:
    return "<table class=\"facts\">" + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows) \
        + "</table>"


def _config_block(run: Run) -> str:
    text = yaml.safe_dump(run.config, sort_keys=False) if run.config else "(no config.yaml)"
    return f"<details><summary>config of {_e(run.name)}</summary><pre>{_e(text)}</pre></details>"


def _curves(panels: list[Panel] | None) -> str:
    if panels is None:
        return ("<p class=\"note\">No curves: they are drawn with matplotlib, which is not installed "
                "(pip install matplotlib).</p>")
    if not panels:
        return "<p class=\"note\">No scalars logged yet (log.jsonl is empty).</p>"
    return "<div class=\"curves\">" + "".join(
        f"<figure><img src=\"{_e(p.filename)}\" alt=\"{_e(p.title)}\" width=\"480\" height=\"300\"></figure>"
        for p in panels) + "</div>"


def _copy(src: str, dst: str) -> None:
    """A hard link where the file system allows (no space used), else a copy; kept when already current."""
    if os.path.exists(dst):
        if os.path.samefile(src, dst) or (os.path.getsize(dst) == os.path.getsize(src)
                                          and os.path.getmtime(dst) >= os.path.getmtime(src)):
            return
        os.remove(dst)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def sync_samples(samples: list[SampleFile], folder: str) -> dict[str, str]:
    """The run's sample pictures into `folder` (stale ones deleted); their names relative to the page's."""
    os.makedirs(folder, exist_ok=True)
    wanted = {os.path.basename(s.path) for s in samples if s.kind == "image"}
    for name in os.listdir(folder):
        if SAMPLE_NAME.match(name) and name not in wanted:
            os.remove(os.path.join(folder, name))
    for s in samples:
        if s.kind == "image":
            _copy(s.path, os.path.join(folder, os.path.basename(s.path)))
    return {s.path: os.path.basename(s.path) for s in samples if s.kind == "image"}


def _image_tag(path: str, src: str, alt: str) -> str:
    from PIL import Image

    with Image.open(path) as im:
        width, height = im.size
    scale = max(1, -(-MIN_GRID_WIDTH // max(1, width)))
    return (f"<img src=\"{_e(src)}\" alt=\"{_e(alt)}\" width=\"{width * scale}\" height=\"{height * scale}\" "
            "loading=\"lazy\">")


def _text(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    more = f"\n... {len(lines) - TEXT_LINES} more lines" if len(lines) > TEXT_LINES else ""
    return f"<pre>{_e(chr(10).join(lines[:TEXT_LINES]) + more)}</pre>"


def _sample_figure(sample: SampleFile, src: str | None, caption: str) -> str:
    body = _image_tag(sample.path, src, caption) if sample.kind == "image" else _text(sample.path)
    return f"<figure>{body}<figcaption>{_e(caption)}</figcaption></figure>"


def sample_layout(run: Run) -> str:
    """What one sample picture of the run shows, from the fixed inputs it saved."""
    try:
        inputs = load_fixed_inputs(run.path)
    except ValueError:
        inputs = None
    if inputs and "targets" in inputs:
        return "each strip: input | output | target"
    if inputs and "inputs" in inputs:
        return "each strip: input | output"
    if any(s.kind == "text" for s in run.samples):
        return "decoded sample text"
    return "one sample per cell"


def _samples_section(run: Run, srcs: dict[str, str], prefix: str) -> str:
    if not run.samples:
        return "<p class=\"note\">No sample pictures yet (they are written every log.sample_every steps).</p>"
    note = (f"<p class=\"note\">At the run's fixed inputs (sample_inputs.pt), newest first; "
            f"{_e(sample_layout(run))}.</p>")
    figures = [_sample_figure(s, prefix + srcs[s.path] if s.path in srcs else None, s.label) for s in run.samples]
    return note + "<div class=\"samples\">" + "".join(figures) + "</div>"


def _checkpoints(run: Run) -> str:
    if not run.checkpoints:
        return "<p class=\"note\">No checkpoint kept.</p>"
    rows = "".join(f"<tr><td>{_e(c.name)}</td><td class=\"num\">{c.step}</td><td class=\"num\">{_size(c.bytes)}"
                   f"</td><td>{'latest' if c.latest else ''}</td></tr>" for c in reversed(run.checkpoints))
    return f"<table><tr><th>file</th><th>step</th><th>size</th><th></th></tr>{rows}</table>"


def _page(title: str, body: str, live: bool) -> str:
    reload = f"<meta http-equiv=\"refresh\" content=\"{RELOAD_SECONDS}\">" if live else ""
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">{reload}<title>{_e(title)}</title>"
            f"<style>{_STYLE}</style></head><body>\n{body}\n<p class=\"note\">Written by gancore report at "
            f"{_e(_when(time.time()))}.</p></body></html>\n")


def run_page(run: Run, panels: list[Panel] | None, out_dir: str) -> str:
    """The page of one run; its sample pictures are synced into out_dir/samples."""
    srcs = sync_samples(run.samples, os.path.join(out_dir, "samples"))
    body = (f"<h1>{_e(run.name)} <small>{_e(run.family)}</small></h1>" + _facts_table(facts(run))
            + _config_block(run) + "<h2>Curves</h2>" + _curves(panels)
            + "<h2>Samples</h2>" + _samples_section(run, srcs, "samples/")
            + "<h2>Checkpoints kept</h2>" + _checkpoints(run))
    return _page(f"gancore report: {run.name}", body, live=not run.finished)


def _flatten(d: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _differences(runs: list[Run]) -> str:
    flat = [_flatten(r.config) for r in runs]
    keys = sorted({k for f in flat for k in f})
    differing = [k for k in keys if len({repr(f.get(k, "<unset>")) for f in flat}) > 1]
    if not differing:
        return "<p class=\"note\">The runs' configs are identical.</p>"
    head = "<tr><th>setting</th>" + "".join(f"<th>{_e(r.name)}</th>" for r in runs) + "</tr>"
    rows = "".join("<tr><td>" + _e(k) + "</td>" + "".join(f"<td>{_e(f.get(k, '<unset>'))}</td>" for f in flat)
                   + "</tr>" for k in differing)
    return f"<table>{head}{rows}</table>"


def compare_page(runs: list[Run], panels: list[Panel] | None, out_dir: str) -> str:
    """The page overlaying several runs: a row of facts per run, their config differences, shared curve
    panels, and each run's samples (newest first) in a section of its own."""
    keys = ("family", "steps", "images/s", "ETA", "non-finite steps", "host")
    head = "<tr><th>run</th>" + "".join(f"<th>{_e(k)}</th>" for k in keys) + "</tr>"
    rows = ""
    for i, run in enumerate(runs):
        values = dict(facts(run))
        values["family"] = run.family
        rows += f"<tr><td><span style=\"color:{COLORS[i % len(COLORS)]}\">{_e(run.name)}</span></td>" + "".join(
            f"<td>{_e(values[k])}</td>" for k in keys) + "</tr>"
    body = (f"<h1>{len(runs)} runs <small>{_e(', '.join(r.name for r in runs))}</small></h1><table>{head}{rows}"
            "</table><h2>Settings that differ</h2>" + _differences(runs)
            + "".join(_config_block(r) for r in runs) + "<h2>Curves</h2>" + _curves(panels))
    for i, run in enumerate(runs):
        folder = f"samples-{i + 1}"
        srcs = sync_samples(run.samples, os.path.join(out_dir, folder))
        body += (f"<h2>Samples of {_e(run.name)}</h2>" + _samples_section(run, srcs, folder + "/")
                 + "<h3>Checkpoints kept</h3>" + _checkpoints(run))
    return _page(f"gancore report: {len(runs)} runs", body, live=not all(r.finished for r in runs))
