import os

# Triton reads TRITON_INTERPRET when a kernel is decorated, so it must be set before anything
# imports gancore.kernels: with it, Triton kernels run on CPU tensors (the only way to run them
# here). Code generation for real GPUs is checked in a subprocess without it (test_codegen).
os.environ.setdefault("TRITON_INTERPRET", "1")

import random  # noqa: E402
import zlib  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _seed_from_test_id(request):
    """Seed the global generators from the test's own id, so a test draws the same numbers whatever
    ran before it in its process (pytest-xdist hands each worker a different order)."""
    seed = zlib.crc32(request.node.nodeid.encode())
    torch.manual_seed(seed)
    random.seed(seed)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
