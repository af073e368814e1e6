"""Float helpers shared by the weight rules, the handlers and the training loop: subnormal
numbers and a square with a one-pass backward.

A float below the dtype's smallest normal number (``torch.finfo(dtype).tiny``, 1.2e-38 in
float32) is subnormal, and arithmetic on it runs in microcode on x86 CPUs: matrix products
with many subnormal entries take orders of magnitude longer
(``pyro_varnet/distributions/variance.py`` and ``pyro_varnet/infer/loop.py`` say where
trained variance networks collect them).
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable


def subnormal_mask(t: torch.Tensor) -> torch.Tensor:
    """Where ``t`` (floating) is subnormal: 0 < |t| < the dtype's smallest normal number."""
    mask = t.abs() < torch.finfo(t.dtype).tiny
    mask &= t != 0
    return mask


def flush_nonnegative_(t: torch.Tensor) -> torch.Tensor:
    """``t`` (≥ 0) with its entries below the smallest normal float set to 0, in place, in one
    pass (``threshold_``; for signed tensors use :func:`subnormal_mask`)."""
    return torch.threshold_(t, torch.finfo(t.dtype).tiny, 0.0)


def _square(x: torch.Tensor, flush: bool) -> torch.Tensor:
    y = x.square()
    return flush_nonnegative_(y) if flush else y


class _Square(torch.autograd.Function):
    """x² with the one-pass backward 2xg (autograd's ``square`` takes three passes: x¹, ×2, ×g),
    optionally with the subnormal entries of x² set to 0 (the gradient stays the unflushed one)."""

    @staticmethod
    def forward(ctx, x, flush):
        ctx.save_for_backward(x)
        return _square(x, flush)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return torch.addcmul(grad.new_zeros(()), grad, x, value=2.0), None


def square(x: torch.Tensor, flush: bool = False) -> torch.Tensor:
    """``x.square()``, with ``flush=True`` its subnormal entries set to 0; when ``x`` requires
    grad, a one-pass backward and first-order gradients only."""
    return _Square.apply(x, flush) if x.requires_grad else _square(x, flush)
