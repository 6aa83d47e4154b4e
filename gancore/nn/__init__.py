"""Drop-in modules built on gancore.ops."""

from gancore.nn.batch_norm import BatchNormAct1d, BatchNormAct2d, BatchNormAct3d, RunningInstanceNormAct2d
from gancore.nn.fuse import FUSERS, FuseReport, fuse, register_fuser
from gancore.nn.instance_norm import InstanceNormAct1d, InstanceNormAct2d, InstanceNormAct3d
from gancore.nn.patchgan import MultiScalePatchGANHead, PatchGANHead

__all__ = ["FUSERS", "BatchNormAct1d", "BatchNormAct2d", "BatchNormAct3d", "FuseReport", "InstanceNormAct1d",
           "InstanceNormAct2d", "InstanceNormAct3d", "MultiScalePatchGANHead", "PatchGANHead",
           "RunningInstanceNormAct2d", "fuse", "register_fuser"]
