"""fuse(model): make an existing network run gancore's fused ops, in place, without renaming a state_dict key.

The patterns, in this order:
1. Modules with their own forward (a ResNet block, a generator) are traced with torch.fx, every
   submodule except a plain nn.Sequential being a leaf. `norm -> [activation] -> x + ...` becomes one fused
   call with `residual=x`, and `norm -> activation` that are not neighbours in an nn.Sequential one fused
   call; the forward is regenerated from the rewritten graph (the module's class becomes a subclass of its
   own, so isinstance still holds). A forward that cannot be traced, or that traces differently in train
   and eval mode, keeps its code and gets the plain fusion below.
2. In an nn.Sequential, a norm followed by an activation fuses with it; so does a norm followed by a module
   whose forward starts by applying an in-place activation to its input (the U-Net skip block), since
   every later use of that input sees the activated tensor. The activation's slot becomes nn.Identity.
3. Any other norm of a registered type runs fused with the identity activation.

Which norms can be fused, and how, is the table FUSERS: norm type -> factory(norm, activation) returning the
fused module (sharing the norm's Parameters) or the reason it cannot be built. A fused module whose forward
takes `residual=` also absorbs the residual add. Anything fuse cannot rewrite stays as it was, and the
report (`model.gancore_fused`, or the return value of `fuse(model, dry_run=True)`) says why.

Limits of fx: `out += x` is traced as `out + x`, so a forward that relies on that add mutating an aliased
tensor would change meaning; Python side effects in a traced forward run once, at trace time.
"""

from __future__ import annotations

import inspect
import itertools
import operator
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
import torch.fx as fx
from torch import nn

from gancore.nn.batch_norm import batch_norm_fusion, running_instance_norm_fusion
from gancore.nn.instance_norm import activation_spec, fused_instance_norm

Factory = Callable[[nn.Module, "nn.Module | None"], "nn.Module | str"]

def _instance_norm2d_fusion(norm: nn.Module, activation: nn.Module | None) -> nn.Module | str:
    """StarGAN's InstanceNorm2d(track_running_stats=True) keeps its running statistics fused."""
    if norm.track_running_stats:
        return running_instance_norm_fusion(norm, activation)
    return fused_instance_norm(norm, activation)


# Exact types only: a subclass may override forward.
FUSERS: dict[type[nn.Module], Factory] = {
    nn.InstanceNorm1d: fused_instance_norm,
    nn.InstanceNorm2d: _instance_norm2d_fusion,
    nn.InstanceNorm3d: fused_instance_norm,
    nn.BatchNorm1d: batch_norm_fusion,
    nn.BatchNorm2d: batch_norm_fusion,
    nn.BatchNorm3d: batch_norm_fusion,
}


def _activation_slot(fused: nn.Module) -> nn.Module:
    """What replaces the fused activation: nn.Identity, or what the fused module names (a PReLU's slot
    keeps its weight, and so its state_dict key)."""
    slot = getattr(fused, "activation_slot", None)
    return slot if slot is not None else nn.Identity()


# Reported as "left unfused" when FUSERS has no entry for their exact type.
_NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.InstanceNorm1d, nn.InstanceNorm2d,
               nn.InstanceNorm3d, nn.GroupNorm, nn.LayerNorm)


def register_fuser(norm_type: type[nn.Module], factory: Factory) -> None:
    """Teach fuse() a norm type: factory(norm, activation_module_or_None) -> fused module | reason."""
    if not (isinstance(norm_type, type) and issubclass(norm_type, nn.Module)):
        raise TypeError(f"register_fuser: norm_type must be an nn.Module subclass, got {norm_type!r}")
    if not callable(factory):
        raise TypeError(f"register_fuser: factory must be callable, got {type(factory).__name__}")
    FUSERS[norm_type] = factory


@dataclass(frozen=True)
class FuseChange:
    """One entry of a FuseReport. kind: "fused" (norm [+ activation]), "residual" (norm [+ activation] + the
    residual add), "unfused" (a norm left as it was) or "note" (a forward left as it was)."""

    path: str
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.path or '<root>'}: {self.detail}"


@dataclass
class FuseReport:
    changes: list[FuseChange] = field(default_factory=list)
    dry_run: bool = False

    def of_kind(self, kind: str) -> list[FuseChange]:
        return [c for c in self.changes if c.kind == kind]

    @property
    def fused(self) -> list[FuseChange]:
        """Every fused norm, with or without a residual add."""
        return [c for c in self.changes if c.kind in ("fused", "residual")]

    @property
    def residual(self) -> list[FuseChange]:
        return self.of_kind("residual")

    @property
    def unfused(self) -> list[FuseChange]:
        return self.of_kind("unfused")

    def __len__(self) -> int:
        return len(self.changes)

    def __iter__(self) -> Iterator[FuseChange]:
        return iter(self.changes)

    def __getitem__(self, i: int) -> FuseChange:
        return self.changes[i]

    def __str__(self) -> str:
        verb = "would fuse" if self.dry_run else "fused"
        head = (f"fuse{' (dry run)' if self.dry_run else ''}: {verb} {len(self.fused)} norms "
                f"({len(self.residual)} with their residual add), {len(self.unfused)} left unfused")
        if not self.changes:
            return "fuse: nothing to fuse"
        return "\n".join([head, *(f"  {c}" for c in self.changes)])


