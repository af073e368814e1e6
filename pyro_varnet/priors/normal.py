"""A zero-mean Gaussian prior with a fixed scale."""

from __future__ import annotations

from pyro.distributions import Normal

from .._checks import check_positive_finite
from .base import Prior, register_prior


@register_prior("normal")
class NormalPrior(Prior):
    r""":math:`p(w) = \mathcal{N}(0, s^2)` with a fixed scale s (the lecture's BNN prior).

    :param float scale: the standard deviation s > 0.
    """

    cacheable = True
    has_scale = True

    def __init__(self, scale: float = 1.0) -> None:
        check_positive_finite("scale", scale)
        super().__init__()
        self.scale = float(scale)

    @classmethod
    def from_options(cls, scale: float = 1.0, df: float = 1e-16) -> NormalPrior:
        return cls(scale)

    def distribution(self):
        zero = self._like.new_zeros(()).expand(self.shape)
        scale = getattr(self, "fixed_scale", self.scale)
        return Normal(zero, zero + scale, validate_args=False).to_event(len(self.shape))
