"""Drop-in modules built on gancore.ops."""

from gancore.nn.instance_norm import InstanceNormAct1d, InstanceNormAct2d, InstanceNormAct3d, fuse
from gancore.nn.patchgan import MultiScalePatchGANHead, PatchGANHead

__all__ = ["InstanceNormAct1d", "InstanceNormAct2d", "InstanceNormAct3d", "MultiScalePatchGANHead", "PatchGANHead",
           "fuse"]
