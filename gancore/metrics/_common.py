"""Argument checks and conversions shared by every metric."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

ArrayLike = Any  # numpy array or torch tensor; metrics accept either and answer in the same kind


def to_tensor(value: ArrayLike, name: str, *, dtype: torch.dtype | None = torch.float64,
              device: torch.device | str | None = None) -> torch.Tensor:
    """A floating torch tensor from a numpy array or tensor; integer or complex input is an error."""
    if isinstance(value, np.ndarray):
        tensor = torch.from_numpy(np.ascontiguousarray(value))
    elif isinstance(value, torch.Tensor):
        tensor = value
    else:
        raise TypeError(f"{name} must be a numpy array or a torch tensor, got {type(value).__name__}")
    if not tensor.is_floating_point():
        raise TypeError(f"{name} must be floating point, got dtype {tensor.dtype} with shape "
                        f"{tuple(tensor.shape)}")
    return tensor.to(device=device if device is not None else tensor.device,
                     dtype=dtype if dtype is not None else tensor.dtype)


def check_finite(tensor: torch.Tensor, name: str) -> None:
    if not bool(torch.isfinite(tensor).all()):
        bad = int((~torch.isfinite(tensor)).sum())
        raise ValueError(f"{name} has {bad} NaN or infinite entries (shape {tuple(tensor.shape)})")


def features_2d(value: ArrayLike, name: str, *, dtype: torch.dtype | None = torch.float64) -> torch.Tensor:
    """(N, D) finite floating features."""
    tensor = to_tensor(value, name, dtype=dtype)
    if tensor.dim() != 2:
        raise ValueError(f"{name} must have shape (N, D), got {tuple(tensor.shape)}")
    check_finite(tensor, name)
    return tensor


def any_numpy(*values: ArrayLike) -> bool:
    """True when no argument is a torch tensor: the answer is then given as numpy."""
    return not any(isinstance(v, torch.Tensor) for v in values)


def answer(result: torch.Tensor, as_numpy: bool) -> Any:
    """numpy in, numpy (or a Python float for a scalar) out; torch in, torch out."""
    if not as_numpy:
        return result
    array = result.detach().cpu().numpy()
    return float(array) if array.ndim == 0 else array


def generator(seed: int | None) -> torch.Generator:
    """A CPU generator: every random choice in the metrics is seeded and identical across devices."""
    gen = torch.Generator()
    gen.manual_seed(0 if seed is None else int(seed))
    return gen


@contextlib.contextmanager
def full_precision_matmul() -> Iterator[None]:
    """TF32 off for float32 CUDA matmuls inside the block (statistics need every mantissa bit)."""
    matmul = torch.backends.cuda.matmul
    if hasattr(matmul, "fp32_precision"):
        saved = matmul.fp32_precision
        matmul.fp32_precision = "ieee"
        try:
            yield
        finally:
            matmul.fp32_precision = saved
    else:  # pragma: no cover - torch before 2.9
        saved = matmul.allow_tf32
        matmul.allow_tf32 = False
        try:
            yield
        finally:
            matmul.allow_tf32 = saved

