"""`gancore report RUN [--out DIR]` and `gancore report RUN_A RUN_B ... [--out DIR]`."""

from __future__ import annotations

import argparse
import sys

from gancore.report import REPORT_DIR, ReportError, build_report


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report", help="write a run's report (index.html + PNGs) or overlay several runs",
        description="Write a static report of a run folder: family, config, progress, loss curves, sample "
                    "grids over time, checkpoints. It opens from disk: no server, no script, no network. "
                    "With several run folders, their curves are overlaid for comparing settings. Training "
                    "refreshes RUN/report itself at every sample step (log.report).")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folder(s)")
    p.add_argument("--out", metavar="DIR",
                   help=f"report folder (default RUN/{REPORT_DIR} for one run, ./{REPORT_DIR} for several)")
    p.set_defaults(func=run_report)


def run_report(args: argparse.Namespace) -> int:
    try:
        index = build_report(args.runs, args.out)
    except ReportError as err:
        print(f"gancore report: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {index}")
    return 0
