"""Which memory layout to train in (train.channels_last=auto), and putting a network in it."""

from __future__ import annotations

import torch
from torch import nn


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


#: On the CPU, a convolution with at least this many weights stays NCHW inside a channels_last network.
#: Such layers are the deep, wide ones (U-Net's 512-channel levels, StarGAN's critic), which run at small
#: spatial sizes. There a channels_last weight costs more than the layout saves: the convolution itself runs
#: slower (forward+backward of a 512->512 4x4 convolution at 4x4, b1: 36 ms against 26 ms in NCHW), and
#: PyTorch's CPU backward computes the weight gradient in NCHW and copies it to the weight's layout, every
#: step. (PyTorch's fused Adam also copied channels_last tensors; the trainer's LayoutAwareAdam avoids that.)
#: Measured (2-core AVX-512 EPYC, fp32, docs/training.md "Convolutions kept NCHW"): the fused pix2pix step
#: (unet_256, 256x256 b1) 0.64-0.83x eager with every weight channels_last, 0.98-1.06x with these layers NCHW;
#: StarGAN 1.03x -> 1.10-1.16x; 2^18 and 2^22 measured no better.
NCHW_WEIGHTS_FROM = 1 << 20


def _nchw_input(module: nn.Module, args: tuple) -> tuple:
    """Forward pre-hook of a convolution kept NCHW: its input in NCHW too (a channels_last input with an
    NCHW weight makes PyTorch convert the weight on every call)."""
    return (args[0].contiguous(),) + args[1:]


def to_channels_last(module: nn.Module) -> list[str]:
    """Put `module` in channels_last, in place, except (on the CPU) its convolutions with at least
    NCHW_WEIGHTS_FROM weights, which keep NCHW weights and take their input in NCHW. Their outputs are NCHW;
    the fused norms take either layout, and the next channels_last convolution returns to channels_last.
    Returns the names of the convolutions kept NCHW. State_dict keys and values are unchanged."""
    module.to(memory_format=torch.channels_last)
    kept = []
    for name, conv in module.named_modules():
        if (isinstance(conv, nn.modules.conv._ConvNd) and conv.weight.dim() == 4 and conv.weight.device.type == "cpu"
                and conv.weight.numel() >= NCHW_WEIGHTS_FROM):
            conv.weight.data = conv.weight.data.contiguous()
            if _nchw_input not in conv._forward_pre_hooks.values():
                conv.register_forward_pre_hook(_nchw_input)
            kept.append(name)
    return kept
