"""Reparameterized truncated normal distribution (inverse-CDF sampling)."""

from __future__ import annotations

import math

import torch
from pyro.distributions import TorchDistribution
from torch.distributions import constraints
from torch.distributions.utils import broadcast_all
from torch.special import ndtr, ndtri

_LOG_SQRT_2PI_E = 0.5 * math.log(2 * math.pi * math.e)


def _std_normal_pdf(x: torch.Tensor) -> torch.Tensor:
    return torch.exp(-0.5 * x.square()) / math.sqrt(2 * math.pi)


class TruncatedNormal(TorchDistribution):
    r"""Normal :math:`\mathcal{N}(\mu, \sigma^2)` truncated to :math:`[a, b]`, reparameterized.

    Samples by the inverse CDF,
    :math:`x = \mu + \sigma\,\Phi^{-1}(\Phi(\alpha) + Z u)`, :math:`u \sim U[0, 1]`,
    with :math:`\alpha = (a-\mu)/\sigma`, :math:`\beta = (b-\mu)/\sigma`,
    :math:`Z = \Phi(\beta) - \Phi(\alpha)`. The argument of :math:`\Phi^{-1}` is clipped
    away from 0 and 1 (where it overflows), and when the interval lies in the right tail
    the mirrored formula is used so that :math:`\Phi(\alpha)` does not round to 1.

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

    # standardised bounds and normaliser
    @property
    def _alpha(self) -> torch.Tensor:
        return (self.low - self.loc) / self.scale

    @property
    def _beta(self) -> torch.Tensor:
        return (self.high - self.loc) / self.scale

    @property
    def _Z(self) -> torch.Tensor:
        a, b = self._alpha, self._beta
        z = torch.where(a > 0, ndtr(-a) - ndtr(-b), ndtr(b) - ndtr(a))
        return z.clamp_min(torch.finfo(z.dtype).tiny)

    def icdf(self, u: torch.Tensor) -> torch.Tensor:
        a, b, z = self._alpha, self._beta, self._Z
        eps = torch.finfo(a.dtype).eps
        right = a > 0  # interval in the right tail: mirror so Phi stays away from 1
        p = torch.where(right, ndtr(-a) - z * u, ndtr(a) + z * u).clamp(eps, 1 - eps)
        xi = torch.where(right, -ndtri(p), ndtri(p))
        return torch.max(torch.min(self.loc + self.scale * xi, self.high), self.low)

    def cdf(self, value: torch.Tensor) -> torch.Tensor:
        xi = (value - self.loc) / self.scale
        a, b = self._alpha, self._beta
        num = torch.where(a > 0, ndtr(-a) - ndtr(-xi), ndtr(xi) - ndtr(a))
        return (num / self._Z).clamp(0, 1)

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        shape = self._extended_shape(sample_shape)
        u = torch.rand(shape, dtype=self.loc.dtype, device=self.loc.device)
        return self.icdf(u)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        xi = (value - self.loc) / self.scale
        return -0.5 * xi.square() - 0.5 * math.log(2 * math.pi) - self.scale.log() - self._Z.log()

    def entropy(self) -> torch.Tensor:
        r""":math:`\log(\sqrt{2\pi e}\,\sigma Z) + (\alpha\phi(\alpha) - \beta\phi(\beta)) / 2Z` (WN eq. 39)."""
        a, b, z = self._alpha, self._beta, self._Z
        tail = (a * _std_normal_pdf(a) - b * _std_normal_pdf(b)) / (2 * z)
        return _LOG_SQRT_2PI_E + self.scale.log() + z.log() + tail

    @property
    def mean(self) -> torch.Tensor:
        a, b = self._alpha, self._beta
        return self.loc + self.scale * (_std_normal_pdf(a) - _std_normal_pdf(b)) / self._Z

    @property
    def variance(self) -> torch.Tensor:
        a, b, z = self._alpha, self._beta, self._Z
        pa, pb = _std_normal_pdf(a), _std_normal_pdf(b)
        return self.scale.square() * (1 + (a * pa - b * pb) / z - ((pa - pb) / z).square())
