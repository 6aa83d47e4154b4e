"""The InceptionV3 of FID: the network of TensorFlow's 2015-12-05 Inception graph, as ported to PyTorch.

The standard FID numbers come from that graph; its weights, converted to a PyTorch state_dict, are the
file pt_inception-2015-12-05-6726825d.pth distributed by pytorch-fid. Its architecture differs from
torchvision's InceptionV3 in the pooling branches (average pools that exclude padding, a max pool in
the last block) and in having 1008 classes. This module builds that architecture with the same
parameter names, so the file loads as is; it never downloads anything.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{WEIGHTS_FILE}"
WEIGHTS_ENV = "GANCORE_FID_WEIGHTS"


class BasicConv2d(nn.Module):
    """Convolution without bias, batch norm (eps 1e-3, as in the TF graph), ReLU."""

    def __init__(self, cin: int, cout: int, kernel, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool_same(x: torch.Tensor) -> torch.Tensor:
    # TF's average pool with SAME padding divides by the number of real pixels under the window.
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class BlockA(nn.Module):
    """Mixed_5b/5c/5d: 1x1, 5x5, double 3x3 and pooled branches."""

    def __init__(self, cin: int, pool_features: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, 1)
        self.branch5x5_1 = BasicConv2d(cin, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(_avg_pool_same(x)),
        ], 1)


class BlockB(nn.Module):
    """Mixed_6a: grid reduction 35 -> 17."""

    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            F.max_pool2d(x, 3, stride=2),
        ], 1)


class BlockC(nn.Module):
    """Mixed_6b..6e: factorised 7x7 convolutions with `mid` channels inside."""

    def __init__(self, cin: int, mid: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 192, 1)
        self.branch7x7_1 = BasicConv2d(cin, mid, 1)
        self.branch7x7_2 = BasicConv2d(mid, mid, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(mid, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, mid, 1)
        self.branch7x7dbl_2 = BasicConv2d(mid, mid, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(mid, mid, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(mid, mid, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(mid, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        double = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            double = layer(double)
        return torch.cat([
            self.branch1x1(x),
            self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))),
            double,
            self.branch_pool(_avg_pool_same(x)),
        ], 1)


class BlockD(nn.Module):
    """Mixed_7a: grid reduction 17 -> 8."""

    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seven = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), seven, F.max_pool2d(x, 3, stride=2)], 1)


class BlockE(nn.Module):
    """Mixed_7b/7c: expanded filter banks; the last one (max_pool=True) pools with a max in TF's graph."""

    def __init__(self, cin: int, max_pool: bool):
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = BasicConv2d(cin, 320, 1)
        self.branch3x3_1 = BasicConv2d(cin, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        single = self.branch3x3_1(x)
        double = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _avg_pool_same(x)
        return torch.cat([
            self.branch1x1(x),
            self.branch3x3_2a(single), self.branch3x3_2b(single),
            self.branch3x3dbl_3a(double), self.branch3x3dbl_3b(double),
            self.branch_pool(pooled),
        ], 1)


class InceptionV3FID(nn.Module):
    """FID's InceptionV3: images (N, C, H, W) in [-1, 1], C = 1 or 3, to pool3 features (N, 2048).

    Images are resized to 299 x 299 bilinearly (align_corners=False), as pytorch-fid does; grey images
    are repeated over 3 channels. `logits` gives the 1008 class logits for the Inception Score.
    Build it with `load_fid_inception` to get the real weights; built directly its weights are random.
    """

    dim = 2048
    input_size = (299, 299)
    name = "inception-v3-fid-2015-12-05/pool3"

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = BlockA(192, 32)
        self.Mixed_5c = BlockA(256, 64)
        self.Mixed_5d = BlockA(288, 64)
        self.Mixed_6a = BlockB(288)
        self.Mixed_6b = BlockC(768, 128)
        self.Mixed_6c = BlockC(768, 160)
        self.Mixed_6d = BlockC(768, 160)
        self.Mixed_6e = BlockC(768, 192)
        self.Mixed_7a = BlockD(768)
        self.Mixed_7b = BlockE(1280, max_pool=False)
        self.Mixed_7c = BlockE(2048, max_pool=True)
        self.fc = nn.Linear(2048, 1008)
        self.eval()

    def pool3(self, images: torch.Tensor) -> torch.Tensor:
        x = _prepare(images, self.input_size)
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, 3, stride=2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        return x.mean((2, 3))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.pool3(images)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool3(images))


def _prepare(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must have shape (N, C, H, W) with C = 1 or 3, got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise TypeError(f"images must be floating point in [-1, 1], got dtype {images.dtype}")
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    if tuple(images.shape[-2:]) != size:
        images = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
    return images


def default_weight_paths() -> list[Path]:
    """Where the weights are looked for when neither an argument nor GANCORE_FID_WEIGHTS names them."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return [cache / "gancore" / WEIGHTS_FILE, Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE]


def find_weights(weights: str | os.PathLike | None = None) -> Path:
    """The weights file: `weights`, else $GANCORE_FID_WEIGHTS, else the first default path that exists."""
    if weights is not None:
        candidates, origin = [Path(weights)], "the weights argument"
    elif os.environ.get(WEIGHTS_ENV):
        candidates, origin = [Path(os.environ[WEIGHTS_ENV])], f"${WEIGHTS_ENV}"
    else:
        candidates, origin = default_weight_paths(), None
    for path in candidates:
        if path.is_file():
            return path
    where = (f"{origin} points to {candidates[0]}, which does not exist" if origin
             else "none was given and none is in " + " or ".join(str(p) for p in candidates))
    raise FileNotFoundError(
        f"The FID InceptionV3 needs the weights file {WEIGHTS_FILE} (TensorFlow's 2015-12-05 Inception, "
        f"as converted by pytorch-fid), and {where}. This machine does not download: fetch it elsewhere "
        f"from {WEIGHTS_URL}, then pass its path with --weights PATH (CLI) or weights=PATH, set "
        f"{WEIGHTS_ENV}=PATH, or copy it to {default_weight_paths()[0]}."
    )


def load_fid_inception(weights: str | os.PathLike | None = None, *,
                       device: torch.device | str = "cpu") -> InceptionV3FID:
    """InceptionV3FID with weights from `weights`, $GANCORE_FID_WEIGHTS or a default path, in eval mode."""
    path = find_weights(weights)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated download, an HTML page saved as .pth, ...
        raise ValueError(f"{path}: could not read the FID Inception weights ({exc})") from exc
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state_dict (a dict of tensors), got {type(state).__name__}")
    model = InceptionV3FID()
    expected = {k: v.shape for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    given = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{path} is not the FID Inception state_dict: {len(missing)} keys missing "
                         f"(e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})")
    for key, shape in expected.items():
        if tuple(given[key].shape) != tuple(shape):
            raise ValueError(f"{path}: {key} has shape {tuple(given[key].shape)}, expected {tuple(shape)}")
    model.load_state_dict(given, strict=False)
    return model.requires_grad_(False).eval().to(device)
