"""gancore: fused kernels, GAN families, metrics and a thin trainer."""

from gancore import metrics, nn, ops  # metrics registers its GPU ops with the dispatcher
from gancore.utils.allocator import tune_cpu_allocator

__version__ = "0.1.0"
__all__ = ["metrics", "nn", "ops", "tune_cpu_allocator", "__version__"]
