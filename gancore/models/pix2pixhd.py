"""The pix2pixHD networks of Wang et al. (2018), in the module layout of NVIDIA/pix2pixHD models/networks.py.

Same module tree, same state_dict keys and same parameter counts as the reference, so its
`latest_net_G.pth` / `latest_net_D.pth` load with strict=True and give the reference's outputs. With
fused=True (the default) the plain network is rewritten by gancore.nn.fuse: each instance norm and the
ReLU/LeakyReLU after it become one fused op (the activation's slot becomes nn.Identity, keys unchanged),
and fuse's torch.fx pass moves each residual block's add into its last fused norm.

Where this differs from the reference, on purpose: no `use_sigmoid` (the reference's multi-scale
discriminator drops the sigmoid anyway when it returns intermediate features; losses take logits),
no dropout in the residual blocks (pix2pixHD never enables it), reflection padding only (its only use),
and the encoder's instance-wise average pooling is vectorised instead of a Python loop per instance.

checkpoint_activations=True (every constructor) recomputes activations in the backward pass instead of
keeping them: each stage of a generator (c7s1 front, each downsampling, each residual block, each
upsampling, the c7s1 output) and each scale of the discriminator is one torch.utils.checkpoint segment,
so that only the stage boundaries stay alive between forward and backward. The discriminator takes its
input as a list of parts (labels, image), which under checkpointing it never concatenates: neither the
full-width input nor its gradient exists. Same keys; same outputs and gradients up to rounding (float64:
1e-16, from D's first convolution summed per part).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from gancore.models._common import check_ints
from gancore.nn import fuse as _fuse

NORMS = ("instance", "batch")


def _norm_layer(norm: str) -> Callable[[int], nn.Module]:
    """pix2pixHD's get_norm_layer: instance norm without affine parameters, or affine batch norm."""
    if norm == "instance":
        return lambda c: nn.InstanceNorm2d(c, affine=False)
    if norm == "batch":
        return lambda c: nn.BatchNorm2d(c, affine=True)
    raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")


