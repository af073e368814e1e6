r"""Weight variances as local reparameterization's variance op takes them (VN eq. 4, 14), with
hand-written backwards and subnormal entries flushed to zero.

A variance below the smallest normal float (``torch.finfo(dtype).tiny``, 1.2e-38 in float32)
is a subnormal number, and matrix products with many of them run orders of magnitude slower
on CPUs: a zero-mean fc1 trained for 10 epochs had 164 670 of its 400 000 σ between 1e-38
and 1e-19, so that σ² was subnormal, and its step took 2.4× a fresh model's (fc1's two
variance ``mm`` calls: 1.2 ms each fresh, 68 and 153 ms trained;
``benchmarks/run_all.py --run RUN``). Such a weight adds at most x²·1.2e-38 to an output
variance to which local reparameterization adds ε₀ = 1e-16 anyway, so setting it to 0 changes
no output in float precision. First-order gradients only; they are those of the unflushed
expression (exact where nothing is flushed; for a flushed entry, 2σ·∂L/∂σ² with σ < 1.1e-19).
"""

from __future__ import annotations

import math

import torch
from torch.autograd.function import once_differentiable

from .._numerics import flush_nonnegative_, square


class _AlphaThetaSquared(torch.autograd.Function):
    r""":math:`\sigma^2 = \alpha\theta^2` from θ and log α broadcast to θ's shape (VN eq. 14),
    flushed, with a backward of two passes over θ: :math:`\partial/\partial\theta = 2\alpha\theta\,g`
    in one ``addcmul`` and :math:`\partial/\partial\log\alpha = \sum g\sigma^2` in one dot
    product (summed to log α's shape). Autograd through ``log_alpha.exp() * theta.square()``
    makes six, over fc1's 400 000 weights at every step (``benchmarks/svi_step.py``)."""

    @staticmethod
    def forward(ctx, theta, log_alpha):
        alpha_theta = log_alpha.exp() * theta
        var = flush_nonnegative_(alpha_theta * theta)
        ctx.save_for_backward(alpha_theta, var)
        ctx.log_alpha_shape = log_alpha.shape
        return var

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        alpha_theta, var = ctx.saved_tensors
        d_theta = d_log_alpha = None
        if ctx.needs_input_grad[0]:
            d_theta = torch.addcmul(grad.new_zeros(()), grad, alpha_theta, value=2.0)
        if ctx.needs_input_grad[1]:
            shape = ctx.log_alpha_shape
            if math.prod(shape) == 1:  # one α for the layer: a dot product, no temporary
                d_log_alpha = torch.dot(grad.reshape(-1), var.reshape(-1)).reshape(shape)
            else:
                d_log_alpha = (grad * var).sum_to_size(shape)
        return d_theta, d_log_alpha


def squared_scale(scale: torch.Tensor) -> torch.Tensor:
    """σ² of a Gaussian weight, subnormal entries flushed to 0 (see the module), with a one-pass
    backward 2σg."""
    return square(scale, flush=True)


def dropout_variance(theta: torch.Tensor, log_alpha: torch.Tensor) -> torch.Tensor:
    """αθ² of the Gaussian dropout posterior N(θ, αθ²), log α broadcast to θ's shape, subnormal
    entries flushed to 0 (see the module)."""
    return _AlphaThetaSquared.apply(theta, log_alpha)
