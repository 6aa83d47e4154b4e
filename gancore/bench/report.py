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


def time_target(ratio: float, limit: float, baseline: str = "eager") -> dict:
    """Fields of a row with a target on its time against the baseline's: time / baseline <= limit."""
    return {"target": f"time / {baseline} <= {limit:g}", "limit": limit, "ratio": ratio, "passed": ratio <= limit}


def _target_cell(r: dict) -> str:
    return f"{r['ratio']:.2f} (<= {r['limit']:g}) {'pass' if r['passed'] else 'FAIL'}"


def target_summary(rows: list[dict]) -> str:
    """One line per missed target, after a count; empty when no row has a target."""
    targeted = [r for r in rows if "target" in r]
    if not targeted:
        return ""
    missed = [r for r in targeted if not r["passed"]]
    lines = [f"targets met: {len(targeted) - len(missed)} of {len(targeted)}"]
    lines += [f"  missed: {r['suite']}: {r['case']} {r['contender']} [{r['alloc']}]: {r['target']}, "
              f"measured {r['ratio']:.2f}" for r in missed]
    return "\n".join(lines)


def _table(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    allocs = list(OrderedDict.fromkeys(r["alloc"] for r in rows))
    grouped: OrderedDict = OrderedDict()
    for r in rows:
        grouped.setdefault((r["suite"], r["case"], r["contender"]), {})[r["alloc"]] = r
    header = ["suite", "case", "contender"]
    for a in allocs:
        header += [f"ms ({a})", f"x vs base ({a})", f"GB/s ({a})"]
    with_targets = any("target" in r for r in rows)
    if with_targets:
        header += [f"time/base, target ({a})" for a in allocs]
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
        if with_targets:
            line += [_target_cell(by_alloc[a]) if "target" in by_alloc.get(a, {}) else "" for a in allocs]
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


def format_markdown(rows: list[dict], info: dict, failures: dict[str, str] | None = None) -> str:
    header, body = _table(rows)
    out = ["# gancore benchmark results", ""]
    out += [f"- {k}: {v}" for k, v in info.items()]
    out += [f"- FAILED suite {name}: {why}" for name, why in (failures or {}).items()]
    out += ["", "Speed-ups are against each suite's baseline contender in the same run and allocator "
            "setting (x faster than the baseline); ms are medians of repeated runs. Targets are on time / "
            "baseline time (lower is better).", ""]
    out.append("| " + " | ".join(header) + " |")
    out.append("|" + "---|" * len(header))
    out += ["| " + " | ".join(b) + " |" for b in body]
    summary = target_summary(rows)
    if summary:
        out += ["", "```", summary, "```"]
    return "\n".join(out) + "\n"



# ---- plots ---------------------------------------------------------------------------------------------

_COLORS = ("#3b7dd8", "#e07b39", "#4fa36c", "#c44e52", "#8172b2", "#937860", "#da8bc3", "#8c8c8c")


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _is_floor(contender: str) -> bool:
    return contender.startswith("floor")


def plot_suite(rows: list[dict], suite: str, path: str) -> bool:
    """One panel per allocator setting: cases down the side, contenders side by side, the baseline at 1x.

    Bars are speed-ups against the suite's baseline (x faster) on a log axis, each labelled with its value.
    """
    plt = _pyplot()
    mine = [r for r in rows if r["suite"] == suite and r.get("speedup") and r["contender"] != r["baseline"]
            and not _is_floor(r["contender"])]
    if plt is None or not mine:
        return False
    cases = list(OrderedDict.fromkeys(r["case"] for r in mine))
    contenders = list(OrderedDict.fromkeys(r["contender"] for r in mine))
    allocs = list(OrderedDict.fromkeys(r["alloc"] for r in mine))
    by_key = {(r["case"], r["contender"], r["alloc"]): r for r in mine}
    bar = 0.8 / len(contenders)
    height = max(3.0, 1.2 + len(cases) * (0.22 * len(contenders) + 0.25))
    fig, axes = plt.subplots(1, len(allocs), figsize=(6.5 * len(allocs) + 5, height), sharey=True, squeeze=False)
    values = [r["speedup"] for r in mine] + [1 / r["limit"] for r in mine if "target" in r]
    lo, hi = min(values + [0.8]) / 1.6, max(values + [1.25]) * 1.8  # at least 0.5 to 2: labelled ticks
    for ax, alloc in zip(axes[0], allocs):
        targets = []
        for j, contender in enumerate(contenders):
            ys, xs = [], []
            for i, case in enumerate(cases):
                r = by_key.get((case, contender, alloc))
                if r is not None:
                    ys.append(i - 0.4 + bar * (j + 0.5))
                    xs.append(r["speedup"])
                    if "target" in r:  # time / baseline <= limit is a speed-up of at least 1 / limit
                        targets.append((ys[-1], 1 / r["limit"]))
            ax.barh(ys, [x - lo for x in xs], height=bar * 0.9, left=lo, color=_COLORS[j % len(_COLORS)],
                    label=contender)
            for y, x in zip(ys, xs):
                ax.text(x * 1.03, y, f"{x:.2f}x", va="center", fontsize=7)
        if targets:
            ax.scatter([x for _, x in targets], [y for y, _ in targets], marker="|", s=250, color="red",
                       linewidths=2, zorder=3, label="target (at least)")
        base = mine[0]["baseline"]
        ax.axvline(1.0, color="black", linewidth=1.2, linestyle="--", label=f"{base} (baseline) = 1x")
        _log_x(ax)
        ax.set_xlim(lo, hi)
        ax.set_title(f"{suite}, allocator: {alloc}", fontsize=10)
        ax.set_xlabel(f"speed-up vs {base} (x faster, log scale)", fontsize=9)
        ax.grid(axis="x", which="both", alpha=0.3)
    axes[0][0].set_yticks(range(len(cases)), cases, fontsize=8)
    axes[0][0].invert_yaxis()
    axes[0][-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _log_x(ax) -> None:
    """A log x axis labelled 0.1, 0.2, 0.5, 1, ... rather than 10^-1, 10^0."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    ax.set_xscale("log")
    axis = ax.xaxis
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(FuncFormatter(lambda v, _: ""))


def plot_roofline(rows: list[dict], path: str) -> bool:
    """Achieved GB/s of the memory-bound ops against bytes moved, with the measured copy bandwidth as the roof.

    The roof is the `floor: copy_` rows (a copy into an existing tensor, measured in the same run): an
    out-of-place op that moves the same bytes cannot be faster than that on this machine.
    """
    plt = _pyplot()
    measured = [r for r in rows if r.get("gbps")]
    if plt is None or not measured:
        return False
    panels = list(OrderedDict.fromkeys((r["suite"], r["alloc"]) for r in measured
                                       if not _is_floor(r["contender"])))
    if not panels:
        return False
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels) + 2, 5.5), squeeze=False)
    for ax, (suite, alloc) in zip(axes[0], panels):
        floors = [r for r in measured if r["contender"] == "floor: copy_"]
        own = [r for r in floors if r["alloc"] == alloc]
        roof = max((r["gbps"] for r in own or floors), default=None)
        if roof is not None:
            source = "" if own else f" ({floors[0]['alloc']} allocator)"
            ax.axhline(roof, color="black", linewidth=1.5, linestyle="--",
                       label=f"measured copy_ bandwidth {roof:.1f} GB/s{source}")
        for r in own:
            if r["suite"] == suite:
                ax.scatter(r["bytes"] / 1e6, r["gbps"], color="black", marker="s", s=18)
        mine = [r for r in measured if r["suite"] == suite and r["alloc"] == alloc and not _is_floor(r["contender"])]
        for j, contender in enumerate(OrderedDict.fromkeys(r["contender"] for r in mine)):
            for kind, marker in (("fwd+bwd", "^"), ("fwd", "o")):
                pts = [(r["bytes"] / 1e6, r["gbps"]) for r in mine
                       if r["contender"] == contender and r["case"].endswith("fwd+bwd") == (kind == "fwd+bwd")]
                if pts:
                    ax.scatter(*zip(*pts), color=_COLORS[j % len(_COLORS)], marker=marker, s=36,
                               label=f"{contender} {kind}", alpha=0.85)
        _log_x(ax)
        ax.set_ylim(bottom=0)
        ax.set_xlabel("compulsory bytes moved per call (MB, log scale)", fontsize=9)
        ax.set_ylabel("achieved GB/s", fontsize=9)
        ax.set_title(f"{suite}, allocator: {alloc}" + ("" if roof else " (no copy_ roof measured)"), fontsize=10)
        ax.grid(which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, -0.13), ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def write_tables(rows: list[dict], info: dict, out_dir: str, failures: dict[str, str] | None = None) -> dict:
    """results.json and results.md (cheap enough to rewrite after every suite); returns name -> path."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {"json": os.path.join(out_dir, "results.json"), "markdown": os.path.join(out_dir, "results.md")}
    with open(paths["json"], "w") as f:
        json.dump({"machine": info, "rows": rows, "failures": failures or {}}, f, indent=1)
    with open(paths["markdown"], "w") as f:
        f.write(format_markdown(rows, info, failures))
    return paths


def write_all(rows: list[dict], info: dict, out_dir: str, failures: dict[str, str] | None = None) -> dict:
    """The tables, one PNG per suite and roofline.png; returns name -> path."""
    paths = write_tables(rows, info, out_dir, failures)
    stale = os.path.join(out_dir, "speedups.png")  # the one-image plot of earlier versions
    if os.path.exists(stale):
        os.remove(stale)
    for suite in OrderedDict.fromkeys(r["suite"] for r in rows):
        png = os.path.join(out_dir, f"{suite}.png")
        if plot_suite(rows, suite, png):
            paths[suite] = png
    png = os.path.join(out_dir, "roofline.png")
    if plot_roofline(rows, png):
        paths["roofline"] = png
    return paths
