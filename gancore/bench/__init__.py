"""The benchmark suite behind `gancore bench`: each suite times gancore against eager PyTorch."""

from gancore.bench.timing import BenchContext, measure

__all__ = ["BenchContext", "measure"]
