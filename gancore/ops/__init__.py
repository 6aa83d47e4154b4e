"""Public fused ops. Each op dispatches to ref / cpu / triton / cuda (see gancore.ops._dispatch)."""

from gancore.ops import fid  # noqa: F401 - registers fid_scatter and fid_newton_schulz
from gancore.ops._dispatch import BackendUnavailable, backends, record_backends
from gancore.ops.batch_norm import batch_norm_act
from gancore.ops.gradient_penalty import gp_interpolate, gradient_norm_penalty, gradient_penalty
from gancore.ops.instance_norm import instance_norm_act
from gancore.ops.patchgan import patchgan_loss

__all__ = ["BackendUnavailable", "backends", "batch_norm_act", "gp_interpolate", "gradient_norm_penalty",
           "gradient_penalty", "instance_norm_act", "patchgan_loss", "record_backends"]
