"""A zero-mean Gaussian prior with a fixed scale."""

from __future__ import annotations

import math

from pyro.distributions import Normal

from .base import Prior, register_prior


@register_prior("normal")
class NormalPrior(Prior):
    r""":math:`p(w) = \mathcal{N}(0, s^2)` with a fixed scale s (the lecture's BNN prior).

    :param float scale: the standard deviation s > 0.
    """

    cacheable = True

    def __init__(self, scale: float = 1.0) -> None:
        if not (scale > 0 and math.isfinite(scale)):
            raise ValueError(f"expected a positive finite scale, got {scale!r}")
        super().__init__()
        self.scale = float(scale)

    @classmethod
    def from_options(cls, scale: float = 1.0, df: float = 1e-16) -> NormalPrior:
        return cls(scale)

    def distribution(self):
        zero = self._like.new_zeros(()).expand(self.shape)
        return Normal(zero, zero + self.scale, validate_args=False).to_event(len(self.shape))