def _down_up_stages(input_nc: int, ngf: int, n_downsampling: int, norm: Callable[[int], nn.Module],
                    middle: Callable[[int], list[nn.Module]]) -> list[list[nn.Module]]:
    """c7s1-ngf, n stride-2 3x3 convs doubling the width, `middle(width)` (one stage per module), n transposed
    convs halving it; one list of layers per stage."""
    stages: list[list[nn.Module]] = [[nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, kernel_size=7, padding=0),
                                      norm(ngf), nn.ReLU(True)]]
    for i in range(n_downsampling):
        c = ngf * 2 ** i
        stages.append([nn.Conv2d(c, c * 2, kernel_size=3, stride=2, padding=1), norm(c * 2), nn.ReLU(True)])
    stages += [[m] for m in middle(ngf * 2 ** n_downsampling)]
    for i in range(n_downsampling):
        c = ngf * 2 ** (n_downsampling - i)
        stages.append([nn.ConvTranspose2d(c, c // 2, kernel_size=3, stride=2, padding=1, output_padding=1),
                       norm(c // 2), nn.ReLU(True)])
    return stages


def _output_layers(ngf: int, output_nc: int) -> list[nn.Module]:
    return [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, kernel_size=7, padding=0), nn.Tanh()]


def _stage_starts(stages: Sequence[Sequence[nn.Module]]) -> tuple[int, ...]:
    """Index of each stage's first layer in the flattened list, and the end."""
    starts = [0]
    for stage in stages:
        starts.append(starts[-1] + len(stage))
    return tuple(starts)


def _recomputed(fn: Callable[..., object], *args: torch.Tensor) -> object:
    """fn(*args) with the activations it saves for backward recomputed there instead (when grad is on)."""
    if not torch.is_grad_enabled():
        return fn(*args)
    return torch.utils.checkpoint.checkpoint(fn, *args, use_reentrant=False)


def _run_layers(layers: Sequence[nn.Module], x: torch.Tensor) -> torch.Tensor:
    for layer in layers:
        x = layer(x)
    return x


def _run_checkpointed(layers: Sequence[nn.Module], starts: Sequence[int], x: torch.Tensor) -> torch.Tensor:
    """layers[starts[0]:starts[-1]] in order, each stage layers[starts[k]:starts[k + 1]] one checkpoint segment."""
    for begin, end in zip(starts, starts[1:]):
        x = _recomputed(_run_layers, layers[begin:end], x)
    return x


class ResnetBlock(nn.Module):
    """x + [pad, conv3, norm, ReLU, pad, conv3, norm](x); keys conv_block.{1,5}.* as the reference."""

    def __init__(self, dim: int, norm: str = "instance") -> None:
        super().__init__()
        norm_layer = _norm_layer(norm)
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, kernel_size=3, padding=0), norm_layer(dim), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, kernel_size=3, padding=0), norm_layer(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)  # fuse() moves this add into the fused norm (residual=)


class GlobalGenerator(nn.Module):
    """G1 of the paper: c7s1-ngf, n_downsampling stride-2 convs, n_blocks residual blocks, as many
    transposed convs, c7s1-output_nc and tanh; all in one nn.Sequential `model`.
    """

    def __init__(self, input_nc: int, output_nc: int, ngf: int = 64, n_downsampling: int = 4, n_blocks: int = 9,
                 norm: str = "instance", *, fused: bool = True, checkpoint_activations: bool = False) -> None:
        super().__init__()
        check_ints(input_nc=input_nc, output_nc=output_nc, ngf=ngf, n_downsampling=n_downsampling)
        check_ints(0, n_blocks=n_blocks)
        norm_layer = _norm_layer(norm)
        blocks = lambda dim: [ResnetBlock(dim, norm) for _ in range(n_blocks)]
        stages = _down_up_stages(input_nc, ngf, n_downsampling, norm_layer, blocks) + [_output_layers(ngf, output_nc)]
        self.model = nn.Sequential(*[m for stage in stages for m in stage])
        self.stage_starts = _stage_starts(stages)  # the checkpoint segments of `model`
        if fused:
            _fuse(self)
        self.checkpoint_activations = checkpoint_activations  # set after fuse, which traces forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.checkpoint_activations:
            return _run_checkpointed(list(self.model), self.stage_starts, x)
        return self.model(x)


class LocalEnhancer(nn.Module):
    """G = {G1, G2}: the global generator (width ngf * 2**n_local_enhancers, its last three layers removed)
    runs on the input downsampled n_local_enhancers times; each enhancer n adds its front-end
    `model{n}_1` to the coarser output and refines it with `model{n}_2` (residual blocks, one
    transposed conv, and for the last enhancer c7s1-output_nc and tanh).
    """

    def __init__(self, input_nc: int, output_nc: int, ngf: int = 32, n_downsample_global: int = 4,
                 n_blocks_global: int = 9, n_local_enhancers: int = 1, n_blocks_local: int = 3,
                 norm: str = "instance", *, fused: bool = True, checkpoint_activations: bool = False) -> None:
        super().__init__()
        check_ints(n_local_enhancers=n_local_enhancers)
        check_ints(0, n_blocks_local=n_blocks_local)
        self.n_local_enhancers = n_local_enhancers
        norm_layer = _norm_layer(norm)
        global_g = GlobalGenerator(input_nc, output_nc, ngf * 2 ** n_local_enhancers, n_downsample_global,
                                   n_blocks_global, norm, fused=False)
        self.model = nn.Sequential(*list(global_g.model)[:-3])
        self.stage_starts = global_g.stage_starts[:-1]  # without the output stage
        for n in range(1, n_local_enhancers + 1):
            c = ngf * 2 ** (n_local_enhancers - n)
            front = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, c, kernel_size=7, padding=0), norm_layer(c),
                     nn.ReLU(True), nn.Conv2d(c, c * 2, kernel_size=3, stride=2, padding=1), norm_layer(c * 2),
                     nn.ReLU(True)]
            back: list[nn.Module] = [ResnetBlock(c * 2, norm) for _ in range(n_blocks_local)]
            back += [nn.ConvTranspose2d(c * 2, c, kernel_size=3, stride=2, padding=1, output_padding=1),
                     norm_layer(c), nn.ReLU(True)]
            if n == n_local_enhancers:
                back += _output_layers(ngf, output_nc)
            setattr(self, f"model{n}_1", nn.Sequential(*front))
            setattr(self, f"model{n}_2", nn.Sequential(*back))
        self.n_blocks_local = n_blocks_local
        self.downsample = nn.AvgPool2d(3, stride=2, padding=[1, 1], count_include_pad=False)
        if fused:
            _fuse(self)
        self.checkpoint_activations = checkpoint_activations  # set after fuse, which traces forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pyramid = [x]
        for _ in range(self.n_local_enhancers):
            pyramid.append(self.downsample(pyramid[-1]))
        if self.checkpoint_activations:
            out = _run_checkpointed(list(self.model), self.stage_starts, pyramid[-1])
        else:
            out = self.model(pyramid[-1])
        for n in range(1, self.n_local_enhancers + 1):
            front = getattr(self, f"model{n}_1")
            back = getattr(self, f"model{n}_2")
            x_n = pyramid[self.n_local_enhancers - n]
            if self.checkpoint_activations:
                # Segments: the front-end (its output is at half resolution), each residual block, the rest.
                out = _recomputed(front, x_n) + out
                out = _run_checkpointed(list(back), (*range(self.n_blocks_local + 1), len(back)), out)
            else:
                out = back(front(x_n) + out)
        return out


