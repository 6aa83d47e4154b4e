import os

# Triton reads TRITON_INTERPRET when a kernel is decorated, so it must be set before anything
# imports gancore.kernels: with it, Triton kernels run on CPU tensors (the only way to run them
# here). Code generation for real GPUs is checked in a subprocess without it (test_codegen).
os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
