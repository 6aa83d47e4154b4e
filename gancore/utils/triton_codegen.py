"""Compiles Triton kernels for real GPUs on a machine without one, and reports their resources.

Each kernel module lists `COMPILE_CASES`: dicts with "name", "fn" (the @triton.jit kernel),
"signature" ({arg: "*fp32" | "i32" | "fp32" | "constexpr" ...}) and "constexprs" ({name: value}).
Run as `python -m gancore.utils.triton_codegen MODULE [MODULE ...]` in an environment without
TRITON_INTERPRET (under the interpreter kernels are not JIT functions); prints one JSON report.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import sys

ARCHS = (80, 90)


def compile_case(case: dict, arch: int) -> dict:
    import triton
    from triton.backends.compiler import GPUTarget

    src = triton.compiler.ASTSource(fn=case["fn"], signature=case["signature"], constexprs=case["constexprs"])
    compiled = triton.compile(src, target=GPUTarget("cuda", arch, 32))
    ptx = compiled.asm["ptx"]
    cubin = compiled.asm["cubin"]
    meta = compiled.metadata
    report = {
        "kernel": case["name"],
        "arch": f"sm_{arch}",
        "ptx_lines": ptx.count("\n"),
        "cubin_bytes": len(cubin),
        "shared_bytes": getattr(meta, "shared", None),
        "num_warps": getattr(meta, "num_warps", None),
    }
    report.update(_resources(ptx, arch))
    return report


def _ptxas(arch: int) -> str | None:
    """The ptxas Triton itself uses for `arch` (its bundled ones differ in the PTX versions they take)."""
    try:
        from triton.backends.nvidia.compiler import get_ptxas

        return get_ptxas(arch).path
    except (ImportError, AttributeError, RuntimeError):
        return None


def _resources(ptx: str, arch: int) -> dict:
    """Registers and spill bytes as ptxas reports them for this PTX (None when no ptxas)."""
    import subprocess
    import tempfile

    ptxas = _ptxas(arch)
    if ptxas is None:
        return {"registers": None, "spill_bytes": None}
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "k.ptx")
        with open(src, "w") as f:
            f.write(ptx)
        arch_flag = f"sm_{arch}a" if arch == 90 else f"sm_{arch}"
        run = subprocess.run([ptxas, "-v", f"-arch={arch_flag}", src, "-o", os.path.join(tmp, "k.cubin")],
                             capture_output=True, text=True)
    log = run.stdout + run.stderr
    regs = re.findall(r"Used (\d+) registers", log)
    if run.returncode != 0 or not regs:
        return {"registers": None, "spill_bytes": None, "ptxas_error": log.strip()[-500:]}
    # ptxas prints the spill line only when something spills
    spills = re.findall(r"(\d+) bytes spill stores", log)
    return {"registers": max(map(int, regs)), "spill_bytes": sum(map(int, spills))}


def compile_modules(names: list[str]) -> list[dict]:
    if os.environ.get("TRITON_INTERPRET") == "1":
        raise RuntimeError("unset TRITON_INTERPRET: interpreted kernels cannot be compiled for a GPU")
    reports = []
    for name in names:
        module = importlib.import_module(name)
        for case in module.COMPILE_CASES:
            for arch in ARCHS:
                reports.append(compile_case(case, arch))
    return reports


if __name__ == "__main__":
    print(json.dumps(compile_modules(sys.argv[1:]), indent=1))
