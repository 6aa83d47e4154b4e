"""CPU allocator tuning: keep large freed blocks in the heap instead of returning them to the OS.

With glibc's defaults every block above the mmap threshold (at most 32 MiB) is mmap'ed and
munmap'ed, so each new large tensor pays its page faults again: on a 2-core machine a fresh
32 MiB output costs several ms of faults against ~1.5 ms for the copy itself. Turning mmap off
(M_MMAP_MAX=0) and raising M_TRIM_THRESHOLD keeps those pages mapped in the heap and reused.
The price is resident memory that is not given back until the process exits, so this is opt-in
(`gancore bench --tuned-alloc`, `gancore train --tuned-alloc`) and never applied at import.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
_INT_MAX = 2**31 - 1

_state = {"tuned": False}


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") else None


def tune_cpu_allocator() -> bool:
    """Keep freed large blocks in the malloc heap (glibc only).

    Returns True when the setting took effect, False where it does not apply (not glibc, e.g.
    macOS or musl). jemalloc or tcmalloc loaded through LD_PRELOAD cache large blocks by themselves.
    """
    libc = _libc()
    if libc is None:
        return False
    ok = libc.mallopt(M_MMAP_MAX, 0) == 1 and libc.mallopt(M_TRIM_THRESHOLD, _INT_MAX) == 1
    _state["tuned"] = _state["tuned"] or ok
    return ok


def cpu_allocator_tuned() -> bool:
    """True once tune_cpu_allocator() has taken effect in this process."""
    return _state["tuned"]
