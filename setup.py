"""Builds gancore._C: the C++ CPU kernels always, the CUDA kernels when torch and nvcc support CUDA.

Environment switches:
  GANCORE_NATIVE=1     add -march=native (a build for this machine only; never the default)
  GANCORE_NO_CUDA=1    skip the CUDA kernels even where they could be built
  TORCH_CUDA_ARCH_LIST defaults to "8.0;9.0"
"""

import glob
import os

from setuptools import find_packages, setup

try:
    import torch
    from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension
except ImportError:  # no torch at build time: install the pure-Python package, ops use the ref path
    torch = None


def extensions():
    if torch is None:
        return [], {}
    # -fno-trapping-math lets the compiler turn the activation's select into vector blends.
    cxx_flags = ["-O3", "-fopenmp", "-fno-trapping-math"]
    if os.environ.get("GANCORE_NATIVE") == "1":
        cxx_flags.append("-march=native")
    sources = sorted(glob.glob("csrc/cpu/*.cpp")) + ["csrc/bindings.cpp"]
    with_cuda = (
        torch.version.cuda is not None
        and CUDA_HOME is not None
        and os.environ.get("GANCORE_NO_CUDA") != "1"
    )
    if with_cuda:
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0")
        sources += sorted(glob.glob("csrc/cuda/*.cu")) + sorted(glob.glob("csrc/cuda/*.cpp"))
        ext = CUDAExtension(
            "gancore._C",
            sources,
            include_dirs=[os.path.abspath("csrc")],
            define_macros=[("GANCORE_WITH_CUDA", "1")],
            extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3", "--use_fast_math", "-lineinfo"]},
            extra_link_args=["-fopenmp"],
        )
    else:
        ext = CppExtension(
            "gancore._C",
            sources,
            include_dirs=[os.path.abspath("csrc")],
            extra_compile_args={"cxx": cxx_flags},
            extra_link_args=["-fopenmp"],
        )
    return [ext], {"build_ext": BuildExtension.with_options(use_ninja=True)}


ext_modules, cmdclass = extensions()

setup(
    name="gancore",
    version="0.1.0",
    description="Fused kernels and a thin trainer for generative adversarial networks",
    # gancore/kernels is a symlink to kernels/, so the Triton kernels import as gancore.kernels
    # from a source checkout and from an install alike.
    packages=find_packages(include=["gancore", "gancore.*"]),
    python_requires=">=3.10",
    install_requires=["torch", "numpy", "tqdm", "pillow", "pyyaml"],
    extras_require={
        "gpu": ["triton"],
        "plot": ["matplotlib"],
        "tensorboard": ["tensorboard"],
        "test": ["pytest", "pytest-benchmark", "scipy", "ruff", "triton"],
    },
    entry_points={"console_scripts": ["gancore=gancore.cli:main"]},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
