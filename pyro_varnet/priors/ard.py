"""The ARD prior N(0, λ²) with λ learned by empirical Bayes (VN eq. 11)."""

from __future__ import annotations

import torch
from pyro.nn import PyroParam
from torch.distributions import constraints

from .._checks import check_positive_finite
from ..distributions import ARD
from .base import Prior, register_prior


@register_prior("ard")
class ARDPrior(Prior):
    r"""Automatic relevance determination :math:`p(w) = \mathcal{N}(0, \lambda^2)`, one λ per
    weight, a deterministic parameter of the model (``<layer>.weight_prior.scale``) learned with
    the ELBO (type-II maximum likelihood, VN eq. 11; its KL to the Gaussian dropout posterior is
    registered in ``distributions/kl.py``).

    :param float init_scale: λ's initial value.
    """

    def __init__(self, init_scale: float = 1.0) -> None:
        check_positive_finite("init_scale", init_scale)
        super().__init__()
        self.init_scale = float(init_scale)

    @classmethod
    def from_options(cls, scale: float = 1.0, df: float = 1e-16) -> ARDPrior:
        return cls(scale)

    def setup(self, shape: torch.Size) -> None:
        super().setup(shape)
        self.scale = PyroParam(self._like.new_full(self.shape, self.init_scale), constraints.positive)

    has_scale = True

    def set_scale(self, scale: torch.Tensor) -> None:
        """Fix λ to ``scale`` (no longer learned), e.g. to evaluate the prior at given values."""
        del self.scale
        super().set_scale(scale)

    def distribution(self):
        scale = self.fixed_scale if hasattr(self, "fixed_scale") else self.scale
        return ARD(scale, validate_args=False).to_event(len(self.shape))
