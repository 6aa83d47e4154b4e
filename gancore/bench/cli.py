"""`gancore bench`: run the benchmark suites, print a table, write JSON, Markdown and a PNG."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time

from gancore.bench import report
from gancore.bench.suites import SUITES


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("bench", help="benchmark gancore against eager PyTorch and torch.compile")
    p.add_argument("--suite", action="append", choices=sorted(SUITES),
                   help="suite to run (repeatable; default: all)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--quick", action="store_true", help="fewer shapes and repeats (a smoke run)")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per measurement (median)")
    p.add_argument("--alloc", choices=("both", "default", "tuned"), default="both",
                   help="CPU allocator settings to measure under (see gancore.tune_cpu_allocator)")
    p.add_argument("--tuned-alloc", dest="alloc", action="store_const", const="tuned",
                   help="shorthand for --alloc tuned")
    p.add_argument("--out", default="bench-results", help="results folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    repeats = args.repeats or (5 if args.quick else 15)
    allocs = ["default", "tuned"] if args.alloc == "both" else [args.alloc]
    rows: list[dict] = []
    started = time.time()
    for name in args.suite or list(SUITES):
        suite = importlib.import_module(SUITES[name])
        suite_allocs = allocs if (suite.ALLOC_SENSITIVE and device == "cpu") else allocs[:1]
        for alloc in suite_allocs:
            print(f"== {name} [{device}, allocator: {alloc}]", file=sys.stderr, flush=True)
            rows += _run_worker(name, alloc, device, args.quick, repeats)
    report.add_speedups(rows)
    info = report.machine_info(device)
    print(report.format_console(rows))
    paths = report.write_all(rows, info, args.out)
    print(f"\n{len(rows)} measurements in {time.time() - started:.0f} s; wrote "
          + ", ".join(paths.values()))
    return 0


def _run_worker(suite: str, alloc: str, device: str, quick: bool, repeats: int) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "rows.json")
        cmd = [sys.executable, "-m", "gancore.bench.worker", "--suite", suite, "--alloc", alloc,
               "--device", device, "--repeats", str(repeats), "--json", out]
        if quick:
            cmd.append("--quick")
        subprocess.run(cmd, check=True)
        with open(out) as f:
            return json.load(f)
