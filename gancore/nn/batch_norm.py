"""Batch norm + activation as one fused op, and instance norm with running statistics.

- BatchNormAct1d / BatchNormAct2d: nn.BatchNorm1d/2d followed by ReLU / LeakyReLU / PReLU / nothing.
  Same buffers and parameters as the nn.BatchNorm they replace (weight, bias, running_mean,
  running_var, num_batches_tracked), so its state_dict loads strictly, and the same training /
  eval / track_running_stats behaviour, running buffers included.
- RunningInstanceNormAct2d: nn.InstanceNorm2d(track_running_stats=True) + activation (StarGAN's norm).
  Training: instance statistics, running buffers updated as PyTorch does (the batch mean of the
  instances' means and unbiased variances, blended by momentum; momentum=None keeps them, and
  num_batches_tracked is never incremented, as in nn.InstanceNorm). Eval: the running statistics
  normalise, which is exactly batch_norm_act in eval mode.
- batch_norm_fusion / running_instance_norm_fusion: the factories fuse() uses, factory(norm, act)
  -> fused module, or the reason it cannot be fused exactly.
"""

from __future__ import annotations

import sys

import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase
from torch.nn.modules.instancenorm import _InstanceNorm

from gancore.ops.batch_norm import ACTIVATIONS, batch_norm_act
from gancore.ops.instance_norm import instance_norm_act


class PReLUWeight(nn.Module):
    """What stays in a PReLU's slot after fuse(): its `weight` Parameter (same key, same object,
    used by the fused norm), and an identity forward."""

    def __init__(self, prelu: nn.PReLU) -> None:
        super().__init__()
        self.weight = prelu.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class _ActMixin:
    """Activation settings shared by the fused norms; a PReLU's weight is borrowed, not registered
    (it stays under its own key, in the activation's slot)."""

    def _init_activation(self, activation: str, negative_slope: float, prelu: nn.PReLU | PReLUWeight | None,
                         num_parameters: int, device, dtype) -> None:
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        self.activation = activation
        self.negative_slope = negative_slope
        self._prelu_owner = None
        if activation == "prelu":
            if prelu is not None:
                object.__setattr__(self, "_prelu_owner", prelu)  # not a submodule: no second state_dict key
            else:
                self.prelu_weight = nn.Parameter(torch.full((num_parameters,), 0.25, device=device, dtype=dtype))

    def _prelu(self) -> torch.Tensor | None:
        if self.activation != "prelu":
            return None
        return self._prelu_owner.weight if self._prelu_owner is not None else self.prelu_weight

    def _act_repr(self) -> str:
        if self.activation == "leaky_relu":
            return f"activation=leaky_relu({self.negative_slope})"
        return f"activation={self.activation}"


class _BatchNormAct(_ActMixin, _NormBase):
    """nn.BatchNorm's semantics (it is a _NormBase, not a _BatchNorm: convert_sync_batchnorm leaves it
    alone; pass process_group= to synchronise its statistics instead)."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, activation: str = "leaky_relu", negative_slope: float = 0.2,
                 prelu: nn.PReLU | PReLUWeight | None = None, num_prelu_parameters: int = 1,
                 process_group: torch.distributed.ProcessGroup | None = None, device=None, dtype=None) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device=device, dtype=dtype)
        self._init_activation(activation, negative_slope, prelu, num_prelu_parameters, device, dtype)
        self.process_group = process_group

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        self._check_input_dim(x)
        use_buffers = not self.training or self.track_running_stats
        return batch_norm_act(
            x, self.weight, self.bias, self.running_mean if use_buffers else None,
            self.running_var if use_buffers else None,
            training=self.training or self.running_mean is None, momentum=self.momentum, eps=self.eps,
            activation=self.activation, negative_slope=self.negative_slope, prelu_weight=self._prelu(),
            residual=residual, num_batches_tracked=self.num_batches_tracked if self.training else None,
            process_group=self.process_group)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self._act_repr()}"


class BatchNormAct1d(_BatchNormAct):
    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() not in (2, 3):
            raise ValueError(f"BatchNormAct1d expects a 2-D or 3-D input (N, C[, L]), got shape {tuple(x.shape)}")


class BatchNormAct2d(_BatchNormAct):
    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() != 4:
            raise ValueError(f"BatchNormAct2d expects a 4-D input (N, C, H, W), got shape {tuple(x.shape)}")


class BatchNormAct3d(_BatchNormAct):
    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() != 5:
            raise ValueError(f"BatchNormAct3d expects a 5-D input (N, C, D, H, W), got shape {tuple(x.shape)}")


class RunningInstanceNormAct2d(_ActMixin, _InstanceNorm):
    """nn.InstanceNorm2d(track_running_stats=True) + activation; state_dict as nn.InstanceNorm2d's."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = False,
                 track_running_stats: bool = True, activation: str = "leaky_relu", negative_slope: float = 0.2,
                 prelu: nn.PReLU | PReLUWeight | None = None, num_prelu_parameters: int = 1,
                 device=None, dtype=None) -> None:
        if not track_running_stats:
            raise ValueError("RunningInstanceNormAct2d keeps running statistics; use InstanceNormAct2d without them")
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device=device, dtype=dtype)
        if activation == "prelu":
            raise ValueError("RunningInstanceNormAct2d: activation='prelu' is not supported (instance_norm_act "
                             "has no PReLU)")
        self._init_activation(activation, negative_slope, prelu, num_prelu_parameters, device, dtype)

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() != 4:
            raise ValueError(f"RunningInstanceNormAct2d expects a 4-D input (N, C, H, W), got shape {tuple(x.shape)}")

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        self._check_input_dim(x)
        if not self.training:
            return batch_norm_act(x, self.weight, self.bias, self.running_mean, self.running_var, training=False,
                                  eps=self.eps, activation=self.activation, negative_slope=self.negative_slope,
                                  residual=residual)
        out, mean, rstd = instance_norm_act(x, self.weight, self.bias, eps=self.eps, activation=self.activation,
                                            negative_slope=self.negative_slope, residual=residual, return_stats=True)
        if self.momentum is not None and self.momentum != 0:
            self._update_running(mean, rstd, x.shape[2] * x.shape[3])
        return out

    @torch.no_grad()
    def _update_running(self, mean: torch.Tensor, rstd: torch.Tensor, count: int) -> None:
        # As F.instance_norm: each instance updates a copy of the buffers, and the copies are averaged.
        # The biased variance comes back from rstd (no second pass over x); unbiased like PyTorch's.
        var = rstd.double().pow(-2) - self.eps
        unbiased = var * (count / (count - 1)) if count > 1 else torch.full_like(var, float("nan"))
        m = float(self.momentum)
        rm, rv = self.running_mean, self.running_var
        rm.copy_((1 - m) * rm.double() + m * mean.double().mean(0))
        rv.copy_((1 - m) * rv.double() + m * unbiased.mean(0))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self._act_repr()}"


