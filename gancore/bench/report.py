"""Turns benchmark rows into a console table, Markdown, JSON and a PNG plot."""

from __future__ import annotations

import json
import os
import platform
from collections import OrderedDict

import torch


def machine_info(device: str) -> dict:
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": _cpu_model(),
        "device": device,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def add_speedups(rows: list[dict]) -> None:
    """speedup = baseline ms / ms, within the same suite, case and allocator setting."""
    base = {(r["suite"], r["case"], r["alloc"]): r["ms"] for r in rows if r["contender"] == r["baseline"]}
    for r in rows:
        b = base.get((r["suite"], r["case"], r["alloc"]))
        r["speedup"] = b / r["ms"] if b and r.get("ms") else None
        if r.get("bytes") and r.get("ms"):
            r["gbps"] = r["bytes"] / (r["ms"] * 1e6)


def _table(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    allocs = list(OrderedDict.fromkeys(r["alloc"] for r in rows))
    grouped: OrderedDict = OrderedDict()
    for r in rows:
        grouped.setdefault((r["suite"], r["case"], r["contender"]), {})[r["alloc"]] = r
    header = ["suite", "case", "contender"]
    for a in allocs:
        header += [f"ms ({a})", f"x vs base ({a})", f"GB/s ({a})"]
    header.append("note")
    body = []
    for (suite, case, contender), by_alloc in grouped.items():
        line = [suite, case, contender]
        notes = []
        for a in allocs:
            r = by_alloc.get(a)
            if r is None:
                line += ["", "", ""]
                continue
            line.append(f"{r['ms']:.3f}" if r.get("ms") is not None else "n/a")
            line.append(f"{r['speedup']:.2f}x" if r.get("speedup") else "")
            line.append(f"{r['gbps']:.1f}" if r.get("gbps") else "")
            for note in (r.get("note"), f"peak {r['peak_mb']:.0f} MB ({a})" if r.get("peak_mb") else None):
                if note and note not in notes:
                    notes.append(note)
        line.append("; ".join(notes))
        body.append(line)
    return header, body


def format_console(rows: list[dict]) -> str:
    header, body = _table(rows)
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths)) for b in body]
    return "\n".join(lines)


def format_markdown(rows: list[dict], info: dict) -> str:
    header, body = _table(rows)
    out = ["# gancore benchmark results", ""]
    out += [f"- {k}: {v}" for k, v in info.items()]
    out += ["", "Speed-ups are against each suite's baseline contender in the same run and allocator "
            "setting; ms are medians of repeated runs.", ""]
    out.append("| " + " | ".join(header) + " |")
    out.append("|" + "---|" * len(header))
    out += ["| " + " | ".join(b) + " |" for b in body]
    return "\n".join(out) + "\n"


def write_plot(rows: list[dict], path: str) -> bool:
    """Horizontal bars of speed-up against the baseline; False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    plotted = [r for r in rows if r.get("speedup") and r["contender"] != r["baseline"]]
    if not plotted:
        return False
    labels = [f"{r['suite']}:{r['case']} {r['contender']} [{r['alloc']}]" for r in plotted]
    fig, ax = plt.subplots(figsize=(11, 0.28 * len(plotted) + 1.5))
    ax.barh(range(len(plotted)), [r["speedup"] for r in plotted], color="#3b7dd8")
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(plotted)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("speed-up vs baseline (higher is better)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_all(rows: list[dict], info: dict, out_dir: str) -> dict:
    os.makedirs(out_dir, exist_ok=True)
    paths = {"json": os.path.join(out_dir, "results.json"), "markdown": os.path.join(out_dir, "results.md")}
    with open(paths["json"], "w") as f:
        json.dump({"machine": info, "rows": rows}, f, indent=1)
    with open(paths["markdown"], "w") as f:
        f.write(format_markdown(rows, info))
    png = os.path.join(out_dir, "speedups.png")
    if write_plot(rows, png):
        paths["png"] = png
    return paths