def fuse(model: nn.Module, *, dry_run: bool = False, verbose: bool = False) -> nn.Module | FuseReport:
    """Rewrite `model` in place (see the module docstring) and return it, with the FuseReport in
    `model.gancore_fused`. With dry_run=True nothing changes and the FuseReport is returned."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"fuse: model must be an nn.Module, got {type(model).__name__}")
    plan = _Plan(model)
    plan.traced_pass()
    plan.sequential_pass()
    order = {path: i for i, (path, _) in enumerate(model.named_modules())}
    report = FuseReport(sorted(plan.changes, key=lambda c: order.get(c.path, len(order))), dry_run=dry_run)
    if verbose:
        print(report)
    if dry_run:
        return report
    plan.apply()
    model.gancore_fused = report
    return model


def _join(*parts: str) -> str:
    return ".".join(p for p in parts if p)


def _split(path: str) -> tuple[str, str]:
    parent, _, name = path.rpartition(".")
    return parent, name


def _stock_sequential(module: nn.Module) -> bool:
    """An nn.Sequential whose forward is the stock one: each child's output is the next child's only input."""
    return isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward


def _inlined(module: nn.Module) -> bool:
    """Containers whose structure fx sees through."""
    return isinstance(module, (nn.ModuleList, nn.ModuleDict)) or _stock_sequential(module)


class _LeafTracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return not _inlined(m)


def _build(norm: nn.Module, activation: nn.Module | None) -> nn.Module | str:
    out = FUSERS[type(norm)](norm, activation)
    if not isinstance(out, (nn.Module, str)):
        raise TypeError(f"fuse: the factory for {type(norm).__name__} returned {type(out).__name__}, "
                        f"expected a module or a reason string")
    return out


def _takes_residual(module: nn.Module) -> bool:
    return "residual" in inspect.signature(module.forward).parameters


def _describe(fused: nn.Module, norm: nn.Module) -> str:
    return f"{type(norm).__name__} -> {type(fused).__name__}({getattr(fused, 'activation', '?')})"


def _residual_add(tail: fx.Node) -> tuple[fx.Node, fx.Node] | None:
    """(add node, the other operand) when tail's only use is `tail + other` / `other + tail`."""
    if len(tail.users) != 1:
        return None
    add = next(iter(tail.users))
    is_add = ((add.op == "call_function" and add.target in (operator.add, torch.add))
              or (add.op == "call_method" and add.target == "add"))
    if not is_add or len(add.args) != 2 or add.kwargs:
        return None
    a, b = add.args
    other = b if a is tail else a
    if not isinstance(other, fx.Node) or other is tail:
        return None
    return add, other


