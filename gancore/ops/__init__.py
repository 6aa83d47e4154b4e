"""Public fused ops. Each op dispatches to ref / cpu / triton / cuda (see gancore.ops._dispatch)."""

from gancore.ops._dispatch import BackendUnavailable, backends, record_backends

__all__ = ["BackendUnavailable", "backends", "record_backends"]
