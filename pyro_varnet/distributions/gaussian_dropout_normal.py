"""The Gaussian dropout posterior N(θ, αθ²), parameterized by θ and log α."""

from __future__ import annotations

import math

import torch
from pyro.distributions import Normal
from torch.distributions import Distribution, constraints
from torch.distributions.utils import lazy_property


class _AlphaThetaSquared(torch.autograd.Function):
    r""":math:`\sigma^2 = \alpha\theta^2` from θ and log α broadcast to θ's shape (VN eq. 14), with
    a backward of two passes over θ: :math:`\partial/\partial\theta = 2\alpha\theta\,g` in one
    ``addcmul`` and :math:`\partial/\partial\log\alpha = \sum g\sigma^2` in one dot product
    (summed to log α's shape). Autograd through ``log_alpha.exp() * theta.square()`` makes six,
    over fc1's 400 000 weights at every step (``benchmarks/svi_step.py``)."""

    @staticmethod
    def forward(ctx, theta, log_alpha):
        alpha_theta = log_alpha.exp() * theta
        var = alpha_theta * theta
        ctx.save_for_backward(alpha_theta, var)
        ctx.log_alpha_shape = log_alpha.shape
        return var

    @staticmethod
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


class GaussianDropoutNormal(Normal):
    r"""Gaussian dropout posterior :math:`\mathcal{N}(\theta, \alpha\theta^2)`.

    A :class:`~pyro.distributions.Normal` that keeps its ``log_alpha`` (shaped per layer,
    neuron or weight and broadcast against θ), so that the KL to the log-uniform prior is
    computed from log α itself — once per distinct α, exactly, and without forming
    σ²/θ² — and the local reparameterization handler sees an ordinary Gaussian.

    :param torch.Tensor theta: means θ.
    :param torch.Tensor log_alpha: log α, broadcastable to θ.

    **References**: Kingma et al. 2015; VN eq. 6, 14.
    """

    arg_constraints = {"loc": constraints.real, "log_alpha": constraints.real}

    def __init__(self, theta: torch.Tensor, log_alpha: torch.Tensor, validate_args: bool | None = None) -> None:
        self.log_alpha = torch.as_tensor(log_alpha)
        la_shape = self.log_alpha.shape  # must broadcast to θ's shape without enlarging it
        pairs = zip(reversed(la_shape), reversed(theta.shape))
        if len(la_shape) > theta.dim() or any(a not in (1, b) for a, b in pairs):
            raise ValueError(
                f"log_alpha of shape {tuple(self.log_alpha.shape)} does not broadcast to theta's {tuple(theta.shape)}"
            )
        self.loc = theta
        # σ = √α|θ| is formed only when asked for (sampling, log_prob): local reparameterization
        # needs only σ² = αθ², and its rule computes that in two passes (weight_rules)
        Distribution.__init__(self, theta.shape, validate_args=validate_args)

    @lazy_property
    def scale(self) -> torch.Tensor:
        abs_theta = self.loc.abs().clamp_min(torch.finfo(self.loc.dtype).tiny)
        return (0.5 * self.log_alpha).exp() * abs_theta

    @lazy_property
    def variance(self) -> torch.Tensor:
        """σ² = αθ², straight from θ and log α (what local reparameterization's variance op takes)."""
        return _AlphaThetaSquared.apply(self.loc, self.log_alpha)

    def expand(self, batch_shape, _instance=None) -> GaussianDropoutNormal:
        new = self._get_checked_instance(GaussianDropoutNormal, _instance)
        new = super().expand(batch_shape, _instance=new)
        new.log_alpha = self.log_alpha
        return new