class _Plan:
    """Collects the rewrites (and the report) first, so that a dry run and a real run decide the same."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.changes: list[FuseChange] = []
        self.replace: dict[str, nn.Module] = {}  # module path -> new module (fused norm or nn.Identity)
        self.forwards: list[tuple[nn.Module, fx.Graph]] = []
        self.claimed: set[str] = set()  # norm paths already decided
        self._traces: dict[int, fx.Graph | str] = {}

    # -- tracing ---------------------------------------------------------------------------------------------
    def trace(self, module: nn.Module) -> fx.Graph | str:
        """The module's forward graph, or why there is none. Traced in train and eval mode: a forward that
        branches on self.training would be frozen into one branch by fx."""
        key = id(module)
        if key not in self._traces:
            modes = [(m, m.training) for m in module.modules()]
            try:
                graphs = []
                for mode in (True, False):
                    for m, _ in modes:  # the flag only: a custom train() may do more than set it
                        m.training = mode
                    graphs.append(_LeafTracer().trace(module))
                self._traces[key] = (graphs[0] if str(graphs[0]) == str(graphs[1])
                                     else "forward differs between train and eval mode")
            except Exception as e:  # noqa: BLE001 - any failure to trace means: keep the forward as it is
                first = (str(e).strip().splitlines() or [""])[0][:120]
                self._traces[key] = f"forward not traceable by torch.fx ({type(e).__name__}: {first})"
            finally:
                for m, mode in modes:
                    m.training = mode
        return self._traces[key]

    def _visible_norms(self, module: nn.Module) -> bool:
        """Whether a traced graph of `module` would show a fusable norm as its own call_module node."""
        for child in module.children():
            if type(child) in FUSERS or (_inlined(child) and self._visible_norms(child)):
                return True
        return False

    # -- pass 1: traced forwards -----------------------------------------------------------------------------
    def traced_pass(self) -> None:
        for path, module in self.model.named_modules():
            if _inlined(module) or type(module) in FUSERS or not self._visible_norms(module):
                continue
            graph = self.trace(module)
            if isinstance(graph, str):
                self.changes.append(FuseChange(path, "note", f"{graph}; its norms get the plain fusion"))
                continue
            graph = _copy(graph)
            if self._rewrite(path, module, graph):
                graph.lint()
                self.forwards.append((module, graph))

    def _rewrite(self, path: str, module: nn.Module, graph: fx.Graph) -> bool:
        calls = Counter(id(module.get_submodule(n.target)) for n in graph.nodes if n.op == "call_module")
        changed, erased = False, set()
        for node in list(graph.nodes):
            if node.op != "call_module" or node in erased:
                continue
            norm = module.get_submodule(node.target)
            norm_path = _join(path, node.target)
            if (type(norm) not in FUSERS or calls[id(norm)] != 1 or len(node.args) != 1 or node.kwargs
                    or len(node.users) != 1 or norm_path in self.claimed):
                continue
            act_node = next(iter(node.users))
            act = module.get_submodule(act_node.target) if act_node.op == "call_module" else None
            if act is None or activation_spec(act) is None or act_node.args != (node,) or act_node.kwargs:
                act_node, act = None, None
            add = _residual_add(act_node or node)
            if add is None and (act_node is None or self._neighbours(module, node.target, act_node.target)):
                continue  # nothing a rewrite of the forward would gain: the plain pass fuses it
            fused = _build(norm, act)
            act_path = _join(path, act_node.target) if act_node is not None else None
            if add is not None:
                if isinstance(fused, str) or not _takes_residual(fused):
                    why = fused if isinstance(fused, str) else f"{type(fused).__name__} takes no residual"
                    self.changes.append(FuseChange(norm_path, "note", f"residual add left unfused: {why}"))
                else:
                    add_node, other = add
                    with graph.inserting_before(add_node):
                        new = graph.call_module(node.target, (node.args[0],), {"residual": other})
                    add_node.replace_all_uses_with(new)
                    for dead in (add_node, act_node, node):
                        if dead is not None:
                            graph.erase_node(dead)
                            erased.add(dead)
                    self._claim(norm_path, fused, norm, act_path, act, calls, "residual",
                                f" + residual add in {path or '<root>'}.forward")
                    changed = True
                    continue
            if act_node is not None and not self._neighbours(module, node.target, act_node.target):
                if isinstance(fused, str):
                    continue  # the plain pass reports it
                act_node.replace_all_uses_with(node)
                graph.erase_node(act_node)
                erased.add(act_node)
                self._claim(norm_path, fused, norm, act_path, act, calls, "fused", f" in {path or '<root>'}.forward")
                changed = True
        return changed

    def _claim(self, norm_path: str, fused: nn.Module, norm: nn.Module, act_path: str | None,
               act: nn.Module | None, calls: Counter, kind: str, where: str) -> None:
        self.claimed.add(norm_path)
        self.replace[norm_path] = fused
        detail = _describe(fused, norm)
        if act_path is not None:
            detail = f"{detail}, activation {act_path}"
            if calls[id(act)] == 1:  # a shared activation module is still called elsewhere
                self.replace[act_path] = _activation_slot(fused)
        self.changes.append(FuseChange(norm_path, kind, detail + where))

    @staticmethod
    def _neighbours(module: nn.Module, first: str, second: str) -> bool:
        parent, a = _split(first)
        parent2, b = _split(second)
        container = module.get_submodule(parent) if parent else module
        if parent != parent2 or not _stock_sequential(container):
            return False
        names = list(container._modules)
        return names.index(b) == names.index(a) + 1

    # -- pass 2: Sequentials and lone norms ------------------------------------------------------------------
    def sequential_pass(self) -> None:
        for parent_path, parent in self.model.named_modules():
            children = list(parent.named_children())
            for i, (name, norm) in enumerate(children):
                path = _join(parent_path, name)
                if type(norm) not in FUSERS and isinstance(norm, _NORM_TYPES):
                    self.changes.append(FuseChange(path, "unfused", f"{type(norm).__name__} left unfused: "
                                                                    f"no fuser registered for its type"))
                if type(norm) not in FUSERS or path in self.claimed:
                    continue
                self.claimed.add(path)
                nxt = children[i + 1] if _stock_sequential(parent) and i + 1 < len(children) else None
                act_path, act = self._following_activation(_join(parent_path, nxt[0]), nxt[1]) if nxt else (None,
                                                                                                           None)
                fused = _build(norm, act) if act is not None else None
                if isinstance(fused, str):
                    self.changes.append(FuseChange(path, "note", f"activation {act_path} left apart: {fused}"))
                    fused = None
                if fused is not None:
                    self.replace[path] = fused
                    self.replace[act_path] = _activation_slot(fused)
                    self.changes.append(FuseChange(path, "fused", f"{_describe(fused, norm)}, activation {act_path}"))
                    continue
                fused = _build(norm, None)
                if isinstance(fused, str):
                    self.changes.append(FuseChange(path, "unfused", f"{type(norm).__name__} left unfused: {fused}"))
                else:
                    self.replace[path] = fused
                    self.changes.append(FuseChange(path, "fused", _describe(fused, norm)))

    def _following_activation(self, path: str, module: nn.Module) -> tuple[str | None, nn.Module | None]:
        """The activation that `module` applies first to its whole input, such that every use of the input
        sees the activated tensor; (None, None) if there is none."""
        if path in self.replace:
            return None, None
        if activation_spec(module) is not None:
            return path, module
        if _stock_sequential(module):
            if len(module) == 0:
                return None, None
            name, first = next(iter(module.named_children()))
            return self._following_activation(_join(path, name), first)
        if not list(module.children()) or _inlined(module):
            return None, None
        graph = self.trace(module)
        if isinstance(graph, str):
            return None, None
        inputs = [n for n in graph.nodes if n.op == "placeholder"]
        if len(inputs) != 1 or not inputs[0].users:
            return None, None
        order = {n: i for i, n in enumerate(graph.nodes)}
        users = sorted(inputs[0].users, key=order.__getitem__)
        first = users[0]
        if first.op != "call_module" or first.args != (inputs[0],) or first.kwargs:
            return None, None
        act = module.get_submodule(first.target)
        calls = sum(1 for n in graph.nodes if n.op == "call_module" and module.get_submodule(n.target) is act)
        if activation_spec(act) is None or calls != 1:
            return None, None
        if len(users) > 1 and not getattr(act, "inplace", False):
            return None, None  # the other uses see the raw input
        act_path = _join(path, first.target)
        return (None, None) if act_path in self.replace else (act_path, act)

    # -- applying --------------------------------------------------------------------------------------------
    def apply(self) -> None:
        for path, new in self.replace.items():
            parent, name = _split(path)
            setattr(self.model.get_submodule(parent) if parent else self.model, name, new)
        for module, graph in self.forwards:
            _set_forward(module, graph)


def _copy(graph: fx.Graph) -> fx.Graph:
    new = fx.Graph()
    out = new.graph_copy(graph, {})
    new.output(out)
    return new


_counter = itertools.count()


def _standard_globals() -> dict:
    """What fx puts into every generated forward's namespace (modules such as torch: not picklable)."""
    return dict(fx.Graph().python_code(root_module="self").globals)


