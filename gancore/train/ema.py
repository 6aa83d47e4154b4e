"""Exponential moving average of a network's weights (the generator that samples are drawn from)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """Keeps `module`'s weights averaged as w_ema <- beta * w_ema + (1 - beta) * w.

    The decay ramps up as min(beta, (1 + n) / (10 + n)) over the first updates n, so early samples
    are not dominated by the random initialisation. Buffers (batch-norm statistics) are copied.
    """

    def __init__(self, module: nn.Module, beta: float) -> None:
        self.module = copy.deepcopy(module).eval().requires_grad_(False)
        self.beta = beta
        self.updates = 0

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        beta = min(self.beta, (1.0 + self.updates) / (10.0 + self.updates))
        ema_params = list(self.module.parameters())
        params = [p.detach() for p in module.parameters()]
        torch._foreach_lerp_(ema_params, params, 1.0 - beta)
        for ema_buf, buf in zip(self.module.buffers(), module.buffers()):
            ema_buf.copy_(buf)
        self.updates += 1

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
