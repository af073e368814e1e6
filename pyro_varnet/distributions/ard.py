"""Automatic relevance determination prior N(0, lambda^2) with a learned scale."""

from __future__ import annotations

import torch
from pyro.distributions import Normal
from torch.distributions import constraints


class ARD(Normal):
    r"""ARD prior :math:`p(w) = \mathcal{N}(w \mid 0, \lambda^2)`.

    :math:`\lambda` is a model parameter learned by empirical Bayes. For the Gaussian
    dropout posterior :math:`\mathcal{N}(\mu, \alpha\mu^2)` its optimum is
    :math:`\lambda^2 = (\alpha + 1)\mu^2` (:func:`optimal_ard_scale`), where the KL is
    :math:`\tfrac12 \log(1 + 1/\alpha)` (:func:`~pyro_varnet.distributions.kl.kl_ard_optimal`).

    :param torch.Tensor scale: prior standard deviation :math:`\lambda > 0`.

    **References**: VN eq. 11; Titsias & Lázaro-Gredilla 2014.
    """

    arg_constraints = {"scale": constraints.positive}

    def __init__(self, scale: torch.Tensor, validate_args: bool | None = None) -> None:
        scale = torch.as_tensor(scale)
        super().__init__(torch.zeros_like(scale), scale, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None) -> ARD:
        new = self._get_checked_instance(ARD, _instance)
        return super().expand(batch_shape, _instance=new)


def optimal_ard_scale(loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    r"""Empirical-Bayes optimum :math:`\lambda = \sqrt{\mu^2 + \sigma^2}` for a posterior N(μ, σ²).

    **References**: VN §4.2, text above eq. 11.
    """
    return (loc.square() + scale.square()).sqrt()
