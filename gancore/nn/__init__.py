"""Drop-in modules built on gancore.ops."""

from gancore.nn.batch_norm import BatchNormAct1d, BatchNormAct2d, RunningInstanceNormAct2d
from gancore.nn.instance_norm import InstanceNormAct1d, InstanceNormAct2d, InstanceNormAct3d, fuse
from gancore.nn.patchgan import MultiScalePatchGANHead, PatchGANHead

__all__ = ["BatchNormAct1d", "BatchNormAct2d", "InstanceNormAct1d", "InstanceNormAct2d", "InstanceNormAct3d",
           "MultiScalePatchGANHead", "PatchGANHead", "RunningInstanceNormAct2d", "fuse"]
