"""The log-uniform prior p(|w|) ∝ 1/|w| (VN eq. 6)."""

from __future__ import annotations

from ..distributions import LogUniform
from .base import Prior, register_prior


@register_prior("log-uniform")
class LogUniformPrior(Prior):
    r"""Improper log-uniform prior :math:`p(|w|) \propto 1/|w|`, the prior of VN §4.1 under which
    the Gaussian dropout posterior has the KL of VN eq. 8 (registered in ``distributions/kl.py``)."""

    cacheable = True

    def distribution(self):
        return LogUniform(self.shape).to_event(len(self.shape))
