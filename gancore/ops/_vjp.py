"""Vector-Jacobian products of reference formulas, for the backward of a fused op's backward.

torch.func.vjp would do, but in torch 2.13 each call leaves a reference cycle that keeps its
residuals (whole activations) alive until the cyclic garbage collector runs. This is the same
product through torch.autograd.grad: differentiable again when the caller builds a graph
(create_graph), and freed as soon as it returns otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


def vjp(fn: Callable[..., Sequence[torch.Tensor]], primals: Sequence[torch.Tensor],
        cotangents: Sequence[torch.Tensor | None]) -> list[torch.Tensor | None]:
    """Gradients of sum(<fn(*primals)[i], cotangents[i]>) with respect to each primal.

    Cotangents of None (or empty) skip that output. A primal the outputs do not depend on gets None,
    or zeros when it requires grad (its gradient is zero, and the caller may ask for it without
    allow_unused, e.g. a bias that moves only an activation's piecewise-constant slope).
    """
    create_graph = torch.is_grad_enabled()
    with torch.enable_grad():
        # in a graph-building backward, primals that require grad stay connected to the outer graph
        inputs = [p if create_graph and p.requires_grad else p.detach().requires_grad_(True) for p in primals]
        outputs = fn(*inputs)
        pairs = [(o, c) for o, c in zip(outputs, cotangents) if c is not None and c.numel()]
        grads = (torch.autograd.grad([o for o, _ in pairs], inputs, [c for _, c in pairs],
                                     create_graph=create_graph, allow_unused=True) if pairs else [None] * len(inputs))
    return [torch.zeros_like(p) if g is None and p.requires_grad else g for g, p in zip(grads, primals)]
