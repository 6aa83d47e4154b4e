"""Backend selection for every fused op: the one place that knows about backends.

impl="auto" picks by device and by what loaded: CPU tensors -> "cpu" (gancore._C), CUDA tensors ->
"triton", then "cuda"; anything missing falls back to "ref" with one warning naming the reason.
GANCORE_IMPL=<impl> forces a backend for every auto call; GANCORE_STRICT=1 turns a fallback into
an error. An explicitly requested backend that cannot run is always an error.
GANCORE_CPU_ISA=avx2|baseline picks the instruction set of the cpu kernels (default: the best the
CPU has); any other value is an error.

Every op's public function calls `choose` (cached: one dict lookup per call once a backend ran) and
then `call`, which runs the kernels directly when no gradient is needed, through a C++ autograd node
(the norms on the cpu backend) or a plain torch.autograd.Function in eager mode, and through the
torch.library custom op under torch.compile. The custom-op path costs tens of microseconds per call
in eager mode, more than a small kernel; a Python autograd.Function costs some tens more than a C++ node.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from gancore import _ext

IMPLS = ("ref", "cpu", "triton", "cuda")
CPU_ISAS = ("avx2", "baseline")
_AUTO_ORDER = {"cpu": ("cpu", "ref"), "cuda": ("triton", "cuda", "ref")}


class BackendUnavailable(RuntimeError):
    """A requested backend cannot run (GANCORE_STRICT=1 raises this instead of falling back)."""


@dataclass
class OpSpec:
    name: str
    cpu_symbol: str | None = None  # attribute of gancore._C for the CPU kernels
    cuda_symbol: str | None = None  # attribute of gancore._C for the CUDA kernels
    triton_module: str | None = None  # module under gancore.kernels holding the Triton kernels
    cpu_torch: bool = False  # the op's cpu backend is torch itself (MKL/LAPACK), not a gancore._C kernel
    warned: set = field(default_factory=set)


_OPS: dict[str, OpSpec] = {}
_recorders: list[list[tuple[str, str]]] = []


def register_op(name: str, *, cpu: str | None = None, cuda: str | None = None, triton: str | None = None,
                cpu_torch: bool = False) -> None:
    _OPS[name] = OpSpec(name, cpu, cuda, triton, cpu_torch)


def _triton_reason(spec: OpSpec) -> str | None:
    if spec.triton_module is None:
        return "no Triton kernel for this op"
    try:
        importlib.import_module(f"gancore.kernels.{spec.triton_module}")
    except ImportError as exc:
        return f"Triton kernels did not import ({exc})"
    return None


def unavailable_reason(op: str, impl: str, device_type: str) -> str | None:
    """None when `impl` can run `op` on tensors of `device_type`, else why not."""
    spec = _OPS[op]
    if impl == "ref":
        return None
    if impl == "cpu":
        if device_type != "cpu":
            return f"the cpu backend takes CPU tensors, got {device_type}"
        if spec.cpu_torch:
            return None
        if spec.cpu_symbol is None:
            return "no C++ CPU kernel for this op"
        return None if _ext.has(spec.cpu_symbol) else (_ext.LOAD_ERROR or f"gancore._C lacks {spec.cpu_symbol}")
    if impl == "cuda":
        if device_type != "cuda":
            return f"the cuda backend takes CUDA tensors, got {device_type}"
        if spec.cuda_symbol is None:
            return "no CUDA kernel for this op"
        if not _ext.cuda_built():
            return _ext.LOAD_ERROR or "gancore._C was built without CUDA (CPU-only torch or no nvcc)"
        return None if _ext.has(spec.cuda_symbol) else f"gancore._C lacks {spec.cuda_symbol}"
    if impl == "triton":
        if device_type == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
            return "Triton runs CPU tensors only under TRITON_INTERPRET=1"
        if device_type not in ("cpu", "cuda"):
            return f"Triton takes CUDA tensors, got {device_type}"
        return _triton_reason(spec)
    return f"unknown backend {impl!r}; choose one of {IMPLS} or 'auto'"


# os.environ.get encodes the name and decodes the value on every call; the per-call cache key reads
# the raw mapping that os.environ keeps in sync instead, with the names encoded once.
_RAW_ENV = os.environ._data
_KEY_IMPL, _KEY_ISA, _KEY_INTERPRET = (os.environ.encodekey(name)
                                       for name in ("GANCORE_IMPL", "GANCORE_CPU_ISA", "TRITON_INTERPRET"))
_choices: dict[tuple, str] = {}


def choose(op: str, impl: str, device: torch.device) -> str:
    """The backend that will run `op` for tensors on `device`, given the caller's `impl`.

    Cached per (op, impl, device type, environment, extension); a fallback to ref is not cached, so
    that it keeps warning (once per reason) and keeps obeying GANCORE_STRICT.
    """
    raw = _RAW_ENV.get
    key = (op, impl, device.type, raw(_KEY_IMPL), raw(_KEY_ISA), raw(_KEY_INTERPRET), _ext._C is None)
    chosen = _choices.get(key)
    if chosen is None:
        chosen, fell_back = _choose(op, impl, device.type)
        if not fell_back:
            _choices[key] = chosen
    return chosen


def _choose(op: str, impl: str, device_type: str) -> tuple[str, bool]:
    if impl not in IMPLS and impl != "auto":
        raise ValueError(f"{op}: impl must be 'auto' or one of {IMPLS}, got {impl!r}")
    if impl == "auto":
        impl = os.environ.get("GANCORE_IMPL", "auto") or "auto"
        if impl not in IMPLS and impl != "auto":
            raise ValueError(f"GANCORE_IMPL must be 'auto' or one of {IMPLS}, got {impl!r}")
    _check_cpu_isa()
    if impl != "auto":
        reason = unavailable_reason(op, impl, device_type)
        if reason is not None:
            raise BackendUnavailable(f"{op}: backend {impl!r} cannot run on {device_type}: {reason}")
        return impl, False
    order = _AUTO_ORDER.get(device_type, ("ref",))
    reasons = []
    for candidate in order:
        reason = unavailable_reason(op, candidate, device_type)
        if reason is None:
            fell_back = candidate == "ref"
            if fell_back:
                _fallback(op, device_type, "; ".join(reasons) or f"no fused backend for {device_type}")
            return candidate, fell_back
        reasons.append(f"{candidate}: {reason}")
    raise AssertionError("ref is always available")  # pragma: no cover


def _check_cpu_isa() -> None:
    """GANCORE_CPU_ISA, read by the C++ kernels, must name an instruction set they are built for."""
    forced = os.environ.get("GANCORE_CPU_ISA", "")
    if forced and forced not in CPU_ISAS:
        raise ValueError(f"GANCORE_CPU_ISA must be one of {CPU_ISAS} (or unset), got {forced!r}")
    if forced == "avx2" and _ext._C is not None and _ext._C.cpu_isa() != "avx2":
        raise BackendUnavailable("GANCORE_CPU_ISA=avx2 but this CPU lacks AVX2+FMA; unset it or use 'baseline'")


def call(op: Callable, function: type[torch.autograd.Function], kernel: Callable, args: tuple,
         differentiable: tuple, native: Callable | None = None) -> Any:
    """Runs one fused op the cheapest way that is still correct.

    op: the torch.library custom op (torch.compile traces it); function: the autograd.Function for
    eager mode; kernel: the plain backend function, for calls where no tensor in `differentiable`
    needs a gradient; native: when given, replaces `function` in eager mode (a C++ autograd node of
    gancore._C, for the cpu backend). All of them take `args`.
    """
    if torch.compiler.is_compiling():
        return op(*args)
    if torch.is_grad_enabled():
        for t in differentiable:
            if t is not None and t.requires_grad:
                return function.apply(*args) if native is None else native(*args)
    return kernel(*args)


def _fallback(op: str, device_type: str, reason: str) -> None:
    message = f"gancore.ops.{op}: falling back to the reference PyTorch path on {device_type} ({reason})"
    if os.environ.get("GANCORE_STRICT") == "1":
        raise BackendUnavailable(message)
    spec = _OPS[op]
    if (device_type, reason) not in spec.warned:
        spec.warned.add((device_type, reason))
        warnings.warn(message, RuntimeWarning, stacklevel=4)


def note_ran(op: str, impl: str) -> None:
    for record in _recorders:
        record.append((op, impl))


@contextlib.contextmanager
def record_backends() -> Iterator[list[tuple[str, str]]]:
    """Collects (op, backend) for every fused-op call inside the block, forward and backward."""
    record: list[tuple[str, str]] = []
    _recorders.append(record)
    _tell_native_nodes()
    try:
        yield record
    finally:
        _recorders.remove(record)
        _tell_native_nodes()


def _tell_native_nodes() -> None:
    """The C++ autograd nodes report their backward passes only while something records."""
    if _ext._C is not None:
        _ext._C.set_backend_recording(bool(_recorders))


def backends() -> dict[str, dict[str, dict[str, str]]]:
    """For every op: which backend auto picks for CPU and for CUDA tensors, and why."""
    report = {}
    for name in _OPS:
        report[name] = {}
        for device_type in ("cpu", "cuda"):
            reasons = []
            for candidate in _AUTO_ORDER[device_type]:
                if device_type == "cuda" and candidate != "ref" and not torch.cuda.is_available():
                    reasons.append(f"{candidate}: no CUDA device")
                    continue
                reason = unavailable_reason(name, candidate, device_type)
                if reason is None:
                    why = "fastest available" if not reasons else "; ".join(reasons)
                    report[name][device_type] = {"impl": candidate, "reason": why}
                    break
                reasons.append(f"{candidate}: {reason}")
    return report

