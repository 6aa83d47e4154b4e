"""`gancore <command>`: each command lives in its own module, which adds its sub-parser."""

from __future__ import annotations

import argparse
import importlib

# Modules that define `register(subparsers)`; each adds one or more commands.
COMMAND_MODULES = (
    "gancore.bench.cli",
    "gancore.train.cli",
    "gancore.metrics.cli",
    "gancore.translate",
    "gancore.report.cli",
    "gancore.sr_cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gancore", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)
