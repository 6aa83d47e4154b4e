"""InstanceNormAct{1,2,3}d: nn.InstanceNorm + activation as one fused op, and fuse(model)."""

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
        return instance_norm_act(x, self.weight, self.bias, eps=self.eps, activation=self.activation,
                                 negative_slope=self.negative_slope, residual=residual)

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


def _activation_of(module: nn.Module) -> tuple[str, float] | None:
    if type(module) is nn.LeakyReLU:
        return "leaky_relu", float(module.negative_slope)
    if type(module) is nn.ReLU:
        return "relu", 0.0
    return None


def _unfusable_reason(norm: nn.Module) -> str | None:
    if norm.track_running_stats:
        # in eval mode such a norm uses its running statistics, which the fused op does not keep
        return "track_running_stats=True (running statistics are not fused)"
    return None


def _fused_from(norm: nn.Module, activation: str, slope: float) -> _InstanceNormAct:
    ref = norm.weight if norm.affine else None
    fused = _FUSED_FOR[type(norm)](norm.num_features, eps=norm.eps, affine=norm.affine, activation=activation,
                                   negative_slope=slope,
                                   device=ref.device if ref is not None else None,
                                   dtype=ref.dtype if ref is not None else None)
    if norm.affine:
        fused.weight = norm.weight  # share the Parameter objects: optimisers keep working
        fused.bias = norm.bias
    fused.train(norm.training)
    return fused


def fuse(model: nn.Module, *, verbose: bool = False) -> nn.Module:
    """Rewrite `model` in place: InstanceNorm{1,2,3}d followed directly by LeakyReLU/ReLU inside an
    nn.Sequential becomes one fused module (the activation slot becomes nn.Identity, so indices and
    state_dict keys are unchanged); any other InstanceNorm becomes the fused op with identity activation.

    Norms with track_running_stats=True are left alone. Returns the model; the list of changes
    is in `model.gancore_fused` (and printed with verbose=True).
    """
    changes: list[str] = []
    for parent_name, parent in list(model.named_modules()):
        children = list(parent.named_children())
        for i, (name, child) in enumerate(children):
            if type(child) not in _FUSED_FOR:
                continue
            path = f"{parent_name}.{name}" if parent_name else name
            reason = _unfusable_reason(child)
            if reason is not None:
                changes.append(f"{path}: left unfused, {reason}")
                continue
            act = None
            if isinstance(parent, nn.Sequential) and i + 1 < len(children):
                act = _activation_of(children[i + 1][1])
            if act is not None:
                setattr(parent, name, _fused_from(child, *act))
                setattr(parent, children[i + 1][0], nn.Identity())
                changes.append(f"{path} + {parent_name + '.' if parent_name else ''}{children[i + 1][0]}: "
                               f"fused with {act[0]}")
            else:
                setattr(parent, name, _fused_from(child, "identity", 1.0))
                changes.append(f"{path}: fused (identity activation)")
    model.gancore_fused = changes
    if verbose:
        print("\n".join(changes) if changes else "fuse: nothing to fuse")
    return model
