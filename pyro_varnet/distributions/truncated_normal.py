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


class _InverseMills(torch.autograd.Function):
    r""":math:`r(t) = \phi(t)/\Phi(-t) = \sqrt{2/\pi}/\mathrm{erfcx}(t/\sqrt 2)`, with the exact
    derivative :math:`r'(t) = r(r - t)`: autograd through ``erfcx`` subtracts two numbers
    near 2/√π and loses r' far in the tail (1 % of dH/dσ at t = 5000)."""

    @staticmethod
    def forward(ctx, t):
        r = math.sqrt(2 / math.pi) / torch.special.erfcx(t / math.sqrt(2))
        ctx.save_for_backward(t, r)
        return r

    @staticmethod
    def backward(ctx, grad):
        t, r = ctx.saved_tensors
        return grad * r * (r - t)


def _mills_excess(t: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """r(t) - t ≈ 1/t for t > 0, by the asymptotic series of the Mills ratio where the difference
    would cancel (t > 30: truncation error < 1e-9 relative), directly below."""
    big = t > 30
    ts = torch.where(big, t, torch.full_like(t, 30.0))
    z = ts.reciprocal().square()
    series = (1 - 3 * z + 15 * z**2 - 105 * z**3) / (ts * (1 - z + 3 * z**2 - 15 * z**3 + 105 * z**4))
    return torch.where(big, series, r - t)


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

    def _terms(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """φ(α)/Z, φ(β)/Z and log Z + (αφ(α) - βφ(β))/2Z, without cancellation in the tails.

        When [α, β] lies in one tail it is mirrored to [t, u] with 0 < t < u and
        φ(t)/Φ(-t) = √(2/π)/erfcx(t/√2), so nothing of size exp(-t²/2) is formed and the t²/2
        in log Z cancels analytically. Elements take safe dummy inputs in the branch they do
        not use, so that its infinities cannot turn gradients into NaN."""
        a, b = self._alpha, self._beta
        right, left = a > 0, b < 0
        tail = right | left
        t = torch.where(right, a, torch.where(left, -b, torch.ones_like(a)))
        u = torch.where(right, b, torch.where(left, -a, torch.full_like(a, 2.0)))
        log_1mq = torch.log(-torch.expm1(log_ndtr(-u) - log_ndtr(-t)))  # log(1 - Φ(-u)/Φ(-t))
        mills = _InverseMills.apply(t)
        r_t = mills * torch.exp(-log_1mq)
        r_u = r_t * torch.exp(-(u - t) * (u + t) / 2)
        # log(erfcx(t/√2)/2) = log(√(2/π)/2) - log r(t); d/dt = t - r(t)
        # t·(r_t - t) with r_t = r(t)/(1-q): (r(t) - t)/(1-q) + t·q/(1-q), never r - t by subtraction
        excess = (_mills_excess(t, mills) + t * -torch.expm1(log_1mq)) * torch.exp(-log_1mq)
        h_tail = 0.5 * math.log(0.5 / math.pi) - torch.log(mills) + log_1mq + (t * excess - u * r_u) / 2
        a_in, b_in = torch.where(tail, torch.zeros_like(a), a), torch.where(tail, torch.ones_like(b), b)
        log_z = self._log_mass(a_in, b_in)
        r_a_in = torch.exp(-0.5 * a_in.square() - _LOG_SQRT_2PI - log_z)
        r_b_in = torch.exp(-0.5 * b_in.square() - _LOG_SQRT_2PI - log_z)
        h_in = log_z + (a_in * r_a_in - b_in * r_b_in) / 2
        r_a = torch.where(right, r_t, torch.where(left, r_u, r_a_in))
        r_b = torch.where(right, r_u, torch.where(left, r_t, r_b_in))
        return r_a, r_b, torch.where(tail, h_tail, h_in)

    def _double(self) -> TruncatedNormal:
        """This distribution in float64, where the entropy and moments are computed."""
        if self.loc.dtype == torch.float64:
            return self
        return TruncatedNormal(self.loc.double(), self.scale.double(), self.low.double(), self.high.double(), False)

    def entropy(self) -> torch.Tensor:
        r""":math:`\log(\sqrt{2\pi e}\,\sigma Z) + (\alpha\phi(\alpha) - \beta\phi(\beta)) / 2Z` (WN eq. 39)."""
        d = self._double()
        return (_LOG_SQRT_2PI_E + d.scale.log() + d._terms()[2]).to(self.loc.dtype)

    @property
    def mean(self) -> torch.Tensor:
        d = self._double()
        ra, rb, _ = d._terms()
        return (d.loc + d.scale * (ra - rb)).to(self.loc.dtype)

    @property
    def variance(self) -> torch.Tensor:
        d = self._double()
        a, b = d._alpha, d._beta
        pa, pb, _ = d._terms()
        return (d.scale.square() * (1 + a * pa - b * pb - (pa - pb).square())).to(self.loc.dtype)
