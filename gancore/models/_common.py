"""Argument checks the reference networks share."""

from __future__ import annotations


def check_ints(minimum: int = 1, **values: int) -> None:
    """Each keyword must be an int >= minimum; the error names it."""
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
