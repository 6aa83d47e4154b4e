"""`python -m gancore.train train ...` / `... sample ...`: the train and sample commands on their own
(`torchrun -m gancore.train train ...` works as `torchrun -m gancore train ...` does)."""

import argparse

from gancore.train.cli import register

parser = argparse.ArgumentParser(prog="python -m gancore.train")
register(parser.add_subparsers(dest="command", required=True))
args = parser.parse_args()
raise SystemExit(int(args.func(args) or 0))
