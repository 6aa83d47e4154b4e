"""The trainer's optimisers: which one a network's spec asks for, and which PyTorch implementation runs it.

train.optimizer_impl picks the implementation: "fused" (the default) is one kernel over all parameters
(Adam and SGD have one; RMSprop has none and takes foreach), "foreach" one multi-tensor kernel per
operation, "for-loop" the operations parameter by parameter (PyTorch's own default on the CPU). They make
the same update up to rounding. On the 2-core AVX-512 EPYC, an Adam step over pix2pix's 54M-parameter
U-Net took 650 ms for-loop, 380 ms foreach and 96 ms fused: 10-15% of a whole pix2pix step went to the
for-loop Adam.
"""

from __future__ import annotations

import torch
from torch import nn

from gancore.families.base import Network

OPTIMIZERS = {"adam", "rmsprop", "sgd"}


def optimizer_impl_flags(optimizer: str, impl: str) -> dict[str, bool]:
    """The constructor switches (foreach=, fused=) of `optimizer` for train.optimizer_impl `impl`."""
    fused = impl == "fused" and optimizer != "rmsprop"
    flags = {"foreach": impl != "for-loop" and not fused}
    return flags if optimizer == "rmsprop" else flags | {"fused": fused}


def _channels_last_dense(t: torch.Tensor) -> bool:
    # CPU only: measured there; PyTorch's CUDA fused Adam was not measured with these views
    return (t.device.type == "cpu" and t.dim() == 4 and not t.is_contiguous()
            and t.is_contiguous(memory_format=torch.channels_last))


class LayoutAwareAdam(torch.optim.Adam):
    """torch.optim.Adam whose fused step takes a channels_last parameter, gradient and moments on the CPU as
    their contiguous (N, H, W, C) views.

    PyTorch's fused CPU Adam copies a non-contiguous tensor to a contiguous one and back on every step;
    permuted to NHWC order a channels_last tensor is contiguous, and an element-wise update is the same in
    any order. Measured: a step over a channels_last pix2pix 64x64 U-Net (ngf 16, 1.8M parameters) took
    3.1 ms against 1.4 ms for the same network in NCHW."""

    def _init_group(self, group, params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps):
        has_complex = super()._init_group(group, params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs,
                                          state_steps)
        if group["fused"]:
            lists = [params, grads, exp_avgs, exp_avg_sqs] + ([max_exp_avg_sqs] if group["amsgrad"] else [])
            for i in range(len(params)):
                if all(_channels_last_dense(tensors[i]) for tensors in lists):
                    for tensors in lists:
                        tensors[i] = tensors[i].permute(0, 2, 3, 1)
        return has_complex


def make_optimizer(module: nn.Module, spec: Network, impl: str) -> torch.optim.Optimizer:
    params, decay = module.parameters(), spec.weight_decay
    flags = optimizer_impl_flags(spec.optimizer, impl)
    if spec.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=spec.lr, momentum=spec.momentum, weight_decay=decay, **flags)
    if spec.optimizer == "sgd":
        return torch.optim.SGD(params, lr=spec.lr, momentum=spec.momentum, weight_decay=decay, **flags)
    return LayoutAwareAdam(params, lr=spec.lr, betas=spec.betas, weight_decay=decay, **flags)


def describe_optimizer(spec: Network) -> str:
    if spec.optimizer == "adam":
        return f"Adam(lr={spec.lr:g}, betas={tuple(spec.betas)})"
    return f"{'RMSprop' if spec.optimizer == 'rmsprop' else 'SGD'}(lr={spec.lr:g}, momentum={spec.momentum:g})"


def match_state_layouts(optimizer: torch.optim.Optimizer) -> None:
    """Give every per-parameter state tensor (Adam's moments, a momentum buffer) its parameter's strides.

    A checkpoint keeps the strides the state had when saved, and loading restores them; a run resumed in
    another layout (train.channels_last changed, or gancore.utils.layout keeping a convolution NCHW that
    an older run kept channels_last) would then hold channels_last moments for an NCHW parameter. PyTorch's
    fused Adam (2.13, CPU) then silently updates each element with another element's moments: a test here
    measured errors of 0.17 after one such step."""
    for param, state in optimizer.state.items():
        for key, value in state.items():
            if (isinstance(value, torch.Tensor) and value.shape == param.shape and value.dim() > 1
                    and value.stride() != param.stride()):
                state[key] = torch.empty_like(param, dtype=value.dtype).copy_(value)
