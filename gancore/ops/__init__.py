"""Public fused ops. Each op dispatches to ref / cpu / triton / cuda (see gancore.ops._dispatch)."""

from gancore.ops._dispatch import BackendUnavailable, backends, record_backends
from gancore.ops.instance_norm import instance_norm_act

__all__ = ["BackendUnavailable", "backends", "instance_norm_act", "record_backends"]