# ---- fuse() factories: factory(norm, activation module or None) -> fused module | reason ---------------------


def _activation_args(act: nn.Module | None) -> tuple[str, float, nn.Module | None] | str:
    if act is None:
        return "identity", 1.0, None
    if type(act) is nn.ReLU:
        return "relu", 0.0, None
    if type(act) is nn.LeakyReLU:
        return "leaky_relu", float(act.negative_slope), None
    if type(act) is nn.PReLU:
        return "prelu", 0.0, act
    return f"activation {type(act).__name__} is not one the fused norm computes"


def _shares_buffers(norm: nn.Module) -> bool:
    """True when something besides the norm holds its running buffers (another module sharing them, a
    view of them): the fused module would then update them on its own schedule. Counted by
    references: the norm's buffer dict and getrefcount's own argument are the only two expected."""
    return any(norm._buffers.get(name) is not None and
               (sys.getrefcount(norm._buffers[name]) > 2 or norm._buffers[name]._base is not None)
               for name in ("running_mean", "running_var"))


def _copy_into(fused: nn.Module, norm: nn.Module) -> nn.Module:
    # the same Parameter and buffer objects: optimisers and anything else holding them keep working
    for name in ("weight", "bias"):
        if getattr(norm, name, None) is not None:
            setattr(fused, name, getattr(norm, name))
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        if getattr(norm, name, None) is not None:
            fused.register_buffer(name, getattr(norm, name))
    fused.train(norm.training)
    return fused


def batch_norm_fusion(norm: nn.Module, act: nn.Module | None) -> nn.Module | str:
    """nn.BatchNorm1d/2d/3d (+ ReLU / LeakyReLU / PReLU) -> BatchNormAct1d/2d/3d, or why not.

    With a PReLU, the activation's slot should become `fused.activation_slot` (a PReLUWeight keeping
    the PReLU's key and Parameter) instead of nn.Identity.
    """
    classes = {nn.BatchNorm1d: BatchNormAct1d, nn.BatchNorm2d: BatchNormAct2d, nn.BatchNorm3d: BatchNormAct3d}
    cls = classes.get(type(norm))
    if cls is None:
        return f"{type(norm).__name__} is not BatchNorm1d/2d/3d"
    args = _activation_args(act)
    if isinstance(args, str):
        return args
    activation, slope, prelu = args
    if not norm.track_running_stats and not norm.training:
        return "track_running_stats=False in eval mode (batch statistics at inference are left to PyTorch)"
    if norm.track_running_stats and norm.running_mean is None:
        return "track_running_stats=True but no running buffers"
    if _shares_buffers(norm):
        return "its running buffers are shared with another module"
    slot = PReLUWeight(prelu) if prelu is not None else nn.Identity()
    fused = cls(norm.num_features, eps=norm.eps, momentum=norm.momentum, affine=norm.affine,
                track_running_stats=norm.track_running_stats, activation=activation, negative_slope=slope,
                prelu=slot if prelu is not None else None, device=_device_of(norm))
    fused = _copy_into(fused, norm)
    object.__setattr__(fused, "activation_slot", slot)  # not a submodule: no extra state_dict keys
    return fused


def running_instance_norm_fusion(norm: nn.Module, act: nn.Module | None) -> nn.Module | str:
    """nn.InstanceNorm2d(track_running_stats=True) (+ ReLU / LeakyReLU) -> RunningInstanceNormAct2d, or why not."""
    if type(norm) is not nn.InstanceNorm2d or not norm.track_running_stats:
        return "not an InstanceNorm2d with track_running_stats=True"
    args = _activation_args(act)
    if isinstance(args, str):
        return args
    activation, slope, prelu = args
    if prelu is not None:
        return "PReLU after an instance norm is not fused"
    if norm.running_mean is None:
        return "track_running_stats=True but no running buffers"
    if _shares_buffers(norm):
        return "its running buffers are shared with another module"
    fused = RunningInstanceNormAct2d(norm.num_features, eps=norm.eps, momentum=norm.momentum, affine=norm.affine,
                                     activation=activation, negative_slope=slope, device=_device_of(norm))
    fused = _copy_into(fused, norm)
    object.__setattr__(fused, "activation_slot", nn.Identity())
    return fused


def _device_of(norm: nn.Module) -> torch.device | None:
    t = norm.running_mean if norm.running_mean is not None else norm.weight
    return t.device if t is not None else None
