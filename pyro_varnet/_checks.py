"""Argument checks that produce the library's error messages."""

from __future__ import annotations

from collections.abc import Iterable


def one_of(options: Iterable[str]) -> str:
    """``"'a', 'b' or 'c'"``: the options of an error message."""
    quoted = [repr(o) for o in options]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def check_choice(what: str, value, options: Iterable[str]) -> None:
    """Raise ``ValueError("expected {what} 'a', 'b' or 'c', got 'x'")`` unless ``value`` is an option."""
    options = tuple(options)
    if value not in options:
        raise ValueError(f"expected {what} {one_of(options)}, got {value!r}")