class Encoder(nn.Module):
    """E of the paper: an encoder-decoder whose output is averaged inside each instance of `inst`, giving one
    feature vector per object (the features pix2pixHD concatenates to G's input and clusters for editing).
    """

    def __init__(self, input_nc: int = 3, output_nc: int = 3, ngf: int = 16, n_downsampling: int = 4,
                 norm: str = "instance", *, fused: bool = True, checkpoint_activations: bool = False) -> None:
        super().__init__()
        check_ints(input_nc=input_nc, output_nc=output_nc, ngf=ngf, n_downsampling=n_downsampling)
        self.output_nc = output_nc
        stages = _down_up_stages(input_nc, ngf, n_downsampling, _norm_layer(norm), lambda dim: [])
        stages.append(_output_layers(ngf, output_nc))
        self.model = nn.Sequential(*[m for stage in stages for m in stage])
        self.stage_starts = _stage_starts(stages)
        if fused:
            _fuse(self)
        self.checkpoint_activations = checkpoint_activations  # set after fuse, which traces forward

    def forward(self, x: torch.Tensor, inst: torch.Tensor) -> torch.Tensor:
        """x (N, input_nc, H, W), inst (N, 1, H, W) integer-valued instance ids -> (N, output_nc, H, W)."""
        if self.checkpoint_activations:
            out = _run_checkpointed(list(self.model), self.stage_starts, x)
        else:
            out = self.model(x)
        if not isinstance(inst, torch.Tensor) or inst.dim() != 4 or inst.shape[1] != 1 \
                or inst.shape[0] != out.shape[0] or inst.shape[2:] != out.shape[2:]:
            got = tuple(inst.shape) if isinstance(inst, torch.Tensor) else type(inst).__name__
            raise ValueError(f"Encoder: inst must have shape ({out.shape[0]}, 1, {out.shape[2]}, {out.shape[3]}) "
                             f"to match the encoded features, got {got}")
        return instance_average(out, inst)


def instance_average(features: torch.Tensor, inst: torch.Tensor) -> torch.Tensor:
    """Replace every feature by its mean over the pixels of the same image with the same instance id
    (ids truncated to integers, as the reference's astype(int)). Differentiable in `features`.
    """
    n, c, h, w = features.shape
    ids = inst.reshape(n, h * w).long().to(features.device)
    _, segment = torch.unique(ids, return_inverse=True)  # ids renumbered 0..U-1 over the whole batch
    n_segments = int(segment.max()) + 1
    key = (segment + torch.arange(n, device=ids.device)[:, None] * n_segments).reshape(-1)  # (image, id) pairs
    flat = features.reshape(n, c, h * w).transpose(1, 2).reshape(n * h * w, c)
    sums = flat.new_zeros(n * n_segments, c).index_add(0, key, flat)
    counts = torch.bincount(key, minlength=n * n_segments).clamp_min(1).to(flat.dtype)
    means = (sums / counts[:, None])[key]
    return means.reshape(n, h * w, c).transpose(1, 2).reshape(n, c, h, w)


class NLayerDiscriminator(nn.Module):
    """pix2pixHD's PatchGAN: 4x4 convs with padding ceil(3/2) = 2 (junyanz's uses 1), n_layers stride-2
    (the first without norm), one stride-1 conv with norm, and a stride-1 conv to one channel; LeakyReLU 0.2.
    With get_interm_feat each stage is its own `model{j}` and forward returns all n_layers + 2 outputs
    (the last is the patch logits); without, one `model` and the logits alone.
    """

    def __init__(self, input_nc: int, ndf: int = 64, n_layers: int = 3, norm: str = "instance",
                 get_interm_feat: bool = True, *, fused: bool = True) -> None:
        super().__init__()
        check_ints(input_nc=input_nc, ndf=ndf, n_layers=n_layers)
        self.n_layers = n_layers
        self.get_interm_feat = get_interm_feat
        norm_layer = _norm_layer(norm)
        kw, padw = 4, 2
        stages = [[nn.Conv2d(input_nc, ndf, kernel_size=kw, stride=2, padding=padw), nn.LeakyReLU(0.2, True)]]
        nf = ndf
        for n in range(1, n_layers + 1):
            nf_prev, nf = nf, min(nf * 2, 512)
            stride = 2 if n < n_layers else 1
            stages.append([nn.Conv2d(nf_prev, nf, kernel_size=kw, stride=stride, padding=padw), norm_layer(nf),
                           nn.LeakyReLU(0.2, True)])
        stages.append([nn.Conv2d(nf, 1, kernel_size=kw, stride=1, padding=padw)])
        if get_interm_feat:
            for j, stage in enumerate(stages):
                setattr(self, f"model{j}", nn.Sequential(*stage))
        else:
            self.model = nn.Sequential(*[m for stage in stages for m in stage])
        if fused:
            _fuse(self)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor] | torch.Tensor:
        if not self.get_interm_feat:
            return self.model(x)
        return _stage_outputs([getattr(self, f"model{j}") for j in range(self.n_layers + 2)], x)


