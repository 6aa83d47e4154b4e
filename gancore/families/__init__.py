"""GAN families, one file each. A module here that defines a `@register_family` class is found by
itself: adding a family is adding a file (and its networks under gancore.models)."""

from __future__ import annotations

import difflib
import importlib
import pkgutil

from gancore.families.base import (
    BenchCase,
    ConfigError,
    DataSpec,
    Family,
    Network,
    Phase,
    PhaseContext,
)

_REGISTRY: dict[str, type[Family]] = {}
_discovered = False


def normalise_family_name(name: str) -> str:
    """The registry's spelling of a family name: case and _/- do not matter."""
    return name.strip().lower().replace("_", "-")


def register_family(cls: type[Family]) -> type[Family]:
    """Class decorator: make `cls` available as `gancore train <cls.name>`."""
    name = normalise_family_name(cls.name)
    existing = _REGISTRY.get(name)
    if existing is not None and existing.__qualname__ != cls.__qualname__:
        raise ValueError(f"family name {name!r} is taken by {existing.__module__}.{existing.__qualname__}")
    _REGISTRY[name] = cls
    return cls


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    for module in pkgutil.iter_modules(__path__):
        if module.name != "base" and not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")
    _discovered = True


def get_family(name: str) -> type[Family]:
    """The family class registered as `name` (case and _/- insensitive)."""
    _discover()
    key = normalise_family_name(name)
    if key not in _REGISTRY:
        close = difflib.get_close_matches(key, _REGISTRY, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown family {name!r}{hint} (available: {', '.join(sorted(_REGISTRY))})")
    return _REGISTRY[key]


def all_families() -> dict[str, type[Family]]:
    """Every registered family class by name, sorted by name."""
    _discover()
    return {name: _REGISTRY[name] for name in sorted(_REGISTRY)}


def list_families() -> dict[str, str]:
    """name -> one-line summary, sorted by name."""
    return {name: cls.summary for name, cls in all_families().items()}


__all__ = ["BenchCase", "ConfigError", "DataSpec", "Family", "Network", "Phase", "PhaseContext", "all_families",
           "get_family", "list_families", "normalise_family_name", "register_family"]
