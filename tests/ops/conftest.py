import os

import pytest

from gancore import _ext

# Without the extension every kernel test below would skip and the run would look green.
if _ext._C is None and os.environ.get("GANCORE_TEST_REF_ONLY") != "1":
    raise RuntimeError(f"{_ext.LOAD_ERROR}. tests/ops tests the compiled kernels: build gancore._C, or set "
                       "GANCORE_TEST_REF_ONLY=1 to run without it (its kernel tests are then skipped)")


@pytest.fixture(params=["cpu-avx2", "cpu-baseline", "ref"])
def impl(request, monkeypatch):
    """The C++ kernels with each instruction set they are built for, and the reference path."""
    name, _, isa = request.param.partition("-")
    if isa == "baseline":
        monkeypatch.setenv("GANCORE_CPU_ISA", "baseline")
    if isa and _ext._C.cpu_isa() != isa:
        pytest.skip(f"this CPU cannot run the {isa} kernels")
    return name
