"""Runs one suite under one allocator setting in a fresh process and writes its rows as JSON.

The allocator setting must be in place before the suite allocates anything, and glibc's cannot be
undone inside a process, hence one process per setting.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys

import torch
from tqdm import tqdm

from gancore.bench.suites import SUITES
from gancore.bench.timing import BenchContext
from gancore.utils.allocator import tune_cpu_allocator


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--suite", required=True, choices=sorted(SUITES))
    parser.add_argument("--alloc", default="default", choices=("default", "tuned"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--json", required=True)
    args = parser.parse_args(argv)
    if args.alloc == "tuned" and not tune_cpu_allocator():
        raise SystemExit("--alloc tuned: this platform's allocator cannot be tuned (glibc only)")
    suite = importlib.import_module(SUITES[args.suite])
    ctx = BenchContext(torch.device(args.device), quick=args.quick, alloc=args.alloc, repeats=args.repeats)
    rows = []
    total = suite.count(ctx) if hasattr(suite, "count") else None
    progress = tqdm(suite.run(ctx), total=total, desc=f"{args.suite} [{args.alloc} allocator]",
                    unit="measurement", file=sys.stderr, disable=not sys.stderr.isatty() and total is None)
    for row in progress:
        row.setdefault("suite", args.suite)
        row["alloc"] = args.alloc
        row["baseline"] = suite.BASELINE
        rows.append(row)
    with open(args.json, "w") as f:
        json.dump(rows, f)


if __name__ == "__main__":
    main()
