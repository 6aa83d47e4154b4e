"""Which memory layout to train in, for train.channels_last=auto."""

from __future__ import annotations

import torch


def cpu_capability() -> str:
    """The vector instruction set PyTorch's CPU kernels use here: "AVX512" (AMX CPUs too), "AVX2", ..."""
    return torch.backends.cpu.get_cpu_capability()


def prefers_channels_last(device: torch.device, fused: bool) -> bool:
    """The layout measured faster, or no slower, for networks on this kind of device; NCHW for unfused
    networks (eager StarGAN steps were 15-21% slower in channels_last on an AVX-512 EPYC, where the fused
    ones were no slower).

    GPUs: channels_last (tensor-core convolutions run NHWC). CPUs: channels_last with AVX-512 (and AMX),
    NCHW below it. Measured (docs/training.md, "Speed on the CPU"): on an AMX CPU, CycleGAN's fused step
    1.12x eager in channels_last; on an AVX-512-bf16 EPYC, fused channels_last 1.14x eager in fp32 (the same
    as fused NCHW) and 1.22x in bf16 (fused NCHW 1.05x); on an AVX2 EPYC, the ResNet-9 generator 1.5-1.6x slower
    in channels_last than in NCHW, fused or not. On the AVX-512 EPYC again (2026-12-02, fp32 / bf16, fused
    channels_last against fused NCHW at the bench presets): SRGAN 1.25x / 1.15x eager against 1.04x / 0.97x,
    LAPGAN 1.36x / 1.24x against 0.97x / 0.94x, DCGAN, CGAN, VAE-GAN and WGAN-GP 1.00-1.12x against 0.92-1.09x,
    StarGAN equal (1.05-1.08x)."""
    return fused and (device.type == "cuda" or (device.type == "cpu" and cpu_capability() == "AVX512"))
