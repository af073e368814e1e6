"""Reparameterized truncated normal distribution (inverse-CDF sampling)."""

from __future__ import annotations

import math

import torch
from pyro.distributions import TorchDistribution
from torch.distributions import constraints
from torch.distributions.utils import broadcast_all
from torch.special import log_ndtr, ndtri

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
_LOG_SQRT_2PI_E = 0.5 * math.log(2 * math.pi * math.e)


class TruncatedNormal(TorchDistribution):
    r"""Normal :math:`\mathcal{N}(\mu, \sigma^2)` truncated to :math:`[a, b]`, reparameterized.

    Samples by the inverse CDF,
    :math:`x = \mu + \sigma\,\Phi^{-1}(\Phi(\alpha) + Z u)`, :math:`u \sim U[0, 1]`,
    with :math:`\alpha = (a-\mu)/\sigma`, :math:`\beta = (b-\mu)/\sigma`,
    :math:`Z = \Phi(\beta) - \Phi(\alpha)`. The argument of :math:`\Phi^{-1}` is clipped
    away from 0 and 1 (where it overflows); normal CDFs are taken in log space, and when
    the interval lies right of μ the mirrored formula is used, so that far tails neither
    underflow to 0 nor round to 1.

    :param loc: :math:`\mu`. :param scale: :math:`\sigma > 0`.
    :param low: :math:`a`. :param high: :math:`b > a`.

    **References**: WN appendix B (sampling), WN eq. 32 and 39 (entropy).
    """

    arg_constraints = {
        "loc": constraints.real,
        "scale": constraints.positive,
        "low": constraints.real,
        "high": constraints.real,
    }
    has_rsample = True

    def __init__(self, loc, scale, low, high, validate_args: bool | None = None) -> None:
        self.loc, self.scale, self.low, self.high = broadcast_all(loc, scale, low, high)
        if validate_args is not False and not bool((self.high > self.low).all()):
            raise ValueError("TruncatedNormal expects high > low everywhere")
        super().__init__(self.loc.shape, validate_args=validate_args)

    @constraints.dependent_property(is_discrete=False, event_dim=0)
    def support(self):
        return constraints.interval(self.low, self.high)

    def expand(self, batch_shape, _instance=None) -> TruncatedNormal:
        new = self._get_checked_instance(TruncatedNormal, _instance)
        shape = torch.Size(batch_shape)
        new.loc, new.scale = self.loc.expand(shape), self.scale.expand(shape)
        new.low, new.high = self.low.expand(shape), self.high.expand(shape)
        super(TruncatedNormal, new).__init__(shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    # standardised bounds and normaliser, in log space: torch's ndtr underflows below -8
    @property
    def _alpha(self) -> torch.Tensor:
        return (self.low - self.loc) / self.scale

    @property
    def _beta(self) -> torch.Tensor:
        return (self.high - self.loc) / self.scale

    @staticmethod
    def _log_cdf_pair(a: torch.Tensor, b: torch.Tensor):
        """log Φ at both ends of [a, b], mirrored into the left tail when a > 0 (then
        Φ(b) - Φ(a) = Φ(-a) - Φ(-b)): returns (mirrored, log of larger, log of smaller)."""
        right = a > 0
        hi = torch.where(right, log_ndtr(-a), log_ndtr(b))
        lo = torch.where(right, log_ndtr(-b), log_ndtr(a))
        return right, hi, lo

    @classmethod
    def _log_mass(cls, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """log(Φ(b) - Φ(a)) without cancellation or underflow."""
        _, hi, lo = cls._log_cdf_pair(a, b)
        return hi + torch.log(-torch.expm1(lo - hi))

    @property
    def _log_Z(self) -> torch.Tensor:
        return self._log_mass(self._alpha, self._beta)

    def _pdf_over_Z(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(-0.5 * x.square() - _LOG_SQRT_2PI - self._log_Z)

    def icdf(self, u: torch.Tensor) -> torch.Tensor:
        right, hi, lo = self._log_cdf_pair(self._alpha, self._beta)
        log_zu = self._log_Z + u.clamp_min(torch.finfo(u.dtype).tiny).log()
        # left form: p = Φ(α) + Z u;  mirrored form: p = Φ(-α) - Z u, x = μ - σ Φ⁻¹(p)
        log_p = torch.where(
            right, hi + torch.log(-torch.expm1((log_zu - hi).clamp_max(0))), torch.logaddexp(lo, log_zu)
        )
        finfo = torch.finfo(u.dtype)
        p = log_p.exp().clamp(finfo.tiny, 1 - finfo.eps)  # Φ⁻¹ overflows at 0 and 1 (WN appendix B)
        xi = torch.where(right, -ndtri(p), ndtri(p))
        return torch.max(torch.min(self.loc + self.scale * xi, self.high), self.low)

    def cdf(self, value: torch.Tensor) -> torch.Tensor:
        xi = ((value - self.loc) / self.scale).clamp(self._alpha, self._beta)
        return torch.exp(self._log_mass(self._alpha, xi) - self._log_Z).clamp(0, 1)

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        shape = self._extended_shape(sample_shape)
        u = torch.rand(shape, dtype=self.loc.dtype, device=self.loc.device)
        return self.icdf(u)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        xi = (value - self.loc) / self.scale
        return -0.5 * xi.square() - _LOG_SQRT_2PI - self.scale.log() - self._log_Z

    def entropy(self) -> torch.Tensor:
        r""":math:`\log(\sqrt{2\pi e}\,\sigma Z) + (\alpha\phi(\alpha) - \beta\phi(\beta)) / 2Z` (WN eq. 39)."""
        a, b = self._alpha, self._beta
        tail = (a * self._pdf_over_Z(a) - b * self._pdf_over_Z(b)) / 2
        return _LOG_SQRT_2PI_E + self.scale.log() + self._log_Z + tail

    @property
    def mean(self) -> torch.Tensor:
        a, b = self._alpha, self._beta
        return self.loc + self.scale * (self._pdf_over_Z(a) - self._pdf_over_Z(b))

    @property
    def variance(self) -> torch.Tensor:
        a, b = self._alpha, self._beta
        pa, pb = self._pdf_over_Z(a), self._pdf_over_Z(b)
        return self.scale.square() * (1 + a * pa - b * pb - (pa - pb).square())
