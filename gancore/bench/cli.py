"""`gancore bench`: run the benchmark suites, print a table, write JSON, Markdown and PNGs.

Each suite runs in its own worker process; one that fails does not stop the others: their results
are still written, the failure is named, and the command exits non-zero. results.json and results.md
are rewritten after every suite, so a run stopped part-way keeps the suites it finished; the plots
are drawn at the end. The terminal gets the
progress bars and the result table; whatever else the workers print (dynamo warnings, profiler
lines) goes to bench.log in the results folder.
"""

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
    p.add_argument("--device", default=None,
                   help="cpu, cuda or cuda:N (default: cuda when available); CUDA timings use CUDA events")
    p.add_argument("--quick", action="store_true",
                   help="fewer shapes and repeats, fp32 only (a smoke run of every suite)")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per measurement (median)")
    p.add_argument("--alloc", choices=("both", "default", "tuned"), default="both",
                   help="CPU allocator settings to measure under (see gancore.tune_cpu_allocator)")
    p.add_argument("--tuned-alloc", dest="alloc", action="store_const", const="tuned",
                   help="shorthand for --alloc tuned")
    p.add_argument("--out", default="bench-results", help="results folder")
    p.set_defaults(func=run)


def _device(name: str | None) -> str:
    """The device to run on; a user error (SystemExit 2 with one line) when it is not usable."""
    import torch

    if name is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        _user_error(f"--device: expected cpu, cuda or cuda:N, got {name!r}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            _user_error(f"--device {name}: CUDA is not available (torch {torch.__version__}, "
                        f"built with CUDA {torch.version.cuda})")
        if device.index is not None and device.index >= torch.cuda.device_count():
            _user_error(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s)")
    return name


def _user_error(message: str) -> None:
    print(f"gancore bench: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def run(args: argparse.Namespace) -> int:
    if args.repeats is not None and args.repeats < 1:
        _user_error(f"--repeats must be at least 1, got {args.repeats}")
    device = _device(args.device)
    repeats = args.repeats or (5 if args.quick else 15)
    allocs = ["default", "tuned"] if args.alloc == "both" else [args.alloc]
    os.makedirs(args.out, exist_ok=True)
    log = os.path.join(args.out, "bench.log")
    open(log, "w").close()
    rows: list[dict] = []
    failures: dict[str, str] = {}
    started = time.time()
    info = report.machine_info(device)
    interrupted = False
    for name in args.suite or list(SUITES):
        suite = importlib.import_module(SUITES[name])
        suite_allocs = allocs if (suite.ALLOC_SENSITIVE and device == "cpu") else allocs[:1]
        for alloc in suite_allocs:
            print(f"== {name} [{device}, allocator: {alloc}]", file=sys.stderr, flush=True)
            try:
                suite_rows, error = _run_worker(name, alloc, device, args.quick, repeats, log)
            except WorkerInterrupted as stop:
                suite_rows, interrupted = stop.rows, True
                error = f"interrupted (Ctrl-C); {len(stop.rows)} rows kept"
            rows += suite_rows
            if error:
                key = name if len(suite_allocs) == 1 else f"{name} [{alloc}]"
                failures[key] = error
                print(f"!! suite {key} FAILED: {error} (details in {log})", file=sys.stderr, flush=True)
            # the tables after every suite, so that a long run stopped part-way keeps what it measured
            report.add_speedups(rows)
            report.write_tables(rows, info, args.out, failures)
            if interrupted:
                break
        if interrupted:
            break
    print(report.format_console(rows))
    summary = report.target_summary(rows)
    if summary:
        print("\n" + summary)
    paths = report.write_all(rows, info, args.out, failures)
    print(f"\n{len(rows)} measurements in {time.time() - started:.0f} s; wrote "
          + ", ".join(paths.values()) + f"; log: {log}")
    if failures:
        print("FAILED suites: " + "; ".join(f"{k}: {v}" for k, v in failures.items()), file=sys.stderr)
        return 130 if interrupted else 1
    return 0


class WorkerInterrupted(Exception):
    """Ctrl-C during a suite; `rows` holds what its worker had finished."""

    def __init__(self, rows: list[dict]) -> None:
        super().__init__(f"interrupted; {len(rows)} rows kept")
        self.rows = rows


def _run_worker(suite: str, alloc: str, device: str, quick: bool, repeats: int,
                log: str) -> tuple[list[dict], str | None]:
    """The rows one worker measured, and its error (None when it succeeded). Raises WorkerInterrupted
    on Ctrl-C, with the rows the worker had written."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "rows.json")
        cmd = [sys.executable, "-m", "gancore.bench.worker", "--suite", suite, "--alloc", alloc,
               "--device", device, "--repeats", str(repeats), "--json", out, "--log", log]
        if quick:
            cmd.append("--quick")
        try:
            code = subprocess.run(cmd).returncode
        except KeyboardInterrupt:  # the worker got the same SIGINT; run() has stopped it
            raise WorkerInterrupted(_read_rows(out)[0]) from None
        if not os.path.exists(out):
            return [], f"worker exited with code {code} before writing results"
        rows, error, complete = _read_rows(out)
        if not complete:
            error = f"worker exited with code {code} before the suite's end; {len(rows)} rows kept"
        return rows, error or (f"worker exited with code {code}" if code else None)


def _read_rows(path: str) -> tuple[list[dict], str | None, bool]:
    if not os.path.exists(path):
        return [], None, False
    with open(path) as f:
        result = json.load(f)
    return result["rows"], result["error"], result.get("complete", True)
