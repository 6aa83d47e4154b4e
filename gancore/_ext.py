"""Loads the compiled extension gancore._C once and remembers why it is missing, if it is."""

from __future__ import annotations

import types

_C: types.ModuleType | None
try:
    from gancore import _C
    LOAD_ERROR: str | None = None
except ImportError as exc:  # not built, or built against another torch
    _C = None
    LOAD_ERROR = f"gancore._C did not load ({exc}); build it with `pip install --no-build-isolation -e .`"


def has(symbol: str) -> bool:
    """True when the extension is loaded and exports `symbol`."""
    return _C is not None and hasattr(_C, symbol)


def cuda_built() -> bool:
    return _C is not None and bool(getattr(_C, "WITH_CUDA", False))
