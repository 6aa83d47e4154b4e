"""Triton kernels (GPU path), imported as gancore.kernels.<family>; triton is needed only here."""
