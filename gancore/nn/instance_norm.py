"""InstanceNormAct{1,2,3}d: nn.InstanceNorm + activation (+ residual) as one fused op, and the factory that
builds one from an existing nn.InstanceNorm for gancore.nn.fuse."""

from __future__ import annotations

import torch
from torch import nn

from gancore.ops.instance_norm import ACTIVATIONS, instance_norm_act


class _InstanceNormAct(nn.Module):
    """Instance norm (batch statistics, like nn.InstanceNorm without running stats), then an
    activation, optionally `+ residual`. The state_dict is that of the nn.InstanceNorm it replaces
    (`weight` and `bias` when affine), so checkpoints load either way.
    """

    spatial_dims = 2

    def __init__(self, num_features: int, eps: float = 1e-5, affine: bool = False,
                 activation: str = "leaky_relu", negative_slope: float = 0.2,
                 device=None, dtype=None) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        self.num_features = num_features
        self.eps = eps
        self.affine = affine
        self.activation = activation
        self.negative_slope = negative_slope
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features, device=device, dtype=dtype))
            self.bias = nn.Parameter(torch.zeros(num_features, device=device, dtype=dtype))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() != self.spatial_dims + 2:
            raise ValueError(f"{type(self).__name__} expects a {self.spatial_dims + 2}-D input "
                             f"(N, C, {self.spatial_dims} spatial dims), got shape {tuple(x.shape)}")
        # dtypes differ e.g. under autocast: eager `x + norm(...)` promotes, the fused add needs one dtype
        promote = residual is not None and residual.dtype != x.dtype
        out = instance_norm_act(x, self.weight, self.bias, eps=self.eps, activation=self.activation,
                                negative_slope=self.negative_slope, residual=None if promote else residual)
        return out + residual if promote else out

    def extra_repr(self) -> str:
        act = self.activation + (f"({self.negative_slope})" if self.activation == "leaky_relu" else "")
        return f"{self.num_features}, eps={self.eps}, affine={self.affine}, activation={act}"


class InstanceNormAct1d(_InstanceNormAct):
    spatial_dims = 1


class InstanceNormAct2d(_InstanceNormAct):
    spatial_dims = 2


class InstanceNormAct3d(_InstanceNormAct):
    spatial_dims = 3


_FUSED_FOR = {nn.InstanceNorm1d: InstanceNormAct1d, nn.InstanceNorm2d: InstanceNormAct2d,
              nn.InstanceNorm3d: InstanceNormAct3d}


def activation_spec(module: nn.Module | None) -> tuple[str, float] | None:
    """(activation, negative_slope) of the fused ops for an activation module; None is the identity.
    Returns None for a module the fused ops cannot apply."""
    if module is None:
        return "identity", 1.0
    if type(module) is nn.LeakyReLU:
        return "leaky_relu", float(module.negative_slope)
    if type(module) is nn.ReLU:
        return "relu", 0.0
    return None


def fused_instance_norm(norm: nn.Module, activation: nn.Module | None) -> nn.Module | str:
    """The gancore.nn.fuse factory for nn.InstanceNorm{1,2,3}d: an InstanceNormAct sharing the norm's
    Parameters (optimisers keep working, keys unchanged), or the reason it cannot be built."""
    if norm.track_running_stats:
        # eval mode would use the running statistics, which InstanceNormAct does not keep
        return "track_running_stats=True (running statistics are not fused yet)"
    spec = activation_spec(activation)
    if spec is None:
        return f"activation {type(activation).__name__} has no fused form"
    ref = norm.weight if norm.affine else None
    fused = _FUSED_FOR[type(norm)](norm.num_features, eps=norm.eps, affine=norm.affine, activation=spec[0],
                                   negative_slope=spec[1], device=ref.device if ref is not None else None,
                                   dtype=ref.dtype if ref is not None else None)
    if norm.affine:
        fused.weight = norm.weight
        fused.bias = norm.bias
    fused.train(norm.training)
    return fused
