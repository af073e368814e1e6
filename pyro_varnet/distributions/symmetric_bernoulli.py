"""The Bernoulli variance layer's posterior: w = θ·(2ε - 1), ε ~ Bernoulli(½)."""

from __future__ import annotations

import math

import torch
from pyro.distributions import TorchDistribution
from torch.distributions import constraints


class SymmetricBernoulli(TorchDistribution):
    r"""Zero-mean two-point weights :math:`w = \theta\,(2\varepsilon - 1)`, :math:`\varepsilon \sim
    \mathrm{Bernoulli}(\tfrac12)`: ±θ with probability ½ each.

    Mean 0, variance θ². Reparameterized in θ (the sign is the only randomness, so
    :math:`\partial w / \partial\theta = \pm 1`). The distribution is discrete, so its KL to a
    continuous prior is +∞ — but a constant one: for any scale-invariant prior (log-uniform)
    it does not depend on θ. pyro-varnet registers it as 0 against the log-uniform prior
    (the ELBO of a Bernoulli variance layer is then its data term; compare such ELBOs only
    with each other). :meth:`log_prob` is with respect to counting measure on {-θ, θ}.

    :param torch.Tensor scale: θ > 0.

    **References**: VN §3.3 (Bernoulli variance layer).
    """

    arg_constraints = {"scale": constraints.positive}
    support = constraints.real
    has_rsample = True
    is_zero_mean = True

    def __init__(self, scale: torch.Tensor, validate_args: bool | None = None) -> None:
        self.scale = torch.as_tensor(scale)
        super().__init__(self.scale.shape, torch.Size(), validate_args=validate_args)

    def expand(self, batch_shape, _instance=None) -> SymmetricBernoulli:
        new = self._get_checked_instance(SymmetricBernoulli, _instance)
        new.scale = self.scale.expand(batch_shape)
        super(SymmetricBernoulli, new).__init__(torch.Size(batch_shape), torch.Size(), validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def mean(self) -> torch.Tensor:
        return torch.zeros_like(self.scale)

    @property
    def variance(self) -> torch.Tensor:
        return self.scale.square()

    def rsample(self, sample_shape=torch.Size()) -> torch.Tensor:
        shape = self._extended_shape(sample_shape)
        signs = torch.randint(0, 2, shape, device=self.scale.device).to(self.scale.dtype).mul_(2).sub_(1)
        return self.scale.expand(shape) * signs

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        on_support = torch.isclose(value.abs(), self.scale.expand_as(value))
        return torch.where(on_support, -math.log(2.0), -math.inf)