def _stage_outputs(stages: list[nn.Module], x: torch.Tensor) -> list[torch.Tensor]:
    outputs = []
    for stage in stages:
        x = stage(x)
        outputs.append(x)
    return outputs


class MultiscaleDiscriminator(nn.Module):
    """num_D NLayerDiscriminators on the input downsampled 0..num_D-1 times (AvgPool 3, stride 2).

    forward returns one list per scale, finest first: all n_layers + 2 stage outputs with
    get_interm_feat (for feature matching; the last is the logits), else [logits]. As in the reference,
    the network stored as scale num_D-1 (or layer num_D-1) sees the full-resolution input.
    """

    def __init__(self, input_nc: int, ndf: int = 64, n_layers: int = 3, num_D: int = 3,
                 get_interm_feat: bool = True, norm: str = "instance", *, fused: bool = True,
                 checkpoint_activations: bool = False) -> None:
        super().__init__()
        check_ints(num_D=num_D)
        self.num_D = num_D
        self.n_layers = n_layers
        self.get_interm_feat = get_interm_feat
        for i in range(num_D):
            net = NLayerDiscriminator(input_nc, ndf, n_layers, norm, get_interm_feat, fused=False)
            if get_interm_feat:
                for j in range(n_layers + 2):
                    setattr(self, f"scale{i}_layer{j}", getattr(net, f"model{j}"))
            else:
                setattr(self, f"layer{i}", net.model)
        self.downsample = nn.AvgPool2d(3, stride=2, padding=[1, 1], count_include_pad=False)
        if fused:
            _fuse(self)
        self.checkpoint_activations = checkpoint_activations  # set after fuse, which traces forward

    def forward(self, x: torch.Tensor | Sequence[torch.Tensor]) -> list[list[torch.Tensor]]:
        """x: D's input, or a list of parts that make it when concatenated along the channels.

        With checkpoint_activations, parts are never concatenated: each scale pools them separately and its
        first convolution is the sum of one convolution per part (the weight's channel slices), so neither the
        full-width input nor its gradient (a part that needs one gets its own) exists, and each scale is one
        checkpoint segment. The same function up to rounding (float64: ~1e-16)."""
        parts = (x,) if isinstance(x, torch.Tensor) else tuple(x)
        if self.checkpoint_activations:
            return [_recomputed(functools.partial(self._scale_from_parts, i), *parts) for i in range(self.num_D)]
        x = parts[0] if len(parts) == 1 else torch.cat(list(parts), 1)
        results = []
        for i in range(self.num_D):
            results.append(_stage_outputs(self._stages(i), x))
            if i != self.num_D - 1:
                x = self.downsample(x)
        return results

    def _stages(self, i: int) -> list[nn.Module]:
        """The stages of the network that runs at scale i (0: full resolution, on x downsampled i times)."""
        scale = self.num_D - 1 - i
        if self.get_interm_feat:
            return [getattr(self, f"scale{scale}_layer{j}") for j in range(self.n_layers + 2)]
        return [getattr(self, f"layer{scale}")]

    def _scale_from_parts(self, i: int, *parts: torch.Tensor) -> list[torch.Tensor]:
        for _ in range(i):
            parts = tuple(self.downsample(p) for p in parts)
        first, *rest = self._stages(i)
        h = first[1:](_conv_of_parts(first[0], parts))
        return [h] + _stage_outputs(rest, h)


def _conv_of_parts(conv: nn.Conv2d, parts: Sequence[torch.Tensor]) -> torch.Tensor:
    """conv(cat(parts, 1)) as the sum over parts of the convolution with the part's slice of the weight."""
    widths = [p.shape[1] for p in parts]
    if sum(widths) != conv.in_channels:
        raise ValueError(f"MultiscaleDiscriminator: the input parts have {widths} channels, together "
                         f"{sum(widths)}; the discriminator takes {conv.in_channels}")
    out, start = None, 0
    for part, width in zip(parts, widths):
        term = F.conv2d(part, conv.weight[:, start:start + width], conv.bias if out is None else None, conv.stride,
                        conv.padding)  # D's convs: zero padding, no dilation, no groups
        out = term if out is None else out + term
        start += width
    return out
