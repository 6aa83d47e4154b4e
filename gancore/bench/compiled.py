"""torch.compile contenders that can prove they ran compiled code.

Dynamo falls back to eager code without an error when a function hits its recompile limit or breaks
its graph; a benchmark row labelled torch.compile would then time eager PyTorch. A StrictCompile
resets dynamo, compiles with fullgraph=True and dynamic=False, fails on the recompile limit, and
counts how often the compiled graph itself runs, so `check()` can tell a fallback from a real run.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


class CompileFallback(RuntimeError):
    """A torch.compile contender ran eager code instead of its compiled graph."""


class StrictCompile:
    """torch.compile(fn) whose compiled-graph runs are counted against its calls.

    Construct one per benchmark case (the constructor resets dynamo, so no case inherits another's
    cache entries and recompile count). `fn` may be a function or an nn.Module. `compiler` turns
    dynamo's graph into a callable: inductor's compile_fx (what torch.compile uses) unless given.
    """

    def __init__(self, fn: Callable, label: str, compiler: Callable | None = None) -> None:
        torch._dynamo.reset()
        self.label = label
        self.calls = 0
        self.graph_runs = 0
        self._compiler = compiler
        self._compiled = torch.compile(fn, backend=self._backend, dynamic=False, fullgraph=True)

    def _backend(self, gm: torch.fx.GraphModule, example_inputs: list) -> Callable:
        if self._compiler is None:
            from torch._inductor.compile_fx import compile_fx

            compiled = compile_fx(gm, example_inputs)
        else:
            compiled = self._compiler(gm, example_inputs)

        def run(*args):
            self.graph_runs += 1
            return compiled(*args)

        return run

    def __call__(self, *args, **kwargs):
        self.calls += 1
        with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True):
            return self._compiled(*args, **kwargs)

    def check(self) -> None:
        """Raises CompileFallback unless every call ran the compiled graph."""
        if self.graph_runs < self.calls:
            raise CompileFallback(f"torch.compile contender {self.label!r} ran its compiled graph in only "
                                  f"{self.graph_runs} of {self.calls} calls: the rest ran eager code")
