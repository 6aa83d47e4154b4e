"""With GANCORE_HUGE_PAGES=1 the CPU kernels put their large outputs on transparent huge pages
(csrc/cpu/huge_pages.h); by default they do not.

Each check runs in a fresh process, so glibc's default allocator maps every 16 MiB tensor afresh and no
earlier test's allocator setting or tensors interfere. The checks read the kernel's own account of the
output's mapping (AnonHugePages in /proc/self/smaps). They run only where THP is in "madvise" mode: there
nothing but the kernels' advice can put those pages on huge pages, so the check can fail.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")

pytestmark = pytest.mark.skipif(
    not THP.exists() or "[madvise]" not in THP.read_text(),
    reason="needs Linux transparent huge pages in madvise mode",
)

SCRIPT = r"""
import torch
from gancore.ops import batch_norm_act, instance_norm_act, record_backends

def huge_kib(t):
    # AnonHugePages of the mapping that holds t's first whole 2 MiB page
    address = (t.data_ptr() + (2 << 20) - 1) // (2 << 20) * (2 << 20)
    inside = False
    for line in open("/proc/self/smaps"):
        head = line.split()[0]
        if "-" in head and not head.endswith(":"):
            start, end = (int(v, 16) for v in head.split("-"))
            inside = start <= address < end
        elif inside and head == "AnonHugePages:":
            return int(line.split()[1])
    raise AssertionError("no mapping holds the tensor")

x = torch.randn(4, 64, 128, 128, requires_grad=True)  # 16 MiB
grad = torch.randn_like(x)
with record_backends() as ran:
    y = instance_norm_act(x, impl="cpu")
    (dx,) = torch.autograd.grad(y, x, grad)
    z = batch_norm_act(x.detach(), None, None, None, None, training=True, impl="cpu")
assert {backend for _, backend in ran} == {"cpu"}, ran
print(huge_kib(y), huge_kib(dx), huge_kib(z), huge_kib(grad))
"""


def _huge_kib(**env: str) -> list[int]:
    environment = {k: v for k, v in os.environ.items() if k not in ("THP_MEM_ALLOC_ENABLE", "GANCORE_HUGE_PAGES")}
    done = subprocess.run([sys.executable, "-c", SCRIPT], env={**environment, **env}, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [int(v) for v in done.stdout.split()]


def test_with_gancore_huge_pages_1_large_outputs_are_on_huge_pages_and_plain_tensors_are_not():
    forward, backward, batch_norm, plain = _huge_kib(GANCORE_HUGE_PAGES="1")
    # 16 MiB outputs hold at least 7 whole huge pages; the kernel may still back a few with small ones
    assert forward >= 4096 and backward >= 4096 and batch_norm >= 4096, (forward, backward, batch_norm)
    assert plain == 0  # torch.randn_like's tensor: what the kernels' outputs would be without the advice


def test_by_default_outputs_stay_on_small_pages():
    assert _huge_kib() == [0, 0, 0, 0]
    assert _huge_kib(GANCORE_HUGE_PAGES="0") == [0, 0, 0, 0]
