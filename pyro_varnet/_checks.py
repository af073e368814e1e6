"""Argument checks that produce the library's error messages."""

from __future__ import annotations

import math
from collections.abc import Iterable


def one_of(options: Iterable[str]) -> str:
    """``"'a', 'b' or 'c'"``: the options of an error message."""
    quoted = [repr(o) for o in options]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def check_positive_finite(what: str, value) -> None:
    """Raise ``ValueError("expected a positive finite {what}, got x")`` unless ``value`` is a
    real number > 0 and finite."""
    if not (isinstance(value, int | float) and value > 0 and math.isfinite(value)):
        raise ValueError(f"expected a positive finite {what}, got {value!r}")


def check_finite(what: str, value) -> None:
    """Raise ``ValueError("expected a finite {what}, got x")`` unless ``value`` is a finite real number."""
    if not (isinstance(value, int | float) and math.isfinite(value)):
        raise ValueError(f"expected a finite {what}, got {value!r}")


def check_drop_probability(p) -> None:
    """Raise ``ValueError`` unless ``p`` is a drop probability, 0 <= p < 1."""
    if not (isinstance(p, int | float) and 0 <= p < 1):
        raise ValueError(f"expected a drop probability 0 <= p < 1, got {p!r}")


def check_choice(what: str, value, options: Iterable[str]) -> None:
    """Raise ``ValueError("expected {what} 'a', 'b' or 'c', got 'x'")`` unless ``value`` is an option."""
    options = tuple(options)
    if value not in options:
        raise ValueError(f"expected {what} {one_of(options)}, got {value!r}")
