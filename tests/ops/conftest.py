import pytest

from gancore import _ext


@pytest.fixture(params=["cpu-avx2", "cpu-baseline", "ref"])
def impl(request, monkeypatch):
    """The C++ kernels with each instruction set they are built for, and the reference path."""
    name, _, isa = request.param.partition("-")
    if isa == "baseline":
        monkeypatch.setenv("GANCORE_CPU_ISA", "baseline")
    if isa and _ext._C.cpu_isa() != isa:
        pytest.skip(f"this CPU cannot run the {isa} kernels")
    return name
