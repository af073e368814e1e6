"""The Gaussian dropout posterior N(θ, αθ²), parameterized by θ and log α."""

from __future__ import annotations

import torch
from pyro.distributions import Normal
from torch.distributions import Distribution, constraints
from torch.distributions.utils import lazy_property

from .variance import dropout_variance


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
        """σ² = αθ², straight from θ and log α (what local reparameterization's variance op takes),
        entries below the smallest normal float set to 0 (:func:`~.variance.dropout_variance`)."""
        return dropout_variance(self.loc, self.log_alpha)

    def expand(self, batch_shape, _instance=None) -> GaussianDropoutNormal:
        new = self._get_checked_instance(GaussianDropoutNormal, _instance)
        new = super().expand(batch_shape, _instance=new)
        new.log_alpha = self.log_alpha
        return new
