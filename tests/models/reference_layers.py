"""Published layer lists, written as data, and what follows from them: the state_dict keys and shapes a
reference checkpoint has, a random such checkpoint, and a functional forward pass over it.

A layer is a tuple (kind, *args); its index in its list is its index in the reference's nn.Sequential.
Kinds with parameters: ("conv", c_in, c_out, k, stride, pad, bias), ("convT", c_in, c_out, k, stride, pad,
out_pad, bias), ("in", c) (InstanceNorm2d, affine=False: no keys), ("in_rs", c) (affine, running stats),
("bn", c), ("prelu", n), ("linear", f_in, f_out); ("res", name, layers) is a submodule whose forward is
x + <name>(x). Kinds without: ("pad", p) (reflection), ("relu",), ("lrelu", slope), ("tanh",),
("maxpool",), ("shuffle", r), ("flatten",), ("gap",) (global average pool).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

Layer = tuple


def keys(layers: list[Layer], prefix: str = "") -> dict[str, tuple[int, ...]]:
    """{state_dict key: shape} of a reference nn.Sequential built from `layers`."""
    out: dict[str, tuple[int, ...]] = {}
    for i, layer in enumerate(layers):
        kind, p = layer[0], f"{prefix}{i}."
        if kind == "conv":
            _, c_in, c_out, k, _, _, bias = layer
            out[p + "weight"] = (c_out, c_in, k, k)
            if bias:
                out[p + "bias"] = (c_out,)
        elif kind == "convT":
            _, c_in, c_out, k, _, _, _, bias = layer
            out[p + "weight"] = (c_in, c_out, k, k)
            if bias:
                out[p + "bias"] = (c_out,)
        elif kind in ("in_rs", "bn"):
            c = layer[1]
            out.update({p + "weight": (c,), p + "bias": (c,), p + "running_mean": (c,), p + "running_var": (c,),
                        p + "num_batches_tracked": ()})
        elif kind == "prelu":
            out[p + "weight"] = (layer[1],)
        elif kind == "linear":
            out[p + "weight"] = (layer[2], layer[1])
            out[p + "bias"] = (layer[2],)
        elif kind == "res":
            out.update(keys(layer[2], f"{p}{layer[1]}."))
    return out


def n_parameters(shapes: dict[str, tuple[int, ...]]) -> int:
    """Learnable parameters: every key except the norms' running statistics."""
    total = 0
    for key, shape in shapes.items():
        if key.rsplit(".", 1)[-1] in ("running_mean", "running_var", "num_batches_tracked"):
            continue
        n = 1
        for s in shape:
            n *= s
        total += n
    return total


def random_checkpoint(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    """Float32 values under the reference keys, scaled so that deep stacks neither vanish nor explode."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for key, shape in shapes.items():
        name = key.rsplit(".", 1)[-1]
        if name == "num_batches_tracked":
            sd[key] = torch.tensor(7)
        elif name == "running_var":
            sd[key] = torch.rand(shape, generator=g) + 0.5
        elif name == "running_mean":
            sd[key] = torch.randn(shape, generator=g) * 0.1
        elif len(shape) == 1:  # norm scales, biases, PReLU slopes
            sd[key] = 1.0 + 0.1 * torch.randn(shape, generator=g) if _is_scale(key, shapes) \
                else 0.1 * torch.randn(shape, generator=g)
        else:
            fan_in = shape[1] * (shape[2] * shape[3] if len(shape) == 4 else 1)
            sd[key] = torch.randn(shape, generator=g) / fan_in ** 0.5
    return sd


def _is_scale(key: str, shapes: dict) -> bool:
    """A norm's weight (it has running statistics next to it)."""
    return key.endswith(".weight") and key[: -len("weight")] + "running_var" in shapes


def forward(layers: list[Layer], sd: dict[str, torch.Tensor], x: torch.Tensor, prefix: str = "", *,
            training: bool = True) -> torch.Tensor:
    """The reference nn.Sequential's forward, written with torch.nn.functional over the checkpoint `sd`."""
    for i, layer in enumerate(layers):
        kind, p = layer[0], f"{prefix}{i}."
        if kind == "conv":
            _, _, _, _, stride, pad, bias = layer
            x = F.conv2d(x, sd[p + "weight"], sd.get(p + "bias") if bias else None, stride=stride, padding=pad)
        elif kind == "convT":
            _, _, _, _, stride, pad, out_pad, bias = layer
            x = F.conv_transpose2d(x, sd[p + "weight"], sd.get(p + "bias") if bias else None, stride=stride,
                                   padding=pad, output_padding=out_pad)
        elif kind == "in":
            x = F.instance_norm(x)
        elif kind == "in_rs":
            x = F.instance_norm(x, sd[p + "running_mean"].clone(), sd[p + "running_var"].clone(), sd[p + "weight"],
                                sd[p + "bias"], use_input_stats=training)
        elif kind == "bn":
            x = F.batch_norm(x, sd[p + "running_mean"].clone(), sd[p + "running_var"].clone(), sd[p + "weight"],
                             sd[p + "bias"], training=training)
        elif kind == "prelu":
            x = F.prelu(x, sd[p + "weight"])
        elif kind == "linear":
            x = F.linear(x, sd[p + "weight"], sd[p + "bias"])
        elif kind == "res":
            x = x + forward(layer[2], sd, x, f"{p}{layer[1]}.", training=training)
        elif kind == "pad":
            x = F.pad(x, (layer[1],) * 4, mode="reflect")
        elif kind == "relu":
            x = F.relu(x)
        elif kind == "lrelu":
            x = F.leaky_relu(x, layer[1])
        elif kind == "tanh":
            x = torch.tanh(x)
        elif kind == "maxpool":
            x = F.max_pool2d(x, 2, 2)
        elif kind == "shuffle":
            x = F.pixel_shuffle(x, layer[1])
        elif kind == "flatten":
            x = x.flatten(1)
        elif kind == "gap":
            x = x.mean(dim=(2, 3), keepdim=True)
        else:
            raise AssertionError(f"unknown layer kind {kind!r}")
    return x


def to_double(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.double() if v.is_floating_point() else v for k, v in sd.items()}


def state_shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b||, the norm-wise distance the project's float32 checks use."""
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm())
