"""Which memory layout to train in, for train.channels_last=auto."""

from __future__ import annotations

import torch


def cpu_capability() -> str:
    """The vector instruction set PyTorch's CPU kernels use here: "AVX512" (AMX CPUs too), "AVX2", ..."""
    return torch.backends.cpu.get_cpu_capability()


def prefers_channels_last(device: torch.device) -> bool:
    """The layout measured faster, or no slower, for the image-to-image families on this kind of device.

    GPUs: channels_last (tensor-core convolutions run NHWC). CPUs: channels_last with AVX-512 (and AMX),
    NCHW below it. Measured (docs/training.md, "Speed on the CPU"): on an AMX CPU, CycleGAN's fused step
    1.12x eager in channels_last; on an AVX-512-bf16 EPYC, fused channels_last 1.14x eager in fp32 (the same
    as fused NCHW) and 1.22x in bf16 (fused NCHW 1.05x); on an AVX2 EPYC, the ResNet-9 generator 1.5-1.6x slower
    in channels_last than in NCHW, fused or not."""
    return device.type == "cuda" or (device.type == "cpu" and cpu_capability() == "AVX512")