def _set_forward(module: nn.Module, graph: fx.Graph) -> None:
    """Give `module` the forward generated from `graph`, through a subclass of its class (isinstance holds)."""
    base = type(module)
    base = getattr(base, "_gancore_base", base)
    code = graph.python_code(root_module="self")
    standard = _standard_globals()
    extra = {k: v for k, v in code.globals.items() if k not in standard}
    module.__class__ = _fused_class(base, code.src, extra)


_classes: dict[tuple, type] = {}  # one generated class per (base, forward source): the 9 blocks of a ResNet share it


def _fused_class(base: type, src: str, extra_globals: dict) -> type:
    key = (base, src, tuple((k, id(v)) for k, v in sorted(extra_globals.items())))
    if key not in _classes:
        namespace = {**_standard_globals(), **extra_globals}
        exec(compile(src, f"<gancore.fuse:{base.__qualname__}#{next(_counter)}>", "exec"), namespace)
        _classes[key] = type(base.__name__, (base,), {
            "forward": namespace["forward"], "__module__": base.__module__, "__qualname__": base.__qualname__,
            "_gancore_base": base, "_gancore_forward": (src, extra_globals), "__reduce_ex__": _reduce_fused})
    return _classes[key]


def _reduce_fused(self: nn.Module, protocol: int) -> tuple:
    # pickle (torch.save of a whole model) and deepcopy rebuild the class from the base and the source
    return _rebuild_fused, (type(self)._gancore_base, *type(self)._gancore_forward), self.__dict__.copy()


def _rebuild_fused(base: type, src: str, extra_globals: dict) -> nn.Module:
    cls = _fused_class(base, src, extra_globals)
    return cls.__new__(cls)
