"""PatchGANHead: the last convolution of a PatchGAN discriminator, with the fused scoring loss.

Why gancore.nn.fuse() does not swap a discriminator's final 1-channel conv for a head: the fused
path computes a *loss*, and neither the loss (lsgan, bce, hinge, wgan), nor the target of each call
(real, fake, smoothed labels), nor where the features stop and the scoring starts can be read from
a module graph; they live in the training loop. A head placed by fuse() could only compute the
logits, which is what the conv already does. So the swap is explicit and one line, and it keeps
the model's outputs and state_dict keys:

    netD.model[-1] = PatchGANHead.from_conv(netD.model[-1], loss="lsgan")
    h = netD.model[:-1](x)                      # features
    loss_D = netD.model[-1].loss(h, 1.0)        # fused conv + loss + mean, forward and backward
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from gancore.ops.patchgan import LOSSES, Target, patchgan_loss


class PatchGANHead(nn.Module):
    """Conv2d(in_channels, 1, kernel_size, stride, padding) whose `loss(h, target)` is one fused op.

    forward(h) returns the patch logits (N, 1, OH, OW), exactly nn.Conv2d's output: use it for the
    generator's feature matching or for a gradient penalty on raw logits. loss(h, target) returns
    the reduced GAN loss of every patch (see gancore.ops.patchgan_loss) without materialising the
    logits. The parameters are `weight` (1, in_channels, KH, KW) and `bias` (1,), so the state_dict of
    the nn.Conv2d it replaces loads as is.
    """

    def __init__(self, in_channels: int, loss: str = "lsgan", *, kernel_size: int = 4, stride: int = 1,
                 padding: int = 1, bias: bool = True, device=None, dtype=None) -> None:
        super().__init__()
        if loss not in LOSSES:
            raise ValueError(f"PatchGANHead: loss must be one of {LOSSES}, got {loss!r}")
        self.in_channels = in_channels
        self.loss_type = loss
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.weight = nn.Parameter(torch.empty(1, in_channels, kernel_size, kernel_size, device=device, dtype=dtype))
        if bias:
            self.bias = nn.Parameter(torch.empty(1, device=device, dtype=dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """nn.Conv2d's initialisation, so a head and the conv it stands for start alike."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.weight[0].numel())
            nn.init.uniform_(self.bias, -bound, bound)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, loss: str = "lsgan") -> PatchGANHead:
        """A head sharing `conv`'s parameters (an optimiser built before keeps updating them)."""
        if not isinstance(conv, nn.Conv2d) or conv.out_channels != 1:
            got = f"{type(conv).__name__} with {conv.out_channels} output channels" if isinstance(conv, nn.Conv2d) \
                else type(conv).__name__
            raise ValueError(f"PatchGANHead.from_conv: needs an nn.Conv2d with one output channel, got {got}")
        kh, kw = conv.kernel_size
        sy, sx = conv.stride
        py, px = conv.padding if not isinstance(conv.padding, str) else (-1, -1)
        if kh != kw or sy != sx or py != px or py < 0 or conv.dilation != (1, 1) or conv.groups != 1 \
                or conv.padding_mode != "zeros":
            raise ValueError(f"PatchGANHead.from_conv: needs a square kernel, equal strides and paddings, zero "
                             f"padding, no dilation or groups; got {conv}")
        head = cls(conv.in_channels, loss, kernel_size=kh, stride=sy, padding=py, bias=conv.bias is not None,
                   device=conv.weight.device, dtype=conv.weight.dtype)
        head.weight = conv.weight
        if conv.bias is not None:
            head.bias = conv.bias
        head.train(conv.training)
        return head

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return F.conv2d(h, self.weight, self.bias, stride=self.stride, padding=self.padding)

    def loss(self, h: torch.Tensor, target: Target, *, reduction: str = "mean") -> torch.Tensor:
        """The fused conv + per-patch loss + reduction; target 1.0 real, 0.0 fake, or a tensor."""
        return patchgan_loss(h, self.weight, self.bias, target, loss=self.loss_type, stride=self.stride,
                             padding=self.padding, reduction=reduction)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, loss={self.loss_type}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, bias={self.bias is not None}")


class MultiScalePatchGANHead(nn.ModuleList):
    """One PatchGANHead per scale of a multi-scale discriminator (pix2pixHD uses 3), scored in one call.

    loss(hs, target) is the sum over scales of each scale's reduced loss, as pix2pixHD adds them.
    """

    def __init__(self, in_channels: Sequence[int], loss: str = "lsgan", **head_kwargs) -> None:
        super().__init__([PatchGANHead(c, loss, **head_kwargs) for c in in_channels])

    def forward(self, hs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        self._check(hs)
        return [head(h) for head, h in zip(self, hs)]

    def loss(self, hs: Sequence[torch.Tensor], target: Target | Sequence[Target], *,
             reduction: str = "mean") -> torch.Tensor | list[torch.Tensor]:
        self._check(hs)
        targets = list(target) if isinstance(target, (list, tuple)) else [target] * len(self)
        if len(targets) != len(self):
            raise ValueError(f"MultiScalePatchGANHead: expected one target per scale ({len(self)}), got {len(targets)}")
        losses = [head.loss(h, t, reduction=reduction) for head, h, t in zip(self, hs, targets)]
        return losses if reduction == "none" else torch.stack(losses).sum()

    def _check(self, hs: Sequence[torch.Tensor]) -> None:
        if not isinstance(hs, (list, tuple)) or len(hs) != len(self):
            got = len(hs) if isinstance(hs, (list, tuple)) else type(hs).__name__
            raise ValueError(f"MultiScalePatchGANHead: expected a sequence of {len(self)} feature maps, got {got}")

