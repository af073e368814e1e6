"""Test helpers shared by the suite (as ``tests/common.py`` in Pyro)."""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch


def assert_close(actual, expected, atol: float = 1e-6, rtol: float = 1e-6, msg: str = "") -> None:
    """Recursive closeness check over dicts, tuples/lists, tensors, arrays and numbers."""
    if isinstance(expected, dict):
        assert set(actual) == set(expected), f"{msg} keys differ: {set(actual) ^ set(expected)}"
        for k in expected:
            assert_close(actual[k], expected[k], atol, rtol, f"{msg}[{k!r}]")
    elif isinstance(expected, list | tuple):
        assert len(actual) == len(expected), f"{msg} lengths differ"
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_close(a, e, atol, rtol, f"{msg}[{i}]")
    elif isinstance(expected, numbers.Number) and isinstance(actual, numbers.Number):
        assert math.isclose(actual, expected, rel_tol=rtol, abs_tol=atol), f"{msg} {actual} != {expected}"
    else:
        a = torch.as_tensor(np.asarray(actual) if not torch.is_tensor(actual) else actual).double()
        e = torch.as_tensor(np.asarray(expected) if not torch.is_tensor(expected) else expected).double()
        assert a.shape == e.shape, f"{msg} shapes differ: {a.shape} vs {e.shape}"
        torch.testing.assert_close(a, e, atol=atol, rtol=rtol, msg=lambda m: f"{msg}\n{m}")


def assert_within_se(estimate, expected, se, z: float = 5.0, msg: str = "") -> None:
    """``|estimate - expected| <= z * se`` elementwise: a Monte Carlo check whose tolerance is
    ``z`` standard errors (z = 5 gives a false-alarm rate below 1e-6 per element)."""
    estimate, expected, se = (torch.as_tensor(t, dtype=torch.float64) for t in (estimate, expected, se))
    dev = (estimate - expected).abs() / se
    assert bool((dev <= z).all()), f"{msg} max deviation {dev.max().item():.2f} SE > {z} SE"
