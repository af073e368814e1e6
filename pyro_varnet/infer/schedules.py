"""Learning-rate and KL-weight schedules, functions of the (fractional) epoch."""

from __future__ import annotations

from collections.abc import Callable

Schedule = Callable[[float], float]


def linear_decay(total_epochs: float) -> Schedule:
    """Learning-rate multiplier decaying linearly from 1 to 0 over ``total_epochs`` (the VN authors' schedule)."""
    if total_epochs <= 0:
        raise ValueError(f"expected total_epochs > 0, got {total_epochs}")
    return lambda t: max(0.0, 1.0 - t / total_epochs)


def hold_then_decay(total_epochs: float, hold_fraction: float = 0.5) -> Schedule:
    """Multiplier 1 for the first ``hold_fraction`` of ``total_epochs``, then linear to 0 at
    ``total_epochs`` (WN §5: "for the last 100 [of 200] epochs, we linearly decrease learning
    rate to zero")."""
    if total_epochs <= 0 or not 0 <= hold_fraction < 1:
        raise ValueError(f"expected total_epochs > 0 and 0 <= hold_fraction < 1, got {total_epochs}, {hold_fraction}")
    hold = hold_fraction * total_epochs
    return lambda t: 1.0 if t <= hold else max(0.0, (total_epochs - t) / (total_epochs - hold))


def kl_warmup(start: float, end: float) -> Schedule:
    """KL weight 0 before epoch ``start``, rising linearly to 1 at ``end`` (Sparse VD, Molchanov et al. 2017)."""
    if not 0 <= start <= end:
        raise ValueError(f"expected 0 <= start <= end, got start={start}, end={end}")
    if end == start:
        return lambda t: 1.0 if t >= end else 0.0
    return lambda t: min(1.0, max(0.0, (t - start) / (end - start)))


def constant(value: float = 1.0) -> Schedule:
    return lambda t: value
