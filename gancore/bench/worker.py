"""Runs one suite under one allocator setting in a fresh process and writes its rows as JSON.

The allocator setting must be in place before the suite allocates anything, and glibc's cannot be
undone inside a process, hence one process per setting. The JSON is rewritten after every row, so a
worker stopped part-way (Ctrl-C, a kill, a time limit) leaves the rows it finished; "complete" says
whether the suite ran to its end.

With --log, everything the process prints except the progress bar goes to that file: dynamo's
warnings, the profiler's start/stop lines (printed by C++ straight to the file descriptors, hence
the redirection of fds 1 and 2, not only of sys.stdout/stderr).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import traceback
from typing import TextIO

import torch
from tqdm import tqdm

from gancore.bench.suites import SUITES
from gancore.bench.timing import BenchContext
from gancore.utils.allocator import tune_cpu_allocator


def _redirect_output(log_path: str) -> TextIO:
    """Points fds 1 and 2 (and so sys.stdout/stderr) at `log_path`; returns a stream on the old stderr."""
    sys.stdout.flush()
    sys.stderr.flush()
    terminal = os.fdopen(os.dup(2), "w", buffering=1)
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    return terminal


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--suite", required=True, choices=sorted(SUITES))
    parser.add_argument("--alloc", default="default", choices=("default", "tuned"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--json", required=True)
    parser.add_argument("--log", default=None, help="file for everything but the progress bar")
    args = parser.parse_args(argv)
    terminal = _redirect_output(args.log) if args.log else sys.stderr
    if args.alloc == "tuned" and not tune_cpu_allocator():
        raise SystemExit("--alloc tuned: this platform's allocator cannot be tuned (glibc only)")
    suite = importlib.import_module(SUITES[args.suite])
    ctx = BenchContext(torch.device(args.device), quick=args.quick, alloc=args.alloc, repeats=args.repeats)
    rows: list[dict] = []
    error = None
    total = suite.count(ctx) if hasattr(suite, "count") else None
    progress = tqdm(suite.run(ctx), total=total, desc=f"{args.suite} [{args.alloc} allocator]",
                    unit="measurement", file=terminal, disable=not terminal.isatty() and total is None)
    try:
        for row in progress:
            row.setdefault("suite", args.suite)
            row["alloc"] = args.alloc
            row["baseline"] = suite.BASELINE
            rows.append(row)
            write_rows(args.json, rows, None, complete=False)  # a worker stopped part-way keeps these
    except Exception as exc:  # the rows measured so far are still written; the caller reports the failure
        traceback.print_exc()  # into the log, when there is one
        error = f"{type(exc).__name__}: {exc}"
    finally:
        progress.close()
    write_rows(args.json, rows, error, complete=True)
    return 1 if error else 0


def write_rows(path: str, rows: list[dict], error: str | None, complete: bool) -> None:
    """The rows so far, replacing the file in one step (a reader never sees half of it)."""
    partial = f"{path}.partial"
    with open(partial, "w") as f:
        json.dump({"rows": rows, "error": error, "complete": complete}, f)
    os.replace(partial, path)


if __name__ == "__main__":
    sys.exit(main())
